// Trace form: prompt with live tokenisation + next-token preview (debounced), exact target tokens (typed as they
// are, leading spaces kept, or picked from the preview) with a warning before tracing a target that is not one
// token or is very unlikely, advanced parameters with the server's ranges (GET /api/config), submit -> progress
// (trace-progress.js) -> open the graph. `/trace?prompt=...&target=...&run=1` fills the form and traces at once
// (the example prompts on an empty Browse page).
import { api } from "./api.js";
import { h, clear, debounce, showToken, fmt } from "./dom.js";
import { navigate } from "./router.js";
import { store } from "./state.js";
import { createTokenChips } from "./token-chips.js";
import { jobProgress, graphUrl } from "./trace-progress.js";
import { createEstimate } from "./trace-estimate.js";

const PARAMS = [
  ["max_n_logits", "Max logits", 1],
  ["desired_logit_prob", "Desired logit probability", 0.01],
  ["max_feature_nodes", "Max feature nodes", 1],
  ["node_threshold", "Node threshold", 0.01],
  ["edge_threshold", "Edge threshold", 0.01],
];
const UNLIKELY = 1e-4; // a target less probable than this after the prompt gets a warning

export function renderTrace(root) {
  const query = new URLSearchParams(location.search);
  const prompt = h("textarea", { id: "trace-prompt", rows: 3, placeholder: "Paste a prompt, e.g. Fact: the capital of the state containing Dallas is", "aria-label": "Prompt" });
  prompt.value = query.get("prompt") || "";
  const submit = h("button", { class: "btn primary", id: "trace-submit", type: "submit", text: "Trace" });
  const gate = submitGate(submit);
  const cancel = h("button", { class: "btn", type: "button", hidden: true, text: "Cancel" });
  const confirm = confirmStep(submit);
  const changed = () => {
    confirm.reset();
    preview.tokenize();
    estimate.update();
  };
  const params = advancedParams(() => estimate.update());
  const targets = createTokenChips({
    id: "trace-targets", label: "Target token", max: maxTargets(),
    placeholder: 'a target exactly as the model sees it, e.g. " rabbit"', onChange: changed,
  });
  const preview = tokenPreview(prompt, gate, targets);
  const compare = query.get("compare"); // "Compare with … → trace a counterfactual": the diff opens when done
  const open = compare ? (slug) => `/diff/${encodeURIComponent(compare)}/${encodeURIComponent(slug)}` : graphUrl;
  const job = jobProgress({ gate, cancel, open });
  const features = featureTargets(query, () => estimate.update());
  const parts = { prompt, params, targets, preview, confirm, job, gate, features, open };
  const estimate = createEstimate(() => (prompt.value.trim() ? requestBody(parts) : null), gate);
  for (const t of query.getAll("target")) targets.push(t);
  const compareNote = compare ? h("p", { class: "muted", id: "trace-compare", text: `When traced, the graph is compared with ${compare}.` }) : null;
  const form = traceForm({ ...parts, submit, cancel, estimate, compareNote });

  clear(root).append(h("section", { class: "view trace" }, h("div", { class: "view-head" }, h("h1", { text: "Trace a prompt" })), form));
  prompt.focus();
  prompt.addEventListener("input", changed);
  if (prompt.value) changed();
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    targets.commit();
    send(parts);
  });
  cancel.addEventListener("click", job.cancel);
  if (prompt.value && query.get("run") === "1") send({ ...parts, confirm: null });
  return () => {
    job.stop();
    preview.tokenize.cancel();
    estimate.cancel();
    params.destroy();
  };
}

/** The form's layout: prompt and its tokens, targets, parameters, then the Trace button with the estimate. */
function traceForm({ prompt, preview, targets, features, compareNote, params, submit, cancel, estimate, job }) {
  return h("form", { class: "trace-form", novalidate: true },
    h("label", { class: "field-label", for: "trace-prompt", text: "Prompt" }), prompt, preview.limitNote,
    h("div", { class: "subhead", text: "Tokens" }), preview.tokens,
    h("div", { class: "subhead", text: "Top next tokens (click one to make it a target)" }), preview.next,
    h("div", { class: "subhead", text: "Target tokens (optional; the logits to explain — by default the most likely ones)" }),
    targets.el, preview.targetNotes, features.el, compareNote,
    params.el, h("div", { class: "row trace-actions" }, submit, cancel, estimate.el), job.progress, job.phase, job.error);
}

