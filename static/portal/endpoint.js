// endpoint.js — owns the portal's endpoint pages: #/new (the form alone) and #/endpoints/{id}:
// health and circuit breaker, settings (a form with ManageEndpoint, else read only), the signing
// secret (reveal, copy, rotate) and verify snippets, test event, recovery since a time, recent
// deliveries with resend, and deleting. Each control shows only when the token's capabilities
// allow it; the server refuses the others anyway.

import { seg, isAbort } from '/js/api.js';
import { h, badge, busy, update, field, errorBox, confirmAction, crumbs, pageTitle, timeEl, toast, table, statusBadge } from '/js/ui.js';
import { fieldErrors, secretControls } from '/js/forms.js';
import { lastStatus, successRate, stateCell } from '/js/views/endpoints.js';
import { noResponseLabel } from '/js/views/attempts.js';
import { portal } from './session.js';
import { endpointForm, loadCatalogue } from './form.js';
import { verifyCard } from './snippets.js';

const routeTo = (id) => `#/endpoints/${encodeURIComponent(id)}`;
const card = (title, key, ...children) => h('section', { class: 'card', 'data-section': key }, h('h2', null, title), children);

export async function newEndpointView(root, ctx) {
  const { session } = ctx;
  ctx.title('Add endpoint');
  root.append(crumbs([['Endpoints', '#/'], ['Add endpoint']]), pageTitle('Add an endpoint'));
  if (!session.can.manage) {
    root.append(h('p', null, 'This link does not allow adding endpoints. ', h('a', { href: '#/' }, 'Back to your endpoints'), '.'));
    return;
  }
  const catalogue = await loadCatalogue(ctx.signal);
  root.append(h('section', { class: 'card' }, endpointForm({
    appId: session.appId,
    catalogue,
    onSaved: (ep) => {
      location.hash = routeTo(ep.id);
    },
  })));
}

function circuit(health) {
  const c = health && health.circuit;
  if (!c) return '—';
  if (c.state === 'open') {
    return h('span', { class: 'stacked' }, badge('Open', 'warn'),
      h('span', { class: 'reason' }, 'Failing: we try one delivery at a time until your endpoint answers 2xx. Since '), timeEl(c.openSince));
  }
  return h('span', { class: 'stacked' }, badge('Closed', 'success'), h('span', { class: 'reason' }, 'Deliveries flow normally.'));
}

function healthList(ep, health) {
  const item = (label, value) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', null, value));
  const c = (health && health.counts) || {};
  return h('dl', { class: 'kv-list' },
    item('State', stateCell(ep, health)),
    item('Circuit breaker', circuit(health)),
    item('Last delivery', lastStatus(health)),
    item('Success rate', successRate(health)),
    item('Failing since', timeEl(health && health.failingSince)),
    item('Last success', timeEl(health && health.lastSuccessAt)),
    item('Waiting', health ? String((c.pending || 0) + (c.sending || 0)) : '—'));
}

function readOnlySettings(ep) {
  const item = (label, value) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', null, value));
  const list = (xs, none) => (xs && xs.length ? h('span', { class: 'stacked' }, xs.map((x) => h('code', null, x))) : h('span', { class: 'muted' }, none));
  return h('dl', { class: 'kv-list', 'data-testid': 'settings-readonly' },
    item('URL', h('span', { class: 'url' }, ep.url)),
    item('Description', ep.description || h('span', { class: 'muted' }, 'None')),
    item('Events', list(ep.filterTypes, 'All events')),
    item('Channels', list(ep.channels, 'All channels')),
    item('Rate limit', ep.rateLimit ? `${ep.rateLimit} per second` : h('span', { class: 'muted' }, 'None')),
    item('Disabled', ep.disabled ? 'Yes' : 'No'));
}

function secretCard(base, can) {
  return card('Signing secret', 'secret',
    h('p', { class: 'muted' }, 'Your endpoint checks each delivery’s signature with this secret.'),
    secretControls({
      get: () => portal.get(`${base}/secret`),
      rotate: can.rotateSecret ? () => portal.post(`${base}/secret/rotate`, {}) : null,
      rotateMessage: 'A new secret signs deliveries from now on; the old one keeps signing beside it for 24 hours, so you can switch over.',
    }));
}

