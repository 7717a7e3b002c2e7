// Trace form: prompt with live tokenisation + next-token preview (debounced), advanced parameters with the
// server's ranges (GET /api/config), submit -> real progress from the job's SSE events -> open the graph.
import { api } from "./api.js";
import { h, clear, debounce, showToken, fmt } from "./dom.js";
import { navigate } from "./router.js";
import { store } from "./state.js";

const PARAMS = [
  ["max_n_logits", "Max logits", 1],
  ["desired_logit_prob", "Desired logit probability", 0.01],
  ["max_feature_nodes", "Max feature nodes", 1],
  ["node_threshold", "Node threshold", 0.01],
  ["edge_threshold", "Edge threshold", 0.01],
];

export function renderTrace(root) {
  const initial = new URLSearchParams(location.search).get("prompt") || "";
  const prompt = h("textarea", { id: "trace-prompt", rows: 3, placeholder: "Paste a prompt, e.g. Fact: the capital of the state containing Dallas is", "aria-label": "Prompt" });
  prompt.value = initial;
  const params = advancedParams();
  const submit = h("button", { class: "btn primary", id: "trace-submit", type: "submit", text: "Trace" });
  const cancel = h("button", { class: "btn", type: "button", hidden: true, text: "Cancel" });
  const preview = tokenPreview(prompt, submit);
  const job = jobProgress({ submit, cancel });

  const form = h("form", { class: "trace-form" },
    h("label", { class: "field-label", for: "trace-prompt", text: "Prompt" }), prompt, preview.limitNote,
    h("div", { class: "subhead", text: "Tokens" }), preview.tokens,
    h("div", { class: "subhead", text: "Top next tokens" }), preview.next,
    params.el, h("div", { class: "row" }, submit, cancel), job.progress, job.phase, job.error);

  clear(root).append(h("section", { class: "view trace" }, h("div", { class: "view-head" }, h("h1", { text: "Trace a prompt" })), form));
  prompt.focus();
  prompt.addEventListener("input", preview.tokenize);
  if (initial) preview.tokenize();

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    job.error.textContent = "";
    const body = { prompt: prompt.value, ...params.values() };
    submit.disabled = true;
    try {
      const res = await api.createGraph(body);
      if (res.status === 201) {
        navigate(`/graph/${encodeURIComponent(res.data.slug)}`);
        return;
      }
      job.follow(res.data);
    } catch (e) {
      job.error.textContent = e.message;
      submit.disabled = false;
    }
  });
  cancel.addEventListener("click", job.cancel);
  return () => {
    job.stop();
    preview.tokenize.cancel();
    params.destroy();
  };
}

/** "Advanced parameters": number inputs with the server's ranges (GET /api/config), slug, target tokens. */
function advancedParams() {
  const slug = h("input", { id: "trace-slug", placeholder: "optional readable slug", pattern: "[a-z0-9_-]*" });
  const targets = h("input", { id: "trace-targets", placeholder: "optional target tokens, comma-separated" });
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
  grid.append(h("label", {}, h("span", { text: "Slug" }), slug), h("label", {}, h("span", { text: "Target tokens" }), targets));
  const el = h("details", { class: "advanced" }, h("summary", { text: "Advanced parameters" }), grid);
  /** The request fields that are filled in. */
  const values = () => {
    const body = {};
    for (const [key] of PARAMS) if (inputs[key].value !== "") body[key] = Number(inputs[key].value);
    if (slug.value.trim()) body.slug = slug.value.trim();
    const tt = targets.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (tt.length) body.target_tokens = tt;
    return body;
  };
  return { el, values, destroy };
}

