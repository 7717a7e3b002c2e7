// The subgraph drawing: items are boxes with their label inside (a glyph, one or two lines of text), laid out in
// layers (subgraph-layout.js); summed edges run between the boxes, width by |weight|, colour by sign, the weight
// shown on hover. Nodes are draggable with d3-drag (a drag ends in onMove(id, [x, y]), which the panel stores in
// the view state; a click without movement still selects).
import { drag } from "d3-drag";
import { select } from "d3-selection";
import { line, curveBasis } from "d3-shape";
import { svgEl, fmt } from "./dom.js";
import { togglePin, setClicked, toggleSelect, held } from "./actions.js";
import { placeItems, clamp, edgeKey, NODE_W, NODE_H } from "./subgraph-layout.js";

const LINE_CHARS = 18; // characters per label line in a box
const path = line().curve(curveBasis);
const NO_ROUTES = new Map();

/** The label in at most two lines of LINE_CHARS (words kept whole where they fit), cut with "…". */
function labelLines(label) {
  const words = String(label).split(/\s+/).filter(Boolean);
  const lines = [""];
  for (const w of words) {
    const cur = lines[lines.length - 1];
    if (!cur) lines[lines.length - 1] = w;
    else if (cur.length + 1 + w.length <= LINE_CHARS) lines[lines.length - 1] = `${cur} ${w}`;
    else if (lines.length < 2) lines.push(w);
    else {
      lines[1] = `${cur} ${w}`;
      break;
    }
  }
  return lines.map((l, k) => (l.length > LINE_CHARS || (k === 1 && words.join(" ").length > lines.join(" ").length)
    ? `${l.slice(0, LINE_CHARS - 1)}…` : l));
}

export function drawSubgraphSvg({ items, edges, selected, clickedId, sgPos, onMove }) {
  const { sim, width, height, routes } = placeItems(items, edges, sgPos);
  const pos = new Map(sim.map((d) => [d.it.id, d]));
  const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, class: "sg-svg", role: "img", "aria-label": "Subgraph" });
  // A big subgraph shrinks with the panel down to 60% of its natural size, then scrolls (labels stay readable).
  svg.style.minWidth = `${Math.round(width * 0.6)}px`;
  const edgeLayer = svgEl("g", { class: "sg-edges" });
  const weightTip = svgEl("g", { class: "sg-weight", visibility: "hidden" });
  const ends = drawEdges(edgeLayer, edges, pos, routes, weightTip);
  svg.append(edgeLayer);
  for (const d of sim) {
    const g = itemGroup(d, { selected, clickedId, sgPos });
    select(g).datum(d).call(dragger(g, ends.get(d.it.id) || [], { pos, size: [width, height] }, (p) => onMove(d.it.id, p)));
    svg.appendChild(g);
  }
  svg.append(weightTip);
  const scroll = document.createElement("div");
  scroll.className = "sg-scroll";
  scroll.appendChild(svg);
  return scroll;
}

/** One item: its box (glyph + label lines), title, click handling. */
function itemGroup(d, { selected, clickedId, sgPos }) {
  const it = d.it;
  const cls = `sg-node${it.supernode ? " supernode" : ` ${it.node.kind}`}${selected.has(it.id) ? " selected" : ""}`
    + `${it.id === clickedId ? " clicked" : ""}${sgPos[it.id] ? " placed" : ""}`;
  const g = svgEl("g", { class: cls, transform: `translate(${d.x},${d.y})`, "data-id": it.id });
  g.appendChild(svgEl("rect", { class: "sg-box", x: -NODE_W / 2, y: -NODE_H / 2, width: NODE_W, height: NODE_H, rx: 5 }));
  const gx = -NODE_W / 2 + 9;
  g.appendChild(it.supernode ? svgEl("rect", { class: "sg-glyph", x: gx - 5, y: -4, width: 10, height: 8, rx: 2 })
    : svgEl("circle", { class: "sg-glyph", cx: gx, cy: 0, r: 4.5 }));
  const lines = labelLines(it.supernode ? `${it.label} (${it.members.length})` : it.label);
  lines.forEach((text, k) => {
    const t = svgEl("text", { class: "sg-label", x: gx + 8, y: (k - (lines.length - 1) / 2) * 11 + 3.5 });
    t.textContent = text;
    g.appendChild(t);
  });
  const title = svgEl("title");
  title.textContent = it.supernode ? `${it.label}: ${it.members.map((m) => m.id).join(", ")}` : `${it.label} (${it.id})`;
  g.appendChild(title);
  g.addEventListener("click", (ev) => {
    if (ev.shiftKey || held.g || it.supernode) toggleSelect(it.id);
    else if (ev.ctrlKey || ev.metaKey) togglePin(it.id);
    else setClicked(it.id);
  });
  return g;
}

