// Graph view header: prompt, slug, model, sizes, graph scores; copy link, save view (with a name), saved views
// (by name and date), export, remix; toast + share link box. The pruning slider is in the link graph's toolbar.
import { h, clear, fmt } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { copyLink, saveView, defaultViewName } from "./share.js";
import { navigate } from "./router.js";

export function createGraphHead(graph) {
  const info = graph.info || {};
  const toast = h("span", { class: "toast", id: "toast", role: "status" });
  const shareInput = h("input", { id: "share-url", readonly: true, class: "share-url", "aria-label": "Share link", hidden: true });
  const nameInput = h("input", { id: "view-name", class: "view-name", "aria-label": "Name of the view to save", maxlength: 200 });
  const saveBtn = h("button", { class: "btn", id: "save-view", title: "Save this view under a short link (S)", text: "Save view" });
  const saved = savedViews(graph.slug);
  const nameHint = () => (nameInput.placeholder = `name: ${defaultViewName(store.state)}`);
  nameHint();
  saveBtn.addEventListener("click", () => saveView(nameInput.value.trim())
    .then(() => (nameInput.value = ""))
    .catch((e) => store.set({ toast: { text: `The view could not be saved. ${e.message}`, at: Date.now() } })));
  const scores = graphScores(info);
  const prompt = promptTitle(graph.prompt);
  const nNodes = graph.base ? graph.base.n : graph.nodes.length;
  const nLinks = graph.base ? graph.base.links.n : graph.links.n;
  const el = h("div", { class: "graph-head" },
    h("div", { class: "graph-title" },
      prompt.el,
      h("div", { class: "muted" }, h("code", { text: graph.slug }),
        ` · ${info.model || info.model_name || graph.meta.scan || ""} · ${nNodes} nodes · ${nLinks} links `, ...scores)),
    h("div", { class: "graph-controls" },
      h("button", { class: "btn", id: "copy-link", title: "Copy a link to exactly this view (C)", onclick: () => copyLink(), text: "Copy link" }),
      nameInput, saveBtn, saved.el,
      h("a", { class: "btn", href: api.exportUrl(graph.slug), download: `${graph.slug}.json`, text: "Export JSON" }),
      compareWith(graph),
      h("a", { class: "btn", href: `/trace?prompt=${encodeURIComponent(graph.prompt)}`, "data-link": "", text: "Remix" }),
      toast, shareInput));

  const unsubs = [
    prompt.destroy,
    store.subscribe(["pinnedIds", "supernodes", "clickedId"], nameHint),
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
  return { el, destroy: () => unsubs.forEach((u) => u()) };
}

/** The prompt as the page's title, cut to two lines (a 256-token prompt would push the graph off the screen),
 * with "show all" / "show less" when it is longer. */
function promptTitle(prompt) {
  const title = h("h1", { id: "graph-prompt", class: "clamped", text: prompt });
  const more = h("button", { class: "link-btn", id: "graph-prompt-more", type: "button", hidden: true, text: "show all" });
  more.addEventListener("click", () => {
    const open = title.classList.toggle("clamped");
    more.textContent = open ? "show all" : "show less";
  });
  // Only once it is laid out (and again as the window's width changes) can the page tell whether it is cut.
  const watch = new ResizeObserver(() => {
    if (title.classList.contains("clamped")) more.hidden = title.scrollHeight <= title.clientHeight + 1;
  });
  watch.observe(title);
  return { el: h("div", { class: "graph-prompt-box" }, title, more), destroy: () => watch.disconnect() };
}

const shortDate = (iso) => (iso
  ? new Date(iso).toLocaleString(undefined, { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" })
  : "");

/** The saved views of the graph, newest first, by name and date (a select that opens one); load() refreshes it. */
function savedViews(slug) {
  const el = h("select", { id: "saved-views", "aria-label": "Saved views", title: "Open a saved view" });
  const load = () => api.subgraphs(slug).then((list) => {
    clear(el).append(h("option", { value: "", text: `Saved views (${list.length})` }));
    const newest = [...list].sort((a, b) => String(b.created_at || "").localeCompare(String(a.created_at || "")));
    for (const v of newest) {
      const name = v.name || `view ${v.id}`;
      el.append(h("option", {
        value: v.id, text: `${name} — ${shortDate(v.created_at)}`,
        title: `${name} · ${(v.pinnedIds || []).length} pinned · ${v.created_at ? new Date(v.created_at).toLocaleString() : ""}`,
      }));
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

const TRACE_NEW = "+trace"; // not a slug ([a-z0-9_-])

/** "Compare with …": the other stored graphs of the same model; picking one opens /diff/{this}/{that}. */
function compareWith(graph) {
  const el = h("select", { id: "compare-with", "aria-label": "Compare with another graph", title: "Compare this graph with another of the same model" },
    h("option", { value: "", text: "Compare with …" }));
  const model = (graph.info || {}).model || (graph.info || {}).model_name;
  api.listGraphs("", 1, 100).then((r) => {
    for (const g of r.items) {
      if (g.slug === graph.slug || (model && g.model && g.model !== model)) continue;
      el.append(h("option", { value: g.slug, text: `${g.prompt.slice(0, 60)} (${g.slug})` }));
    }
  }).catch(() => el.remove());
  el.append(h("option", { value: TRACE_NEW, text: "A counterfactual prompt: trace it, then compare…" }));
  el.addEventListener("change", () => {
    if (el.value === TRACE_NEW) navigate(`/trace?${new URLSearchParams({ prompt: graph.prompt, compare: graph.slug })}`);
    else if (el.value) navigate(`/diff/${encodeURIComponent(graph.slug)}/${encodeURIComponent(el.value)}`);
  });
  return el;
}
