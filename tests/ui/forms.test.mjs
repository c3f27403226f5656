// The admin UI's forms, dashboard, event types, dark mode and the endpoint page on a phone, end to
// end: real Herald, real receivers, Debian's Chromium. Run by `cargo test` (tests/ui_browser.rs),
// or here with `HERALD_BIN=../../target/debug/herald node --test forms.test.mjs`. Screenshots
// (laptop 1280×800 and phone 390×844, light and dark) land in target/ui-screenshots/forms-*.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TOKEN, startHerald, startReceiver, launchBrowser, newPage, screenshot, eventually,
} from './harness.mjs';

const LAPTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

let herald;
let receiver;
let broken;
let chrome;
let appId;
let epId;

before(async () => {
  herald = await startHerald();
  receiver = await startReceiver();
  broken = await startReceiver();
  broken.answer(503, 'down for maintenance');
  chrome = await launchBrowser();
  // One application with a healthy endpoint; a second with a failing one (for the dashboard).
  appId = (await api('POST', '/app', { name: 'Forms Shop', uid: 'forms-shop' })).body.id;
  epId = (await api('POST', `/app/${appId}/endpoint`, { url: `${receiver.url}/hooks` })).body.id;
  const other = (await api('POST', '/app', { name: 'Broken Co' })).body.id;
  await api('POST', `/app/${other}/endpoint`, { url: `${broken.url}/down`, description: 'always 503' });
  await api('POST', `/app/${other}/msg`, { eventType: 'user.created', payload: { n: 1 } });
  await api('POST', `/app/${appId}/msg`, { eventType: 'user.created', payload: { n: 2 } });
});

after(async () => {
  await chrome?.close();
  await broken?.stop();
  await receiver?.stop();
  await herald?.stop();
});

