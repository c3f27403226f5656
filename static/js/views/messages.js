// views/messages.js — owns an application's Messages tab: newest first, filtered by event type and
// delivery status, paged, each row linking to the message's page.

import { api, seg, isAbort } from '../api.js';
import { h, update, invalidate, table, field, errorBox, pager, timeEl, statusBadge, route, STATUS_NAMES } from '../ui.js';
import { loadEventTypes } from './endpoint-form.js';

const LIMIT = 20;

export async function messagesTab(root, ctx, app) {
  const appId = ctx.params.appId;
  const err = errorBox();
  const region = h('div', { 'data-testid': 'messages', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const pages = pager(() => {
    invalidate(region);
    ctx.refresh();
  });
  const typeSel = h('select', { name: 'event_types' }, h('option', { value: '' }, 'All event types'));
  const statusSel = h('select', { name: 'status' }, h('option', { value: '' }, 'Any status'),
    STATUS_NAMES.map((name, i) => h('option', { value: String(i) }, name)));
  for (const sel of [typeSel, statusSel]) {
    sel.addEventListener('change', () => {
      pages.reset();
      invalidate(region);
      ctx.refresh();
    });
  }
  root.append(
    h('div', { class: 'section-head' }, h('h2', null, 'Messages')),
    h('div', { class: 'toolbar filters' }, field('Event type', typeSel), field('Status', statusSel)),
    err.el, region, pages.el);

  loadEventTypes(ctx.signal).then((types) => {
    for (const t of types) typeSel.appendChild(h('option', { value: t.name }, t.archived ? `${t.name} (archived)` : t.name));
  }, (e) => {
    if (!isAbort(e) && ctx.alive()) err.show(e);
  });

  ctx.poll(async () => {
    const filters = { event_types: typeSel.value, status: statusSel.value };
    try {
      const page = await api.get(`/app/${seg(appId)}/msg`, { limit: LIMIT, iterator: pages.cursor, with_content: false, ...filters }, { signal: ctx.signal });
      if (!ctx.alive() || filters.event_types !== typeSel.value || filters.status !== statusSel.value) return;
      err.clear();
      pages.update(page);
      const filtered = filters.event_types || filters.status;
      update(region, page.data, () => table({
        caption: `Messages of ${app.name}, newest first`,
        rows: page.data,
        empty: filtered ? 'No message matches these filters.' : `No messages yet. Send one with POST /api/v1/app/${app.uid || app.id}/msg.`,
        columns: [
          { label: 'Message', cell: (m) => h('a', { href: route('apps', appId, 'messages', m.id), class: 'id', 'data-key': `msg:${m.id}` }, m.id) },
          { label: 'Event type', cell: (m) => h('code', null, m.eventType) },
          { label: 'Created', cell: (m) => timeEl(m.timestamp) },
          { label: 'Status', cell: (m) => statusBadge(m.status) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
