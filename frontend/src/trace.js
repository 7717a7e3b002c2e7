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
  const cfg = store.state.config;
  const initial = new URLSearchParams(location.search).get("prompt") || "";
  const prompt = h("textarea", { id: "trace-prompt", rows: 3, placeholder: "Paste a prompt, e.g. Fact: the capital of the state containing Dallas is", "aria-label": "Prompt" });
  prompt.value = initial;
  const tokens = h("div", { class: "token-row", id: "trace-tokens", "aria-live": "polite" });
  const next = h("div", { class: "next-row", id: "trace-next" });
  const limitNote = h("div", { class: "muted" });
  const slug = h("input", { id: "trace-slug", placeholder: "optional readable slug", pattern: "[a-z0-9_-]*" });
  const targets = h("input", { id: "trace-targets", placeholder: "optional target tokens, comma-separated" });
  const inputs = {};
  const adv = h("details", { class: "advanced" }, h("summary", { text: "Advanced parameters" }));
  const grid = h("div", { class: "param-grid" });
  const hints = {};
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
  applyConfig(cfg);
  const unsubConfig = store.subscribe(["config"], (s) => applyConfig(s.config));
  grid.append(h("label", {}, h("span", { text: "Slug" }), slug), h("label", {}, h("span", { text: "Target tokens" }), targets));
  adv.append(grid);

  const submit = h("button", { class: "btn primary", id: "trace-submit", type: "submit", text: "Trace" });
  const cancel = h("button", { class: "btn", type: "button", hidden: true, text: "Cancel" });
  const bar = h("div", { class: "progress-fill" });
  const progress = h("div", { class: "progress", id: "trace-progress", hidden: true, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  const phase = h("div", { class: "muted", id: "trace-phase", role: "status" });
  const error = h("div", { class: "error", id: "trace-error", role: "alert" });

  const form = h("form", { class: "trace-form" },
    h("label", { class: "field-label", for: "trace-prompt", text: "Prompt" }), prompt, limitNote,
    h("div", { class: "subhead", text: "Tokens" }), tokens,
    h("div", { class: "subhead", text: "Top next tokens" }), next,
    adv, h("div", { class: "row" }, submit, cancel), progress, phase, error);

  clear(root).append(h("section", { class: "view trace" }, h("div", { class: "view-head" }, h("h1", { text: "Trace a prompt" })), form));
  prompt.focus();

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
  prompt.addEventListener("input", tokenize);
  if (initial) tokenize();

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
    if (st.status === "queued") phase.textContent = `Queued — position ${st.position ?? "?"}`;
    else if (st.status === "running") phase.textContent = `${st.phase || "running"}: ${st.done ?? 0} / ${st.total ?? "?"}`;
    else phase.textContent = st.status;
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

  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    error.textContent = "";
    const body = { prompt: prompt.value };
    for (const [key] of PARAMS) if (inputs[key].value !== "") body[key] = Number(inputs[key].value);
    if (slug.value.trim()) body.slug = slug.value.trim();
    const tt = targets.value.split(",").map((s) => s.trim()).filter(Boolean);
    if (tt.length) body.target_tokens = tt;
    submit.disabled = true;
    try {
      const res = await api.createGraph(body);
      if (res.status === 201) {
        navigate(`/graph/${encodeURIComponent(res.data.slug)}`);
        return;
      }
      jobId = res.data.job_id;
      cancel.hidden = false;
      showStatus({ status: "queued", position: res.data.position, done: 0, total: 0 });
      source = new EventSource(res.data.events_url);
      const onEvent = (e) => showStatus(JSON.parse(e.data));
      for (const name of ["message", "queued", "progress", "done", "failed", "cancelled"]) source.addEventListener(name, onEvent);
      source.onerror = () => {
        // Stream dropped: fall back to polling the job.
        if (source) source.close();
        source = null;
        clearInterval(pollTimer);
        pollTimer = setInterval(async () => {
          try {
            showStatus(await api.job(jobId));
          } catch (e) {
            stop();
            error.textContent = e.message;
          }
        }, 1000);
      };
    } catch (e) {
      error.textContent = e.message;
      submit.disabled = false;
    }
  });
  cancel.addEventListener("click", async () => {
    if (jobId) {
      try {
        await api.cancelJob(jobId);
      } catch (e) {
        error.textContent = e.message;
      }
    }
  });
  return () => {
    stop();
    tokenize.cancel();
    unsubConfig();
  };
}
