// Share: the view (view-keys.js) kept in the address bar, "copy link", and "save view" (a short id via the API).
import { store } from "./state.js";
import { api } from "./api.js";
import { URL_KEY_NAMES, viewToUrl, viewToSaved } from "./view-keys.js";

const viewPath = (s) => `/graph/${encodeURIComponent(s.graph.slug)}?${viewToUrl(s).toString()}`;

/** Keep the address bar in sync (replaceState: no history spam). */
export function startUrlSync() {
  store.subscribe(URL_KEY_NAMES, (s) => {
    if (s.route.view !== "graph" || !s.graph) return;
    history.replaceState(history.state, "", viewPath(s));
  });
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
  store.set({ toast: { text: ok ? "Link copied" : "Copy failed — select the link and copy it", url, at: Date.now() } });
  return url;
}

export async function saveView(name) {
  const s = store.state;
  const body = { name: name || undefined, ...viewToSaved(s) };
  const res = await api.saveSubgraph(s.graph.slug, body);
  const url = `${location.origin}${res.url}`;
  await copyText(url);
  store.set({ toast: { text: `View saved (${res.id}) — link copied`, url, saved: res.id, at: Date.now() } });
  return url;
}
