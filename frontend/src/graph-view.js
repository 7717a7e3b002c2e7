// Graph view: loads /api/graphs/{slug}, restores the view (view-keys.js: a saved view, the URL, or the graph's own
// qParams), and lays out the panels: header, link graph (with its toolbar), node connections, feature detail,
// subgraph, interventions. Panels resize (panel-layout.js); hover and selection sync across tabs (sync.js).
import { h, clear } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { processGraph, edgeMask } from "./graph-data.js";
import { visibleMask, isDense, prunedAt, openingThreshold } from "./pruning.js";
import { createLinkGraph } from "./linkgraph.js";
import { createConnections } from "./connections.js";
import { createFeatureDetail } from "./feature.js";
import { createSubgraph } from "./subgraph.js";
import { createAnalysis } from "./analysis.js";
import { createInterventions } from "./interventions.js";
import { createGraphHead } from "./graph-head.js";
import { createGraphToolbar } from "./graph-toolbar.js";
import { startPanelLayout } from "./panel-layout.js";
import { startGraphSync } from "./sync.js";
import { applyLogitDiff } from "./logit-diff.js";
import { loadAtlasInfo } from "./atlas-info.js";
import { URL_KEY_NAMES, viewDefaults, viewFromQParams, viewFromSaved, viewFromUrl } from "./view-keys.js";
import { markSavedView } from "./share.js";
import { togglePin, setClicked, toggleSelect, held } from "./actions.js";

export function renderGraphView(root, slug, params) {
  const unsubs = [];
  const status = h("div", { class: "muted", id: "graph-status", role: "status", text: `Loading graph ${slug}…` });
  clear(root).append(h("section", { class: "view graph" }, status));
  let alive = true;
  const t0 = performance.now();

  (async () => {
    const json = await fetchGraph(slug, status);
    if (!json || !alive) return;
    performance.mark("cb-graph-fetched");
    const graph = processGraph(json);
    performance.mark("cb-graph-processed");
    graph.slug = graph.slug || slug;
    const { view, savedId } = await restoreView(graph, slug, params, status);
    if (!alive) return;
    showView(graph, view);
    markSavedView(savedId);
    unsubs.push(...buildPanels(root, graph, () => alive));
    performance.mark("cb-graph-built");
    // Mark "drawn" after the next frame is painted (bench/page.py reads this).
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark("cb-graph-drawn");
      window.__cbGraphOpenMs = performance.now() - t0;
      document.body.dataset.graphReady = "1";
    }, 0));
  })();

  return () => {
    alive = false;
    unsubs.forEach((u) => u());
  };
}

/** The graph JSON, or null (the reason shown in `status`). */
async function fetchGraph(slug, status) {
  try {
    return await api.graph(slug);
  } catch (e) {
    status.textContent = e.status === 404 ? `There is no graph "${slug}".` : `The graph could not be loaded. ${e.message}`;
    status.classList.add("error");
    return null;
  }
}

/**
 * The view to open with: a saved view (`?subgraph=`), else the URL's view keys, else the graph's own qParams.
 * Returns {view, savedId (the saved view's id, or null)}.
 */
async function restoreView(graph, slug, params, status) {
  const id = params.get("subgraph");
  if (id) {
    try {
      return { view: viewFromSaved(await api.subgraph(slug, id)), savedId: id };
    } catch (e) {
      status.textContent = `The saved view ${id} could not be opened (${e.message.replace(/\.$/, "")}), so the graph shows as it was traced.`;
    }
  } else if (URL_KEY_NAMES.some((k) => params.has(k))) {
    return { view: viewFromUrl(params), savedId: null };
  }
  return { view: viewFromQParams(graph.qParams || {}), savedId: null };
}

/** Put the graph and its view in the store; ids the graph does not have are dropped. */
function showView(graph, view) {
  // The synthetic logit-difference node first: the view may pin or select it.
  applyLogitDiff(graph, view.logitDiff || null);
  graph.opening = openingThreshold(graph);
  const ids = (list) => (list || []).filter((id) => graph.byId.has(id));
  store.set({
    graph,
    ...viewDefaults(),
    ...view,
    pinnedIds: ids(view.pinnedIds),
    supernodes: (view.supernodes || []).map((sn) => [sn[0], ...ids(sn.slice(1))]).filter((sn) => sn.length > 1),
    clickedId: view.clickedId && graph.byId.has(view.clickedId) ? view.clickedId : null,
    // Without a threshold of its own, a graph opens showing about 125 features (pruning.js).
    pruningThreshold: view.pruningThreshold ?? graph.opening.threshold,
    logitDiff: graph.logitDiff,
  });
}

