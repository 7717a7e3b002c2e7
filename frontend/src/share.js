// Share / URL state: the whole view (graph, pinned, supernodes, labels, clicked node, pruning and density
// thresholds, hidden link types, subgraph positions, logit difference) lives in the query string, with
// Neuronpedia's names where it has them; "copy link" and "save view" (short id via the API).
import { store } from "./state.js";
import { api } from "./api.js";
import { LINK_TAGS } from "./graph-data.js";

const isStr = (s) => typeof s === "string";
const isNum = (x) => typeof x === "number" && Number.isFinite(x);

/** Query keys that make up a view (their presence in a URL overrides the graph's own qParams). */
export const VIEW_KEYS = ["pinnedIds", "supernodes", "clerps", "clickedId", "pruningThreshold", "densityThreshold",
  "hideLinks", "sgPos", "logitDiff"];

const linkTags = (list) => (Array.isArray(list) ? list.filter((t) => LINK_TAGS.includes(t)) : []);
const sgPosFrom = (list) => Object.fromEntries((list || [])
  .filter((p) => Array.isArray(p) && p.length === 3 && isStr(p[0]) && isNum(p[1]) && isNum(p[2]))
  .map(([id, x, y]) => [id, [x, y]]));
const density = (t) => (isNum(t) && t > 0 && t <= 1 ? t : null);

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
  const d = density(Number.parseFloat(params.get("densityThreshold")));
  if (d !== null) view.densityThreshold = d;
  if (params.has("hideLinks")) view.hiddenLinks = linkTags(params.get("hideLinks").split(","));
  const pos = parseJsonList(params.get("sgPos"), (p) => Array.isArray(p));
  if (pos) view.sgPos = sgPosFrom(pos);
  const diff = (params.get("logitDiff") || "").split("__vs__");
  if (diff.length === 2 && diff[0] && diff[1]) view.logitDiff = diff;
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
  if (density(saved.densityThreshold) !== null) view.densityThreshold = saved.densityThreshold;
  if (saved.hideLinks) view.hiddenLinks = linkTags(saved.hideLinks);
  if (saved.sgPos) view.sgPos = sgPosFrom(saved.sgPos);
  if (Array.isArray(saved.logitDiff) && saved.logitDiff.length === 2) view.logitDiff = saved.logitDiff.filter(isStr);
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
  if (s.densityThreshold < 1) q.set("densityThreshold", String(s.densityThreshold));
  if (s.hiddenLinks.length) q.set("hideLinks", s.hiddenLinks.join(","));
  const pos = sgPosList(s.sgPos);
  if (pos.length) q.set("sgPos", JSON.stringify(pos));
  if (s.logitDiff) q.set("logitDiff", s.logitDiff.join("__vs__"));
  return q;
}

const sgPosList = (pos) => Object.entries(pos || {}).map(([id, [x, y]]) => [id, Math.round(x), Math.round(y)]);

export function shareUrl() {
  const slug = store.state.graph && store.state.graph.slug;
  return `${location.origin}/graph/${encodeURIComponent(slug)}?${currentViewQuery().toString()}`;
}

/** Keep the address bar in sync (replaceState: no history spam). */
export function startUrlSync() {
  const keys = ["pinnedIds", "supernodes", "clerps", "clickedId", "pruningThreshold", "densityThreshold", "hiddenLinks",
    "sgPos", "logitDiff"];
  store.subscribe(keys, (s) => {
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
    densityThreshold: s.densityThreshold < 1 ? s.densityThreshold : undefined,
    clickedId: s.clickedId || undefined,
    hideLinks: s.hiddenLinks.length ? s.hiddenLinks : undefined,
    sgPos: Object.keys(s.sgPos).length ? sgPosList(s.sgPos) : undefined,
    logitDiff: s.logitDiff || undefined,
  };
  const res = await api.saveSubgraph(s.graph.slug, body);
  const url = `${location.origin}${res.url}`;
  await copyText(url);
  store.set({ toast: { text: `View saved (${res.id}) — link copied`, url, saved: res.id, at: Date.now() } });
  return url;
}
