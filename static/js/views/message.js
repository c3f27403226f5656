// views/message.js — owns a message's page (#/apps/{app}/messages/{msg}): its details and payload,
// its destinations (with Resend) and every delivery attempt.

import { api, seg, isAbort } from '../api.js';
import { h, busy, update, table, errorBox, crumbs, pageTitle, timeEl, statusBadge, route, toast } from '../ui.js';
import { attemptsTable } from './attempts.js';

function details(m) {
  const item = (label, value) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', null, value));
  const list = (xs) => (xs && xs.length ? xs.join(', ') : h('span', { class: 'muted' }, '—'));
  return h('dl', { class: 'kv-list kv-inline' },
    item('Status', statusBadge(m.status)),
    item('Event type', h('code', null, m.eventType)),
    item('Event ID', m.eventId ? h('code', null, m.eventId) : h('span', { class: 'muted' }, '—')),
    item('Created', timeEl(m.timestamp)),
    item('Channels', list(m.channels)),
    item('Tags', list(m.tags)));
}

function destinations(rows, appId, msgId, err) {
  return table({
    caption: 'Endpoints this message goes to',
    rows,
    empty: 'No endpoint matched this message, so it was not delivered anywhere.',
    columns: [
      { label: 'Endpoint', cell: (d) => h('span', { class: 'stacked' },
        h('a', { href: route('apps', appId, 'endpoints', d.id), class: 'url', 'data-key': `ep:${d.id}` }, d.url),
        h('code', { class: 'id muted' }, d.id)) },
      { label: 'Status', cell: (d) => h('span', { class: 'stacked' }, statusBadge(d.status), d.disabled ? h('span', { class: 'muted' }, 'endpoint disabled') : null) },
      { label: 'Next attempt', cell: (d) => timeEl(d.nextAttempt) },
      { label: 'Actions', class: 'actions-cell', cell: (d) => h('button', {
        type: 'button', class: 'btn btn-small', 'data-key': `resend:${d.id}`,
        onclick: (e) => busy(e.currentTarget, async () => {
          err.clear();
          try {
            await api.post(`/app/${seg(appId)}/msg/${seg(msgId)}/endpoint/${seg(d.id)}/resend`, {});
            toast(`Resend to ${d.url} queued.`);
          } catch (e2) {
            err.show(e2);
          }
        }),
      }, 'Resend') },
    ],
  });
}

export async function messageView(root, ctx) {
  const { appId, msgId } = ctx.params;
  const base = `/app/${seg(appId)}/msg/${seg(msgId)}`;
  ctx.title(msgId);
  let app;
  let msg;
  try {
    [app, msg] = await Promise.all([
      api.get(`/app/${seg(appId)}`, null, { signal: ctx.signal }),
      api.get(base, { with_content: true }, { signal: ctx.signal }),
    ]);
  } catch (e) {
    if (e.status === 404) {
      root.append(pageTitle('Message not found'),
        h('p', null, h('a', { href: route('apps', appId, 'messages') }, 'Back to the messages'), '.'));
      return;
    }
    throw e;
  }
  ctx.title(`${msg.id} · ${app.name}`);
  const err = errorBox();
  const destErr = errorBox();
  const info = h('div', { class: 'region', 'data-testid': 'message-details' });
  const dest = h('div', { class: 'region', 'data-testid': 'destinations' }, h('p', { class: 'loading' }, 'Loading…'));
  const atts = h('div', { class: 'region', 'data-testid': 'attempts' }, h('p', { class: 'loading' }, 'Loading…'));
  update(info, msg, details);
  root.append(
    crumbs([[app.name, route('apps', appId)], ['Messages', route('apps', appId, 'messages')], ['Message']]),
    pageTitle(msg.id),
    err.el,
    h('section', { class: 'card' }, info),
    h('section', { class: 'stack' }, h('h2', null, 'Payload'),
      h('pre', { class: 'pre payload', 'data-testid': 'payload', tabindex: '0', 'aria-label': 'Payload' }, JSON.stringify(msg.payload, null, 2))),
    h('section', { class: 'stack' }, h('h2', null, 'Destinations'), destErr.el, dest),
    h('section', { class: 'stack' }, h('h2', null, 'Attempts'), atts));

  ctx.poll(async () => {
    try {
      const [m, d, a] = await Promise.all([
        api.get(base, { with_content: false }, { signal: ctx.signal }),
        api.get(`${base}/endpoint`, { limit: 250 }, { signal: ctx.signal }),
        api.get(`/app/${seg(appId)}/attempt/msg/${seg(msgId)}`, { limit: 100 }, { signal: ctx.signal }),
      ]);
      if (!ctx.alive()) return;
      err.clear();
      update(info, { ...m, payload: undefined }, details);
      update(dest, d.data, () => destinations(d.data, appId, msgId, destErr));
      update(atts, a.data, () => attemptsTable(a.data, { appId, link: 'endpoint' }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
