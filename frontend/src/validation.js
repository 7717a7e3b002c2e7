// Validation by intervention (issue 13), under the subgraph: a job in the server's queue (POST answers 202 and a
// JobView; input errors come back at once). While it runs the panel shows its progress (phase, n of m
// interventions, a forward-only bar, ETA, cancel; trace-progress.js), then predicted vs measured effect per
// supernode as a plot, with the groups whose measurement disagrees flagged, and the circuit's sufficiency /
// necessity. The running job's id is kept per graph in sessionStorage, so leaving the graph and coming back (or a
// reload) picks the job up again, and a finished one shows its result again.
import { h, clear, svgEl, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { errorSentence } from "./messages.js";
import { progressView, watchJob } from "./trace-progress.js";

const storageKey = (slug) => `cb-validation:${slug}`;
const FINAL = new Set(["done", "failed", "cancelled"]);

export function createValidation(slug) {
  const el = h("div", { class: "validation-panel", id: "validation-panel" });
  const view = progressView("validation", {
    rows: (st) => `${st.done ?? 0} of ${st.total} interventions`, // one forward pass each (engine/validation.py)
    phase: (st) => (st.phase === "validate" ? "validating" : st.phase),
    log: "__cbValidationLog",
  });
  const cancel = h("button", { class: "btn small", id: "validation-cancel", type: "button", text: "Cancel" });
  // job: the JobView while it runs (starting: until the server answers); result: the ValidationResult; note /
  // error: how the last one ended.
  const local = { job: null, starting: false, result: null, note: "", error: "" };
  let stopWatch = () => {};
  let alive = true; // a POST or a status answered after the panel left starts no stream (the id is kept)
  const remember = (id) => (id ? sessionStorage.setItem(storageKey(slug), id) : sessionStorage.removeItem(storageKey(slug)));
  const draw = () => render(el, local, { view, cancel, start });

  const ended = (patch) => {
    Object.assign(local, { job: null, starting: false, ...patch });
    if (!patch.result) remember(null);
    draw();
  };
  const onStatus = (st) => {
    if (st.status === "done") {
      view.show(st);
      api.jobResult(st).then((result) => ended({ result }), (e) => ended({ error: `The validation finished, but its result could not be read. ${e.message}` }));
    } else if (st.status === "failed") ended({ error: `The validation failed. ${st.error ? errorSentence(500, st.error) : ""}`.trim() });
    else if (st.status === "cancelled") ended({ note: "The validation was cancelled." });
    else view.show(st);
  };
  const follow = (job) => {
    Object.assign(local, { job, starting: false, result: null, note: "", error: "" });
    remember(job.id);
    view.reset();
    draw();
    onStatus(job);
    if (alive && !FINAL.has(job.status)) stopWatch = watchJob(job.id, onStatus, { onError: (e) => ended({ error: e.message }) });
  };
  async function start() {
    Object.assign(local, { starting: true, result: null, note: "", error: "" });
    draw();
    remember(null); // the last validation's job is forgotten, whatever this one becomes
    try {
      const res = await api.validate(slug, { supernodes: store.state.supernodes });
      if (res.job) follow(res.job);
      else ended({ result: res }); // a server that answers at once (a cached or a quick validation)
    } catch (e) {
      ended({ error: `The validation could not start. ${e.message}` });
    }
  }
  cancel.addEventListener("click", () => local.job && api.cancelJob(local.job.id).catch((e) => (view.error.textContent = e.message)));

  resume(sessionStorage.getItem(storageKey(slug)), follow, () => remember(null));
  draw();
  const un = store.subscribe(["supernodes"], draw);
  const destroy = () => {
    alive = false;
    un();
    stopWatch();
  };
  return { el, destroy };
}

/** The job of an earlier visit, if the server still has it: followed (running), or its end shown. */
function resume(id, follow, forget) {
  if (!id) return;
  api.job(id).then(follow, forget);
}

function render(el, local, { view, cancel, start }) {
  const sn = store.state.supernodes;
  const running = !!local.job || local.starting;
  clear(el).append(h("div", { class: "row" },
    h("button", {
      class: "btn small", id: "validate-btn", disabled: !sn.length || running, onclick: start,
      text: running ? "Validating…" : `Validate supernodes (${sn.length})`,
      title: "Ablate and steer every supernode and compare the measured change of the target logits with the graph's prediction",
    }),
    local.job ? cancel : null));
  if (local.job) el.append(h("div", { class: "validation-job", id: "validation-job" }, view.progress, view.phase, view.error));
  if (local.note) el.append(h("p", { class: "muted", id: "validation-note", text: local.note }));
  if (local.error) el.append(h("p", { class: "error", id: "validation-failed", role: "alert", text: local.error }));
  if (local.result) el.append(validationBox(local.result));
}

function validationBox(v) {
  const flagged = v.groups.filter((g) => !g.agrees);
  const c = v.circuit || {};
  const eff = (e) => (e ? `${fmt(e.predicted_effect, 3)} predicted, ${fmt((e.measured_effect || {})[v.measured_mode], 3)} measured` : "—");
  return h("div", { class: "validation", id: "validation" },
    h("h3", { text: `Predicted vs measured (ablation, ${v.measured_mode} attention)` }),
    validationPlot(v.groups),
    h("ul", { class: "validation-list", id: "validation-list" }, v.groups.map((g) => h("li", { class: g.agrees ? "agrees" : "disagrees" },
      h("strong", { text: g.label }),
      ` predicted ${fmt(g.predicted_effect, 3)} · measured ${fmt(g.measured_effect, 3)}`,
      g.agrees ? null : h("span", { class: "flag", text: " ⚠ disagrees" })))),
    h("p", { class: "muted small-note", id: "validation-circuit" },
      `Circuit — sufficiency (all else ablated): ${eff(c.sufficiency)}; necessity (all supernodes ablated): ${eff(c.necessity)}.`),
    flagged.length ? h("p", { class: "error", id: "validation-flagged", text: `${flagged.length} group(s) disagree with the graph's prediction.` }) : null);
}

/** Scatter of predicted (x) vs measured (y) effect per group, the diagonal where they agree. */
function validationPlot(groups) {
  const [W, H, P] = [340, 230, 44];
  const vals = groups.flatMap((g) => [g.predicted_effect, g.measured_effect]);
  const lo = Math.min(0, ...vals);
  const hi = Math.max(1e-9, ...vals);
  const pad = (hi - lo) * 0.08 || 1;
  const [a, b] = [lo - pad, hi + pad];
  const sx = (x) => P + ((x - a) / (b - a)) * (W - P - 10);
  const sy = (y) => H - P - ((y - a) / (b - a)) * (H - P - 10);
  const svg = svgEl("svg", { id: "validation-plot", viewBox: `0 0 ${W} ${H}`, class: "validation-plot", role: "img", "aria-label": "Predicted vs measured" });
  svg.append(svgEl("line", { x1: sx(a), y1: sy(a), x2: sx(b), y2: sy(b), class: "diag" }));
  svg.append(svgEl("line", { x1: P, y1: H - P, x2: W - 10, y2: H - P, class: "axis" }));
  svg.append(svgEl("line", { x1: P, y1: 10, x2: P, y2: H - P, class: "axis" }));
  const text = (x, y, s, cls, anchor = "middle") => {
    const t = svgEl("text", { x, y, class: cls, "text-anchor": anchor });
    t.textContent = s;
    svg.append(t);
  };
  text((P + W) / 2, H - 6, "predicted effect (Δ target logit)", "axis-label");
  const yl = svgEl("text", { x: 0, y: 0, class: "axis-label", "text-anchor": "middle", transform: `translate(10 ${(H - P) / 2}) rotate(-90)` });
  yl.textContent = "measured effect";
  svg.append(yl);
  text(P, H - P + 12, fmt(a, 2), "tick", "middle");
  text(W - 10, H - P + 12, fmt(b, 2), "tick", "end");
  text(P - 3, sy(a), fmt(a, 2), "tick", "end");
  text(P - 3, sy(b) + 8, fmt(b, 2), "tick", "end");
  for (const g of groups) {
    const [x, y] = [sx(g.predicted_effect), sy(g.measured_effect)];
    svg.append(svgEl("circle", { cx: x, cy: y, r: 5, class: `vpoint ${g.agrees ? "agrees" : "disagrees"}` }));
    text(x + 7, y + 4, g.label, `vlabel ${g.agrees ? "" : "disagrees"}`, "start");
  }
  return svg;
}
