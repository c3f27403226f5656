// ui.js — owns the small DOM toolkit every view uses: the h() builder (text only, never HTML),
// regions refreshed in place, tables, form fields, dialogs, toasts, pagers, badges and times.

const PROPS = new Set(['value', 'checked', 'selected', 'indeterminate']);

function append(el, children) {
  for (const c of children) {
    if (c === null || c === undefined || c === false || c === '') continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

function applyAttrs(el, attrs, props) {
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'style') throw new Error('inline styles are blocked by the CSP: use a class');
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2).toLowerCase(), v);
    else if (k === 'class') el.setAttribute('class', Array.isArray(v) ? v.filter(Boolean).join(' ') : v);
    else if (PROPS.has(k)) props.push([k, v]);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
}

/** Build an element: h('a', {href, class}, 'text', child, [more]). Strings become text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  const props = [];
  applyAttrs(el, attrs, props);
  append(el, children);
  for (const [k, v] of props) el[k] = v; // after children, so a <select> can take its value
  return el;
}

/** The same for SVG elements. */
export function svg(tag, attrs, ...children) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null) el.setAttribute(k, String(v));
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

/** A `#/...` link target from path segments, each percent-encoded. */
export const route = (...segs) => `#/${segs.map((s) => encodeURIComponent(s)).join('/')}`;

/**
 * Replace a region's content, keeping what the user was doing in it: the focused element and open
 * <details> (matched by their data-key) and the horizontal scroll of its table.
 */
export function swap(region, ...children) {
  const active = document.activeElement;
  const focusKey = active && active !== region && region.contains(active) ? active.getAttribute('data-key') : null;
  const open = new Set([...region.querySelectorAll('details[open][data-key]')].map((d) => d.getAttribute('data-key')));
  const wrap = region.querySelector('.table-wrap');
  const scroll = wrap ? wrap.scrollLeft : 0;
  region.replaceChildren();
  append(region, children);
  for (const d of region.querySelectorAll('details[data-key]')) if (open.has(d.getAttribute('data-key'))) d.open = true;
  const newWrap = region.querySelector('.table-wrap');
  if (newWrap && scroll) newWrap.scrollLeft = scroll;
  if (focusKey) {
    const again = [...region.querySelectorAll('[data-key]')].find((e) => e.getAttribute('data-key') === focusKey);
    if (again) again.focus({ preventScroll: true });
  }
}

/** swap() only when the data differs from what the region shows now (polls mostly change nothing). */
export function update(region, data, build) {
  const sig = JSON.stringify(data);
  if (region.dataset.sig === sig) return;
  region.dataset.sig = sig;
  swap(region, build(data));
}

/** Forget what a region shows, so the next update() redraws it. */
export const invalidate = (region) => delete region.dataset.sig;

/** A table; columns are {label, cell(row) → node|text, class?}. Rows collapse to cards on phones. */
export function table({ columns, rows, caption, empty = 'Nothing here yet.', rowClass }) {
  if (!rows.length) return h('p', { class: 'empty' }, empty);
  return h('div', { class: 'table-wrap' },
    h('table', { class: 'table' },
      caption ? h('caption', { class: 'sr-only' }, caption) : null,
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col', class: c.class }, c.label)))),
      h('tbody', null, rows.map((r) => h('tr', { class: rowClass && rowClass(r) },
        columns.map((c) => h('td', { class: c.class, 'data-label': c.label }, c.cell(r))))))));
}

let seq = 0;
/** A fresh element id. */
export const newId = (prefix = 'f') => `${prefix}-${++seq}`;

/** A labelled form field: <label for> + the input (+ a hint it is described by). */
export function field(label, input, hint) {
  if (!input.id) input.id = newId();
  let hintEl = null;
  if (hint) {
    hintEl = h('p', { class: 'hint', id: `${input.id}-hint` }, hint);
    input.setAttribute('aria-describedby', hintEl.id);
  }
  return h('div', { class: 'field' }, h('label', { for: input.id }, label), input, hintEl);
}

/** A checkbox with its label after it. */
export function checkbox(label, attrs = {}) {
  const input = h('input', { type: 'checkbox', id: newId('cb'), ...attrs });
  return h('div', { class: 'check' }, input, h('label', { for: input.id }, label));
}

/**
 * Run `fn` while `button` shows as busy (aria-disabled, so it keeps focus: a disabled button
 * would drop it); a second press meanwhile does nothing.
 */
