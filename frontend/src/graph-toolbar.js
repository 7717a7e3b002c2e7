// Toolbar of the link graph panel: pruning slider, link-type filter (sign, node kinds), "all links", feature-density
// slider, logit difference, fullscreen toggle. It is part of the link graph panel, so fullscreen keeps it. State
// lives in the store (pruningThreshold, hideLinks, allLinks, densityThreshold, logitDiff) and so in the URL.
import { h, debounce, fmt } from "./dom.js";
import { store } from "./state.js";
import { LINK_TAGS } from "./graph-data.js";
import { BACKGROUND_LINKS } from "./linkgraph-edges.js";
import { createLogitDiffControl } from "./logit-diff.js";
import { toggleFullscreen } from "./panel-layout.js";

// The label and title of each link class (graph-data.js LINK_TAGS).
const LINK_OPTIONS = {
  pos: ["+", "Positive links"],
  neg: ["−", "Negative links"],
  feature: ["features", "Links from or to features"],
  error: ["errors", "Links from error nodes"],
  embedding: ["embeddings", "Links from token embeddings"],
};

// The density slider is log-scale: value = log10(threshold), from 10⁻⁴ to 1 (= off).
const LOG_MIN = -4;
const toThreshold = (v) => (v >= 0 ? 1 : Number((10 ** v).toPrecision(2)));
const toSlider = (t) => (t >= 1 ? 0 : Math.max(LOG_MIN, Math.log10(t)));
const pct = (t) => `${fmt(t * 100, t < 0.001 ? 4 : 2)}%`;

const PRUNING_HELP = "A node shows when the nodes more influential than it explain less than this share of the "
  + "influence on the output (so the node that crosses the threshold stays). Lower hides the weaker nodes; [ and ] step it.";

/** "0.463 — hiding 440 of 592 nodes (least influential; opened to show 125 features)". */
function pruningSlider(graph, opening) {
  const slider = h("input", {
    type: "range", id: "pruning", min: 0.05, max: 1, step: 0.001, value: store.state.pruningThreshold,
    "aria-label": "Pruning threshold (cumulative influence)",
  });
  const text = h("span", { id: "pruning-text", class: "muted" });
  const apply = debounce(() => store.set({ pruningThreshold: Number(slider.value) }), 120);
  slider.addEventListener("input", () => {
    text.textContent = `${fmt(Number(slider.value), 3)} …`;
    apply();
  });
  const el = h("label", { class: "slider", id: "pruning-control", title: PRUNING_HELP },
    h("span", { text: "Nodes" }), slider, text);
  return {
    el,
    sync: () => (slider.value = store.state.pruningThreshold),
    setHidden(hidden, features) {
      const t = store.state.pruningThreshold;
      let why = "";
      if (hidden) {
        why = opening.lowered && t === opening.threshold
          ? ` (least influential; opened to show ${features} features)` : " (least influential)";
      }
      text.textContent = `${fmt(t, 3)} — hiding ${hidden} of ${graph.nodes.length} nodes${why}`;
    },
  };
}

function linkFilter() {
  const boxes = LINK_TAGS.map((tag) => {
    const [text, title] = LINK_OPTIONS[tag];
    const cb = h("input", { type: "checkbox", "data-tag": tag, checked: !store.state.hideLinks.includes(tag) });
    cb.addEventListener("change", () => {
      const hidden = store.state.hideLinks.filter((t) => t !== tag);
      store.set({ hideLinks: cb.checked ? hidden : [...hidden, tag] });
    });
    return h("label", { class: `lf-opt lf-${tag}`, title: `Show ${title.toLowerCase()}` }, cb, text);
  });
  const all = h("input", { type: "checkbox", id: "all-links", checked: store.state.allLinks });
  all.addEventListener("change", () => store.set({ allLinks: all.checked }));
  const allOpt = h("label", {
    class: "lf-opt", title: `Draw every link. Off: the ${BACKGROUND_LINKS} strongest faintly, and the links of the `
      + "hovered, clicked and pinned nodes strongly.",
  }, all, "all links");
  const el = h("span", { class: "link-filter", id: "link-filter", role: "group", "aria-label": "Link types shown" },
    h("span", { class: "muted", text: "Links" }), boxes, allOpt);
  const sync = () => {
    for (const cb of el.querySelectorAll("input[data-tag]")) cb.checked = !store.state.hideLinks.includes(cb.dataset.tag);
    all.checked = store.state.allLinks;
  };
  return { el, sync };
}

function densitySlider() {
  const slider = h("input", {
    type: "range", id: "density", min: LOG_MIN, max: 0, step: 0.1, value: toSlider(store.state.densityThreshold),
    disabled: true, "aria-label": "Feature density threshold (log scale)",
  });
  const text = h("span", { id: "density-text", class: "muted", text: "needs a feature atlas" });
  let hiddenDense = 0;
  let available = false;
  const show = () => {
    const t = store.state.densityThreshold;
    if (!available) text.textContent = "needs a feature atlas";
    else text.textContent = t >= 1 ? "off" : `< ${pct(t)} — hiding ${hiddenDense} dense`;
  };
  const apply = debounce(() => store.set({ densityThreshold: toThreshold(Number(slider.value)) }), 150);
  slider.addEventListener("input", () => {
    const t = toThreshold(Number(slider.value));
    text.textContent = t >= 1 ? "off …" : `< ${pct(t)} …`;
    apply();
  });
  const el = h("label", {
    class: "slider", id: "density-control",
    title: "Hide features active on more than this fraction of tokens in the atlas corpus (dense, always-on features). Far right = off.",
  }, h("span", { text: "Feature density" }), slider, text);
  return {
    el,
    sync() {
      slider.value = toSlider(store.state.densityThreshold);
      show();
    },
    setHidden(n) {
      hiddenDense = n;
      show();
    },
    setAvailable(ok) {
      available = ok;
      slider.disabled = !ok;
      show();
    },
  };
}

/** opening: pruning.js openingThreshold of the graph (the slider says why while it is there). */
export function createGraphToolbar(graph, opening) {
  const prune = pruningSlider(graph, opening);
  const lf = linkFilter();
  const dens = densitySlider();
  const diff = createLogitDiffControl(graph);
  const fs = h("button", {
    class: "btn small", id: "lg-fullscreen", title: "Fullscreen link graph (F; Esc leaves)", "aria-pressed": "false",
    onclick: () => toggleFullscreen(), text: "Fullscreen",
  });
  const el = h("div", { class: "graph-toolbar", id: "graph-toolbar" },
    prune.el, lf.el, dens.el, diff.el, h("span", { class: "spacer" }), fs);
  const un = store.subscribe(["pruningThreshold", "hideLinks", "allLinks", "densityThreshold", "logitDiff"], () => {
    prune.sync();
    lf.sync();
    dens.sync();
    diff.sync();
  });
  return {
    el, setHidden: prune.setHidden, setDenseHidden: dens.setHidden, setDensityAvailable: dens.setAvailable, destroy: un,
  };
}
