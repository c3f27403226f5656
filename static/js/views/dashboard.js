// views/dashboard.js — owns the dashboard (#/): Herald's counters from GET /admin/stats, a
// per-minute bar chart of the last hour (SVG with createElementNS: value ticks, time ticks, the
// hovered minute's figures, a square-root scale when one burst would flatten the rest), the
// endpoints failing now (each linking to its page) and per-application counts.

import { api, isAbort } from '../api.js';
import { h, svg, update, errorBox, pageTitle, formatBytes, formatSeconds, route, table, timeEl, zoneName } from '../ui.js';

const SERIES = [['accepted', 'Accepted'], ['delivered', 'Delivered'], ['failed', 'Failed']];
/** The chart spans the minutes Herald has counted (it keeps an hour), at least a quarter hour, so
 * right after a start an empty hour does not squeeze the traffic into one corner. */
const MAX_SLOTS = 60;
const MIN_SLOTS = 15;
/** Time ticks at these fractions of the span (app.css places them: .at-x0 … .at-x100). */
const X_TICKS = [0, 0.25, 0.5, 0.75, 1];
/** A burst this many times the typical busy minute switches the chart to a square-root scale. */
const SKEW = 8;

function stat(id, label, value, note) {
  return h('div', { class: `stat stat-${id}`, 'data-testid': `stat-${id}` },
    h('dt', null, label), h('dd', null, h('span', { class: 'stat-value' }, value), note ? h('span', { class: 'stat-note' }, note) : null));
}

/** Place each minute by its start time in the `n` minutes ending with the newest one. */
function slots(perMinute, n) {
  const out = Array.from({ length: n }, () => null);
  if (!perMinute.length) return out;
  const last = new Date(perMinute[perMinute.length - 1].start).getTime();
  for (const m of perMinute) {
    const i = n - 1 - Math.round((last - new Date(m.start).getTime()) / 60000);
    if (i >= 0 && i < n) out[i] = m;
  }
  return out;
}

/** The smallest of 4, 8, 10, 20, 40, 80, 100, … at or above n: its halves or quarters are whole. */
function niceCeil(n) {
  if (n <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const f of [1, 2, 4, 8, 10]) if (f * p >= n) return f * p;
  return 10 * p;
}

/** Linear, or square root when one minute towers over the typical busy one. */
function scaleFor(values) {
  const busy = values.filter((v) => v > 0).sort((a, b) => a - b);
  const max = busy.length ? busy[busy.length - 1] : 0;
  const median = busy.length ? busy[Math.floor(busy.length / 2)] : 0;
  const top = niceCeil(max);
  const sqrt = busy.length >= 3 && max > SKEW * median;
  const f = sqrt ? (v) => Math.sqrt(v / top) : (v) => v / top;
  // Ticks labelled with the value drawn at their height: quarters when those are whole numbers
  // (or the scale is a square root), else halves.
  const at = sqrt || top % 4 === 0 ? [0, 0.25, 0.5, 0.75, 1] : [0, 0.5, 1];
  const ticks = at.map((y) => ({ y, value: sqrt ? top * y * y : top * y }));
  return { top, sqrt, f, ticks };
}

const fmtTick = (v) => (v >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(1));

