// Feature detail: activation here, influence, label editing (clerps -> URL), and the atlas record when there is
// one (histogram with this activation marked, top/bottom logits, examples with per-token activation shading).
import { h, clear, append, fmt, showToken, svgEl } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { nodeLabel, layerName } from "./graph-data.js";
import { togglePin, setClerp } from "./actions.js";

const cache = new Map();

export function createFeatureDetail(el) {
  let seq = 0;
  function render() {
    const { graph, clickedId, clerps, pinnedIds } = store.state;
    clear(el);
    el.append(h("h2", { text: "Feature detail" }));
    const node = graph && clickedId ? graph.byId.get(clickedId) : null;
    if (!node) {
      el.append(h("p", { class: "muted", text: "Select a node to see its details." }));
      return;
    }
    const isPinned = pinnedIds.includes(node.id);
    const labelInput = h("input", { class: "label-input", id: "label-input", value: clerps[node.id] || "", placeholder: nodeLabel(node, {}), "aria-label": "Custom label" });
    const saveLabel = () => setClerp(node.id, labelInput.value.trim());
    labelInput.addEventListener("keydown", (e) => e.key === "Enter" && saveLabel());
    el.append(
      h("div", { class: "fd-title" }, h("span", { class: `glyph ${node.kind}` }), h("strong", { id: "fd-label", text: nodeLabel(node, clerps) })),
      h("dl", { class: "fd-facts" },
        h("dt", { text: "Node" }), h("dd", {}, h("code", { text: node.id })),
        h("dt", { text: "Layer · token" }), h("dd", { text: `${layerName(node)} · ${node.ctx} "${showToken(node.token)}"` }),
        node.kind === "logit"
          ? [h("dt", { text: node.synthetic ? "Δ probability" : "Probability" }), h("dd", { text: fmt(node.tokenProb) })]
          : [h("dt", { text: "Activation here" }), h("dd", { id: "fd-activation", text: fmt(node.activation) })],
        h("dt", { text: "Influence" }), h("dd", { text: fmt(node.influence) })),
      h("div", { class: "row" },
        h("button", { class: "btn small", id: "pin-toggle", onclick: () => togglePin(node.id), text: isPinned ? "Unpin" : "Pin" }),
        labelInput, h("button", { class: "btn small", onclick: saveLabel, text: "Set label" })),
    );
    if (node.kind !== "feature") return;
    const atlas = h("div", { class: "fd-atlas" }, h("p", { class: "muted", text: "Loading atlas…" }));
    el.append(atlas);
    const key = `${node.featLayer}/${node.featIndex}`;
    const my = ++seq;
    const p = cache.get(key) || api.feature(node.featLayer, node.featIndex);
    cache.set(key, p);
    p.then((rec) => my === seq && renderAtlas(atlas, rec, node)).catch((e) => {
      cache.delete(key);
      if (my !== seq) return;
      clear(atlas).append(h("p", { class: "muted", text: e.status === 404 ? "No atlas record for this feature yet." : `Atlas: ${e.message}` }));
    });
  }
  const un = store.subscribe(["graph", "clickedId", "clerps", "pinnedIds", "logitDiff"], render);
  render();
  return un;
}

function renderAtlas(el, rec, node) {
  clear(el);
  if (rec.label) el.append(h("p", {}, h("strong", { text: "Atlas label: " }), rec.label));
  if (rec.explanation) el.append(h("p", { class: "muted", text: rec.explanation }));
  el.append(h("p", { class: "muted", text: `max act ${fmt(rec.max_act)} · frequency ${fmt(rec.frequency)}` }));
  if (rec.histogram && rec.histogram.counts && rec.histogram.counts.length) el.append(histogram(rec.histogram, node.activation));
  const logits = (title, items) => items && items.length
    ? h("div", { class: "fd-logits" }, h("h3", { text: title }),
      h("div", { class: "chips" }, items.slice(0, 10).map((t) => h("span", { class: "chip", title: fmt(t.value), text: showToken(t.text) }))))
    : null;
  append(el, [logits("Top output tokens", rec.top_logits), logits("Bottom output tokens", rec.bottom_logits)]);
  const ex = rec.examples || [];
  if (ex.length) {
    el.append(h("h3", { text: "Top activating examples" }));
    const maxAct = rec.max_act || Math.max(1e-9, ...ex.map((e) => e.max_act || 0));
    el.append(h("div", { class: "examples" }, ex.slice(0, 12).map((e) => example(e, maxAct))));
  }
}

function example(e, maxAct) {
  return h("div", { class: "example" }, e.tokens.map((t, i) => {
    const a = e.acts[i] || 0;
    const alpha = Math.max(0, Math.min(1, a / maxAct));
    return h("span", { class: "ex-tok", title: fmt(a), style: { background: `rgba(230, 120, 20, ${alpha.toFixed(3)})` }, text: showToken(t) });
  }));
}

function histogram(hist, act) {
  const W = 260;
  const H = 60;
  const svg = svgEl("svg", { width: W, height: H, class: "histogram" });
  const { edges, counts } = hist;
  const lo = edges[0];
  const hi = edges[edges.length - 1];
  const sx = (v) => ((v - lo) / (hi - lo || 1)) * W;
  const maxC = Math.max(1, ...counts.map((c) => Math.log1p(c)));
  counts.forEach((c, i) => {
    const hh = (Math.log1p(c) / maxC) * (H - 4);
    svg.appendChild(svgEl("rect", { x: sx(edges[i]), y: H - hh, width: Math.max(1, sx(edges[i + 1]) - sx(edges[i]) - 0.5), height: hh, class: "hist-bar" }));
  });
  if (typeof act === "number") {
    const x = Math.max(0, Math.min(W, sx(act)));
    svg.appendChild(svgEl("line", { x1: x, x2: x, y1: 0, y2: H, class: "hist-mark" }));
  }
  return svg;
}
