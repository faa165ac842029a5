// Shared setup for the browser tests: the real pushwire binary on a loopback port, Debian's
// Chromium driven by playwright-core, and small helpers that read the page's DOM.
//
// Every wait has an upper bound; none sleeps to wait for a condition.
'use strict';

const { after, before } = require('node:test');

const assert = require('node:assert/strict');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { chromium } = require('playwright-core');

const ROOT = path.resolve(__dirname, '..', '..');
const TARGET = path.resolve(ROOT, process.env.CARGO_TARGET_DIR || 'target');
const BINARY = process.env.PUSHWIRE_BIN || path.join(TARGET, 'debug', 'pushwire');
const PACKET_LINK = path.join(TARGET, 'debug', 'packet-link');
const SCREENSHOTS = path.join(ROOT, 'artifacts', 'screenshots');
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

/** Upper bound for one condition on a page (a message arriving, a reconnect). */
const WAIT_MS = 15000;
/** Upper bound for the server to print its address or to exit. */
const SERVER_MS = 20000;

function ensureBinary(binary = BINARY, pkg = 'pushwire') {
  if (!fs.existsSync(binary)) {
    execFileSync('cargo', ['build', '-p', pkg, '--bin', path.basename(binary)], {
      cwd: ROOT,
      stdio: 'inherit',
      timeout: 15 * 60 * 1000,
    });
  }
}

/**
 * Starts `pushwire --addr <addr> [extraArgs]` and resolves once it prints its URL line
 * (`open http://A/`, with `--tls` `open https://A/`, with `--tls-addr` `open http://A/
 * or https://B/`). Returns `{ url, port, https, stop() }`: `url` and `port` are the
 * first address printed (--addr's), `https` the https:// URL if there is one, else null;
 * `stop()` sends SIGTERM and waits for the exit (SIGKILL if it does not come in time).
 *
 * With `link` (`packet-link`'s arguments before its `--`, e.g. `['--loss', '2']`),
 * pushwire runs on the server side of a packet link (serve at `10.99.0.1:0`), and the
 * result also has `clientSide`: the path through which a process enters the other side
 * (`launchBrowser({ clientSide })`), and `linkReport()`: what the link said when it
 * ended (call it after `stop()`).
 */
function startServer(addr = '127.0.0.1:0', extraArgs = [], { link } = {}) {
  ensureBinary();
  let [program, args] = [BINARY, ['--addr', addr, ...extraArgs]];
  if (link) {
    ensureBinary(PACKET_LINK, 'packet-link');
    [program, args] = [PACKET_LINK, [...link, '--', program, ...args]];
  }
  const child = spawn(program, args, {
    cwd: ROOT,
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  // 'close': exited, and everything it printed read.
  const exited = new Promise((resolve) => child.once('close', (code, signal) => resolve({ code, signal })));
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
  });
  return new Promise((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`pushwire printed no URL within ${SERVER_MS} ms; stderr:\n${stderr}`));
    }, SERVER_MS);
    child.stdout.on('data', (chunk) => {
      stdout += chunk;
      // The whole line: with two addresses, a chunk may end between them.
      const match = stdout.match(/open (https?:\/\/\S+\/)(?: or (https?:\/\/\S+\/))? \(Ctrl-C to stop\)/);
      if (!match) return;
      clearTimeout(timer);
      const [url, second] = [match[1], match[2]];
      resolve({
        clientSide: stdout.match(/client side [\d.]+: nsenter --net=(\S+)/)?.[1],
        linkReport: () => stdout.match(/^packet link: \d+ packets.*$/m)?.[0],
        url,
        port: Number(new URL(url).port),
        https: [url, second].find((u) => u?.startsWith('https:')) ?? null,
        stop: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return exited;
          child.kill('SIGTERM');
          const killer = setTimeout(() => child.kill('SIGKILL'), SERVER_MS);
          const result = await exited;
          clearTimeout(killer);
          return result;
        },
      });
    });
    exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`pushwire exited (${code ?? signal}) before printing its URL; stderr:\n${stderr}`));
    });
  });
}

/**
 * Starts Chromium; with `clientSide` (`startServer`'s, over a packet link) on the link's
 * client side, through `nsenter`, where `secureOrigin` (the server's plain-HTTP origin,
 * not loopback there) is treated as secure so the page may open WebTransport.
 */
