// Pieces that show a feature's atlas record (GET /api/features/{layer}/{index}), shared by the feature detail panel
// and the feature page: density as "1 in N tokens", a histogram with axes and this prompt's activation marked,
// token chips, top input tokens, examples with real spaces (whitespace only faintly visible) and activation
// shading, the quantile bands, and the legend of the automatic label format.
import { scaleLinear, scaleSymlog } from "d3-scale";
import { axisBottom, axisLeft } from "d3-axis";
import { select } from "d3-selection";
import { format } from "d3-format";
import { h, fmt, showToken, svgEl } from "./dom.js";

/** "1 in 830 tokens" from an activation frequency (fraction of tokens where the feature is active). */
export function densityText(freq) {
  if (typeof freq !== "number") return "unknown";
  if (freq <= 0) return "never active";
  const n = 1 / freq;
  const shown = n < 10 ? n.toFixed(1).replace(/\.0$/, "") : Number(n.toPrecision(2)).toLocaleString("en-US");
  return `1 in ${shown} tokens`;
}

/** "higher than 93% of its activations" from the 100 percentiles of its nonzero activations. */
export function percentileText(act, quantiles) {
  if (typeof act !== "number" || !Array.isArray(quantiles) || !quantiles.length) return "";
  const below = quantiles.filter((q) => q < act).length;
  return `higher than ${Math.round((100 * below) / quantiles.length)}% of its activations`;
}

export const LABEL_LEGEND = [
  ["→ Texas", "the output token the feature promotes most (through the unembedding)"],
  ['on "Dallas"', "the input token that carries most of its activation in the atlas corpus"],
  ['"A"/"B"', "a second input token with at least half as much"],
  ["␣ ⏎ ⇥", "a space, a newline, a tab as the whole token; … a long token shortened"],
  ["dead feature", "never active in the corpus"],
];

export function labelLegend() {
  return h("dl", { class: "label-legend", id: "label-legend" },
    LABEL_LEGEND.map(([k, v]) => [h("dt", {}, h("code", { text: k })), h("dd", { text: v })]));
}

/** Histogram of activations (log count) with axes; `act` (this prompt's activation) marked and labelled. */
export function histogramChart(hist, act, { width = 300, height = 120 } = {}) {
  const m = { left: 38, right: 10, top: 14, bottom: 30 };
  const { edges, counts } = hist;
  const hi = Math.max(edges[edges.length - 1], typeof act === "number" ? act : -Infinity);
  const x = scaleLinear().domain([edges[0], hi]).range([m.left, width - m.right]);
  const y = scaleSymlog().constant(1).domain([0, Math.max(1, ...counts)]).range([height - m.bottom, m.top]);
  const svg = svgEl("svg", { width, height, class: "histogram", role: "img", "aria-label": "Activation histogram" });
  counts.forEach((c, i) => {
    const x0 = x(edges[i]);
    svg.appendChild(svgEl("rect", {
      class: "hist-bar", x: x0, y: y(c), width: Math.max(1, x(edges[i + 1]) - x0 - 0.5), height: y(0) - y(c),
    }));
  });
  const s = select(svg);
  s.append("g").attr("class", "hist-axis").attr("transform", `translate(0,${height - m.bottom})`).call(axisBottom(x).ticks(5));
  const top = Math.max(1, ...counts);
  const decades = [0, 1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8].filter((v) => v <= top);
  s.append("g").attr("class", "hist-axis").attr("transform", `translate(${m.left},0)`)
    .call(axisLeft(y).tickValues(decades.length > 4 ? decades.filter((_, k) => k % 2 === 0) : decades).tickFormat(format("~s")));
  s.append("text").attr("class", "hist-title").attr("x", width - m.right).attr("y", height - 2).text("activation");
  s.append("text").attr("class", "hist-title start").attr("x", 2).attr("y", 9).text("tokens (log scale)");
  if (typeof act === "number") {
    const xa = x(Math.max(edges[0], act));
    s.append("line").attr("class", "hist-mark").attr("x1", xa).attr("x2", xa).attr("y1", m.top).attr("y2", height - m.bottom);
    const right = xa > width / 2;
    s.append("text").attr("class", "hist-mark-label").attr("x", xa + (right ? -4 : 4)).attr("y", m.top + 8)
      .attr("text-anchor", right ? "end" : "start").text(`this prompt ${fmt(act, 2)}`);
  }
  return svg;
}

/** Tokens as chips (whitespace visible), with their values in the title. */
export function tokenChips(items, max = 10) {
  return h("div", { class: "chips" }, (items || []).slice(0, max).map((t) => h("span", {
    class: "chip", title: t.value === undefined ? "" : fmt(t.value), text: showToken(t.text),
  })));
}

/** Top input tokens: token, how often the feature fires on it, its mean activation there. */
export function inputTokens(items, max = 10) {
  const rows = (items || []).slice(0, max).map((t) => (typeof t === "string" ? { text: t } : t));
  return h("table", { class: "input-tokens" },
    h("thead", {}, h("tr", {}, ["token", "times active", "mean act"].map((t) => h("th", { text: t })))),
    h("tbody", {}, rows.map((t) => h("tr", {},
      h("td", {}, h("span", { class: "chip", text: showToken(t.text) })),
      h("td", { text: t.count ?? "" }), h("td", { text: t.mean === undefined ? "" : fmt(t.mean, 2) })))));
}

/** A token's text with its whitespace as real spaces / line breaks, marked faintly. */
function tokenText(text) {
  const parts = String(text).split(/( +|\n|\t)/).filter((p) => p !== "");
  return parts.map((p) => {
    if (p === "\n") return h("span", { class: "ws", text: "↵" });
    if (p === "\t") return h("span", { class: "ws tab", text: "\t" });
    if (p[0] === " ") return h("span", { class: "ws space", text: p });
    return p;
  });
}

/** One example: its tokens shaded by activation (relative to `maxAct`); the chosen token underlined. */
export function exampleRow(e, maxAct) {
  return h("div", { class: "example" }, e.tokens.map((t, i) => {
    const a = e.acts[i] || 0;
    const alpha = Math.max(0, Math.min(1, a / maxAct));
    return h("span", {
      class: `ex-tok${i === e.center ? " center" : ""}`, title: `${showToken(t)} · ${fmt(a)}`,
      style: { background: `rgba(230, 120, 20, ${alpha.toFixed(3)})` },
    }, tokenText(t));
  }));
}

/** The example bands of a record: the top activations, then each quantile band (high to low). */
export function exampleBands(rec, perBand = 6) {
  const maxAct = rec.max_act || Math.max(1e-9, ...(rec.examples || []).map((e) => e.max_act || 0));
  const bands = [{ name: "Top activations", examples: rec.examples || [] }, ...(rec.quantile_examples || [])];
  return bands.filter((b) => b.examples && b.examples.length).map((b) => h("section", { class: "ex-band" },
    h("h3", { text: b.name }),
    h("div", { class: "examples" }, b.examples.slice(0, perBand).map((e) => exampleRow(e, maxAct)))));
}
