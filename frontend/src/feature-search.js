// Feature search for the interventions panel: GET /api/features/search?q= (labels, tokens, examples, or `L3/17`);
// each hit says what matched and can be added at a chosen token position to the intervention list.
import { h, clear, debounce, showToken } from "./dom.js";
import { api } from "./api.js";
import { densityText } from "./feature-record.js";

const ID_QUERY = /^\s*[lL]?\d+\s*[/_:,\s]\s*#?\d+\s*$/; // as the server reads `L3/17`, `3_17`, `3:17`

/**
 * What a hit matched: the server's `matched` when it sends one; else the id, or the label when every word of the
 * query is in it; otherwise the words were found in the feature's input / output tokens or example text (the
 * server searches those too).
 */
export function matchedText(q, item) {
  if (item.matched) return `matched ${item.matched}`;
  if (ID_QUERY.test(q)) return "matched the feature id";
  const terms = (q.toLowerCase().match(/"[^"]+"|\S+/g) || []).map((t) => t.replace(/"/g, ""));
  const label = String(item.label || "").toLowerCase();
  const inLabel = terms.filter((t) => label.includes(t)).length;
  if (terms.length && inLabel === terms.length) return "matched the label";
  if (inLabel) return "matched the label and its tokens or examples";
  return "matched its tokens or examples";
}

export function createFeatureSearch({ tokens, onAdd }) {
  const input = h("input", {
    type: "search", id: "iv-search", placeholder: "Search features to add (label, token, L3/17)…",
    "aria-label": "Search features to intervene on",
  });
  const status = h("span", { class: "muted", id: "iv-search-status", role: "status" });
  const results = h("ul", { class: "iv-search-results", id: "iv-search-results" });
  let seq = 0;

  const run = debounce(async () => {
    const q = input.value.trim();
    const my = ++seq;
    clear(results);
    if (!q) {
      status.textContent = "";
      return;
    }
    status.textContent = "Searching…";
    try {
      const res = await api.searchFeatures(q, 12);
      if (my !== seq) return;
      const items = (res && res.items) || [];
      status.textContent = items.length ? `${items.length} found` : "No features found.";
      for (const it of items) results.append(row(it, q));
    } catch (e) {
      if (my !== seq) return;
      status.textContent = e.status === 404 ? "No feature atlas to search." : `The search failed. ${e.message}`;
    }
  }, 250);
  input.addEventListener("input", run);

  function row(it, q) {
    const last = Math.max(0, tokens.length - 1);
    const pos = h("select", { class: "iv-search-pos", "aria-label": `token position for L${it.layer} #${it.index}` },
      tokens.map((t, i) => h("option", { value: i, selected: i === last, text: `${i}: ${showToken(t)}` })));
    const add = h("button", { class: "btn small", text: "Add" });
    add.addEventListener("click", () => onAdd({ layer: it.layer, index: it.index, label: it.label || "", ctx: Number(pos.value) }));
    return h("li", { class: "iv-search-item", "data-feature": `${it.layer}_${it.index}` },
      h("code", { text: `L${it.layer} #${it.index}` }),
      h("span", { class: "iv-search-label", title: it.label || "", text: it.label || "" }),
      h("span", { class: "muted iv-search-why", text: matchedText(q, it) }),
      h("span", { class: "muted", text: densityText(it.frequency) }), pos, add);
  }

  const el = h("div", { class: "iv-search", id: "iv-search-box" },
    h("div", { class: "row" }, input, status), results);
  return { el };
}
