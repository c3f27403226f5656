// views/event-types.js — owns the event types page (#/event-types): all of them, archived ones
// marked; create, edit (description, JSON Schema and example payload, in Svix's `schemas` shape),
// archive (DELETE, after a confirm) and restore (PATCH archived: false).

import { api, seg, isAbort } from '../api.js';
import { h, update, invalidate, table, field, errorBox, formDialog, confirmAction, pager, pageTitle, timeEl, badge, toast } from '../ui.js';
import { fieldErrors, checkToken, parseJson } from '../forms.js';

const LIMIT = 50;

/** The newest schema version's key in `schemas` ({"1": {...}, "2": {...}}), or null. */
function newestVersion(schemas) {
  const keys = Object.keys(schemas || {});
  if (!keys.length) return null;
  return keys.sort((a, b) => (Number(a) || 0) - (Number(b) || 0))[keys.length - 1];
}

/** The newest version's schema without its examples, and its first example, as editable text. */
function schemaParts(t) {
  const v = newestVersion(t.schemas);
  if (!v) return { version: '1', schema: '', example: '' };
  const { examples, ...schema } = t.schemas[v] || {};
  const pretty = (x) => JSON.stringify(x, null, 2);
  return {
    version: v,
    schema: Object.keys(schema).length ? pretty(schema) : '',
    example: Array.isArray(examples) && examples.length ? pretty(examples[0]) : '',
  };
}

const byField = (loc) => {
  if (loc[0] === 'name' || loc[0] === 'description') return loc[0];
  if (loc[0] === 'schemas') return loc.includes('examples') ? 'example' : 'schema';
  return null;
};

function createDialog(ctx) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'order.created' });
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off' });
  const fe = fieldErrors();
  fe.add('name', name);
  fe.add('description', description);
  formDialog({
    title: 'Create event type',
    submitLabel: 'Create',
    body: [field('Name', name, 'Letters, digits, - _ and . (for example order.created).'), field('Description', description)],
    async onSubmit() {
      fe.check({ name: checkToken(name.value, { required: true, what: 'a name, like order.created' }) });
      let t;
      try {
        t = await api.post('/event-type', { name: name.value.trim(), description: description.value });
      } catch (e) {
        if (e.status === 409) fe.check({ name: 'An event type with this name already exists.' });
        fe.fromServer(e, byField);
      }
      toast(`Event type ${t.name} created.`);
      ctx.refresh();
    },
  });
}

/** Edit the description, the JSON Schema and one example (what "Send test event" sends). */
function editDialog(ctx, t) {
  const parts = schemaParts(t);
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off', value: t.description || '' });
  const area = (name, value, placeholder) => h('textarea', { name, rows: '8', class: 'code-input', spellcheck: 'false', autocomplete: 'off', placeholder, value });
  const schema = area('schema', parts.schema, '{\n  "type": "object",\n  "properties": { "id": { "type": "string" } }\n}');
  const example = area('example', parts.example, '{ "id": "ord_123" }');
  const fe = fieldErrors();
  fe.add('description', description);
  fe.add('schema', schema);
  fe.add('example', example);
  formDialog({
    title: `Edit event type ${t.name}`,
    submitLabel: 'Save',
    wide: true,
    body: [
      field('Description', description),
      field('JSON Schema', schema, `Optional. Stored as version ${parts.version} of the event type’s schemas (Svix’s format).`),
      field('Example payload', example, 'Optional. A JSON object: “Send test event” on an endpoint sends it.'),
    ],
    async onSubmit() {
      const s = parseJson(schema.value);
      const ex = parseJson(example.value);
      const errors = { schema: s.error, example: ex.error };
      if (new TextEncoder().encode(description.value).length > 4096) errors.description = 'Too long: at most 4096 bytes.';
      fe.check(errors);
      const body = { description: description.value };
      if (s.value === undefined && ex.value === undefined) {
        // Nothing to keep in the edited version: drop it, keep any other version.
        const rest = { ...(t.schemas || {}) };
        delete rest[parts.version];
        body.schemas = Object.keys(rest).length ? rest : null;
      } else {
        const version = { ...(s.value || {}) };
        if (ex.value !== undefined) version.examples = [ex.value];
        else delete version.examples;
        body.schemas = { ...(t.schemas || {}), [parts.version]: version };
      }
      await api.patch(`/event-type/${seg(t.name)}`, body).catch((e) => fe.fromServer(e, byField));
      toast(`Event type ${t.name} saved.`);
      ctx.refresh();
    },
  });
}

function schemaCell(t) {
  const v = newestVersion(t.schemas);
  if (!v) return h('span', { class: 'muted' }, '—');
  const { examples } = t.schemas[v] || {};
  return h('span', { class: 'stacked-inline' }, badge(`Schema v${v}`, 'success'),
    Array.isArray(examples) && examples.length ? badge('Example', 'muted') : null);
}

export async function eventTypesView(root, ctx) {
  ctx.title('Event types');
  const err = errorBox();
  const region = h('div', { 'data-testid': 'event-types', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const pages = pager(() => {
    invalidate(region);
    ctx.refresh();
  });
  const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => createDialog(ctx) }, 'Create event type');
  root.append(
    pageTitle('Event types', create),
    h('p', { class: 'muted lead' }, 'The kinds of events your product sends. Endpoints can subscribe to some of them only. '
      + 'Give one a JSON Schema and an example: the example is what “Send test event” sends.'),
    err.el, region, pages.el);

  const archive = (t) => confirmAction({
    title: 'Archive event type?',
    message: `${t.name} is hidden from lists and cannot be chosen for new endpoints; messages of this type are still accepted and delivered.`,
    async action() {
      await api.del(`/event-type/${seg(t.name)}`);
      toast(`Event type ${t.name} archived.`);
      ctx.refresh();
    },
  });
  const unarchive = async (t) => {
    err.clear();
    try {
      await api.patch(`/event-type/${seg(t.name)}`, { archived: false });
      toast(`Event type ${t.name} restored.`);
      ctx.refresh();
    } catch (e) {
      err.show(e);
    }
  };

  ctx.poll(async () => {
    try {
      const page = await api.get('/event-type', { limit: LIMIT, iterator: pages.cursor, include_archived: true, with_content: true }, { signal: ctx.signal });
      if (!ctx.alive()) return;
      err.clear();
      pages.update(page);
      update(region, page.data, () => table({
        caption: 'Event types',
        rows: page.data,
        empty: 'No event types yet. Create one, then choose it in an endpoint’s filter.',
        rowClass: (t) => (t.archived ? 'row-archived' : null),
        columns: [
          { label: 'Name', cell: (t) => h('span', { class: 'stacked-inline' }, h('code', null, t.name), t.archived ? badge('Archived') : null, t.deprecated ? badge('Deprecated', 'warn') : null) },
          { label: 'Description', cell: (t) => t.description || h('span', { class: 'muted' }, '—') },
          { label: 'Schema', cell: schemaCell },
          { label: 'Created', cell: (t) => timeEl(t.createdAt) },
          { label: 'Actions', class: 'actions-cell', cell: (t) => h('div', { class: 'row-actions' },
            h('button', { type: 'button', class: 'btn btn-small', 'data-key': `edit:${t.name}`, 'aria-label': `Edit ${t.name}`, onclick: () => editDialog(ctx, t) }, 'Edit'),
            t.archived
              ? h('button', { type: 'button', class: 'btn btn-small', 'data-key': `restore:${t.name}`, onclick: () => unarchive(t) }, 'Restore')
              : h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-key': `archive:${t.name}`, onclick: () => archive(t) }, 'Archive')) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