export async function busy(button, fn) {
  if (button.getAttribute('aria-disabled') === 'true') return undefined;
  button.setAttribute('aria-disabled', 'true');
  try {
    return await fn();
  } finally {
    button.removeAttribute('aria-disabled');
  }
}

/** A role=alert box, hidden while empty; show(err) takes an Error or a text. */
export function errorBox() {
  const el = h('div', { class: 'alert', role: 'alert', hidden: true });
  return {
    el,
    show(err) {
      el.textContent = err && err.message ? err.message : String(err);
      el.hidden = false;
    },
    clear() {
      el.textContent = '';
      el.hidden = true;
    },
  };
}

/** A short message in the page's polite live region. */
export function toast(message, kind = 'ok') {
  const box = document.getElementById('toasts');
  if (!box) return;
  const t = h('div', { class: `toast toast-${kind}` }, message);
  box.appendChild(t);
  // Keep the stack short so it never hides much of the page.
  while (box.children.length > 3) box.firstChild.remove();
  setTimeout(() => t.remove(), 5000);
}

/**
 * A modal <dialog> holding a form. `onSubmit(form)` runs on submit; it resolving closes the dialog,
 * it throwing shows the error inside. Escape and Cancel close it; focus returns to the opener.
 */
export function formDialog({ title, body = [], submitLabel = 'Save', danger = false, onSubmit, wide = false }) {
  const opener = document.activeElement;
  const openerKey = opener && opener.getAttribute ? opener.getAttribute('data-key') : null;
  const titleId = newId('dlg');
  const err = errorBox();
  const submit = h('button', { type: 'submit', class: danger ? 'btn btn-danger' : 'btn btn-primary' }, submitLabel);
  const cancel = h('button', { type: 'button', class: 'btn', onclick: () => dialog.close() }, 'Cancel');
  const form = h('form', { class: 'dialog-form', novalidate: true },
    h('h2', { id: titleId }, title), body, err.el, h('div', { class: 'actions' }, cancel, submit));
  const dialog = h('dialog', { class: wide ? 'dialog dialog-wide' : 'dialog', 'aria-labelledby': titleId }, form);
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(submit, async () => {
      err.clear();
      try {
        await onSubmit(form);
        dialog.close();
      } catch (e2) {
        err.show(e2);
        err.el.scrollIntoView({ block: 'nearest' });
      }
    });
  });
  dialog.addEventListener('close', () => {
    dialog.remove();
    let back = opener && opener.isConnected ? opener : null;
    if (!back && openerKey) back = [...document.querySelectorAll('[data-key]')].find((x) => x.getAttribute('data-key') === openerKey);
    if (back && back.focus) back.focus();
  });
  document.body.appendChild(dialog);
  dialog.showModal();
  return dialog;
}

/** Ask before doing something: a dialog with Cancel and Confirm; `action` runs on Confirm. */
export function confirmAction({ title, message, action, danger = true }) {
  return formDialog({ title, body: [h('p', null, message)], submitLabel: 'Confirm', danger, onSubmit: action });
}

/** Previous/Next over a list's `iterator`, `prevIterator` and `done`. */
export function pager(onChange) {
  const st = { cursor: null, backward: false, prevIt: null, nextIt: null };
  const go = (it, backward) => {
    st.cursor = it || null;
    st.backward = Boolean(it) && backward;
    able(b.Previous, false); // until the new page is in
    able(b.Next, false);
    onChange();
  };
  // aria-disabled rather than disabled, so a pressed button keeps focus when it ends up disabled.
  const button = (label, onPress) => h('button', { type: 'button', class: 'btn', 'aria-disabled': 'true', onclick: () => {
    if (b[label].getAttribute('aria-disabled') !== 'true') onPress();
  } }, label);
  const b = {};
  b.Previous = button('Previous', () => go(st.prevIt, true));
  b.Next = button('Next', () => go(st.nextIt, false));
  const able = (el, yes) => el.setAttribute('aria-disabled', yes ? 'false' : 'true');
  return {
    el: h('div', { class: 'pager', role: 'group', 'aria-label': 'Pages' }, b.Previous, b.Next),
    get cursor() {
      return st.cursor;
    },
    reset() {
      st.cursor = null;
      st.backward = false;
    },
    update(page) {
      let hasPrev;
      let hasNext;
      if (st.backward) {
        hasPrev = !page.done;
        hasNext = true;
        if (page.done) {
          // Back on the first page: poll it as the first page from now on, so new items show.
          st.cursor = null;
          st.backward = false;
        }
      } else {
        hasPrev = st.cursor !== null;
        hasNext = !page.done;
      }
      st.prevIt = hasPrev ? page.prevIterator : null;
      st.nextIt = page.iterator;
      able(b.Previous, hasPrev);
      able(b.Next, hasNext && Boolean(page.iterator));
    },
  };
}