/** The graph page's panels; returns their teardown functions. */
function buildPanels(root, graph, alive) {
  const head = createGraphHead(graph);
  const toolbar = createGraphToolbar(graph, graph.opening);
  const lgHost = h("div", { class: "lg-host" });
  const lgPanel = h("div", { class: "panel lg-panel", id: "link-graph" }, toolbar.el, lgHost);
  const conn = h("div", { class: "panel", id: "connections" });
  const detail = h("div", { class: "panel", id: "feature-detail" });
  const subInner = h("div", { class: "sg-inner" });
  const analysis = h("div", { class: "analysis", id: "analysis" });
  const sub = h("div", { class: "panel", id: "subgraph" }, subInner, analysis);
  const iv = h("div", { class: "panel", id: "interventions" });
  const panels = h("div", { class: "panels", id: "side-panels" }, conn, detail, sub);
  clear(root).append(h("section", { class: "view graph" }, head.el, lgPanel, panels, iv));

  const sync = startGraphSync(graph.slug, { onHover: (id) => lg.hoverId(id) });
  const lg = createLinkGraph(lgHost, { onClick: clickNode, onHover: (id) => sync.hover(id) });
  const follow = followView(graph, lg, toolbar);
  const unsubs = [head.destroy, toolbar.destroy, sync.close, ...follow.unsubs];
  unsubs.push(...followSize(lg, lgPanel, panels));
  unsubs.push(
    createConnections(conn, { hover: (id) => lg.hoverId(id) }),
    createFeatureDetail(detail),
    createSubgraph(subInner),
    createAnalysis(analysis, graph.slug),
    createInterventions(iv),
  );
  window.__cb = { lg, store };
  loadAtlasInfo(graph, alive).then((found) => {
    if (!alive()) return;
    toolbar.setDensityAvailable(found.frequencies > 0);
    // A new clerps object makes every label-showing panel redraw; user labels still win over atlas labels.
    if (found.labels) store.set({ clerps: { ...store.state.clerps } });
    if (found.frequencies && store.state.densityThreshold < 1) follow.redraw();
  });
  return unsubs;
}

/** A click in the link graph: select; Ctrl/⌘ pins; Shift (or G held) pins and selects for grouping. */
function clickNode(id, ev) {
  if (!id) return setClicked(null);
  if (ev.ctrlKey || ev.metaKey) togglePin(id);
  else if (ev.shiftKey || held.g) {
    if (!store.state.pinnedIds.includes(id)) togglePin(id);
    toggleSelect(id);
  } else setClicked(store.state.clickedId === id ? null : id);
}

/** Redraw the link graph (and the counts in the head and toolbar) as the view changes. */
function followView(graph, lg, toolbar) {
  // Pinned / clicked nodes stay visible whatever the filters: re-layout only when the set of such rescued nodes
  // changes.
  const rescued = (s) => {
    const pruned = prunedAt(graph, s.pruningThreshold);
    return [...s.pinnedIds, s.clickedId].filter((id) => {
      const n = id && graph.byId.get(id);
      if (!n || n.kind === "embedding" || n.kind === "logit") return false;
      return pruned(n) || isDense(n, s.densityThreshold);
    }).sort().join(",");
  };
  let lastRescued = "";
  const redraw = () => {
    const s = store.state;
    lastRescued = rescued(s);
    const keep = new Set([...s.pinnedIds, ...(s.clickedId ? [s.clickedId] : [])]);
    const { vis, hidden, hiddenDense, features } = visibleMask(graph, s.pruningThreshold, keep, s.densityThreshold);
    toolbar.setHidden(hidden, features);
    toolbar.setDenseHidden(hiddenDense);
    lg.setClerps(s.clerps);
    lg.setAllLinks(s.allLinks);
    lg.render(graph, vis, edgeMask(graph, s.hideLinks));
    lg.setPinned(s.pinnedIds);
    lg.setSelected(s.groupSelection);
    lg.setClicked(s.clickedId);
  };
  redraw();
  const unsubs = [
    store.subscribe(["pruningThreshold", "densityThreshold", "logitDiff", "theme"], redraw),
    store.subscribe(["hideLinks"], (s) => lg.setEdgeMask(edgeMask(graph, s.hideLinks))),
    store.subscribe(["allLinks"], (s) => lg.setAllLinks(s.allLinks)),
    store.subscribe(["pinnedIds", "clickedId"], (s) => {
      if (rescued(s) !== lastRescued) return redraw();
      lg.setPinned(s.pinnedIds);
      lg.setClicked(s.clickedId);
    }),
    store.subscribe(["groupSelection"], (s) => lg.setSelected(s.groupSelection)),
    store.subscribe(["clerps"], (s) => lg.setClerps(s.clerps)),
  ];
  return { redraw, unsubs };
}

/** Re-lay out the link graph when its panel is resized (drag handles) or the window is (debounced). */
function followSize(lg, lgPanel, panels) {
  const onResize = () => lg.relayout();
  let resizeTimer = null;
  const onWindowResize = () => {
    clearTimeout(resizeTimer);
    resizeTimer = setTimeout(onResize, 150);
  };
  window.addEventListener("resize", onWindowResize);
  return [
    startPanelLayout({ lgPanel, panels, onResize: () => lg.relayout() }),
    () => window.removeEventListener("resize", onWindowResize),
  ];
}
