// Messages, attempts, payloads and times in the admin UI (issue 14, items 8, 9, 11, 12, 15, 16,
// 18), end to end: real Herald, real receivers, Debian's Chromium, the browser in Paris's zone.
// Screenshots of the message page, the messages list and an attempts list at laptop and phone
// sizes, light and dark, land in target/ui-screenshots/ui1-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import {
  TOKEN, startHerald, startReceiver, launchBrowser, screenshot, eventually,
} from './harness.mjs';

let herald;
let ok;
let bad;
let chrome;
let app;
const eps = {};
let order;
const RAW = '{"order": 1001,   "items":[{"sku":"A-1","qty":2}],\n  "note":"exact bytes"}';

/** Call the API directly (set-up and cross-checks only; the UI is what is under test). */
async function api(method, path, body, raw) {
  const resp = await fetch(`${herald.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

/** A loopback port with nothing listening: deliveries there are refused. */
async function closedPort() {
  const s = createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

before(async () => {
  herald = await startHerald();
  ok = await startReceiver();
  bad = await startReceiver();
  bad.answer(500, 'upstream broke');
  chrome = await launchBrowser();
  app = (await api('POST', '/app', { name: 'Shop', uid: 'shop' })).body;
  const port = await closedPort();
  for (const [name, url] of [['ok', `${ok.url}/ok`], ['bad', `${bad.url}/bad`], ['refused', `http://127.0.0.1:${port}/hook`]]) {
    eps[name] = (await api('POST', `/app/${app.id}/endpoint`, { url, description: name })).body;
  }
  await api('POST', `/app/${app.id}/msg`, { eventType: 'user.signup', eventId: 'signup-7', payload: { user: 7 } });
  order = (await api('POST', `/app/${app.id}/msg`, null,
    `{"eventType":"order.created","eventId":"order-1001","payload":${RAW}}`)).body;
  const test1 = await api('POST', `/app/${app.id}/endpoint/${eps.ok.id}/send-example`, { eventType: 'order.created' });
  assert.equal(test1.status, 202);
  // Settled: both messages failed at "bad" and "refused" after the fast retries.
  await eventually('deliveries settled', async () => {
    const l = (await api('GET', `/app/${app.id}/msg?with_content=false&status=2`)).body;
    return l.data.length === 2;
  }, 30_000);
});

after(async () => {
  await chrome?.close();
  await ok?.stop();
  await bad?.stop();
  await herald?.stop();
});

/** A signed-in page in Paris's zone (UTC+1 in winter, UTC+2 in summer). */
async function open(hash, { viewport = { width: 1280, height: 800 }, colorScheme = 'light' } = {}) {
  const context = await chrome.browser.newContext({ viewport, colorScheme, timezoneId: 'Europe/Paris', locale: 'en-GB' });
  await context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: herald.url });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('dashboard').waitFor();
  await page.goto(`${herald.url}/${hash}`);
  return { page, context, problems };
}

const ZONE = /^\d{2}:\d{2}:\d{2} UTC\+[12]$/;

