// views/app.js — owns an application's page (#/apps/{app}/endpoints|messages): its header, the
// "Portal link" button (mints a customer-portal link with app-portal-access and shows it to copy),
// and the Endpoints / Messages tabs, each tab being its own module.

import { api, seg } from '../api.js';
import { h, pageTitle, route, formDialog, field, checkbox, copyText, toast } from '../ui.js';
import { endpointsTab } from './endpoints.js';
import { messagesTab } from './messages.js';

const TABS = [['endpoints', 'Endpoints'], ['messages', 'Messages']];

const CAPABILITIES = [
  ['ManageEndpoint', 'Add, edit and delete endpoints (and their secrets)'],
  ['ViewEndpointSecret', 'Reveal signing secrets'],
  ['ManageEndpointSecret', 'Rotate signing secrets'],
  ['CreateAttempts', 'Resend, recover and send test events'],
];
const EXPIRIES = [['3600', '1 hour'], ['86400', '1 day'], ['604800', '7 days']];

/** Ask what the customer may do, mint the link, then show it to copy or open. */
function portalLinkDialog(app) {
  const boxes = CAPABILITIES.map(([cap, label]) => checkbox(label, { value: cap, checked: true, 'data-testid': `cap:${cap}` }));
  const expiry = h('select', { name: 'expiry' }, EXPIRIES.map(([v, label]) => h('option', { value: v, selected: v === '86400' }, label)));
  formDialog({
    title: `Portal link for ${app.name}`,
    submitLabel: 'Create link',
    body: [
      h('p', { class: 'muted' }, 'A link to the customer portal, signed in to this application only. Anyone with it can use it until it expires.'),
      h('fieldset', { class: 'fieldset' }, h('legend', null, 'The customer may also'), boxes),
      field('Works for', expiry),
    ],
    async onSubmit() {
      const capabilities = ['ViewBase', ...boxes.map((b) => b.querySelector('input')).filter((i) => i.checked).map((i) => i.value)];
      const out = await api.post(`/auth/app-portal-access/${seg(app.id)}`, { capabilities, expiry: Number(expiry.value) });
      // After this dialog closes: the next one holds the link.
      setTimeout(() => showLink(out.url), 0);
    },
  });
}

function showLink(url) {
  const input = h('input', { type: 'text', readonly: true, value: url, 'data-testid': 'portal-url', spellcheck: 'false' });
  const copy = h('button', { type: 'button', class: 'btn', onclick: async () => {
    toast((await copyText(url)) ? 'Link copied.' : 'Copy failed: select the link and copy it by hand.');
  } }, 'Copy link');
  const open = h('a', { class: 'btn', href: url, target: '_blank', rel: 'noopener noreferrer' }, 'Open portal');
  formDialog({
    title: 'Portal link',
    submitLabel: 'Done',
    body: [field('Link', input, 'Shown once: Herald keeps only a hash of its token.'), h('div', { class: 'actions' }, copy, open)],
    async onSubmit() {},
  });
  input.select();
}

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
    pageTitle(app.name, h('button', { type: 'button', class: 'btn', 'data-testid': 'portal-link', onclick: () => portalLinkDialog(app) }, 'Portal link')),
    h('p', { class: 'meta' }, app.uid ? ['UID ', h('code', null, app.uid), ' · '] : null, 'ID ', h('code', { class: 'id' }, app.id)),
    tabs, body);
  if (tab === 'messages') await messagesTab(body, ctx, app);
  else await endpointsTab(body, ctx, app);
}
