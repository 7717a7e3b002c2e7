// The view state of a graph, as one table. Each key has one name: the same in the store, in the URL query and in
// the saved-view body (POST /api/graphs/{slug}/subgraphs), so links and saved views made earlier keep working.
// Per key: its default, how it reads from / writes to the URL (`url`) and the saved view (`saved`); a key with
// neither lives in the page only. A codec's read(raw) gives undefined for a missing or malformed value (the key
// then keeps its default); its write(value) gives undefined for a value left out.
import { LINK_TAGS } from "./graph-data.js";

const isStr = (s) => typeof s === "string";
const isNum = (x) => typeof x === "number" && Number.isFinite(x);
const inUnit = (t) => isNum(t) && t > 0 && t <= 1; // a threshold in (0, 1]
const isEmpty = (v) =>
  v === null || v === "" || (Array.isArray(v) ? !v.length : typeof v === "object" && !Object.keys(v).length);
const unlessEmpty = (write) => (v) => (isEmpty(v) ? undefined : write(v));
const listOf = (v, check) => (Array.isArray(v) ? v.filter(check) : undefined);
const maybe = (v, convert) => (v === undefined ? undefined : convert(v));

const isSupernode = (s) => Array.isArray(s) && s.length >= 1 && s.every(isStr); // [label, id, id, ...]
const isClerp = (c) => Array.isArray(c) && c.length === 2 && c.every(isStr); // [node id, label]
const isPos = (p) => Array.isArray(p) && p.length === 3 && isStr(p[0]) && isNum(p[1]) && isNum(p[2]); // [id, x, y]
const isLinkTag = (t) => LINK_TAGS.includes(t);

// sgPos: {id: [x, y]} in the store, [[id, x, y], ...] outside (rounded).
const posFrom = (list) => Object.fromEntries(list.filter(isPos).map(([id, x, y]) => [id, [x, y]]));
const posList = (pos) => Object.entries(pos).map(([id, [x, y]]) => [id, Math.round(x), Math.round(y)]);

