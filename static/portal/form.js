// form.js — owns the portal's endpoint form (URL, description, the event-type filter chosen from
// the catalogue with each type's description, example and schema, channels, rate limit, payload
// filter with a "Try it" box, disabled) and saving it: POST to create, PATCH to edit. Browser
// checks first (forms.js), then the server's 422 lands on the same fields.

import { seg } from '/js/api.js';
import { h, busy, field, checkbox, newId, errorBox, toast } from '/js/ui.js';
import { fieldErrors, FieldErrors, checkUrl, checkChannels, filterTryBox } from '/js/forms.js';
import { portal } from './session.js';

/** The live catalogue, with each type's description, example payload and schema. */
export async function loadCatalogue(signal) {
  const page = await portal.get('/event-type', { limit: 250, with_content: true }, { signal });
  return page.data.map((t) => {
    const versions = Object.values(t.schemas || {}).filter((v) => v && typeof v === 'object');
    const latest = versions.length ? versions[versions.length - 1] : null;
    let example = null;
    let schema = null;
    if (latest) {
      const { examples, ...rest } = latest;
      if (Array.isArray(examples) && examples.length) example = examples[0];
      if (Object.keys(rest).length) schema = rest;
    }
    return { name: t.name, description: t.description || '', example, schema };
  });
}

function catalogueItem(t, checked) {
  const box = checkbox('', { value: t.name, checked, class: 'et-box', 'data-testid': `et:${t.name}` });
  box.querySelector('label').append(h('code', null, t.name));
  const descId = newId('etd');
  if (t.description) box.querySelector('input').setAttribute('aria-describedby', descId);
  return h('li', { class: 'et-item' }, box,
    t.description ? h('p', { class: 'et-desc', id: descId }, t.description) : null,
    t.example ? h('details', { class: 'et-example' }, h('summary', null, 'Example payload'),
      h('pre', { class: 'pre' }, JSON.stringify(t.example, null, 2))) : null,
    t.schema ? h('details', { class: 'et-example' }, h('summary', null, 'Schema'),
      h('pre', { class: 'pre' }, JSON.stringify(t.schema, null, 2))) : null);
}

/**
 * The endpoint form. `endpoint` fills it for an edit (else it creates); `onSaved(ep)` runs after
 * a save. Returns the <form>.
 */
