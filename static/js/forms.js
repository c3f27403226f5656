// forms.js — owns errors at the field: checks the browser can make (URL shape, names, header
// names, lengths, JSON), showing each error under its field, all at once, and mapping the
// server's 422 `detail: [{loc, msg}]` onto the same fields. The server stays the authority.

import { h, busy, newId, errorBox, confirmAction, toast, copyText } from './ui.js';

/** Letters, digits, - _ . (uids, event-type names): Herald's rule, in words for people. */
export const TOKEN_RE = /^[A-Za-z0-9\-_.]+$/;
export const TOKEN_WORDS = 'Use letters, digits, - _ . only (no spaces).';
const HEADER_RE = /^[A-Za-z0-9!#$%&'*+\-.^_`|~]+$/;

/** A thrown error that says the fields carry the details (the dialog's box shows this line). */
export class FieldErrors extends Error {
  constructor(count) {
    super(count === 1 ? 'Check the field marked below.' : `Check the ${count} fields marked below.`);
    this.name = 'FieldErrors';
  }
}

/**
 * Per-field error slots. `add(key, input)` registers an input (its error goes after it, or after
 * `after`); `show({key: msg})` marks them all; `clear()` unmarks. `fromServer(err, toKey)` maps a
 * 422's detail onto fields: `toKey(locWithoutBody)` names the field or returns null (then the
 * message, in words, is returned for the dialog's box).
 */
export function fieldErrors() {
  const slots = new Map();
  const api = {
    add(key, input, after = input) {
      slots.set(key, { input, after, el: null });
      return input;
    },
    has: (key) => slots.has(key),
    clear() {
      for (const s of slots.values()) {
        if (s.el) s.el.remove();
        s.el = null;
        s.input.removeAttribute('aria-invalid');
        const ids = (s.input.getAttribute('aria-describedby') || '').split(' ').filter((x) => x && !x.startsWith('fe-'));
        if (ids.length) s.input.setAttribute('aria-describedby', ids.join(' '));
        else s.input.removeAttribute('aria-describedby');
      }
    },
    /** Show `errors` ({key: message}); returns how many were shown. Focuses the first. */
    show(errors) {
      let n = 0;
      let first = null;
      for (const [key, msg] of Object.entries(errors)) {
        const s = slots.get(key);
        if (!s || !msg) continue;
        if (s.el) s.el.remove();
        s.el = h('p', { class: 'field-error', id: newId('fe'), 'data-field': key }, msg);
        s.after.after(s.el);
        s.input.setAttribute('aria-invalid', 'true');
        const ids = (s.input.getAttribute('aria-describedby') || '').split(' ').filter(Boolean);
        s.input.setAttribute('aria-describedby', [...ids, s.el.id].join(' '));
        n += 1;
        if (!first) first = s.input;
      }
      // After the dialog has scrolled to its message box: focusing brings the field back in view.
      if (first) setTimeout(() => first.focus(), 0);
      return n;
    },
    /** Throw FieldErrors when `errors` marks any field. */
    check(errors) {
      api.clear();
      const n = api.show(errors);
      if (n) throw new FieldErrors(n);
    },
    /**
     * Map a server 422 onto the fields and throw: FieldErrors when every item found a field,
     * else an Error carrying the leftover messages in words.
     */
    fromServer(err, toKey) {
      if (!err || err.status !== 422 || !Array.isArray(err.detail)) throw err;
      const marks = {};
      const rest = [];
      for (const d of err.detail) {
        const loc = (d.loc || []).filter((p, i) => !(i === 0 && p === 'body'));
        const key = toKey(loc);
        const msg = sentence(d.msg);
        if (key && slots.has(key)) marks[key] = marks[key] ? `${marks[key]} ${msg}` : msg;
        else rest.push(loc.length ? `${label(loc)} ${d.msg}.` : msg);
      }
      api.clear();
      const n = api.show(marks);
      if (rest.length) throw new Error(rest.join(' '));
      throw new FieldErrors(n);
    },
  };
  return api;
}

/** "must start with …" → "Must start with ….". */
export function sentence(msg) {
  const s = String(msg || '').trim();
  if (!s) return 'This value was refused.';
  const t = s[0].toUpperCase() + s.slice(1);
  return /[.!?)]$/.test(t) ? t : `${t}.`;
}

/** A loc in words for the box: ["headers", "X-A"] → "The header X-A". */
function label(loc) {
  if (loc[0] === 'headers' && loc.length > 1) return `The header “${loc.slice(1).join('.')}”`;
  return `The field “${loc.join(' ')}”`;
}

