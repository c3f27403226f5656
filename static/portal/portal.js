// portal.js — owns the customer portal's shell: the token (taken from the link's fragment, kept in
// this tab's sessionStorage, removed from the address bar), what the token may do (GET
// /auth/app-token), the operator's branding (/portal/config.json), the hash router, the poll of
// the current page, and the expired-link page every refusal of the token leads to.

import { onUnauthorized, isAbort } from '/js/api.js';
import { h, refreshTimes, pageTitle } from '/js/ui.js';
import { token, portal } from './session.js';
import { endpointsView } from './endpoints.js';
import { endpointView, newEndpointView } from './endpoint.js';

const POLL_MS = 3000;

const main = document.getElementById('main');
const signOut = document.getElementById('sign-out');
let brand = { operatorName: null, logoUrl: null, accent: null };
let session = null; // {appId, app, can: {...}, expiresAt}
let current = null;
let navigated = false;

const storedToken = token.get;

/** The link's fragment holds the token once: keep it for this tab and clean the address bar. */
function takeTokenFromLink() {
  const frag = new URLSearchParams(location.hash.replace(/^#/, ''));
  const t = frag.get('token');
  if (!t) return;
  token.set(t);
  // Out of the address bar, the history entry and anything copied from it.
  history.replaceState(null, '', `${location.pathname}${location.search}#/`);
}

function applyBrand() {
  const name = brand.operatorName;
  document.getElementById('brand-name').textContent = name ? `${name} webhooks` : 'Webhooks';
  const logo = document.getElementById('brand-logo');
  if (brand.logoUrl) {
    logo.src = brand.logoUrl;
    logo.alt = name ? `${name} logo` : '';
  }
  if (brand.accent) {
    // CSSOM, not a style attribute: the CSP allows it, and app.css's components follow.
    const root = document.documentElement.style;
    root.setProperty('--accent', brand.accent);
    root.setProperty('--accent-dark', brand.accent);
    root.setProperty('--focus', brand.accent);
    root.setProperty('--on-accent', readableOn(brand.accent));
  }
}

/** Black or white text, whichever reads better on `hex` (#rgb or #rrggbb). */
function readableOn(hex) {
  let s = hex.slice(1);
  if (s.length === 3) s = [...s].map((c) => c + c).join('');
  const [r, g, b] = [0, 2, 4].map((i) => parseInt(s.slice(i, i + 2), 16) / 255)
    .map((c) => (c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4));
  const lum = 0.2126 * r + 0.7152 * g + 0.0722 * b;
  return lum > 0.4 ? '#10141a' : '#ffffff';
}

const who = () => brand.operatorName || 'the service that gave you this link';

/** The page for a link that no longer works (expired, revoked, unknown, or none at all). */
function showEnded({ title = `This link has expired — ask ${who()} for a new one.`, why } = {}) {
  stop();
  session = null;
  token.clear();
  signOut.hidden = true;
  document.getElementById('portal-app').textContent = '';
  document.title = `Link expired · ${brand.operatorName || 'Webhooks'}`;
  const heading = h('h1', { tabindex: '-1' }, title);
  main.replaceChildren(h('section', { class: 'expired', 'data-testid': 'expired' },
    h('div', { class: 'card expired-card' }, heading,
      h('p', { class: 'muted' }, why || 'Links to this page work for a limited time, and stop working when you sign out.'))));
  heading.focus({ preventScroll: true });
}

function stop() {
  if (!current) return;
  current.ctrl.abort();
  clearTimeout(current.timer);
  current = null;
}

async function tick(v) {
  if (current !== v) return;
  clearTimeout(v.timer);
  if (document.visibilityState === 'visible' && !v.running) {
    v.running = true;
    await Promise.all(v.polls.map((f) => Promise.resolve().then(f).catch(() => {})));
    v.running = false;
    refreshTimes();
  }
  if (current === v) v.timer = setTimeout(() => tick(v), POLL_MS);
}

document.addEventListener('visibilitychange', () => {
  if (current && document.visibilityState === 'visible') tick(current);
});

const ROUTES = [
  [/^\/$/, endpointsView],
  [/^\/new$/, newEndpointView],
  [/^\/endpoints\/([^/]+)$/, endpointView],
];

async function render() {
  stop();
  if (!session) return;
  const path = (location.hash || '#/').slice(1) || '/';
  let found = null;
  for (const [re, view] of ROUTES) {
    const m = re.exec(path);
    if (!m) continue;
    try {
      found = { view, id: m[1] ? decodeURIComponent(m[1]) : null };
    } catch {
      found = null;
    }
    break;
  }
  const v = { ctrl: new AbortController(), polls: [], timer: 0, running: false };
  current = v;
  const root = h('div', { class: 'view' });
  main.replaceChildren(root);
  if (!found) {
    root.append(pageTitle('Page not found'), h('p', null, h('a', { href: '#/' }, 'Back to your endpoints'), '.'));
  } else {
    const ctx = {
      id: found.id,
      session,
      signal: v.ctrl.signal,
      alive: () => current === v,
      poll: (fn) => v.polls.push(fn),
      refresh: () => tick(v),
      title: (t) => {
        document.title = `${t} · ${brand.operatorName || 'Webhooks'}`;
      },
    };
    try {
      await found.view(root, ctx);
    } catch (e) {
      if (current === v && !isAbort(e)) root.appendChild(h('div', { class: 'alert', role: 'alert' }, e.message || String(e)));
    }
  }
  if (current !== v) return;
  if (navigated) {
    const heading = main.querySelector('h1');
    if (heading) heading.focus({ preventScroll: true });
    window.scrollTo(0, 0);
  }
  tick(v);
}

onUnauthorized(() => showEnded());

signOut.addEventListener('click', async () => {
  try {
    await portal.post('/auth/logout');
  } catch {
    /* already ended: the page below says the same */
  }
  showEnded({ title: 'You are signed out', why: `This link no longer works in any browser: ask ${who()} for a new one to come back.` });
});

document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => {
  if (!session && storedToken() === '' && /token=/.test(location.hash)) {
    start(); // a fresh link pasted into this tab
    return;
  }
  navigated = true;
  render();
});

async function start() {
  takeTokenFromLink();
  try {
    const res = await fetch('/portal/config.json', { cache: 'no-cache' });
    if (res.ok) brand = { ...brand, ...(await res.json()) };
  } catch {
    /* unbranded */
  }
  applyBrand();
  if (!storedToken()) {
    showEnded({ why: 'This page opens from a link with a sign-in token in it; this one has none.' });
    return;
  }
  let me;
  try {
    me = await portal.get('/auth/app-token');
  } catch (e) {
    if (e.status === 401 || e.status === 403) showEnded();
    else main.replaceChildren(h('div', { class: 'alert', role: 'alert' }, e.message || String(e)));
    return;
  }
  const caps = new Set(me.capabilities);
  session = {
    appId: me.appId,
    expiresAt: me.expiresAt,
    can: {
      manage: caps.has('ManageEndpoint'),
      viewSecret: caps.has('ViewEndpointSecret'),
      rotateSecret: caps.has('ManageEndpointSecret'),
      attempts: caps.has('CreateAttempts'),
    },
    app: null,
  };
  try {
    session.app = await portal.get(`/app/${encodeURIComponent(me.appId)}`);
    document.getElementById('portal-app').textContent = session.app.name;
  } catch (e) {
    if (!session) return;
  }
  signOut.hidden = false;
  render();
}

start();
