// views/apps.js — owns the applications page (#/apps): searchable, paged table (newest first); create, rename
// (PATCH name) and delete (after a confirm).

import { api, seg, isAbort } from '../api.js';
import { h, update, invalidate, table, field, errorBox, formDialog, confirmAction, pager, pageTitle, timeEl, route, toast } from '../ui.js';
import { fieldErrors, checkToken } from '../forms.js';

/** Errors of an application's name and uid, for the fields they belong to. */
function appErrors(name, uid) {
  const errors = {};
  const n = name.value.trim();
  if (!n) errors.name = 'Enter a name.';
  else if (new TextEncoder().encode(n).length > 256) errors.name = 'Too long: at most 256 bytes.';
  if (uid) {
    errors.uid = checkToken(uid.value);
    if (!errors.uid && /^(app_|ep_|msg_|atmpt_)/.test(uid.value.trim())) {
      errors.uid = 'Must not start like Herald’s ids (app_, ep_, msg_, atmpt_): put another character first.';
    }
  }
  return errors;
}

const byField = (loc) => (loc[0] === 'name' || loc[0] === 'uid' ? loc[0] : null);

const LIMIT = 20;

function createDialog(ctx) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off' });
  const uid = h('input', { type: 'text', name: 'uid', autocomplete: 'off', spellcheck: 'false' });
  const fe = fieldErrors();
  fe.add('name', name);
  fe.add('uid', uid);
  formDialog({
    title: 'Create application',
    submitLabel: 'Create',
    body: [field('Name', name), field('UID', uid, 'Optional: your own id for it (letters, digits, - _ .), usable in URLs.')],
    async onSubmit() {
      fe.check(appErrors(name, uid));
      const body = { name: name.value.trim() };
      if (uid.value.trim()) body.uid = uid.value.trim();
      let app;
      try {
        app = await api.post('/app', body);
      } catch (e) {
        if (e.status === 409) fe.check({ uid: 'Another application already has this UID.' });
        fe.fromServer(e, byField);
      }
      toast(`Application “${app.name}” created.`);
      ctx.refresh();
    },
  });
}

function renameDialog(ctx, app) {
  const name = h('input', { type: 'text', name: 'name', required: true, autocomplete: 'off', value: app.name });
  const fe = fieldErrors();
  fe.add('name', name);
  formDialog({
    title: 'Edit application',
    body: [h('p', { class: 'muted' }, `Currently “${app.name}” (${app.id}).`), field('Name', name)],
    async onSubmit() {
      fe.check(appErrors(name, null));
      await api.patch(`/app/${seg(app.id)}`, { name: name.value.trim() }).catch((e) => fe.fromServer(e, byField));
      toast('Application renamed.');
      ctx.refresh();
    },
  });
}

function deleteDialog(ctx, app) {
  confirmAction({
    title: 'Delete application?',
    message: `“${app.name}” (${app.id}) is deleted with its endpoints, messages and delivery history. This cannot be undone.`,
    async action() {
      await api.del(`/app/${seg(app.id)}`);
      toast(`Application “${app.name}” deleted.`);
      ctx.refresh();
    },
  });
}

export async function appsView(root, ctx) {
  ctx.title('Applications');
  const err = errorBox();
  const region = h('div', { 'data-testid': 'apps', class: 'region' }, h('p', { class: 'loading' }, 'Loading…'));
  const pages = pager(() => {
    invalidate(region);
    ctx.refresh();
  });
  const search = h('input', { type: 'search', name: 'search', autocomplete: 'off', placeholder: 'Name, uid or id' });
  let timer = 0;
  search.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      pages.reset();
      ctx.refresh();
    }, 250);
  });
  const create = h('button', { type: 'button', class: 'btn btn-primary', onclick: () => createDialog(ctx) }, 'Create application');
  root.append(
    pageTitle('Applications', create),
    h('p', { class: 'muted lead' }, 'Each application is one of your customers: its endpoints receive the events you send for it.'),
    h('div', { class: 'toolbar' }, field('Search applications', search)),
    err.el, region, pages.el);

  ctx.poll(async () => {
    const term = search.value.trim();
    try {
      const page = await api.get('/app', { limit: LIMIT, iterator: pages.cursor, order: 'descending', search: term }, { signal: ctx.signal });
      if (!ctx.alive() || term !== search.value.trim()) return;
      err.clear();
      pages.update(page);
      update(region, { term, data: page.data }, () => table({
        caption: 'Applications',
        rows: page.data,
        empty: term ? `No application matches “${term}”.` : 'No applications yet. Create one to start sending webhooks.',
        columns: [
          { label: 'Name', cell: (a) => h('a', { href: route('apps', a.id), 'data-key': `open:${a.id}` }, a.name) },
          { label: 'UID', cell: (a) => (a.uid ? h('code', null, a.uid) : h('span', { class: 'muted' }, '—')) },
          { label: 'ID', cell: (a) => h('code', { class: 'id' }, a.id) },
          { label: 'Created', cell: (a) => timeEl(a.createdAt) },
          { label: 'Actions', class: 'actions-cell', cell: (a) => h('div', { class: 'row-actions' },
            h('button', { type: 'button', class: 'btn btn-small', 'data-key': `rename:${a.id}`, onclick: () => renameDialog(ctx, a) }, 'Rename'),
            h('button', { type: 'button', class: 'btn btn-small btn-danger-quiet', 'data-key': `delete:${a.id}`, onclick: () => deleteDialog(ctx, a) }, 'Delete')) },
        ],
      }));
    } catch (e) {
      if (!isAbort(e) && ctx.alive()) err.show(e);
    }
  });
}
