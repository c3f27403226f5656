// The real pieces the browser tests drive: a Herald server (the binary cargo built, on
// 127.0.0.1:0 with a temporary data directory), a webhook receiver whose answer a test can change,
// and Debian's Chromium through playwright-core (never a downloaded browser).

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, '..', '..');
export const TOKEN = 'ui-test-admin-token-0123456789abcdefghijklmnop';

/** Start Herald (with extra `HERALD_*` variables in `env`); resolves once it logs its listening address. */
export async function startHerald({ env = {} } = {}) {
  const bin = process.env.HERALD_BIN || join(repo, 'target', 'debug', 'herald');
  const dataDir = mkdtempSync(join(tmpdir(), 'herald-ui-'));
  const child = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir], {
    env: {
      ...process.env,
      RUST_LOG: '',
      HERALD_LOG: 'info',
      HERALD_ADMIN_TOKEN: TOKEN,
      // The receiver is on loopback, which the SSRF guard refuses unless allowed.
      HERALD_DELIVERY__ALLOWED_CIDRS: '127.0.0.0/8',
      // Retries within seconds, so a failing delivery settles while the test watches.
      HERALD_DELIVERY__RETRY_SCHEDULE: '0.2,0.4',
      HERALD_DELIVERY__REQUEST_TIMEOUT: '2',
      ...env,
    },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let log = '';
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`herald did not start in 30 s:\n${log}`)), 30_000);
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk) => {
      log += chunk;
      const m = log.match(/listening on (http:\/\/127\.0\.0\.1:\d+)/);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`herald exited with ${code}:\n${log}`));
    });
  });
  return {
    url,
    logs: () => log,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A webhook receiver on 127.0.0.1:0 that records requests and answers `answer`. */
export async function startReceiver() {
  const received = [];
  const state = { status: 200, body: 'ok' };
  const server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body });
      res.writeHead(state.status, { 'content-type': 'text/plain' });
      res.end(state.body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    answer(status, body) {
      state.status = status;
      state.body = body;
    },
    stop: () => new Promise((r) => server.close(r)),
  };
}

/**
 * Headless Chromium from Debian, with the flags this closed network needs (Playwright gives it a
 * fresh temporary profile).
 */
export async function launchBrowser() {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  return { browser, close: () => browser.close() };
}

/**
 * A page that records console errors and warnings and uncaught exceptions: a test ends by
 * asserting there were none.
 */
export async function newPage(browser, viewport = { width: 1280, height: 800 }) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const problems = [];
  page.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`console.${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  return { page, context, problems };
}

export const screenshotDir = process.env.UI_SCREENSHOTS || join(repo, 'target', 'ui-screenshots');
mkdirSync(screenshotDir, { recursive: true });

export async function screenshot(page, name) {
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

/** Poll `f` until it returns a truthy value (bounded). */
export async function eventually(what, f, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await f();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
