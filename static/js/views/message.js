// views/message.js — owns a message's page (#/apps/{app}/messages/{msg}): its details with the
// delivery progress over its destinations, its payload (pretty and exactly as stored, with copy),
// its destinations (with Resend) and every delivery attempt (filterable).

import { api, seg, isAbort, request } from '../api.js';
import { h, busy, update, table, errorBox, crumbs, pageTitle, timeEl, statusBadge, badge, route, toast, copyText } from '../ui.js';
import { attemptsTable, attemptFilters } from './attempts.js';

/** The tag Herald's send-example puts on test events. */
export const TEST_TAG = 'herald.test';
export const isTest = (m) => Array.isArray(m.tags) && m.tags.includes(TEST_TAG);

/**
 * Per-destination progress in words: "1 of 3 delivered, 1 retrying, 1 failed". A pending
 * destination that was tried already is retrying; one never tried is waiting (or sending).
 * `tried` is the set of endpoint ids with at least one attempt.
 */
export function progressText(dests, tried) {
  if (!dests.length) return 'No destinations';
  const n = { delivered: 0, sending: 0, retrying: 0, waiting: 0, failed: 0 };
  for (const d of dests) {
    if (d.status === 0) n.delivered += 1;
    else if (d.status === 2) n.failed += 1;
    else if (d.status === 3) n.sending += 1;
    else if (tried.has(d.id)) n.retrying += 1;
    else n.waiting += 1;
  }
  const parts = [`${n.delivered} of ${dests.length} delivered`];
  for (const k of ['sending', 'retrying', 'waiting', 'failed']) if (n[k]) parts.push(`${n[k]} ${k}`);
  return parts.join(', ');
}

function details(m, progress) {
  const item = (label, value) => h('div', { class: 'kv' }, h('dt', null, label), h('dd', null, value));
  const list = (xs) => (xs && xs.length ? xs.join(', ') : h('span', { class: 'muted' }, '—'));
  return h('dl', { class: 'kv-list kv-inline' },
    item('Status', h('span', { class: 'stacked' },
      h('span', null, statusBadge(m.status), isTest(m) ? [' ', badge('test', 'warn')] : null),
      progress ? h('span', { class: 'muted', 'data-testid': 'progress' }, progress) : null)),
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

/**
 * The payload exactly as stored: the message's JSON answer is read as text and the payload cut
 * out of it (Herald writes the stored bytes there verbatim; parsing would re-format them). The
 * key is found first (the fields before it cannot hold it) and the payload ends before the last
 * `,"timestamp":`, the field Herald writes after it.
 */
export function rawPayload(text) {
  const key = '"payload":';
  const start = text.indexOf(key);
  const end = text.lastIndexOf(',"timestamp":');
  if (start < 0 || end < start) return null;
  return text.slice(start + key.length, end);
}

function payloadSection(msg, raw) {
  const pretty = JSON.stringify(msg.payload, null, 2);
  const exact = raw ?? JSON.stringify(msg.payload);
  const prettyPre = h('pre', { class: 'pre payload', 'data-testid': 'payload', tabindex: '0', 'aria-label': 'Payload, formatted' }, pretty);
  const rawPre = h('pre', { class: 'pre payload payload-raw', 'data-testid': 'payload-raw', tabindex: '0', 'aria-label': 'Payload as stored', hidden: true }, exact);
  const tab = (label, show) => h('button', { type: 'button', class: 'btn btn-small', 'aria-pressed': show ? 'true' : 'false', onclick: (e) => {
    prettyPre.hidden = label !== 'Formatted';
    rawPre.hidden = label !== 'Raw';
    for (const b of e.currentTarget.parentElement.querySelectorAll('button[aria-pressed]')) b.setAttribute('aria-pressed', b === e.currentTarget ? 'true' : 'false');
  } }, label);
  const copy = h('button', { type: 'button', class: 'btn btn-small', onclick: async () => {
    // The exact bytes, whichever view is shown: what the endpoint received.
    if (await copyText(exact)) toast('Payload copied (as stored).');
    else toast('The browser refused the copy; select the text instead.', 'error');
  } }, 'Copy payload');
  return h('section', { class: 'stack' },
    h('div', { class: 'section-head' }, h('h2', null, 'Payload'),
      h('div', { class: 'payload-tools', role: 'group', 'aria-label': 'Payload view' }, tab('Formatted', true), tab('Raw', false), copy)),
    prettyPre, rawPre);
}

export async function messageView(root, ctx) {
  const { appId, msgId } = ctx.params;
  const base = `/app/${seg(appId)}/msg/${seg(msgId)}`;
  ctx.title(msgId);
  let app;
  let msg;
  let raw = null;
  try {
    let text;
    [app, text] = await Promise.all([
      api.get(`/app/${seg(appId)}`, null, { signal: ctx.signal }),
      request('GET', base, { query: { with_content: true }, signal: ctx.signal, text: true }),
    ]);
    msg = JSON.parse(text);
    raw = rawPayload(text);
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
  const filters = attemptFilters(atts, ctx);
  update(info, { m: { ...msg, payload: undefined }, p: null }, (x) => details(x.m, x.p));
  root.append(
    crumbs([[app.name, route('apps', appId)], ['Messages', route('apps', appId, 'messages')], ['Message']]),
    pageTitle(msg.id),
    err.el,
    h('section', { class: 'card' }, info),
    payloadSection(msg, raw),
    h('section', { class: 'stack' }, h('h2', null, 'Destinations'), destErr.el, dest),
    h('section', { class: 'stack' }, h('h2', null, 'Attempts'), filters.el, atts));

  ctx.poll(async () => {
    const q = filters.query();
    try {
      // The progress needs every attempt's endpoint (unfiltered); the table shows the filtered list.
      const [m, d, all, a] = await Promise.all([
        api.get(base, { with_content: false }, { signal: ctx.signal }),
        api.get(`${base}/endpoint`, { limit: 250 }, { signal: ctx.signal }),
        api.get(`/app/${seg(appId)}/attempt/msg/${seg(msgId)}`, { limit: 250 }, { signal: ctx.signal }),
        filters.active
          ? api.get(`/app/${seg(appId)}/attempt/msg/${seg(msgId)}`, { limit: 100, ...q }, { signal: ctx.signal })
          : null,
      ]);
      if (!ctx.alive() || JSON.stringify(q) !== JSON.stringify(filters.query())) return;
      err.clear();
      const tried = new Set(all.data.map((x) => x.endpointId));
      update(info, { m: { ...m, payload: undefined }, p: progressText(d.data, tried) }, (x) => details(x.m, x.p));
      update(dest, d.data, () => destinations(d.data, appId, msgId, destErr));
      const rows = a ? a.data : all.data.slice(0, 100);
      update(atts, rows, () => attemptsTable(rows, { appId, link: 'endpoint', filtered: filters.active }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
