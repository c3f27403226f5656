// The payload filter field and its "Try it" box on the admin endpoint page, end to end: a bad
// filter is marked with the server's position, Try it answers for the filter as typed, and Save
// stores it. Run with `HERALD_BIN=../../target/debug/herald node --test filters.test.mjs`.
// Screenshot: target/ui-screenshots/filters-endpoint-laptop.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { TOKEN, startHerald, launchBrowser, newPage, screenshot } from './harness.mjs';

let herald;
let chrome;
let appId;
let epId;

async function api(method, path, body) {
  const resp = await fetch(`${herald.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

before(async () => {
  herald = await startHerald();
  chrome = await launchBrowser();
  appId = (await api('POST', '/app', { name: 'Filter Shop' })).body.id;
  epId = (await api('POST', `/app/${appId}/endpoint`, { url: 'https://example.com/hooks' })).body.id;
});

after(async () => {
  await chrome?.close();
  await herald?.stop();
});

test('a payload filter is checked, tried and saved from the endpoint page', async () => {
  const { page, context, problems } = await newPage(chrome.browser, { width: 1280, height: 800 });
  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByTestId('dashboard').waitFor();
  await page.goto(`${herald.url}/#/apps/${appId}/endpoints/${epId}`);
  const filter = page.getByLabel('Payload filter');
  await filter.fill('$.total >');
  await page.getByRole('button', { name: 'Save' }).click();
  await page.locator('.field-error').getByText('position 9: expected a value').waitFor();

  await filter.fill('$.total > 100 and $.currency in ["EUR", "USD"]');
  const sample = page.getByLabel('Sample payload (JSON)');
  await sample.fill('{"total": 250, "currency": "EUR"}');
  await page.getByRole('button', { name: 'Try it' }).click();
  await page.getByText('Matches: this payload would be delivered.').waitFor();
  await sample.fill('{"total": 250, "currency": "GBP"}');
  await page.getByRole('button', { name: 'Try it' }).click();
  await page.getByText('No match: this payload would not be delivered.').waitFor();
  await screenshot(page, 'filters-endpoint-laptop');

  await page.getByRole('button', { name: 'Save' }).click();
  await page.getByText('Endpoint saved.').waitFor();
  const stored = (await api('GET', `/app/${appId}/endpoint/${epId}`)).body;
  assert.equal(stored.filter, '$.total > 100 and $.currency in ["EUR", "USD"]');
  assert.deepEqual(problems.filter((p) => !p.includes('422')), []);
  await context.close();
});

test('the portal form adds an endpoint with a payload filter and tries it', async () => {
  const link = (await api('POST', '/auth/app-portal-access/filter-customer', { application: { name: 'Filter Customer' } })).body;
  const { page, context, problems } = await newPage(chrome.browser, { width: 1280, height: 800 });
  await page.goto(link.url);
  await page.getByRole('heading', { name: 'Webhook endpoints' }).waitFor();
  await page.getByRole('link', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: 'Add an endpoint' }).waitFor();
  await page.getByLabel('URL').fill('https://example.com/portal-hook');
  await page.getByLabel('Payload filter').fill('$.amount >');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.locator('.field-error').getByText('position 10: expected a value').waitFor();
  await page.getByLabel('Payload filter').fill('$.amount > 100');
  await page.getByRole('button', { name: 'Add endpoint' }).click();
  await page.getByRole('heading', { name: 'https://example.com/portal-hook' }).waitFor();
  await page.getByLabel('Sample payload (JSON)').fill('{"amount": 150}');
  await page.getByRole('button', { name: 'Try it' }).click();
  await page.getByText('Matches: this payload would be delivered.').waitFor();
  await screenshot(page, 'filters-portal-laptop');
  const eps = (await api('GET', '/app/filter-customer/endpoint')).body.data;
  assert.deepEqual(eps.map((e) => e.filter), ['$.amount > 100']);
  assert.deepEqual(problems.filter((p) => !p.includes('422')), []);
  await context.close();
});
