// The admin UI end to end: real Herald, real receiver, Debian's Chromium. Run by `cargo test`
// (tests/ui_browser.rs), or here with `HERALD_BIN=../../target/debug/herald node --test`.
// Screenshots of every main page land in target/ui-screenshots/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TOKEN, startHerald, startReceiver, launchBrowser, newPage, screenshot, eventually,
} from './harness.mjs';

let herald;
let receiver;
let chrome;

before(async () => {
  herald = await startHerald();
  receiver = await startReceiver();
  chrome = await launchBrowser();
});

after(async () => {
  await chrome?.close();
  await receiver?.stop();
  await herald?.stop();
});

async function signIn(page, token = TOKEN) {
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Call the API directly (set-up and cross-checks only; the UI is what is under test). */
async function api(method, path, body) {
  const resp = await fetch(`${herald.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

test('a wrong token shows an error and no data', async () => {
  const { page, context, problems } = await newPage(chrome.browser);
  await api('POST', '/app', { name: 'Secret Customer' });
  await signIn(page, 'not-the-token-at-all-0123456789abcdef');
  await assert.doesNotReject(page.getByRole('alert').filter({ hasText: 'Invalid token' }).waitFor());
  assert.equal(await page.getByText('Secret Customer').count(), 0);
  assert.equal(await page.getByRole('link', { name: 'Applications' }).isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.token')), null);
  await screenshot(page, 'signin-wrong-token');
  // 401s are the expected answer here, not page errors; anything else is.
  assert.deepEqual(problems.filter((p) => !p.includes('401')), []);
  await context.close();
});

test('an operator sets up an endpoint, watches a failure and resends it', async () => {
  const { page, context, problems } = await newPage(chrome.browser);

  // Sign in with the keyboard only.
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').focus();
  await page.keyboard.type(TOKEN);
  await page.keyboard.press('Enter');
  await page.getByTestId('dashboard').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.token')), TOKEN);

  // An event type.
  await page.getByRole('link', { name: 'Event types' }).click();
  await page.getByRole('button', { name: 'Create event type' }).click();
  let dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('order.created');
  await dialog.getByLabel('Description').fill('An order was placed');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await page.getByTestId('event-types').getByText('order.created').waitFor();
  await screenshot(page, 'event-types');

  // An application.
  await page.getByRole('link', { name: 'Applications' }).click();
  await page.getByRole('button', { name: 'Create application' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('Acme Shop');
  await dialog.getByLabel('UID').fill('acme');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await page.getByTestId('apps').getByRole('link', { name: 'Acme Shop' }).click();

  // An endpoint: a bad URL first, which the API refuses with a clear message.
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('URL').fill('ftp://nowhere.example');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.locator('.field-error').getByText('Must start with http:// or https://.').waitFor();
  await screenshot(page, 'endpoint-create-error');
  await dialog.getByLabel('URL').fill(`${receiver.url}/hooks/acme`);
  await dialog.getByLabel('Description').fill('Acme order system');
  await dialog.getByLabel('order.created').check();
  await dialog.getByRole('button', { name: 'Create' }).click();
  const endpoints = page.getByTestId('endpoints');
  await endpoints.getByText(`${receiver.url}/hooks/acme`).waitFor();
  await screenshot(page, 'endpoints');
  const apps = await api('GET', '/app?search=acme');
  const appId = apps.body.data[0].id;
  const eps = await api('GET', `/app/${appId}/endpoint`);
  assert.equal(eps.body.data.length, 1);
  assert.deepEqual(eps.body.data[0].filterTypes, ['order.created']);
  const epId = eps.body.data[0].id;

  // A test event that succeeds.
  await endpoints.getByRole('link', { name: `${receiver.url}/hooks/acme` }).click();
  await page.getByLabel('Event type').selectOption('order.created');
  await page.getByRole('button', { name: 'Send test event' }).click();
  await eventually('the test event at the receiver', () => receiver.received.length === 1);
  const attempts = page.getByTestId('attempts');
  await attempts.getByText('200').first().waitFor();
  assert.equal(receiver.received[0].path, '/hooks/acme');
  assert.ok(receiver.received[0].headers['webhook-signature'].startsWith('v1,'));
  await page.getByTestId('health').getByText('100%').waitFor();
  await screenshot(page, 'endpoint');

  // The receiver breaks: the failure and its response body show up without a reload.
  receiver.answer(500, 'receiver exploded: out of disk');
  await page.getByRole('button', { name: 'Send test event' }).click();
  await attempts.getByText('500').first().waitFor();
  await page.getByRole('link', { name: 'Acme Shop' }).click();
  await page.getByRole('link', { name: 'Messages' }).click();
  const messages = page.getByTestId('messages');
  await messages.getByText('Failed').waitFor({ timeout: 20_000 });
  await screenshot(page, 'messages');

  // Filter by status, then open the failed message.
  await page.getByLabel('Status').selectOption({ label: 'Failed' });
  await eventually('only the failed message listed', async () =>
    (await messages.getByRole('row').count()) === 2); // header + one message
  await messages.getByRole('link').first().click();
  const msgAttempts = page.getByTestId('attempts');
  // The newest attempt's response body, opened as a user would (polling must keep it open).
  await msgAttempts.getByText(/Response body/).first().click();
  await new Promise((r) => setTimeout(r, 2500));
  await msgAttempts.getByText('receiver exploded: out of disk').first().waitFor();
  await page.getByTestId('payload').getByText('"test": true').waitFor();
  const destinations = page.getByTestId('destinations');
  await destinations.getByText('Failed').waitFor();
  await screenshot(page, 'message-failed');

  // Fixed: resend, and the success appears without reloading the page.
  receiver.answer(200, 'ok');
  const before = receiver.received.length;
  await destinations.getByRole('button', { name: 'Resend' }).click();
  await eventually('the resend at the receiver', () => receiver.received.length > before);
  await destinations.getByText('Success').waitFor();
  await msgAttempts.getByText('200').first().waitFor();
  await screenshot(page, 'message-resent');
  const list = await api('GET', `/app/${appId}/attempt/endpoint/${epId}`);
  assert.deepEqual(
    list.body.data.map((a) => a.responseStatusCode).filter((c) => c === 200).length >= 2,
    true,
  );

  // The dashboard counts what happened.
  await page.getByRole('link', { name: 'Dashboard' }).click();
  await page.getByTestId('stat-delivered').getByText('2').waitFor();
  // Disk use, with the payload log and sled's records apart.
  await page.getByTestId('stat-store').getByText(/payloads \d.* records and queue \d/).waitFor();
  await screenshot(page, 'dashboard');

  // Sign out forgets the token.
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.getByLabel('API token').waitFor();
  assert.equal(await page.evaluate(() => sessionStorage.getItem('herald.token')), null);

  // The browser logs the refused bad URL (a 422 this test provoked); nothing else may appear.
  assert.deepEqual(problems.filter((p) => !/Failed to load resource.* 422/.test(p)), []);
  await context.close();
});

test('operator chores: search, pages, rename, delete, archive, secrets, headers, recover', async () => {
  const { page, context, problems } = await newPage(chrome.browser);
  for (let i = 1; i <= 25; i++) {
    const n = String(i).padStart(2, '0');
    assert.equal((await api('POST', '/app', { name: `Tenant ${n}`, uid: `tenant-${n}` })).status, 201);
  }
  await signIn(page);
  await page.getByTestId('dashboard').waitFor();
  await page.getByRole('link', { name: 'Applications' }).click();
  const apps = page.getByTestId('apps');

  // Search (server side) and pages.
  await page.getByLabel('Search applications').fill('tenant 2');
  await eventually('six matches', async () => (await apps.getByRole('row').count()) === 7);
  await page.getByLabel('Search applications').fill('');
  await eventually('a full first page', async () => (await apps.getByRole('row').count()) === 21);
  // The first row's name cell: the row's text also holds times ("5 s ago") that tick.
  const firstName = () => apps.getByRole('row').nth(1).getByRole('cell').first().textContent();
  const firstPage = await firstName();
  await page.getByRole('button', { name: 'Next' }).click();
  await eventually('the second page', async () => (await firstName()) !== firstPage);
  await screenshot(page, 'apps-page-2');
  await page.getByRole('button', { name: 'Previous' }).click();
  await eventually('back on the first page', async () => (await firstName()) === firstPage);

  // Rename and delete.
  await page.getByLabel('Search applications').fill('tenant-01');
  await eventually('one match', async () => (await apps.getByRole('row').count()) === 2);
  await apps.getByRole('button', { name: 'Rename' }).click();
  let dialog = page.getByRole('dialog');
  await dialog.getByLabel('Name').fill('Tenant One');
  await dialog.getByRole('button', { name: 'Save' }).click();
  await apps.getByText('Tenant One').waitFor();
  assert.equal((await api('GET', '/app/tenant-01')).body.name, 'Tenant One');
  await page.getByLabel('Search applications').fill('tenant-02');
  await eventually('one match', async () => (await apps.getByText('Tenant 02').count()) === 1);
  await apps.getByRole('button', { name: 'Delete' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  await apps.getByText(/No application matches/).waitFor();
  assert.equal((await api('GET', '/app/tenant-02')).status, 404);

  // Archive an event type.
  assert.equal((await api('POST', '/event-type', { name: 'invoice.paid', description: 'Paid' })).status, 201);
  await page.getByRole('link', { name: 'Event types' }).click();
  const types = page.getByTestId('event-types');
  await types.getByRole('row', { name: /invoice\.paid/ }).getByRole('button', { name: 'Archive' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  await types.getByRole('row', { name: /invoice\.paid/ }).getByText('Archived').waitFor();
  assert.equal((await api('GET', '/event-type/invoice.paid')).body.archived, true);

  // An endpoint's secret: reveal shows the real one; rotate replaces it.
  receiver.answer(500, 'down for maintenance');
  const ep = (await api('POST', '/app/tenant-01/endpoint', { url: `${receiver.url}/t1` })).body;
  const secret = (await api('GET', `/app/tenant-01/endpoint/${ep.id}/secret`)).body.key;
  await page.goto(`${herald.url}/#/apps/tenant-01/endpoints/${ep.id}`);
  await page.getByRole('button', { name: 'Reveal secret' }).click();
  await page.getByTestId('secret').getByText(secret).waitFor();
  await page.getByRole('button', { name: 'Rotate secret' }).click();
  await page.getByRole('dialog').getByRole('button', { name: 'Confirm' }).click();
  const rotated = await eventually('a new secret', async () => {
    const k = (await api('GET', `/app/tenant-01/endpoint/${ep.id}/secret`)).body.key;
    return k !== secret && k;
  });
  await page.getByTestId('secret').getByText(rotated).waitFor();

  // Edit: description and a custom header.
  await page.getByLabel('Description').fill('Tenant one hooks');
  await page.getByRole('button', { name: 'Add header' }).click();
  await page.getByLabel('Header key').last().fill('X-Tenant');
  await page.getByLabel('Header value').last().fill('one');
  await page.getByRole('button', { name: 'Save' }).click();
  // The form saves the endpoint, then its headers: wait for both.
  await eventually('the edit stored', async () =>
    (await api('GET', `/app/tenant-01/endpoint/${ep.id}`)).body.description === 'Tenant one hooks'
    && (await api('GET', `/app/tenant-01/endpoint/${ep.id}/headers`)).body.headers['X-Tenant'] === 'one');

  // A failed message, then recover once the receiver is back.
  const msg = (await api('POST', '/app/tenant-01/msg', { eventType: 'user.created', payload: { n: 1 } })).body;
  await eventually('the message failed', async () =>
    (await api('GET', `/app/tenant-01/msg/${msg.id}`)).body.status === 2, 20_000);
  await page.getByTestId('health').getByText('HTTP 500').waitFor();
  // Three failures in a row opened the endpoint's circuit breaker.
  await page.getByTestId('health').getByText('one try at a time', { exact: false }).waitFor();
  await screenshot(page, 'endpoint-failing');
  receiver.answer(200, 'ok');
  const before = receiver.received.filter((r) => r.path === '/t1' && r.headers['x-tenant'] === 'one').length;
  await page.getByLabel('Since').fill('2020-01-01T00:00');
  await page.getByRole('button', { name: 'Recover' }).click();
  await eventually('the recovered delivery', () =>
    receiver.received.filter((r) => r.path === '/t1' && r.headers['x-tenant'] === 'one').length > before);
  await eventually('the message delivered', async () =>
    (await api('GET', `/app/tenant-01/msg/${msg.id}`)).body.status === 0);
  await page.getByTestId('health').getByText('HTTP 200').waitFor();
  await page.getByTestId('health').getByText('Closed: up to', { exact: false }).waitFor();

  assert.deepEqual(problems, []);
  await context.close();
});

test('the keyboard alone creates an application and closes dialogs', async () => {
  const { page, context, problems } = await newPage(chrome.browser);
  await signIn(page);
  await page.getByRole('link', { name: 'Applications' }).click();
  await page.getByTestId('apps').locator('table, .empty').first().waitFor();
  // Tab from the top of the page to the create button (bounded).
  await page.locator('body').focus();
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement?.textContent === 'Create application');
  }
  assert.ok(reached, 'Tab never reached "Create application"');
  await page.keyboard.press('Enter');
  const dialog = page.getByRole('dialog');
  await dialog.waitFor();
  assert.equal(await page.evaluate(() => document.activeElement?.name), 'name', 'focus starts in the first field');
  await page.keyboard.press('Escape');
  await dialog.waitFor({ state: 'hidden' });
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Create application',
    'focus returns to the opener');
  await page.keyboard.press('Enter');
  await dialog.waitFor();
  await page.keyboard.type('Keyboard Co');
  await page.keyboard.press('Enter');
  await dialog.waitFor({ state: 'hidden' });
  await page.getByTestId('apps').getByRole('link', { name: 'Keyboard Co' }).waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test('pages fit a phone screen', async () => {
  const { page, context, problems } = await newPage(chrome.browser, { width: 375, height: 800 });
  await signIn(page);
  await page.getByTestId('dashboard').waitFor();
  const acme = (await api('GET', '/app/acme')).body;
  const msgs = (await api('GET', `/app/${acme.id}/msg`)).body.data;
  const eps = (await api('GET', `/app/${acme.id}/endpoint`)).body.data;
  const pages = [
    ['phone-dashboard', '#/', 'dashboard'],
    ['phone-apps', '#/apps', 'apps'],
    ['phone-endpoints', `#/apps/${acme.id}/endpoints`, 'endpoints'],
    ['phone-endpoint', `#/apps/${acme.id}/endpoints/${eps[0].id}`, 'health'], // its other sections start closed
    ['phone-messages', `#/apps/${acme.id}/messages`, 'messages'],
    ['phone-message', `#/apps/${acme.id}/messages/${msgs[0].id}`, 'attempts'],
    ['phone-event-types', '#/event-types', 'event-types'],
  ];
  for (const [name, hash, region] of pages) {
    await page.goto(`${herald.url}/${hash}`);
    await page.getByTestId(region).locator('table, .empty, .stat, .kv-list').first().waitFor();
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `${name} is ${overflow}px wider than the screen`);
    await screenshot(page, name);
  }
  assert.deepEqual(problems, []);
  await context.close();
});