/** An edge's points: its route when both ends are where the layout put them, else a curve between the boxes. */
function edgePoints(e, pos, routes) {
  const a = pos.get(e.a.id);
  const b = pos.get(e.b.id);
  const route = routes.get(edgeKey(e));
  const atPlace = (d) => Math.abs(d.x - d.tx) < 1 && Math.abs(d.y - d.ty) < 1;
  const up = b.y <= a.y; // the usual direction: from a lower layer up to a higher one
  const from = [a.x, a.y + (up ? -NODE_H / 2 : NODE_H / 2)];
  const to = [b.x, b.y + (up ? NODE_H / 2 : -NODE_H / 2)];
  if (route && atPlace(a) && atPlace(b)) return [from, ...route.slice(1, -1), to];
  const mid = (from[1] + to[1]) / 2;
  return [from, [from[0], mid], [to[0], mid], to];
}

/** The summed edges as paths; returns item id -> [edge] (the edges a drag of that item redraws). */
function drawEdges(layer, edges, pos, routes, tip) {
  const ends = new Map();
  const maxW = Math.max(1e-9, ...edges.map((e) => Math.abs(e.w)));
  for (const e of edges) {
    const d = path(edgePoints(e, pos, routes));
    const cls = e.w < 0 ? "neg" : "pos";
    const el = svgEl("path", { d, class: `sg-edge ${cls}`, "stroke-width": 0.8 + 5 * Math.sqrt(Math.abs(e.w) / maxW) });
    const hit = svgEl("path", { d, class: "sg-edge-hit", "data-edge": `${e.a.id}→${e.b.id}` });
    const title = svgEl("title");
    title.textContent = `${e.a.label} → ${e.b.label}: ${fmt(e.w)}`;
    hit.appendChild(title);
    hit.addEventListener("mouseenter", () => showWeight(tip, hit, e));
    hit.addEventListener("mouseleave", () => tip.setAttribute("visibility", "hidden"));
    layer.append(el, hit);
    const edge = { e, els: [el, hit] };
    for (const id of [e.a.id, e.b.id]) {
      if (!ends.has(id)) ends.set(id, []);
      ends.get(id).push(edge);
    }
  }
  return ends;
}

/** The weight of edge e at the middle of its path, on a small plate. */
function showWeight(tip, hit, e) {
  while (tip.firstChild) tip.removeChild(tip.firstChild);
  const p = hit.getPointAtLength(hit.getTotalLength() / 2);
  const text = svgEl("text", { x: p.x, y: p.y + 3.5, class: `sg-weight-text ${e.w < 0 ? "neg" : "pos"}` });
  text.textContent = `${e.w > 0 ? "+" : ""}${fmt(e.w)}`;
  const w = 7 * text.textContent.length + 8;
  tip.append(svgEl("rect", { x: p.x - w / 2, y: p.y - 8, width: w, height: 16, rx: 3 }), text);
  tip.setAttribute("visibility", "visible");
}

/**
 * d3-drag for node group g (its datum is the item's entry in `pos`): moves it and redraws its edges as curves; a
 * drag that moved ends in onEnd([x, y]).
 */
function dragger(g, edges, { pos, size: [width, height] }, onEnd) {
  return drag()
    .on("start", () => g.classList.add("dragging"))
    .on("drag", (ev, p) => {
      p.x = clamp(ev.x, NODE_W / 2, width - NODE_W / 2);
      p.y = clamp(ev.y, NODE_H / 2, height - NODE_H / 2);
      p.moved = true;
      g.setAttribute("transform", `translate(${p.x},${p.y})`);
      for (const { e, els } of edges) {
        const d = path(edgePoints(e, pos, NO_ROUTES));
        for (const el of els) el.setAttribute("d", d);
      }
    })
    .on("end", (ev, p) => {
      g.classList.remove("dragging");
      if (p.moved) onEnd([Math.round(p.x), Math.round(p.y)]);
    });
}
