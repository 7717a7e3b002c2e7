// Edge layers of the link graph, drawn on canvases.
// - Background (the "all" canvas): by default only the BACKGROUND_LINKS strongest visible links (by |pctInput|),
//   faintly; with "show all links", every visible link. A real graph has tens of thousands of links: drawn all at
//   once they are a grey slab that hides the circuit.
// - Highlight: every link of the clicked and pinned nodes, strongly; hover: the hovered node's links.
import { colors } from "./theme.js";
import { rasterFaint, strokeChunked } from "./edges-raster.js";

export const BACKGROUND_LINKS = 600;

// |pctInput| buckets; a bucket with width <= 1 is density-rastered, wider ones are stroked.
const BUCKETS = [
  { max: 0.05, alpha: 0.1, width: 0.5 },
  { max: 0.15, alpha: 0.22, width: 0.8 },
  { max: 0.4, alpha: 0.4, width: 1.3 },
  { max: Infinity, alpha: 0.65, width: 2 },
];
// The default background: the same buckets, fainter and thinner (context, not the circuit).
const FAINT = [
  { max: 0.05, alpha: 0.14, width: 0.5 },
  { max: 0.15, alpha: 0.2, width: 0.8 },
  { max: 0.4, alpha: 0.24, width: 1.1 },
  { max: Infinity, alpha: 0.3, width: 1.4 },
];

export function sizeCanvas(cv, w, hgt) {
  const dpr = window.devicePixelRatio || 1;
  cv.width = Math.round(w * dpr);
  cv.height = Math.round(hgt * dpr);
  cv.style.width = `${w}px`;
  cv.style.height = `${hgt}px`;
  const ctx = cv.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  return ctx;
}

const drawable = (links, vis, emask, j) => vis[links.src[j]] && vis[links.dst[j]] && (!emask || emask[j]);

/** 1 for each link of the background: every drawable link, or (capped) only the `cap` strongest of them. */
function backgroundMask(links, vis, emask, cap) {
  const { pct, n } = links;
  const keep = new Uint8Array(n);
  let count = 0;
  for (let j = 0; j < n; j++) {
    if (!drawable(links, vis, emask, j)) continue;
    keep[j] = 1;
    count++;
  }
  if (cap === null || count <= cap) return keep;
  const strength = new Float32Array(count);
  let k = 0;
  for (let j = 0; j < n; j++) if (keep[j]) strength[k++] = Math.abs(pct[j]);
  strength.sort();
  const cut = strength[count - cap]; // the cap-th strongest value; ties at it fill up to the cap in link order
  let above = 0;
  for (let j = 0; j < n; j++) if (keep[j] && Math.abs(pct[j]) > cut) above++;
  let ties = cap - above;
  for (let j = 0; j < n; j++) {
    if (!keep[j]) continue;
    const a = Math.abs(pct[j]);
    if (a > cut) continue;
    if (a === cut && ties > 0) ties--;
    else keep[j] = 0;
  }
  return keep;
}

/** Each kept link's bucket: (negative ? 4 : 0) + its |pctInput| bucket, else 255. */
function bucketLinks(links, keep, buckets) {
  const { pct, n } = links;
  const bucket = new Uint8Array(n).fill(255);
  const counts = new Int32Array(8);
  let drawn = 0;
  for (let j = 0; j < n; j++) {
    if (!keep[j]) continue;
    const p = pct[j];
    const a = Math.abs(p);
    let b = 0;
    while (a > buckets[b].max) b++;
    bucket[j] = (p < 0 ? 4 : 0) + b;
    counts[bucket[j]]++;
    drawn++;
  }
  return { bucket, counts, drawn };
}

/** The background links onto the edge canvas (all of them when `all`); returns how many were drawn. */
export function drawEdges(cv, lay, links, vis, emask, all) {
  const ctx = sizeCanvas(cv, lay.width, lay.height);
  const c = colors();
  const buckets = all ? BUCKETS : FAINT;
  const keep = backgroundMask(links, vis, emask, all ? null : BACKGROUND_LINKS);
  const { bucket, counts, drawn } = bucketLinks(links, keep, buckets);
  const { x, y } = lay;
  const faint = new Map();
  buckets.forEach((b, k) => {
    if (b.width > 1) return;
    faint.set(k, { alpha: b.alpha, neg: false });
    faint.set(4 + k, { alpha: b.alpha, neg: true });
  });
  rasterFaint(ctx, cv.width, cv.height, window.devicePixelRatio || 1, x, y, links, bucket, faint, c.pos, c.neg);
  buckets.forEach((b, k) => {
    if (b.width <= 1) return;
    for (let s = 0; s < 2; s++) {
      const id = s * 4 + k;
      if (!counts[id]) continue;
      ctx.globalAlpha = b.alpha;
      ctx.lineWidth = b.width;
      ctx.strokeStyle = s ? c.neg : c.pos;
      strokeChunked(ctx, x, y, links, (emit) => {
        for (let j = 0; j < links.n; j++) if (bucket[j] === id) emit(j);
      });
    }
  });
  ctx.globalAlpha = 1;
  return drawn;
}

/** The drawable links in and out of the nodes `idxs` (each once), batched into sign × 3 width bins. */
export function strokeNodeEdges(ctx, graph, lay, vis, emask, idxs, widthScale, alpha) {
  const c = colors();
  const { adj, links } = graph;
  const seen = new Set();
  const bins = [[], [], [], [], [], []]; // sign * 3 + width bin
  const add = (j) => {
    if (seen.has(j) || !drawable(links, vis, emask, j)) return;
    seen.add(j);
    const a = Math.abs(links.pct[j]);
    bins[(links.w[j] < 0 ? 3 : 0) + (a < 0.1 ? 0 : a < 0.3 ? 1 : 2)].push(j);
  };
  for (const i of idxs) {
    for (let p = adj.inStart[i]; p < adj.inStart[i + 1]; p++) add(adj.inList[p]);
    for (let p = adj.outStart[i]; p < adj.outStart[i + 1]; p++) add(adj.outList[p]);
  }
  bins.forEach((list, k) => {
    if (!list.length) return;
    ctx.globalAlpha = alpha;
    ctx.lineWidth = (1 + 2 * (k % 3)) * widthScale;
    ctx.strokeStyle = k >= 3 ? c.neg : c.pos;
    strokeChunked(ctx, lay.x, lay.y, links, (emit) => list.forEach(emit));
  });
  ctx.globalAlpha = 1;
  return seen.size;
}
