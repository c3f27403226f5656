// main.js — owns the app shell: signed-in state, the hash router, the nav, and the 2-second poll of
// the current view (only while the tab is visible, stopped when the view is left).

import { token, onUnauthorized } from './api.js';
import { h, refreshTimes, pageTitle } from './ui.js';
import { signInView } from './views/signin.js';
import { dashboardView } from './views/dashboard.js';
import { appsView } from './views/apps.js';
import { appView } from './views/app.js';
import { endpointView } from './views/endpoint.js';
import { messageView } from './views/message.js';
import { eventTypesView } from './views/event-types.js';

const POLL_MS = 2000;

// [pattern, view, nav section, fixed params]
const ROUTES = [
  [/^\/$/, dashboardView, 'dashboard'],
  [/^\/apps$/, appsView, 'apps'],
  [/^\/apps\/([^/]+)$/, appView, 'apps', { tab: 'endpoints' }],
  [/^\/apps\/([^/]+)\/(endpoints|messages)$/, appView, 'apps'],
  [/^\/apps\/([^/]+)\/endpoints\/([^/]+)$/, endpointView, 'apps'],
  [/^\/apps\/([^/]+)\/messages\/([^/]+)$/, messageView, 'apps'],
  [/^\/event-types$/, eventTypesView, 'event-types'],
];

const PARAM_NAMES = new Map([
  [appView, ['appId', 'tab']],
  [endpointView, ['appId', 'epId']],
  [messageView, ['appId', 'msgId']],
]);

const main = document.getElementById('main');
const nav = document.getElementById('site-nav');
const signOut = document.getElementById('sign-out');
let current = null; // the running view: {ctrl, polls, timer, running, again}
let navigated = false;

function stop() {
  if (!current) return;
  current.ctrl.abort();
  clearTimeout(current.timer);
  current = null;
}

async function tick(v) {
  if (current !== v) return;
  if (v.running) {
    v.again = true;
    return;
  }
  clearTimeout(v.timer);
  if (document.visibilityState === 'visible') {
    v.running = true;
    do {
      v.again = false;
      await Promise.all(v.polls.map((f) => Promise.resolve().then(f).catch(() => {})));
    } while (v.again && current === v);
    v.running = false;
    refreshTimes();
  }
  if (current === v) v.timer = setTimeout(() => tick(v), POLL_MS);
}

document.addEventListener('visibilitychange', () => {
  if (current && document.visibilityState === 'visible') tick(current);
});

function setNav(section) {
  nav.hidden = section === null;
  signOut.hidden = section === null;
  for (const a of nav.querySelectorAll('a[data-section]')) {
    if (a.dataset.section === section) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

function showSignIn(message) {
  stop();
  setNav(null);
  document.title = 'Sign in · Herald';
  main.replaceChildren(signInView({
    message,
    onSignedIn(t) {
      token.set(t);
      if (!location.hash || location.hash === '#/sign-in') location.hash = '#/';
      else render();
    },
  }));
}

function notFound() {
  return h('section', { class: 'stack' }, pageTitle('Page not found'),
    h('p', null, 'Nothing lives at this address. ', h('a', { href: '#/' }, 'Go to the dashboard'), '.'));
}

async function render() {
  stop();
  if (!token.get()) {
    showSignIn();
    return;
  }
  const path = (location.hash || '#/').slice(1) || '/';
  if (path === '/sign-in') {
    location.replace('#/');
    return;
  }
  let found = null;
  for (const [re, view, section, fixed] of ROUTES) {
    const m = re.exec(path);
    if (m) {
      const params = { ...fixed };
      const names = PARAM_NAMES.get(view) || [];
      try {
        m.slice(1).forEach((val, i) => {
          params[names[i]] = decodeURIComponent(val);
        });
        found = { view, section, params };
      } catch {
        found = null; // a malformed %-escape: not a page
      }
      break;
    }
  }
  const v = { ctrl: new AbortController(), polls: [], timer: 0, running: false, again: false };
  current = v;
  setNav(found ? found.section : 'none');
  const root = h('div', { class: 'view' });
  main.replaceChildren(root);
  if (!found) {
    root.appendChild(notFound());
    document.title = 'Not found · Herald';
  } else {
    const ctx = {
      params: found.params,
      signal: v.ctrl.signal,
      alive: () => current === v,
      poll: (fn) => v.polls.push(fn),
      refresh: () => tick(v),
      title: (t) => {
        document.title = `${t} · Herald`;
      },
    };
    try {
      await found.view(root, ctx);
    } catch (e) {
      if (current === v && !(e && e.name === 'AbortError')) {
        root.appendChild(h('div', { class: 'alert', role: 'alert' }, e.message || String(e)));
      }
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

onUnauthorized(() => {
  if (!token.get()) return;
  token.clear();
  showSignIn('Herald refused the token (it may have been changed). Sign in again.');
});

signOut.addEventListener('click', () => {
  token.clear();
  location.hash = '#/sign-in';
  showSignIn();
});

// The theme toggle: js/theme.js applied the saved choice or the system's before the first paint.
const themeToggle = document.getElementById('theme-toggle');
function showTheme() {
  const dark = window.heraldTheme ? window.heraldTheme.isDark() : false;
  themeToggle.setAttribute('aria-pressed', String(dark));
  themeToggle.title = dark ? 'Dark mode is on: switch to light' : 'Switch to dark mode';
}
themeToggle.addEventListener('click', () => {
  if (!window.heraldTheme) return;
  window.heraldTheme.set(!window.heraldTheme.isDark());
  showTheme();
});
window.matchMedia('(prefers-color-scheme: dark)').addEventListener('change', showTheme);
showTheme();

document.getElementById('skip-link').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

window.addEventListener('hashchange', () => {
  navigated = true;
  render();
});

render();
