// A queued trace's progress: one bar over the whole job that only moves forward, with an ETA, from the job's SSE
// events (polling if the stream drops); cancel; the graph opens when the job is done.
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

function statusText(st, p) {
  if (st.status === "queued") return `Queued — position ${st.position ?? "?"} (another trace is running)`;
  if (st.status !== "running") return st.status;
  const rows = st.total ? ` ${st.done ?? 0} / ${st.total}` : "";
  const eta = etaText(p.eta);
  return `${st.phase || "running"}${rows} · ${Math.floor(p.fraction * 100)}%${eta ? ` · ${eta}` : ""}`;
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

/** `open(slug)`: where a finished trace goes (default: its graph). */
export const graphUrl = (slug) => `/graph/${encodeURIComponent(slug)}`;

export function jobProgress({ submit, cancel, open = graphUrl }) {
  const bar = h("div", { class: "progress-fill" });
  const progress = h("div", { class: "progress", id: "trace-progress", hidden: true, role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100 }, bar);
  const phase = h("div", { class: "muted", id: "trace-phase", role: "status" });
  const error = h("div", { class: "error", id: "trace-error", role: "alert" });
  let source = null;
  let pollTimer = null;
  let jobId = null;
  let track = progressTracker();
  const stop = () => {
    if (source) source.close();
    source = null;
    clearInterval(pollTimer);
  };

  function showStatus(st) {
    (window.__cbJobLog ||= []).push(st); // the job's events as the page saw them (tests read this)
    const p = track(st);
    progress.hidden = false;
    bar.style.width = `${(p.fraction * 100).toFixed(1)}%`;
    progress.setAttribute("aria-valuenow", Math.floor(p.fraction * 100));
    phase.textContent = statusText(st, p);
    if (st.status === "done" && st.slug) {
      stop();
      phase.textContent = "Done — opening the graph…";
      // A short beat so the finished bar is seen, then open the graph.
      setTimeout(() => navigate(open(st.slug)), 300);
    } else if (st.status === "failed" || st.status === "cancelled") {
      stop();
      error.textContent = st.status === "cancelled" ? "The trace was cancelled." : `The trace failed. ${st.error ? errorSentence(500, st.error) : ""}`.trim();
      delete submit.dataset.busy;
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
    track = progressTracker();
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
