// The API client: every request carries the token the operator typed (sessionStorage, this tab only).

const TOKEN_KEY = "saga-tracker-console-token";

export function token() {
  return sessionStorage.getItem(TOKEN_KEY) || "";
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An API answer that is not 2xx (status 0: the service could not be reached). */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** GET `path` with the query `params` (empty values left out); the JSON body, or an ApiError. */
export async function get(path, params = {}) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  }
  const headers = { Accept: "application/json" };
  const t = token();
  if (t) headers.Authorization = `Bearer ${t}`;
  let response;
  try {
    response = await fetch(url, { headers, cache: "no-store", credentials: "omit" });
  } catch (e) {
    throw new ApiError(0, "network", `cannot reach the service (${e.message})`);
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? `http_${response.status}`,
      body?.message ?? response.statusText);
  }
  return body;
}

let configOnce = null;

/** `/ui/config.json`: the trace link template and the terminal states. */
export function config() {
  configOnce ??= fetch("config.json", { cache: "no-store" })
    .then((r) => (r.ok ? r.json() : {}))
    .catch(() => ({}));
  return configOnce;
}

/** The link of a trace id, or null (no template, or a result that is not an http(s) URL). */
export function traceUrl(template, traceId) {
  if (!template || !traceId) return null;
  const url = template.split("{traceId}").join(encodeURIComponent(traceId));
  return /^https?:\/\//i.test(url) ? url : null;
}
