// A queued job's progress (a trace; a validation, analysis.js): one bar over the whole job that only moves forward,
// with an ETA, from the job's SSE events (polling if the stream drops); cancel; a trace opens its graph when done.
// The bar follows the job's `fraction` (0..1, never decreasing) and `eta_s` when the server sends them; else the
// page weighs the phases itself (PHASES) and estimates the time left from the elapsed time.
import { h } from "./dom.js";
import { api } from "./api.js";
import { navigate } from "./router.js";
import { errorSentence } from "./messages.js";

// Share of the whole job per phase, in order (what the work takes on a typical prompt).
const PHASES = [["forward", 0.05], ["logits", 0.1], ["features", 0.75], ["prune", 0.05], ["export", 0.05]];

/** The job's fraction done from its phase and rows (when the server sends no `fraction`), or null. */
export function phaseFraction(st) {
  if (st.status === "done") return 1;
  let start = 0;
  for (const [phase, share] of PHASES) {
    if (phase === st.phase) return start + share * (st.total ? Math.min(1, (st.done || 0) / st.total) : 0);
    start += share;
  }
  return null;
}

/** "about 40 s left", "about 3 min left". */
export function etaText(s) {
  if (typeof s !== "number" || !Number.isFinite(s) || s < 0) return "";
  if (s < 60) return `about ${Math.max(1, Math.round(s))} s left`;
  return `about ${Math.round(s / 60)} min left`;
}

/** Forward-only progress of one job: update(status event) -> {fraction, eta (s or null)}. */
export function progressTracker(now = () => performance.now()) {
  let shown = 0;
  let t0 = null; // when the job started running
  return (st) => {
    const f = typeof st.fraction === "number" ? st.fraction : phaseFraction(st);
    if (typeof f === "number") shown = Math.max(shown, Math.min(1, f));
    if (st.status === "running" && t0 === null) t0 = now();
    let eta = typeof st.eta_s === "number" ? st.eta_s : null;
    if (eta === null && t0 !== null && shown > 0.02 && shown < 1) {
      const elapsed = (now() - t0) / 1000;
      if (elapsed > 1) eta = (elapsed * (1 - shown)) / shown;
    }
    return { fraction: st.status === "done" ? 1 : shown, eta: st.status === "done" ? 0 : eta };
  };
}

/** The status line: "queued — position 2 …", "features 12 / 40 · 31% · about 20 s left". `text.rows(st)`: the
 * rows part ("12 / 40" by default), `text.phase(st)`: the phase's name (the server's by default). */
function statusText(st, p, text) {
  if (st.status === "queued") return `Queued — position ${st.position ?? "?"} (another job is running)`;
  if (st.status !== "running") return st.status;
  const r = st.total ? ` ${text.rows(st)}` : "";
  const eta = etaText(p.eta);
  return `${text.phase(st) || "running"}${r} · ${Math.floor(p.fraction * 100)}%${eta ? ` · ${eta}` : ""}`;
}

const FINAL = new Set(["done", "failed", "cancelled"]);
const EVENTS = ["message", "queued", "progress", "done", "failed", "cancelled"];

/** Follow one job: its SSE events, then polling once a second if the stream drops; `onStatus(JobView)` for each,
 * nothing after the job ends or stop() is called. `onError(e)`: polling failed (the job is given up). Returns stop. */
export function watchJob(jobId, onStatus, { eventsUrl = `/api/jobs/${encodeURIComponent(jobId)}/events`, onError = () => {} } = {}) {
  let source = null;
  let timer = null;
  let live = true;
  const close = () => {
    if (source) source.close();
    source = null;
    clearInterval(timer);
  };
  const stop = () => {
    live = false;
    close();
  };
  const handle = (st) => {
    if (!live) return;
    if (FINAL.has(st.status)) stop();
    onStatus(st);
  };
  const poll = () => {
    close();
    timer = setInterval(() => api.job(jobId).then(handle, (e) => {
      if (!live) return;
      stop();
      onError(e);
    }), 1000);
  };
  source = new EventSource(eventsUrl);
  for (const name of EVENTS) source.addEventListener(name, (e) => handle(JSON.parse(e.data)));
  source.onerror = poll;
  return stop;
}

/** One job's bar (forward-only), status line and error line, ids `${id}-progress`, `-phase`, `-error`.
 * `show(JobView)` draws an event; `reset()` before a new job. `rows`, `phase`: see statusText; `log`: the window
 * array the events go to (tests read it). */
export function progressView(id, { rows = (st) => `${st.done ?? 0} / ${st.total}`, phase: phaseName = (st) => st.phase, log = null } = {}) {
  const bar = h("div", { class: "progress-fill" });
  const progress = h("div", { class: "progress", id: `${id}-progress`, hidden: true, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  const phase = h("div", { class: "muted", id: `${id}-phase`, role: "status" });
  const error = h("div", { class: "error", id: `${id}-error`, role: "alert" });
  let track = progressTracker();
  const show = (st) => {
    if (log) (window[log] ||= []).push(st); // the job's events as the page saw them
    const p = track(st);
    progress.hidden = false;
    bar.style.width = `${(p.fraction * 100).toFixed(1)}%`;
    progress.setAttribute("aria-valuenow", Math.floor(p.fraction * 100));
    phase.textContent = statusText(st, p, { rows, phase: phaseName });
    return p;
  };
  const reset = () => {
    track = progressTracker();
    error.textContent = "";
  };
  return { progress, phase, error, show, reset };
}

/** `open(slug)`: where a finished trace goes (default: its graph). */
export const graphUrl = (slug) => `/graph/${encodeURIComponent(slug)}`;

/** The trace form's job: follow a 202 answer, open the graph when done; failure and cancel lift `gate`'s "busy". */
export function jobProgress({ gate, cancel, open = graphUrl }) {
  const view = progressView("trace", { log: "__cbJobLog" });
  let stopWatch = () => {};
  let jobId = null;

  function showStatus(st) {
    view.show(st);
    if (st.status === "done" && st.slug) {
      view.phase.textContent = "Done — opening the graph…";
      // A short beat so the finished bar is seen, then open the graph.
      setTimeout(() => navigate(open(st.slug)), 300);
    } else if (st.status === "failed" || st.status === "cancelled") {
      view.error.textContent = st.status === "cancelled" ? "The trace was cancelled." : `The trace failed. ${st.error ? errorSentence(500, st.error) : ""}`.trim();
      gate.set("busy", null);
      cancel.hidden = true;
    }
  }

  /** Follow the job of a 202 answer ({job_id, position, events_url}). */
  function follow(queued) {
    jobId = queued.job_id;
    view.reset();
    cancel.hidden = false;
    showStatus({ status: "queued", position: queued.position, done: 0, total: 0 });
    stopWatch = watchJob(jobId, showStatus, { eventsUrl: queued.events_url, onError: (e) => (view.error.textContent = e.message) });
  }

  const cancelJob = () => jobId && api.cancelJob(jobId).catch((e) => (view.error.textContent = e.message));
  return { progress: view.progress, phase: view.phase, error: view.error, follow, stop: () => stopWatch(), cancel: cancelJob };
}
