// Node connections panel: inputs and outputs of the clicked node by |weight|, sign-coloured, with layer and
// token offset; click a row to select that node, hover to highlight it in the link graph.
import { h, clear, fmt, showToken } from "./dom.js";
import { store } from "./state.js";
import { connections, nodeLabel, layerName } from "./graph-data.js";
import { setClicked, togglePin } from "./actions.js";

const PAGE = 40;

export function createConnections(el, { hover }) {
  function render() {
    const { graph, clickedId, clerps, pinnedIds } = store.state;
    clear(el);
    el.append(h("h2", { text: "Node connections" }));
    const node = graph && clickedId ? graph.byId.get(clickedId) : null;
    if (!node) {
      el.append(h("p", { class: "muted", text: "Click a node in the link graph to see what feeds it and what it feeds." }));
      return;
    }
    el.append(h("div", { class: "conn-head" },
      h("span", { class: `glyph ${node.kind}` }),
      h("strong", { text: nodeLabel(node, clerps) }),
      h("span", { class: "muted", text: ` ${layerName(node)} · "${showToken(node.token)}"` })));
    const pinned = new Set(pinnedIds);
    el.append(h("div", { class: "conn-cols" }, section("Inputs", connections(graph, node.i, "in")),
      section("Outputs", connections(graph, node.i, "out"))));

    function section(title, items) {
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
      return h("div", { class: "conn-section" }, h("h3", { text: `${title} (${items.length})` }), list, more);
    }

    function row(c) {
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
  }
  const un = store.subscribe(["graph", "clickedId", "clerps", "pinnedIds", "logitDiff"], render);
  render();
  return un;
}
