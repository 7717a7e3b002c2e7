// The feature page, /feature/{layer}/{index}[?act=&graph=]: one feature's atlas record in full (label and the legend
// of its format, density, histogram with this prompt's activation marked, output and input tokens, examples in
// activation quantile bands). `act` and `graph` come from the graph it was opened from (feature.js).
import { h, clear, fmt } from "./dom.js";
import { api } from "./api.js";
import {
  densityText, percentileText, histogramChart, tokenChips, inputTokens, exampleBands, labelLegend,
} from "./feature-record.js";

export function renderFeaturePage(root, layer, index, params) {
  const actText = params.get("act");
  const act = actText !== null && Number.isFinite(Number(actText)) ? Number(actText) : null;
  const slug = params.get("graph");
  const status = h("p", { class: "muted", id: "feature-status", role: "status", text: `Loading feature L${layer} #${index}…` });
  const back = slug ? h("a", { class: "btn", href: `/graph/${encodeURIComponent(slug)}`, "data-link": "", text: `← graph ${slug}` }) : null;
  const body = h("div", { class: "feature-page-body" });
  clear(root).append(h("section", { class: "view feature-page", id: "feature-page" },
    h("div", { class: "view-head" }, h("h1", { text: `Feature L${layer} #${index}` }), back), status, body));
  let alive = true;
  api.feature(layer, index).then((rec) => {
    if (!alive) return;
    status.remove();
    body.append(...featureBody(rec, act, slug));
  }).catch((e) => {
    if (!alive) return;
    status.classList.add("error");
    status.textContent = e.status === 404
      ? `There is no atlas record for feature L${layer} #${index}: the atlas lacks this layer or feature, or no atlas was built.`
      : `The feature could not be loaded. ${e.message}`;
  });
  return () => {
    alive = false;
  };
}

function featureBody(rec, act, slug) {
  const facts = [
    ["Density", `active on ${densityText(rec.frequency)}${typeof rec.frequency === "number" ? ` (${fmt(rec.frequency * 100, 3)}%)` : ""}`],
    ["Max activation", fmt(rec.max_act)],
    ["Mean activation", fmt(rec.mean_act)],
    ["Times active", rec.n_active === undefined ? "–" : Number(rec.n_active).toLocaleString("en-US")],
  ];
  if (act !== null) {
    const where = percentileText(act, rec.quantile_values);
    facts.push([slug ? `In graph ${slug}` : "This prompt", `${fmt(act)}${where ? ` — ${where}` : ""}`]);
  }
  const hist = rec.histogram && rec.histogram.counts && rec.histogram.counts.length
    ? histogramChart(rec.histogram, act, { width: 460, height: 190 }) : h("p", { class: "muted", text: "No histogram." });
  const section = (title, ...content) => h("section", { class: "panel fp-section" }, h("h2", { text: title }), ...content);
  const tokens = (items, body) => (items && items.length ? body(items) : h("p", { class: "muted", text: "none" }));
  return [
    h("div", { class: "fp-label" },
      h("h2", { id: "fp-label", text: rec.label || "(no label)" }),
      rec.label_source === "user" ? h("span", { class: "muted", text: ` (set by a user; automatic: ${rec.auto_label})` }) : null,
      rec.explanation ? h("p", { class: "muted", text: rec.explanation }) : null),
    h("div", { class: "fp-cols" },
      h("div", { class: "fp-col" },
        section("Activations", h("dl", { class: "fd-facts", id: "fp-facts" }, facts.map(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })])), hist),
        section("Output tokens", h("h3", { text: "promoted most" }), tokens(rec.top_logits, (t) => tokenChips(t, 12)),
          h("h3", { text: "suppressed most" }), tokens(rec.bottom_logits, (t) => tokenChips(t, 12))),
        section("Top input tokens", tokens(rec.top_input_tokens, (t) => inputTokens(t, 12))),
        section("Reading the label", labelLegend())),
      h("div", { class: "fp-col fp-examples", id: "fp-examples" },
        section("Examples by activation", h("p", { class: "muted small-note", text: "Shading is the activation on each token (darkest = the feature's maximum); the underlined token is the example's own peak." }),
          ...exampleBands(rec)))),
  ];
}
