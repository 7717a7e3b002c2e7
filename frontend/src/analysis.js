// Circuit analysis under the subgraph (issue 13): suggested supernodes shown as a preview that the user accepts
// all, some, or edits (accepted groups become ordinary supernodes in the view state, so they are shared and
// saved with views), and validation by intervention (validation.js: a job with progress, then predicted vs
// measured effect of each supernode, plotted, with the groups whose measurement disagrees flagged).
import { h, clear, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { acceptSupernodes } from "./actions.js";
import { createValidation } from "./validation.js";

export function createAnalysis(el, slug) {
  const local = { preview: null, busy: "", error: "" };
  const validation = createValidation(slug); // its own element, kept across redraws (a running job's progress)
  const redraw = () => render(el, slug, local, redraw, validation.el);
  const un = store.subscribe(["graph", "supernodes", "pinnedIds"], redraw);
  redraw();
  return () => {
    un();
    validation.destroy();
  };
}

function render(el, slug, local, redraw, validationEl) {
  clear(el).append(h("h2", { text: "Circuit analysis" }));
  if (!store.state.graph) return;
  const run = (what, call, key) => {
    Object.assign(local, { busy: what, error: "" });
    redraw();
    call().then((r) => (local[key] = r)).catch((e) => (local.error = e.message))
      .finally(() => { local.busy = ""; redraw(); });
  };
  el.append(suggestRow(slug, local, run));
  if (local.busy) el.append(h("p", { class: "muted", id: "analysis-busy", text: `${local.busy}…` }));
  if (local.error) el.append(h("p", { class: "error", id: "analysis-error", role: "alert", text: local.error }));
  if (local.preview) el.append(previewBox(local, redraw));
  el.append(validationEl);
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
