// The subgraph drawing: summed edges between items, nodes draggable with d3-drag (a drag ends in onMove(id, [x, y]),
// which the panel stores in the view state; a click without movement still selects). Labels of close neighbours in
// a row alternate below / above so they do not overprint.
import { drag } from "d3-drag";
import { select } from "d3-selection";
import { svgEl, fmt } from "./dom.js";
import { togglePin, setClicked, toggleSelect, held } from "./actions.js";
import { W, H, placeItems, clamp } from "./subgraph-layout.js";

const trunc = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function drawSubgraphSvg(graph, { items, edges, selected, clickedId, sgPos, onMove }) {
  const sim = placeItems(graph, items, sgPos);
  const pos = new Map(sim.map((d) => [d.it.id, d]));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "sg-svg", role: "img", "aria-label": "Subgraph" });
  const ends = drawEdgeLines(svg, edges, pos);
  const above = labelSides(sim);
  for (const d of sim) {
    const it = d.it;
    const g = svgEl("g", {
      class: `sg-node${it.supernode ? " supernode" : ` ${it.node.kind}`}${selected.has(it.id) ? " selected" : ""}${it.id === clickedId ? " clicked" : ""}${sgPos[it.id] ? " placed" : ""}`,
      transform: `translate(${d.x},${d.y})`, "data-id": it.id,
    });
    g.appendChild(it.supernode ? svgEl("rect", { x: -12, y: -8, width: 24, height: 16, rx: 5 }) : svgEl("circle", { r: 6 }));
    const below = it.supernode ? 20 : 16;
    const text = svgEl("text", { y: above.has(it.id) ? -11 : below, class: "sg-label" });
    text.textContent = trunc(it.label, 22);
    g.appendChild(text);
    const title = svgEl("title");
    title.textContent = it.supernode ? `${it.label}: ${it.members.map((m) => m.id).join(", ")}` : `${it.label} (${it.id})`;
    g.appendChild(title);
    g.addEventListener("click", (ev) => {
      if (ev.shiftKey || held.g || it.supernode) toggleSelect(it.id);
      else if (ev.ctrlKey || ev.metaKey) togglePin(it.id);
      else setClicked(it.id);
    });
    select(g).datum(d).call(dragger(g, ends.get(it.id) || [], (p) => onMove(it.id, p)));
    svg.appendChild(g);
  }
  return svg;
}

/** The summed edges as lines (width by |w|); returns item id -> [[line, "1" | "2"]] (the line ends it moves). */
function drawEdgeLines(svg, edges, pos) {
  const ends = new Map();
  const addEnd = (id, line, which) => {
    if (!ends.has(id)) ends.set(id, []);
    ends.get(id).push([line, which]);
  };
  const maxW = Math.max(1e-9, ...edges.map((e) => Math.abs(e.w)));
  for (const e of edges) {
    const a = pos.get(e.a.id);
    const b = pos.get(e.b.id);
    const line = svgEl("line", {
      x1: a.x, y1: a.y, x2: b.x, y2: b.y, class: `sg-edge ${e.w < 0 ? "neg" : "pos"}`,
      "stroke-width": 0.5 + 4 * Math.sqrt(Math.abs(e.w) / maxW),
    });
    const t = svgEl("title");
    t.textContent = `${e.a.label} → ${e.b.label}: ${fmt(e.w)}`;
    line.appendChild(t);
    svg.appendChild(line);
    addEnd(e.a.id, line, "1");
    addEnd(e.b.id, line, "2");
  }
  return ends;
}

/** d3-drag for node group g: moves it and its line ends; a drag that moved ends in onEnd([x, y]). */
function dragger(g, lineEnds, onEnd) {
  return drag()
    .on("start", () => g.classList.add("dragging"))
    .on("drag", (ev, p) => {
      p.x = clamp(ev.x, 8, W - 8);
      p.y = clamp(ev.y, 8, H - 8);
      p.moved = true;
      g.setAttribute("transform", `translate(${p.x},${p.y})`);
      for (const [line, which] of lineEnds) {
        line.setAttribute(`x${which}`, p.x);
        line.setAttribute(`y${which}`, p.y);
      }
    })
    .on("end", (ev, p) => {
      g.classList.remove("dragging");
      if (p.moved) onEnd([Math.round(p.x), Math.round(p.y)]);
    });
}

/** Ids whose label goes above the node: every other one of a run of close neighbours at the same height. */
function labelSides(sim) {
  const sorted = [...sim].sort((a, b) => Math.round(a.y / 8) - Math.round(b.y / 8) || a.x - b.x);
  const above = new Set();
  for (let k = 1; k < sorted.length; k++) {
    const p = sorted[k - 1];
    const d = sorted[k];
    if (Math.abs(d.y - p.y) < 14 && d.x - p.x < 90 && !above.has(p.it.id)) above.add(d.it.id);
  }
  return above;
}
