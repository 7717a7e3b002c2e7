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

// The session's CSRF token (shared servers, issue 14): sent with every change; `onUnauthorized` is told of any 401.
const session = { csrf: null, onUnauthorized: null };
export const setCsrf = (token) => (session.csrf = token || null);
export const onUnauthorized = (fn) => (session.onUnauthorized = fn);

async function request(method, url, body, opts = {}) {
  const init = { method, headers: {}, signal: opts.signal };
  if (session.csrf && method !== "GET") init.headers["X-CSRF-Token"] = session.csrf;
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
  if (res.status === 401 && session.onUnauthorized && !opts.quiet) session.onUnauthorized();
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
  /** {supernodes: [[label, id, ...]], scores: [...]} suggested for the graph. */
  suggestSupernodes: (slug, body) =>
    request("POST", `/api/graphs/${enc(slug)}/supernodes/suggest`, body).then((r) => r.data),
  /** Starts a validation job: {job: JobView} (202); its result is a ValidationResult (jobResult). */
  validate: (slug, body) => request("POST", `/api/graphs/${enc(slug)}/validate`, body).then((r) => r.data),
  /** A finished job's result (a validation: {groups: [{label, predicted_effect, measured_effect, agrees, ablate,
   * steer}], circuit, measured_mode}). */
  jobResult: (job) => request("GET", job.result_url || `/api/jobs/${enc(job.id)}/result`).then((r) => r.data),
  /** {tokens, seconds, peak_bytes, fits, limit: {seconds, bytes}, reason} of a POST /api/graphs body. */
  estimate: (body, signal) => request("POST", "/api/estimate", body, { signal }).then((r) => r.data),
  /** {summary, alignment, nodes, links} of graph b against graph a (`all`: shared ones too). */
  diff: (a, b) => request("GET", `/api/graphs/${enc(a)}/diff/${enc(b)}?all=true`).then((r) => r.data),
  /** {auth: "required"|"off", user, via, csrf_token}; null when the server has no sessions (single user). */
  session: () => request("GET", "/api/session", undefined, { quiet: true }).then((r) => r.data)
    .catch((e) => (e.status === 404 ? null : Promise.reject(e))),
  signIn: (body) => request("POST", "/api/session", body, { quiet: true }).then((r) => r.data),
  signOut: () => request("DELETE", "/api/session"),
  searchFeatures: (q, limit = 20) =>
    request("GET", `/api/features/search?q=${enc(q)}&limit=${limit}`).then((r) => r.data),
};