test('the message page shows progress per destination, why no response came, and the payload as stored', async () => {
  const { page, context, problems } = await open(`#/apps/${app.id}/messages/${order.id}`);
  const details = page.getByTestId('message-details');
  await details.getByTestId('progress').getByText('1 of 3 delivered, 2 failed').waitFor();

  // Times: 24-hour, the zone shown, UTC on hover.
  const created = details.locator('time').first();
  const shown = (await created.evaluate((t) => t.firstChild.textContent)).trim();
  assert.match(shown, ZONE);
  assert.match(await created.getAttribute('title'), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \(UTC\)$/);

  // The refused endpoint's attempts say so, with the reason, not "Response body".
  const attempts = page.getByTestId('attempts');
  await attempts.getByText('Connection refused', { exact: true }).first().waitFor();
  assert.match(await attempts.getByTestId('no-response-reason').first().textContent(), /connect|refused/i);
  await screenshot(page, 'ui1-message-laptop-light');

  // Attempt filters: no response only, then 5xx only.
  await page.getByLabel('HTTP class').selectOption({ label: 'No response' });
  await eventually('only refused attempts', async () => {
    const rows = await attempts.getByRole('row').count();
    return rows === 4 && (await attempts.getByText('Response body').count()) === 0; // header + 3 tries
  });
  await page.getByLabel('HTTP class').selectOption({ label: '5xx' });
  await eventually('only 500s', async () =>
    (await attempts.getByRole('row').count()) === 4 && (await attempts.getByText('Connection refused').count()) === 0);
  await page.getByLabel('Attempt result').selectOption({ label: 'Succeeded' });
  await attempts.getByText('No attempt matches these filters.').waitFor();
  await page.getByLabel('HTTP class').selectOption({ label: 'Any HTTP status' });
  await page.getByLabel('Attempt result').selectOption({ label: 'Any result' });
  await eventually('all attempts back', async () => (await attempts.getByRole('row').count()) === 8);

  // Payload: formatted by default; raw is the exact stored bytes; copy copies them.
  assert.equal(await page.getByTestId('payload-raw').isVisible(), false);
  await page.getByRole('button', { name: 'Raw' }).click();
  assert.equal(await page.getByTestId('payload-raw').textContent(), RAW);
  assert.equal(await page.getByTestId('payload').isVisible(), false);
  await page.getByRole('button', { name: 'Copy payload' }).click();
  await page.getByText('Payload copied (as stored).').waitFor();
  assert.equal(await page.evaluate(() => navigator.clipboard.readText()), RAW);
  await page.getByRole('button', { name: 'Formatted' }).click();
  assert.match(await page.getByTestId('payload').textContent(), /"sku": "A-1"/);

  // The words for states this run does not hold still (a retry is over in a second here).
  const words = await page.evaluate(async () => {
    const { progressText } = await import('/js/views/message.js');
    const d = (id, status) => ({ id, status });
    return [
      progressText([d('a', 0), d('b', 1), d('c', 2)], new Set(['a', 'b', 'c'])),
      progressText([d('a', 1), d('b', 3)], new Set()),
      progressText([], new Set()),
    ];
  });
  assert.deepEqual(words, ['1 of 3 delivered, 1 retrying, 1 failed', '0 of 2 delivered, 1 sending, 1 waiting', 'No destinations']);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the messages list finds, filters, marks test events and retries the failed ones', async () => {
  const { page, context, problems } = await open(`#/apps/${app.id}/messages`);
  const list = page.getByTestId('messages');
  await list.getByRole('row').nth(3).waitFor(); // header + 3 messages
  // eventIds beside the ids; the test event marked.
  await list.getByText('order-1001').waitFor();
  await list.getByText('signup-7').waitFor();
  const testRow = list.getByRole('row').filter({ has: page.locator('.badge', { hasText: /^test$/ }) });
  assert.equal(await testRow.count(), 1);
  assert.match(await list.locator('time').first().evaluate((t) => t.firstChild.textContent.trim()), ZONE);
  await screenshot(page, 'ui1-messages-laptop-light');

  await page.getByLabel('Test events').selectOption({ label: 'Hidden' });
  await eventually('test event hidden', async () => (await list.getByRole('row').count()) === 3);
  assert.equal(await list.locator('.badge', { hasText: /^test$/ }).count(), 0);
  await page.getByLabel('Test events').selectOption({ label: 'Only test events' });
  await eventually('only the test event', async () => (await list.getByRole('row').count()) === 2);
  await page.getByLabel('Test events').selectOption({ label: 'Hidden' });

  // A date range after now holds nothing; before now, everything.
  const tomorrow = new Date(Date.now() + 86_400_000);
  const local = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60_000).toISOString().slice(0, 16);
  await page.getByLabel(/^From \(UTC\+[12]\)$/).fill(local(tomorrow));
  await list.getByText('No message matches these filters.').waitFor();
  await page.getByLabel(/^From/).fill('');
  await page.getByLabel(/^To \(UTC/).fill(local(tomorrow));
  await eventually('both messages within the range', async () => (await list.getByRole('row').count()) === 3);
  await page.getByLabel(/^To \(UTC/).fill('');

  // Bulk retry of the failed ones, once "bad" works again.
  bad.answer(200, 'fixed');
  const sentBefore = bad.received.length;
  await page.getByRole('button', { name: 'Retry failed…' }).click();
  const dialog = page.getByRole('dialog');
  await dialog.getByRole('heading', { name: 'Retry 2 failed messages?' }).waitFor();
  await screenshot(page, 'ui1-bulk-retry-dialog');
  await dialog.getByRole('button', { name: 'Retry 2 messages' }).click();
  // Two endpoints failed for each of the two: four resends queued.
  await page.getByText('Resend queued for 4 deliveries of 2 messages.').waitFor();
  await dialog.waitFor({ state: 'hidden' });
  await eventually('the bad endpoint got both again', async () => bad.received.length >= sentBefore + 2);

  // Find by eventId, and a miss.
  await page.getByLabel('Find a message by id or eventId').fill('nope-404');
  await page.getByRole('button', { name: 'Open' }).click();
  await page.getByRole('alert').filter({ hasText: 'No message has the id or eventId “nope-404”.' }).waitFor();
  await page.getByLabel('Find a message by id or eventId').fill('order-1001');
  await page.getByRole('button', { name: 'Open' }).click();
  await page.waitForURL((u) => u.hash === `#/apps/${app.id}/messages/${order.id}`);
  await page.getByTestId('message-details').getByText('order-1001').waitFor();

  // The dashboard counts the test event apart.
  await page.goto(`${herald.url}/#/`);
  await page.getByTestId('stat-accepted').getByText('and 1 test event').waitFor();
  assert.equal((await page.getByTestId('stat-accepted').locator('.stat-value').textContent()).trim(), '2');
  // 404s of the miss above are the expected answer.
  assert.deepEqual(problems.filter((p) => !/Failed to load resource.* 404/.test(p)), []);
  await context.close();
});

test('an endpoint\'s attempts filter by HTTP class and show each message\'s event type and eventId', async () => {
  const { page, context, problems } = await open(`#/apps/${app.id}/endpoints/${eps.refused.id}`);
  const attempts = page.getByTestId('attempts');
  await attempts.getByText('order-1001').first().waitFor();
  await attempts.getByText('user.signup').first().waitFor();
  await attempts.getByText('Connection refused', { exact: true }).first().waitFor();
  await screenshot(page, 'ui1-attempts-laptop-light');
  await page.getByLabel('HTTP class').selectOption({ label: '2xx' });
  await attempts.getByText('No attempt matches these filters.').waitFor();
  await page.getByLabel('HTTP class').selectOption({ label: 'No response' });
  await attempts.getByText('order-1001').first().waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test('screenshots: laptop and phone, light and dark', async () => {
  const views = [
    ['message', `#/apps/${app.id}/messages/${order.id}`, 'attempts'],
    ['messages', `#/apps/${app.id}/messages`, 'messages'],
    ['attempts', `#/apps/${app.id}/endpoints/${eps.refused.id}`, 'attempts'],
  ];
  const sizes = [['laptop', { width: 1280, height: 800 }], ['phone', { width: 390, height: 844 }]];
  for (const [size, viewport] of sizes) {
    for (const colorScheme of ['light', 'dark']) {
      const { page, context, problems } = await open('#/', { viewport, colorScheme });
      for (const [name, hash, region] of views) {
        await page.goto(`${herald.url}/${hash}`);
        // On a phone the endpoint page's sections start collapsed: open the attempts.
        await page.getByTestId(region).locator('table, .empty').first().waitFor({ state: 'attached' });
        const closed = page.locator('details[data-section="attempts"]:not([open]) > summary');
        if (await closed.count()) await closed.click();
        await page.getByTestId(region).locator('table, .empty').first().waitFor();
        const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
        assert.ok(overflow <= 0, `${name} (${size}) is ${overflow}px wider than the screen`);
        await screenshot(page, `ui1-${name}-${size}-${colorScheme}`);
      }
      assert.deepEqual(problems, []);
      await context.close();
    }
  }
});
