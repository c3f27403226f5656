// The customer portal end to end: real Herald (with [portal] branding and framing set), real
// receiver, Debian's Chromium. Links come from app-portal-access, minted with fetch as an
// operator's backend would. Screenshots of every portal page, light and dark, laptop and phone,
// land in target/ui-screenshots/portal-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import {
  TOKEN, startHerald, startReceiver, launchBrowser, newPage, screenshot, eventually,
} from './harness.mjs';

const OPERATOR = 'Acme Cloud';
const FRAMERS = "'self' https://app.example.com";
const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let herald;
let receiver;
let chrome;
let appId;
let epId;

before(async () => {
  herald = await startHerald({
    env: {
      HERALD_PORTAL__OPERATOR_NAME: OPERATOR,
      HERALD_PORTAL__ACCENT: '#0a7d5a',
      HERALD_PORTAL__FRAME_ANCESTORS: FRAMERS,
    },
  });
  receiver = await startReceiver();
  chrome = await launchBrowser();
  for (const [name, description, example] of [
    ['invoice.paid', 'An invoice was paid in full.', { invoiceId: 'inv_123', amount: 4200, currency: 'EUR' }],
    ['invoice.voided', 'An invoice was cancelled before payment.', null],
  ]) {
    const schemas = example ? { 1: { type: 'object', properties: { invoiceId: { type: 'string' }, amount: { type: 'integer' } }, examples: [example] } } : undefined;
    const r = await api('POST', '/event-type', { name, description, schemas });
    assert.equal(r.status, 201, JSON.stringify(r.body));
  }
});

after(async () => {
  await chrome?.close();
  await receiver?.stop();
  await herald?.stop();
});

