// views/attempts.js — owns the delivery-attempts table shown on the endpoint and message pages:
// time, status, HTTP code, duration, trigger, and the response body in an expandable <pre>.

import { h, table, timeEl, statusBadge, route } from '../ui.js';

function responseCell(a) {
  if (!a.response) return h('span', { class: 'muted' }, 'empty');
  return h('details', { class: 'response', 'data-key': `resp:${a.id}` },
    h('summary', { 'data-key': `sum:${a.id}` }, `Response body (${a.response.length} chars)`),
    h('pre', { class: 'pre' }, a.response));
}

/** `link`: 'message' links each attempt to its message, 'endpoint' to its endpoint. */
export function attemptsTable(attempts, { appId, link }) {
  const target = link === 'message'
    ? { label: 'Message', cell: (a) => h('a', { href: route('apps', appId, 'messages', a.msgId), class: 'id', 'data-key': `m:${a.id}` }, a.msgId) }
    : { label: 'Endpoint', cell: (a) => h('a', { href: route('apps', appId, 'endpoints', a.endpointId), class: 'url', 'data-key': `e:${a.id}` }, a.url) };
  return table({
    caption: 'Delivery attempts, newest first',
    rows: attempts,
    empty: 'No delivery attempts yet.',
    columns: [
      { label: 'Time', cell: (a) => timeEl(a.timestamp) },
      target,
      { label: 'Status', cell: (a) => statusBadge(a.status) },
      { label: 'HTTP', cell: (a) => (a.responseStatusCode ? String(a.responseStatusCode) : h('span', { class: 'muted' }, 'none')) },
      { label: 'Duration', cell: (a) => `${a.responseDurationMs} ms` },
      { label: 'Trigger', cell: (a) => (a.triggerType === 1 ? 'Manual' : 'Scheduled') },
      { label: 'Response', class: 'response-cell', cell: responseCell },
    ],
  });
}
