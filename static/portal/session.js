// session.js — owns the portal's token: kept in this tab's sessionStorage under its own key (never
// the admin UI's, which shares the origin), or in memory where a browser refuses storage to a
// third-party frame; and every API call the portal makes, with it.

import { request } from '/js/api.js';

const TOKEN_KEY = 'herald.portal.token';

let memory = '';

function store(fn) {
  try {
    return fn(window.sessionStorage);
  } catch {
    return undefined; // storage refused (a blocked third-party frame): memory alone
  }
}

export const token = {
  get: () => memory || store((s) => s.getItem(TOKEN_KEY)) || '',
  set: (t) => {
    memory = t;
    store((s) => s.setItem(TOKEN_KEY, t));
  },
  clear: () => {
    memory = '';
    store((s) => s.removeItem(TOKEN_KEY));
  },
};

function call(method, path, { query, body, signal } = {}) {
  return request(method, path, { query, body, signal, token: token.get() });
}

export const portal = {
  get: (path, query, opts = {}) => call('GET', path, { ...opts, query }),
  post: (path, body = {}, opts = {}) => call('POST', path, { ...opts, body }),
  patch: (path, body, opts = {}) => call('PATCH', path, { ...opts, body }),
  del: (path, opts = {}) => call('DELETE', path, opts),
};
