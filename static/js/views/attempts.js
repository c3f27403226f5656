// views/attempts.js — owns the delivery-attempts table shown on the endpoint and message pages
// (time, status, HTTP code or why none came, duration, trigger, the response or the reason) and
// the filters above it (status, HTTP class).

import { h, table, timeEl, statusBadge, badge, route, field, invalidate } from '../ui.js';

/** What `errorKind` (Herald's field on an attempt with no HTTP response) means, in words. */
export const NO_RESPONSE = {
  connection_refused: 'Connection refused',
  dns: 'DNS lookup failed',
  tls: 'TLS error',
  timeout: 'Timed out',
  blocked: 'Blocked by the address policy',
  invalid_url: 'Invalid URL',
  connection_reset: 'Connection closed',
  network: 'Network error',
};

/** The label of an attempt that got no HTTP response (older servers send no errorKind). */
export const noResponseLabel = (a) => NO_RESPONSE[a.errorKind] || NO_RESPONSE.network;

function httpCell(a) {
  if (!a.responseStatusCode) return badge(noResponseLabel(a), 'failed');
  const code = String(a.responseStatusCode);
  // Herald never follows redirects (a target could bounce a delivery anywhere).
  if (a.responseStatusCode >= 300 && a.responseStatusCode < 400) {
    return h('span', { class: 'stacked' }, code, h('span', { class: 'muted' }, 'redirect not followed'));
  }
  return code;
}

function responseCell(a) {
  if (!a.responseStatusCode) {
    // No response: the text is why, short and worth reading at once.
    return h('p', { class: 'reason', 'data-testid': 'no-response-reason' }, a.response || 'no reason recorded');
  }
  if (!a.response) return h('span', { class: 'muted' }, 'empty');
  return h('details', { class: 'response', 'data-key': `resp:${a.id}` },
    h('summary', { 'data-key': `sum:${a.id}` }, `Response body (${a.response.length} chars)`),
    h('pre', { class: 'pre' }, a.response));
}

function messageCell(appId, a) {
  const m = a.msg;
  return h('span', { class: 'stacked' },
    h('a', { href: route('apps', appId, 'messages', a.msgId), class: 'id', 'data-key': `m:${a.id}` }, a.msgId),
    m ? h('span', { class: 'msg-meta' }, h('code', null, m.eventType),
      m.eventId ? h('span', { class: 'muted' }, ' · ', h('code', { title: 'eventId' }, m.eventId)) : null) : null);
}

/** `link`: 'message' links each attempt to its message (with its event type and eventId when the list came `with_msg`), 'endpoint' to its endpoint. */
export function attemptsTable(attempts, { appId, link, filtered = false }) {
  const target = link === 'message'
    ? { label: 'Message', cell: (a) => messageCell(appId, a) }
    : { label: 'Endpoint', cell: (a) => h('a', { href: route('apps', appId, 'endpoints', a.endpointId), class: 'url', 'data-key': `e:${a.id}` }, a.url) };
  return table({
    caption: 'Delivery attempts, newest first',
    rows: attempts,
    empty: filtered ? 'No attempt matches these filters.' : 'No delivery attempts yet.',
    columns: [
      { label: 'Time', cell: (a) => timeEl(a.timestamp) },
      target,
      { label: 'Status', cell: (a) => statusBadge(a.status) },
      { label: 'HTTP', cell: httpCell },
      { label: 'Duration', cell: (a) => `${a.responseDurationMs} ms` },
      { label: 'Trigger', cell: (a) => (a.triggerType === 1 ? 'Manual' : 'Scheduled') },
      { label: 'Response', class: 'response-cell', cell: responseCell },
    ],
  });
}

/**
 * Filters for an attempts list: status (Svix `status`) and HTTP class (`status_code_class`, 0 for
 * no response). A change redraws `region` at the next poll, which `ctx.refresh()` runs now.
 * `query()` is what to add to the list request; `withMsg` asks for each attempt's message too.
 */
export function attemptFilters(region, ctx, { withMsg = false } = {}) {
  const status = h('select', { name: 'attempt_status', 'data-testid': 'attempt-status' },
    h('option', { value: '' }, 'Any result'),
    h('option', { value: '0' }, 'Succeeded'),
    // No "Pending": an attempt is recorded once its try ended, so none is ever pending.
    h('option', { value: '2' }, 'Failed'));
  const cls = h('select', { name: 'status_code_class', 'data-testid': 'attempt-class' },
    h('option', { value: '' }, 'Any HTTP status'),
    h('option', { value: '200' }, '2xx'),
    h('option', { value: '300' }, '3xx'),
    h('option', { value: '400' }, '4xx'),
    h('option', { value: '500' }, '5xx'),
    h('option', { value: '0' }, 'No response'));
  for (const sel of [status, cls]) {
    sel.addEventListener('change', () => {
      invalidate(region);
      ctx.refresh();
    });
  }
  return {
    el: h('div', { class: 'toolbar filters' }, field('Attempt result', status), field('HTTP class', cls)),
    query: () => ({ status: status.value, status_code_class: cls.value, with_msg: withMsg || undefined }),
    get active() {
      return Boolean(status.value || cls.value);
    },
  };
}
