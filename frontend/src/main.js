// App shell: header, routes, theme, shortcuts.
import "./styles.css";
import { h, clear } from "./dom.js";
import { store } from "./state.js";
import { api } from "./api.js";
import { startRouter } from "./router.js";
import { startShortcuts, helpButton } from "./help.js";
import { toggleTheme } from "./theme.js";
import { startUrlSync } from "./share.js";
import { viewDefaults } from "./view-keys.js";
import { renderBrowse } from "./browse.js";
import { renderTrace } from "./trace.js";
import { renderGraphView } from "./graph-view.js";
import { renderFeaturePage } from "./feature-page.js";
import { renderDiffPage } from "./diff-page.js";
import { startAuth } from "./auth.js";

const app = document.getElementById("app");
const themeBtn = h("button", { class: "icon-btn", id: "theme-btn", title: "Toggle theme (T)", "aria-label": "Toggle theme", onclick: toggleTheme });
const engineBadge = h("span", { class: "badge", id: "engine-badge" });
const header = h("header", { class: "topbar" },
  h("a", { class: "brand", href: "/", "data-link": "" }, "Circuitboard"),
  h("nav", {}, h("a", { href: "/", "data-link": "", text: "Browse" }), h("a", { href: "/trace", "data-link": "", text: "Trace" })),
  h("span", { class: "spacer" }), engineBadge, startAuth(), themeBtn, helpButton());
const main = h("main", { id: "main" });
clear(app).append(header, main);

const setThemeIcon = () => (themeBtn.textContent = store.state.theme === "dark" ? "☀" : "☾");
store.subscribe(["theme"], setThemeIcon);
setThemeIcon();

let teardown = null;
let current = null;
store.subscribe(["route"], (s) => {
  const r = s.route;
  const key = `${r.view}:${r.slug || ""}`;
  if (key === current) return;
  current = key;
  if (teardown) teardown();
  teardown = null;
  if (r.view !== "graph") {
    store.set({ graph: null, ...viewDefaults() });
  }
  for (const a of header.querySelectorAll("nav a")) a.classList.toggle("active", a.getAttribute("href") === (r.view === "trace" ? "/trace" : r.view === "browse" ? "/" : ""));
  if (r.view === "graph") {
    document.title = `${r.slug} · Circuitboard`;
    teardown = renderGraphView(main, r.slug, r.params);
  } else if (r.view === "diff") {
    document.title = `${r.a} vs ${r.b} · Circuitboard`;
    teardown = renderDiffPage(main, r.a, r.b);
  } else if (r.view === "feature") {
    document.title = `Feature L${r.layer} #${r.index} · Circuitboard`;
    teardown = renderFeaturePage(main, r.layer, r.index, r.params);
  } else if (r.view === "trace") {
    document.title = "Trace · Circuitboard";
    teardown = renderTrace(main);
  } else {
    document.title = "Circuitboard";
    teardown = renderBrowse(main);
  }
});

api.config().then((config) => {
  store.set({ config });
  const m = config.model || {};
  engineBadge.textContent = m.model_name || "";
  engineBadge.title = `${m.model_name || ""} · ${config.transcoders || ""} · ${config.device || ""}`;
}).catch(() => {
  engineBadge.textContent = "no engine config";
});

startShortcuts();
startUrlSync();
startRouter();
