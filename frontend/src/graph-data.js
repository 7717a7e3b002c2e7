// Turns circuit-tracer graph JSON ({metadata, qParams, nodes, links}) into indexed, typed-array form.
// One id scheme everywhere: node_id. Error ids in the old `0_{layer}_{pos}` form are accepted by the server on
// import; here we only classify by feature_type.
import { rankInfluence } from "./pruning.js";

function kindOf(n) {
  const t = (n.feature_type || "").toLowerCase();
  if (t === "embedding") return "embedding";
  if (t === "logit") return "logit";
  if (t.includes("error")) return "error";
  return "feature";
}

/** Parse a feature node id `{layer}_{index}_{pos}` into {layer, index}. */
function featureOf(node) {
  const m = /^(\d+)_(-?\d+)_(\d+)$/.exec(node.node_id);
  if (!m) return null;
  return { layer: Number(m[1]), index: Number(m[2]) };
}

export function processGraph(json) {
  const meta = json.metadata || {};
  const tokens = meta.prompt_tokens || [];
  const { nodes, byId, nLayers } = readNodes(json.nodes || [], tokens);
  const { links, adj } = readLinks(json.links || [], byId, nodes.length);
  const info = meta.info || {};
  const graph = {
    meta,
    info,
    slug: meta.slug,
    prompt: meta.prompt || tokens.join(""),
    tokens,
    nodes,
    byId,
    links,
    adj,
    nLayers,
    nodeThreshold: typeof meta.node_threshold === "number" ? meta.node_threshold : null,
    qParams: json.qParams || {},
  };
  rankInfluence(graph);
  return graph;
}

/** Nodes with their kind, layer, grid row (Emb 0, layers, logits on top) and token; nLayers from the layers seen. */
function readNodes(raw, tokens) {
  const n = raw.length;
  const byId = new Map();
  const nodes = new Array(n);
  let maxFeatLayer = -1;
  let logitLayer = null;
  for (let i = 0; i < n; i++) {
    const r = raw[i];
    const kind = kindOf(r);
    const layerNum = kind === "embedding" ? -1 : Number(r.layer);
    if (kind === "logit") logitLayer = layerNum;
    else if (kind !== "embedding" && layerNum > maxFeatLayer) maxFeatLayer = layerNum;
    const node = {
      i,
      id: r.node_id,
      kind,
      layer: layerNum,
      ctx: Number(r.ctx_idx) || 0,
      influence: typeof r.influence === "number" ? r.influence : null,
      activation: typeof r.activation === "number" ? r.activation : null,
      tokenProb: r.token_prob,
      isTarget: !!r.is_target_logit,
      clerp: r.clerp || "",
    };
    if (kind === "feature") {
      const f = featureOf(r);
      node.featLayer = f ? f.layer : layerNum;
      node.featIndex = f ? f.index : null;
    }
    nodes[i] = node;
    byId.set(node.id, node);
  }
  const nLayers = logitLayer !== null ? logitLayer - 1 : maxFeatLayer + 1;
  for (const node of nodes) {
    node.row = node.kind === "embedding" ? 0 : node.kind === "logit" ? nLayers + 1 : node.layer + 1;
    node.token = tokens[node.ctx] ?? "";
  }
  return { nodes, byId, nLayers };
}

/** Links as typed arrays + CSR adjacency (in / out) for O(degree) hover; links to unknown nodes are dropped. */
function readLinks(rawLinks, byId, n) {
  const m = rawLinks.length;
  const src = new Int32Array(m);
  const dst = new Int32Array(m);
  const w = new Float32Array(m);
  let k = 0;
  for (let j = 0; j < m; j++) {
    const l = rawLinks[j];
    const s = byId.get(l.source);
    const t = byId.get(l.target);
    if (!s || !t) continue;
    src[k] = s.i;
    dst[k] = t.i;
    w[k] = l.weight;
    k++;
  }
  return indexLinks(n, src.subarray(0, k), dst.subarray(0, k), w.subarray(0, k));
}

/**
 * CSR adjacency (in / out lists of link indices) and pctInput for links given as typed arrays over n nodes.
 * Also used to rebuild the graph when a synthetic node is added (logit-diff.js).
 */