function chart(perMinute) {
  const SLOTS = Math.min(MAX_SLOTS, Math.max(MIN_SLOTS, (perMinute || []).length));
  const data = slots(perMinute || [], SLOTS);
  const values = data.flatMap((m) => (m ? SERIES.map(([k]) => m[k] || 0) : []));
  const totals = SERIES.map(([k, label]) => `${data.reduce((n, m) => n + (m ? m[k] || 0 : 0), 0)} ${label.toLowerCase()}`);
  if (!values.some((v) => v > 0)) {
    return h('p', { class: 'empty chart-empty', 'data-testid': 'chart-empty' }, 'No messages or delivery attempts in the last hour.');
  }
  const W = 600;
  const H = 160;
  const slotW = W / SLOTS;
  const barW = (slotW - 2) / SERIES.length;
  const sc = scaleFor(values);
  // 24-hour, like every other time on the screens; the zone is named under the chart.
  const fmt = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
  const lastStart = new Date(perMinute[perMinute.length - 1].start).getTime();
  const startOf = (i) => new Date(lastStart - (SLOTS - 1 - i) * 60000);
  const describe = (i) => {
    const m = data[i];
    const figs = SERIES.map(([k, label]) => `${m ? m[k] || 0 : 0} ${label.toLowerCase()}`).join(', ');
    return `${fmt.format(startOf(i))}: ${figs}`;
  };
  const readout = h('p', { class: 'chart-readout', 'data-testid': 'chart-readout' }, 'Point at a minute to see its figures.');
  const bars = [];
  const hits = [];
  data.forEach((m, i) => {
    hits.push(svg('rect', { class: 'hit', x: (i * slotW).toFixed(2), y: 0, width: slotW.toFixed(2), height: H, 'data-minute': i },
      svg('title', null, describe(i))));
    if (!m) return;
    SERIES.forEach(([k], j) => {
      const v = m[k] || 0;
      if (!v) return;
      const bh = Math.max(1.5, H * sc.f(v));
      bars.push(svg('rect', { class: `bar bar-${k}`, x: (i * slotW + 1 + j * barW).toFixed(2), y: (H - bh).toFixed(2), width: barW.toFixed(2), height: bh.toFixed(2) }));
    });
  });
  const grid = sc.ticks.filter((t) => t.y > 0).map((t) => svg('line', { class: 'grid', x1: 0, x2: W, y1: (H - H * t.y).toFixed(1), y2: (H - H * t.y).toFixed(1) }));
  const xticks = X_TICKS.map((f) => svg('line', { class: 'tick', x1: (f * W).toFixed(1), x2: (f * W).toFixed(1), y1: H - 5, y2: H }));
  const figure = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart', role: 'img', preserveAspectRatio: 'none',
    'aria-label': `Per-minute activity over the last ${SLOTS} minutes: ${totals.join(', ')}.${sc.sqrt ? ' Square-root scale.' : ''}` },
  // The hover targets lie under the bars (which let the pointer through, see app.css).
  hits, grid, svg('line', { class: 'axis', x1: 0, x2: W, y1: H - 0.5, y2: H - 0.5 }), xticks, bars);
  figure.addEventListener('mouseover', (e) => {
    const i = e.target && e.target.getAttribute ? e.target.getAttribute('data-minute') : null;
    if (i !== null) readout.textContent = describe(Number(i));
  });
  figure.addEventListener('mouseleave', () => {
    readout.textContent = 'Point at a minute to see its figures.';
  });
  // Value ticks, placed at their height (percent of the plot) through classes: no inline styles.
  const scale = h('div', { class: 'chart-scale', 'aria-hidden': 'true' },
    sc.ticks.map((t) => h('span', { class: `at-y${Math.round(t.y * 100)}` }, fmtTick(t.value))));
  const axis = h('div', { class: 'chart-axis', 'aria-hidden': 'true' },
    X_TICKS.map((f) => h('span', { class: `at-x${f * 100}` }, f === 1 ? 'now' : fmt.format(new Date(lastStart + 60000 - (1 - f) * SLOTS * 60000)))));
  return h('figure', { class: 'chart-box', 'data-testid': 'chart' },
    scale,
    h('div', { class: 'chart-plot' }, figure, axis),
    readout,
    h('figcaption', { class: 'legend' }, SERIES.map(([k, label]) => h('span', { class: `key key-${k}` }, label)),
      h('span', { class: 'chart-scale-name' }, `${sc.sqrt ? 'Square-root scale: one busy minute does not flatten the rest.' : `Scale 0 to ${sc.top} per minute.`} Times in ${zoneName()}.`)));
}

function uptime(secs) {
  const m = Math.floor((secs || 0) / 60);
  if (m < 1) return 'under 1 min';
  if (m < 60) return `${m} min`;
  if (m < 1440) return `${Math.floor(m / 60)} h ${m % 60} min`;
  return `${Math.floor(m / 1440)} d ${Math.floor((m % 1440) / 60)} h`;
}

function failingList(failing) {
  if (!failing || !failing.length) return h('p', { class: 'ok-note' }, 'No endpoint is failing: every newest attempt succeeded or is on its way.');
  return h('ul', { class: 'failing-list' }, failing.map((f) => h('li', null,
    h('a', { href: route('apps', f.appId, 'endpoints', f.endpointId), class: 'url', 'data-key': `fail:${f.endpointId}` }, f.url),
    h('span', { class: 'muted' }, f.appName, ' · ', f.lastStatusCode ? `HTTP ${f.lastStatusCode}` : 'no response',
      f.disabled ? ' · disabled' : ''),
    h('span', { class: 'muted' }, f.failingSince ? ['failing since ', timeEl(f.failingSince)] : ['last try ', timeEl(f.lastAttemptAt)]))));
}

function appsTable(apps, truncated) {
  return [
    table({
      caption: 'Applications and their endpoints',
      rows: apps || [],
      empty: 'No applications yet.',
      columns: [
        { label: 'Application', cell: (a) => h('a', { href: route('apps', a.id), 'data-key': `app:${a.id}` }, a.name) },
        { label: 'Endpoints', class: 'num', cell: (a) => String(a.endpoints) },
        { label: 'Failing', class: 'num', cell: (a) => (a.failing ? h('span', { class: 'badge badge-failed' }, String(a.failing)) : '0') },
        { label: 'Disabled', class: 'num', cell: (a) => String(a.disabled) },
        { label: 'Waiting', class: 'num', cell: (a) => (a.queuedCapped ? `${a.queued}+` : String(a.queued)) },
      ],
    }),
    truncated ? h('p', { class: 'hint' }, 'Only the first 100 applications (and 1,000 endpoints) are counted here.') : null,
  ];
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
    h('div', { class: 'dash-grid' },
      h('section', { 'data-testid': 'failing-now' }, h('h2', null, 'Failing now'), failingList(s.failingEndpoints)),
      h('section', { 'data-testid': 'app-counts' }, h('h2', null, 'Applications'), appsTable(s.applications, s.truncated))),
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
      // Rounded so a poll that changes nothing visible does not redraw (and drop the hovered minute).
      update(region, { ...stats, uptimeSeconds: Math.floor((stats.uptimeSeconds || 0) / 60) * 60 }, build);
    } catch (e) {
      if (isAbort(e) || !ctx.alive()) return;
      err.show(e.status === 404 ? 'Statistics are not available from this Herald (no /admin/stats).' : e);
      region.removeAttribute('aria-busy');
      if (region.querySelector('.loading')) region.replaceChildren();
    }
  });
}
