// Keyboard shortcuts and the help overlay ("?").
import { h } from "./dom.js";
import { store } from "./state.js";
import { toggleTheme } from "./theme.js";
import { togglePin, setClicked, held } from "./actions.js";
import { copyLink, saveView } from "./share.js";
import { navigate } from "./router.js";
import { toggleFullscreen, exitFullscreen } from "./panel-layout.js";

const SHORTCUTS = [
  ["?", "Show / hide this help"],
  ["Esc", "Close help · clear the selected node"],
  ["Click", "Select a node (link graph, connections, subgraph)"],
  ["Ctrl/⌘ + click", "Pin / unpin a node"],
  ["Shift + click, or hold G + click", "Select nodes for a supernode"],
  ["P", "Pin / unpin the selected node"],
  ["[  /  ]", "Lower / raise the pruning threshold"],
  ["F", "Fullscreen link graph (Esc leaves)"],
  ["C", "Copy a link to this view"],
  ["S", "Save this view (short link)"],
  ["T", "Toggle light / dark theme"],
  ["/", "Search graphs (browse)"],
  ["N", "New trace"],
  ["B", "Browse graphs"],
];

const HELP_NOTES = [
  ["Nodes (pruning)", "Nodes are ranked by influence on the output. A node shows when the nodes ranked before it explain less than the threshold of the total influence (so the node that crosses it stays). A graph opens showing about 125 features; drag right for more."],
  ["Influence", "Rank #1 is the node with the strongest effect on the output logits through all paths; its share is its own part of the total."],
  ["Feature density", "Hides features that are active on more than the chosen fraction of tokens in the feature atlas's corpus (its activation frequency): dense, \"always-on\" features that clutter a graph. Far right turns it off; it needs a feature atlas. It counts only nodes the pruning threshold keeps."],
  ["Links", "By default the 600 strongest links are drawn faintly, and the links of the hovered, clicked and pinned nodes strongly; \"all links\" draws every one. Show or hide links by sign (+ / −) and by the kind of node at either end (features, error nodes, token embeddings). Nodes stay; only their links are hidden."],
  ["Output tokens", "The logits, listed beside the link graph by probability; the numbers above the logit nodes refer to this list."],
  ["Node connections", "Filter the inputs and outputs of the clicked node by token position, layer and kind, or search their labels."],
  ["Saved views", "Save view stores the view under a name (yours, or one like \"2 supernodes, 5 pinned\") and a short link ?subgraph=id, which stays in the address bar until the view changes."],
  ["Logit diff", "Pick a target and a contrast logit: a node \"Δ\" appears whose inputs are the target's inputs minus the contrast's (what favours one token over the other), shown in Node connections."],
  ["Subgraph scores", "Over the pinned nodes that have inputs: replacement = mean share of their input from other pinned nodes or embeddings; completeness = 1 − mean share from error nodes."],
  ["Subgraph layout", "One row per layer, tokens in order, edges routed between the boxes (width: |weight|, colour: sign; hover one for its weight). Drag nodes to place them (positions are part of the link); Auto layout puts every node back; Reset positions forgets them."],
  ["Interventions", "Watch tokens to see their probability before → after; a sweep scales one item over a range and plots the watched tokens."],
  ["Other tabs", "Tabs showing the same graph highlight the node hovered or selected in another."],
  ["Panels", "Drag the bars between panels to resize them (double-click: default size); sizes are remembered."],
  ["Always shown", "Embeddings, logits, pinned and selected nodes show whatever the filters."],
];

let overlay = null;

function toggleHelp(force) {
  const show = force ?? !overlay;
  if (!show) {
    if (overlay) overlay.remove();
    overlay = null;
    return;
  }
  if (overlay) return;
  const close = h("button", { class: "icon-btn", "aria-label": "Close help", onclick: () => toggleHelp(false), text: "×" });
  const table = h("table", { class: "help-table" },
    h("tbody", {}, SHORTCUTS.map(([k, d]) => h("tr", {}, h("td", {}, h("kbd", { text: k })), h("td", { text: d })))));
  overlay = h("div", { class: "overlay", id: "help-overlay", role: "dialog", "aria-modal": "true", "aria-label": "Keyboard shortcuts" },
    h("div", { class: "overlay-box" },
      h("div", { class: "overlay-head" }, h("h2", { text: "Keyboard shortcuts" }), close),
      table,
      h("h3", { text: "Graph controls" }),
      h("dl", { class: "help-notes", id: "help-notes" }, HELP_NOTES.map(([t, d]) => [h("dt", { text: t }), h("dd", { text: d })])),
      h("p", { class: "muted", text: "Node ids: feature {layer}_{index}_{pos}, error {layer}_-1_{pos}, embedding E_{token}_{pos}, logit {n_layers+1}_{token}_{pos}." })));
  overlay.addEventListener("click", (e) => e.target === overlay && toggleHelp(false));
  document.body.append(overlay);
  close.focus();
}

function typing(target) {
  return target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName));
}

// The graph-page keys act only with a graph open.
const inGraph = (s) => s.route.view === "graph" && s.graph;
const nudgePruning = (s, step) => {
  const t = Math.round((s.pruningThreshold + step) * 100) / 100;
  store.set({ pruningThreshold: Math.max(0.05, Math.min(1, t)) });
};

/** Key (lower case) -> action(state, event); an action that returns false lets the key through. */
const KEY_ACTIONS = {
  "?": () => toggleHelp(),
  t: () => toggleTheme(),
  g: () => (held.g = true),
  p: (s) => inGraph(s) && s.clickedId && togglePin(s.clickedId),
  "[": (s) => inGraph(s) && nudgePruning(s, -0.05),
  "]": (s) => inGraph(s) && nudgePruning(s, 0.05),
  c: (s) => inGraph(s) && copyLink(),
  f: (s) => inGraph(s) && toggleFullscreen(),
  s: (s) => inGraph(s) && saveView().catch(() => {}),
  n: () => navigate("/trace"),
  b: () => navigate("/"),
  "/": (s, e) => {
    const box = document.getElementById("browse-search");
    if (box) {
      e.preventDefault();
      box.focus();
    }
  },
};

function onEscape(e) {
  if (overlay) toggleHelp(false);
  else if (typing(e.target)) e.target.blur();
  else if (!exitFullscreen()) setClicked(null);
}

export function startShortcuts() {
  document.addEventListener("keyup", (e) => {
    if (e.key === "g" || e.key === "G") held.g = false;
  });
  window.addEventListener("blur", () => (held.g = false));
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape") return onEscape(e);
    if (typing(e.target) || e.ctrlKey || e.metaKey || e.altKey) return;
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const action = Object.hasOwn(KEY_ACTIONS, key) ? KEY_ACTIONS[key] : null;
    if (action) action(store.state, e);
  });
}

export function helpButton() {
  return h("button", { class: "icon-btn", id: "help-btn", title: "Keyboard shortcuts (?)", "aria-label": "Keyboard shortcuts", onclick: () => toggleHelp(), text: "?" });
}

