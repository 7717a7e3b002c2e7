// Circuit analysis under the subgraph (issue 13): suggested supernodes shown as a preview that the user accepts
// all, some, or edits (accepted groups become ordinary supernodes in the view state, so they are shared and
// saved with views), and validation by intervention: predicted vs measured effect of each supernode, plotted,
// with the groups whose measurement disagrees flagged.
import { h, clear, svgEl, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { acceptSupernodes } from "./actions.js";

export function createAnalysis(el, slug) {
  const local = { preview: null, validation: null, busy: "", error: "" };
  const redraw = () => render(el, slug, local, redraw);
  const un = store.subscribe(["graph", "supernodes", "pinnedIds"], redraw);
  redraw();
  return un;
}

function render(el, slug, local, redraw) {
  clear(el).append(h("h2", { text: "Circuit analysis" }));
  if (!store.state.graph) return;
  const run = (what, call, key) => {
    Object.assign(local, { busy: what, error: "" });
    redraw();
    call().then((r) => (local[key] = r)).catch((e) => (local.error = e.message))
      .finally(() => { local.busy = ""; redraw(); });
  };
  el.append(suggestRow(slug, local, run), validateRow(slug, local, run));
  if (local.busy) el.append(h("p", { class: "muted", id: "analysis-busy", text: `${local.busy}…` }));
  if (local.error) el.append(h("p", { class: "error", id: "analysis-error", role: "alert", text: local.error }));
  if (local.preview) el.append(previewBox(local, redraw));
  if (local.validation) el.append(validationBox(local.validation));
}

function suggestRow(slug, local, run) {
  const gran = h("input", { id: "suggest-granularity", type: "range", min: 0, max: 1, step: 0.05, value: 0.5, "aria-label": "Granularity" });
  const pinnedOnly = h("input", { id: "suggest-pinned-only", type: "checkbox", checked: store.state.pinnedIds.length > 0 });
  const go = () => run("Suggesting supernodes", () => api.suggestSupernodes(slug, {
    granularity: Number(gran.value), pinned_only: pinnedOnly.checked,
    ...(pinnedOnly.checked ? { pinned_ids: store.state.pinnedIds } : {}),
  }).then((r) => r.supernodes.map((sn, k) => ({ label: sn[0], members: sn.slice(1), score: r.scores[k], keep: true }))), "preview");
  return h("div", { class: "row" },
    h("button", { class: "btn small", id: "suggest-btn", disabled: !!local.busy, onclick: go, text: "Suggest supernodes" }),
    h("label", { class: "muted", title: "0: a few large groups … 1: every feature alone" }, "few ", gran, " many"),
    h("label", { class: "muted" }, pinnedOnly, " pinned only"));
}

/** The suggestions, each with a keep box, an editable label, its size and score; accept the kept ones. */
function previewBox(local, redraw) {
  const rows = local.preview.map((s) => {
    const keep = h("input", { type: "checkbox", checked: s.keep, "aria-label": `keep ${s.label}` });
    keep.addEventListener("change", () => (s.keep = keep.checked));
    const label = h("input", { class: "suggest-label", value: s.label, "aria-label": "Supernode label" });
    label.addEventListener("input", () => (s.label = label.value));
    return h("li", { class: "suggest-item" }, keep, label,
      h("span", { class: "muted", text: ` ${s.members.length} nodes · score ${fmt(s.score, 2)}`, title: "share of the logits' influence through the group" }));
  });
  const accept = (all) => {
    const chosen = local.preview.filter((s) => all || s.keep);
    acceptSupernodes(chosen.map((s) => [s.label.trim() || "group", ...s.members]));
    local.preview = null;
    redraw();
  };
  const dismiss = () => { local.preview = null; redraw(); };
  if (!rows.length) rows.push(h("li", { class: "muted", text: "No groups found: try more nodes or a lower granularity." }));
  return h("div", { class: "suggest-preview", id: "suggest-preview" },
    h("h3", { text: `Suggested supernodes (${local.preview.length}) — preview` }),
    h("ul", { class: "suggest-list" }, rows),
    h("div", { class: "row" },
      h("button", { class: "btn small primary", id: "suggest-accept-all", onclick: () => accept(true), text: "Accept all" }),
      h("button", { class: "btn small", id: "suggest-accept", onclick: () => accept(false), text: "Accept checked" }),
      h("button", { class: "btn small", id: "suggest-dismiss", onclick: dismiss, text: "Discard" })));
}

function validateRow(slug, local, run) {
  const sn = store.state.supernodes;
  const go = () => run("Validating by intervention", () => api.validate(slug, { supernodes: sn }), "validation");
  return h("div", { class: "row" },
    h("button", {
      class: "btn small", id: "validate-btn", disabled: !sn.length || !!local.busy, onclick: go, text: `Validate supernodes (${sn.length})`,
      title: "Ablate and steer every supernode and compare the measured change of the target logits with the graph's prediction",
    }));
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
