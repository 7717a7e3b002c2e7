// Interventions: ablate / scale / set pinned features, whole supernodes, or any feature found by search (added at a
// token position), run, and compare the top tokens and the continuation before vs after (POST /api/interventions).
import { h, clear, append, fmt, showToken } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { buildItems } from "./subgraph.js";
import { createFeatureSearch } from "./feature-search.js";

export function createInterventions(el) {
  const st = {
    settings: new Map(), // item id -> {mode, value, allPos}
    opts: { freeze_attention: false, n_tokens: 10, temperature: 0, seed: 0 },
    result: null,
    error: "",
    running: false,
    extras: [], // features added by search: items like buildItems' ({id, label, members: [feature-like]})
  };
  let search = null;
  let searchGraph = null;

  function render() {
    const { graph, pinnedIds, supernodes, clerps } = store.state;
    clear(el);
    el.append(h("h2", { text: "Interventions" }));
    if (!graph) return;
    if (searchGraph !== graph) {
      search = createFeatureSearch({ tokens: graph.tokens, onAdd: (f) => addExtra(st, f, render) });
      searchGraph = graph;
    }
    const { items } = buildItems(graph, pinnedIds, supernodes, clerps);
    const usable = [...items.filter((it) => it.members.some((m) => m.kind === "feature")), ...st.extras];
    if (!usable.length) {
      el.append(h("p", { class: "muted", text: "Pin features (or group them into supernodes) to ablate, scale or set them here, or add any feature by search." }), search.el);
      return;
    }
    const run = h("button", { class: "btn primary", id: "iv-run", disabled: st.running, text: st.running ? "Running…" : "Run intervention" });
    run.addEventListener("click", () => runInterventions(graph, usable, st, render));
    append(el, [settingsTable(usable, st, render), search.el, h("div", { class: "row iv-opts" }, optionInputs(st.opts), run),
      st.error ? h("div", { class: "error", role: "alert", text: st.error }) : null]);
    if (st.result) el.append(renderResult(st.result));
  }

  const un1 = store.subscribe(["graph"], () => {
    st.settings.clear();
    st.extras = [];
    st.result = null;
    st.error = "";
  });
  const un2 = store.subscribe(["graph", "pinnedIds", "supernodes", "clerps"], render);
  render();
  return () => {
    un1();
    un2();
  };
}

/** A feature found by search, at a token position, to the list (ablated by default). */
function addExtra(st, { layer, index, label, ctx }, render) {
  const id = `search:${layer}_${index}_${ctx}`;
  if (!st.extras.some((x) => x.id === id)) {
    const member = { kind: "feature", featLayer: layer, featIndex: index, ctx };
    st.extras = [...st.extras, { id, label: `L${layer} #${index} @${ctx}${label ? ` · ${label}` : ""}`, members: [member], extra: true }];
    st.settings.set(id, { mode: "zero", value: 0, allPos: false });
  }
  render();
}

/** The table of usable items with their settings (new items start off). */
function settingsTable(usable, st, render) {
  const body = h("tbody");
  for (const it of usable) {
    const setting = st.settings.get(it.id) || { mode: "off", value: 0, allPos: false };
    st.settings.set(it.id, setting);
    const onRemove = () => {
      st.extras = st.extras.filter((x) => x !== it);
      st.settings.delete(it.id);
      render();
    };
    body.append(settingRow(it, setting, { onModeChange: render, onRemove }));
  }
  return h("table", { class: "iv-table" },
    h("thead", {}, h("tr", {}, ["Node", "Mode", "Value", "All positions"].map((t) => h("th", { text: t })))), body);
}

async function runInterventions(graph, usable, st, render) {
  const interventions = collectInterventions(usable, st.settings);
  if (!interventions.length) {
    st.error = "Choose a mode for at least one node.";
    render();
    return;
  }
  st.running = true;
  st.error = "";
  render();
  try {
    st.result = await api.intervene({ prompt: graph.prompt, interventions, top_k: 5, ...st.opts });
  } catch (e) {
    st.error = e.message;
  }
  st.running = false;
  render();
}