/** Live tokenisation and the top next tokens of the prompt (debounced); too long a prompt disables `submit`. */
function tokenPreview(prompt, submit) {
  const tokens = h("div", { class: "token-row", id: "trace-tokens", "aria-live": "polite" });
  const next = h("div", { class: "next-row", id: "trace-next" });
  const limitNote = h("div", { class: "muted" });
  let tokAbort = null;
  const maxTok = () => (store.state.config && store.state.config.limits ? store.state.config.limits.max_prompt_tokens : null);
  const tokenize = debounce(async () => {
    const text = prompt.value;
    if (tokAbort) tokAbort.abort();
    if (!text) {
      clear(tokens);
      clear(next);
      return;
    }
    tokAbort = new AbortController();
    try {
      const res = await api.tokenize(text, 10, tokAbort.signal);
      clear(tokens).append(...res.tokens.map((t) => h("span", { class: "tok", title: `id ${t.id}`, text: showToken(t.text) })));
      clear(next).append(...res.top_next.map((t, i) => h("span", { class: "next" },
        h("span", { class: "tok", text: showToken(t.text) }), h("span", { class: "muted", text: ` ${fmt(t.prob * 100, 1)}%` }),
        i === 0 && /^\s*$/.test(t.text) ? h("span", { class: "warn", text: " (whitespace — probably not an interesting target)" }) : null)));
      limitNote.textContent = `${res.n_tokens} tokens${maxTok() ? ` of at most ${maxTok()}` : ""}`;
      limitNote.classList.toggle("error", !!res.too_long);
      submit.disabled = !!res.too_long;
    } catch (e) {
      if (e.name !== "AbortError") limitNote.textContent = `Tokenizer: ${e.message}`;
    }
  }, 300);
  return { tokens, next, limitNote, tokenize };
}

/** A queued job's progress: its SSE events (polling if the stream drops), cancel, and the graph opened when done. */
function jobProgress({ submit, cancel }) {
  const bar = h("div", { class: "progress-fill" });
  const progress = h("div", { class: "progress", id: "trace-progress", hidden: true, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  const phase = h("div", { class: "muted", id: "trace-phase", role: "status" });
  const error = h("div", { class: "error", id: "trace-error", role: "alert" });
  let source = null;
  let pollTimer = null;
  let jobId = null;
  const stop = () => {
    if (source) source.close();
    source = null;
    clearInterval(pollTimer);
  };

  function showStatus(st) {
    (window.__cbJobLog ||= []).push(st); // the job's events as the page saw them (tests read this)
    progress.hidden = false;
    const pct = st.total ? Math.round((100 * st.done) / st.total) : st.status === "done" ? 100 : 0;
    bar.style.width = `${pct}%`;
    progress.setAttribute("aria-valuenow", pct);
    phase.textContent = phaseText(st);
    if (st.status === "done" && st.slug) {
      stop();
      bar.style.width = "100%";
      phase.textContent = "done — opening the graph…";
      // A short beat so the finished bar is seen, then open the graph.
      setTimeout(() => navigate(`/graph/${encodeURIComponent(st.slug)}`), 300);
    } else if (st.status === "failed" || st.status === "cancelled") {
      stop();
      error.textContent = st.error || `Job ${st.status}`;
      submit.disabled = false;
      cancel.hidden = true;
    }
  }

  // Stream dropped: fall back to polling the job.
  const poll = () => {
    stop();
    pollTimer = pollJob(jobId, showStatus, (e) => {
      stop();
      error.textContent = e.message;
    });
  };

  /** Follow the job of a 202 answer ({job_id, position, events_url}). */
  function follow(queued) {
    jobId = queued.job_id;
    cancel.hidden = false;
    showStatus({ status: "queued", position: queued.position, done: 0, total: 0 });
    source = new EventSource(queued.events_url);
    const onEvent = (e) => showStatus(JSON.parse(e.data));
    for (const name of ["message", "queued", "progress", "done", "failed", "cancelled"]) source.addEventListener(name, onEvent);
    source.onerror = poll;
  }

  const cancelJob = () => jobId && api.cancelJob(jobId).catch((e) => (error.textContent = e.message));
  return { progress, phase, error, follow, stop, cancel: cancelJob };
}

function phaseText(st) {
  if (st.status === "queued") return `Queued — position ${st.position ?? "?"}`;
  if (st.status === "running") return `${st.phase || "running"}: ${st.done ?? 0} / ${st.total ?? "?"}`;
  return st.status;
}

/** Poll the job every second; returns the interval id. */
function pollJob(jobId, onStatus, onError) {
  return setInterval(async () => {
    try {
      onStatus(await api.job(jobId));
    } catch (e) {
      onError(e);
    }
  }, 1000);
}