export function endpointForm({ appId, endpoint = null, catalogue, onSaved }) {
  const url = h('input', { type: 'url', name: 'url', required: true, autocomplete: 'off', spellcheck: 'false',
    placeholder: 'https://example.com/webhooks', value: endpoint ? endpoint.url : '' });
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off', value: endpoint ? endpoint.description : '' });
  const chosen = new Set(endpoint && endpoint.filterTypes ? endpoint.filterTypes : []);
  const types = [...catalogue];
  for (const n of chosen) if (!types.some((t) => t.name === n)) types.push({ name: n, description: 'No longer offered.', example: null, schema: null });
  const legendId = newId('lg');
  const typeSet = h('fieldset', { class: 'fieldset', 'aria-describedby': `${legendId}-hint` },
    h('legend', { id: legendId }, 'Events to receive'),
    h('p', { class: 'hint', id: `${legendId}-hint` }, 'Leave all unchecked to receive every event type.'),
    types.length ? h('ul', { class: 'et-list' }, types.map((t) => catalogueItem(t, chosen.has(t.name))))
      : h('p', { class: 'muted' }, 'No event types are listed: the endpoint receives every event.'));
  const channels = h('input', { type: 'text', name: 'channels', autocomplete: 'off', spellcheck: 'false',
    value: endpoint && endpoint.channels ? endpoint.channels.join(', ') : '' });
  const rate = h('input', { type: 'number', name: 'rateLimit', min: '1', max: '65535', step: '1', inputmode: 'numeric',
    value: endpoint && endpoint.rateLimit ? String(endpoint.rateLimit) : '' });
  const payloadFilter = h('input', { type: 'text', name: 'filter', autocomplete: 'off', spellcheck: 'false',
    placeholder: '$.type == "order.paid"', value: endpoint && endpoint.filter ? endpoint.filter : '' });
  const tryBox = endpoint
    ? filterTryBox(payloadFilter, (body) => portal.post(`/app/${seg(appId)}/endpoint/${seg(endpoint.id)}/filter/test`, body))
    : null;
  const disabled = checkbox('Disabled (deliveries wait until it is enabled again)', { name: 'disabled', checked: Boolean(endpoint && endpoint.disabled) });
  const fe = fieldErrors();
  fe.add('url', url);
  fe.add('description', description);
  fe.add('types', typeSet.querySelector('legend'), typeSet.querySelector('.hint'));
  fe.add('channels', channels);
  fe.add('rateLimit', rate);
  fe.add('filter', payloadFilter);
  const chanList = () => channels.value.split(',').map((x) => x.trim()).filter(Boolean);

  const err = errorBox();
  const save = h('button', { type: 'submit', class: 'btn btn-primary', 'data-testid': 'save-endpoint' }, endpoint ? 'Save' : 'Add endpoint');
  const form = h('form', { class: 'settings-form portal-form', novalidate: true, 'aria-label': endpoint ? 'Endpoint settings' : 'New endpoint' },
    field('URL', url, 'Where we send each webhook, as an HTTPS POST.'),
    field('Description', description),
    typeSet,
    h('div', { class: 'field-row' },
      field('Channels', channels, 'Optional, comma separated: only messages sent to these channels.'),
      field('Rate limit', rate, 'Optional: most deliveries per second.')),
    field('Payload filter', payloadFilter, 'Optional: only payloads that match are delivered, e.g. $.data.total > 100 and $.currency in ["EUR", "USD"].'),
    tryBox,
    disabled, err.el, h('div', { class: 'actions' }, save));

  const values = () => {
    const filter = [...typeSet.querySelectorAll('input.et-box, .et-box input')].filter((i) => i.checked).map((i) => i.value);
    const chans = chanList();
    const r = rate.value.trim();
    return {
      url: url.value.trim(),
      description: description.value,
      filterTypes: filter.length ? filter : null,
      channels: chans.length ? chans : null,
      rateLimit: r ? Number(r) : null,
      filter: payloadFilter.value.trim() || null,
      disabled: disabled.querySelector('input').checked,
    };
  };
  const check = () => {
    const errors = { url: checkUrl(url.value), channels: checkChannels(chanList()) };
    if (new TextEncoder().encode(description.value).length > 4096) errors.description = 'Too long: at most 4096 bytes.';
    const r = rate.value.trim();
    if (r && !(/^\d+$/.test(r) && Number(r) >= 1 && Number(r) <= 65535)) errors.rateLimit = 'A whole number of deliveries per second, 1 to 65535 (or empty for no limit).';
    fe.check(errors);
  };
  const toKey = (loc) => {
    if (['url', 'description', 'channels', 'filter'].includes(loc[0])) return loc[0];
    if (loc[0] === 'filterTypes' || loc[0] === 'eventTypes') return 'types';
    if (loc[0] === 'rateLimit' || loc[0] === 'throttleRate') return 'rateLimit';
    return null;
  };

  form.addEventListener('submit', (e) => {
    e.preventDefault();
    busy(save, async () => {
      err.clear();
      try {
        check();
        const v = values();
        const base = `/app/${seg(appId)}/endpoint`;
        let ep;
        try {
          if (endpoint) {
            ep = await portal.patch(`${base}/${seg(endpoint.id)}`, v);
          } else {
            const body = { url: v.url, description: v.description, disabled: v.disabled };
            for (const k of ['filterTypes', 'channels', 'rateLimit', 'filter']) if (v[k] !== null) body[k] = v[k];
            ep = await portal.post(base, body);
          }
        } catch (e2) {
          fe.fromServer(e2, toKey);
        }
        toast(endpoint ? 'Endpoint saved.' : 'Endpoint added.');
        await onSaved(ep);
      } catch (e2) {
        err.show(e2);
        if (!(e2 instanceof FieldErrors)) err.el.scrollIntoView({ block: 'nearest' });
      }
    });
  });
  return form;
}
