// Graph view: loads /api/graphs/{slug}, restores the view from the URL (or a saved subgraph, or the graph's own
// qParams), and lays out the panels: header, link graph (with its toolbar), node connections, feature detail,
// subgraph, interventions. Panels resize (panel-layout.js); hover and selection sync across tabs (sync.js).
import { h, clear } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { processGraph, visibleMask, edgeMask, isDense } from "./graph-data.js";
import { createLinkGraph } from "./linkgraph.js";
import { createConnections } from "./connections.js";
import { createFeatureDetail } from "./feature.js";
import { createSubgraph } from "./subgraph.js";
import { createInterventions } from "./interventions.js";
import { createGraphHead } from "./graph-head.js";
import { createGraphToolbar } from "./graph-toolbar.js";
import { startPanelLayout } from "./panel-layout.js";
import { startGraphSync } from "./sync.js";
import { applyLogitDiff } from "./logit-diff.js";
import { loadAtlasInfo } from "./atlas-info.js";
import { readViewParams, viewFromSaved, VIEW_KEYS } from "./share.js";
import { togglePin, setClicked, toggleSelect, held } from "./actions.js";

export function renderGraphView(root, slug, params) {
  const unsubs = [];
  const status = h("div", { class: "muted", id: "graph-status", role: "status", text: `Loading graph ${slug}…` });
  clear(root).append(h("section", { class: "view graph" }, status));
  let alive = true;
  const t0 = performance.now();

  (async () => {
    let json;
    try {
      json = await api.graph(slug);
    } catch (e) {
      status.textContent = e.status === 404 ? `No graph "${slug}".` : `Could not load graph: ${e.message}`;
      status.classList.add("error");
      return;
    }
    if (!alive) return;
    performance.mark("cb-graph-fetched");
    const graph = processGraph(json);
    performance.mark("cb-graph-processed");
    graph.slug = graph.slug || slug;
    let view = {};
    const q = graph.qParams || {};
    if (q.pinnedIds) view.pinnedIds = (Array.isArray(q.pinnedIds) ? q.pinnedIds : String(q.pinnedIds).split(",")).filter(Boolean);
    if (Array.isArray(q.supernodes)) view.supernodes = q.supernodes;
    if (q.clickedId) view.clickedId = q.clickedId;
    if (params.get("subgraph")) {
      try {
        view = viewFromSaved(await api.subgraph(slug, params.get("subgraph")));
      } catch (e) {
        status.textContent = `Saved view not found (${e.message}); showing the graph.`;
      }
    } else if (VIEW_KEYS.some((k) => params.has(k))) {
      view = readViewParams(params);
    }
    // The synthetic logit-difference node first: the view may pin or select it.
    applyLogitDiff(graph, view.logitDiff || null);
    const ids = (list) => (list || []).filter((id) => graph.byId.has(id));
    store.set({
      graph,
      pinnedIds: ids(view.pinnedIds),
      supernodes: (view.supernodes || []).map((sn) => [sn[0], ...ids(sn.slice(1))]).filter((sn) => sn.length > 1),
      clerps: view.clerps || {},
      clickedId: view.clickedId && graph.byId.has(view.clickedId) ? view.clickedId : null,
      pruningThreshold: view.pruningThreshold ?? Math.min(0.8, graph.nodeThreshold ?? 0.8),
      densityThreshold: view.densityThreshold ?? 1,
      hiddenLinks: view.hiddenLinks || [],
      sgPos: view.sgPos || {},
      logitDiff: graph.logitDiff,
      groupSelection: [],
    });
    if (alive) build(graph);
    performance.mark("cb-graph-built");
    // Mark "drawn" after the next frame is painted (bench/page.py reads this).
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark("cb-graph-drawn");
      window.__cbGraphOpenMs = performance.now() - t0;
      document.body.dataset.graphReady = "1";
    }, 0));
  })();

  function build(graph) {
    const head = createGraphHead(graph);
    const toolbar = createGraphToolbar(graph);
    const lgHost = h("div", { class: "lg-host" });
    const lgPanel = h("div", { class: "panel lg-panel", id: "link-graph" }, toolbar.el, lgHost);
    const conn = h("div", { class: "panel", id: "connections" });
    const detail = h("div", { class: "panel", id: "feature-detail" });
    const sub = h("div", { class: "panel", id: "subgraph" });
    const iv = h("div", { class: "panel", id: "interventions" });
    const panels = h("div", { class: "panels", id: "side-panels" }, conn, detail, sub);
    clear(root).append(h("section", { class: "view graph" }, head.el, lgPanel, panels, iv));

    const sync = startGraphSync(graph.slug, { onHover: (id) => lg.hoverId(id) });
    const lg = createLinkGraph(lgHost, {
      onClick(id, ev) {
        if (!id) return setClicked(null);
        if (ev.ctrlKey || ev.metaKey) togglePin(id);
        else if (ev.shiftKey || held.g) {
          if (!store.state.pinnedIds.includes(id)) togglePin(id);
          toggleSelect(id);
        } else setClicked(store.state.clickedId === id ? null : id);
      },
      onHover: (id) => sync.hover(id),
    });
    // Pinned / clicked nodes stay visible whatever the filters: re-layout only when the set of such rescued nodes
    // changes.
    const rescued = (s) => [...s.pinnedIds, s.clickedId].filter((id) => {
      const n = id && graph.byId.get(id);
      if (!n || n.kind === "embedding" || n.kind === "logit") return false;
      return (n.influence !== null && n.influence > s.pruningThreshold) || isDense(n, s.densityThreshold);
    }).sort().join(",");
    let lastRescued = "";
    const redraw = () => {
      const s = store.state;
      lastRescued = rescued(s);
      const keep = new Set([...s.pinnedIds, ...(s.clickedId ? [s.clickedId] : [])]);
      const { vis, hidden, hiddenDense } = visibleMask(graph, s.pruningThreshold, keep, s.densityThreshold);
      head.setHidden(hidden);
      toolbar.setDenseHidden(hiddenDense);
      lg.setClerps(s.clerps);
      lg.render(graph, vis, edgeMask(graph, s.hiddenLinks));
      lg.setPinned(s.pinnedIds);
      lg.setSelected(s.groupSelection);
      lg.setClicked(s.clickedId);
    };
    redraw();
    unsubs.push(
      head.destroy,
      toolbar.destroy,
      sync.close,
      store.subscribe(["pruningThreshold", "densityThreshold", "logitDiff", "theme"], redraw),
      store.subscribe(["hiddenLinks"], (s) => lg.setEdgeMask(edgeMask(graph, s.hiddenLinks))),
      store.subscribe(["pinnedIds", "clickedId"], (s) => {
        if (rescued(s) !== lastRescued) return redraw();
        lg.setPinned(s.pinnedIds);
        lg.setClicked(s.clickedId);
      }),
      store.subscribe(["groupSelection"], (s) => lg.setSelected(s.groupSelection)),
      store.subscribe(["clerps"], (s) => lg.setClerps(s.clerps)),
    );
    unsubs.push(startPanelLayout({ lgPanel, panels, onResize: () => lg.relayout() }));
    const onResize = () => lg.relayout();
    let resizeTimer = null;
    const onWindowResize = () => {
      clearTimeout(resizeTimer);
      resizeTimer = setTimeout(onResize, 150);
    };
    window.addEventListener("resize", onWindowResize);
    unsubs.push(() => window.removeEventListener("resize", onWindowResize));
    unsubs.push(
      createConnections(conn, { hover: (id) => lg.hoverId(id) }),
      createFeatureDetail(detail),
      createSubgraph(sub),
      createInterventions(iv),
    );
    window.__cb = { lg, store };
    loadAtlasInfo(graph, () => alive).then((found) => {
      if (!alive) return;
      toolbar.setDensityAvailable(found.frequencies > 0);
      // A new clerps object makes every label-showing panel redraw; user labels still win over atlas labels.
      if (found.labels) store.set({ clerps: { ...store.state.clerps } });
      if (found.frequencies && store.state.densityThreshold < 1) redraw();
    });
  }

  return () => {
    alive = false;
    unsubs.forEach((u) => u());
  };
}