function testCard(base, catalogue, ctx) {
  const err = errorBox();
  const result = h('p', { class: 'result', role: 'status' });
  const sel = h('select', { name: 'eventType' }, h('option', { value: 'herald.test' }, 'herald.test (a test payload)'),
    catalogue.map((t) => h('option', { value: t.name }, t.example ? `${t.name} (its example)` : t.name)));
  const send = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Send test event');
  const form = h('form', { class: 'inline-form', novalidate: true }, field('Event type', sel), h('div', { class: 'actions' }, send));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(send, async () => {
      err.clear();
      result.replaceChildren();
      try {
        const msg = await portal.post(`${base}/send-example`, { eventType: sel.value });
        result.replaceChildren('Sent message ', h('code', null, msg.id), '. It shows in Recent deliveries below.');
        ctx.refresh();
      } catch (e2) {
        err.show(e2);
      }
    });
  });
  return card('Send a test event', 'test', h('p', { class: 'muted' }, 'A message sent to this endpoint only: the event type’s example payload when it has one.'), form, err.el, result);
}

function localInputValue(d) {
  const p = (n) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}`;
}

function recoverCard(base, ctx) {
  const err = errorBox();
  const result = h('p', { class: 'result', role: 'status' });
  const since = h('input', { type: 'datetime-local', name: 'since', required: true, value: localInputValue(new Date(Date.now() - 86400000)) });
  const go = h('button', { type: 'submit', class: 'btn' }, 'Recover');
  const fe = fieldErrors();
  fe.add('since', since);
  const form = h('form', { class: 'inline-form', novalidate: true }, field('Since', since), h('div', { class: 'actions' }, go));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    err.clear();
    result.textContent = '';
    const when = new Date(since.value);
    try {
      if (!since.value || Number.isNaN(when.getTime())) fe.check({ since: 'Choose the date and time to recover from.' });
      if (when.getTime() > Date.now()) fe.check({ since: 'This time is in the future: nothing failed after it yet.' });
      fe.clear();
    } catch {
      return;
    }
    busy(go, async () => {
      try {
        await portal.post(`${base}/recover`, { since: when.toISOString() }).catch((e2) => fe.fromServer(e2, (loc) => (loc[0] === 'since' ? 'since' : null)));
        result.textContent = `Recovery started: every message since ${when.toLocaleString()} that failed here is being sent again.`;
        ctx.refresh();
      } catch (e2) {
        if (e2.name !== 'FieldErrors') err.show(e2);
      }
    });
  });
  return card('Recover failed deliveries', 'recover', h('p', { class: 'muted' }, 'Send again every message that failed to reach this endpoint since a time.'), form, err.el, result);
}

function httpCell(a) {
  if (!a.responseStatusCode) return badge(noResponseLabel(a), 'failed');
  return String(a.responseStatusCode);
}

function responseCell(a) {
  if (!a.responseStatusCode) return h('p', { class: 'reason' }, a.response || 'no reason recorded');
  if (!a.response) return h('span', { class: 'muted' }, 'empty');
  return h('details', { class: 'response', 'data-key': `resp:${a.id}` },
    h('summary', { 'data-key': `sum:${a.id}` }, `Response body (${a.response.length} chars)`),
    h('pre', { class: 'pre' }, a.response));
}

function deliveriesTable(attempts, { epId, appId, can, ctx }) {
  const columns = [
    { label: 'Time', cell: (a) => timeEl(a.timestamp) },
    { label: 'Event', cell: (a) => h('span', { class: 'stacked' }, h('code', null, a.msg ? a.msg.eventType : a.msgId),
      h('span', { class: 'muted id' }, a.msgId)) },
    { label: 'Status', cell: (a) => statusBadge(a.status) },
    { label: 'HTTP', cell: httpCell },
    { label: 'Duration', cell: (a) => `${a.responseDurationMs} ms` },
    { label: 'Response', class: 'response-cell', cell: responseCell },
  ];
  if (can.attempts) {
    columns.push({ label: 'Resend', class: 'actions-cell', cell: (a) => {
      const b = h('button', { type: 'button', class: 'btn btn-small', 'data-key': `resend:${a.id}`, 'data-testid': 'resend',
        'aria-label': `Resend message ${a.msgId}`, onclick: () => busy(b, async () => {
          try {
            await portal.post(`/app/${seg(appId)}/msg/${seg(a.msgId)}/endpoint/${seg(epId)}/resend`, {});
            toast('Sent again: the new attempt shows here in a moment.');
            ctx.refresh();
          } catch (e) {
            toast(e.message || String(e), 'error');
          }
        }) }, 'Resend');
      return b;
    } });
  }
  return table({ caption: 'Recent deliveries, newest first', rows: attempts, empty: 'No deliveries yet.', columns });
}

export async function endpointView(root, ctx) {
  const { session, id: epId } = ctx;
  const { appId, can } = session;
  const base = `/app/${seg(appId)}/endpoint/${seg(epId)}`;
  ctx.title('Endpoint');
  let ep;
  let catalogue;
  try {
    [ep, catalogue] = await Promise.all([portal.get(base, null, { signal: ctx.signal }), loadCatalogue(ctx.signal)]);
  } catch (e) {
    if (e.status === 404) {
      root.append(pageTitle('Endpoint not found'), h('p', null, h('a', { href: '#/' }, 'Back to your endpoints'), '.'));
      return;
    }
    throw e;
  }
  ctx.title(ep.url);
  const err = errorBox();
  const healthRegion = h('div', { class: 'region', 'data-testid': 'health' });
  const deliveries = h('div', { class: 'region', 'data-testid': 'deliveries' }, h('p', { class: 'loading' }, 'Loading…'));
  const title = pageTitle(ep.url);
  title.classList.add('page-head-url');
  const meta = () => [ep.description ? `${ep.description} · ` : '', 'ID ', h('code', { class: 'id' }, ep.id)];
  const metaEl = h('p', { class: 'meta' }, meta());
  const settingsSlot = h('div');
  const renderSettings = () => settingsSlot.replaceChildren(can.manage
    ? endpointForm({
      appId, endpoint: ep, catalogue,
      async onSaved(saved) {
        ep = saved;
        title.querySelector('h1').textContent = ep.url;
        metaEl.replaceChildren(...meta());
        ctx.refresh();
      },
    })
    : readOnlySettings(ep));
  renderSettings();

  const side = [];
  if (can.viewSecret) side.push(secretCard(base, can));
  side.push(verifyCard(ep.url));
  const actions = can.attempts ? h('div', { class: 'portal-grid' }, testCard(base, catalogue, ctx), recoverCard(base, ctx)) : null;
  const del = can.manage ? h('section', { class: 'danger-zone', 'data-section': 'delete' }, h('h2', null, 'Delete this endpoint'),
    h('p', { class: 'muted' }, 'It stops receiving webhooks at once. This cannot be undone.'),
    h('button', { type: 'button', class: 'btn btn-danger', onclick: () => confirmAction({
      title: 'Delete this endpoint?',
      message: `${ep.url} stops receiving webhooks, and its delivery history is removed.`,
      async action() {
        await portal.del(base);
        toast('Endpoint deleted.');
        location.hash = '#/';
      },
    }) }, 'Delete endpoint')) : null;

  root.append(
    crumbs([['Endpoints', '#/'], ['Endpoint']]),
    title, metaEl, err.el,
    h('div', { class: 'portal-grid' },
      card('Health', 'health', healthRegion),
      card(can.manage ? 'Settings' : 'Settings (read only)', 'settings', settingsSlot)),
    h('div', { class: side.length > 1 ? 'portal-grid' : 'stack-cards' }, side),
    actions,
    h('section', { class: 'card', 'data-section': 'deliveries' },
      h('div', { class: 'deliveries-head' }, h('h2', null, 'Recent deliveries')), deliveries),
    del);

  ctx.poll(async () => {
    try {
      const [now, health, attempts] = await Promise.all([
        portal.get(base, null, { signal: ctx.signal }),
        portal.get(`${base}/health`, null, { signal: ctx.signal }).catch((e) => {
          if (isAbort(e) || e.status === 401) throw e;
          return null;
        }),
        portal.get(`/app/${seg(appId)}/attempt/endpoint/${seg(epId)}`, { limit: 20, with_msg: true }, { signal: ctx.signal }),
      ]);
      if (!ctx.alive()) return;
      err.clear();
      update(healthRegion, { now, health }, () => healthList(now, health));
      update(deliveries, attempts.data, () => deliveriesTable(attempts.data, { epId, appId, can, ctx }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
