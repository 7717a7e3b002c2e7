// Graph view: loads /api/graphs/{slug}, restores the view from the URL (or a saved subgraph, or the graph's own
// qParams), and lays out the panels: link graph, node connections, feature detail, subgraph, interventions.
import { h, clear, debounce, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { processGraph, visibleMask } from "./graph-data.js";
import { createLinkGraph } from "./linkgraph.js";
import { createConnections } from "./connections.js";
import { createFeatureDetail } from "./feature.js";
import { createSubgraph } from "./subgraph.js";
import { createInterventions } from "./interventions.js";
import { readViewParams, viewFromSaved, copyLink, saveView } from "./share.js";
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
    const hasUrlView = ["pinnedIds", "supernodes", "clerps", "clickedId", "pruningThreshold"].some((k) => params.has(k));
    if (params.get("subgraph")) {
      try {
        view = viewFromSaved(await api.subgraph(slug, params.get("subgraph")));
      } catch (e) {
        status.textContent = `Saved view not found (${e.message}); showing the graph.`;
      }
    } else if (hasUrlView) {
      view = readViewParams(params);
    }
    const ids = (list) => (list || []).filter((id) => graph.byId.has(id));
    store.set({
      graph,
      pinnedIds: ids(view.pinnedIds),
      supernodes: (view.supernodes || []).filter((sn) => sn.length > 1),
      clerps: view.clerps || {},
      clickedId: view.clickedId && graph.byId.has(view.clickedId) ? view.clickedId : null,
      pruningThreshold: view.pruningThreshold ?? Math.min(0.8, graph.nodeThreshold ?? 0.8),
      groupSelection: [],
    });
    if (alive) build(graph);
    performance.mark("cb-graph-built");
    loadAtlasLabels(graph);
    // Mark "drawn" after the next frame is painted (bench/page.py reads this).
    requestAnimationFrame(() => setTimeout(() => {
      performance.mark("cb-graph-drawn");
      window.__cbGraphOpenMs = performance.now() - t0;
      document.body.dataset.graphReady = "1";
    }, 0));
  })();

  /** Label feature nodes with the atlas's labels (tooltips, link graph, lists); without an atlas keep ids. */
  async function loadAtlasLabels(graph) {
    const feats = graph.nodes.filter((n) => n.kind === "feature" && !n.clerp && n.featIndex !== null);
    if (!feats.length) return;
    const keys = new Map(feats.map((n) => [`${n.featLayer}_${n.featIndex}`, [n.featLayer, n.featIndex]]));
    let labels;
    try {
      labels = await api.featureLabels([...keys.values()].slice(0, 10000));
    } catch {
      return; // no atlas for this transcoder set: generated labels stay
    }
    let changed = false;
    for (const n of feats) {
      const label = labels[`${n.featLayer}_${n.featIndex}`];
      if (label) {
        n.clerp = label;
        changed = true;
      }
    }
    // A new clerps object makes every label-showing panel redraw; user labels still win over atlas labels.
    if (changed && alive) store.set({ clerps: { ...store.state.clerps } });
  }

  function build(graph) {
    const info = graph.info || {};
    const slider = h("input", { type: "range", id: "pruning", min: 0.05, max: 1, step: 0.01, value: store.state.pruningThreshold, "aria-label": "Pruning threshold" });
    const sliderText = h("span", { id: "pruning-text", class: "muted" });
    const toast = h("span", { class: "toast", id: "toast", role: "status" });
    const shareInput = h("input", { id: "share-url", readonly: true, class: "share-url", "aria-label": "Share link", hidden: true });
    const saveBtn = h("button", { class: "btn", id: "save-view", title: "Save this view under a short id (S)", text: "Save view" });
    const savedSel = h("select", { id: "saved-views", "aria-label": "Saved views", title: "Open a saved view" });
    const loadSaved = () => api.subgraphs(graph.slug).then((list) => {
      clear(savedSel).append(h("option", { value: "", text: `Saved views (${list.length})` }));
      for (const v of list) {
        const when = v.created_at ? new Date(v.created_at).toLocaleString() : "";
        savedSel.append(h("option", { value: v.id, text: `${v.name || v.id} · ${(v.pinnedIds || []).length} pinned · ${when}` }));
      }
    }).catch(() => savedSel.remove());
    loadSaved();
    savedSel.addEventListener("change", () => {
      if (savedSel.value) location.assign(`/graph/${encodeURIComponent(graph.slug)}?subgraph=${encodeURIComponent(savedSel.value)}`);
    });
    saveBtn.addEventListener("click", () => saveView()
      .catch((e) => store.set({ toast: { text: `Save failed: ${e.message}`, at: Date.now() } })));
    const scores = [];
    if (typeof info.replacement_score === "number") scores.push(h("span", { class: "score", id: "replacement-score", title: "Replacement score", text: `replacement ${fmt(info.replacement_score)}` }));
    if (typeof info.completeness_score === "number") scores.push(h("span", { class: "score", id: "completeness-score", title: "Completeness score", text: `completeness ${fmt(info.completeness_score)}` }));
    const head = h("div", { class: "graph-head" },
      h("div", { class: "graph-title" },
        h("h1", { id: "graph-prompt", text: graph.prompt }),
        h("div", { class: "muted" }, h("code", { text: graph.slug }),
          ` · ${info.model || info.model_name || graph.meta.scan || ""} · ${graph.nodes.length} nodes · ${graph.links.n} links `, ...scores)),
      h("div", { class: "graph-controls" },
        h("label", { class: "slider" }, h("span", { text: "Show nodes up to influence" }), slider, sliderText),
        h("button", { class: "btn", id: "copy-link", title: "Copy a link to exactly this view (C)", onclick: () => copyLink(), text: "Copy link" }),
        saveBtn, savedSel,
        h("a", { class: "btn", href: api.exportUrl(graph.slug), download: `${graph.slug}.json`, text: "Export JSON" }),
        h("a", { class: "btn", href: `/trace?prompt=${encodeURIComponent(graph.prompt)}`, "data-link": "", text: "Remix" }),
        toast, shareInput));
    const lgPanel = h("div", { class: "panel lg-panel", id: "link-graph" });
    const conn = h("div", { class: "panel", id: "connections" });
    const detail = h("div", { class: "panel", id: "feature-detail" });
    const sub = h("div", { class: "panel", id: "subgraph" });
    const iv = h("div", { class: "panel", id: "interventions" });
    clear(root).append(h("section", { class: "view graph" }, head, lgPanel,
      h("div", { class: "panels" }, conn, detail, sub), iv));

    const lg = createLinkGraph(lgPanel, {
      onClick(id, ev) {
        if (!id) return setClicked(null);
        if (ev.ctrlKey || ev.metaKey) togglePin(id);
        else if (ev.shiftKey || held.g) {
          if (!store.state.pinnedIds.includes(id)) togglePin(id);
          toggleSelect(id);
        } else setClicked(store.state.clickedId === id ? null : id);
      },
    });
    const forced = (s) => [...s.pinnedIds, s.clickedId].filter((id) => {
      const n = id && graph.byId.get(id);
      return n && n.influence !== null && n.influence > s.pruningThreshold && n.kind !== "embedding" && n.kind !== "logit";
    }).sort().join(",");
    let lastForced = "";
    const redraw = () => {
      const s = store.state;
      lastForced = forced(s);
      const keep = new Set([...s.pinnedIds, ...(s.clickedId ? [s.clickedId] : [])]);
      const { vis, hidden } = visibleMask(graph, s.pruningThreshold, keep);
      sliderText.textContent = `${fmt(s.pruningThreshold, 2)} — hiding ${hidden} of ${graph.nodes.length} nodes`;
      lg.setClerps(s.clerps);
      lg.render(graph, vis);
      lg.setPinned(s.pinnedIds);
      lg.setSelected(s.groupSelection);
      lg.setClicked(s.clickedId);
    };
    redraw();
    const sliderApply = debounce(() => store.set({ pruningThreshold: Number(slider.value) }), 120);
    slider.addEventListener("input", () => {
      sliderText.textContent = `${fmt(Number(slider.value), 2)} …`;
      sliderApply();
    });
    unsubs.push(
      store.subscribe(["pruningThreshold", "theme"], () => {
        slider.value = store.state.pruningThreshold;
        redraw();
      }),
      store.subscribe(["pinnedIds", "clickedId"], (s) => {
        // Pinned / clicked nodes stay visible beyond the threshold: re-layout only when that set changes.
        const f = forced(s);
        if (f !== lastForced) return redraw();
        lg.setPinned(s.pinnedIds);
        lg.setClicked(s.clickedId);
      }),
      store.subscribe(["groupSelection"], (s) => lg.setSelected(s.groupSelection)),
      store.subscribe(["clerps"], (s) => lg.setClerps(s.clerps)),
      store.subscribe(["toast"], (s) => {
        if (!s.toast) return;
        toast.textContent = s.toast.text;
        if (s.toast.saved) loadSaved();
        if (s.toast.url) {
          shareInput.value = s.toast.url;
          shareInput.hidden = false;
        }
      }),
    );
    const onResize = debounce(() => lg.relayout(), 150);
    window.addEventListener("resize", onResize);
    unsubs.push(() => window.removeEventListener("resize", onResize));
    unsubs.push(
      createConnections(conn, { hover: (id) => lg.hoverId(id) }),
      createFeatureDetail(detail),
      createSubgraph(sub),
      createInterventions(iv),
    );
    window.__cb = { lg, store };
  }

  return () => {
    alive = false;
    unsubs.forEach((u) => u());
  };
}