/** A JSON list in the URL: all elements pass `check`, or the whole value is ignored. */
function jsonList(text, check) {
  try {
    const v = JSON.parse(text);
    return Array.isArray(v) && v.every(check) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** A threshold in (0, 1]: `savedOk` accepts a saved one; `shown(t)` says whether it is written out. */
const threshold = (savedOk, shown) => ({
  url: {
    read: (text) => {
      const t = Number.parseFloat(text);
      return inUnit(t) ? t : undefined;
    },
    write: (t) => (shown(t) ? String(t) : undefined),
  },
  saved: { read: (v) => (savedOk(v) ? v : undefined), write: (t) => (shown(t) ? t : undefined) },
});

const VIEW_KEYS = [
  {
    key: "pinnedIds", // node ids
    initial: () => [],
    url: { read: (text) => text.split(",").filter(Boolean), write: unlessEmpty((ids) => ids.join(",")) },
    saved: { read: (v) => listOf(v, isStr), write: (ids) => ids },
  },
  {
    key: "supernodes", // [[label, id, id, ...], ...]
    initial: () => [],
    url: { read: (text) => jsonList(text, isSupernode), write: unlessEmpty(JSON.stringify) },
    saved: { read: (v) => listOf(v, isSupernode), write: (sn) => sn },
  },
  {
    key: "clerps", // node id -> custom label; [[id, label], ...] outside
    initial: () => ({}),
    url: {
      read: (text) => maybe(jsonList(text, isClerp), Object.fromEntries),
      write: unlessEmpty((c) => JSON.stringify(Object.entries(c))),
    },
    saved: { read: (v) => maybe(listOf(v, isClerp), Object.fromEntries), write: Object.entries },
  },
  {
    key: "clickedId",
    initial: () => null,
    url: { read: (text) => text || undefined, write: unlessEmpty((id) => id) },
    saved: { read: (v) => (isStr(v) && v ? v : undefined), write: unlessEmpty((id) => id) },
  },
  // Always written; a saved one is taken as it is (the API bounds it to [0, 1]). A graph opened without one opens
  // at pruning.js openingThreshold.
  { key: "pruningThreshold", initial: () => 0.8, ...threshold(isNum, () => true) },
  {
    key: "densityThreshold", // hide features whose atlas frequency is above this (1 = off, left out)
    initial: () => 1,
    ...threshold(inUnit, (t) => t < 1),
  },
  {
    key: "hideLinks", // link classes not drawn (graph-data.js LINK_TAGS)
    initial: () => [],
    url: { read: (text) => text.split(",").filter(isLinkTag), write: unlessEmpty((tags) => tags.join(",")) },
    saved: { read: (v) => listOf(v, isLinkTag), write: unlessEmpty((tags) => tags) },
  },
  {
    key: "allLinks", // draw every link, not only the strongest (URL only: a display choice, not part of a saved view)
    initial: () => false,
    url: { read: (text) => (text === "1" ? true : undefined), write: (on) => (on ? "1" : undefined) },
  },
  {
    key: "sgPos", // subgraph item id -> [x, y] (dragged or auto-laid-out positions, subgraph viewBox units)
    initial: () => ({}),
    url: {
      read: (text) => maybe(jsonList(text, Array.isArray), posFrom),
      write: unlessEmpty((pos) => JSON.stringify(posList(pos))),
    },
    saved: { read: (v) => (Array.isArray(v) ? posFrom(v) : undefined), write: unlessEmpty(posList) },
  },
  {
    key: "logitDiff", // [target logit id, contrast logit id]: the synthetic "logit difference" node
    initial: () => null,
    url: {
      read: (text) => {
        const ids = text.split("__vs__");
        return ids.length === 2 && ids[0] && ids[1] ? ids : undefined;
      },
      write: unlessEmpty((ids) => ids.join("__vs__")),
    },
    saved: {
      read: (v) => (Array.isArray(v) && v.length === 2 ? v.filter(isStr) : undefined),
      write: unlessEmpty((ids) => ids),
    },
  },
  { key: "groupSelection", initial: () => [] }, // node ids selected for grouping (page only)
];

const URL_KEYS = VIEW_KEYS.filter((k) => k.url);
const SAVED_KEYS = VIEW_KEYS.filter((k) => k.saved);

/** Names of the keys a URL carries (their presence overrides the graph's own qParams). */
export const URL_KEY_NAMES = URL_KEYS.map((k) => k.key);

/** Every view key at its default: the store's initial view, and the view of a graph opened bare. */
export function viewDefaults() {
  return Object.fromEntries(VIEW_KEYS.map((k) => [k.key, k.initial()]));
}

/** The view from URLSearchParams: {key: value} for the keys present and well-formed. */
export function viewFromUrl(params) {
  const view = {};
  for (const { key, url } of URL_KEYS) {
    const v = params.has(key) ? url.read(params.get(key)) : undefined;
    if (v !== undefined) view[key] = v;
  }
  return view;
}

/** The query string of a view (store state). */
export function viewToUrl(state) {
  const q = new URLSearchParams();
  for (const { key, url } of URL_KEYS) {
    const text = url.write(state[key]);
    if (text !== undefined) q.set(key, text);
  }
  return q;
}

/** A saved view (GET /api/graphs/{slug}/subgraphs/{id}) -> {key: value}. */
export function viewFromSaved(saved) {
  const view = {};
  for (const { key, saved: codec } of SAVED_KEYS) {
    const v = codec.read(saved[key]);
    if (v !== undefined) view[key] = v;
  }
  return view;
}

/** The saved-view body of a view (store state), without its name. */
export function viewToSaved(state) {
  const body = {};
  for (const { key, saved } of SAVED_KEYS) {
    const v = saved.write(state[key]);
    if (v !== undefined) body[key] = v;
  }
  return body;
}

/** The view a graph file carries in its own `qParams` (circuit-tracer's: pinned ids, supernodes, clicked node). */
export function viewFromQParams(q) {
  const view = {};
  if (q.pinnedIds) {
    view.pinnedIds = (Array.isArray(q.pinnedIds) ? q.pinnedIds : String(q.pinnedIds).split(",")).filter(Boolean);
  }
  if (Array.isArray(q.supernodes)) view.supernodes = q.supernodes;
  if (q.clickedId) view.clickedId = q.clickedId;
  return view;
}
