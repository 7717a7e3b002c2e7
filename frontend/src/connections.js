// Node connections panel: inputs and outputs of the clicked node by |weight|, sign-coloured, with layer and
// token offset; filter them by token position, layer and node kind, and search their labels. Click a row to
// select that node (Ctrl/⌘: pin), hover to highlight it in the link graph. The filter stays while other nodes are
// clicked, until the graph changes.
import { h, clear, fmt, showToken } from "./dom.js";
import { store } from "./state.js";
import { connections, nodeLabel, layerName } from "./graph-data.js";
import { setClicked, togglePin } from "./actions.js";

const PAGE = 40;
const KINDS = ["feature", "error", "embedding", "logit"];
const noFilter = () => ({ ctx: "", layer: "", kind: "", q: "" });

export function createConnections(el, { hover }) {
  let filter = noFilter();
  let lists = null; // the two lists' container, redrawn when the filter changes
  let current = null; // {graph, node}

  function render() {
    const { graph, clickedId, clerps } = store.state;
    clear(el);
    el.append(h("h2", { text: "Node connections" }));
    const node = graph && clickedId ? graph.byId.get(clickedId) : null;
    if (!node) {
      el.append(h("p", { class: "muted", text: "Click a node in the link graph to see what feeds it and what it feeds." }));
      return;
    }
    current = { graph, node };
    el.append(h("div", { class: "conn-head" },
      h("span", { class: `glyph ${node.kind}` }),
      h("strong", { text: nodeLabel(node, clerps) }),
      h("span", { class: "muted", text: ` ${layerName(node)} · "${showToken(node.token)}"` })));
    lists = h("div", { class: "conn-cols" });
    el.append(filterBar(graph, filter, (f) => {
      filter = f;
      drawLists();
    }), lists);
    drawLists();
  }

  function drawLists() {
    const { graph, node } = current;
    const { clerps, pinnedIds } = store.state;
    const keep = matcher(graph, filter, clerps);
    const pinned = new Set(pinnedIds);
    const row = (c) => connRow(graph, node, c, { clerps, pinned, hover });
    clear(lists).append(
      section("Inputs", connections(graph, node.i, "in"), keep, row),
      section("Outputs", connections(graph, node.i, "out"), keep, row));
  }

  const unGraph = store.subscribe(["graph"], () => (filter = noFilter()));
  const un = store.subscribe(["graph", "clickedId", "clerps", "pinnedIds", "logitDiff"], render);
  render();
  return () => {
    unGraph();
    un();
  };
}

/** (connection) -> whether it passes the filter. */
function matcher(graph, f, clerps) {
  const q = f.q.trim().toLowerCase();
  return (c) => {
    const other = graph.nodes[c.other];
    if (f.ctx !== "" && other.ctx !== Number(f.ctx)) return false;
    if (f.layer !== "" && layerName(other) !== f.layer) return false;
    if (f.kind !== "" && other.kind !== f.kind) return false;
    return !q || nodeLabel(other, clerps).toLowerCase().includes(q) || other.id.toLowerCase().includes(q);
  };
}

/** Position, layer and kind selects and a label search; onChange(newFilter). */
function filterBar(graph, f, onChange) {
  const select = (id, label, value, options) => {
    const el = h("select", { id, "aria-label": label },
      options.map(([v, text]) => h("option", { value: v, selected: v === value, text })));
    el.addEventListener("change", () => {
      f = { ...f, [id.replace("conn-filter-", "")]: el.value };
      onChange(f);
    });
    return el;
  };
  const layers = ["Emb", ...Array.from({ length: graph.nLayers }, (_, l) => `L${l}`), "Lgt"];
  const q = h("input", {
    type: "search", id: "conn-filter-q", value: f.q, placeholder: "search labels", "aria-label": "Search connections by label",
  });
  q.addEventListener("input", () => {
    f = { ...f, q: q.value };
    onChange(f);
  });
  return h("div", { class: "conn-filter", id: "conn-filter" },
    select("conn-filter-ctx", "Token position", f.ctx,
      [["", "all positions"], ...graph.tokens.map((t, i) => [String(i), `${i}: ${showToken(t)}`])]),
    select("conn-filter-layer", "Layer", f.layer, [["", "all layers"], ...layers.map((l) => [l, l])]),
    select("conn-filter-kind", "Node kind", f.kind, [["", "all kinds"], ...KINDS.map((k) => [k, `${k}s`])]),
    q);
}

/** A titled list of connections that pass `keep`, PAGE at a time. */
function section(title, all, keep, row) {
  const items = all.filter(keep);
  const list = h("ol", { class: "conn-list", "data-dir": title.toLowerCase() });
  let shown = 0;
  const more = h("button", { class: "btn small", text: "Show more" });
  const add = () => {
    for (const c of items.slice(shown, shown + PAGE)) list.append(row(c));
    shown += PAGE;
    more.hidden = shown >= items.length;
  };
  more.addEventListener("click", add);
  add();
  const count = items.length === all.length ? `${all.length}` : `${items.length} of ${all.length}`;
  return h("div", { class: "conn-section" }, h("h3", { text: `${title} (${count})` }),
    items.length ? list : h("p", { class: "muted small-note", text: "None match the filter." }), more);
}

function connRow(graph, node, c, { clerps, pinned, hover }) {
  const other = graph.nodes[c.other];
  const dctx = other.ctx - node.ctx;
  const arrow = dctx === 0 ? "" : dctx < 0 ? ` ←${-dctx}` : ` →${dctx}`;
  const pctAbs = Math.min(100, Math.abs(c.pct) * 100);
  const li = h("li", { class: `conn-row ${c.w < 0 ? "neg" : "pos"}${pinned.has(other.id) ? " pinned" : ""}`, "data-id": other.id },
    h("span", { class: "conn-bar", style: { width: `${Math.max(2, pctAbs)}%` } }),
    h("span", { class: "conn-w", text: fmt(c.w, 3) }),
    h("span", { class: "conn-label", text: nodeLabel(other, clerps) }),
    h("span", { class: "muted conn-where", text: `${layerName(other)}${arrow}` }));
  li.addEventListener("click", (ev) => (ev.ctrlKey || ev.metaKey ? togglePin(other.id) : setClicked(other.id)));
  li.addEventListener("mouseenter", () => hover(other.id));
  li.addEventListener("mouseleave", () => hover(null));
  return li;
}
