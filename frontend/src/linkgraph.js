// Link graph panel: canvas edge layers (all / highlighted / hover) under SVG nodes; nearest-node hit-testing
// with a quadtree on the container (no per-node listeners). Hover never goes through the store.
import { quadtree } from "d3-quadtree";
import { select } from "d3-selection";
import { h, clear, showToken } from "./dom.js";
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
  const wrap = h("div", { class: "lg-wrap", tabindex: "0", "aria-label": "Link graph" });
  const inner = h("div", { class: "lg-inner" });
  const cvAll = h("canvas", { class: "lg-canvas lg-all" });
  const cvHl = h("canvas", { class: "lg-canvas lg-hl" });
  const cvHover = h("canvas", { class: "lg-canvas lg-hover" });
  const svg = select(inner).append("svg").attr("class", "lg-svg").node();
  inner.insertBefore(cvHover, svg);
  inner.insertBefore(cvHl, cvHover);
  inner.insertBefore(cvAll, cvHl);
  const tooltip = h("div", { class: "tooltip", role: "tooltip", hidden: true });
  wrap.append(inner, tooltip);
  clear(container).append(wrap);

  let graph = null;
  let vis = null;
  let emask = null; // links to draw (edgeMask in graph-data.js); null = all
  let lay = null;
  let qt = null;
  let hoverIdx = -1;
  let clickedIdx = -1;
  let pinned = new Set();
  let selected = new Set();
  let nodeEls = null; // index -> element
  let drawn = 0; // links on the edge canvas (tests, bench)

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

  function render(g, visMask, edgeMask = emask) {
    graph = g;
    vis = visMask;
    emask = edgeMask;
    const width = wrap.clientWidth || 900;
    // A resized or fullscreen panel has a height of its own: rows share it. Otherwise rows have a natural height.
    const fit = !!container.closest(".sized, .fullscreen");
    lay = layoutGrid(graph, vis, width, fit ? wrap.clientHeight : null);
    inner.style.width = `${lay.width}px`;
    inner.style.height = `${lay.height}px`;
    drawEdges();
    drawNodes();
    const pts = [];
    for (const node of graph.nodes) if (vis[node.i]) pts.push(node.i);
    qt = quadtree(pts, (i) => lay.x[i], (i) => lay.y[i]);
    hoverIdx = -1;
    tooltip.hidden = true;
    sizeCanvas(cvHover, lay.width, lay.height);
    drawHighlight();
  }

  function drawEdges() {
    const ctx = sizeCanvas(cvAll, lay.width, lay.height);
    const c = colors();
    const { src, dst, pct, n } = graph.links;
    const bucket = new Uint8Array(n);
    const counts = new Int32Array(8);
    drawn = 0;
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
    const { x, y } = lay;
    const dpr = window.devicePixelRatio || 1;
    // Faint buckets (hairline widths): density raster in JS; strong ones: chunked canvas strokes on top.
    const faint = new Map();
    for (let b = 0; b < 4; b++) {
      if (BUCKETS[b].width > 1) continue;
      faint.set(b, { alpha: BUCKETS[b].alpha, neg: false });
      faint.set(4 + b, { alpha: BUCKETS[b].alpha, neg: true });
    }
    rasterFaint(ctx, cvAll.width, cvAll.height, dpr, x, y, graph.links, bucket, faint, c.pos, c.neg);
    for (let b = 0; b < 4; b++) {
      if (BUCKETS[b].width <= 1) continue;
      for (let s = 0; s < 2; s++) {
        const id = s * 4 + b;
        if (!counts[id]) continue;
        ctx.globalAlpha = BUCKETS[b].alpha;
        ctx.lineWidth = BUCKETS[b].width;
        ctx.strokeStyle = s ? c.neg : c.pos;
        strokeChunked(ctx, x, y, graph.links, (emit) => {
          for (let j = 0; j < n; j++) if (bucket[j] === id) emit(j);
        });
      }
    }
    ctx.globalAlpha = 1;
  }

  function drawNodes() {
    const s = select(svg).attr("width", lay.width).attr("height", lay.height);
    s.selectAll("*").remove();
    const c = colors();
    // Row guides + labels.
    const axes = s.append("g").attr("class", "lg-axes");
    for (let row = 0; row < lay.rows; row++) {
      const yy = lay.rowY(row);
      axes.append("line").attr("class", "lg-row").attr("x1", MARGIN.left).attr("x2", lay.width - MARGIN.right)
        .attr("y1", yy).attr("y2", yy);
      const name = row === 0 ? "Emb" : row === lay.rows - 1 ? "Lgt" : `L${row - 1}`;
      axes.append("text").attr("class", "lg-ylabel").attr("x", MARGIN.left - 6).attr("y", yy + 4).text(name);
    }
    graph.tokens.forEach((tok, ctx) => {
      const col = lay.cols[ctx];
      if (!col) return;
      const xx = col.x + col.w / 2;
      const yy = lay.height - MARGIN.bottom + 12;
      axes.append("line").attr("class", "lg-col").attr("x1", col.x).attr("x2", col.x)
        .attr("y1", MARGIN.top).attr("y2", lay.height - MARGIN.bottom);
      axes.append("text").attr("class", "lg-xlabel").attr("transform", `translate(${xx},${yy}) rotate(-35)`)
        .attr("data-ctx", ctx).text(showToken(tok)).append("title").text(`${ctx}: ${tok}`);
    });
    const g = s.append("g").attr("class", "lg-nodes");
    nodeEls = new Array(graph.nodes.length);
    const frag = document.createDocumentFragment();
    const NS = "http://www.w3.org/2000/svg";
    for (const node of graph.nodes) {
      if (!vis[node.i]) continue;
      const xx = lay.x[node.i];
      const yy = lay.y[node.i];
      let el;
      if (node.kind === "feature") {
        el = document.createElementNS(NS, "circle");
        el.setAttribute("cx", xx);
        el.setAttribute("cy", yy);
        el.setAttribute("r", 3.5);
      } else {
        const size = node.kind === "error" ? 6 : 8;
        el = document.createElementNS(NS, "rect");
        el.setAttribute("x", xx - size / 2);
        el.setAttribute("y", yy - size / 2);
        el.setAttribute("width", size);
        el.setAttribute("height", size);
        if (node.kind === "error") el.setAttribute("transform", `rotate(45 ${xx} ${yy})`);
      }
      el.setAttribute("class", `node ${node.kind}${node.isTarget ? " target" : ""}${node.synthetic ? " diff" : ""}`);
      el.setAttribute("data-id", node.id);
      nodeEls[node.i] = el;
      frag.appendChild(el);
    }
    g.node().appendChild(frag);
    // Logit token labels on top, truncated to the room between neighbouring logits (hover shows the rest).
    const logits = graph.nodes.filter((n) => n.kind === "logit" && vis[n.i]).sort((a, b) => lay.x[a.i] - lay.x[b.i]);
    logits.forEach((node, k) => {
      const gap = Math.min(
        k > 0 ? lay.x[node.i] - lay.x[logits[k - 1].i] : 80,
        k < logits.length - 1 ? lay.x[logits[k + 1].i] - lay.x[node.i] : 80,
      );
      const room = Math.floor(gap / 6.5);
      if (room < 2) return;
      const m = /Output\s+"([\s\S]*)"/.exec(node.clerp || "");
      let text = node.short || showToken(m ? m[1] : node.id);
      if (text.length > room) text = `${text.slice(0, room - 1)}…`;
      s.append("text").attr("class", "lg-logit-label").attr("x", lay.x[node.i]).attr("y", lay.y[node.i] - 9)
        .attr("fill", c.text).text(text);
    });
    applyClasses();
  }

  function applyClasses() {
    if (!nodeEls) return;
    for (const el of svg.querySelectorAll(".node.pinned, .node.clicked, .node.selected")) {
      el.classList.remove("pinned", "clicked", "selected");
    }
    for (const id of pinned) addClass(id, "pinned");
    for (const id of selected) addClass(id, "selected");
    if (clickedIdx >= 0 && nodeEls[clickedIdx]) nodeEls[clickedIdx].classList.add("clicked");
  }

  function addClass(id, cls) {
    const node = graph && graph.byId.get(id);
    if (node && nodeEls[node.i]) nodeEls[node.i].classList.add(cls);
  }

  function strokeEdges(ctx, i, widthScale, alpha) {
    const c = colors();
    const { adj, links } = graph;
    const { x, y } = lay;
    // Batch into sign × 3 width bins.
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

  function drawHighlight() {
    const ctx = sizeCanvas(cvHl, lay.width, lay.height);
    const on = clickedIdx >= 0 && vis[clickedIdx];
    cvAll.classList.toggle("dimmed", on);
    if (on) strokeEdges(ctx, clickedIdx, 1, 0.85);
  }

  function setHover(i, fromPointer = true) {
    if (i === hoverIdx) return;
    hoverIdx = i;
    const ctx = cvHover.getContext("2d");
    const dpr = window.devicePixelRatio || 1;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.clearRect(0, 0, cvHover.width, cvHover.height);
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    if (i < 0) {
      tooltip.hidden = true;
      if (fromPointer && onHover) onHover(null);
      return;
    }
    strokeEdges(ctx, i, 0.8, 0.9);
    // The ring lives on the hover canvas: hovering never touches the (large) node SVG, so it is not repainted.
    ctx.beginPath();
    ctx.arc(lay.x[i], lay.y[i], 8, 0, 2 * Math.PI);
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = colors().text;
    ctx.stroke();
    showTooltip(i);
    if (fromPointer && onHover) onHover(graph.nodes[i].id);
  }

  let clerps = {};
  function showTooltip(i) {
    fillTooltip(tooltip, graph, graph.nodes[i], clerps);
    // The tooltip lives inside the scrolling wrap, so content coordinates, kept within the visible part.
    const left = Math.max(wrap.scrollLeft, Math.min(lay.x[i] + 14, wrap.scrollLeft + wrap.clientWidth - 260));
    tooltip.style.transform = `translate(${left}px, ${lay.y[i] + 12}px)`;
  }

  function pick(ev) {
    if (!qt) return -1;
    const r = inner.getBoundingClientRect();
    const found = qt.find(ev.clientX - r.left, ev.clientY - r.top, HIT_RADIUS);
    return found === undefined ? -1 : found;
  }

  inner.addEventListener("mousemove", (ev) => setHover(pick(ev)));
  inner.addEventListener("mouseleave", () => setHover(-1));
  inner.addEventListener("click", (ev) => {
    const i = pick(ev);
    if (onClick) onClick(i >= 0 ? graph.nodes[i].id : null, ev);
  });

  return {
    render,
    relayout() {
      if (graph) render(graph, vis);
    },
    /** Show only the links with mask[j] = 1 (null: all); nodes and layout stay. */
    setEdgeMask(mask) {
      emask = mask;
      if (!lay) return;
      drawEdges();
      drawHighlight();
      const h0 = hoverIdx;
      hoverIdx = -1;
      if (h0 >= 0) setHover(h0, false);
    },
    hoveredId: () => (graph && hoverIdx >= 0 ? graph.nodes[hoverIdx].id : null),
    drawnLinks: () => drawn,
    setClicked(id) {
      const node = id && graph ? graph.byId.get(id) : null;
      clickedIdx = node ? node.i : -1;
      if (lay) {
        drawHighlight();
        applyClasses();
      }
    },
    setPinned(ids) {
      pinned = new Set(ids);
      applyClasses();
    },
    setSelected(ids) {
      selected = new Set(ids);
      applyClasses();
    },
    setClerps(c) {
      clerps = c || {};
    },
    /** Hover driven from elsewhere (e.g. the connections list). */
    hoverId(id) {
      const node = id && graph ? graph.byId.get(id) : null;
      setHover(node && vis[node.i] ? node.i : -1, false);
    },
    /** For tests and the bench: page coordinates of a node. */
    nodePoint(id) {
      const node = graph && graph.byId.get(id);
      if (!node || !vis[node.i]) return null;
      const r = inner.getBoundingClientRect();
      return { x: r.left + lay.x[node.i], y: r.top + lay.y[node.i] };
    },
    element: wrap,
  };
}
