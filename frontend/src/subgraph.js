// Subgraph panel: pinned nodes laid out by token (x) and layer (y) with collision avoidance; supernodes drawn as
// one node at their members' mean position, edges between items summed. Select (checkbox, shift-click, or hold G
// and click), group with a label, rename by clicking a label, ungroup with ×.
import { forceSimulation, forceX, forceY, forceCollide } from "d3-force";
import { h, clear, svgEl, fmt } from "./dom.js";
import { store } from "./state.js";
import { nodeLabel } from "./graph-data.js";
import { togglePin, setClicked, toggleSelect, groupSelection, ungroup, renameSupernode, clearPinned, held } from "./actions.js";

const W = 520;
const H = 300;
const trunc = (s, n) => (s.length > n ? `${s.slice(0, n - 1)}…` : s);

export function buildItems(graph, pinnedIds, supernodes, clerps) {
  const items = [];
  const owner = new Map();
  supernodes.forEach((sn, k) => {
    const members = sn.slice(1).map((id) => graph.byId.get(id)).filter(Boolean);
    if (!members.length) return;
    const item = {
      id: `supernode-${k}`, k, label: sn[0], members, supernode: true,
      ctx: mean(members.map((m) => m.ctx)), row: mean(members.map((m) => m.row)),
    };
    members.forEach((m) => owner.set(m.i, item));
    items.push(item);
  });
  for (const id of pinnedIds) {
    const node = graph.byId.get(id);
    if (!node || owner.has(node.i)) continue;
    const item = { id, label: nodeLabel(node, clerps), members: [node], node, ctx: node.ctx, row: node.row };
    owner.set(node.i, item);
    items.push(item);
  }
  // Summed edges between items.
  const sums = new Map();
  const { adj, links } = graph;
  for (const [i, a] of owner) {
    for (let p = adj.outStart[i]; p < adj.outStart[i + 1]; p++) {
      const j = adj.outList[p];
      const b = owner.get(links.dst[j]);
      if (!b || b === a) continue;
      const key = `${a.id}\u0000${b.id}`;
      const e = sums.get(key) || { a, b, w: 0 };
      e.w += links.w[j];
      sums.set(key, e);
    }
  }
  return { items, edges: [...sums.values()] };
}

function mean(xs) {
  return xs.reduce((a, b) => a + b, 0) / xs.length;
}

export function createSubgraph(el) {
  function render() {
    const { graph, pinnedIds, supernodes, clerps, groupSelection: sel, clickedId } = store.state;
    clear(el);
    el.append(h("h2", { text: "Subgraph" }));
    if (!graph) return;
    const { items, edges } = buildItems(graph, pinnedIds, supernodes, clerps);
    if (!items.length) {
      el.append(h("p", { class: "muted", text: "Pin nodes (Ctrl/⌘-click, or P on the selected node) to build a subgraph." }));
      return;
    }
    const selected = new Set(sel);
    el.append(drawSvg(graph, items, edges, selected, clickedId));

    const label = h("input", { id: "group-label", placeholder: "supernode label", "aria-label": "Supernode label" });
    const groupBtn = h("button", { class: "btn small", id: "group-btn", disabled: sel.length < 2, text: `Group selected (${sel.length})` });
    groupBtn.addEventListener("click", () => groupSelection(label.value.trim()));
    label.addEventListener("keydown", (e) => e.key === "Enter" && groupSelection(label.value.trim()));
    el.append(h("div", { class: "row" }, label, groupBtn,
      h("button", { class: "btn small", onclick: clearPinned, text: "Clear pinned" })));

    const list = h("ul", { class: "sg-list", id: "sg-list" });
    for (const it of items) {
      const cb = h("input", { type: "checkbox", checked: selected.has(it.id), "aria-label": `select ${it.label}` });
      cb.addEventListener("change", () => toggleSelect(it.id));
      const name = h("span", { class: "sg-name", tabindex: "0", text: it.label, title: it.supernode ? "Click to rename" : "Click to select" });
      if (it.supernode) {
        name.addEventListener("click", () => startRename(name, it));
        name.addEventListener("keydown", (e) => e.key === "Enter" && startRename(name, it));
      } else {
        name.addEventListener("click", () => setClicked(it.id));
      }
      list.append(h("li", { class: `sg-item${it.supernode ? " supernode" : ""}`, "data-id": it.id },
        cb, h("span", { class: `glyph ${it.supernode ? "supernode" : it.node.kind}` }), name,
        it.supernode ? h("span", { class: "muted", text: ` (${it.members.length})` }) : null,
        h("button", {
          class: "icon-btn", title: it.supernode ? "Ungroup" : "Unpin", "aria-label": it.supernode ? "Ungroup" : "Unpin",
          onclick: () => (it.supernode ? ungroup(it.k) : togglePin(it.id)), text: "×",
        })));
    }
    el.append(list);
  }

  function startRename(span, it) {
    const inp = h("input", { class: "rename-input", value: it.label, "aria-label": "Rename supernode" });
    const done = (commit) => {
      if (commit && inp.value.trim()) renameSupernode(it.k, inp.value.trim());
      else render();
    };
    inp.addEventListener("keydown", (e) => {
      if (e.key === "Enter") done(true);
      if (e.key === "Escape") done(false);
      e.stopPropagation();
    });
    inp.addEventListener("blur", () => done(true));
    span.replaceWith(inp);
    inp.focus();
    inp.select();
  }

  const un = store.subscribe(["graph", "pinnedIds", "supernodes", "clerps", "groupSelection", "clickedId", "theme"], render);
  render();
  return un;
}

function drawSvg(graph, items, edges, selected, clickedId) {
  const nTok = Math.max(1, graph.tokens.length);
  const rows = graph.nLayers + 2;
  const sx = (ctx) => 30 + ((ctx + 0.5) / nTok) * (W - 60);
  const sy = (row) => H - 24 - (row / Math.max(1, rows - 1)) * (H - 48);
  const sim = items.map((it) => ({ it, x: sx(it.ctx), y: sy(it.row), tx: sx(it.ctx), ty: sy(it.row) }));
  forceSimulation(sim)
    .force("x", forceX((d) => d.tx).strength(0.3))
    .force("y", forceY((d) => d.ty).strength(0.6))
    .force("c", forceCollide(16))
    .stop()
    .tick(120);
  const pos = new Map(sim.map((d) => [d.it.id, d]));
  const svg = svgEl("svg", { viewBox: `0 0 ${W} ${H}`, class: "sg-svg", role: "img", "aria-label": "Subgraph" });
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
  }
  for (const d of sim) {
    const it = d.it;
    const g = svgEl("g", {
      class: `sg-node${it.supernode ? " supernode" : ` ${it.node.kind}`}${selected.has(it.id) ? " selected" : ""}${it.id === clickedId ? " clicked" : ""}`,
      transform: `translate(${d.x},${d.y})`, "data-id": it.id,
    });
    g.appendChild(it.supernode ? svgEl("rect", { x: -12, y: -8, width: 24, height: 16, rx: 5 }) : svgEl("circle", { r: 6 }));
    const text = svgEl("text", { y: it.supernode ? 20 : 16, class: "sg-label" });
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
    svg.appendChild(g);
  }
  return svg;
}
