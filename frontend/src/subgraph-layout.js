// Subgraph positions (viewBox units). The subgraph is laid out in layers with d3-dag's Sugiyama layout: one row per
// model layer present (embeddings at the bottom, logits on top; the rows are known, so no layering solver), items in
// a row ordered by token (crossings minimised among items of one token), coordinates by d3-dag's simplex solver, and
// each edge routed through the rows it crosses, so edges pass between the labelled boxes, never over them.
// Items the user placed (store.sgPos) stay where they are; the others take their layered place, pushed off placed
// ones. "Auto layout" stores the layered places of every item.
import { graph as dagGraph, sugiyama, decrossTwoLayer, coordSimplex, coordGreedy } from "d3-dag";
import { forceSimulation, forceX, forceY, forceCollide } from "d3-force";

export const W = 520; // the viewBox is at least W × H (wider or taller when the layout needs it)
export const H = 300;
export const NODE_W = 124; // an item is a box with its label inside
export const NODE_H = 30;
const PAD = 12;
const GAP = [14, 30];
const SIMPLEX_MAX = 20; // above this many items, greedy coordinates (the simplex solver takes seconds at 60)
const SMALL = 30; // above this many items, fewer decrossing passes

export const clamp = (v, lo, hi) => Math.max(lo, Math.min(hi, v));
export const edgeKey = (e) => `${e.a.id}\u0000${e.b.id}`;

/** Each item's rank: the index of its (rounded) row among the rows present. */
function ranks(items) {
  const rowOf = (it) => Math.round(it.row);
  const rows = [...new Set(items.map(rowOf))].sort((a, b) => a - b);
  return new Map(items.map((it) => [it.id, rows.indexOf(rowOf(it))]));
}

/** Layering by the known ranks: d3-dag's layering contract (a y per node, the height returned), without a solver. */
function layerByRank(rank) {
  return (g) => {
    let top = 0;
    for (const n of g.nodes()) {
      n.y = rank.get(n.data.id);
      top = Math.max(top, n.y);
    }
    return top;
  };
}

/** Decrossing: two-layer heuristic, then a stable sort by token, so a row reads in prompt order. */
const byToken = (passes) => (layers) => {
  decrossTwoLayer().passes(passes)(layers);
  const ctxOf = (n) => (n.data.role === "node" ? n.data.node.data.ctx
    : (n.data.link.source.data.ctx + n.data.link.target.data.ctx) / 2);
  for (const layer of layers) layer.sort((a, b) => ctxOf(a) - ctxOf(b));
};

/** d3-dag over the items; only edges that go up a rank constrain it (the others are drawn, not laid out). */
function runSugiyama(items, edges, rank) {
  const g = dagGraph();
  const node = new Map(items.map((it) => [it.id, g.node(it)]));
  const laid = new Map();
  for (const e of edges) {
    if (rank.get(e.a.id) < rank.get(e.b.id)) laid.set(edgeKey(e), g.link(node.get(e.a.id), node.get(e.b.id), e));
  }
  const layout = sugiyama()
    .layering(layerByRank(rank))
    .decross(byToken(items.length > SMALL ? 2 : 8))
    .coord(items.length > SIMPLEX_MAX ? coordGreedy() : coordSimplex())
    .nodeSize([NODE_W, NODE_H])
    .gap(GAP);
  const { width, height } = layout(g);
  return { node, laid, width, height };
}

let cached = { key: null, layout: null }; // the panel redraws on every click: lay out again only when it changed

/**
 * The layered layout: {pos: Map id -> [x, y] (integers), routes: Map edgeKey -> [[x, y], ...] (centre to centre),
 * width, height (of the viewBox)}. Lower rows lower down; the drawing is centred in a viewBox of at least W × H.
 */
export function layeredLayout(items, edges) {
  const key = JSON.stringify([items.map((it) => [it.id, it.row, it.ctx]), edges.map((e) => [e.a.id, e.b.id])]);
  if (cached.key !== key) cached = { key, layout: computeLayout(items, edges) };
  return cached.layout;
}

function computeLayout(items, edges) {
  const pos = new Map();
  const routes = new Map();
  if (!items.length) return { pos, routes, width: W, height: H };
  const { node, laid, width, height } = runSugiyama(items, edges, ranks(items));
  const vw = Math.max(W, width + 2 * PAD);
  const vh = Math.max(H, height + 2 * PAD);
  const ox = (vw - width) / 2;
  const oy = (vh - height) / 2;
  const at = (x, y) => [Math.round(ox + x), Math.round(oy + height - y)]; // flipped: the first rank at the bottom
  for (const [id, n] of node) pos.set(id, at(n.x, n.y));
  for (const [key, link] of laid) routes.set(key, link.points.map(([x, y]) => at(x, y)));
  return { pos, routes, width: vw, height: vh };
}

/**
 * [{it, x, y, placed}] for the items, the viewBox size and the edge routes that still hold: placed items from
 * `sgPos` ({id: [x, y]}), the others at their layered place, moved off any placed box they would overlap.
 */
export function placeItems(items, edges, sgPos) {
  const lay = layeredLayout(items, edges);
  const sim = items.map((it) => {
    const p = sgPos[it.id];
    const [tx, ty] = lay.pos.get(it.id);
    const d = { it, x: p ? p[0] : tx, y: p ? p[1] : ty, tx, ty, placed: !!p };
    if (p) [d.fx, d.fy] = p;
    return d;
  });
  if (sim.some((d) => d.placed) && sim.some((d) => !d.placed)) {
    forceSimulation(sim)
      .force("x", forceX((d) => d.tx).strength(0.3))
      .force("y", forceY((d) => d.ty).strength(0.6))
      .force("c", forceCollide(NODE_W / 2 + 2))
      .stop()
      .tick(120);
  }
  for (const d of sim) {
    d.x = clamp(d.x, NODE_W / 2, lay.width - NODE_W / 2);
    d.y = clamp(d.y, NODE_H / 2, lay.height - NODE_H / 2);
  }
  return { sim, width: lay.width, height: lay.height, routes: lay.routes };
}

/** "Auto layout": {id: [x, y]} for every item, at its layered place. */
export function autoLayout(items, edges) {
  return Object.fromEntries(layeredLayout(items, edges).pos);
}
