// Scores of the pinned subgraph, computed in the browser from the graph's loaded adjacency (direct edges).
//
// P   = the pinned nodes (supernode members included), Emb = every embedding node, Err = every error node.
// For each pinned node t that has inputs (features and logits; embeddings and errors have none), with
//     S_t = Σ_s |w(s→t)|                                   (all of t's incoming edges)
//     r_t = Σ_{s ∈ (P ∪ Emb) \ Err} |w(s→t)| / S_t          (share from other pinned nodes or token embeddings)
//     e_t = Σ_{s ∈ Err} |w(s→t)| / S_t                      (share from error nodes, pinned or not)
// the subgraph's
//     replacement  = mean_t r_t        — how much of what the pinned nodes receive the subgraph itself explains
//     completeness = 1 − mean_t e_t    — how much of it comes from features/embeddings rather than errors
// The rest, 1 − r_t − e_t, comes from features outside the subgraph. These are one-step, per-node-normalised
// versions of the graph-level replacement / completeness scores (which follow influence along all paths).
import { h, fmt } from "./dom.js";

function subgraphScores(graph, ids) {
  const pinned = new Set();
  for (const id of ids) {
    const node = graph.byId.get(id);
    if (node) pinned.add(node.i);
  }
  const { adj, links, nodes } = graph;
  let rSum = 0;
  let eSum = 0;
  let targets = 0;
  for (const t of pinned) {
    let total = 0;
    let inside = 0;
    let err = 0;
    for (let p = adj.inStart[t]; p < adj.inStart[t + 1]; p++) {
      const j = adj.inList[p];
      const s = links.src[j];
      const a = Math.abs(links.w[j]);
      total += a;
      const kind = nodes[s].kind;
      if (kind === "error") err += a;
      else if (kind === "embedding" || pinned.has(s)) inside += a;
    }
    if (total <= 0) continue;
    rSum += inside / total;
    eSum += err / total;
    targets++;
  }
  if (!targets) return { replacement: null, completeness: null, targets: 0 };
  return { replacement: rSum / targets, completeness: 1 - eSum / targets, targets };
}

/** The scores line of the subgraph panel. */
export function scoresLine(graph, pinnedIds, supernodes) {
  const ids = new Set(pinnedIds);
  for (const sn of supernodes) sn.slice(1).forEach((id) => ids.add(id));
  const sc = subgraphScores(graph, ids);
  const title = "Over the pinned nodes that have inputs: replacement = mean share of their input (|weight|) from "
    + "other pinned nodes or embeddings; completeness = 1 − mean share from error nodes.";
  if (!sc.targets) return h("div", { class: "sg-scores muted", id: "sg-scores", title, text: "Subgraph scores: pin nodes that have inputs." });
  return h("div", { class: "sg-scores", id: "sg-scores", title },
    h("span", { class: "muted", text: "Scores " }),
    h("span", { class: "score", id: "sg-replacement", "data-value": sc.replacement, text: `replacement ${fmt(sc.replacement)}` }),
    h("span", { class: "score", id: "sg-completeness", "data-value": sc.completeness, text: `completeness ${fmt(sc.completeness)}` }),
    h("span", { class: "muted", text: ` over ${sc.targets} node${sc.targets === 1 ? "" : "s"}` }));
}
