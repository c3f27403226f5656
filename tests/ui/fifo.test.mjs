// FIFO endpoints in the admin UI: the settings form turns ordering on, and the endpoint page
// shows which failing message holds the rest back. Run by `cargo test --test ui_browser`, or here
// with `HERALD_BIN=../../target/debug/herald node --test fifo.test.mjs`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import {
  TOKEN, startHerald, startReceiver, launchBrowser, newPage, screenshot, eventually,
} from './harness.mjs';

let herald;
let receiver;
let chrome;

before(async () => {
  // Retries 5 s apart: the head stays blocked while the page is looked at.
  herald = await startHerald({ env: { HERALD_DELIVERY__RETRY_SCHEDULE: '5,5' } });
  receiver = await startReceiver();
  chrome = await launchBrowser();
});

after(async () => {
  await chrome?.close();
  await receiver?.stop();
  await herald?.stop();
});

async function api(method, path, body) {
  const resp = await fetch(`${herald.url}/api/v1${path}`, {
    method,
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await resp.text();
  return { status: resp.status, body: text ? JSON.parse(text) : null };
}

test('an operator makes an endpoint FIFO and sees the message that blocks it', async () => {
  const { page, context, problems } = await newPage(chrome.browser);
  await api('POST', '/app', { name: 'Ordered', uid: 'ordered' });
  const ep = (await api('POST', '/app/ordered/endpoint', { url: `${receiver.url}/in-order` })).body;
  assert.equal(ep.ordering, 'unordered');

  await page.goto(`${herald.url}/`);
  await page.getByLabel('API token').fill(TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.goto(`${herald.url}/#/apps/ordered/endpoints/${ep.id}`);
  await page.getByText('Unordered: several at once').waitFor();
  await page.getByLabel(/In order \(FIFO\)/).check();
  await page.getByRole('button', { name: /^Save/ }).click();
  await eventually('ordering saved', async () =>
    (await api('GET', `/app/ordered/endpoint/${ep.id}`)).body.ordering === 'fifo');

  receiver.answer(500, 'down');
  const head = (await api('POST', '/app/ordered/msg', { eventType: 'a', payload: { n: 0 } })).body.id;
  await api('POST', '/app/ordered/msg', { eventType: 'a', payload: { n: 1 } });
  await eventually('head failing', async () =>
    (await api('GET', `/app/ordered/endpoint/${ep.id}/health`)).body.blockedBy);
  await page.reload();
  const blocked = page.getByTestId('fifo-blocked');
  await blocked.waitFor();
  assert.match(await blocked.textContent(), new RegExp(`By ${head}, failing since`));
  await screenshot(page, 'endpoint-fifo-blocked');
  assert.ok(receiver.received.every((r) => JSON.parse(r.body).n === 0), 'nothing passed the head');
  assert.deepEqual(problems, []);
  await context.close();
});
