// Link graph panel: canvas edge layers (all / highlighted / hover) under SVG nodes; nearest-node hit-testing
// with a quadtree on the container (no per-node listeners). Hover never goes through the store.
import { quadtree } from "d3-quadtree";
import { select } from "d3-selection";
import { h, clear, showToken, SVG_NS } from "./dom.js";
import { logitText } from "./graph-data.js";
import { layoutGrid, MARGIN } from "./linkgraph-layout.js";
import { colors } from "./theme.js";
import { rasterFaint, strokeChunked } from "./edges-raster.js";
import { fillTooltip } from "./linkgraph-tooltip.js";

const HIT_RADIUS = 30;
const BUCKETS = [
  { max: 0.05, alpha: 0.1, width: 0.5 },
  { max: 0.15, alpha: 0.22, width: 0.8 },
  { max: 0.4, alpha: 0.4, width: 1.3 },
  { max: Infinity, alpha: 0.65, width: 2 },
];

export function createLinkGraph(container, { onClick, onHover }) {
  return new LinkGraph(container, onClick, onHover);
}

class LinkGraph {
  #container;
  #wrap;
  #inner;
  #svg;
  #tooltip;
  #cvAll;
  #cvHl;
  #cvHover;
  #onHover;
  #graph = null;
  #vis = null;
  #emask = null; // links to draw (edgeMask in graph-data.js); null = all
  #lay = null;
  #qt = null;
  #hoverIdx = -1;
  #clickedIdx = -1;
  #pinned = new Set();
  #selected = new Set();
  #nodeEls = null; // index -> element
  #drawn = 0; // links on the edge canvas (tests, bench)
  #clerps = {};

  constructor(container, onClick, onHover) {
    this.#container = container;
    this.#onHover = onHover;
    this.#wrap = h("div", { class: "lg-wrap", tabindex: "0", "aria-label": "Link graph" });
    this.#inner = h("div", { class: "lg-inner" });
    this.#cvAll = h("canvas", { class: "lg-canvas lg-all" });
    this.#cvHl = h("canvas", { class: "lg-canvas lg-hl" });
    this.#cvHover = h("canvas", { class: "lg-canvas lg-hover" });
    this.#svg = select(this.#inner).append("svg").attr("class", "lg-svg").node();
    this.#inner.insertBefore(this.#cvHover, this.#svg);
    this.#inner.insertBefore(this.#cvHl, this.#cvHover);
    this.#inner.insertBefore(this.#cvAll, this.#cvHl);
    this.#tooltip = h("div", { class: "tooltip", role: "tooltip", hidden: true });
    this.#wrap.append(this.#inner, this.#tooltip);
    clear(container).append(this.#wrap);

    this.#inner.addEventListener("mousemove", (ev) => this.#setHover(this.#pick(ev)));
    this.#inner.addEventListener("mouseleave", () => this.#setHover(-1));
    this.#inner.addEventListener("click", (ev) => {
      const i = this.#pick(ev);
      if (onClick) onClick(i >= 0 ? this.#graph.nodes[i].id : null, ev);
    });
  }

