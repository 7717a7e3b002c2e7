// Share: the view (view-keys.js) kept in the address bar, "copy link", and "save view" (a short id via the API).
// A view opened from (or just saved as) `?subgraph={id}` keeps that short link in the address bar until it changes.
import { store } from "./state.js";
import { api } from "./api.js";
import { URL_KEY_NAMES, viewToUrl, viewToSaved } from "./view-keys.js";

const graphPath = (s) => `/graph/${encodeURIComponent(s.graph.slug)}`;
const viewPath = (s) => `${graphPath(s)}?${viewToUrl(s).toString()}`;

let savedView = null; // {slug, id, query}: the saved view on screen and its URL query, while the view is unchanged

/** The address bar's path: the saved view's short link while the view is the saved one, else the whole view. */
function addressPath(s) {
  const query = viewToUrl(s).toString();
  if (savedView && savedView.slug === s.graph.slug && savedView.query === query) {
    return `${graphPath(s)}?subgraph=${encodeURIComponent(savedView.id)}`;
  }
  return `${graphPath(s)}?${query}`;
}

/** The view now on screen is the saved view `id` (null: none); the address bar shows its short link. */
export function markSavedView(id) {
  const s = store.state;
  savedView = id && s.graph ? { slug: s.graph.slug, id, query: viewToUrl(s).toString() } : null;
  if (s.route.view === "graph" && s.graph) history.replaceState(history.state, "", addressPath(s));
}

/** Keep the address bar in sync (replaceState: no history spam). */
export function startUrlSync() {
  store.subscribe(URL_KEY_NAMES, (s) => {
    if (s.route.view !== "graph" || !s.graph) return;
    history.replaceState(history.state, "", addressPath(s));
  });
}

/** A name for a view saved without one: "2 supernodes, 12 pinned", else the selected node, else the threshold. */
export function defaultViewName(s) {
  const grouped = new Set(s.supernodes.flatMap((sn) => sn.slice(1)));
  const loose = s.pinnedIds.filter((id) => !grouped.has(id)).length;
  const parts = [];
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
  if (s.supernodes.length) parts.push(plural(s.supernodes.length, "supernode"));
  if (loose) parts.push(`${loose} pinned`);
  if (parts.length) return parts.join(", ");
  if (s.clickedId) return `node ${s.clickedId}`;
  return `threshold ${Number(s.pruningThreshold.toFixed(3))}`;
}

async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    ta.select();
    let ok;
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

export async function copyLink() {
  const url = `${location.origin}${viewPath(store.state)}`;
  const ok = await copyText(url);
  store.set({ toast: { text: ok ? "Link copied" : "The link could not be copied: select it below and copy it by hand.", url, at: Date.now() } });
  return url;
}

export async function saveView(name) {
  const s = store.state;
  const body = { name: name || defaultViewName(s), ...viewToSaved(s) };
  const res = await api.saveSubgraph(s.graph.slug, body);
  const url = `${location.origin}${res.url}`;
  await copyText(url);
  markSavedView(res.id);
  store.set({ toast: { text: `View "${body.name}" saved — link copied`, url, saved: res.id, at: Date.now() } });
  return url;
}
