// endpoints.js — owns the portal's first page (#/): the customer's endpoints with their state and
// last delivery, and the way to add one when the token allows it.

import { seg, isAbort } from '/js/api.js';
import { h, update, table, errorBox, pageTitle } from '/js/ui.js';
import { lastStatus, stateCell } from '/js/views/endpoints.js';
import { portal } from './session.js';

const routeTo = (id) => `#/endpoints/${encodeURIComponent(id)}`;

function eventsCell(ep) {
  const types = ep.filterTypes || [];
  if (!types.length) return h('span', { class: 'muted' }, 'All events');
  return h('span', { class: 'stacked' }, types.map((t) => h('code', null, t)));
}

export async function endpointsView(root, ctx) {
  const { session } = ctx;
  const base = `/app/${seg(session.appId)}/endpoint`;
  ctx.title('Endpoints');
  const err = errorBox();
  const region = h('div', { class: 'region', 'data-testid': 'endpoints' }, h('p', { class: 'loading' }, 'Loading…'));
  const add = session.can.manage
    ? h('a', { class: 'btn btn-primary', href: '#/new', 'data-testid': 'add-endpoint' }, 'Add endpoint')
    : null;
  root.append(
    h('p', { class: 'eyebrow' }, session.app ? session.app.name : 'Webhooks'),
    pageTitle('Webhook endpoints', add),
    h('p', { class: 'lead muted' }, session.can.manage
      ? 'The URLs that receive our webhooks. Add one, choose its events, and watch its deliveries.'
      : 'The URLs that receive our webhooks, and how their deliveries are going.'),
    err.el, region,
    h('p', { class: 'portal-foot' }, 'This link works until ', new Date(session.expiresAt).toLocaleString(), '.'));

  ctx.poll(async () => {
    try {
      const page = await portal.get(base, { limit: 100 }, { signal: ctx.signal });
      const health = await Promise.all(page.data.map((ep) => portal.get(`${base}/${seg(ep.id)}/health`, null, { signal: ctx.signal })
        .catch((e) => {
          if (isAbort(e) || e.status === 401) throw e;
          return null;
        })));
      if (!ctx.alive()) return;
      err.clear();
      const rows = page.data.map((ep, i) => ({ ep, health: health[i] }));
      update(region, rows, () => table({
        caption: 'Your endpoints',
        rows,
        empty: session.can.manage ? 'No endpoints yet: add one to start receiving webhooks.' : 'No endpoints yet.',
        rowClass: (r) => (r.ep.disabled ? 'row-disabled' : null),
        columns: [
          { label: 'URL', cell: (r) => h('span', { class: 'stacked' },
            h('a', { href: routeTo(r.ep.id), class: 'url', 'data-key': `ep:${r.ep.id}` }, r.ep.url),
            r.ep.description ? h('span', { class: 'muted' }, r.ep.description) : null) },
          { label: 'Events', cell: (r) => eventsCell(r.ep) },
          { label: 'State', cell: (r) => stateCell(r.ep, r.health) },
          { label: 'Last delivery', cell: (r) => lastStatus(r.health) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
