// api.js — owns every call to Herald's REST API: the /api/v1 base, the bearer token kept in
// sessionStorage, JSON in and out, and turning error answers into Errors with a readable message.

const BASE = '/api/v1';
const TOKEN_KEY = 'herald.token';

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (t) => sessionStorage.setItem(TOKEN_KEY, t),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

/** An API failure: `message` is meant for people; `status` is the HTTP status (0: no answer). */
export class ApiError extends Error {
  constructor(message, status, code) {
    super(message);
    this.name = 'ApiError';
    this.status = status;
    this.code = code;
  }
}

let unauthorized = () => {};
/** Called with a message whenever a request is refused with 401 (the token is gone or wrong). */
export function onUnauthorized(fn) {
  unauthorized = fn;
}

/** A readable message from an error body: `{code, detail}` or the 422 `{detail: [{loc, msg}]}`. */
export function errorMessage(status, body) {
  if (body && Array.isArray(body.detail)) {
    const parts = body.detail.map((d) => {
      const loc = (d.loc || []).filter((p, i) => !(i === 0 && ['body', 'query', 'path', 'header'].includes(p)));
      return loc.length ? `${loc.join('.')}: ${d.msg}` : String(d.msg);
    });
    if (parts.length) return parts.join('; ');
  }
  if (body && typeof body.detail === 'string' && body.detail) return body.detail;
  if (status === 401) return 'Invalid token';
  return `Herald answered ${status}`;
}

function queryString(query) {
  if (!query) return '';
  const qs = new URLSearchParams();
  for (const [k, v] of Object.entries(query)) {
    if (v !== undefined && v !== null && v !== '') qs.set(k, String(v));
  }
  const s = qs.toString();
  return s ? `?${s}` : '';
}

/**
 * One API request. Options: `query` (object), `body` (sent as JSON), `token` (instead of the stored
 * one), `signal` (AbortSignal), `quiet401` (do not sign out on 401: the sign-in form checks tokens),
 * `text` (resolve to the answer's text, unparsed: for a payload shown exactly as stored).
 */
export async function request(method, path, opts = {}) {
  const headers = { Accept: 'application/json' };
  const auth = opts.token ?? token.get();
  if (auth) headers.Authorization = `Bearer ${auth}`;
  const init = { method, headers, signal: opts.signal, cache: 'no-store' };
  if (opts.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(opts.body);
  }
  let res;
  try {
    res = await fetch(BASE + path + queryString(opts.query), init);
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new ApiError('Cannot reach Herald', 0, 'network');
  }
  const text = await res.text().catch(() => '');
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!res.ok) {
    const err = new ApiError(errorMessage(res.status, data), res.status, data && data.code);
    err.detail = data && Array.isArray(data.detail) ? data.detail : null; // forms.js maps it to fields
    if (res.status === 401 && !opts.quiet401) unauthorized(err.message);
    throw err;
  }
  return opts.text ? text : data;
}

/** Percent-encode one path segment (ids and uids may hold characters like `.`). */
export const seg = (s) => encodeURIComponent(s);

export const api = {
  get: (path, query, opts) => request('GET', path, { ...opts, query }),
  post: (path, body = {}, opts) => request('POST', path, { ...opts, body }),
  put: (path, body, opts) => request('PUT', path, { ...opts, body }),
  patch: (path, body, opts) => request('PATCH', path, { ...opts, body }),
  del: (path, query, opts) => request('DELETE', path, { ...opts, query }),
};

/** True for the error of a request cancelled because its view was left. */
export const isAbort = (e) => e && e.name === 'AbortError';
