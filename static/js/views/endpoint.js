// views/endpoint.js — owns an endpoint's page (#/apps/{app}/endpoints/{ep}): health, settings,
// signing secret (reveal, copy, rotate), test event, recovery of failed messages, recent attempts,
// and deleting the endpoint. Every section but health is a <details> card: open on wide screens,
// closed on phones, so the page stays short there.

import { api, seg, isAbort } from '../api.js';
import { h, badge, busy, update, field, errorBox, confirmAction, crumbs, pageTitle, timeEl, route, toast } from '../ui.js';
import { loadEventTypes, endpointSettingsForm } from './endpoint-form.js';
import { lastStatus, successRate, stateCell } from './endpoints.js';
import { attemptsTable, attemptFilters } from './attempts.js';
import { fieldErrors, secretControls } from '../forms.js';

/** Phones get the sections closed (see app.css's 640px breakpoint). */
const openByDefault = () => !window.matchMedia('(max-width: 640px)').matches;

/** A collapsible card; `key` names it for tests and `note` sits in its summary line. */
function card(title, ...children) {
  return section(title, null, children);
}

function section(title, key, children, { note = null, extraClass = '' } = {}) {
  return h('details', { class: `card ${extraClass}`.trim(), open: openByDefault(), 'data-section': key || title },
    h('summary', null, h('h2', null, title), note), children);
}

function healthList({ ep, health }) {
  const c = (health && health.counts) || {};
  const item = (label, value) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', null, value));
  return h('dl', { class: 'kv-list' },
    item('State', stateCell(ep, health)),
    item('Circuit breaker', circuit(health)),
    item('Ordering', ordering(ep, health)),
    item('Last attempt', lastStatus(health)),
    item('Success rate', successRate(health)),
    item('Failing since', timeEl(health && health.failingSince)),
    item('Last success', timeEl(health && health.lastSuccessAt)),
    item('Recent attempts', health ? `${c.success || 0} succeeded, ${c.fail || 0} failed (of the last 100)` : '—'),
    item('Waiting', health ? waiting(c) : '—'));
}

/** Closed: up to N tries at once; open: failing, one probe at a time (see the README). */
function circuit(health) {
  const c = health && health.circuit;
  if (!c) return '—';
  if (c.state === 'open') {
    return h('span', { class: 'stacked' }, badge('Open', 'warn'),
      h('span', { class: 'reason' }, 'Failing: one try at a time until it answers 2xx. Since '), timeEl(c.openSince));
  }
  return `Closed: up to ${c.concurrencyLimit} tries at once (${c.running} running)`;
}

/** FIFO endpoints: in order, and which failing message holds the rest back (see the README). */
function ordering(ep, health) {
  if ((health && health.ordering || ep.ordering) !== 'fifo') return 'Unordered: several at once';
  const b = health && health.blockedBy;
  if (!b) return 'FIFO: one at a time, in order';
  return h('span', { class: 'stacked', 'data-testid': 'fifo-blocked' }, badge('Blocked', 'warn'),
    h('span', { class: 'reason' }, `By ${b.msgId}, failing since `), timeEl(b.since));
}

/** Deliveries queued for the endpoint; Herald stops counting at 10,000 (see the health route). */
function waiting(c) {
  const n = (c.pending || 0) + (c.sending || 0);
  return n >= 10000 ? '10,000+' : String(n);
}

function secretCard(base) {
  return card('Signing secret',
    h('p', { class: 'muted' }, 'Receivers verify each delivery’s signature with this secret.'),
    secretControls({
      get: () => api.get(`${base}/secret`),
      rotate: () => api.post(`${base}/secret/rotate`, {}),
      rotateMessage: 'A new secret signs deliveries from now on; the old one keeps signing beside it for 24 hours, so receivers can switch over.',
    }));
}

function testCard(base, appId, eventTypes) {
  const err = errorBox();
  const result = h('p', { class: 'result', role: 'status' });
  const sel = h('select', { name: 'eventType' }, h('option', { value: 'herald.test' }, 'herald.test'),
    eventTypes.filter((t) => !t.archived).map((t) => h('option', { value: t.name }, t.example ? `${t.name} (its example)` : t.name)));
  const send = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send test event');
  const form = h('form', { class: 'inline-form', novalidate: true }, field('Event type', sel), h('div', { class: 'actions' }, send));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(send, async () => {
      err.clear();
      result.replaceChildren();
      try {
        const msg = await api.post(`${base}/send-example`, { eventType: sel.value });
        const chosen = eventTypes.find((t) => t.name === sel.value);
        result.replaceChildren('Sent ', h('a', { href: route('apps', appId, 'messages', msg.id) }, msg.id),
          chosen && chosen.example ? ' with the event type’s example payload.' : ' with a test payload.');
      } catch (e2) {
        err.show(e2);
      }
    });
  });
  return card('Send test event', h('p', { class: 'muted' }, 'An example message, delivered to this endpoint only: the event type’s example payload when it has one (see Event types).'), form, err.el, result);
}