  render(g, visMask, edgeMask = this.#emask) {
    this.#graph = g;
    this.#vis = visMask;
    this.#emask = edgeMask;
    const width = this.#wrap.clientWidth || 900;
    // A resized or fullscreen panel has a height of its own: rows share it. Otherwise rows have a natural height.
    const fit = !!this.#container.closest(".sized, .fullscreen");
    const lay = layoutGrid(g, visMask, width, fit ? this.#wrap.clientHeight : null);
    this.#lay = lay;
    this.#inner.style.width = `${lay.width}px`;
    this.#inner.style.height = `${lay.height}px`;
    this.#drawn = drawEdges(this.#cvAll, lay, g.links, visMask, edgeMask);
    this.#drawNodes();
    const pts = [];
    for (const node of g.nodes) if (visMask[node.i]) pts.push(node.i);
    this.#qt = quadtree(pts, (i) => lay.x[i], (i) => lay.y[i]);
    this.#hoverIdx = -1;
    this.#tooltip.hidden = true;
    sizeCanvas(this.#cvHover, lay.width, lay.height);
    this.#drawHighlight();
  }

  relayout() {
    if (this.#graph) this.render(this.#graph, this.#vis);
  }

  /** Show only the links with mask[j] = 1 (null: all); nodes and layout stay. */
  setEdgeMask(mask) {
    this.#emask = mask;
    if (!this.#lay) return;
    this.#drawn = drawEdges(this.#cvAll, this.#lay, this.#graph.links, this.#vis, mask);
    this.#drawHighlight();
    const h0 = this.#hoverIdx;
    this.#hoverIdx = -1;
    if (h0 >= 0) this.#setHover(h0, false);
  }

  hoveredId() {
    return this.#graph && this.#hoverIdx >= 0 ? this.#graph.nodes[this.#hoverIdx].id : null;
  }

  drawnLinks() {
    return this.#drawn;
  }

  setClicked(id) {
    const node = id && this.#graph ? this.#graph.byId.get(id) : null;
    this.#clickedIdx = node ? node.i : -1;
    if (this.#lay) {
      this.#drawHighlight();
      this.#applyClasses();
    }
  }

  setPinned(ids) {
    this.#pinned = new Set(ids);
    this.#applyClasses();
  }

  setSelected(ids) {
    this.#selected = new Set(ids);
    this.#applyClasses();
  }

  setClerps(c) {
    this.#clerps = c || {};
  }

  /** Hover driven from elsewhere (e.g. the connections list). */
  hoverId(id) {
    const node = id && this.#graph ? this.#graph.byId.get(id) : null;
    this.#setHover(node && this.#vis[node.i] ? node.i : -1, false);
  }

  /** For tests and the bench: page coordinates of a node. */
  nodePoint(id) {
    const node = this.#graph && this.#graph.byId.get(id);
    if (!node || !this.#vis[node.i]) return null;
    const r = this.#inner.getBoundingClientRect();
    return { x: r.left + this.#lay.x[node.i], y: r.top + this.#lay.y[node.i] };
  }

  #drawNodes() {
    const lay = this.#lay;
    const s = select(this.#svg).attr("width", lay.width).attr("height", lay.height);
    s.selectAll("*").remove();
    drawAxes(s, lay, this.#graph.tokens);
    this.#nodeEls = drawNodeMarks(s, this.#graph, this.#vis, lay);
    drawLogitLabels(s, this.#graph, this.#vis, lay);
    this.#applyClasses();
  }

  #applyClasses() {
    if (!this.#nodeEls) return;
    for (const el of this.#svg.querySelectorAll(".node.pinned, .node.clicked, .node.selected")) {
      el.classList.remove("pinned", "clicked", "selected");
    }
    for (const id of this.#pinned) this.#addClass(id, "pinned");
    for (const id of this.#selected) this.#addClass(id, "selected");
    const clicked = this.#clickedIdx >= 0 && this.#nodeEls[this.#clickedIdx];
    if (clicked) clicked.classList.add("clicked");
  }

  #addClass(id, cls) {
    const node = this.#graph && this.#graph.byId.get(id);
    if (node && this.#nodeEls[node.i]) this.#nodeEls[node.i].classList.add(cls);
  }

  #drawHighlight() {
    const ctx = sizeCanvas(this.#cvHl, this.#lay.width, this.#lay.height);
    const i = this.#clickedIdx;
    const on = i >= 0 && this.#vis[i];
    this.#cvAll.classList.toggle("dimmed", on);
    if (on) strokeNodeEdges(ctx, this.#graph, this.#lay, this.#vis, this.#emask, i, 1, 0.85);
  }

  #setHover(i, fromPointer = true) {
    if (i === this.#hoverIdx) return;
    this.#hoverIdx = i;
    const cv = this.#cvHover;
    const ctx = cv.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cv.width, cv.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const report = fromPointer && this.#onHover;
    if (i < 0) {
      this.#tooltip.hidden = true;
      if (report) this.#onHover(null);
      return;
    }
    strokeNodeEdges(ctx, this.#graph, this.#lay, this.#vis, this.#emask, i, 0.8, 0.9);
    // The ring lives on the hover canvas: hovering never touches the (large) node SVG, so it is not repainted.
    hoverRing(ctx, this.#lay.x[i], this.#lay.y[i]);
    this.#showTooltip(i);
    if (report) this.#onHover(this.#graph.nodes[i].id);
  }

  #showTooltip(i) {
    const wrap = this.#wrap;
    fillTooltip(this.#tooltip, this.#graph.nodes[i], this.#clerps);
    // The tooltip lives inside the scrolling wrap, so content coordinates, kept within the visible part.
    const x = this.#lay.x[i];
    const left = Math.max(wrap.scrollLeft, Math.min(x + 14, wrap.scrollLeft + wrap.clientWidth - 260));
    this.#tooltip.style.transform = `translate(${left}px, ${this.#lay.y[i] + 12}px)`;
  }

  #pick(ev) {
    if (!this.#qt) return -1;
    const r = this.#inner.getBoundingClientRect();
    const found = this.#qt.find(ev.clientX - r.left, ev.clientY - r.top, HIT_RADIUS);
    return found === undefined ? -1 : found;
  }
}

function sizeCanvas(cv, w, hgt) {
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(w * dpr);
  cv.height = Math.round(hgt * dpr);
  cv.style.width = `${w}px`;
  cv.style.height = `${hgt}px`;
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

/**
 * Each link's drawing bucket: (negative ? 4 : 0) + its |pctInput| bucket, or 255 when not drawn (an end hidden, or
 * masked out). Returns {bucket, counts (links per bucket), drawn}.
 */
function bucketLinks(links, vis, emask) {
  const { src, dst, pct, n } = links;
  const bucket = new Uint8Array(n);
  const counts = new Int32Array(8);
  let drawn = 0;
  for (let j = 0; j < n; j++) {
    if (!vis[src[j]] || !vis[dst[j]] || (emask && !emask[j])) {
      bucket[j] = 255;
      continue;
    }
    const p = pct[j];
    const a = Math.abs(p);
    let b = 0;
    while (a > BUCKETS[b].max) b++;
    bucket[j] = (p < 0 ? 4 : 0) + b;
    counts[bucket[j]]++;
    drawn++;
  }
  return { bucket, counts, drawn };
}

/** All visible links onto the edge canvas; returns how many. */
function drawEdges(cv, lay, links, vis, emask) {
  const ctx = sizeCanvas(cv, lay.width, lay.height);
  const c = colors();
  const { bucket, counts, drawn } = bucketLinks(links, vis, emask);
  const { x, y } = lay;
  const dpr = window.devicePixelRatio || 1;
  // Faint buckets (hairline widths): density raster in JS; strong ones: chunked canvas strokes on top.
  const faint = new Map();
  for (let b = 0; b < 4; b++) {
    if (BUCKETS[b].width > 1) continue;
    faint.set(b, { alpha: BUCKETS[b].alpha, neg: false });
    faint.set(4 + b, { alpha: BUCKETS[b].alpha, neg: true });
  }
  rasterFaint(ctx, cv.width, cv.height, dpr, x, y, links, bucket, faint, c.pos, c.neg);
  for (let b = 0; b < 4; b++) {
    if (BUCKETS[b].width <= 1) continue;
    for (let s = 0; s < 2; s++) {
      const id = s * 4 + b;
      if (!counts[id]) continue;
      ctx.globalAlpha = BUCKETS[b].alpha;
      ctx.lineWidth = BUCKETS[b].width;
      ctx.strokeStyle = s ? c.neg : c.pos;
      strokeChunked(ctx, x, y, links, (emit) => {
        for (let j = 0; j < links.n; j++) if (bucket[j] === id) emit(j);
      });
    }
  }
  ctx.globalAlpha = 1;
  return drawn;
}

/** Row guides and labels (Emb, L0…, Lgt), token columns and their labels. */
function drawAxes(s, lay, tokens) {
  const axes = s.append("g").attr("class", "lg-axes");
  for (let row = 0; row < lay.rows; row++) {
    const yy = lay.rowY(row);
    axes.append("line").attr("class", "lg-row").attr("x1", MARGIN.left).attr("x2", lay.width - MARGIN.right)
      .attr("y1", yy).attr("y2", yy);
    const name = row === 0 ? "Emb" : row === lay.rows - 1 ? "Lgt" : `L${row - 1}`;
    axes.append("text").attr("class", "lg-ylabel").attr("x", MARGIN.left - 6).attr("y", yy + 4).text(name);
  }
  tokens.forEach((tok, ctx) => {
    const col = lay.cols[ctx];
    if (!col) return;
    const xx = col.x + col.w / 2;
    const yy = lay.height - MARGIN.bottom + 12;
    axes.append("line").attr("class", "lg-col").attr("x1", col.x).attr("x2", col.x)
      .attr("y1", MARGIN.top).attr("y2", lay.height - MARGIN.bottom);
    axes.append("text").attr("class", "lg-xlabel").attr("transform", `translate(${xx},${yy}) rotate(-35)`)
      .attr("data-ctx", ctx).text(showToken(tok)).append("title").text(`${ctx}: ${tok}`);
  });
}

/** One SVG element per visible node (features: circles; errors: diamonds; others: squares); index -> element. */
function drawNodeMarks(s, graph, vis, lay) {
  const g = s.append("g").attr("class", "lg-nodes");
  const nodeEls = new Array(graph.nodes.length);
  const frag = document.createDocumentFragment();
  for (const node of graph.nodes) {
    if (!vis[node.i]) continue;
    const el = nodeMark(node, lay.x[node.i], lay.y[node.i]);
    el.setAttribute("class", `node ${node.kind}${node.isTarget ? " target" : ""}${node.synthetic ? " diff" : ""}`);
    el.setAttribute("data-id", node.id);
    nodeEls[node.i] = el;
    frag.appendChild(el);
  }
  g.node().appendChild(frag);
  return nodeEls;
}

function nodeMark(node, xx, yy) {
  if (node.kind === "feature") {
    const el = document.createElementNS(SVG_NS, "circle");
    el.setAttribute("cx", xx);
    el.setAttribute("cy", yy);
    el.setAttribute("r", 3.5);
    return el;
  }
  const size = node.kind === "error" ? 6 : 8;
  const el = document.createElementNS(SVG_NS, "rect");
  el.setAttribute("x", xx - size / 2);
  el.setAttribute("y", yy - size / 2);
  el.setAttribute("width", size);
  el.setAttribute("height", size);
  if (node.kind === "error") el.setAttribute("transform", `rotate(45 ${xx} ${yy})`);
  return el;
}

/** Logit token labels on top, truncated to the room between neighbouring logits (hover shows the rest). */
function drawLogitLabels(s, graph, vis, lay) {
  const fill = colors().text;
  const logits = graph.nodes.filter((n) => n.kind === "logit" && vis[n.i]).sort((a, b) => lay.x[a.i] - lay.x[b.i]);
  logits.forEach((node, k) => {
    const gap = Math.min(
      k > 0 ? lay.x[node.i] - lay.x[logits[k - 1].i] : 80,
      k < logits.length - 1 ? lay.x[logits[k + 1].i] - lay.x[node.i] : 80,
    );
    const room = Math.floor(gap / 6.5);
    if (room < 2) return;
    let text = node.short || showToken(logitText(node));
    if (text.length > room) text = `${text.slice(0, room - 1)}…`;
    s.append("text").attr("class", "lg-logit-label").attr("x", lay.x[node.i]).attr("y", lay.y[node.i] - 9)
      .attr("fill", fill).text(text);
  });
}

/** The visible links in and out of node i, batched into sign × 3 width bins. */
function strokeNodeEdges(ctx, graph, lay, vis, emask, i, widthScale, alpha) {
  const c = colors();
  const { adj, links } = graph;
  const { x, y } = lay;
  for (let s = 0; s < 2; s++) {
    for (let b = 0; b < 3; b++) {
      ctx.globalAlpha = alpha;
      ctx.lineWidth = (1 + 2 * b) * widthScale;
      ctx.strokeStyle = s ? c.neg : c.pos;
      strokeChunked(ctx, x, y, links, (emit) => {
        const add = (j) => {
          if ((links.w[j] < 0 ? 1 : 0) !== s) return;
          const a = Math.abs(links.pct[j]);
          const bin = a < 0.1 ? 0 : a < 0.3 ? 1 : 2;
          if (bin === b && vis[links.src[j]] && vis[links.dst[j]] && (!emask || emask[j])) emit(j);
        };
        for (let p = adj.inStart[i]; p < adj.inStart[i + 1]; p++) add(adj.inList[p]);
        for (let p = adj.outStart[i]; p < adj.outStart[i + 1]; p++) add(adj.outList[p]);
      });
    }
  }
  ctx.globalAlpha = 1;
}

function hoverRing(ctx, x, y) {
  ctx.beginPath();
  ctx.arc(x, y, 8, 0, 2 * Math.PI);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colors().text;
  ctx.stroke();
}