/** One row of the table: the item, its mode (off / ablate / scale / set), value, all positions; `st` is edited. */
function settingRow(it, st, { onModeChange, onRemove }) {
  const mode = h("select", { "aria-label": `mode for ${it.label}`, class: "iv-mode" },
    [["off", "—"], ["zero", "ablate (0)"], ["scale", "scale ×"], ["set", "set to"]].map(([v, t]) => h("option", { value: v, selected: st.mode === v, text: t })));
  const value = h("input", { type: "number", step: "0.1", value: st.value, class: "iv-value", disabled: st.mode === "off" || st.mode === "zero", "aria-label": `value for ${it.label}` });
  const all = h("input", { type: "checkbox", checked: st.allPos, "aria-label": "all positions" });
  mode.addEventListener("change", () => {
    st.mode = mode.value;
    if (st.mode === "scale" && !st.value) st.value = 2;
    onModeChange();
  });
  value.addEventListener("input", () => (st.value = Number(value.value)));
  all.addEventListener("change", () => (st.allPos = all.checked));
  const feats = it.members.filter((m) => m.kind === "feature").length;
  const remove = it.extra ? h("button", {
    class: "icon-btn iv-remove", title: "Remove from the list", "aria-label": "Remove", text: "×", onclick: onRemove,
  }) : null;
  return h("tr", { "data-id": it.id, class: it.extra ? "iv-extra" : null },
    h("td", {}, h("span", { text: it.label }), it.supernode ? h("span", { class: "muted", text: ` (${feats} features)` }) : null,
      it.extra ? h("span", { class: "muted", text: " (search)" }) : null, remove),
    h("td", {}, mode), h("td", {}, value), h("td", {}, all));
}

/** Freeze attention, tokens to generate, temperature, seed: inputs that edit `opts`. */
function optionInputs(opts) {
  const freeze = h("input", { type: "checkbox", checked: opts.freeze_attention });
  freeze.addEventListener("change", () => (opts.freeze_attention = freeze.checked));
  const number = (key, attrs) => {
    const inp = h("input", { type: "number", ...attrs, value: opts[key], class: "small-num" });
    inp.addEventListener("input", () => (opts[key] = Number(inp.value)));
    return inp;
  };
  return [
    h("label", {}, freeze, " freeze attention"), h("label", {}, "tokens ", number("n_tokens", { min: 1, max: 64 })),
    h("label", {}, "temperature ", number("temperature", { min: 0, step: 0.1 })), h("label", {}, "seed ", number("seed", {})),
  ];
}

/** The request's interventions: one per feature of each item whose mode is not off. */
function collectInterventions(usable, settings) {
  const interventions = [];
  for (const it of usable) {
    const st = settings.get(it.id);
    if (!st || st.mode === "off") continue;
    for (const m of it.members) {
      if (m.kind !== "feature") continue;
      interventions.push({
        layer: m.featLayer, feature: m.featIndex, position: st.allPos ? null : m.ctx,
        mode: st.mode, value: st.mode === "zero" ? 0 : Number(st.value),
      });
    }
  }
  return interventions;
}

function renderResult(res) {
  const side = (title, o, other) => h("div", { class: "iv-side", "data-side": title.toLowerCase() },
    h("h3", { text: title }),
    h("div", { class: "iv-cont" }, h("span", { class: "muted", text: "continuation: " }), h("span", { class: "iv-text", text: showToken(o.continuation) })),
    h("ol", { class: "iv-top" }, o.top.map((t) => {
      const before = other && other.top.find((x) => x.id === t.id);
      const delta = before ? t.prob - before.prob : null;
      return h("li", {},
        h("span", { class: "iv-bar", style: { width: `${Math.max(1, t.prob * 100)}%` } }),
        h("span", { class: "tok", text: showToken(t.text) }),
        h("span", { class: "muted", text: ` ${fmt(t.prob * 100, 1)}%` }),
        delta !== null && Math.abs(delta) > 1e-4 ? h("span", { class: delta > 0 ? "up" : "down", text: ` ${delta > 0 ? "+" : ""}${fmt(delta * 100, 1)}` }) : null);
    })));
  const changed = res.before.continuation !== res.after.continuation || res.before.top[0]?.id !== res.after.top[0]?.id;
  return h("div", { class: "iv-result", id: "iv-result" },
    h("div", { class: `iv-verdict ${changed ? "changed" : ""}`, text: changed ? "Output changed" : "Output unchanged" }),
    h("div", { class: "iv-cols" }, side("Before", res.before), side("After", res.after, res.before)));
}