export function indexLinks(n, src, dst, w) {
  const k = src.length;
  const links = { n: k, src, dst, w };
  const inDeg = new Int32Array(n + 1);
  const outDeg = new Int32Array(n + 1);
  const absIn = new Float64Array(n);
  for (let j = 0; j < k; j++) {
    inDeg[dst[j] + 1]++;
    outDeg[src[j] + 1]++;
    absIn[dst[j]] += Math.abs(w[j]);
  }
  for (let i = 0; i < n; i++) {
    inDeg[i + 1] += inDeg[i];
    outDeg[i + 1] += outDeg[i];
  }
  const inList = new Int32Array(k);
  const outList = new Int32Array(k);
  const inFill = inDeg.slice(0, n);
  const outFill = outDeg.slice(0, n);
  for (let j = 0; j < k; j++) {
    inList[inFill[dst[j]]++] = j;
    outList[outFill[src[j]]++] = j;
  }
  // pctInput: a link's share of its target's total absolute input (as the reference viewers colour edges).
  const pct = new Float32Array(k);
  for (let j = 0; j < k; j++) {
    const tot = absIn[dst[j]];
    pct[j] = tot > 0 ? w[j] / tot : 0;
  }
  links.pct = pct;
  return { links, adj: { inStart: inDeg, inList, outStart: outDeg, outList } };
}

/** Node ids (indices) connected to node i: [{j (link index), other (node index), w, pct, dir}] */
export function connections(graph, i, dir) {
  const { adj, links } = graph;
  const out = [];
  if (dir === "in") {
    for (let p = adj.inStart[i]; p < adj.inStart[i + 1]; p++) {
      const j = adj.inList[p];
      out.push({ j, other: links.src[j], w: links.w[j], pct: links.pct[j] });
    }
  } else {
    for (let p = adj.outStart[i]; p < adj.outStart[i + 1]; p++) {
      const j = adj.outList[p];
      out.push({ j, other: links.dst[j], w: links.w[j], pct: links.pct[j] });
    }
  }
  out.sort((a, b) => Math.abs(b.w) - Math.abs(a.w));
  return out;
}

/** Display label: custom clerp > node clerp > generated. */
export function nodeLabel(node, clerps) {
  if (clerps && clerps[node.id]) return clerps[node.id];
  if (node.clerp) return node.clerp;
  switch (node.kind) {
    case "embedding":
      return `Emb: "${node.token}"`;
    case "error":
      return `Error L${node.layer} @${node.ctx}`;
    case "logit":
      return `Logit ${node.id}`;
    default:
      return `L${node.featLayer} #${node.featIndex}`;
  }
}

/** The token of a logit node, from its label `Output " Austin" (p=0.41)` (circuit-tracer's clerp); else its id. */
export function logitText(node) {
  const m = /Output\s+"([\s\S]*)"/.exec(node.clerp || "");
  return m ? m[1] : node.id;
}

export function layerName(node) {
  if (node.kind === "embedding") return "Emb";
  if (node.kind === "logit") return "Lgt";
  return `L${node.layer}`;
}

/** Hideable link classes: sign ("pos", "neg") and the kind of either end ("feature", "error", "embedding"). */
export const LINK_TAGS = ["pos", "neg", "feature", "error", "embedding"];

/** 1 for each link to draw: not of a hidden sign, and neither end of a hidden kind. null when nothing is hidden. */
export function edgeMask(graph, hiddenTags) {
  const hide = new Set(hiddenTags || []);
  if (!LINK_TAGS.some((t) => hide.has(t))) return null;
  const kindHidden = new Uint8Array(graph.nodes.length);
  for (const node of graph.nodes) if (hide.has(node.kind)) kindHidden[node.i] = 1;
  const { src, dst, w, n } = graph.links;
  const hidePos = hide.has("pos");
  const hideNeg = hide.has("neg");
  const mask = new Uint8Array(n);
  for (let j = 0; j < n; j++) {
    const neg = w[j] < 0;
    mask[j] = (neg ? hideNeg : hidePos) || kindHidden[src[j]] || kindHidden[dst[j]] ? 0 : 1;
  }
  return mask;
}

/** One line on what a node's influence rank means (tooltips, the feature detail). */
export const INFLUENCE_HELP =
  "Influence on the output logits, through every path: rank 1 is the strongest node; the share is this node's own " +
  "part of the total; the cumulative share counts it and every stronger node (what the pruning slider compares).";

/** A ranked node's own share of the influence: "0.8%". */
export function influenceShare(node) {
  const pct = node.influenceShare * 100;
  return `${pct >= 10 ? pct.toFixed(0) : pct >= 0.1 ? pct.toFixed(1) : pct > 0 ? "<0.1" : "0"}%`;
}

/** "influence #12 of 592 (0.8%)" for a ranked node, else "". */
export function influenceText(graph, node) {
  if (!node.influenceRank) return "";
  return `influence #${node.influenceRank} of ${graph.nRanked} (${influenceShare(node)})`;
}
