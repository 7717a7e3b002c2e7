// /diff/{a}/{b}: two graphs of the same model compared (GET /api/graphs/{a}/diff/{b}). One link graph, layers
// up and aligned token positions across, each node coloured by its change (only in a, only in b, changed,
// shared) and the links by their weight change; beside it the nodes that changed most, ranked.
import { h, clear, svgEl, fmt } from "./dom.js";
import { api } from "./api.js";

const STATUS_TEXT = { only_a: "only in A", only_b: "only in B", changed: "changed", shared: "shared" };
const MAX_LINKS = 400; // the strongest weight changes; more only blur the picture
const W = 900;
const H = 520;
const PAD = 24;
const LEFT = 48; // row names
const BOTTOM = 70; // token labels
const MIN_LABEL_GAP = 12; // px between the token labels under the plot

export function renderDiffPage(root, a, b) {
  let alive = true;
  const body = h("div", { class: "diff-body", id: "diff-body" }, h("p", { class: "muted", text: "Comparing…" }));
  const prompts = h("div", { class: "diff-prompts", id: "diff-prompts" });
  clear(root).append(h("div", { class: "diff-page" },
    h("h1", {}, "Compare ", slugLink(a), " (A) with ", slugLink(b), " (B)"), prompts, body));
  // The graphs themselves only for their prompts and tokens (axis labels): the diff draws without them.
  const meta = (slug) => api.graph(slug).then((g) => g.metadata || {}).catch(() => ({}));
  Promise.all([api.diff(a, b), meta(a), meta(b)]).then(([d, ma, mb]) => {
    if (!alive) return;
    clear(prompts).append(promptLine("A", ma.prompt), promptLine("B", mb.prompt));
    clear(body).append(summaryLine(d.summary), h("div", { class: "diff-cols" },
      h("div", { class: "diff-plot" }, diffSvg(d, ma.prompt_tokens || [], mb.prompt_tokens || []), legend()), rankedList(d.nodes)));
  }).catch((e) => alive && clear(body).append(h("p", { class: "error", id: "diff-error", role: "alert", text: e.message })));
  return () => (alive = false);
}

// Two lines at most each (a prompt may be 256 tokens long); the whole prompt is the line's title.
const promptLine = (side, prompt) => (prompt ? h("div", { class: "diff-prompt", title: prompt }, h("strong", { text: `${side}: ` }), prompt) : null);

const slugLink = (slug) => h("a", { href: `/graph/${encodeURIComponent(slug)}`, "data-link": "", text: slug });

function summaryLine(s) {
  return h("p", { class: "diff-summary", id: "diff-summary" },
    ...["only_a", "only_b", "changed", "shared"].map((k) => h("span", { class: `diff-chip ${k}`, text: `${s[k]} ${STATUS_TEXT[k]}` })));
}

function legend() {
  return h("p", { class: "muted small-note" },
    "Nodes: colour = status, size = change. Links: green = stronger in B, purple = stronger in A (the ",
    String(MAX_LINKS), " largest changes).");
}

/** Grid places: x = position in A (B's positions through the token alignment), y = layer (tokens bottom, logits top). */
function placer(d) {
  const bToA = new Map((d.alignment || []).map(([i, j]) => [j, i]));
  const xs = d.nodes.map((n) => n.ctx_idx_a ?? bToA.get(n.ctx_idx_b) ?? n.ctx_idx_b ?? 0);
  const layers = d.nodes.filter((n) => n.feature_type !== "logit" && n.feature_type !== "embedding").map((n) => n.layer);
  const top = Math.max(0, ...layers) + 1;
  const row = (n) => (n.feature_type === "embedding" ? -1 : n.feature_type === "logit" ? top : n.layer);
  const maxX = Math.max(1, ...xs);
  const sx = (x) => LEFT + (x / maxX) * (W - LEFT - PAD);
  const sy = (r) => H - BOTTOM - ((r + 1) / (top + 1)) * (H - BOTTOM - PAD);
  const place = new Map();
  d.nodes.forEach((n, k) => {
    const jitter = ((n.feature * 37) % 17) / 17 - 0.5; // spread a cell's nodes so they do not sit on each other
    place.set(n.id, [sx(xs[k]) + jitter * 0.6 * ((W - LEFT - PAD) / maxX), sy(row(n))]);
  });
  return { place, sx, sy, top, maxX, bToA };
}