const STATUS = [['Success', 'success'], ['Pending', 'pending'], ['Failed', 'failed'], ['Sending', 'sending'], ['Canceled', 'muted']];
export const STATUS_NAMES = STATUS.map((s) => s[0]);

/** A coloured badge; `kind` is success, pending, failed, sending, muted or warn. */
export const badge = (text, kind = 'muted') => h('span', { class: `badge badge-${kind}` }, text);

/** The badge of a delivery status 0..4 (Svix's numbers; 4: canceled by an expunge); null or absent: the message went to no endpoint. */
export function statusBadge(status) {
  if (status === null || status === undefined) return badge('No endpoints');
  const [text, kind] = STATUS[status] || ['Unknown', 'muted'];
  return badge(text, kind);
}

/** "3 min ago", "in 5 s": a rough distance from now. */
export function relative(iso) {
  const secs = Math.round((new Date(iso).getTime() - Date.now()) / 1000);
  const a = Math.abs(secs);
  if (a < 3) return 'just now';
  let text;
  if (a < 60) text = `${a} s`;
  else if (a < 3600) text = `${Math.floor(a / 60)} min`;
  else if (a < 86400) text = `${Math.floor(a / 3600)} h`;
  else text = `${Math.floor(a / 86400)} d`;
  return secs < 0 ? `${text} ago` : `in ${text}`;
}

// 24-hour clock with the zone's offset ("14:03:27 UTC+1"): the browser's zone, shown, so a time
// can be compared with logs; the exact UTC instant is on hover.
const sameDay = new Intl.DateTimeFormat(undefined, { hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23', timeZoneName: 'shortOffset' });
const otherDay = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', hourCycle: 'h23', timeZoneName: 'shortOffset' });

/** A time as shown everywhere: 24-hour, with the zone ("GMT+1" written "UTC+1"); the date too if not today. */
export function formatTime(iso) {
  const d = new Date(iso);
  const fmt = d.toDateString() === new Date().toDateString() ? sameDay : otherDay;
  return fmt.format(d).replace(/\bGMT\b/, 'UTC').replace(/UTC\+0\b/, 'UTC');
}

/** The browser's zone as times show it: "UTC+1", "UTC-4:30", "UTC". */
export function zoneName() {
  const part = sameDay.formatToParts(new Date()).find((x) => x.type === 'timeZoneName');
  return (part ? part.value : 'UTC').replace(/\bGMT\b/, 'UTC').replace(/UTC\+0\b/, 'UTC');
}

/** The exact UTC instant, for a title: "2026-12-02T13:03:27.512Z (UTC)". */
export const utcTitle = (iso) => `${new Date(iso).toISOString()} (UTC)`;

/** A <time>: local 24-hour time with its zone, UTC on hover, and a relative hint that main.js keeps fresh; '—' for null. */
export function timeEl(iso) {
  if (!iso) return h('span', { class: 'muted' }, '—');
  return h('time', { datetime: iso, title: utcTitle(iso) }, formatTime(iso), ' ',
    h('span', { class: 'rel', 'data-t': iso }, relative(iso)));
}

/** Refresh every relative hint on the page. */
export function refreshTimes() {
  for (const el of document.querySelectorAll('.rel[data-t]')) {
    const text = relative(el.getAttribute('data-t'));
    if (el.textContent !== text) el.textContent = text;
  }
}

export function formatBytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i += 1;
  }
  return `${i ? v.toFixed(1) : v} ${units[i]}`;
}

export function formatSeconds(s) {
  if (s === null || s === undefined) return '—';
  if (s < 60) return `${Math.round(s * 10) / 10} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
  return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
}

/** The page heading, focusable so navigation can move focus to it. */
export const pageTitle = (text, ...extra) => h('div', { class: 'page-head' }, h('h1', { tabindex: '-1' }, text), extra);

/** Breadcrumbs: [[text, href], ..., [text]]. */
export function crumbs(items) {
  return h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumb' }, h('ol', null, items.map(([text, href], i) =>
    h('li', null, href ? h('a', { href }, text) : h('span', { 'aria-current': i === items.length - 1 ? 'page' : null }, text)))));
}

/** Copy text; true when it worked. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