async function launchBrowser({ clientSide, secureOrigin } = {}) {
  let executablePath = CHROMIUM;
  let dir = null;
  const extra = [];
  if (clientSide) {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pushwire-chromium-'));
    executablePath = path.join(dir, 'chromium-on-the-client-side');
    fs.writeFileSync(executablePath, `#!/bin/sh\nexec nsenter --net=${clientSide} ${CHROMIUM} "$@"\n`, { mode: 0o755 });
    extra.push(`--unsafely-treat-insecure-origin-as-secure=${secureOrigin}`);
  }
  const launched = chromium.launch({
    executablePath,
    args: [
      ...extra,
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--no-first-run',
      '--disable-sync',
    ],
    timeout: SERVER_MS,
  });
  // The wrapper is only run to start Chromium: gone once it has, or has failed to.
  return launched.finally(() => dir && fs.rmSync(dir, { recursive: true, force: true }));
}

/**
 * Opens the chat in a fresh browser context (its own cookie jar and connection pool,
 * like a second person) and waits until its transport is live. The page starts on
 * `transport` (long-poll unless a test says otherwise; `null`: the page's own default,
 * Auto) unless `url` names one. An https:// `url` is the server's self-signed
 * certificate: the context accepts it. `setup(context)` runs before the page loads (to
 * route requests, seed storage). The returned page has `errors`: uncaught exceptions and
 * console errors seen on it.
 */
async function openChat(
  browser,
  url,
  { viewport = { width: 1280, height: 900 }, transport = 'long-poll', context: options = {}, setup } = {},
) {
  const address = new URL(url);
  const tls = address.protocol === 'https:' ? { ignoreHTTPSErrors: true } : {};
  const context = await browser.newContext({ viewport, ...tls, ...options });
  await setup?.(context);
  if (transport && !address.searchParams.has('transport')) address.searchParams.set('transport', transport);
  url = address.href;
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.errors = [];
  page.on('pageerror', (error) => page.errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    if (message.type() === 'error') page.errors.push(`console: ${message.text()}`);
  });
  await page.goto(url);
  await waitLive(page);
  return page;
}

/** Waits until the page's active transport (optionally a given one) is live. */
async function waitLive(page, transport) {
  const selector = transport
    ? `#status[data-state="live"][data-transport="${transport}"]`
    : '#status[data-state="live"]';
  await page.waitForSelector(selector, { timeout: WAIT_MS });
}

/** Picks a transport with the keyboard-free path a reader would use: its label. */
async function chooseTransport(page, transport) {
  await page.click(`label[for="t-${transport}"]`);
}

/** Sends `body` through the page's form and waits for the POST to be answered. */
async function send(page, body) {
  await page.fill('#body', body);
  const answered = page.waitForResponse((r) => r.url().endsWith('/a/message/new') && r.request().method() === 'POST', {
    timeout: WAIT_MS,
  });
  await page.press('#body', 'Enter');
  const response = await answered;
  assert.equal(response.status(), 200, `POST of ${JSON.stringify(body)}`);
  return response.json();
}

/** The current (not greyed-out) messages on the page, in page order. */
async function messages(page) {
  return page.$$eval('#inbox .msg:not(.stale)', (items) =>
    items.map((item) => ({
      id: item.dataset.id,
      seq: Number(item.dataset.seq),
      body: item.querySelector('.body').textContent,
    })),
  );
}

/** Waits until every body in `bodies` is shown (not greyed out) on the page. */
async function waitForBodies(page, bodies) {
  await page.waitForFunction(
    (expected) => {
      const shown = new Set([...document.querySelectorAll('#inbox .msg:not(.stale) .body')].map((b) => b.textContent));
      return expected.every((body) => shown.has(body));
    },
    bodies,
    { timeout: WAIT_MS },
  );
}

/**
 * Waits until a cell of the "Under the hood" table (`row` is its label, `transport` its
 * column) matches `pattern`, and returns its text. The page redraws its panels a moment
 * after each event, hence the wait.
 */
async function hood(page, row, transport, pattern = /^/) {
  const cell = await page.waitForFunction(
    ([label, name, source, flags]) => {
      const tr = [...document.querySelectorAll('#hood tbody tr')].find((r) => r.cells[0].textContent === label);
      const text = tr?.querySelector(`td[data-transport="${name}"]`)?.textContent;
      return text !== undefined && new RegExp(source, flags).test(text) ? text : null;
    },
    [row, transport, pattern.source, pattern.flags],
    { timeout: WAIT_MS },
  );
  return cell.jsonValue();
}

