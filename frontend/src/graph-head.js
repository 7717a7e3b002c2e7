// Graph view header: prompt, slug, model, sizes, graph scores; pruning slider; copy link, save view, saved views,
// export, remix; toast + share link box.
import { h, clear, debounce, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { copyLink, saveView } from "./share.js";

export function createGraphHead(graph) {
  const info = graph.info || {};
  const slider = h("input", { type: "range", id: "pruning", min: 0.05, max: 1, step: 0.01, value: store.state.pruningThreshold, "aria-label": "Pruning threshold" });
  const sliderText = h("span", { id: "pruning-text", class: "muted" });
  const toast = h("span", { class: "toast", id: "toast", role: "status" });
  const shareInput = h("input", { id: "share-url", readonly: true, class: "share-url", "aria-label": "Share link", hidden: true });
  const saveBtn = h("button", { class: "btn", id: "save-view", title: "Save this view under a short id (S)", text: "Save view" });
  const saved = savedViews(graph.slug);
  saveBtn.addEventListener("click", () => saveView()
    .catch((e) => store.set({ toast: { text: `Save failed: ${e.message}`, at: Date.now() } })));
  const scores = graphScores(info);
  const nNodes = graph.base ? graph.base.n : graph.nodes.length;
  const nLinks = graph.base ? graph.base.links.n : graph.links.n;
  const el = h("div", { class: "graph-head" },
    h("div", { class: "graph-title" },
      h("h1", { id: "graph-prompt", text: graph.prompt }),
      h("div", { class: "muted" }, h("code", { text: graph.slug }),
        ` · ${info.model || info.model_name || graph.meta.scan || ""} · ${nNodes} nodes · ${nLinks} links `, ...scores)),
    h("div", { class: "graph-controls" },
      h("label", { class: "slider" }, h("span", { text: "Show nodes up to influence" }), slider, sliderText),
      h("button", { class: "btn", id: "copy-link", title: "Copy a link to exactly this view (C)", onclick: () => copyLink(), text: "Copy link" }),
      saveBtn, saved.el,
      h("a", { class: "btn", href: api.exportUrl(graph.slug), download: `${graph.slug}.json`, text: "Export JSON" }),
      h("a", { class: "btn", href: `/trace?prompt=${encodeURIComponent(graph.prompt)}`, "data-link": "", text: "Remix" }),
      toast, shareInput));

  const sliderApply = debounce(() => store.set({ pruningThreshold: Number(slider.value) }), 120);
  slider.addEventListener("input", () => {
    sliderText.textContent = `${fmt(Number(slider.value), 2)} …`;
    sliderApply();
  });
  const unsubs = [
    store.subscribe(["pruningThreshold"], (s) => (slider.value = s.pruningThreshold)),
    store.subscribe(["toast"], (s) => {
      if (!s.toast) return;
      toast.textContent = s.toast.text;
      if (s.toast.saved) saved.load();
      if (s.toast.url) {
        shareInput.value = s.toast.url;
        shareInput.hidden = false;
      }
    }),
  ];
  return {
    el,
    /** "0.80 — hiding N of M nodes" (the nodes the pruning threshold hides). */
    setHidden(hidden) {
      sliderText.textContent = `${fmt(store.state.pruningThreshold, 2)} — hiding ${hidden} of ${graph.nodes.length} nodes`;
    },
    destroy: () => unsubs.forEach((u) => u()),
  };
}

/** The saved views of the graph (a select that opens one); load() refreshes it; gone when the API has none. */
function savedViews(slug) {
  const el = h("select", { id: "saved-views", "aria-label": "Saved views", title: "Open a saved view" });
  const load = () => api.subgraphs(slug).then((list) => {
    clear(el).append(h("option", { value: "", text: `Saved views (${list.length})` }));
    for (const v of list) {
      const when = v.created_at ? new Date(v.created_at).toLocaleString() : "";
      el.append(h("option", { value: v.id, text: `${v.name || v.id} · ${(v.pinnedIds || []).length} pinned · ${when}` }));
    }
  }).catch(() => el.remove());
  load();
  el.addEventListener("change", () => {
    if (el.value) location.assign(`/graph/${encodeURIComponent(slug)}?subgraph=${encodeURIComponent(el.value)}`);
  });
  return { el, load };
}

/** The graph's replacement / completeness scores, where the file has them. */
function graphScores(info) {
  const score = (key, id, title, name) => (typeof info[key] === "number"
    ? h("span", { class: "score", id, title, text: `${name} ${fmt(info[key])}` })
    : null);
  return [
    score("replacement_score", "replacement-score", "Replacement score", "replacement"),
    score("completeness_score", "completeness-score", "Completeness score", "completeness"),
  ].filter(Boolean);
}
