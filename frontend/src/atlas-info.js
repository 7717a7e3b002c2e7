// Atlas labels and activation frequencies of a graph's feature nodes (POST /api/features/labels, in chunks of
// 10,000): labels go to nodes without one (tooltips, link graph, lists), frequencies to node.frequency (the
// feature-density filter). Without an atlas nothing changes.
import { api } from "./api.js";

const CHUNK = 10000;

/** Resolves to {labels: count set, frequencies: count set}. */
export async function loadAtlasInfo(graph, alive = () => true) {
  const feats = graph.nodes.filter((n) => n.kind === "feature" && n.featIndex !== null);
  const found = { labels: 0, frequencies: 0 };
  if (!feats.length) return found;
  const keys = [...new Map(feats.map((n) => [`${n.featLayer}_${n.featIndex}`, [n.featLayer, n.featIndex]])).values()];
  const labels = {};
  const freqs = {};
  try {
    for (let k = 0; k < keys.length; k += CHUNK) {
      const res = await api.featureInfo(keys.slice(k, k + CHUNK));
      if (!alive()) return found;
      Object.assign(labels, res.labels || {});
      Object.assign(freqs, res.frequencies || {});
    }
  } catch {
    return found; // no atlas for this transcoder set: generated labels stay, the density filter is unavailable
  }
  for (const n of feats) {
    const key = `${n.featLayer}_${n.featIndex}`;
    if (!n.clerp && labels[key]) {
      n.clerp = labels[key];
      found.labels++;
    }
    if (typeof freqs[key] === "number") {
      n.frequency = freqs[key];
      found.frequencies++;
    }
  }
  return found;
}
