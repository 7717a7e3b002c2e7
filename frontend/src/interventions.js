// Interventions: ablate / scale / set pinned features, whole supernodes, or any feature found by search (added at a
// token position); watch chosen tokens; run and see what moved (iv-result.js), or sweep one item's scale and plot
// the watched tokens (iv-sweep.js). POST /api/interventions.
import { h, clear, append } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { buildItems } from "./subgraph.js";
import { createFeatureSearch } from "./feature-search.js";
import { createTokenChips } from "./token-chips.js";
import { renderResult } from "./iv-result.js";
import { SWEEP_DEFAULT, sweepSection, sweepTokens, sweepValues, runSweep } from "./iv-sweep.js";

const MAX_WATCH = 20;

function freshState() {
  return {
    settings: new Map(), // item id -> {mode, value, allPos}
    opts: { freeze_attention: false, n_tokens: 10, top_k: 5, temperature: 0, seed: 0 },
    result: null,
    error: "",
    running: false,
    extras: [], // features added by search: items like buildItems' ({id, label, members: [feature-like]})
    sweep: { settings: { ...SWEEP_DEFAULT, itemId: null }, data: null, running: false, error: "", run: 0 },
  };
}

export function createInterventions(el) {
  let st = freshState();
  let parts = null; // per graph: the feature search and the watched-token chips (kept across redraws)

  function render() {
    const { graph, pinnedIds, supernodes, clerps } = store.state;
    clear(el);
    el.append(h("h2", { text: "Interventions" }));
    if (!graph) return;
    if (!parts || parts.graph !== graph) parts = graphParts(graph, st, render);
    const { items } = buildItems(graph, pinnedIds, supernodes, clerps);
    const usable = [...items.filter((it) => it.members.some((m) => m.kind === "feature")), ...st.extras];
    if (!usable.length) {
      el.append(h("p", { class: "muted", text: "Pin features (or group them into supernodes) to ablate, scale or set them here, or add any feature by search." }), parts.search.el);
      return;
    }
    const run = h("button", { class: "btn primary", id: "iv-run", disabled: st.running, text: st.running ? "Running…" : "Run intervention" });
    run.addEventListener("click", () => runInterventions(graph, usable, st, parts.watch.values(), render));
    append(el, [settingsTable(usable, st, render), parts.search.el,
      h("div", { class: "row iv-watch-row" }, h("span", { class: "muted", text: "Watch tokens" }), parts.watch.el),
      h("div", { class: "row iv-opts" }, optionInputs(st.opts), run),
      st.error ? h("div", { class: "error", role: "alert", text: st.error }) : null]);
    if (st.result) el.append(renderResult(st.result));
    el.append(sweepSection(usable, st.sweep, {
      onRun: () => startSweep(graph, usable, st, parts.watch.values(), render),
      onCancel: () => {
        st.sweep.running = false;
        render();
      },
    }));
  }

  const un1 = store.subscribe(["graph"], () => {
    st.sweep.run++; // a running sweep stops
    st = freshState();
  });
  const un2 = store.subscribe(["graph", "pinnedIds", "supernodes", "clerps"], render);
  render();
  return () => {
    st.sweep.run++;
    un1();
    un2();
  };
}

/** The parts of the panel that keep their state across redraws, for one graph. */
function graphParts(graph, st, render) {
  return {
    graph,
    search: createFeatureSearch({ tokens: graph.tokens, onAdd: (f) => addExtra(st, f, render) }),
    watch: createTokenChips({
      id: "iv-watch-tokens", label: "Token to watch", max: MAX_WATCH,
      placeholder: 'a token to watch, e.g. " Texas" (leading space kept)',
    }),
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

/** The request body: the prompt, options, top_k, and `watch` when tokens are watched (an older API lacks it). */
function requestBody(graph, interventions, opts, watch) {
  return { prompt: graph.prompt, interventions, ...opts, ...(watch.length ? { watch } : {}) };
}

async function runInterventions(graph, usable, st, watch, render) {
  const interventions = collectInterventions(usable, st.settings);
  if (!interventions.length) {
    st.error = "Choose a mode (ablate, scale or set) for at least one node.";
    render();
    return;
  }
  st.running = true;
  st.error = "";
  render();
  try {
    st.result = await api.intervene(requestBody(graph, interventions, st.opts, watch));
  } catch (e) {
    st.error = `The intervention could not run. ${e.message}`;
  }
  st.running = false;
  render();
}

/** Sweep the chosen item's scale (the other rows are left out), one request per factor. */
async function startSweep(graph, usable, st, watch, render) {
  const sweep = st.sweep;
  const it = usable.find((x) => x.id === sweep.settings.itemId);
  if (!it) return;
  const values = sweepValues(sweep.settings);
  const tokens = sweepTokens(graph, watch);
  const allPos = (st.settings.get(it.id) || {}).allPos;
  const my = ++sweep.run;
  const live = () => my === sweep.run && sweep.running;
  Object.assign(sweep, { running: true, error: "", data: { label: it.label, values, tokens, points: [] } });
  render();
  try {
    await runSweep({
      values, tokens, cancelled: () => !live(),
      request: (v) => requestBody(graph, scaled(it, v, allPos), { ...st.opts, n_tokens: 1, temperature: 0 }, tokens),
      onStep: (points) => {
        if (!live()) return;
        sweep.data.points = [...points];
        render();
      },
    });
  } catch (e) {
    if (my === sweep.run) sweep.error = `The sweep stopped. ${e.message}`;
  }
  if (my !== sweep.run) return;
  sweep.running = false;
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

/** Freeze attention, tokens to generate, top tokens, temperature, seed: inputs that edit `opts`. */
function optionInputs(opts) {
  const freeze = h("input", { type: "checkbox", checked: opts.freeze_attention });
  freeze.addEventListener("change", () => (opts.freeze_attention = freeze.checked));
  const number = (key, attrs) => {
    const inp = h("input", { type: "number", id: `iv-${key.replace("_", "-")}`, ...attrs, value: opts[key], class: "small-num" });
    inp.addEventListener("input", () => (opts[key] = Number(inp.value)));
    return inp;
  };
  return [
    h("label", {}, freeze, " freeze attention"), h("label", {}, "tokens ", number("n_tokens", { min: 1, max: 64 })),
    h("label", { title: "How many of the most likely next tokens to show, 1 to 20" }, "top ", number("top_k", { min: 1, max: 20 })),
    h("label", {}, "temperature ", number("temperature", { min: 0, step: 0.1 })), h("label", {}, "seed ", number("seed", {})),
  ];
}

/** A scale intervention on every feature of `it` by `value`. */
function scaled(it, value, allPos) {
  return it.members.filter((m) => m.kind === "feature").map((m) => ({
    layer: m.featLayer, feature: m.featIndex, position: allPos ? null : m.ctx, mode: "scale", value,
  }));
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