/** Call the API (set-up and cross-checks only; the portal is what is under test). */
async function api(method, path, body, token = TOKEN) {
  const resp = await fetch(`${herald.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

/** A portal link for customer-42, as the operator's backend would mint it. */
async function mint(body = {}) {
  const r = await api('POST', '/auth/app-portal-access/customer-42', { application: { name: 'Customer 42' }, ...body });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}

const withTheme = (url, theme) => url.replace('/portal/#', `/portal/?theme=${theme}#`);

async function openPortal(url, viewport = LAPTOP) {
  const p = await newPage(chrome.browser, viewport);
  await p.page.goto(url);
  await p.page.getByRole('heading', { level: 1 }).first().waitFor();
  return p;
}

function signedBy(secret, req) {
  const key = Buffer.from(secret.replace(/^whsec_/, ''), 'base64');
  const sig = createHmac('sha256', key).update(`${req.headers['webhook-id']}.${req.headers['webhook-timestamp']}.${req.body}`).digest('base64');
  return req.headers['webhook-signature'].split(' ').includes(`v1,${sig}`);
}

test('the link signs in, leaves the address bar, and a customer adds an endpoint, tests it and resends', async () => {
  const link = await mint();
  assert.match(link.url, /\/portal\/#token=hrld_app_/);
  const { page, context, problems } = await openPortal(link.url);
  await page.getByRole('heading', { name: 'Webhook endpoints' }).waitFor();
  assert.ok(!page.url().includes('token='), `token left in the address bar: ${page.url()}`);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.portal.token')), link.token);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.token')), null, 'the admin UI key is untouched');
  assert.equal((await page.locator('#brand-name').textContent()).trim(), `${OPERATOR} webhooks`);
  assert.equal(await page.evaluate(() => getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()), '#0a7d5a');
  await page.getByText('No endpoints yet').waitFor();

  // Add an endpoint, picking one event type from the catalogue (with its description and example).
  await page.getByRole('link', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: 'Add an endpoint' }).waitFor();
  await page.getByText('An invoice was paid in full.').waitFor();
  await page.getByText('Example payload').first().click();
  await page.getByText('"invoiceId": "inv_123"').waitFor();
  await page.getByLabel('URL').fill(`${receiver.url}/hook`);
  await page.getByLabel('Description').fill('Billing events');
  await page.getByLabel('invoice.paid').check();
  await page.getByLabel('Rate limit').fill('25');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: `${receiver.url}/hook` }).waitFor();
  const eps = await api('GET', '/app/customer-42/endpoint');
  assert.equal(eps.body.data.length, 1);
  const ep = eps.body.data[0];
  epId = ep.id;
  appId = (await api('GET', '/app/customer-42')).body.id;
  assert.deepEqual(ep.filterTypes, ['invoice.paid']);
  assert.equal(ep.rateLimit, 25);
  assert.equal(ep.description, 'Billing events');

  // A test event of that type arrives at the receiver, signed, and shows as delivered.
  await page.getByLabel('Event type').selectOption('invoice.paid');
  await page.getByRole('button', { name: 'Send test event' }).click();
  await page.getByText(/Sent message msg_/).waitFor();
  await eventually('the test event', () => receiver.received.length === 1);
  const first = receiver.received[0];
  // The event type's example is the payload.
  assert.equal(JSON.parse(first.body).invoiceId, 'inv_123');
  const deliveries = page.getByTestId('deliveries');
  await deliveries.getByText('Success').first().waitFor();
  await deliveries.getByText('200', { exact: true }).first().waitFor();
  await deliveries.getByText('invoice.paid').first().waitFor();

  // Resend it: the same message (same webhook-id) arrives again.
  await deliveries.getByRole('button', { name: /^Resend message/ }).first().click();
  await eventually('the resent message', () => receiver.received.length === 2);
  assert.equal(receiver.received[1].headers['webhook-id'], first.headers['webhook-id']);
  await eventually('two delivery rows', async () => (await deliveries.getByText('Success').count()) === 2);

  // The secret shown is the one deliveries are signed with.
  await page.getByRole('button', { name: 'Reveal secret' }).click();
  await page.getByTestId('secret').waitFor();
  const secret = (await page.getByTestId('secret').textContent()).trim();
  assert.match(secret, /^whsec_/);
  assert.ok(signedBy(secret, first), 'the delivery verifies with the revealed secret');

  // Every language has a snippet; the curl one, run as shown, sends a request our signature check accepts.
  for (const lang of ['Python', 'Node', 'Go', 'Ruby', 'PHP']) {
    await page.getByTestId(`lang:${lang}`).click();
    assert.match(await page.getByTestId('snippet').textContent(), /WEBHOOK_SECRET/);
  }
  await page.getByTestId('lang:curl').click();
  const script = await page.getByTestId('snippet').textContent();
  await promisify(execFile)('bash', ['-c', script], { env: { ...process.env, WEBHOOK_SECRET: secret }, timeout: 10_000 });
  await eventually('the curl snippet request', () => receiver.received.length === 3);
  assert.ok(signedBy(secret, receiver.received[2]), 'the curl snippet signs as Herald does');

  // Health and breaker state are shown.
  await page.getByTestId('health').getByText('Circuit breaker').waitFor();
  await page.getByTestId('health').getByText('Closed').waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test('a token without ManageEndpoint sees no edit controls, and its edit calls are refused', async () => {
  assert.ok(epId, 'runs after the endpoint test');
  const link = await mint({ capabilities: ['ViewBase'] });
  const { page, context, problems } = await openPortal(link.url);
  await page.getByRole('link', { name: `${receiver.url}/hook` }).waitFor();
  assert.equal(await page.getByRole('link', { name: 'Add endpoint' }).count(), 0);
  await page.getByRole('link', { name: `${receiver.url}/hook` }).click();
  await page.getByTestId('settings-readonly').waitFor();
  await page.getByTestId('deliveries').getByText('Success').first().waitFor();
  for (const name of ['Save', 'Delete endpoint', 'Reveal secret', 'Rotate secret', 'Send test event', 'Recover']) {
    assert.equal(await page.getByRole('button', { name }).count(), 0, `${name} is shown`);
  }
  assert.equal(await page.getByRole('button', { name: /^Resend/ }).count(), 0);
  assert.equal(await page.locator('form input, form select').count(), 0, 'no form fields at all');
  // The verify snippets stay: the customer still needs them.
  await page.getByTestId('snippet').waitFor();

  // What the page hides, the server refuses to this token.
  const base = `/app/${appId}/endpoint/${epId}`;
  const msg = (await api('GET', `/app/${appId}/msg`)).body.data[0].id;
  for (const [method, path, body] of [
    ['POST', `/app/${appId}/endpoint`, { url: 'https://example.com/x' }],
    ['PATCH', base, { description: 'changed' }],
    ['PUT', base, { url: 'https://example.com/y' }],
    ['DELETE', base],
    ['GET', `${base}/secret`],
    ['POST', `${base}/secret/rotate`, {}],
    ['POST', `${base}/send-example`, { eventType: 'invoice.paid' }],
    ['POST', `${base}/recover`, { since: new Date(Date.now() - 3600_000).toISOString() }],
    ['POST', `/app/${appId}/msg/${msg}/endpoint/${epId}/resend`, {}],
  ]) {
    const r = await api(method, path, body, link.token);
    assert.equal(r.status, 403, `${method} ${path}: ${JSON.stringify(r.body)}`);
    assert.equal(r.body.code, 'forbidden');
  }
  assert.equal((await api('GET', base)).body.description, 'Billing events');
  assert.deepEqual(problems, []);
  await context.close();
});