/** The browser's checks of an endpoint URL (the server checks again). */
export function checkUrl(value) {
  const v = value.trim();
  if (!v) return 'Enter the URL that receives the webhooks.';
  let u;
  try {
    u = new URL(v);
  } catch {
    return 'Write a full URL, like https://example.com/webhooks.';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'Must start with http:// or https://.';
  if (!u.hostname) return 'Must name a host, as in https://example.com/webhooks.';
  if (v.length > 2048) return 'Too long: at most 2048 characters.';
  return null;
}

/** A uid or event-type name (optional when `required` is false). */
export function checkToken(value, { required = false, max = 256, what = 'a value' } = {}) {
  const v = value.trim();
  if (!v) return required ? `Enter ${what}.` : null;
  if (!TOKEN_RE.test(v)) return TOKEN_WORDS;
  if (v.length > max) return `Too long: at most ${max} characters.`;
  return null;
}

/** A channel: letters, digits, - _ . : */
export function checkChannels(list) {
  if (list.length > 10) return 'At most 10 channels.';
  const bad = list.filter((c) => !/^[A-Za-z0-9\-_.:]+$/.test(c) || c.length > 128);
  if (bad.length) return `“${bad[0]}”: use letters, digits, - _ . : only (no spaces), at most 128 characters.`;
  return null;
}

/** A header name: the HTTP token characters, no spaces or colons; none Herald sets itself. */
export function checkHeaderName(name) {
  if (!HEADER_RE.test(name)) return 'Header names use letters, digits and - (no spaces or colons).';
  if (name.length > 256) return 'Too long: at most 256 characters.';
  const lower = name.toLowerCase();
  const reserved = ['host', 'content-length', 'content-type', 'transfer-encoding', 'connection', 'keep-alive',
    'upgrade', 'te', 'trailer', 'proxy-authorization', 'proxy-connection', 'user-agent'];
  if (reserved.includes(lower) || lower.startsWith('webhook-') || lower.startsWith('svix-')) {
    return 'Herald sets this header itself: choose another name.';
  }
  return null;
}

/** JSON text → {value} or {error} in words; empty text → {value: undefined}. */
export function parseJson(text, { object = true } = {}) {
  const t = text.trim();
  if (!t) return { value: undefined };
  let value;
  try {
    value = JSON.parse(t);
  } catch (e) {
    return { error: `Not valid JSON: ${String(e.message).replace(/^JSON\.parse: /, '')}` };
  }
  if (object && (value === null || typeof value !== 'object' || Array.isArray(value))) {
    return { error: 'Must be a JSON object ({ … }).' };
  }
  return { value };
}

/**
 * The "Try the filter" box of a saved endpoint's payload filter (admin UI and portal): sends a
 * sample payload and the filter as typed in `input` (saved or not) to `test(body)`, which posts
 * them to the endpoint's filter/test route, and says whether it matches.
 */
export function filterTryBox(input, test) {
  const sample = h('textarea', { name: 'filter-sample', rows: 3, spellcheck: 'false', 'aria-label': 'Sample payload (JSON)', placeholder: '{"type": "order.paid"}' });
  const result = h('output', { class: 'filter-result', 'aria-live': 'polite' });
  const tryIt = h('button', { type: 'button', class: 'btn btn-small' }, 'Try it');
  tryIt.addEventListener('click', () => busy(tryIt, async () => {
    result.textContent = '';
    let payload;
    try {
      payload = JSON.parse(sample.value || '{}');
    } catch (e) {
      result.textContent = `The sample is not JSON: ${e.message}`;
      return;
    }
    const body = { payload };
    if (input.value.trim()) body.filter = input.value.trim();
    try {
      const r = await test(body);
      result.textContent = r.matches ? 'Matches: this payload would be delivered.' : 'No match: this payload would not be delivered.';
    } catch (e) {
      result.textContent = e.message;
    }
  }));
  return h('fieldset', { class: 'fieldset filter-try' }, h('legend', null, 'Try the filter'), sample, h('div', { class: 'actions' }, tryIt, result));
}

/**
 * The signing secret's controls (admin UI and portal): hidden until "Reveal secret" reads it with
 * `get()`, a Copy button, and "Rotate secret" when `rotate` is given (it posts the rotation and
 * answers the new secret; `rotateMessage` says what rotating does, in the reader's terms).
 * Returns the card's children after its intro.
 */
export function secretControls({ get, rotate = null, rotateMessage }) {
  const err = errorBox();
  const value = h('code', { class: 'secret', 'data-testid': 'secret', hidden: true });
  const copy = h('button', { type: 'button', class: 'btn btn-small', hidden: true, onclick: async () => {
    toast((await copyText(value.textContent)) ? 'Secret copied.' : 'Copy failed: select the secret and copy it by hand.');
  } }, 'Copy');
  const show = (k) => {
    value.textContent = k;
    value.hidden = false;
    copy.hidden = false;
    reveal.textContent = 'Hide secret';
    reveal.setAttribute('aria-expanded', 'true');
  };
  const reveal = h('button', { type: 'button', class: 'btn', 'aria-expanded': 'false', onclick: () => busy(reveal, async () => {
    err.clear();
    if (!value.hidden) {
      value.hidden = true;
      copy.hidden = true;
      value.textContent = '';
      reveal.textContent = 'Reveal secret';
      reveal.setAttribute('aria-expanded', 'false');
      return;
    }
    try {
      show((await get()).key);
    } catch (e) {
      err.show(e);
    }
  }) }, 'Reveal secret');
  const rotateButton = rotate ? h('button', { type: 'button', class: 'btn btn-danger-quiet', onclick: () => confirmAction({
    title: 'Rotate the signing secret?',
    message: rotateMessage,
    async action() {
      const out = await rotate();
      if (!value.hidden) show(out.key);
      toast('Secret rotated.');
    },
  }) }, 'Rotate secret') : null;
  return [h('div', { class: 'secret-row' }, value, copy), err.el, h('div', { class: 'actions' }, reveal, rotateButton)];
}
