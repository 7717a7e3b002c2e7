// Sweep: scale one intervention item (a supernode, a pinned or searched feature) over a range of factors, one
// POST /api/interventions per factor (n_tokens 1), and plot the watched tokens' probabilities against the factor.
// Without watched tokens the graph's most likely logits are watched. Only the swept item is intervened on.
import { scaleLinear } from "d3-scale";
import { axisBottom, axisLeft } from "d3-axis";
import { line } from "d3-shape";
import { select } from "d3-selection";
import { schemeTableau10 } from "d3-scale-chromatic";
import { h, fmt, showToken, svgEl } from "./dom.js";
import { api } from "./api.js";
import { logitText } from "./graph-data.js";

export const SWEEP_DEFAULT = { from: -4, to: 4, steps: 9 };
const MAX_STEPS = 21;

/** The factors of a sweep: `steps` evenly spaced values from `from` to `to` (rounded to 3 decimals). */
export function sweepValues({ from, to, steps }) {
  const n = Math.max(2, Math.min(MAX_STEPS, Math.round(steps)));
  return Array.from({ length: n }, (_, k) => Number((from + ((to - from) * k) / (n - 1)).toFixed(3)));
}

/** The tokens a sweep watches: the user's, else the graph's three most likely logits. */
export function sweepTokens(graph, watch) {
  if (watch.length) return watch;
  return graph.nodes.filter((n) => n.kind === "logit" && !n.synthetic && logitText(n) !== n.id)
    .sort((a, b) => (b.tokenProb || 0) - (a.tokenProb || 0)).slice(0, 3).map(logitText);
}

/** The probability of token `text` in one answer side: from `watch`, else from `top` (0 when absent). */
function probOf(side, text, k) {
  if (side.watch && side.watch[k] && side.watch[k].text === text) return side.watch[k].prob;
  const t = (side.top || []).find((x) => x.text === text);
  return t ? t.prob : 0;
}

/**
 * Run the sweep: `request(value)` builds the body for one factor; onStep(points) after each answer. Resolves to
 * the points [{value, probs: [p per token]}]; stops early when `cancelled()`.
 */
export async function runSweep({ values, tokens, request, onStep, cancelled }) {
  const points = [];
  for (const value of values) {
    if (cancelled()) break;
    const res = await api.intervene(request(value));
    points.push({ value, probs: tokens.map((t, k) => probOf(res.after, t, k)) });
    onStep(points);
  }
  return points;
}

/** The plot: one line per watched token, probability against the factor; marks at 0 (ablated) and 1 (as is). */
export function sweepPlot(sweep, { width = 560, height = 230 } = {}) {
  const m = { left: 44, right: 12, top: 12, bottom: 34 };
  const values = sweep.values;
  const x = scaleLinear().domain([values[0], values[values.length - 1]]).range([m.left, width - m.right]);
  const top = Math.max(0.05, ...sweep.points.flatMap((p) => p.probs));
  const y = scaleLinear().domain([0, Math.min(1, top * 1.1)]).nice().range([height - m.bottom, m.top]);
  const svg = svgEl("svg", { width, height, class: "sweep-plot", id: "sweep-plot", role: "img", "aria-label": "Sweep" });
  const s = select(svg);
  s.append("g").attr("class", "hist-axis").attr("transform", `translate(0,${height - m.bottom})`).call(axisBottom(x).ticks(9));
  s.append("g").attr("class", "hist-axis").attr("transform", `translate(${m.left},0)`).call(axisLeft(y).ticks(5, "~%"));
  s.append("text").attr("class", "hist-title").attr("x", width - m.right).attr("y", height - 3).text(`scale factor of ${sweep.label}`);
  for (const [v, name] of [[0, "ablated"], [1, "as traced"]]) {
    if (v < x.domain()[0] || v > x.domain()[1]) continue;
    s.append("line").attr("class", "sweep-ref").attr("x1", x(v)).attr("x2", x(v)).attr("y1", m.top).attr("y2", height - m.bottom);
    s.append("text").attr("class", "sweep-ref-label").attr("x", x(v) + 3).attr("y", m.top + 9).text(name);
  }
  sweep.tokens.forEach((tok, k) => {
    const color = schemeTableau10[k % 10];
    const pts = sweep.points.map((p) => [x(p.value), y(p.probs[k])]);
    s.append("path").attr("class", "sweep-line").attr("d", line()(pts)).attr("stroke", color).attr("data-token", tok);
    sweep.points.forEach((p) => s.append("circle").attr("cx", x(p.value)).attr("cy", y(p.probs[k])).attr("r", 2.5)
      .attr("fill", color).append("title").text(`×${p.value}: p(${JSON.stringify(tok)}) = ${fmt(p.probs[k] * 100, 2)}%`));
  });
  const legend = h("div", { class: "sweep-legend" }, sweep.tokens.map((tok, k) => h("span", { class: "sweep-key" },
    h("span", { class: "sweep-swatch", style: { background: schemeTableau10[k % 10] } }), h("span", { class: "tok", text: showToken(tok) }))));
  return h("div", { class: "sweep-chart" }, svg, legend);
}

/** The sweep controls: item, range, steps, run; `st` = {itemId, from, to, steps}; onRun(), onCancel(). */
export function sweepControls(usable, st, { running, onRun, onCancel }) {
  if (!usable.some((it) => it.id === st.itemId)) st.itemId = (usable.find((it) => it.supernode) || usable[0]).id;
  const item = h("select", { id: "sweep-item", "aria-label": "Item to sweep" },
    usable.map((it) => h("option", { value: it.id, selected: it.id === st.itemId, text: it.label })));
  item.addEventListener("change", () => (st.itemId = item.value));
  const num = (key, attrs) => {
    const inp = h("input", { type: "number", id: `sweep-${key}`, class: "small-num", value: st[key], ...attrs });
    inp.addEventListener("input", () => (st[key] = Number(inp.value)));
    return inp;
  };
  const run = h("button", { class: "btn", id: "sweep-run", text: running ? "Stop" : "Run sweep" });
  run.addEventListener("click", running ? onCancel : onRun);
  return h("div", { class: "row iv-sweep-row" },
    h("strong", { text: "Sweep" }), item,
    h("label", {}, "scale from ", num("from", { step: 0.5 })), h("label", {}, "to ", num("to", { step: 0.5 })),
    h("label", {}, "in ", num("steps", { min: 2, max: MAX_STEPS, step: 1 }), " steps"), run);
}

/** The sweep section: controls, status line and the plot of the last (or running) sweep. */
export function sweepSection(usable, sweep, handlers) {
  const el = h("div", { class: "iv-sweep", id: "iv-sweep" });
  el.append(sweepControls(usable, sweep.settings, { running: !!sweep.running, ...handlers }),
    h("p", { class: "muted small-note", text: "Scales the chosen item's features by each factor (alone, with its \"all positions\" choice) and plots the next-token probability of the watched tokens." }));
  const status = h("div", { class: sweep.error ? "error" : "muted", id: "sweep-status", role: "status" });
  if (sweep.error) status.textContent = sweep.error;
  else if (sweep.data) status.textContent = `${sweep.data.points.length} / ${sweep.data.values.length} factors${sweep.running ? " …" : ""}`;
  el.append(status);
  if (sweep.data && sweep.data.points.length) el.append(sweepPlot(sweep.data));
  return el;
}