/** Row names (Emb, L0 …, Lgt) and the tokens under their positions (B's token too where it differs). */
function axes(svg, grid, tokA, tokB) {
  const label = (x, y, s, anchor, extra = {}) => {
    const t = svgEl("text", { x, y, class: "axis-label", "text-anchor": anchor, ...extra });
    t.textContent = s;
    svg.append(t);
  };
  for (let r = -1; r <= grid.top; r++) {
    const y = grid.sy(r);
    svg.append(svgEl("line", { x1: LEFT - 4, y1: y, x2: W - PAD + 6, y2: y, class: "grid" }));
    label(LEFT - 10, y + 4, r < 0 ? "Emb" : r === grid.top ? "Lgt" : `L${r}`, "end");
  }
  const aOfB = new Map([...grid.bToA].map(([j, i]) => [i, j]));
  // Long prompts: every position where A and B differ is named, and every `step`-th one (labels ~12 px apart)
  // not too close to those.
  const step = Math.max(1, Math.ceil(MIN_LABEL_GAP / (grid.sx(1) - grid.sx(0))));
  const differ = (i) => tokB[aOfB.get(i)] !== undefined && tokB[aOfB.get(i)] !== tokA[i];
  const near = (i) => tokA.some((_, j) => j !== i && Math.abs(j - i) < step && differ(j));
  tokA.forEach((t, i) => {
    const tb = tokB[aOfB.get(i)];
    const differs = differ(i);
    if (!differs && (i % step || (step > 1 && near(i)))) return;
    const text = differs ? `${t.trim() || "␣"} / ${tb.trim() || "␣"}` : t.trim() || "␣";
    const [x, y] = [grid.sx(i), H - BOTTOM + 14];
    label(x, y, text.slice(0, 18), "end", { transform: `rotate(-35 ${x} ${y})`, class: `axis-label tok-label${differs ? " differs" : ""}` });
  });
}

function diffSvg(d, tokA, tokB) {
  const svg = svgEl("svg", { id: "diff-svg", viewBox: `0 0 ${W} ${H}`, class: "diff-svg", role: "img", "aria-label": "Graph diff" });
  const grid = placer(d);
  const { place } = grid;
  axes(svg, grid, tokA, tokB);
  const idOf = new Map(d.nodes.map((n) => [n.node_id_a, n.id]).concat(d.nodes.map((n) => [`b:${n.node_id_b}`, n.id])));
  const at = (id) => place.get(id) || place.get(idOf.get(id));
  const links = [...d.links].sort((p, q) => Math.abs(q.delta) - Math.abs(p.delta)).slice(0, MAX_LINKS);
  const big = Math.max(1e-9, ...links.map((l) => Math.abs(l.delta)));
  for (const l of links) {
    const [p, q] = [at(l.source), at(l.target)];
    if (!p || !q || l.delta === 0) continue;
    svg.append(svgEl("line", {
      x1: p[0], y1: p[1], x2: q[0], y2: q[1], class: `diff-link ${l.delta > 0 ? "pos" : "neg"}`,
      "stroke-width": 0.5 + 2.5 * Math.abs(l.delta) / big,
    }));
  }
  for (const n of d.nodes) {
    const [x, y] = place.get(n.id);
    const c = svgEl("circle", { cx: x, cy: y, r: 2.5 + 4 * n.change, class: `diff-node ${n.status}`, "data-id": n.id });
    c.append(svgEl("title", {}));
    c.firstChild.textContent = nodeText(n);
    svg.append(c);
  }
  return svg;
}

function nodeText(n) {
  const what = n.feature_type === "feature" ? `L${n.layer} #${n.feature}` : `${n.feature_type} ${n.feature_type === "error" ? `L${n.layer}` : n.feature}`;
  const side = (v) => (v === null || v === undefined ? "—" : fmt(v));
  return `${what} · ${STATUS_TEXT[n.status]} · activation ${side(n.activation_a)} → ${side(n.activation_b)}`
    + ` · influence ${side(n.influence_a)} → ${side(n.influence_b)}`;
}

/** The nodes that changed most (the API sends them most changed first), shared ones left out. */
function rankedList(nodes) {
  const list = h("ol", { class: "diff-ranked", id: "diff-ranked" });
  for (const n of nodes.filter((x) => x.status !== "shared").slice(0, 40)) {
    list.append(h("li", { class: `diff-row ${n.status}` },
      h("span", { class: `diff-dot ${n.status}` }), h("span", { text: nodeText(n) }),
      h("span", { class: "muted", text: ` ${Math.round(100 * n.change)}%` })));
  }
  if (!list.children.length) list.append(h("li", { class: "muted", text: "Nothing changed: the graphs are the same." }));
  return h("div", { class: "diff-side" }, h("h2", { text: "Changed most" }), list);
}
