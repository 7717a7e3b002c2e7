// Logit difference: a synthetic target node "target logit − contrast logit" (circuit-tracer's addVirtualDiff), made
// in the browser from the links already loaded. Its incoming edge from each source s is
//     w(s → diff) = w(s → target) − w(s → contrast)        (a missing edge counts as 0; exact zeros are dropped)
// so its inputs are what pushes the target up *relative to* the contrast. It sits in the logit row at the target's
// position, has id DIFF_ID, and shows up in the link graph, the connections panel and the subgraph like any node.
import { h, showToken, fmt } from "./dom.js";
import { store } from "./state.js";
import { indexLinks, logitText } from "./graph-data.js";

const DIFF_ID = "logit-diff";

function inputs(graph, i, into, sign) {
  const { adj, links } = graph;
  for (let p = adj.inStart[i]; p < adj.inStart[i + 1]; p++) {
    const j = adj.inList[p];
    into.set(links.src[j], (into.get(links.src[j]) || 0) + sign * links.w[j]);
  }
}

/**
 * Add the synthetic node for spec = [targetId, contrastId] to `graph` in place (replacing any earlier one), or
 * remove it (spec null / invalid). Returns true when the node is there afterwards.
 */
export function applyLogitDiff(graph, spec) {
  if (!graph.base) graph.base = { n: graph.nodes.length, links: graph.links, adj: graph.adj };
  const { base } = graph;
  if (graph.nodes.length > base.n) {
    graph.nodes.length = base.n;
    graph.byId.delete(DIFF_ID);
  }
  graph.links = base.links;
  graph.adj = base.adj;
  graph.logitDiff = null;
  const a = spec && graph.byId.get(spec[0]);
  const b = spec && graph.byId.get(spec[1]);
  if (!a || !b || a === b || a.kind !== "logit" || b.kind !== "logit") return false;

  const diff = new Map(); // source node index -> weight
  inputs(graph, a.i, diff, 1);
  inputs(graph, b.i, diff, -1);
  const di = base.n;
  const k0 = base.links.n;
  const src = new Int32Array(k0 + diff.size);
  const dst = new Int32Array(k0 + diff.size);
  const w = new Float32Array(k0 + diff.size);
  src.set(base.links.src);
  dst.set(base.links.dst);
  w.set(base.links.w);
  let k = k0;
  for (const [s, v] of diff) {
    if (v === 0) continue;
    src[k] = s;
    dst[k] = di;
    w[k] = v;
    k++;
  }
  const { links, adj } = indexLinks(di + 1, src.subarray(0, k), dst.subarray(0, k), w.subarray(0, k));
  const ta = showToken(logitText(a));
  const tb = showToken(logitText(b));
  const node = {
    i: di, id: DIFF_ID, kind: "logit", layer: a.layer, row: a.row, ctx: a.ctx, token: a.token,
    influence: null, activation: null, tokenProb: (a.tokenProb || 0) - (b.tokenProb || 0), isTarget: false,
    clerp: `Logit diff: "${ta}" − "${tb}"`, short: "Δ", synthetic: true,
  };
  graph.nodes.push(node);
  graph.byId.set(DIFF_ID, node);
  graph.links = links;
  graph.adj = adj;
  graph.logitDiff = [a.id, b.id];
  return true;
}

/** Set (and select) or clear the logit difference of the current graph. */
function setLogitDiff(spec) {
  const s = store.state;
  const ok = applyLogitDiff(s.graph, spec);
  if (ok) {
    store.set({ logitDiff: s.graph.logitDiff, clickedId: DIFF_ID });
    return;
  }
  const drop = (ids) => ids.filter((id) => id !== DIFF_ID);
  store.set({
    logitDiff: null,
    clickedId: s.clickedId === DIFF_ID ? null : s.clickedId,
    pinnedIds: drop(s.pinnedIds),
    supernodes: s.supernodes.map((sn) => [sn[0], ...drop(sn.slice(1))]).filter((sn) => sn.length > 1),
  });
}

/** Two selects (target, contrast) and a clear button; hidden when the graph has fewer than two logits. */
export function createLogitDiffControl(graph) {
  const logits = graph.nodes.filter((n) => n.kind === "logit" && !n.synthetic)
    .sort((x, y) => (y.tokenProb || 0) - (x.tokenProb || 0));
  const options = (what) => [h("option", { value: "", text: what }),
    ...logits.map((n) => h("option", { value: n.id, text: `${showToken(logitText(n))} (p=${fmt(n.tokenProb, 3)})` }))];
  const target = h("select", { id: "diff-target", "aria-label": "Target logit" }, options("target…"));
  const contrast = h("select", { id: "diff-contrast", "aria-label": "Contrast logit" }, options("contrast…"));
  const clearBtn = h("button", { class: "btn small", id: "diff-clear", title: "Remove the logit difference", text: "×" });
  const apply = () => {
    if (target.value && contrast.value && target.value !== contrast.value) setLogitDiff([target.value, contrast.value]);
  };
  target.addEventListener("change", apply);
  contrast.addEventListener("change", apply);
  clearBtn.addEventListener("click", () => {
    target.value = "";
    contrast.value = "";
    setLogitDiff(null);
  });
  const sync = () => {
    const d = store.state.logitDiff;
    if (d) [target.value, contrast.value] = d;
    clearBtn.hidden = !d;
  };
  sync();
  const el = h("span", {
    class: "logit-diff", id: "logit-diff-control", hidden: logits.length < 2,
    title: "Add a node whose inputs are the target logit's inputs minus the contrast logit's (what favours one over the other)",
  }, h("span", { class: "muted", text: "Logit diff" }), target, h("span", { text: "−" }), contrast, clearBtn);
  return { el, sync };
}
