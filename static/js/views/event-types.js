// views/event-types.js — owns the event types page (#/event-types): all of them, archived ones
// marked; create, archive (DELETE, after a confirm) and restore (PATCH archived: false).

import { api, seg, isAbort } from '../api.js';
import { h, update, invalidate, table, field, errorBox, formDialog, confirmAction, pager, pageTitle, timeEl, badge, toast } from '../ui.js';

const LIMIT = 50;

function createDialog(ctx) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', spellcheck: 'false', placeholder: 'order.created' });
  const description = h('input', { type: 'text', name: 'description', autocomplete: 'off' });
  formDialog({
    title: 'Create event type',
    body: [field('Name', name, 'Letters, digits, - _ and . (for example order.created).'), field('Description', description)],
    async onSubmit() {
      const t = await api.post('/event-type', { name: name.value.trim(), description: description.value });
      toast(`Event type ${t.name} created.`);
      ctx.refresh();
    },
  });
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
    h('p', { class: 'muted lead' }, 'The kinds of events your product sends. Endpoints can subscribe to some of them only.'),
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
      const page = await api.get('/event-type', { limit: LIMIT, iterator: pages.cursor, include_archived: true }, { signal: ctx.signal });
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
          { label: 'Created', cell: (t) => timeEl(t.createdAt) },
          { label: 'Actions', class: 'actions-cell', cell: (t) => (t.archived
            ? h('button', { type: 'button', class: 'btn btn-small', 'data-key': `restore:${t.name}`, onclick: () => unarchive(t) }, 'Restore')
            : h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-key': `archive:${t.name}`, onclick: () => archive(t) }, 'Archive')) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
