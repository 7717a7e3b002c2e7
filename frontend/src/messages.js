// Error messages as sentences a person understands, from the API's error bodies (docs/api.md): FastAPI's
// validation list [{loc, msg, type, ctx}] and the routes' "field: message" strings.

// What each request field is called in a sentence (the page's own names for them).
const FIELDS = {
  prompt: "the prompt",
  target_tokens: "target token",
  targets: "target token",
  watch: "watched token",
  top_k: "the number of top tokens",
  n_tokens: "the number of tokens to generate",
  temperature: "the temperature",
  seed: "the seed",
  interventions: "intervention",
  value: "the value",
  layer: "the layer",
  index: "the feature index",
  feature: "the feature index",
  position: "the token position",
  max_n_logits: "Max logits",
  desired_logit_prob: "Desired logit probability",
  max_feature_nodes: "Max feature nodes",
  node_threshold: "Node threshold",
  edge_threshold: "Edge threshold",
  slug: "the slug",
  name: "the view name",
  q: "the search",
  file: "the file",
};

const capital = (s) => (s ? s[0].toUpperCase() + s.slice(1) : s);
const stop = (s) => (/[.!?]$/.test(s) ? s : `${s}.`);
const lowerFirst = (s) => (s && !/^[A-Z]{2}/.test(s) ? s[0].toLowerCase() + s.slice(1) : s);

/** ["body", "watch", 2] -> "watched token 3"; ["body", "interventions", 0, "value"] -> "the value of intervention 1". */
export function fieldName(loc) {
  const path = (loc || []).filter((p) => !["body", "query", "path"].includes(p));
  const parts = [];
  for (let k = 0; k < path.length; k++) {
    const p = path[k];
    if (typeof p === "number") continue;
    const name = FIELDS[p] || p.replace(/_/g, " ");
    parts.unshift(typeof path[k + 1] === "number" ? `${name} ${path[k + 1] + 1}` : name);
  }
  return parts.join(" of ") || "the request";
}

/** One validation error as a sentence. */
function itemSentence(d) {
  const what = fieldName(d.loc);
  const ctx = d.ctx || {};
  const field = (d.loc || [])[1];
  switch (d.type) {
    case "string_too_short":
    case "too_short":
      if (field === "prompt") return "Type a prompt first.";
      return ctx.min_length === 1 ? `${capital(what)} is empty.` : `${capital(what)} is too short (at least ${ctx.min_length}).`;
    case "string_too_long":
    case "too_long":
      return `${capital(what)} is too long (at most ${ctx.max_length}).`;
    case "greater_than_equal":
      return `${capital(what)} must be at least ${ctx.ge}.`;
    case "less_than_equal":
      return `${capital(what)} must be at most ${ctx.le}.`;
    case "greater_than":
      return `${capital(what)} must be more than ${ctx.gt}.`;
    case "less_than":
      return `${capital(what)} must be less than ${ctx.lt}.`;
    case "missing":
      return `${capital(what)} is missing.`;
    case "int_parsing":
    case "float_parsing":
    case "int_type":
    case "float_type":
      return `${capital(what)} must be a number.`;
    case "extra_forbidden":
      return `The server does not know ${what} (it may be older than this page).`;
    default: {
      // The server's own checks repeat the field ("watch.2: ..."): say it once.
      const msg = String(d.msg || "is not valid").replace(/^Value error, /, "").replace(/^[a-z_]+(\.\w+)*: /, "");
      return about(what, msg);
    }
  }
}

const VERB = /^(must|is|are|has|have|should|cannot|can|was|were|would|needs?|exceeds?|may)\b/;

/** "<What> <message>." when the message goes on from the field's name, else "<What>: <message>.". */
function about(what, msg) {
  if (/^at (most|least)\b/.test(msg)) return stop(`${capital(what)} must be ${msg}`);
  return stop(`${capital(what)}${VERB.test(msg) ? " " : ": "}${VERB.test(msg) ? msg : lowerFirst(msg)}`);
}

/** A route's message ("slug: no graph 'x'", "prompt too long: 70 tokens > 64") as a sentence. */
function textSentence(text) {
  const m = /^([a-z_]+(?:\.\d+)?(?:\.[a-z_]+)?): (.+)$/s.exec(text);
  if (m && !/\s/.test(m[1])) {
    const loc = m[1].split(".").map((p) => (/^\d+$/.test(p) ? Number(p) : p));
    return about(fieldName(loc), m[2]);
  }
  return stop(capital(text));
}

/** The sentence for an API error: status and body detail (a validation list, a string, or nothing). */
export function errorSentence(status, detail) {
  if (Array.isArray(detail) && detail.length) return detail.map(itemSentence).join(" ");
  if (typeof detail === "string" && detail.trim()) {
    if (/^\s*</.test(detail)) return `The server answered with an error page (HTTP ${status}).`;
    return textSentence(detail.trim());
  }
  if (detail && typeof detail === "object") return stop(capital(JSON.stringify(detail)));
  if (status === 404) return "Not found.";
  if (status >= 500) return `The server failed (HTTP ${status}); try again, or see its log.`;
  return `The request failed (HTTP ${status}).`;
}

export const UNREACHABLE = "The server could not be reached: check that it is running, then try again.";
