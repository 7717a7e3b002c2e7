// HTTP client for docs/api.md. Errors are ApiError: `status`, the body's `detail`, and a message that is a sentence
// (messages.js).
import { errorSentence, UNREACHABLE } from "./messages.js";

class ApiError extends Error {
  constructor(status, detail, message) {
    super(message || errorSentence(status, detail));
    this.status = status;
    this.detail = detail;
  }
}

async function request(method, url, body, opts = {}) {
  const init = { method, headers: {}, signal: opts.signal };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(url, init);
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, null, UNREACHABLE);
  }
  if (res.status === 204) return { status: 204, data: null };
  let data = null;
  const text = await res.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) throw new ApiError(res.status, data && data.detail !== undefined ? data.detail : data);
  return { status: res.status, data };
}

const enc = encodeURIComponent;

export const api = {
  config: () => request("GET", "/api/config").then((r) => r.data),
  /** `targets` (token strings) are checked too when given: response `targets: [{text, ids, single, prob}]`. */
  tokenize: (prompt, topK = 10, signal, targets = []) =>
    request("POST", "/api/tokenize", { prompt, top_k: topK, ...(targets.length ? { targets } : {}) }, { signal })
      .then((r) => r.data),
  /** Returns {status: 201|202, data}. */
  createGraph: (params) => request("POST", "/api/graphs", params),
  job: (id) => request("GET", `/api/jobs/${enc(id)}`).then((r) => r.data),
  cancelJob: (id) => request("DELETE", `/api/jobs/${enc(id)}`).then((r) => r.data),
  listGraphs: (q = "", page = 1, perPage = 20) =>
    request("GET", `/api/graphs?q=${enc(q)}&page=${page}&per_page=${perPage}`).then((r) => r.data),
  graph: (slug) => request("GET", `/api/graphs/${enc(slug)}`).then((r) => r.data),
  deleteGraph: (slug) => request("DELETE", `/api/graphs/${enc(slug)}`),
  importGraph: (file) => {
    const fd = new FormData();
    fd.append("file", file);
    return request("POST", "/api/graphs/import", fd).then((r) => r.data);
  },
  exportUrl: (slug) => `/api/graphs/${enc(slug)}/export`,
  saveSubgraph: (slug, view) => request("POST", `/api/graphs/${enc(slug)}/subgraphs`, view).then((r) => r.data),
  subgraph: (slug, id) => request("GET", `/api/graphs/${enc(slug)}/subgraphs/${enc(id)}`).then((r) => r.data),
  subgraphs: (slug) => request("GET", `/api/graphs/${enc(slug)}/subgraphs`).then((r) => r.data),
  intervene: (req) => request("POST", "/api/interventions", req).then((r) => r.data),
  feature: (layer, index) => request("GET", `/api/features/${enc(layer)}/${enc(index)}`).then((r) => r.data),
  /** {labels: {"layer_index": label}, frequencies: {"layer_index": activation frequency}} of many features. */
  featureInfo: (features) =>
    request("POST", "/api/features/labels", { features }).then((r) => r.data || {}),
  searchFeatures: (q, limit = 20) =>
    request("GET", `/api/features/search?q=${enc(q)}&limit=${limit}`).then((r) => r.data),
};
