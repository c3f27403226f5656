// views/messages.js — owns an application's Messages tab: newest first, filtered by event type,
// delivery status, test events and a date range, paged, each row linking to the message's page;
// finding one message by id or eventId; and retrying the failed messages the filters select.

import { api, seg, isAbort } from '../api.js';
import {
  h, update, invalidate, table, field, errorBox, pager, timeEl, statusBadge, badge, route, STATUS_NAMES,
  formDialog, toast, busy, zoneName,
} from '../ui.js';
import { loadEventTypes } from './endpoint-form.js';
import { isTest } from './message.js';

const LIMIT = 20;
/** Bulk retry takes at most this many messages (newest first), so one click stays bounded. */
export const MAX_BULK = 100;
/** Pages read to find them (a page may end early on a long scan). */
const MAX_BULK_PAGES = 10;

/** A datetime-local value (the browser's zone) as RFC 3339 UTC; '' stays ''. */
function toIso(local) {
  if (!local) return '';
  const d = new Date(local);
  return Number.isNaN(d.getTime()) ? '' : d.toISOString();
}

function messageCell(appId, m) {
  return h('span', { class: 'stacked' },
    h('a', { href: route('apps', appId, 'messages', m.id), class: 'id', 'data-key': `msg:${m.id}` }, m.id),
    m.eventId ? h('code', { class: 'muted event-id', title: 'eventId' }, m.eventId) : null);
}

