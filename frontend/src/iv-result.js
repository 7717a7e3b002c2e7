// The result of an intervention (POST /api/interventions): a verdict and a sentence saying what moved ("top token
// the same (" Texas"); p(" Texas") 76.3% → 53.3%; ..."), the watched tokens before → after with the change, and
// the top tokens and continuations side by side.
import { h, fmt, showToken } from "./dom.js";

const MOVED = 0.005; // a probability change below half a point is noise for the verdict
const pct = (p) => `${fmt(p * 100, 1)}%`;
const quoted = (text) => JSON.stringify(text);

/** id -> {text, before, after} over the top and watched tokens of both sides (a side that lacks it: undefined). */
function probTable(res) {
  const table = new Map();
  const add = (list, side) => {
    for (const t of list || []) {
      const row = table.get(t.id) || { text: t.text };
      row[side] = t.prob;
      table.set(t.id, row);
    }
  };
  add(res.before.top, "before");
  add(res.after.top, "after");
  add(res.before.watch, "before");
  add(res.after.watch, "after");
  return table;
}

/** {verdict: "Output changed" | "Probabilities shifted" | "Output unchanged", changed, words}. */
export function describeChange(res) {
  const { before, after } = res;
  const tb = before.top[0];
  const ta = after.top[0];
  const topChanged = !!(tb && ta && tb.id !== ta.id);
  const contChanged = before.continuation !== after.continuation;
  const known = [...probTable(res).values()].filter((r) => r.before !== undefined && r.after !== undefined);
  known.sort((x, y) => Math.abs(y.after - y.before) - Math.abs(x.after - x.before));
  const watched = new Set((after.watch || []).map((t) => t.text));
  const parts = [];
  if (tb && ta) parts.push(topChanged ? `top token ${quoted(tb.text)} → ${quoted(ta.text)}` : `top token the same (${quoted(tb.text)})`);
  const named = [...known.slice(0, 1), ...known.filter((r) => watched.has(r.text))].filter((r, k, all) => all.indexOf(r) === k);
  for (const r of named.slice(0, 4)) parts.push(`p(${quoted(r.text)}) ${pct(r.before)} → ${pct(r.after)}`);
  parts.push(contChanged ? "the continuation changed" : "the continuation is the same");
  const moved = known.length && Math.abs(known[0].after - known[0].before) >= MOVED;
  const verdict = topChanged || contChanged ? "Output changed" : moved ? "Probabilities shifted" : "Output unchanged";
  return { verdict, changed: verdict !== "Output unchanged", words: parts.join("; ") };
}

function delta(before, after) {
  const d = after - before;
  if (Math.abs(d) < 1e-4) return h("span", { class: "muted", text: "±0" });
  const pts = Math.abs(d) * 100;
  return h("span", { class: d > 0 ? "up" : "down", text: `${d > 0 ? "+" : "−"}${pts < 0.1 ? pts.toFixed(2) : fmt(pts, 1)} pts` });
}

/** Watched tokens: before, after, change. */
function watchTable(res) {
  const after = new Map((res.after.watch || []).map((t, k) => [k, t]));
  const rows = (res.before.watch || []).map((t, k) => {
    const a = after.get(k) || { prob: NaN };
    return h("tr", { "data-token": t.text },
      h("td", {}, h("span", { class: "tok", text: showToken(t.text) })),
      h("td", { text: pct(t.prob) }), h("td", { text: "→" }), h("td", { text: pct(a.prob) }), h("td", {}, delta(t.prob, a.prob)));
  });
  if (!rows.length) return null;
  return h("table", { class: "iv-watch-table", id: "iv-watch" },
    h("thead", {}, h("tr", {}, ["watched", "before", "", "after", "change"].map((t) => h("th", { text: t })))), h("tbody", {}, rows));
}

function side(title, o, other) {
  return h("div", { class: "iv-side", "data-side": title.toLowerCase() },
    h("h3", { text: title }),
    h("div", { class: "iv-cont" }, h("span", { class: "muted", text: "continuation: " }), h("span", { class: "iv-text", text: showToken(o.continuation) })),
    h("ol", { class: "iv-top" }, o.top.map((t) => {
      const before = other && other.top.find((x) => x.id === t.id);
      const d = before ? t.prob - before.prob : null;
      return h("li", {},
        h("span", { class: "iv-bar", style: { width: `${Math.max(1, t.prob * 100)}%` } }),
        h("span", { class: "tok", text: showToken(t.text) }),
        h("span", { class: "muted", text: ` ${fmt(t.prob * 100, 1)}%` }),
        d !== null && Math.abs(d) > 1e-4 ? h("span", { class: d > 0 ? "up" : "down", text: ` ${d > 0 ? "+" : ""}${fmt(d * 100, 1)}` }) : null);
    })));
}

export function renderResult(res) {
  const { verdict, changed, words } = describeChange(res);
  return h("div", { class: "iv-result", id: "iv-result" },
    h("div", { class: `iv-verdict ${changed ? "changed" : ""}`, text: verdict }),
    h("p", { class: "iv-words", id: "iv-words", text: `${words[0].toUpperCase()}${words.slice(1)}.` }),
    watchTable(res),
    h("div", { class: "iv-cols" }, side("Before", res.before), side("After", res.after, res.before)));
}
