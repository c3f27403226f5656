// views/dashboard.js — owns the dashboard (#/): Herald's counters from GET /admin/stats and a
// per-minute bar chart of the last hour, drawn as SVG with createElementNS.

import { api, isAbort } from '../api.js';
import { h, svg, update, errorBox, pageTitle, formatBytes, formatSeconds } from '../ui.js';

const SERIES = [['accepted', 'Accepted'], ['delivered', 'Delivered'], ['failed', 'Failed']];
const SLOTS = 60;

function stat(id, label, value, note) {
  return h('div', { class: `stat stat-${id}`, 'data-testid': `stat-${id}` },
    h('dt', null, label), h('dd', null, h('span', { class: 'stat-value' }, value), note ? h('span', { class: 'stat-note' }, note) : null));
}

/** Place each minute by its start time in the 60 minutes ending with the newest one. */
function slots(perMinute) {
  const out = Array.from({ length: SLOTS }, () => null);
  if (!perMinute.length) return out;
  const last = new Date(perMinute[perMinute.length - 1].start).getTime();
  for (const m of perMinute) {
    const i = SLOTS - 1 - Math.round((last - new Date(m.start).getTime()) / 60000);
    if (i >= 0 && i < SLOTS) out[i] = m;
  }
  return out;
}

function chart(perMinute) {
  const data = slots(perMinute || []);
  const W = 600;
  const H = 160;
  const top = 14;
  const slotW = W / SLOTS;
  const barW = (slotW - 2) / SERIES.length;
  const max = Math.max(1, ...data.flatMap((m) => (m ? SERIES.map(([k]) => m[k] || 0) : [0])));
  const totals = SERIES.map(([k, label]) => `${data.reduce((n, m) => n + (m ? m[k] || 0 : 0), 0)} ${label.toLowerCase()}`);
  const fmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit' });
  const bars = [];
  data.forEach((m, i) => {
    if (!m) return;
    SERIES.forEach(([k, label], j) => {
      const v = m[k] || 0;
      if (!v) return;
      const bh = Math.max(1, ((H - top) * v) / max);
      bars.push(svg('rect', { class: `bar bar-${k}`, x: (i * slotW + 1 + j * barW).toFixed(2), y: (H - bh).toFixed(2), width: barW.toFixed(2), height: bh.toFixed(2) },
        svg('title', null, `${fmt.format(new Date(m.start))}: ${v} ${label.toLowerCase()}`)));
    });
  });
  const grid = [0.5, 1].map((f) => svg('line', { class: 'grid', x1: 0, x2: W, y1: (H - (H - top) * f).toFixed(1), y2: (H - (H - top) * f).toFixed(1) }));
  const figure = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', preserveAspectRatio: 'none',
    'aria-label': `Per-minute activity over the last hour: ${totals.join(', ')}. Busiest minute: ${max}.` },
  grid, svg('line', { class: 'axis', x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5 }), bars);
  const first = perMinute && perMinute.length ? new Date(new Date(perMinute[perMinute.length - 1].start).getTime() - (SLOTS - 1) * 60000) : null;
  return h('figure', { class: 'chart-box' },
    h('div', { class: 'chart-scale' }, h('span', null, String(max)), h('span', null, '0')),
    h('div', { class: 'chart-plot' }, figure,
      h('div', { class: 'chart-axis' }, h('span', null, first ? fmt.format(first) : '60 min ago'), h('span', null, 'now'))),
    h('figcaption', { class: 'legend' }, SERIES.map(([k, label]) => h('span', { class: `key key-${k}` }, label))));
}

function uptime(secs) {
  const m = Math.floor((secs || 0) / 60);
  if (m < 1) return 'under 1 min';
  if (m < 60) return `${m} min`;
  if (m < 1440) return `${Math.floor(m / 60)} h ${m % 60} min`;
  return `${Math.floor(m / 1440)} d ${Math.floor((m % 1440) / 60)} h`;
}

function build(s) {
  const lh = s.lastHour || {};
  return [
    h('h2', null, 'Last hour'),
    h('dl', { class: 'stats' },
      stat('accepted', 'Messages accepted', String((lh.accepted ?? 0) - (lh.test ?? 0)), lh.test ? `and ${lh.test} test ${lh.test === 1 ? 'event' : 'events'}` : 'not counting test events'),
      stat('delivered', 'Delivered', String(lh.delivered ?? 0), 'successful delivery attempts'),
      stat('failed', 'Failed attempts', String(lh.failed ?? 0), 'error status, timeout or no connection')),
    chart(s.perMinute),
    h('h2', null, 'Right now'),
    h('dl', { class: 'stats' },
      stat('queue', 'Queue depth', String(s.queueDepth ?? 0), 'deliveries due or waiting'),
      stat('overdue', 'Oldest overdue', formatSeconds(s.oldestDueAgeSeconds ?? 0)),
      stat('disabled', 'Disabled endpoints', String(s.disabledEndpoints ?? 0)),
      stat('store', 'Disk used by the store', formatBytes(s.storeBytes),
        s.storeBytesByPart
          ? `payloads ${formatBytes(s.storeBytesByPart.payloads)}, records and queue ${formatBytes(s.storeBytesByPart.trees)}`
          : undefined),
      stat('uptime', 'Uptime', uptime(s.uptimeSeconds))),
  ];
}

export async function dashboardView(root, ctx) {
  ctx.title('Dashboard');
  const err = errorBox();
  const region = h('div', { class: 'dashboard', 'data-testid': 'dashboard', 'aria-busy': 'true' }, h('p', { class: 'loading' }, 'Loading…'));
  root.append(pageTitle('Dashboard'), err.el, region);
  ctx.poll(async () => {
    try {
      const stats = await api.get('/admin/stats', null, { signal: ctx.signal });
      if (!ctx.alive()) return;
      err.clear();
      region.removeAttribute('aria-busy');
      // Rounded so a poll that changes nothing visible does not redraw.
      update(region, { ...stats, uptimeSeconds: Math.floor((stats.uptimeSeconds || 0) / 60) * 60 }, build);
    } catch (e) {
      if (isAbort(e) || !ctx.alive()) return;
      err.show(e.status === 404 ? 'Statistics are not available from this Herald (no /admin/stats).' : e);
      region.removeAttribute('aria-busy');
      if (region.querySelector('.loading')) region.replaceChildren();
    }
  });
}
