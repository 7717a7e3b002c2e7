// Layers × tokens grid layout for the link graph (embeddings at the bottom, logits on top).

export const MARGIN = { left: 44, right: 12, top: 26, bottom: 76 };
// A quiet position shrinks to this, so a 64-token prompt fits 1280 px; longer ones (the limit is 256) scroll
// sideways, the layer names kept in view (linkgraph.js).
const MIN_COL = 14;

/**
 * Column widths that fill `avail`: proportional to `weights`, except that no column is narrower than MIN_COL (the
 * quiet positions give their room to the busy ones). Wider than `avail` only when MIN_COL each does not fit.
 */
function columnWidths(weights, avail) {
  const n = weights.length;
  if (n * MIN_COL >= avail) return weights.map(() => MIN_COL);
  const narrow = new Array(n).fill(false);
  let unit = 0;
  for (let changed = true; changed;) {
    let free = avail;
    let wsum = 0;
    for (let c = 0; c < n; c++) {
      if (narrow[c]) free -= MIN_COL;
      else wsum += weights[c];
    }
    unit = free / wsum;
    changed = false;
    for (let c = 0; c < n; c++) {
      if (narrow[c] || weights[c] * unit >= MIN_COL) continue;
      narrow[c] = true;
      changed = true;
    }
  }
  return weights.map((w, c) => (narrow[c] ? MIN_COL : w * unit));
}

/**
 * Positions the visible nodes. Column widths grow with the busiest cell of each token (sqrt), so a token with
 * many active features gets more room and quiet ones shrink; the grid scrolls horizontally only when even
 * MIN_COL per position does not fit.
 * With `containerHeight` the rows share that height (resized or fullscreen panel); else `budget` (the room left in
 * the window) bounds their natural height, so the whole graph is on screen when the window allows it.
 * Returns {x: Float32Array, y: Float32Array, width, height, cols: [{x, w}], rowY(row), rows}.
 */
export function layoutGrid(graph, vis, containerWidth, containerHeight = null, budget = 560 + MARGIN.top + MARGIN.bottom) {
  const nTok = Math.max(1, graph.tokens.length, ...graph.nodes.map((n) => n.ctx + 1));
  const rows = graph.nLayers + 2;
  const cell = new Map(); // ctx*rows+row -> [node index]
  for (const node of graph.nodes) {
    if (!vis[node.i]) continue;
    const key = node.ctx * rows + node.row;
    let arr = cell.get(key);
    if (!arr) cell.set(key, (arr = []));
    arr.push(node.i);
  }
  const cmax = new Array(nTok).fill(1);
  for (const [key, arr] of cell) {
    const ctx = Math.floor(key / rows);
    // Logit squares (and their numbers) need about twice a feature's room.
    const need = key % rows === rows - 1 ? 2 * arr.length : arr.length;
    if (need > cmax[ctx]) cmax[ctx] = need;
  }
  const weights = cmax.map((c) => Math.max(1, Math.sqrt(c)));
  const avail = Math.max(200, containerWidth - MARGIN.left - MARGIN.right);
  const cols = [];
  let cx = MARGIN.left;
  for (const w of columnWidths(weights, avail)) {
    cols.push({ x: cx, w });
    cx += w;
  }
  const width = Math.max(containerWidth, cx + MARGIN.right);
  // Natural row height, or the rows share a given height (a resized / fullscreen panel; scrolls below 12 px).
  const rowH = containerHeight
    ? Math.max(12, Math.min(90, (containerHeight - MARGIN.top - MARGIN.bottom) / rows))
    : Math.max(14, Math.min(34, (budget - MARGIN.top - MARGIN.bottom) / rows));
  const height = MARGIN.top + rows * rowH + MARGIN.bottom;
  const rowY = (row) => MARGIN.top + (rows - 1 - row + 0.5) * rowH;

  const n = graph.nodes.length;
  const x = new Float32Array(n).fill(NaN);
  const y = new Float32Array(n).fill(NaN);
  const nodes = graph.nodes;
  for (const [key, arr] of cell) {
    const ctx = Math.floor(key / rows);
    const row = key % rows;
    const col = cols[ctx];
    // Stable order inside a cell: logits by probability, features by layer-index, errors last.
    arr.sort((a, b) => order(nodes[a]) - order(nodes[b]) || nodes[a].id.localeCompare(nodes[b].id));
    const pad = Math.min(6, col.w * 0.1);
    const step = (col.w - 2 * pad) / arr.length;
    const yy = rowY(row);
    for (let k = 0; k < arr.length; k++) {
      x[arr[k]] = col.x + pad + (k + 0.5) * step;
      y[arr[k]] = yy;
    }
  }
  return { x, y, width, height, cols, rowY, rows };
}

function order(node) {
  if (node.kind === "logit") return -(node.tokenProb || 0);
  if (node.kind === "error") return 1e9;
  return node.featIndex ?? 0;
}
