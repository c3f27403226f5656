// views/app.js — owns an application's page (#/apps/{app}/endpoints|messages): its header and the
// Endpoints / Messages tabs, each tab being its own module.

import { api, seg } from '../api.js';
import { h, pageTitle, route } from '../ui.js';
import { endpointsTab } from './endpoints.js';
import { messagesTab } from './messages.js';

const TABS = [['endpoints', 'Endpoints'], ['messages', 'Messages']];

export async function appView(root, ctx) {
  const { appId, tab } = ctx.params;
  ctx.title(appId);
  let app;
  try {
    app = await api.get(`/app/${seg(appId)}`, null, { signal: ctx.signal });
  } catch (e) {
    if (e.status === 404) {
      root.append(pageTitle('Application not found'),
        h('p', null, 'No application has this id or uid. ', h('a', { href: '#/apps' }, 'Back to applications'), '.'));
      return;
    }
    throw e;
  }
  ctx.title(`${app.name} · ${tab === 'messages' ? 'Messages' : 'Endpoints'}`);
  const tabs = h('nav', { class: 'tabs', 'aria-label': 'Application sections' }, h('ul', null, TABS.map(([id, label]) =>
    h('li', null, h('a', { href: route('apps', appId, id), 'aria-current': id === tab ? 'page' : null }, label)))));
  const body = h('div', { class: 'tab-body' });
  root.append(
    h('p', { class: 'eyebrow' }, 'Application'),
    pageTitle(app.name),
    h('p', { class: 'meta' }, app.uid ? ['UID ', h('code', null, app.uid), ' · '] : null, 'ID ', h('code', { class: 'id' }, app.id)),
    tabs, body);
  if (tab === 'messages') await messagesTab(body, ctx, app);
  else await endpointsTab(body, ctx, app);
}
