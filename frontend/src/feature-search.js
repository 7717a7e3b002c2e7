// Feature search for the interventions panel: GET /api/features/search?q= (labels, tokens, examples, or `L3/17`);
// each hit can be added at a chosen token position to the intervention list, pinned or not.
import { h, clear, debounce, fmt, showToken } from "./dom.js";
import { api } from "./api.js";

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
      for (const it of items) results.append(row(it));
    } catch (e) {
      if (my !== seq) return;
      status.textContent = e.status === 404 ? "No feature atlas to search." : `Search failed: ${e.message}`;
    }
  }, 250);
  input.addEventListener("input", run);

  function row(it) {
    const last = Math.max(0, tokens.length - 1);
    const pos = h("select", { class: "iv-search-pos", "aria-label": `token position for L${it.layer} #${it.index}` },
      tokens.map((t, i) => h("option", { value: i, selected: i === last, text: `${i}: ${showToken(t)}` })));
    const add = h("button", { class: "btn small", text: "Add" });
    add.addEventListener("click", () => onAdd({ layer: it.layer, index: it.index, label: it.label || "", ctx: Number(pos.value) }));
    return h("li", { class: "iv-search-item", "data-feature": `${it.layer}_${it.index}` },
      h("code", { text: `L${it.layer} #${it.index}` }),
      h("span", { class: "iv-search-label", title: it.label || "", text: it.label || "" }),
      h("span", { class: "muted", text: `freq ${fmt(it.frequency)}` }), pos, add);
  }

  const el = h("div", { class: "iv-search", id: "iv-search-box" },
    h("div", { class: "row" }, input, status), results);
  return { el };
}