test('an expired link shows the expired page, also when it expires while open', async () => {
  const old = await mint({ expiry: 3600, sessionId: 'expired-one' });
  const open = await mint({ expiry: 3600, sessionId: 'expires-while-open' });
  assert.equal((await api('POST', '/auth/app/customer-42/expire-all', { sessionIds: ['expired-one'] })).status, 204);
  const a = await openPortal(old.url);
  await a.page.getByRole('heading', { name: `This link has expired — ask ${OPERATOR} for a new one.` }).waitFor();
  assert.equal(await a.page.evaluate(() => sessionStorage.getItem('herald.portal.token')), null);
  await a.context.close();

  const b = await openPortal(open.url);
  await b.page.getByRole('heading', { name: 'Webhook endpoints' }).waitFor();
  assert.equal((await api('POST', '/auth/app/customer-42/expire-all', { sessionIds: ['expires-while-open'] })).status, 204);
  // The next poll is refused: the page says so instead of showing stale data.
  await b.page.getByRole('heading', { name: 'This link has expired' }).waitFor();
  await b.context.close();
  // A 401 in the console is the browser logging the refused fetch, not a page error.
  for (const p of [a, b]) assert.deepEqual(p.problems.filter((x) => !/401/.test(x)), []);
});

test('the portal answers with the configured frame-ancestors', async () => {
  const r = await fetch(`${herald.url}/portal/`);
  assert.equal(r.status, 200);
  assert.match(r.headers.get('content-security-policy'), new RegExp(`frame-ancestors ${FRAMERS}$`));
  assert.equal(r.headers.get('x-frame-options'), null);
  const admin = await fetch(`${herald.url}/`);
  assert.match(admin.headers.get('content-security-policy'), /frame-ancestors 'none'$/);
});

test('the admin UI\'s Portal link button mints a link that opens the portal', async () => {
  const { page, context, problems } = await newPage(chrome.browser);
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.goto(`${herald.url}/#/apps/${appId}`);
  await page.getByRole('button', { name: 'Portal link' }).click();
  await page.getByLabel('Add, edit and delete endpoints (and their secrets)').uncheck();
  await page.getByRole('button', { name: 'Create link' }).click();
  const url = await page.getByTestId('portal-url').inputValue();
  assert.match(url, new RegExp(`^${herald.url}/portal/#token=hrld_app_`));
  await screenshot(page, 'portal-admin-link-dialog');
  const token = url.split('#token=')[1];
  const me = await api('GET', '/auth/app-token', undefined, token);
  assert.equal(me.body.appId, appId);
  assert.ok(!me.body.capabilities.includes('ManageEndpoint'), JSON.stringify(me.body));
  const p = await openPortal(url);
  await p.page.getByRole('heading', { name: 'Webhook endpoints' }).waitFor();
  assert.equal(await p.page.getByRole('link', { name: 'Add endpoint' }).count(), 0);
  await p.context.close();
  assert.deepEqual(problems, []);
  await context.close();
});

test('screenshots of every portal page, light and dark, laptop and phone', async () => {
  for (const [device, viewport] of [['laptop', LAPTOP], ['phone', PHONE]]) {
    for (const theme of ['light', 'dark']) {
      const link = await mint({ expiry: 3600, sessionId: `shots-${device}-${theme}` });
      const { page, context, problems } = await openPortal(withTheme(link.url, theme), viewport);
      assert.equal(await page.evaluate(() => document.documentElement.getAttribute('data-theme')), theme);
      const name = (what) => `portal-${what}-${theme}-${device}`;
      const fits = async (what) => {
        const over = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(over <= 0, `${what} overflows the ${device} width by ${over}px`);
      };
      await page.getByRole('link', { name: `${receiver.url}/hook` }).waitFor();
      await fits('list');
      await screenshot(page, name('endpoints'));
      await page.getByRole('link', { name: 'Add endpoint' }).click();
      await page.getByText('An invoice was paid in full.').waitFor();
      await page.getByText('Example payload').first().click();
      await fits('new');
      await screenshot(page, name('new-endpoint'));
      await page.goBack();
      await page.getByRole('link', { name: `${receiver.url}/hook` }).click();
      await page.getByTestId('deliveries').getByText('Success').first().waitFor();
      await page.getByRole('button', { name: 'Reveal secret' }).click();
      await page.getByTestId('secret').waitFor();
      await fits('endpoint');
      await screenshot(page, name('endpoint'));
      // Keyboard: the language tabs move with the arrow keys.
      await page.getByTestId('lang:Python').focus();
      await page.keyboard.press('ArrowRight');
      assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Node');
      await api('POST', '/auth/app/customer-42/expire-all', { sessionIds: [`shots-${device}-${theme}`] });
      await page.reload();
      await page.getByRole('heading', { name: 'This link has expired' }).waitFor();
      await fits('expired');
      await screenshot(page, name('expired'));
      assert.deepEqual(problems.filter((x) => !/401/.test(x)), []);
      await context.close();
    }
  }
});
