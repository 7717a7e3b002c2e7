// Share / URL state: the whole view (graph, pinned, supernodes, labels, clicked node, threshold) lives in the
// query string, as Neuronpedia writes it; "copy link" and "save view" (short id via the API).
import { store } from "./state.js";
import { api } from "./api.js";

const isStr = (s) => typeof s === "string";

function parseJsonList(text, check) {
  if (!text) return null;
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) && v.every(check) ? v : null;
  } catch {
    return null;
  }
}

/** View state from URLSearchParams (unknown / malformed values are ignored). */
export function readViewParams(params) {
  const view = {};
  if (params.has("pinnedIds")) view.pinnedIds = params.get("pinnedIds").split(",").filter(Boolean);
  const sn = parseJsonList(params.get("supernodes"), (s) => Array.isArray(s) && s.length >= 1 && s.every(isStr));
  if (sn) view.supernodes = sn;
  const cl = parseJsonList(params.get("clerps"), (c) => Array.isArray(c) && c.length === 2 && c.every(isStr));
  if (cl) view.clerps = Object.fromEntries(cl);
  if (params.get("clickedId")) view.clickedId = params.get("clickedId");
  const t = Number.parseFloat(params.get("pruningThreshold"));
  if (Number.isFinite(t) && t > 0 && t <= 1) view.pruningThreshold = t;
  return view;
}

/** The saved-view body (POST /api/graphs/{slug}/subgraphs) -> store patch. */
export function viewFromSaved(saved) {
  const view = {
    pinnedIds: (saved.pinnedIds || []).filter(isStr),
    supernodes: (saved.supernodes || []).filter((s) => Array.isArray(s) && s.every(isStr)),
    clerps: Object.fromEntries((saved.clerps || []).filter((c) => Array.isArray(c) && c.length === 2)),
    clickedId: saved.clickedId || null,
  };
  if (typeof saved.pruningThreshold === "number") view.pruningThreshold = saved.pruningThreshold;
  return view;
}

export function currentViewQuery() {
  const s = store.state;
  const q = new URLSearchParams();
  if (s.pinnedIds.length) q.set("pinnedIds", s.pinnedIds.join(","));
  if (s.supernodes.length) q.set("supernodes", JSON.stringify(s.supernodes));
  const clerps = Object.entries(s.clerps);
  if (clerps.length) q.set("clerps", JSON.stringify(clerps));
  if (s.clickedId) q.set("clickedId", s.clickedId);
  q.set("pruningThreshold", String(s.pruningThreshold));
  return q;
}

export function shareUrl() {
  const slug = store.state.graph && store.state.graph.slug;
  return `${location.origin}/graph/${encodeURIComponent(slug)}?${currentViewQuery().toString()}`;
}

/** Keep the address bar in sync (replaceState: no history spam). */
export function startUrlSync() {
  store.subscribe(["pinnedIds", "supernodes", "clerps", "clickedId", "pruningThreshold"], (s) => {
    if (s.route.view !== "graph" || !s.graph) return;
    const url = `/graph/${encodeURIComponent(s.graph.slug)}?${currentViewQuery().toString()}`;
    history.replaceState(history.state, "", url);
  });
}

export async function copyText(text) {
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
    let ok = false;
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
  const url = shareUrl();
  const ok = await copyText(url);
  store.set({ toast: { text: ok ? "Link copied" : "Copy failed — select the link and copy it", url, at: Date.now() } });
  return url;
}

export async function saveView(name) {
  const s = store.state;
  const body = {
    name: name || undefined,
    pinnedIds: s.pinnedIds,
    supernodes: s.supernodes,
    clerps: Object.entries(s.clerps),
    pruningThreshold: s.pruningThreshold,
    clickedId: s.clickedId || undefined,
  };
  const res = await api.saveSubgraph(s.graph.slug, body);
  const url = `${location.origin}${res.url}`;
  await copyText(url);
  store.set({ toast: { text: `View saved (${res.id}) — link copied`, url, saved: res.id, at: Date.now() } });
  return url;
}