function localInputValue(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function recoverCard(base, ctx) {
  const err = errorBox();
  const result = h('p', { class: 'result', role: 'status' });
  const since = h('input', { type: 'datetime-local', name: 'since', required: true, value: localInputValue(new Date(Date.now() - 86400000)),
    max: localInputValue(new Date()) });
  const go = h('button', { type: 'submit', class: 'btn' }, 'Recover');
  const fe = fieldErrors();
  fe.add('since', since);
  const form = h('form', { class: 'inline-form', novalidate: true }, field('Since', since), h('div', { class: 'actions' }, go));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    err.clear();
    fe.clear();
    result.textContent = '';
    const when = new Date(since.value);
    try {
      if (!since.value || Number.isNaN(when.getTime())) fe.check({ since: 'Choose the date and time to recover from.' });
      if (when.getTime() > Date.now()) {
        fe.check({ since: 'This time is in the future: no message was created after it, so there is nothing to recover.' });
      }
    } catch {
      return;
    }
    busy(go, async () => {
      try {
        await api.post(`${base}/recover`, { since: when.toISOString() }).catch((e2) => fe.fromServer(e2, (loc) => (loc[0] === 'since' ? 'since' : null)));
        result.textContent = `Recovery started: every message created since ${when.toLocaleString()} whose delivery here failed is being re-sent. Watch Recent attempts.`;
        ctx.refresh();
      } catch (e2) {
        if (e2.name !== 'FieldErrors') err.show(e2);
      }
    });
  });
  return card('Recover failed messages', h('p', { class: 'muted' }, 'Re-send every message whose delivery here failed, created since a time.'), form, err.el, result);
}

export async function endpointView(root, ctx) {
  const { appId, epId } = ctx.params;
  const base = `/app/${seg(appId)}/endpoint/${seg(epId)}`;
  ctx.title('Endpoint');
  let app;
  let ep;
  let headers;
  let eventTypes;
  try {
    [app, ep, headers, eventTypes] = await Promise.all([
      api.get(`/app/${seg(appId)}`, null, { signal: ctx.signal }),
      api.get(base, null, { signal: ctx.signal }),
      api.get(`${base}/headers`, null, { signal: ctx.signal }),
      loadEventTypes(ctx.signal),
    ]);
  } catch (e) {
    if (e.status === 404) {
      root.append(pageTitle('Endpoint not found'),
        h('p', null, h('a', { href: route('apps', appId, 'endpoints') }, 'Back to the endpoints'), '.'));
      return;
    }
    throw e;
  }
  ctx.title(`${ep.url} · ${app.name}`);

  const err = errorBox();
  const healthRegion = h('div', { 'data-testid': 'health', class: 'region' });
  const attemptsRegion = h('div', { 'data-testid': 'attempts', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const attFilters = attemptFilters(attemptsRegion, ctx, { withMsg: true });
  const settingsSlot = h('div');
  const renderSettings = () => settingsSlot.replaceChildren(endpointSettingsForm({
    appId, endpoint: ep, headers, eventTypes,
    async onSaved(saved) {
      ep = saved;
      headers = await api.get(`${base}/headers`, null, { signal: ctx.signal });
      title.querySelector('h1').textContent = ep.url;
      meta.replaceChildren(...metaText());
      const hadFocus = settingsSlot.contains(document.activeElement);
      renderSettings(); // shows credential headers as hidden now
      if (hadFocus) settingsSlot.querySelector('button[type=submit]').focus();
      ctx.refresh();
    },
  }));
  renderSettings();
  const del = h('button', { type: 'button', class: 'btn btn-danger', onclick: () => confirmAction({
    title: 'Delete this endpoint?',
    message: `${ep.url} stops receiving messages, and its delivery history is removed.`,
    async action() {
      await api.del(base);
      toast('Endpoint deleted.');
      location.hash = route('apps', appId, 'endpoints');
    },
  }) }, 'Delete endpoint');
  const metaText = () => ['ID ', h('code', { class: 'id' }, ep.id), ep.description ? ` · ${ep.description}` : ''];
  const meta = h('p', { class: 'meta' }, metaText());
  const title = pageTitle(ep.url);
  title.classList.add('page-head-url');
  root.append(
    crumbs([[app.name, route('apps', appId)], ['Endpoints', route('apps', appId, 'endpoints')], ['Endpoint']]),
    title,
    meta,
    err.el,
    h('div', { class: 'grid-2' },
      h('section', { class: 'card' }, h('h2', null, 'Health'), healthRegion),
      section('Settings', 'settings', [settingsSlot])),
    h('div', { class: 'grid-3' }, secretCard(base), testCard(base, appId, eventTypes), recoverCard(base, ctx)),
    h('div', { class: 'endpoint-sections' },
      section('Recent attempts', 'attempts', [attFilters.el, attemptsRegion]),
      section('Delete', 'delete', [h('p', { class: 'muted' }, 'Deleting an endpoint cannot be undone.'), del], { extraClass: 'danger-zone' })));

  ctx.poll(async () => {
    try {
      const [now, health, attempts] = await Promise.all([
        api.get(base, null, { signal: ctx.signal }),
        api.get(`${base}/health`, null, { signal: ctx.signal }).catch((e) => {
          if (isAbort(e) || e.status === 401) throw e;
          return null;
        }),
        api.get(`/app/${seg(appId)}/attempt/endpoint/${seg(epId)}`, { limit: 20, ...attFilters.query() }, { signal: ctx.signal }),
      ]);
      if (!ctx.alive()) return;
      err.clear();
      update(healthRegion, { now, health }, () => healthList({ ep: now, health }));
      update(attemptsRegion, attempts.data, () => attemptsTable(attempts.data, { appId, link: 'message', filtered: attFilters.active }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
