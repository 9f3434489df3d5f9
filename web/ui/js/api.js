// The API client: every call the UI makes goes through here, to this server's public API.
// With an auth token configured it is kept in localStorage and sent as a Bearer header
// (and as ?token= on the debug WebSocket, which browsers cannot give headers).

const TOKEN_KEY = "traitor.token";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.code = (body && body.code) || "http_error";
    this.field = (body && body.field) || null;
  }
}

const listeners = new Set();
/** Called with the error whenever the server answers 401 (a token is needed or wrong). */
export function onUnauthorized(fn) { listeners.add(fn); return () => listeners.delete(fn); }

export function getToken() {
  try { return localStorage.getItem(TOKEN_KEY) || ""; } catch { return ""; }
}
export function setToken(token) {
  try {
    if (token) localStorage.setItem(TOKEN_KEY, token);
    else localStorage.removeItem(TOKEN_KEY);
  } catch { /* private mode: the token lives for this page only */ }
  memoryToken = token || "";
}
let memoryToken = "";
function token() { return getToken() || memoryToken; }

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : "";
}

/** Calls the API; resolves to the answer's `data` (or the whole body if it has none). */
export async function call(method, path, { params, body, signal } = {}) {
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(`${path}${query(params)}`, {
      method, headers, signal, cache: "no-store",
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    if (e.name === "AbortError") throw e;
    throw new ApiError(0, { error: "Cannot reach the Traitor server. Is it running?", code: "network" });
  }
  let payload = null;
  const text = await response.text();
  if (text) {
    try { payload = JSON.parse(text); } catch { payload = { error: text.slice(0, 300) }; }
  }
  if (!response.ok) {
    const err = new ApiError(response.status, payload);
    if (response.status === 401) for (const fn of listeners) fn(err);
    throw err;
  }
  return payload && Object.prototype.hasOwnProperty.call(payload, "data") ? payload.data : payload;
}

export const api = {
  stats: (opts) => call("GET", "api/stats", opts),
  health: async () => {
    const r = await fetch("healthz", { cache: "no-store" });
    const body = await r.json();
    return body.data;
  },
  jobs: (params, opts) => call("GET", "api/jobs", { params, ...opts }),
  job: (id) => call("GET", "api/job", { params: { id } }),
  createJob: (type, body, start) => call("POST", start ? "api/run" : "api/job", { params: { type }, body }),
  updateJob: (id, body) => call("PUT", "api/job", { params: { id }, body }),
  deleteJob: (id) => call("DELETE", "api/job", { params: { id } }),
  enable: (id, enable) => call("POST", "api/enable", { params: { id, enable } }),
  trigger: (id) => call("POST", "api/job/trigger", { params: { id } }),
  script: (id) => call("GET", "api/script", { params: { id } }),
  saveScript: (id, script, note) => call("POST", "api/script", { params: { id }, body: note ? { script, note } : { script } }),
  runs: (params) => call("GET", "api/job/runs", { params }),
  run: (id) => call("GET", "api/job/run", { params: { id } }),
  cronPreview: (params, opts) => call("GET", "api/cron/preview", { params, ...opts }),
  versions: (id) => call("GET", "api/job/versions", { params: { id } }),
  version: (id, version) => call("GET", "api/job/version", { params: { id, version } }),
  rollback: (id, version, note) => call("POST", "api/job/rollback", { params: { id, version }, body: note ? { note } : undefined }),
  plan: (id, from, to) => call("GET", "api/job/plan", { params: { id, from, to } }),
  pause: (id, until) => call("POST", "api/job/pause", { params: { id, until } }),
  resume: (id) => call("POST", "api/job/resume", { params: { id } }),
  backfill: (id, from, to) => call("POST", "api/job/backfill", { params: { id, from, to } }),
  occurrences: (params) => call("GET", "api/job/occurrences", { params }),
  // Secrets: a value goes in and never comes out; the list has names, times and grants.
  secrets: () => call("GET", "api/secrets"),
  putSecret: (name, value) => call("PUT", "api/secret", { params: { name }, body: { value } }),
  deleteSecret: (name) => call("DELETE", "api/secret", { params: { name } }),
  // A job's key-value store (what its scripts keep with kv.set).
  kv: (id) => call("GET", "api/job/kv", { params: { id } }),
  kvDelete: (id, key) => call("DELETE", "api/job/kv", { params: { id, key } }),
  // Shared modules, versioned like scripts.
  modules: () => call("GET", "api/modules"),
  module: (name, version) => call("GET", "api/module", { params: { name, version } }),
  saveModule: (name, source, note) => call("PUT", "api/module", { params: { name }, body: note ? { source, note } : { source } }),
  deleteModule: (name) => call("DELETE", "api/module", { params: { name } }),
  moduleVersions: (name) => call("GET", "api/module/versions", { params: { name } }),
  rollbackModule: (name, version, note) => call("POST", "api/module/rollback", { params: { name, version }, body: note ? { note } : undefined }),
  audit: (params) => call("GET", "api/audit", { params }),
};

/** The debug WebSocket's URL (same host as the page). */
export function debugUrl(params) {
  const t = token();
  const base = new URL("api/debug", location.href);
  base.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  base.hash = "";
  base.search = query({ ...params, format: "json", token: t || undefined });
  return base.toString();
}