/** Why the Trace button is disabled, by source ("too_long", "estimate", "busy"): disabled while any has a reason,
 * the first one its title. */
function submitGate(submit) {
  const reasons = new Map();
  return {
    set(key, reason) {
      reasons.set(key, reason || null);
      const why = [...reasons.values()].filter(Boolean);
      submit.disabled = why.length > 0;
      submit.title = why[0] || "";
    },
  };
}

const maxTargets = () => (store.state.config && store.state.config.limits && store.state.config.limits.max_target_tokens) || 10;

/** The submit button's second step: "Trace anyway" after a warning about the targets. */
function confirmStep(submit) {
  let armed = false;
  return {
    armed: () => armed,
    arm() {
      armed = true;
      submit.textContent = "Trace anyway";
    },
    reset() {
      armed = false;
      submit.textContent = "Trace";
    },
  };
}

/** The POST /api/graphs body the form would send now (also what the estimate is asked about). */
function requestBody({ prompt, params, targets, features }) {
  const tt = targets.values();
  const tf = features ? features.values() : [];
  return {
    prompt: prompt.value, ...params.values(), ...(tt.length ? { target_tokens: tt } : {}), ...(tf.length ? { target_features: tf } : {}),
  };
}

/** Check and send the form; a 201 opens the graph, a 202 is followed. `confirm` null: no warning step. */
async function send(parts) {
  const { prompt, targets, preview, confirm, job, gate, open = graphUrl } = parts;
  job.error.textContent = "";
  if (!prompt.value.trim()) {
    job.error.textContent = "Type a prompt first.";
    prompt.focus();
    return;
  }
  const warned = confirm && targets.values().length ? await preview.check() : [];
  if (warned.length && !confirm.armed()) {
    confirm.arm();
    job.error.textContent = `${warned.length === 1 ? "A target token needs" : "Some target tokens need"} a look (see above). `
      + "Press Trace anyway to trace them as they are.";
    return;
  }
  gate.set("busy", "A trace is running."); // a late tokenizer or estimate answer must not enable it again
  try {
    const res = await api.createGraph(requestBody(parts));
    if (res.status === 201) {
      navigate(open(res.data.slug));
      return;
    }
    job.follow(res.data);
  } catch (e) {
    // A 4xx names what is wrong: a parameter, or the prompt when the trace would not fit the server's limits.
    job.error.textContent = `The trace could not start. ${e.message}`;
    gate.set("busy", null);
  }
}

/** `?feature=layer/index/position` (from "Trace back from this feature"): target features, each removable. */
function featureTargets(query, onChange) {
  const list = query.getAll("feature").map((f) => f.split("/").map(Number)).filter((f) => f.length === 3 && f.every(Number.isInteger));
  const el = h("div", { id: "trace-features" });
  const draw = () => {
    clear(el);
    if (!list.length) return;
    el.append(h("div", { class: "subhead", text: "Target features (the graph explains these instead of logits)" }),
      ...list.map((f, k) => h("span", { class: "chip target-feature" }, `L${f[0]} #${f[1]} @ position ${f[2]} `,
        h("button", { class: "icon-btn", type: "button", "aria-label": "Remove", text: "×", onclick: () => { list.splice(k, 1); draw(); onChange(); } }))));
  };
  draw();
  return { el, values: () => list.map((f) => [...f]) };
}

/** "Advanced parameters": number inputs with the server's ranges (GET /api/config), and a slug; onChange on input. */
function advancedParams(onChange) {
  const slug = h("input", { id: "trace-slug", placeholder: "optional readable slug", pattern: "[a-z0-9_-]*" });
  const inputs = {};
  const hints = {};
  const grid = h("div", { class: "param-grid" });
  for (const [key, label, step] of PARAMS) {
    inputs[key] = h("input", { type: "number", id: `param-${key}`, step });
    hints[key] = h("small", { class: "muted" });
    grid.append(h("label", {}, h("span", { text: label }), inputs[key], hints[key]));
  }
  // The server's ranges (GET /api/config) may arrive after the form is drawn.
  const applyConfig = (config) => {
    for (const [key] of PARAMS) {
      const range = config && config.params && config.params[key];
      if (!range) continue;
      inputs[key].min = range.min;
      inputs[key].max = range.max;
      if (inputs[key].value === "") inputs[key].value = range.default;
      hints[key].textContent = `${range.min} – ${range.max}`;
    }
  };
  applyConfig(store.state.config);
  const destroy = store.subscribe(["config"], (s) => applyConfig(s.config));
  grid.append(h("label", {}, h("span", { text: "Slug" }), slug));
  grid.addEventListener("input", onChange);
  const el = h("details", { class: "advanced" }, h("summary", { text: "Advanced parameters" }), grid);
  /** The request fields that are filled in. */
  const values = () => {
    const body = {};
    for (const [key] of PARAMS) if (inputs[key].value !== "") body[key] = Number(inputs[key].value);
    if (slug.value.trim()) body.slug = slug.value.trim();
    return body;
  };
  return { el, values, destroy };
}

