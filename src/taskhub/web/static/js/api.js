// HTTP client for /api/v1: the access token lives only in this module's memory.
// The refresh token is an HttpOnly cookie the browser sends to /api/v1/auth by itself.

const BASE = "/api/v1";

let accessToken = null;
let refreshInFlight = null;
let sessionEnded = () => {};

/** An error answer (problem details) or a network failure (status 0). */
export class ApiError extends Error {
  constructor(status, problem, message, { retryAfter = null, statusText = "" } = {}) {
    super(message || (problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || null;
    this.retryAfter = retryAfter; // seconds from a Retry-After header (429, 503), or null
    this.statusText = statusText;
  }

  /** The 422 `errors` list as [{field, msg}], `field` being the last name in `loc` under "body". */
  fieldErrors() {
    const errors = (this.problem && Array.isArray(this.problem.errors)) ? this.problem.errors : [];
    return errors.map((e) => {
      const loc = Array.isArray(e.loc) ? e.loc : [];
      const field = loc[0] === "body" && typeof loc[1] === "string" ? loc[1] : null;
      return { field, msg: String(e.msg || "is not valid"), loc };
    });
  }
}

/** Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or null. */
export function parseRetryAfter(value) {
  if (!value) return null;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number.parseInt(text, 10);
  const when = Date.parse(text);
  if (Number.isNaN(when)) return null;
  return Math.max(0, Math.ceil((when - Date.now()) / 1000));
}

function errorFrom(res, body) {
  return new ApiError(res.status, body, undefined, {
    retryAfter: parseRetryAfter(res.headers.get("Retry-After")),
    statusText: res.statusText,
  });
}

export const NETWORK_MESSAGE = "Could not reach the server. Check your connection and try again.";

/** Called with a message when the session cannot be renewed (the app shows the sign-in screen). */
export function onSessionEnded(fn) {
  sessionEnded = fn;
}

export function forgetSession() {
  accessToken = null;
}

async function parseBody(res) {
  if (res.status === 204 || res.status === 304) return null;
  const type = res.headers.get("Content-Type") || "";
  if (type.includes("json")) {
    try {
      return await res.json();
    } catch {
      return null;
    }
  }
  return null;
}

/** A 401 whose problem type is "wrong-password" (read from a clone: the body stays unread). */
async function isWrongPassword(res) {
  try {
    const body = await res.clone().json();
    return typeof body.type === "string" && body.type.endsWith("/wrong-password");
  } catch {
    return false;
  }
}

async function rawFetch(url, init) {
  try {
    return await fetch(url, { credentials: "same-origin", cache: "no-store", ...init });
  } catch {
    throw new ApiError(0, null, NETWORK_MESSAGE);
  }
}

async function runRefresh() {
  const res = await rawFetch(BASE + "/auth/refresh", {
    method: "POST",
    headers: { Accept: "application/json" },
  });
  const body = await parseBody(res);
  if (res.ok && body && typeof body.access_token === "string") {
    accessToken = body.access_token;
    return true;
  }
  accessToken = null;
  if (res.status === 401 || res.status === 403) return false;
  throw errorFrom(res, body);
}

/**
 * Renew the access token from the refresh cookie. Resolves true (renewed) or false (no valid session).
 *
 * The refresh token rotates on every use and presenting a used one revokes the whole login family,
 * so two refreshes must never race: one promise is shared inside this tab, and the Web Locks API
 * serializes tabs of the same origin (the second tab then presents the already-rotated cookie).
 */
export function refreshSession() {
  if (!refreshInFlight) {
    const locked = navigator.locks && navigator.locks.request
      ? navigator.locks.request("taskhub-refresh", runRefresh)
      : runRefresh();
    refreshInFlight = locked.finally(() => {
      refreshInFlight = null;
    });
  }
  return refreshInFlight;
}

/**
 * Call the API. Returns {data, headers, status}; throws ApiError on a non-2xx answer.
 * On 401 the access token is renewed once (shared refresh) and the request is sent again.
 */
export async function request(method, path, { json, headers = {}, auth = true, query, keepalive = false } = {}) {
  let url = BASE + path;
  if (query) {
    const qs = query instanceof URLSearchParams ? query.toString() : new URLSearchParams(query).toString();
    if (qs) url += "?" + qs;
  }
  const send = () => {
    const h = { Accept: "application/json", ...headers };
    const init = { method, headers: h };
    if (keepalive) init.keepalive = true; // still sent while the page unloads (a pending delete)
    if (json !== undefined) {
      h["Content-Type"] = "application/json";
      init.body = JSON.stringify(json);
    }
    if (auth && accessToken) h.Authorization = "Bearer " + accessToken;
    return rawFetch(url, init);
  };

  const tokenSent = accessToken;
  let res = await send();
  if (res.status === 401 && auth && (await isWrongPassword(res))) {
    // A wrong `current_password` (account changes) is a 401 about the password, not the token.
    throw errorFrom(res, await parseBody(res));
  }
  if (res.status === 401 && auth) {
    // Another request may already have renewed the token while this one was in flight.
    const renewed = accessToken !== null && accessToken !== tokenSent ? true : await refreshSession();
    if (renewed) res = await send();
    if (!renewed || res.status === 401) {
      accessToken = null;
      const message = "Your session has ended. Please sign in again.";
      sessionEnded(message);
      throw new ApiError(401, await parseBody(res), message);
    }
  }
  const data = await parseBody(res);
  if (!res.ok) throw errorFrom(res, data);
  return { data, headers: res.headers, status: res.status };
}

export async function login(email, password) {
  const { data } = await request("POST", "/auth/login", { json: { email, password }, auth: false });
  // The body also carries the refresh token; it is deliberately ignored: the HttpOnly cookie has it.
  accessToken = data.access_token;
}

/**
 * Create an account in `timeZone` (IANA name: labels and "today" use it). A server that does not know
 * the field yet (422 naming `time_zone`) gets the request again without it.
 */
export async function register(name, email, password, timeZone) {
  const json = { name, email, password, time_zone: timeZone };
  try {
    const { data } = await request("POST", "/auth/register", { json, auth: false });
    return data;
  } catch (err) {
    const aboutZone = err.status === 422 && err.fieldErrors().some((e) => e.field === "time_zone");
    if (!aboutZone) throw err;
    delete json.time_zone;
    const { data } = await request("POST", "/auth/register", { json, auth: false });
    return data;
  }
}

export async function logout() {
  try {
    await request("POST", "/auth/logout");
  } finally {
    accessToken = null;
  }
}

/**
 * Open a streaming GET (Server-Sent Events) with the access token in the Authorization header
 * (EventSource cannot send one). On 401 the token is renewed once, as in request(). Resolves to
 * the open Response; throws ApiError (status 0 for a network failure or an abort).
 */
export async function openStream(path, { headers = {}, signal } = {}) {
  const send = () => {
    const h = { Accept: "text/event-stream", ...headers };
    if (accessToken) h.Authorization = "Bearer " + accessToken;
    return rawFetch(BASE + path, { method: "GET", headers: h, signal });
  };
  const tokenSent = accessToken;
  let res = await send();
  if (res.status === 401) {
    const renewed = accessToken !== null && accessToken !== tokenSent ? true : await refreshSession();
    if (renewed) res = await send();
    if (!renewed || res.status === 401) {
      accessToken = null;
      const message = "Your session has ended. Please sign in again.";
      sessionEnded(message);
      throw new ApiError(401, null, message);
    }
  }
  if (!res.ok) throw errorFrom(res, await parseBody(res));
  return res;
}
