// views/endpoints.js — owns an application's Endpoints tab: the endpoint table with each endpoint's
// health (GET .../endpoint/{ep}/health) and the "Create endpoint" dialog; also the health
// formatting the endpoint page reuses.

import { api, seg, isAbort } from '../api.js';
import { h, update, invalidate, table, errorBox, pager, timeEl, badge, route } from '../ui.js';
import { loadEventTypes, createEndpointDialog } from './endpoint-form.js';

const LIMIT = 50;
const KINDS = ['success', 'pending', 'failed', 'sending'];

/** The last attempt: "HTTP 500" / "No response" badge and when; or "No attempts yet". */
export function lastStatus(health) {
  if (!health) return h('span', { class: 'muted' }, 'Unknown');
  const a = health.lastAttempt;
  if (!a) return h('span', { class: 'muted' }, 'No attempts yet');
  const code = a.responseStatusCode ? `HTTP ${a.responseStatusCode}` : a.status === 1 || a.status === 3 ? 'Waiting' : 'No response';
  return h('span', { class: 'stacked' }, badge(code, KINDS[a.status] || 'muted'), timeEl(a.timestamp));
}

/** "67% (2 of 3)" or "—". */
export function successRate(health) {
  if (!health || health.successRate === null || health.successRate === undefined) return h('span', { class: 'muted' }, '—');
  const c = health.counts || {};
  const done = (c.success || 0) + (c.fail || 0);
  return `${Math.round(health.successRate * 100)}% (${c.success || 0} of ${done})`;
}

/** Enabled, or Disabled with Herald's reason. */
export function stateCell(ep, health) {
  const disabled = ep.disabled || (health && health.disabled);
  if (!disabled) return badge('Enabled', 'success');
  const reason = ep.disabledReason || (health && health.disabledReason);
  return h('span', { class: 'stacked' }, badge('Disabled', 'warn'), reason ? h('span', { class: 'reason' }, reason) : null);
}

async function healthOf(appId, ep, signal) {
  try {
    return await api.get(`/app/${seg(appId)}/endpoint/${seg(ep.id)}/health`, null, { signal });
  } catch (e) {
    if (isAbort(e)) throw e;
    return null;
  }
}

export async function endpointsTab(root, ctx, app) {
  const appId = ctx.params.appId;
  const err = errorBox();
  const region = h('div', { 'data-testid': 'endpoints', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const pages = pager(() => {
    invalidate(region);
    ctx.refresh();
  });
  let eventTypes = [];
  const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: async () => {
    try {
      eventTypes = await loadEventTypes(ctx.signal);
    } catch (e) {
      if (!isAbort(e)) err.show(e);
    }
    createEndpointDialog(appId, eventTypes, () => ctx.refresh());
  } }, 'Create endpoint');
  root.append(h('div', { class: 'section-head' }, h('h2', null, 'Endpoints'), create), err.el, region, pages.el);

  ctx.poll(async () => {
    try {
      const page = await api.get(`/app/${seg(appId)}/endpoint`, { limit: LIMIT, iterator: pages.cursor }, { signal: ctx.signal });
      const healths = await Promise.all(page.data.map((ep) => healthOf(appId, ep, ctx.signal)));
      if (!ctx.alive()) return;
      err.clear();
      pages.update(page);
      const rows = page.data.map((ep, i) => ({ ep, health: healths[i] }));
      update(region, rows, () => table({
        caption: `Endpoints of ${app.name}`,
        rows,
        empty: 'No endpoints yet. Create one to start delivering this application’s messages.',
        rowClass: (r) => (r.ep.disabled ? 'row-disabled' : null),
        columns: [
          { label: 'Endpoint', cell: ({ ep }) => h('span', { class: 'stacked' },
            h('a', { href: route('apps', appId, 'endpoints', ep.id), class: 'url', 'data-key': `ep:${ep.id}` }, ep.url),
            ep.description ? h('span', { class: 'muted' }, ep.description) : null) },
          { label: 'Events', cell: ({ ep }) => (ep.filterTypes ? ep.filterTypes.join(', ') : h('span', { class: 'muted' }, 'All')) },
          { label: 'Last status', cell: ({ health }) => lastStatus(health) },
          { label: 'Success rate', cell: ({ health }) => successRate(health) },
          { label: 'Failing since', cell: ({ health }) => timeEl(health && health.failingSince) },
          { label: 'State', cell: ({ ep, health }) => stateCell(ep, health) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
