// Client-side routes: / (browse), /trace, /graph/{slug}, /diff/{a}/{b}, /feature/{layer}/{index}.
import { store } from "./state.js";

function parseRoute(loc = location) {
  const params = new URLSearchParams(loc.search);
  const m = /^\/graph\/([^/]+)\/?$/.exec(loc.pathname);
  if (m) return { view: "graph", slug: decodeURIComponent(m[1]), params };
  const d = /^\/diff\/([^/]+)\/([^/]+)\/?$/.exec(loc.pathname);
  if (d) {
    const [a, b] = [decodeURIComponent(d[1]), decodeURIComponent(d[2])];
    return { view: "diff", slug: `${a}/${b}`, a, b, params };
  }
  const f = /^\/feature\/(\d+)\/(\d+)\/?$/.exec(loc.pathname);
  if (f) return { view: "feature", slug: `${f[1]}/${f[2]}`, layer: Number(f[1]), index: Number(f[2]), params };
  if (/^\/trace\/?$/.test(loc.pathname)) return { view: "trace", slug: null, params };
  return { view: "browse", slug: null, params };
}

export function navigate(url, { replace = false } = {}) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  store.set({ route: parseRoute() });
}

export function startRouter() {
  window.addEventListener("popstate", () => store.set({ route: parseRoute() }));
  // Intercept same-origin links marked data-link.
  document.addEventListener("click", (ev) => {
    const a = ev.target.closest && ev.target.closest("a[data-link]");
    if (!a || ev.ctrlKey || ev.metaKey || ev.shiftKey || ev.button !== 0) return;
    ev.preventDefault();
    navigate(a.getAttribute("href"));
  });
  store.set({ route: parseRoute() });
}