/**
 * Waits until Under the hood says that `transport` is carried by HTTP `version` ('2',
 * '1.1'; '' for not known), and returns what the cell shows.
 */
async function hoodHttp(page, transport, version) {
  const cell = await page.waitForSelector(`#hood td[data-transport="${transport}"][data-http="${version}"]`, {
    timeout: WAIT_MS,
  });
  return cell.textContent();
}

/** The gauge `pushwire_subscribers{transport, http}` of the server's /metrics at `url`
 *  (fetched by `get(url)`: Node's `fetch`, or a browser context's `request.get`). */
async function subscribers(url, transport, http, get = fetch) {
  const response = await get(new URL('/metrics', url).href);
  const text = await response.text();
  const line = text
    .split('\n')
    .find((l) => l.startsWith('pushwire_subscribers{') && l.includes(`transport="${transport}"`) && l.includes(`http="${http}"`));
  assert.ok(line, `no pushwire_subscribers{transport="${transport}",http="${http}"} in /metrics:\n${text}`);
  return Number(line.split(' ').at(-1));
}

/** Waits until the latency chart of `transport` holds `count` round trips. */
async function waitSamples(page, transport, count) {
  await page.waitForSelector(`.chart-box[data-transport="${transport}"][data-samples="${count}"]`, {
    timeout: WAIT_MS,
  });
}

/** `promise`, or a failure naming `what` after WAIT_MS. */
async function withTimeout(promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

async function screenshot(page, name, options = {}) {
  fs.mkdirSync(SCREENSHOTS, { recursive: true });
  await page.screenshot({
    path: path.join(SCREENSHOTS, `${name}.png`),
    fullPage: true,
    animations: 'disabled',
    ...options,
  });
}

/** Asserts that the page ran without uncaught errors or console errors, except those
 *  matching `allowed` (e.g. the failed requests a server restart causes). */
function assertNoErrors(page, allowed = []) {
  const unexpected = page.errors.filter((e) => !allowed.some((pattern) => pattern.test(e)));
  assert.deepEqual(unexpected, [], 'errors on the page');
}

/**
 * Registers `before`/`after` hooks that start a server (with `startServer`'s arguments)
 * and a browser for the test file, and returns the object that holds them once started:
 * `{ server, browser }`. A test may replace `server` (e.g. after a restart); the `after`
 * hook stops whichever one is current.
 */
function useServerAndBrowser(...serverArgs) {
  const env = {};
  before(async () => {
    env.server = await startServer(...serverArgs);
    env.browser = await launchBrowser();
  });
  after(async () => {
    await env.browser?.close();
    await env.server?.stop();
  });
  return env;
}

/**
 * Turns race mode on, waits until `live` transports are live, publishes a burst of
 * `count` with the page's button, and waits until each of them has delivered all of it.
 */
async function raceBurst(page, count, live = 4) {
  await page.click('label[for="race"]');
  await page.waitForFunction((n) => document.querySelectorAll('#hood td.running .state-live').length === n, live, {
    timeout: WAIT_MS,
  });
  await page.fill('#burst-count', String(count));
  await page.click('#burst');
  await page.waitForFunction(
    ([rowCount, n]) => {
      const rows = [...document.querySelectorAll('#race-table tbody tr')];
      return rows.length === rowCount && rows.every((row) => row.querySelectorAll('td[data-arrived]').length === n);
    },
    [count, live],
    { timeout: WAIT_MS },
  );
}

/** One live page per transport: `{ 'long-poll': page, websocket: page, sse: page }`. */
async function pagePerTransport(env) {
  const pages = {};
  for (const transport of ['long-poll', 'websocket', 'sse']) {
    const page = await openChat(env.browser, env.server.url);
    await chooseTransport(page, transport);
    await waitLive(page, transport);
    pages[transport] = page;
  }
  return pages;
}

module.exports = {
  WAIT_MS,
  pagePerTransport,
  raceBurst,
  useServerAndBrowser,
  startServer,
  launchBrowser,
  openChat,
  waitLive,
  chooseTransport,
  send,
  messages,
  waitForBodies,
  hood,
  hoodHttp,
  subscribers,
  waitSamples,
  withTimeout,
  screenshot,
  assertNoErrors,
};
