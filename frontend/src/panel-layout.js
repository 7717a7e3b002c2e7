// Resizable panels: a drag handle under the link graph sets its height; handles between the side panels set their
// column widths; a fullscreen toggle maximises the link graph. Sizes persist in localStorage ("cb-panels");
// double-click a handle to go back to the default size.
import { h, debounce } from "./dom.js";

const KEY = "cb-panels";
const MIN_LG = 220;
const MIN_COL = 200;
const DEFAULT_COLS = [1, 1, 1.3];

let active = null; // the graph view's controller (one graph view at a time)

function loadSizes() {
  try {
    const v = JSON.parse(localStorage.getItem(KEY) || "{}");
    const cols = Array.isArray(v.cols) && v.cols.length === 3 && v.cols.every((c) => c > 0) ? v.cols : null;
    return { lgHeight: Number.isFinite(v.lgHeight) ? v.lgHeight : null, cols };
  } catch {
    return { lgHeight: null, cols: null };
  }
}

function saveSizes(sizes) {
  try {
    localStorage.setItem(KEY, JSON.stringify(sizes));
  } catch {
    /* private mode: sizes last for this page only */
  }
}

/** Drag helper with pointer capture: onMove(dx, dy) from the press point; onEnd() once released. */
function dragHandle(handle, { onStart, onMove, onEnd }) {
  handle.addEventListener("pointerdown", (ev) => {
    if (ev.button !== 0) return;
    ev.preventDefault();
    handle.setPointerCapture(ev.pointerId);
    const x0 = ev.clientX;
    const y0 = ev.clientY;
    onStart();
    document.body.classList.add("resizing");
    const move = (e) => onMove(e.clientX - x0, e.clientY - y0);
    const up = () => {
      handle.removeEventListener("pointermove", move);
      handle.removeEventListener("pointerup", up);
      handle.removeEventListener("pointercancel", up);
      document.body.classList.remove("resizing");
      onEnd();
    };
    handle.addEventListener("pointermove", move);
    handle.addEventListener("pointerup", up);
    handle.addEventListener("pointercancel", up);
  });
}

/**
 * lgPanel: the link graph panel; panels: the grid of side panels (three children); onResize(): re-lay out the link
 * graph. Inserts the handles; returns a teardown function.
 */
export function startPanelLayout({ lgPanel, panels, onResize }) {
  const sizes = loadSizes();
  const relayout = debounce(onResize, 80);
  const applyHeight = () => {
    lgPanel.classList.toggle("sized", sizes.lgHeight !== null);
    lgPanel.style.height = sizes.lgHeight !== null ? `${sizes.lgHeight}px` : "";
  };
  const applyCols = () => {
    const [a, b, c] = sizes.cols || DEFAULT_COLS;
    panels.style.gridTemplateColumns =
      `minmax(${MIN_COL}px, ${a}fr) 8px minmax(${MIN_COL}px, ${b}fr) 8px minmax(${MIN_COL}px, ${c}fr)`;
  };
  addRowHandle(lgPanel, sizes, { applyHeight, relayout, onResize });
  addColHandles(panels, sizes, applyCols);
  applyHeight();
  applyCols();
  const setFullscreen = (on) => {
    if (on === lgPanel.classList.contains("fullscreen")) return;
    lgPanel.classList.toggle("fullscreen", on);
    document.body.classList.toggle("lg-fullscreen", on);
    const btn = lgPanel.querySelector("#lg-fullscreen");
    if (btn) {
      btn.setAttribute("aria-pressed", String(on));
      btn.textContent = on ? "Exit fullscreen" : "Fullscreen";
    }
    onResize();
  };
  active = { setFullscreen, isFullscreen: () => lgPanel.classList.contains("fullscreen") };
  return () => {
    document.body.classList.remove("lg-fullscreen");
    relayout.cancel();
    active = null;
  };
}

/** The handle under the link graph: a drag sets sizes.lgHeight (debounced relayout); double-click forgets it. */
function addRowHandle(lgPanel, sizes, { applyHeight, relayout, onResize }) {
  const rowHandle = h("div", {
    class: "resize-handle row-handle", id: "lg-resize", role: "separator", "aria-orientation": "horizontal",
    title: "Drag to resize the link graph (double-click: default size)",
  });
  lgPanel.after(rowHandle);
  let h0 = 0;
  dragHandle(rowHandle, {
    onStart: () => (h0 = lgPanel.getBoundingClientRect().height),
    onMove: (dx, dy) => {
      sizes.lgHeight = Math.round(Math.max(MIN_LG, Math.min(4000, h0 + dy)));
      applyHeight();
      relayout();
    },
    onEnd: () => saveSizes(sizes),
  });
  rowHandle.addEventListener("dblclick", () => {
    sizes.lgHeight = null;
    applyHeight();
    saveSizes(sizes);
    onResize();
  });
}

/** Handles between the side panels: a drag moves width between the two neighbours (sizes.cols, in fr). */
function addColHandles(panels, sizes, applyCols) {
  const cells = [...panels.children];
  cells.slice(0, -1).forEach((cell, k) => {
    const handle = h("div", {
      class: "resize-handle col-handle", "data-k": k, role: "separator", "aria-orientation": "vertical",
      title: "Drag to resize the panels (double-click: default widths)",
    });
    cell.after(handle);
    let start = null;
    dragHandle(handle, {
      onStart: () => {
        const widths = cells.map((c) => c.getBoundingClientRect().width);
        start = { widths, fr: sizes.cols || DEFAULT_COLS };
      },
      onMove: (dx) => {
        const { widths, fr } = start;
        const pair = widths[k] + widths[k + 1];
        const left = Math.max(MIN_COL, Math.min(pair - MIN_COL, widths[k] + dx));
        const frPair = fr[k] + fr[k + 1];
        const cols = [...fr];
        cols[k] = (frPair * left) / pair;
        cols[k + 1] = frPair - cols[k];
        sizes.cols = cols.map((c) => Number(c.toFixed(4)));
        applyCols();
      },
      onEnd: () => saveSizes(sizes),
    });
    handle.addEventListener("dblclick", () => {
      sizes.cols = null;
      applyCols();
      saveSizes(sizes);
    });
  });
}

/** Toggle (or set) fullscreen of the link graph; false when there is no graph view. */
export function toggleFullscreen(force) {
  if (!active) return false;
  active.setFullscreen(force ?? !active.isFullscreen());
  return true;
}

/** Leave fullscreen if the link graph is in it (Esc); true when it was. */
export function exitFullscreen() {
  if (!active || !active.isFullscreen()) return false;
  active.setFullscreen(false);
  return true;
}
