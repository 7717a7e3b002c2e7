// What a trace will cost before it runs (issue 16): the server's estimate (POST /api/estimate, the same body as
// POST /api/graphs) of its time and peak memory, asked again (debounced, like the live tokenisation) as the
// prompt, targets and parameters change, and shown next to the Trace button: "~ 40 s, ~ 1.2 GiB". When the
// trace does not fit the server's limits the estimate turns into a warning with the server's reason, and the
// button is disabled with the reason as its title (the server would refuse it with a 4xx naming `prompt`).
import { h, debounce } from "./dom.js";
import { api } from "./api.js";
import { errorSentence } from "./messages.js";

const GiB = 2 ** 30;
const MiB = 2 ** 20;

/** 0.4 -> "< 1 s", 40 -> "~ 40 s", 200 -> "~ 3 min", 7300 -> "~ 2 h". */
export function durationText(s) {
  if (!Number.isFinite(s) || s < 0) return "";
  if (s < 1) return "< 1 s";
  if (s < 90) return `~ ${Math.round(s)} s`;
  if (s < 90 * 60) return `~ ${Math.round(s / 60)} min`;
  return `~ ${fmtOne(s / 3600)} h`;
}

/** 1.2e9 -> "~ 1.1 GiB", 3.7e8 -> "~ 353 MiB". */
export function bytesText(b) {
  if (!Number.isFinite(b) || b < 0) return "";
  return b >= GiB ? `~ ${fmtOne(b / GiB)} GiB` : `~ ${Math.max(1, Math.round(b / MiB))} MiB`;
}

const fmtOne = (x) => (x >= 10 ? String(Math.round(x)) : x.toFixed(1));

/** `bodyOf()`: the request the form would send now (null: nothing to estimate). `gate.set("estimate", reason)`
 * disables the Trace button while the trace does not fit. */
export function createEstimate(bodyOf, gate) {
  const el = h("span", { class: "estimate muted", id: "trace-estimate", "aria-live": "polite", hidden: true });
  let abort = null;
  const hide = () => {
    el.hidden = true;
    gate.set("estimate", null);
  };
  const show = (est) => {
    const cost = `${durationText(est.seconds)}, ${bytesText(est.peak_bytes)}`;
    const reason = est.fits ? null : errorSentence(422, est.reason || "prompt: too large a trace for this server");
    el.hidden = false;
    el.classList.toggle("warn", !est.fits);
    el.classList.toggle("muted", !!est.fits);
    el.textContent = est.fits ? cost : `⚠ ${cost} — ${reason}`;
    const limit = est.limit || {};
    const plain = (s) => s.replace(/~ /g, "");
    el.title = `Estimated for ${est.tokens} tokens: about ${plain(durationText(est.seconds))} and ${plain(bytesText(est.peak_bytes))} of peak memory`
      + (limit.seconds ? ` (this server allows up to ${plain(durationText(limit.seconds))} and ${plain(bytesText(limit.bytes))})` : "");
    gate.set("estimate", reason);
  };
  const run = async () => {
    if (abort) abort.abort();
    const body = bodyOf();
    if (!body) return hide();
    abort = new AbortController();
    try {
      show(await api.estimate(body, abort.signal));
    } catch (e) {
      // No estimate (an older server, or a request the tokeniser already flags): nothing shown, nothing blocked.
      if (e.name !== "AbortError") hide();
    }
  };
  const update = debounce(run, 300);
  const cancel = () => {
    update.cancel();
    if (abort) abort.abort();
  };
  return { el, update, cancel };
}
