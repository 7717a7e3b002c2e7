// Subgraph positions (viewBox units W × H): items placed by the user (store.sgPos) stay where they are; the others
// are pulled to their token (x) and layer (y) with collision avoidance. "Auto layout" is a layered layout: one row
// per layer present (embeddings at the bottom, logits on top), items in a row ordered by token, kept apart.
import { forceSimulation, forceX, forceY, forceCollide } from "d3-force";

export const W = 520;
export const H = 300;
const PAD = 24;
const GAP = 46; // minimum horizontal distance between items of one row in the layered layout

export const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));

function scales(graph) {
  const nTok = Math.max(1, graph.tokens.length);
  const rows = graph.nLayers + 2;
  return {
    sx: (ctx) => 30 + ((ctx + 0.5) / nTok) * (W - 60),
    sy: (row) => H - PAD - (row / Math.max(1, rows - 1)) * (H - 2 * PAD),
  };
}

/** [{it, x, y}] for the items; fixed ones from `sgPos` ({id: [x, y]}). */
export function placeItems(graph, items, sgPos) {
  const { sx, sy } = scales(graph);
  const sim = items.map((it) => {
    const p = sgPos[it.id];
    const d = { it, x: p ? p[0] : sx(it.ctx), y: p ? p[1] : sy(it.row), tx: sx(it.ctx), ty: sy(it.row) };
    if (p) {
      d.fx = p[0];
      d.fy = p[1];
    }
    return d;
  });
  if (sim.some((d) => d.fx === undefined)) {
    forceSimulation(sim)
      .force("x", forceX((d) => d.tx).strength(0.3))
      .force("y", forceY((d) => d.ty).strength(0.6))
      .force("c", forceCollide(16))
      .stop()
      .tick(120);
  }
  for (const d of sim) {
    d.x = clamp(d.x, 8, W - 8);
    d.y = clamp(d.y, 8, H - 8);
  }
  return sim;
}

/** Layered layout: {id: [x, y]} for every item (integers). */
export function layeredLayout(graph, items) {
  const { sx } = scales(graph);
  const rowOf = (it) => Math.round(it.row);
  const rows = [...new Set(items.map(rowOf))].sort((a, b) => a - b);
  const yOf = (rank) => (rows.length === 1 ? H / 2 : H - PAD - (rank / (rows.length - 1)) * (H - 2 * PAD));
  const out = {};
  rows.forEach((row, rank) => {
    const inRow = items.filter((it) => rowOf(it) === row)
      .sort((a, b) => a.ctx - b.ctx || String(a.label).localeCompare(String(b.label)));
    const xs = inRow.map((it) => sx(it.ctx));
    for (let k = 1; k < xs.length; k++) xs[k] = Math.max(xs[k], xs[k - 1] + GAP);
    const span = xs.length ? xs[xs.length - 1] - xs[0] : 0;
    if (span > W - 2 * PAD) {
      // too many for the width at GAP: spread evenly over it
      xs.forEach((_, k) => (xs[k] = PAD + (k * (W - 2 * PAD)) / Math.max(1, xs.length - 1)));
    } else if (xs.length && xs[xs.length - 1] > W - PAD) {
      const shift = xs[xs.length - 1] - (W - PAD);
      xs.forEach((_, k) => (xs[k] -= shift));
    }
    inRow.forEach((it, k) => (out[it.id] = [Math.round(xs[k]), Math.round(yOf(rank))]));
  });
  return out;
}
