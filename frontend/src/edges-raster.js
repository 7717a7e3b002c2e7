// Fast edge drawing for the link graph.
// Skia's software rasteriser (headless / no GPU) spends ~1 s on 100k long anti-aliased hairlines and is
// superlinear for one huge path of wide strokes (15 s+ for 100k segments at 1.3 px). So:
//  - faint edges (most of them) are accumulated as a density image in JS (DDA stepping into Float32 buffers,
//    one per sign) and composed with putImageData: alpha = 1 - exp(-sum of edge alphas);
//  - strong edges are stroked on top with the canvas, in paths of at most CHUNK segments.

const CHUNK = 1000;
const clamp = (v, size) => (v < 0 ? 0 : v >= size ? size - 1 : v);
const rgbCache = new Map();

function toRgb(color) {
  if (rgbCache.has(color)) return rgbCache.get(color);
  const ctx = document.createElement("canvas").getContext("2d");
  ctx.fillStyle = "#000";
  ctx.fillStyle = color;
  const v = ctx.fillStyle; // normalised "#rrggbb" or "rgba(...)"
  let rgb = [0, 0, 0];
  if (v[0] === "#") rgb = [1, 3, 5].map((i) => parseInt(v.slice(i, i + 2), 16));
  else {
    const m = v.match(/[\d.]+/g);
    if (m) rgb = m.slice(0, 3).map(Number);
  }
  rgbCache.set(color, rgb);
  return rgb;
}

/**
 * Density-raster the links j with bucket[j] in `faint` (Map bucket id -> {alpha, neg}) onto a canvas of
 * device size W×H; xs/ys in CSS pixels, scaled by dpr.
 */
export function rasterFaint(ctx, W, H, dpr, xs, ys, links, bucket, faint, posColor, negColor) {
  const alphaOf = new Float32Array(256);
  const negOf = new Uint8Array(256);
  const use = new Uint8Array(256);
  for (const [id, spec] of faint) {
    alphaOf[id] = spec.alpha;
    negOf[id] = spec.neg ? 1 : 0;
    use[id] = 1;
  }
  const accP = new Float32Array(W * H);
  const accN = new Float32Array(W * H);
  const { src, dst, n } = links;
  let any = false;
  for (let j = 0; j < n; j++) {
    const b = bucket[j];
    if (!use[b]) continue;
    any = true;
    // Endpoints clamped so every step is in bounds.
    const x0 = clamp(Math.round(xs[src[j]] * dpr), W);
    const y0 = clamp(Math.round(ys[src[j]] * dpr), H);
    const x1 = clamp(Math.round(xs[dst[j]] * dpr), W);
    const y1 = clamp(Math.round(ys[dst[j]] * dpr), H);
    addLine(negOf[b] ? accN : accP, W, alphaOf[b], x0, y0, x1, y1);
  }
  if (any) ctx.putImageData(compose(ctx.createImageData(W, H), accP, accN, toRgb(posColor), toRgb(negColor)), 0, 0);
}

/**
 * Add `a` to every pixel of the line (x0, y0) -> (x1, y1) in `acc` (row width W): integer DDA, 16.16 fixed point
 * on the minor axis.
 */
function addLine(acc, W, a, x0, y0, x1, y1) {
  const dx = x1 - x0;
  const dy = y1 - y0;
  const adx = dx < 0 ? -dx : dx;
  const ady = dy < 0 ? -dy : dy;
  if (adx >= ady) {
    const n = adx;
    const st = dx > 0 ? 1 : -1;
    const sy = n ? Math.round((dy * 65536) / n) : 0;
    let yf = y0 * 65536 + 32768;
    let ix = x0;
    for (let k = 0; k <= n; k++) {
      acc[(yf >> 16) * W + ix] += a;
      ix += st;
      yf += sy;
    }
  } else {
    const n = ady;
    const st = dy > 0 ? W : -W;
    const sx = Math.round((dx * 65536) / n);
    let xf = x0 * 65536 + 32768;
    let row = y0 * W;
    for (let k = 0; k <= n; k++) {
      acc[row + (xf >> 16)] += a;
      row += st;
      xf += sx;
    }
  }
}

/** The two density images into `img`: alpha = 1 - exp(-density) per sign, colours mixed by their alphas. */
function compose(img, accP, accN, [pr, pg, pb], [nr, ng, nb]) {
  const data = img.data;
  for (let i = 0; i < accP.length; i++) {
    const p = accP[i];
    const q = accN[i];
    if (p === 0 && q === 0) continue;
    const ap = 1 - Math.exp(-p);
    const an = 1 - Math.exp(-q);
    const out = 1 - (1 - ap) * (1 - an);
    const wsum = ap + an;
    const o = i * 4;
    data[o] = (pr * ap + nr * an) / wsum;
    data[o + 1] = (pg * ap + ng * an) / wsum;
    data[o + 2] = (pb * ap + nb * an) / wsum;
    data[o + 3] = out * 255;
  }
  return img;
}

/** Stroke segments (link indices from `each`) in chunks of CHUNK per path. */
export function strokeChunked(ctx, xs, ys, links, each) {
  let k = 0;
  ctx.beginPath();
  each((j) => {
    ctx.moveTo(xs[links.src[j]], ys[links.src[j]]);
    ctx.lineTo(xs[links.dst[j]], ys[links.dst[j]]);
    if (++k % CHUNK === 0) {
      ctx.stroke();
      ctx.beginPath();
    }
  });
  if (k % CHUNK) ctx.stroke();
}
