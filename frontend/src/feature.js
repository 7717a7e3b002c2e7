// Feature detail: activation here, influence rank, label editing (clerps -> URL), and the atlas record when there
// is one (density, histogram with this activation marked, output and input tokens, top examples), with a link to
// the feature's own page (/feature/{layer}/{index}).
import { h, clear, append, fmt, showToken } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { nodeLabel, layerName, influenceShare, INFLUENCE_HELP } from "./graph-data.js";
import { togglePin, setClerp } from "./actions.js";
import {
  densityText, histogramChart, tokenChips, inputTokens, exampleRow, percentileText, LABEL_LEGEND,
} from "./feature-record.js";

const cache = new Map();

/** The trace form with this prompt and this feature (layer, index, position) as its target. */
function traceBackUrl(graph, node) {
  const q = new URLSearchParams({ prompt: graph.prompt, feature: `${node.featLayer}/${node.featIndex}/${node.ctx}` });
  return `/trace?${q}`;
}

/** /feature/{layer}/{index}?act=&graph=: the feature page, with this prompt's activation marked. */
export function featurePageUrl(node, slug) {
  const q = new URLSearchParams();
  if (typeof node.activation === "number") q.set("act", String(node.activation));
  if (slug) q.set("graph", slug);
  return `/feature/${node.featLayer}/${node.featIndex}?${q}`;
}

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
    el.append(...nodeFacts(graph, node, clerps, pinnedIds.includes(node.id)));
    if (node.kind !== "feature") return;
    const atlas = h("div", { class: "fd-atlas" }, h("p", { class: "muted", text: "Loading atlas…" }));
    el.append(atlas);
    const key = `${node.featLayer}/${node.featIndex}`;
    const my = ++seq;
    const p = cache.get(key) || api.feature(node.featLayer, node.featIndex);
    cache.set(key, p);
    p.then((rec) => my === seq && renderAtlas(atlas, rec, node, graph.slug)).catch((e) => {
      cache.delete(key);
      if (my !== seq) return;
      clear(atlas).append(h("p", { class: "muted", text: e.status === 404 ? "No atlas record for this feature yet." : `The atlas record could not be loaded. ${e.message}` }));
    });
  }
  const un = store.subscribe(["graph", "clickedId", "clerps", "pinnedIds", "logitDiff"], render);
  render();
  return un;
}

/** Title, facts (node, layer · token, activation or probability, influence), pin and label controls. */
function nodeFacts(graph, node, clerps, isPinned) {
  const labelInput = h("input", { class: "label-input", id: "label-input", value: clerps[node.id] || "", placeholder: nodeLabel(node, {}), "aria-label": "Custom label" });
  const saveLabel = () => setClerp(node.id, labelInput.value.trim());
  labelInput.addEventListener("keydown", (e) => e.key === "Enter" && saveLabel());
  const infl = !!node.influenceRank;
  return [
    h("div", { class: "fd-title" }, h("span", { class: `glyph ${node.kind}` }), h("strong", { id: "fd-label", text: nodeLabel(node, clerps) })),
    h("dl", { class: "fd-facts" },
      h("dt", { text: "Node" }), h("dd", {}, h("code", { text: node.id })),
      h("dt", { text: "Layer · token" }), h("dd", { text: `${layerName(node)} · ${node.ctx} "${showToken(node.token)}"` }),
      node.kind === "logit"
        ? [h("dt", { text: node.synthetic ? "Δ probability" : "Probability" }), h("dd", { text: fmt(node.tokenProb) })]
        : [h("dt", { text: "Activation here" }), h("dd", { id: "fd-activation", text: fmt(node.activation) })],
      infl ? [h("dt", { text: "Influence" }), h("dd", { id: "fd-influence", title: INFLUENCE_HELP },
        `#${node.influenceRank} of ${graph.nRanked}`,
        h("span", { class: "muted", text: ` · own share ${influenceShare(node)} · cumulative ${fmt(node.influence, 3)}` }))] : null),
    infl ? h("p", { class: "muted small-note fd-help", text: "Influence: rank among all nodes by effect on the output (1 = strongest)." }) : null,
    h("div", { class: "row" },
      h("button", { class: "btn small", id: "pin-toggle", onclick: () => togglePin(node.id), text: isPinned ? "Unpin" : "Pin" }),
      labelInput, h("button", { class: "btn small", onclick: saveLabel, text: "Set label" })),
    node.kind === "feature" ? h("p", {}, h("a", {
      class: "btn small", id: "fd-trace-back", "data-link": "", href: traceBackUrl(graph, node),
      title: "Trace a new graph whose target is this feature at this position", text: "Trace back from this feature",
    })) : null,
  ].filter(Boolean);
}

function renderAtlas(el, rec, node, slug) {
  clear(el);
  el.append(h("p", {}, h("a", {
    class: "btn small", id: "fd-feature-page", href: featurePageUrl(node, slug), target: "_blank", rel: "noopener",
    text: "Open feature page ↗",
  })));
  const legend = LABEL_LEGEND.map(([k, v]) => `${k}: ${v}`).join("\n");
  if (rec.label) el.append(h("p", { title: legend }, h("strong", { text: "Atlas label: " }), rec.label));
  if (rec.explanation) el.append(h("p", { class: "muted", text: rec.explanation }));
  const where = percentileText(node.activation, rec.quantile_values);
  el.append(h("p", { class: "muted", id: "fd-density" },
    `max act ${fmt(rec.max_act)} · active on ${densityText(rec.frequency)}${where ? ` · here ${where}` : ""}`));
  if (rec.histogram && rec.histogram.counts && rec.histogram.counts.length) {
    el.append(histogramChart(rec.histogram, node.activation, { width: 300, height: 110 }));
  }
  const tokens = (title, items, body) => (items && items.length ? h("div", { class: "fd-logits" }, h("h3", { text: title }), body(items)) : null);
  append(el, [
    tokens("Top output tokens", rec.top_logits, tokenChips),
    tokens("Bottom output tokens", rec.bottom_logits, tokenChips),
    tokens("Top input tokens", rec.top_input_tokens, (items) => inputTokens(items, 5)),
  ]);
  const ex = rec.examples || [];
  if (ex.length) {
    el.append(h("h3", { text: "Top activating examples" }));
    const maxAct = rec.max_act || Math.max(1e-9, ...ex.map((e) => e.max_act || 0));
    el.append(h("div", { class: "examples" }, ex.slice(0, 12).map((e) => exampleRow(e, maxAct))));
  }
}
