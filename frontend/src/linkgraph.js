// Link graph panel: canvas edge layers (background / highlighted / hover; linkgraph-edges.js) under SVG nodes,
// nearest-node hit-testing with a quadtree on the container (no per-node listeners), and the logits listed in a
// column beside the plot (linkgraph-logits.js). Hover never goes through the store.
import { quadtree } from "d3-quadtree";
import { select } from "d3-selection";
import { h, clear, showToken, SVG_NS } from "./dom.js";
import { layoutGrid, MARGIN } from "./linkgraph-layout.js";
import { colors } from "./theme.js";
import { drawEdges, sizeCanvas, strokeNodeEdges } from "./linkgraph-edges.js";
import { createLogitList, logitOrder } from "./linkgraph-logits.js";
import { fillTooltip } from "./linkgraph-tooltip.js";

const HIT_RADIUS = 30;
const LABEL_CHARS = 12; // token labels under the plot are cut to this (the full token is in their title)

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
  #logits;
  #onHover;
  #graph = null;
  #vis = null;
  #emask = null; // links to draw (edgeMask in graph-data.js); null = all
  #allLinks = false; // draw every visible link in the background, not only the strongest
  #lay = null;
  #qt = null;
  #hoverIdx = -1;
  #clickedIdx = -1;
  #pinned = new Set();
  #selected = new Set();
  #nodeEls = null; // index -> element
  #drawn = 0; // links on the background canvas (tests, bench)
  #clerps = {};
  #scrolled = false; // the first layout wider than the view starts scrolled to the right end (the logits)
  #yAxis = null; // {g, before, after}: the layer names and out-of-view notes that follow the horizontal scroll

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
    this.#logits = createLogitList({
      onClick: (id, ev) => onClick && onClick(id, ev),
      onHover: (id) => this.hoverId(id),
    });
    clear(container).append(this.#wrap, this.#logits.el);

    this.#wrap.addEventListener("scroll", () => this.#followScroll(), { passive: true });
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
    this.#logits.render(g, visMask);
    const width = this.#wrap.clientWidth || 900;
    // A resized or fullscreen panel has a height of its own: rows share it. Otherwise rows have a natural height.
    const fit = !!this.#container.closest(".sized, .fullscreen");
    const lay = layoutGrid(g, visMask, width, fit ? this.#wrap.clientHeight : null, this.#heightBudget());
    this.#lay = lay;
    this.#inner.style.width = `${lay.width}px`;
    this.#inner.style.height = `${lay.height}px`;
    this.#drawn = drawEdges(this.#cvAll, lay, g.links, visMask, edgeMask, this.#allLinks);
    this.#drawNodes();
    const pts = [];
    for (const node of g.nodes) if (visMask[node.i]) pts.push(node.i);
    this.#qt = quadtree(pts, (i) => lay.x[i], (i) => lay.y[i]);
    this.#hoverIdx = -1;
    this.#tooltip.hidden = true;
    sizeCanvas(this.#cvHover, lay.width, lay.height);
    this.#drawHighlight();
    if (!this.#scrolled && lay.width > this.#wrap.clientWidth) {
      this.#wrap.scrollLeft = lay.width;
      this.#scrolled = true;
    }
    this.#followScroll();
  }

  /** The natural height the window leaves below the top of the plot (at least 380 px). */
  #heightBudget() {
    const top = this.#wrap.getBoundingClientRect().top + window.scrollY;
    return Math.max(380, window.innerHeight - top - 12);
  }

  relayout() {
    if (this.#graph) this.render(this.#graph, this.#vis);
  }

  /** Show only the links with mask[j] = 1 (null: all); nodes and layout stay. */
  setEdgeMask(mask) {
    this.#emask = mask;
    this.#redrawEdges();
  }

  /** Draw every visible link in the background (true) or only the strongest (false, the default). */
  setAllLinks(on) {
    if (this.#allLinks === !!on) return;
    this.#allLinks = !!on;
    this.#redrawEdges();
  }

  #redrawEdges() {
    if (!this.#lay) return;
    this.#drawn = drawEdges(this.#cvAll, this.#lay, this.#graph.links, this.#vis, this.#emask, this.#allLinks);
    this.#drawHighlight();
    const h0 = this.#hoverIdx;
    this.#hoverIdx = -1;
    if (h0 >= 0) this.#setHover(h0, false);
  }

  hoveredId() {
    return this.#graph && this.#hoverIdx >= 0 ? this.#graph.nodes[this.#hoverIdx].id : null;
  }

  /** Links on the background canvas. */
  drawnLinks() {
    return this.#drawn;
  }

  setClicked(id) {
    const node = id && this.#graph ? this.#graph.byId.get(id) : null;
    this.#clickedIdx = node ? node.i : -1;
    this.#logits.setClicked(node ? node.id : null);
    if (this.#lay) {
      this.#drawHighlight();
      this.#applyClasses();
    }
  }

  setPinned(ids) {
    this.#pinned = new Set(ids);
    this.#applyClasses();
    if (this.#lay) this.#drawHighlight();
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
    this.#yAxis = drawLayerAxis(s, lay);
    this.#followScroll();
    this.#applyClasses();
  }

  /** A grid wider than the view (a long prompt): the layer names stay at the left edge as it scrolls, and the
   * top margin says how many positions lie out of view on either side. */
  #followScroll() {
    const { scrollLeft: left, clientWidth: w } = this.#wrap;
    if (!this.#yAxis || !this.#lay) return;
    this.#yAxis.g.setAttribute("transform", `translate(${left} 0)`);
    const cols = this.#lay.cols;
    const before = cols.filter((c) => c.x + c.w / 2 < left + MARGIN.left).length;
    const after = cols.filter((c) => c.x + c.w / 2 > left + w - MARGIN.right).length;
    this.#yAxis.before.textContent = before ? `◀ ${before} earlier position${before > 1 ? "s" : ""} (scroll sideways)` : "";
    this.#yAxis.after.textContent = after ? `${after} later position${after > 1 ? "s" : ""} ▶` : "";
    this.#yAxis.after.setAttribute("x", w - MARGIN.right);
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

  /** The clicked and pinned nodes' links, strongly; the background dims while a node is clicked. */
  #drawHighlight() {
    const ctx = sizeCanvas(this.#cvHl, this.#lay.width, this.#lay.height);
    const i = this.#clickedIdx;
    const on = i >= 0 && this.#vis[i];
    this.#cvAll.classList.toggle("dimmed", on);
    const idxs = [];
    for (const id of this.#pinned) {
      const node = this.#graph.byId.get(id);
      if (node && this.#vis[node.i] && node.i !== i) idxs.push(node.i);
    }
    if (idxs.length) strokeNodeEdges(ctx, this.#graph, this.#lay, this.#vis, this.#emask, idxs, 0.7, 0.6);
    if (on) strokeNodeEdges(ctx, this.#graph, this.#lay, this.#vis, this.#emask, [i], 1, 0.85);
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
    this.#logits.setHovered(i >= 0 ? this.#graph.nodes[i].id : null);
    if (i < 0) {
      this.#tooltip.hidden = true;
      if (report) this.#onHover(null);
      return;
    }
    strokeNodeEdges(ctx, this.#graph, this.#lay, this.#vis, this.#emask, [i], 0.8, 0.9);
    // The ring lives on the hover canvas: hovering never touches the (large) node SVG, so it is not repainted.
    hoverRing(ctx, this.#lay.x[i], this.#lay.y[i]);
    this.#showTooltip(i);
    if (report) this.#onHover(this.#graph.nodes[i].id);
  }

  #showTooltip(i) {
    const wrap = this.#wrap;
    fillTooltip(this.#tooltip, this.#graph, this.#graph.nodes[i], this.#clerps);
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

/** Row guides and labels (Emb, L0…, Lgt), token columns and their labels. */
function drawAxes(s, lay, tokens) {
  const axes = s.append("g").attr("class", "lg-axes");
  for (let row = 0; row < lay.rows; row++) {
    const yy = lay.rowY(row);
    axes.append("line").attr("class", "lg-row").attr("x1", MARGIN.left).attr("x2", lay.width - MARGIN.right)
      .attr("y1", yy).attr("y2", yy);
  }
  tokens.forEach((tok, ctx) => {
    const col = lay.cols[ctx];
    if (!col) return;
    const xx = col.x + col.w / 2;
    const yy = lay.height - MARGIN.bottom + 12;
    axes.append("line").attr("class", "lg-col").attr("x1", col.x).attr("x2", col.x)
      .attr("y1", MARGIN.top).attr("y2", lay.height - MARGIN.bottom);
    const label = showToken(tok);
    axes.append("text").attr("class", "lg-xlabel").attr("transform", `translate(${xx},${yy}) rotate(-50)`)
      .attr("data-ctx", ctx).text(label.length > LABEL_CHARS ? `${label.slice(0, LABEL_CHARS - 1)}…` : label)
      .append("title").text(`${ctx}: ${label}`);
  });
}

/** The layer names (Emb, L0…, Lgt) on a strip of the panel's colour, and the out-of-view notes (#followScroll). */
function drawLayerAxis(s, lay) {
  const g = s.append("g").attr("class", "lg-yaxis");
  // Down to the plot's bottom edge only: the token labels below lean left, under where the strip would be.
  g.append("rect").attr("class", "lg-yaxis-bg").attr("width", MARGIN.left).attr("height", lay.height - MARGIN.bottom + 4);
  for (let row = 0; row < lay.rows; row++) {
    const name = row === 0 ? "Emb" : row === lay.rows - 1 ? "Lgt" : `L${row - 1}`;
    g.append("text").attr("class", "lg-ylabel").attr("x", MARGIN.left - 6).attr("y", lay.rowY(row) + 4).text(name);
  }
  const before = g.append("text").attr("class", "lg-scroll-note").attr("id", "lg-scroll-before").attr("x", MARGIN.left).attr("y", 14);
  const after = g.append("text").attr("class", "lg-scroll-note end").attr("id", "lg-scroll-after").attr("y", 14);
  return { g: g.node(), before: before.node(), after: after.node() };
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

/** Above each logit its number in the logit list beside the plot (Δ for the logit difference), where there is room. */
function drawLogitLabels(s, graph, vis, lay) {
  const fill = colors().text;
  const order = logitOrder(graph, vis);
  const byX = [...order].sort((a, b) => lay.x[a.node.i] - lay.x[b.node.i]);
  byX.forEach(({ node, label }, k) => {
    const x = lay.x[node.i];
    const gap = Math.min(k > 0 ? x - lay.x[byX[k - 1].node.i] : 80, k < byX.length - 1 ? lay.x[byX[k + 1].node.i] - x : 80);
    if (gap < 6.5 * label.length + 5) return;
    s.append("text").attr("class", "lg-logit-label").attr("x", x).attr("y", lay.y[node.i] - 9)
      .attr("fill", fill).text(label);
  });
}

function hoverRing(ctx, x, y) {
  ctx.beginPath();
  ctx.arc(x, y, 8, 0, 2 * Math.PI);
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = colors().text;
  ctx.stroke();
}
