// Light / dark theme: `data-theme` on <html>, saved in localStorage; canvas colours come from CSS variables.
import { store } from "./state.js";

let cache = null;

export function colors() {
  if (cache && cache.theme === store.state.theme) return cache;
  const cs = getComputedStyle(document.documentElement);
  const v = (name, fallback) => cs.getPropertyValue(name).trim() || fallback;
  cache = {
    theme: store.state.theme,
    pos: v("--pos", "#1b7837"),
    neg: v("--neg", "#762a83"),
    text: v("--fg", "#222"),
  };
  return cache;
}

function setTheme(theme) {
  document.documentElement.dataset.theme = theme;
  try {
    localStorage.setItem("cb-theme", theme);
  } catch {
    /* private mode */
  }
  cache = null;
  store.set({ theme });
}

export function toggleTheme() {
  setTheme(store.state.theme === "dark" ? "light" : "dark");
}
