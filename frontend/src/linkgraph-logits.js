// The logits of the link graph as a column beside the plot: number, token (whitespace visible) and probability,
// most probable first. The plot puts the same number above each logit node: the logits of a graph share one
// token position, so their labels have no room there. Hover and click act on the node as in the plot.
import { h, clear, fmt, showToken } from "./dom.js";
import { logitText } from "./graph-data.js";

/** The visible logits in list order, each with its label: 1, 2, ... by probability; "Δ" for the logit difference. */
export function logitOrder(graph, vis) {
  const logits = graph.nodes.filter((n) => n.kind === "logit" && vis[n.i]);
  const real = logits.filter((n) => !n.synthetic).sort((a, b) => (b.tokenProb || 0) - (a.tokenProb || 0));
  const out = real.map((node, k) => ({ node, label: String(k + 1) }));
  for (const node of logits) if (node.synthetic) out.unshift({ node, label: node.short || "Δ" });
  return out;
}

export function createLogitList({ onClick, onHover }) {
  const list = h("ol", { class: "lg-logit-list" });
  const el = h("div", { class: "lg-logits", id: "lg-logits", "aria-label": "Output logits" },
    h("div", { class: "lg-logits-head muted", text: "Output tokens" }), list);
  const rows = new Map(); // node id -> li
  const marked = { clicked: null, hovered: null }; // the li carrying each class
  // Touch the DOM only when a logit gains or loses the class: hovering other nodes must not restyle the page.
  const mark = (cls, id) => {
    const li = (id && rows.get(id)) || null;
    if (li === marked[cls]) return;
    if (marked[cls]) marked[cls].classList.remove(cls);
    if (li) li.classList.add(cls);
    marked[cls] = li;
  };
  return {
    el,
    render(graph, vis) {
      clear(list);
      rows.clear();
      marked.clicked = marked.hovered = null;
      for (const { node, label } of logitOrder(graph, vis)) {
        const p = node.synthetic ? `Δp ${fmt(node.tokenProb, 3)}` : `${fmt((node.tokenProb || 0) * 100, 1)}%`;
        const text = node.synthetic ? node.clerp.replace(/^Logit diff: /, "") : showToken(logitText(node));
        const li = h("li", {
          class: `lg-logit${node.isTarget ? " target" : ""}`, "data-id": node.id,
          title: `${node.synthetic ? "logit difference" : `p = ${fmt(node.tokenProb, 4)}`} · ${node.id}`,
        },
        h("span", { class: "lg-logit-n", text: label }),
        h("span", { class: "tok", text }),
        h("span", { class: "lg-logit-p muted", text: p }));
        li.addEventListener("click", (ev) => onClick(node.id, ev));
        li.addEventListener("mouseenter", () => onHover(node.id));
        li.addEventListener("mouseleave", () => onHover(null));
        rows.set(node.id, li);
        list.append(li);
      }
    },
    setClicked: (id) => mark("clicked", id),
    setHovered: (id) => mark("hovered", id),
  };
}