/** The note on one target ({text, ids, single, prob} from POST /api/tokenize): [text, isWarning]. */
export function targetNote(t) {
  const shown = `"${showToken(t.text)}"`;
  if (!t.single) {
    return [`${shown} is ${t.ids.length} tokens, not one: a target must be a single token of the model.`, true];
  }
  if (typeof t.prob === "number" && t.prob < UNLIKELY) {
    const spaced = !/^\s/.test(t.text) && /^\w/.test(t.text) ? ` Did you mean "${showToken(` ${t.text}`)}" with a leading space?` : "";
    return [`p(${shown}) = ${fmt(t.prob)} after this prompt: the model almost never says it.${spaced}`, true];
  }
  const p = typeof t.prob === "number" ? `, p = ${fmt(t.prob * 100, 2)}%` : "";
  return [`${shown}: one token${p}.`, false];
}

/** Live tokenisation, the top next tokens (click: a target) and target checks; too long a prompt disables submit. */
function tokenPreview(prompt, gate, targets) {
  const tokens = h("div", { class: "token-row", id: "trace-tokens", "aria-live": "polite" });
  const next = h("div", { class: "next-row", id: "trace-next" });
  const targetNotes = h("ul", { class: "target-notes", id: "trace-target-notes" });
  const limitNote = h("div", { class: "muted" });
  let tokAbort = null;
  let warnings = [];
  const maxTok = () => (store.state.config && store.state.config.limits ? store.state.config.limits.max_prompt_tokens : null);
  const show = (res) => {
    clear(tokens).append(...res.tokens.map((t) => h("span", { class: "tok", title: `id ${t.id}`, text: showToken(t.text) })));
    tokens.classList.toggle("scrolls", tokens.scrollHeight > tokens.clientHeight + 1); // boxed: more lines below
    clear(next).append(...res.top_next.map((t, i) => {
      const pick = h("button", { class: "next pick", type: "button", title: `Make "${showToken(t.text)}" a target`, "data-token": t.text },
        h("span", { class: "tok", text: showToken(t.text) }), h("span", { class: "muted", text: ` ${fmt(t.prob * 100, 1)}%` }),
        i === 0 && /^\s*$/.test(t.text) ? h("span", { class: "warn", text: " (whitespace — probably not an interesting target)" }) : null);
      pick.addEventListener("click", () => targets.push(t.text));
      return pick;
    }));
    const notes = (res.targets || []).map(targetNote);
    warnings = notes.filter(([, warn]) => warn).map(([text]) => text);
    clear(targetNotes).append(...notes.map(([text, warn]) => h("li", { class: warn ? "warn" : "muted", text })));
    limitNote.textContent = `${res.n_tokens} tokens${maxTok() ? ` of at most ${maxTok()}` : ""}`;
    limitNote.classList.toggle("error", !!res.too_long);
    if (res.too_long) limitNote.textContent += ": the prompt is too long to trace; shorten it.";
    else if (res.busy) limitNote.textContent += " · the model is busy with a trace, so the next tokens are not previewed now.";
    gate.set("too_long", res.too_long ? "The prompt is too long to trace; shorten it." : null);
  };
  const run = async () => {
    const text = prompt.value;
    if (tokAbort) tokAbort.abort();
    warnings = [];
    if (!text) {
      clear(tokens);
      clear(next);
      clear(targetNotes);
      return;
    }
    tokAbort = new AbortController();
    try {
      show(await api.tokenize(text, 10, tokAbort.signal, targets.values()));
    } catch (e) {
      if (e.name !== "AbortError") limitNote.textContent = `The prompt could not be tokenised. ${e.message}`;
    }
  };
  const tokenize = debounce(run, 300);
  /** Check now (not debounced); resolves to the warnings about the targets. */
  const check = async () => {
    tokenize.cancel();
    await run();
    return warnings;
  };
  return { tokens, next, targetNotes, limitNote, tokenize, check };
}
