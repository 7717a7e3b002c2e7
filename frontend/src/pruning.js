// Which nodes the link graph shows: pruning by influence, the feature-density filter, and the threshold a graph
// opens at.
//
// A node's `influence` is circuit-tracer's cumulative share: rank the nodes by their influence on the output
// logits, strongest first; a node's value is the share explained by it and every stronger node. The server prunes
// at node_threshold keeping every node up to AND INCLUDING the one whose cumulative share crosses it. The page
// does the same at its threshold t: a node shows when the nodes ranked before it explain less than t, i.e. when
// influence <= t, plus the first node past t. So at t = node_threshold every node the server kept is shown.

const TARGET_FEATURES = 125; // a graph opens showing about this many features (100-150) ...
const MAX_OPEN_FEATURES = 150; // ... when it has more than this many
const DEFAULT_THRESHOLD = 0.8;

const prunable = (node) => (node.kind === "feature" || node.kind === "error") && node.influence !== null;

/**
 * Rank the prunable nodes by influence (node.influenceRank: 1 = strongest; node.influenceShare: its own share,
 * the step in the cumulative value) and keep the sorted values (graph.influenceSorted) for the threshold search.
 */
export function rankInfluence(graph) {
  const ranked = graph.nodes.filter(prunable).sort((a, b) => a.influence - b.influence || a.i - b.i);
  let prev = 0;
  ranked.forEach((node, k) => {
    node.influenceRank = k + 1;
    node.influenceShare = Math.max(0, node.influence - prev);
    prev = node.influence;
  });
  graph.influenceSorted = Float64Array.from(ranked, (n) => n.influence);
  graph.nRanked = ranked.length;
}

/** The smallest influence above t among the prunable nodes (the node that crosses t), or Infinity. */
function firstPast(graph, t) {
  const a = graph.influenceSorted;
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (a[mid] <= t) lo = mid + 1;
    else hi = mid;
  }
  return lo < a.length ? a[lo] : Infinity;
}

/** A pruning test for threshold t: pruned(node) is true when the node is hidden by influence. */
export function prunedAt(graph, t) {
  const crossing = firstPast(graph, t);
  return (node) => prunable(node) && node.influence > t && node.influence > crossing;
}

export function isDense(node, density) {
  return density < 1 && node.kind === "feature" && typeof node.frequency === "number" && node.frequency > density;
}

/**
 * Which nodes are visible. Pruning hides nodes past the threshold (above); the density filter hides features whose
 * atlas activation frequency is above `density` (1 = off; features without a known frequency stay). Embeddings,
 * logits, pinned and clicked (`keepIds`) always show.
 * Returns {vis, hidden (by pruning), hiddenDense (kept by pruning, hidden by density), features (shown)}.
 */
export function visibleMask(graph, threshold, keepIds, density = 1) {
  const vis = new Uint8Array(graph.nodes.length);
  const pruned = prunedAt(graph, threshold);
  let hidden = 0;
  let hiddenDense = 0;
  let features = 0;
  for (const node of graph.nodes) {
    const always = node.kind === "embedding" || node.kind === "logit" || keepIds.has(node.id);
    const cut = !always && pruned(node);
    const dense = !always && !cut && isDense(node, density);
    vis[node.i] = cut || dense ? 0 : 1;
    if (cut) hidden++;
    if (dense) hiddenDense++;
    if (vis[node.i] && node.kind === "feature") features++;
  }
  return { vis, hidden, hiddenDense, features };
}

/**
 * The threshold a graph opens at: min(0.8, its node threshold), lowered when that would show more than
 * MAX_OPEN_FEATURES features, to the value that shows about TARGET_FEATURES (rounded up to 0.001).
 * Returns {threshold, lowered}.
 */
export function openingThreshold(graph) {
  const cap = Math.min(DEFAULT_THRESHOLD, graph.nodeThreshold ?? DEFAULT_THRESHOLD);
  const feats = graph.nodes.filter((n) => n.kind === "feature" && prunable(n)).map((n) => n.influence)
    .sort((a, b) => a - b);
  const pruned = prunedAt(graph, cap);
  const shown = graph.nodes.filter((n) => n.kind === "feature" && !pruned(n)).length;
  if (shown <= MAX_OPEN_FEATURES || feats.length < TARGET_FEATURES) return { threshold: cap, lowered: false };
  const t = Math.ceil(feats[TARGET_FEATURES - 1] * 1000) / 1000;
  return { threshold: Math.min(cap, t), lowered: t < cap };
}
