// Subgraph panel: pinned nodes and supernodes as labelled boxes in a layered layout (subgraph-layout.js; draggable,
// "Auto layout" stores the layered places), edges between items summed, and the subgraph's replacement /
// completeness scores.
// Select (checkbox, shift-click, or hold G and click), group with a label, rename by clicking a label, ungroup with ×.
import { h, clear } from "./dom.js";
import { store } from "./state.js";
import { nodeLabel } from "./graph-data.js";
import {
  togglePin, setClicked, toggleSelect, groupSelection, ungroup, renameSupernode, clearPinned, supernodeId,
} from "./actions.js";
import { drawSubgraphSvg } from "./subgraph-svg.js";
import { autoLayout } from "./subgraph-layout.js";
import { scoresLine } from "./subgraph-scores.js";

export function buildItems(graph, pinnedIds, supernodes, clerps) {
  const items = [];
  const owner = new Map();
  supernodes.forEach((sn, k) => {
    const members = sn.slice(1).map((id) => graph.byId.get(id)).filter(Boolean);
    if (!members.length) return;
    const item = {
      id: supernodeId(k), k, label: sn[0], members, supernode: true,
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
    const { sgPos } = store.state;
    el.append(scoresLine(graph, pinnedIds, supernodes), drawSubgraphSvg({
      items, edges, selected, clickedId, sgPos,
      onMove: (id, p) => store.set({ sgPos: { ...store.state.sgPos, [id]: p } }),
    }));
    el.append(layoutRow(items, edges, sgPos), groupRow(sel), itemList(items, selected, (name, it) => startRename(name, it, render)));
  }

  const keys = ["graph", "pinnedIds", "supernodes", "clerps", "groupSelection", "clickedId", "theme", "sgPos", "logitDiff"];
  const un = store.subscribe(keys, render);
  render();
  return un;
}

/** Auto layout / reset positions. */
function layoutRow(items, edges, sgPos) {
  return h("div", { class: "row" },
    h("button", {
      class: "btn small", id: "sg-auto-layout", title: "Put every node back in the layered layout: one row per layer, tokens in order",
      onclick: () => store.set({ sgPos: autoLayout(items, edges) }), text: "Auto layout",
    }),
    h("button", {
      class: "btn small", id: "sg-reset-layout", disabled: !Object.keys(sgPos).length,
      title: "Forget dragged positions", onclick: () => store.set({ sgPos: {} }), text: "Reset positions",
    }),
    h("span", { class: "muted small-note", text: "Drag nodes to arrange them; hover an edge for its weight." }));
}

/** Supernode label + "Group selected", and "Clear pinned". */
function groupRow(sel) {
  const label = h("input", { id: "group-label", placeholder: "supernode label", "aria-label": "Supernode label" });
  const groupBtn = h("button", { class: "btn small", id: "group-btn", disabled: sel.length < 2, text: `Group selected (${sel.length})` });
  groupBtn.addEventListener("click", () => groupSelection(label.value.trim()));
  label.addEventListener("keydown", (e) => e.key === "Enter" && groupSelection(label.value.trim()));
  return h("div", { class: "row" }, label, groupBtn,
    h("button", { class: "btn small", onclick: clearPinned, text: "Clear pinned" }));
}

/** The items: select box, glyph, name (click: select a node / rename a supernode), unpin or ungroup. */
function itemList(items, selected, rename) {
  const list = h("ul", { class: "sg-list", id: "sg-list" });
  for (const it of items) {
    const cb = h("input", { type: "checkbox", checked: selected.has(it.id), "aria-label": `select ${it.label}` });
    cb.addEventListener("change", () => toggleSelect(it.id));
    const name = h("span", { class: "sg-name", tabindex: "0", text: it.label, title: it.supernode ? "Click to rename" : "Click to select" });
    if (it.supernode) {
      name.addEventListener("click", () => rename(name, it));
      name.addEventListener("keydown", (e) => e.key === "Enter" && rename(name, it));
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
  return list;
}

/** Rename a supernode in place: Enter or blur commits, Escape cancels (cancel() redraws the panel). */
function startRename(span, it, cancel) {
  const inp = h("input", { class: "rename-input", value: it.label, "aria-label": "Rename supernode" });
  const done = (commit) => {
    if (commit && inp.value.trim()) renameSupernode(it.k, inp.value.trim());
    else cancel();
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
