// views/endpoint-form.js — owns the endpoint settings form (URL, description, event-type filter,
// channels, payload filter with its "Try it" box, custom headers, disabled, FIFO ordering) and saving it: POST or PATCH, then the headers with PUT
// (or PATCH when hidden credential headers must be kept).

import { api, seg } from '../api.js';
import { h, busy, field, checkbox, newId, errorBox, formDialog, toast } from '../ui.js';
import { fieldErrors, FieldErrors, checkUrl, checkChannels, checkHeaderName, filterTryBox } from '../forms.js';

/** Event-type names for the filter: live ones, archived ones marked; `example`: it has one. */
export async function loadEventTypes(signal) {
  const page = await api.get('/event-type', { limit: 250, include_archived: true, with_content: true }, { signal });
  const hasExample = (t) => Object.values(t.schemas || {}).some((v) => v && Array.isArray(v.examples) && v.examples.length > 0);
  return page.data.map((t) => ({ name: t.name, archived: t.archived, example: hasExample(t) }));
}

function headerRow(name = '', value = '', sensitive = false) {
  const key = h('input', { type: 'text', id: newId('hk'), class: 'hdr-name', value: name, autocomplete: 'off', spellcheck: 'false', placeholder: 'X-Example' });
  const val = h('input', { type: 'text', id: newId('hv'), class: 'hdr-value', value, autocomplete: 'off', spellcheck: 'false',
    placeholder: sensitive ? 'hidden; leave empty to keep' : 'value' });
  const row = h('div', { class: 'header-row' },
    h('label', { for: key.id, class: 'sr-only' }, 'Header key'), key,
    h('label', { for: val.id, class: 'sr-only' }, 'Header value'), val,
    h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', onclick: () => row.remove() }, 'Remove'));
  row.dataset.sensitive = sensitive ? name.toLowerCase() : '';
  return row;
}

/**
 * The fields of an endpoint form. `endpoint` and `headers` (GET .../headers) fill it for an edit.
 * Returns {nodes, values(), check(), fromServer(err)}: values() gives the form's content as the
 * API wants it; check() marks every field the browser can tell is wrong (throws FieldErrors);
 * fromServer(err) marks the fields a 422 names, then throws.
 */
/**
 * The payload filter field (Herald extension) and, for a saved endpoint, a "Try it" box that asks
 * the server whether a sample payload matches the filter as typed (saved or not).
 */
function filterField(endpoint, appId) {
  const input = h('input', { type: 'text', name: 'filter', autocomplete: 'off', spellcheck: 'false',
    placeholder: '$.type == "order.paid" and $.data.total > 100', value: endpoint && endpoint.filter ? endpoint.filter : '' });
  const node = field('Payload filter', input, 'Optional. Only payloads that match are delivered: paths $.a.b or $.items[0]; ==, !=, <, >, in [..], exists, startsWith; and, or, not, ( ).');
  if (!endpoint || !appId) return { input, nodes: [node] };
  const box = filterTryBox(input, (body) => api.post(`/app/${seg(appId)}/endpoint/${seg(endpoint.id)}/filter/test`, body));
  return { input, nodes: [node, box] };
}

export function endpointFields({ endpoint = null, headers = null, eventTypes = [], appId = null }) {
  const url = h('input', { type: 'url', name: 'url', required: true, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://example.com/webhooks', value: endpoint ? endpoint.url : '' });
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off', value: endpoint ? endpoint.description : '' });
  const chosen = new Set(endpoint && endpoint.filterTypes ? endpoint.filterTypes : []);
  const names = eventTypes.filter((t) => !t.archived || chosen.has(t.name));
  for (const n of chosen) if (!names.some((t) => t.name === n)) names.push({ name: n, archived: true });
  const boxes = names.map((t) => checkbox(t.archived ? `${t.name} (archived)` : t.name, { value: t.name, checked: chosen.has(t.name), class: 'et-box' }));
  const legendId = newId('lg');
  const types = h('fieldset', { class: 'fieldset', 'aria-describedby': `${legendId}-hint` },
    h('legend', { id: legendId }, 'Events to deliver'),
    h('p', { class: 'hint', id: `${legendId}-hint` }, 'Leave all unchecked to receive every event type.'),
    boxes.length ? h('div', { class: 'check-grid' }, boxes) : h('p', { class: 'muted' }, 'No event types defined yet: the endpoint receives every event.'));
  const channels = h('input', { type: 'text', name: 'channels', autocomplete: 'off', spellcheck: 'false',
    value: endpoint && endpoint.channels ? endpoint.channels.join(', ') : '' });
  const rows = h('div', { class: 'header-rows' });
  if (headers) {
    for (const [k, v] of Object.entries(headers.headers || {})) rows.appendChild(headerRow(k, v));
    for (const k of headers.sensitive || []) rows.appendChild(headerRow(k, '', true));
  }
  const hdrs = h('fieldset', { class: 'fieldset' }, h('legend', null, 'Custom headers'),
    h('p', { class: 'hint' }, 'Sent with every delivery. Credential headers (Authorization, …) are never shown again once saved.'),
    rows, h('button', { type: 'button', class: 'btn btn-small', onclick: () => {
      const r = headerRow();
      rows.appendChild(r);
      r.querySelector('input').focus();
    } }, 'Add header'));
  const disabled = checkbox('Disabled', { name: 'disabled', checked: Boolean(endpoint && endpoint.disabled) });
  const fifo = checkbox('In order (FIFO): one delivery at a time; a failing message holds back the ones after it',
    { name: 'ordering', checked: Boolean(endpoint && endpoint.ordering === 'fifo') });
  const pf = filterField(endpoint, appId);
  const fe = fieldErrors();
  fe.add('url', url);
  fe.add('description', description);
  fe.add('types', types.querySelector('legend'), types.querySelector('.hint'));
  fe.add('channels', channels);
  fe.add('filter', pf.input);
  const headerRows = () => [...rows.querySelectorAll('.header-row')].map((r, i) => {
    const key = `hdr:${i}`;
    const name = r.querySelector('.hdr-name');
    fe.add(key, name, r);
    return { key, row: r, name: name.value.trim(), value: r.querySelector('.hdr-value').value };
  });
  const chanList = () => channels.value.split(',').map((x) => x.trim()).filter(Boolean);

  const fields = {
    nodes: [field('URL', url), field('Description', description), types,
      field('Channels', channels, 'Comma separated: letters, digits, - _ . : only. Empty: messages of every channel.'), ...pf.nodes, hdrs, disabled, fifo],
    check() {
      const errors = { url: checkUrl(url.value) };
      if (new TextEncoder().encode(description.value).length > 4096) errors.description = 'Too long: at most 4096 bytes.';
      errors.channels = checkChannels(chanList());
      const seen = new Set();
      for (const r of headerRows()) {
        if (!r.name) {
          if (r.value) errors[r.key] = 'Give this header a name, or remove it.';
          continue;
        }
        const lower = r.name.toLowerCase();
        let msg = checkHeaderName(r.name);
        if (!msg && seen.has(lower)) msg = 'This header is already in the list.';
        if (!msg && (/[\r\n\0]/.test(r.value) || r.value.length > 4096)) msg = 'The value must be one line of at most 4096 characters.';
        seen.add(lower);
        errors[r.key] = msg;
      }
      fe.check(errors);
    },
    fromServer(err) {
      const hdrs2 = headerRows();
      fe.fromServer(err, (loc) => {
        if (loc[0] === 'url' || loc[0] === 'description' || loc[0] === 'channels' || loc[0] === 'filter') return loc[0];
        if (loc[0] === 'filterTypes' || loc[0] === 'eventTypes') return 'types';
        if (loc[0] === 'headers' && loc.length > 1) {
          const name = loc.slice(1).join('.').toLowerCase();
          const r = hdrs2.find((x) => x.name.toLowerCase() === name);
          return r ? r.key : null;
        }
        return null;
      });
    },
    clear: () => fe.clear(),
    values() {
      const filter = boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value);
      const chans = chanList();
      const set = {};
      const keep = [];
      for (const r of rows.querySelectorAll('.header-row')) {
        const name = r.querySelector('.hdr-name').value.trim();
        const value = r.querySelector('.hdr-value').value;
        if (!name) continue;
        if (r.dataset.sensitive && r.dataset.sensitive === name.toLowerCase() && value === '') keep.push(name.toLowerCase());
        else set[name] = value;
      }
      return {
        url: url.value.trim(),
        description: description.value,
        filterTypes: filter.length ? filter : null,
        channels: chans.length ? chans : null,
        filter: pf.input.value.trim() || null,
        disabled: disabled.querySelector('input').checked,
        ordering: fifo.querySelector('input').checked ? 'fifo' : 'unordered',
        headers: set,
        keepSensitive: keep,
      };
    },
  };
  return fields;
}

/** Check in the browser, save, and map a 422 onto the fields; throws what the form should show. */
async function submitEndpoint(f, appId, endpoint, before) {
  f.check();
  try {
    return await saveEndpoint(appId, endpoint, before, f.values());
  } catch (e) {
    try {
      f.fromServer(e);
    } catch (shown) {
      if (e.partial) shown.message = `Settings saved, but not the headers. ${shown.message}`;
      throw shown;
    }
    throw e;
  }
}

async function saveHeaders(base, before, v) {
  const old = before ? before.headers || {} : {};
  const sensitive = before ? before.sensitive || [] : [];
  const lower = new Set(Object.keys(v.headers).map((k) => k.toLowerCase()).concat(v.keepSensitive));
  const removed = Object.keys(old).concat(sensitive).filter((k) => !lower.has(k.toLowerCase()));
  const changed = removed.length > 0 || Object.entries(v.headers).some(([k, val]) => old[k] !== val);
  if (!changed) return;
  if (v.keepSensitive.length) await api.patch(`${base}/headers`, { headers: v.headers, deleteHeaders: removed });
  else await api.put(`${base}/headers`, { headers: v.headers });
}

/** Create (endpoint null) or update an endpoint from values(); returns the EndpointOut. */
export async function saveEndpoint(appId, endpoint, before, v) {
  if (!endpoint) {
    const body = { url: v.url, description: v.description, disabled: v.disabled };
    if (v.filterTypes) body.filterTypes = v.filterTypes;
    if (v.channels) body.channels = v.channels;
    if (v.ordering === 'fifo') body.ordering = v.ordering;
    if (v.filter) body.filter = v.filter;
    if (Object.keys(v.headers).length) body.headers = v.headers;
    return api.post(`/app/${seg(appId)}/endpoint`, body);
  }
  const base = `/app/${seg(appId)}/endpoint/${seg(endpoint.id)}`;
  const ep = await api.patch(base, { url: v.url, description: v.description, filterTypes: v.filterTypes, channels: v.channels, filter: v.filter, disabled: v.disabled, ordering: v.ordering });
  try {
    await saveHeaders(base, before, v);
  } catch (e) {
    e.message = `Settings saved, but not the headers: ${e.message}`;
    e.partial = true;
    throw e;
  }
  return ep;
}

/** The "Create endpoint" dialog; `done(ep)` runs after it is created. */
export function createEndpointDialog(appId, eventTypes, done) {
  const f = endpointFields({ eventTypes });
  formDialog({
    title: 'Create endpoint',
    submitLabel: 'Create',
    wide: true,
    body: f.nodes,
    async onSubmit() {
      const ep = await submitEndpoint(f, appId, null, null);
      toast('Endpoint created.');
      done(ep);
    },
  });
}

/** The settings form shown inline on an endpoint's page, with its own Save button and errors. */
export function endpointSettingsForm({ appId, endpoint, headers, eventTypes, onSaved }) {
  const f = endpointFields({ endpoint, headers, eventTypes, appId });
  const err = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary' }, 'Save');
  const form = h('form', { class: 'settings-form', novalidate: true, 'aria-label': 'Endpoint settings' },
    f.nodes, err.el, h('div', { class: 'actions' }, save));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, async () => {
      err.clear();
      try {
        const ep = await submitEndpoint(f, appId, endpoint, headers);
        toast('Endpoint saved.');
        await onSaved(ep);
      } catch (e2) {
        err.show(e2);
        if (!(e2 instanceof FieldErrors)) err.el.scrollIntoView({ block: 'nearest' });
      }
    });
  });
  return form;
}