async function signIn(page) {
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('dashboard').waitFor();
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

/** The texts of the field errors shown in `scope`. */
const fieldErrorTexts = (scope) => scope.locator('.field-error').allInnerTexts();

test('create dialogs say Create; errors sit at each field, all at once, in words', async () => {
  const { page, context, problems } = await newPage(chrome.browser, LAPTOP);
  await signIn(page);

  // Event type: a bad name is refused in the browser, at the field.
  await page.getByRole('link', { name: 'Event types' }).click();
  await page.getByRole('button', { name: 'Create event type' }).click();
  let dialog = page.getByRole('dialog');
  assert.equal(await dialog.getByRole('button', { name: 'Save' }).count(), 0, 'a create dialog says Save');
  await dialog.getByLabel('Name').fill('invoice paid!');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.locator('.field-error').getByText('Use letters, digits, - _ . only (no spaces).').waitFor();
  assert.equal(await dialog.getByLabel('Name').getAttribute('aria-invalid'), 'true');
  await dialog.getByLabel('Name').fill('invoice.paid');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.getByTestId('event-types').getByText('invoice.paid').waitFor();

  // Application: two bad fields, two errors at once; then a uid the server refuses (taken).
  await page.getByRole('link', { name: 'Applications' }).click();
  await page.getByRole('button', { name: 'Create application' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByLabel('UID').fill('has space');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await eventually('two field errors', async () => (await fieldErrorTexts(dialog)).length === 2);
  assert.deepEqual(await fieldErrorTexts(dialog), ['Enter a name.', 'Use letters, digits, - _ . only (no spaces).']);
  await dialog.getByLabel('Name').fill('Second Shop');
  await dialog.getByLabel('UID').fill('forms-shop');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.locator('.field-error').getByText('Another application already has this UID.').waitFor();
  await dialog.getByRole('button', { name: 'Cancel' }).click();

  // Endpoint: URL, channels and a header name wrong at once; no raw keys or regex anywhere.
  await page.goto(`${herald.url}/#/apps/${appId}/endpoints`);
  await page.getByRole('button', { name: 'Create endpoint' }).click();
  dialog = page.getByRole('dialog');
  await dialog.getByRole('button', { name: 'Create', exact: true }).waitFor();
  assert.equal(await dialog.getByRole('button', { name: 'Save' }).count(), 0, 'a create dialog says Save');
  await dialog.getByLabel('URL').fill('example.com/hooks');
  await dialog.getByLabel('Channels').fill('orders, bad channel');
  await dialog.getByRole('button', { name: 'Add header' }).click();
  await dialog.getByLabel('Header key').last().fill('Bad Header:');
  await dialog.getByLabel('Header value').last().fill('1');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await eventually('three field errors', async () => (await fieldErrorTexts(dialog)).length === 3);
  const errors = await fieldErrorTexts(dialog);
  assert.deepEqual(errors, [
    'Write a full URL, like https://example.com/webhooks.',
    '“bad channel”: use letters, digits, - _ . : only (no spaces), at most 128 characters.',
    'Header names use letters, digits and - (no spaces or colons).',
  ]);
  await dialog.getByRole('alert').getByText('Check the 3 fields marked below.').waitFor();
  const text = await dialog.innerText();
  for (const raw of ['url:', 'headers.', '^[', 'must match']) assert.ok(!text.includes(raw), `raw "${raw}" shown: ${text}`);
  await screenshot(page, 'forms-endpoint-form-errors-laptop-light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await screenshot(page, 'forms-endpoint-form-errors-laptop-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // What only the server can tell lands at the field too: Herald's own 422 body, mapped by loc.
  const real = await api('POST', `/app/${appId}/endpoint`, { url: 'ftp://example.com/', headers: { 'Webhook-Id': 'x' } });
  assert.equal(real.status, 422);
  await page.route('**/api/v1/app/*/endpoint', (route) => (route.request().method() === 'POST'
    ? route.fulfill({ status: 422, contentType: 'application/json', body: JSON.stringify(real.body) })
    : route.fallback()));
  await dialog.getByLabel('URL').fill('https://example.com/hooks');
  await dialog.getByLabel('Channels').fill('');
  await dialog.getByLabel('Header key').last().fill('X-Fine');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.locator('.field-error').getByText('Must start with http:// or https://.').waitFor();
  const after = await dialog.innerText();
  assert.ok(after.includes('The header “Webhook-Id” is a header Herald sets itself'), after);
  await page.unroute('**/api/v1/app/*/endpoint');
  await dialog.getByRole('button', { name: 'Create' }).click();
  await dialog.waitFor({ state: 'hidden' });
  await page.getByTestId('endpoints').getByText('https://example.com/hooks').waitFor();

  assert.deepEqual(problems.filter((p) => !p.includes('409') && !p.includes('422')), []);
  await context.close();
});

test('recover refuses a future time and says why', async () => {
  const { page, context, problems } = await newPage(chrome.browser, LAPTOP);
  await signIn(page);
  await page.goto(`${herald.url}/#/apps/${appId}/endpoints/${epId}`);
  const tomorrow = new Date(Date.now() + 86_400_000);
  const p = (n) => String(n).padStart(2, '0');
  await page.getByLabel('Since').fill(`${tomorrow.getFullYear()}-${p(tomorrow.getMonth() + 1)}-${p(tomorrow.getDate())}T12:00`);
  await page.getByRole('button', { name: 'Recover' }).click();
  await page.locator('.field-error').getByText('This time is in the future: no message was created after it, so there is nothing to recover.').waitFor();
  assert.equal(await page.getByText('Recovery started').count(), 0);

  // The server refuses it too (a browser with a wrong clock): its words reach the same field.
  const since = new Date(Date.now() + 3_600_000).toISOString();
  const refused = await api('POST', `/app/${appId}/endpoint/${epId}/recover`, { since });
  assert.equal(refused.status, 422);
  await page.route('**/recover', (route) => route.fulfill({ status: 422, contentType: 'application/json', body: JSON.stringify(refused.body) }));
  await page.getByLabel('Since').fill('2020-01-01T00:00');
  await page.getByRole('button', { name: 'Recover' }).click();
  await page.locator('.field-error').getByText(/^Is in the future \(Herald's clock says .*\): no message was created after it, so there is nothing to recover\.$/).waitFor();
  await page.unroute('**/recover');
  await page.getByRole('button', { name: 'Recover' }).click();
  await page.getByText('Recovery started').waitFor();
  assert.deepEqual(problems.filter((p2) => !p2.includes('422')), []);
  await context.close();
});

test('an event type’s description, schema and example are edited; the example feeds send-example', async () => {
  const { page, context, problems } = await newPage(chrome.browser, LAPTOP);
  await signIn(page);
  await api('POST', '/event-type', { name: 'order.shipped', description: 'old words' });
  await page.getByRole('link', { name: 'Event types' }).click();
  await page.getByRole('button', { name: 'Edit order.shipped' }).click();
  const dialog = page.getByRole('dialog');
  assert.equal(await dialog.getByRole('button', { name: 'Save' }).count(), 1, 'an edit dialog says Save');
  await dialog.getByLabel('Description').fill('An order left the warehouse');
  await dialog.getByLabel('JSON Schema').fill('{"type": "object", "properties": {"order": {"type": "string"}}');
  await dialog.getByLabel('Example payload').fill('[1, 2]');
  await dialog.getByRole('button', { name: 'Save' }).click();
  await eventually('both JSON fields marked', async () => (await fieldErrorTexts(dialog)).length === 2);
  const errs = await fieldErrorTexts(dialog);
  assert.ok(errs[0].startsWith('Not valid JSON'), errs[0]);
  assert.equal(errs[1], 'Must be a JSON object ({ … }).');
  await dialog.getByLabel('JSON Schema').fill('{"type": "object", "properties": {"order": {"type": "string"}}}');
  await dialog.getByLabel('Example payload').fill('{"order": "ord_42", "carrier": "DHL"}');
  await dialog.getByRole('button', { name: 'Save' }).click();
  await dialog.waitFor({ state: 'hidden' });
  const row = page.getByTestId('event-types').getByRole('row').filter({ hasText: 'order.shipped' });
  await row.getByText('An order left the warehouse').waitFor();
  await row.getByText('Schema v1').waitFor();
  await row.getByText('Example').waitFor();
  const stored = (await api('GET', '/event-type/order.shipped')).body;
  assert.deepEqual(stored.schemas['1'].examples, [{ order: 'ord_42', carrier: 'DHL' }]);
  assert.equal(stored.schemas['1'].properties.order.type, 'string');
  await screenshot(page, 'forms-event-types-laptop-light');

  // Send test event on the endpoint page sends that example.
  const before = receiver.received.length;
  await page.goto(`${herald.url}/#/apps/${appId}/endpoints/${epId}`);
  await page.getByLabel('Event type').selectOption('order.shipped');
  await page.getByRole('button', { name: 'Send test event' }).click();
  await page.getByText('with the event type’s example payload').waitFor();
  await eventually('the example at the receiver', () => receiver.received.length > before);
  assert.deepEqual(JSON.parse(receiver.received.at(-1).body), { order: 'ord_42', carrier: 'DHL' });
  assert.deepEqual(problems, []);
  await context.close();
});

test('the dashboard lists failing endpoints and per-application counts, with a readable chart', async () => {
  const { page, context, problems } = await newPage(chrome.browser, LAPTOP);
  await signIn(page);
  const failing = page.getByTestId('failing-now');
  const link = failing.getByRole('link', { name: `${broken.url}/down` });
  await link.waitFor({ timeout: 20_000 });
  await failing.getByText(/Broken Co · HTTP 503/).waitFor();
  const counts = page.getByTestId('app-counts');
  const brokenRow = counts.getByRole('row').filter({ hasText: 'Broken Co' });
  assert.deepEqual(await brokenRow.getByRole('cell').allInnerTexts(), ['Broken Co', '1', '1', '0', await brokenRow.getByRole('cell').nth(4).innerText()]);
  const shopRow = counts.getByRole('row').filter({ hasText: 'Forms Shop' });
  await shopRow.getByRole('cell').nth(2).getByText('0').waitFor();
  // The chart: value ticks, time ticks, and the pointed minute's figures.
  const chart = page.getByTestId('chart');
  assert.ok((await chart.locator('.chart-scale span').count()) >= 3, 'value ticks');
  assert.equal(await chart.locator('.chart-axis span').count(), 5, 'time ticks');
  assert.equal(await chart.locator('.chart-axis span').last().innerText(), 'now');
  // 24-hour ticks like every other time, and the zone named.
  assert.match(await chart.locator('.chart-axis span').first().innerText(), /^\d\d:\d\d$/);
  await chart.getByText(/Times in UTC/).waitFor();
  // Herald started a minute ago: the chart spans a quarter hour, not an empty hour.
  assert.match(await chart.locator('svg').getAttribute('aria-label'), /over the last 15 minutes/);
  await chart.locator('rect.hit').last().hover();
  await page.getByTestId('chart-readout').getByText(/\d+ accepted, \d+ delivered, \d+ failed/).waitFor();
  await screenshot(page, 'forms-dashboard-laptop-light');
  // The failing endpoint's link opens its page.
  await link.click();
  await page.getByRole('heading', { name: `${broken.url}/down` }).waitFor();
  assert.deepEqual(problems, []);
  await context.close();
});

test('dark mode follows the system, and the toggle wins and is remembered', async () => {
  const { page, context, problems } = await newPage(chrome.browser, LAPTOP);
  const bg = () => page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  await page.emulateMedia({ colorScheme: 'light' });
  await signIn(page);
  const light = await bg();
  await page.emulateMedia({ colorScheme: 'dark' });
  await eventually('the system’s dark scheme followed', async () => (await bg()) !== light);
  const dark = await bg();
  await page.emulateMedia({ colorScheme: 'light' });
  await eventually('back to light', async () => (await bg()) === light);

  const toggle = page.getByRole('button', { name: 'Dark mode' });
  assert.equal(await toggle.getAttribute('aria-pressed'), 'false');
  await toggle.click();
  assert.equal(await bg(), dark);
  assert.equal(await toggle.getAttribute('aria-pressed'), 'true');
  await page.reload();
  await page.getByTestId('dashboard').waitFor();
  assert.equal(await bg(), dark, 'the choice survives a reload');
  assert.equal(await page.evaluate(() => localStorage.getItem('herald.theme')), 'dark');
  // The saved choice beats the system's light scheme; a text keeps its contrast.
  const textColour = await page.evaluate(() => getComputedStyle(document.querySelector('h1')).color);
  assert.notEqual(textColour, dark);
  await page.getByRole('button', { name: 'Dark mode' }).click();
  assert.equal(await bg(), light);
  assert.deepEqual(problems, []);
  await context.close();
});

test('the endpoint page fits a phone: sections collapsed, opened from the keyboard', async () => {
  const { page, context, problems } = await newPage(chrome.browser, PHONE);
  // Enough attempts to have made the old page long.
  for (let i = 0; i < 12; i++) await api('POST', `/app/${appId}/msg`, { eventType: 'user.created', payload: { i } });
  await eventually('attempts recorded', async () =>
    (await api('GET', `/app/${appId}/attempt/endpoint/${epId}?limit=20`)).body.data.length >= 12);
  await signIn(page);
  await page.goto(`${herald.url}/#/apps/${appId}/endpoints/${epId}`);
  await page.getByTestId('health').locator('.kv-list').waitFor();
  const height = await page.evaluate(() => document.documentElement.scrollHeight);
  assert.ok(height < 1500, `the endpoint page is ${height}px long at 390px`);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `${overflow}px wider than the screen`);
  assert.equal(await page.locator('details[open]').count(), 0, 'sections start closed on a phone');
  await screenshot(page, 'forms-endpoint-phone-light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await screenshot(page, 'forms-endpoint-phone-dark');
  await page.emulateMedia({ colorScheme: 'light' });

  // Keyboard: focus the section's summary, Enter opens it.
  const summary = page.locator('details[data-section="attempts"] > summary');
  await summary.focus();
  await page.keyboard.press('Enter');
  await page.getByTestId('attempts').locator('table').waitFor();
  assert.equal(await page.locator('details[data-section="attempts"]').getAttribute('open'), '');
  await page.keyboard.press('Enter');
  await page.getByTestId('attempts').waitFor({ state: 'hidden' });
  assert.deepEqual(problems, []);
  await context.close();
});

test('screenshots: laptop and phone, light and dark', async () => {
  for (const [size, viewport] of [['laptop', LAPTOP], ['phone', PHONE]]) {
    for (const scheme of ['light', 'dark']) {
      const { page, context, problems } = await newPage(chrome.browser, viewport);
      await page.emulateMedia({ colorScheme: scheme });
      await signIn(page);
      await page.getByTestId('failing-now').getByRole('link').first().waitFor({ timeout: 20_000 });
      await page.mouse.move(1, 1); // no minute pointed at
      await screenshot(page, `forms-dashboard-${size}-${scheme}`);
      await page.goto(`${herald.url}/#/apps/${appId}/endpoints/${epId}`);
      await page.getByTestId('health').locator('.kv-list').waitFor();
      if (size === 'laptop') await page.getByTestId('attempts').locator('table').waitFor();
      await screenshot(page, `forms-endpoint-${size}-${scheme}`);
      await page.goto(`${herald.url}/#/event-types`);
      await page.getByTestId('event-types').locator('table').waitFor();
      await screenshot(page, `forms-event-types-${size}-${scheme}`);
      await page.goto(`${herald.url}/#/apps/${appId}/endpoints`);
      await page.getByRole('button', { name: 'Create endpoint' }).click();
      const dialog = page.getByRole('dialog');
      await dialog.getByLabel('URL').fill('ftp://example.com');
      await dialog.getByLabel('Channels').fill('a b');
      await dialog.getByRole('button', { name: 'Create' }).click();
      await eventually('field errors', async () => (await fieldErrorTexts(dialog)).length === 2);
      await screenshot(page, `forms-endpoint-form-errors-${size}-${scheme}`);
      assert.deepEqual(problems, []);
      await context.close();
    }
  }
});
