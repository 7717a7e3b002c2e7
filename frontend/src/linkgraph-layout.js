// Layers × tokens grid layout for the link graph (embeddings at the bottom, logits on top).

export const MARGIN = { left: 44, right: 12, top: 26, bottom: 64 };

/**
 * Positions the visible nodes. Column widths grow with the busiest cell of each token (sqrt), so a token with
 * many active features gets more room; the grid scrolls horizontally when it does not fit.
 * With `containerHeight` the rows share that height (resized or fullscreen panel).
 * Returns {x: Float32Array, y: Float32Array, width, height, cols: [{x, w}], rowY(row), rows}.
 */
export function layoutGrid(graph, vis, containerWidth, containerHeight = null) {
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
    if (arr.length > cmax[ctx]) cmax[ctx] = arr.length;
  }
  const weights = cmax.map((c) => Math.max(1, Math.sqrt(c)));
  const wsum = weights.reduce((a, b) => a + b, 0);
  const avail = Math.max(200, containerWidth - MARGIN.left - MARGIN.right);
  const minCol = 34;
  let unit = avail / wsum;
  if (weights.some((w) => w * unit < minCol)) unit = Math.max(unit, minCol / Math.min(...weights));
  const cols = [];
  let cx = MARGIN.left;
  for (let c = 0; c < nTok; c++) {
    const w = weights[c] * unit;
    cols.push({ x: cx, w });
    cx += w;
  }
  const width = Math.max(containerWidth, cx + MARGIN.right);
  // Natural row height, or the rows share a given height (a resized / fullscreen panel; scrolls below 12 px).
  const rowH = containerHeight
    ? Math.max(12, Math.min(90, (containerHeight - MARGIN.top - MARGIN.bottom) / rows))
    : Math.max(14, Math.min(34, 560 / rows));
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