export async function messagesTab(root, ctx, app) {
  const appId = ctx.params.appId;
  const base = `/app/${seg(appId)}/msg`;
  const err = errorBox();
  const region = h('div', { 'data-testid': 'messages', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const pages = pager(() => {
    invalidate(region);
    ctx.refresh();
  });
  const typeSel = h('select', { name: 'event_types' }, h('option', { value: '' }, 'All event types'));
  const statusSel = h('select', { name: 'status' }, h('option', { value: '' }, 'Any status'),
    STATUS_NAMES.map((name, i) => h('option', { value: String(i) }, name)));
  const testSel = h('select', { name: 'test' },
    h('option', { value: '' }, 'Shown, marked “test”'),
    h('option', { value: 'false' }, 'Hidden'),
    h('option', { value: 'true' }, 'Only test events'));
  const after = h('input', { type: 'datetime-local', name: 'after', step: '1' });
  const before = h('input', { type: 'datetime-local', name: 'before', step: '1' });
  const filters = () => ({
    event_types: typeSel.value, status: statusSel.value, test: testSel.value, after: toIso(after.value), before: toIso(before.value),
  });
  for (const el of [typeSel, statusSel, testSel, after, before]) {
    el.addEventListener('change', () => {
      pages.reset();
      invalidate(region);
      ctx.refresh();
    });
  }

  // Find one message: the API resolves a message id or an eventId on GET msg/{id}.
  const findErr = errorBox();
  const findInput = h('input', { type: 'search', name: 'find', autocomplete: 'off', spellcheck: 'false', placeholder: 'msg_… or your eventId' });
  const findBtn = h('button', { type: 'submit', class: 'btn' }, 'Open');
  const find = h('form', { class: 'toolbar find', role: 'search', onsubmit: (e) => {
    e.preventDefault();
    const q = findInput.value.trim();
    if (!q) return;
    busy(findBtn, async () => {
      findErr.clear();
      try {
        const m = await api.get(`${base}/${seg(q)}`, { with_content: false }, { signal: ctx.signal });
        location.hash = route('apps', appId, 'messages', m.id);
      } catch (e2) {
        if (isAbort(e2)) return;
        findErr.show(e2.status === 404 ? `No message has the id or eventId “${q}”.` : e2);
      }
    });
  } }, field('Find a message by id or eventId', findInput), findBtn);

  const retryBtn = h('button', { type: 'button', class: 'btn', onclick: (e) => busy(e.currentTarget, () => bulkRetry(base, filters(), err)) }, 'Retry failed…');
  const zone = zoneName();
  root.append(
    h('div', { class: 'section-head' }, h('h2', null, 'Messages'), retryBtn),
    find, findErr.el,
    h('div', { class: 'toolbar filters' },
      field('Event type', typeSel), field('Status', statusSel), field('Test events', testSel),
      field(`From (${zone})`, after), field(`To (${zone})`, before)),
    err.el, region, pages.el);

  loadEventTypes(ctx.signal).then((types) => {
    for (const t of types) typeSel.appendChild(h('option', { value: t.name }, t.archived ? `${t.name} (archived)` : t.name));
  }, (e) => {
    if (!isAbort(e) && ctx.alive()) err.show(e);
  });

  ctx.poll(async () => {
    const f = filters();
    try {
      const page = await api.get(base, { limit: LIMIT, iterator: pages.cursor, with_content: false, ...f }, { signal: ctx.signal });
      if (!ctx.alive() || JSON.stringify(f) !== JSON.stringify(filters())) return;
      err.clear();
      pages.update(page);
      const filtered = Object.values(f).some(Boolean);
      update(region, page.data, () => table({
        caption: `Messages of ${app.name}, newest first`,
        rows: page.data,
        empty: filtered ? 'No message matches these filters.' : `No messages yet. Send one with POST /api/v1/app/${app.uid || app.id}/msg.`,
        columns: [
          { label: 'Message', cell: (m) => messageCell(appId, m) },
          { label: 'Event type', cell: (m) => h('code', null, m.eventType) },
          { label: 'Created', cell: (m) => timeEl(m.timestamp) },
          { label: 'Status', cell: (m) => h('span', { class: 'stacked-inline' }, statusBadge(m.status), isTest(m) ? badge('test', 'warn') : null) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}

/** The failed messages the filters select, newest first: at most MAX_BULK, and whether there are more. */
async function failedMessages(base, f) {
  const found = [];
  let iterator = null;
  for (let i = 0; i < MAX_BULK_PAGES; i++) {
    const page = await api.get(base, { ...f, status: '2', limit: 50, iterator, with_content: false });
    found.push(...page.data);
    if (found.length > MAX_BULK) return { msgs: found.slice(0, MAX_BULK), more: true };
    if (page.done || !page.iterator) return { msgs: found, more: false };
    iterator = page.iterator;
  }
  return { msgs: found.slice(0, MAX_BULK), more: true };
}

/** Ask, then resend each selected failed message to every endpoint where it failed, showing progress. */
async function bulkRetry(base, f, err) {
  err.clear();
  let found;
  try {
    found = await failedMessages(base, f);
  } catch (e) {
    err.show(e);
    return;
  }
  const n = found.msgs.length;
  if (!n) {
    toast('No failed message matches these filters.');
    return;
  }
  const plural = n === 1 ? 'message' : 'messages';
  const progress = h('p', { role: 'status', class: 'muted', 'data-testid': 'bulk-progress' });
  formDialog({
    title: `Retry ${n} failed ${plural}?`,
    body: [
      h('p', null, `Each is sent again, once, to every endpoint where its delivery failed.`,
        found.more ? ` More failed messages match: only the newest ${MAX_BULK} are retried now; retry again for the rest.` : ''),
      progress,
    ],
    submitLabel: `Retry ${n} ${plural}`,
    async onSubmit() {
      let done = 0;
      let queued = 0;
      const failures = [];
      for (const m of found.msgs) {
        try {
          const dests = await api.get(`${base}/${seg(m.id)}/endpoint`, { limit: 250 });
          for (const d of dests.data.filter((x) => x.status === 2)) {
            await api.post(`${base}/${seg(m.id)}/endpoint/${seg(d.id)}/resend`, {});
            queued += 1;
          }
        } catch (e) {
          failures.push(`${m.id}: ${e.message}`);
        }
        done += 1;
        progress.textContent = `Retried ${done} of ${n}…`;
      }
      toast(`Resend queued for ${queued} ${queued === 1 ? 'delivery' : 'deliveries'} of ${n} ${plural}.`);
      // Not thrown: a second press would resend the ones that worked again.
      if (failures.length) {
        err.show(`${failures.length} of ${n} could not be retried: ${failures.slice(0, 3).join('; ')}${failures.length > 3 ? '…' : ''}`);
      }
    },
  });
}
