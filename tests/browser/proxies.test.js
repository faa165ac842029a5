// What stands between a browser and the server: real nginx proxies (tests/proxies/) in
// front of pushwire, each showing one trade-off of COMPARISON.md's table.
// - A proxy that does not pass WebSocket upgrades: Auto settles on SSE. WebTransport, tried
//   after WebSocket, goes around the proxy to pushwire's own UDP port, and pushwire refuses
//   a session from the proxy's page (another port: another origin, without --allow-origin).
// - One that also buffers responses: SSE's events never arrive, Auto falls back to long-poll.
// - A short idle timeout: keep-alives longer than it get the stream cut (it resumes
//   without loss); shorter ones hold it.
// - HTTP/1.1's six connections per origin cap SSE pages; HTTP/2 in front lifts the cap;
//   WebSockets are not counted against it.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const h = require('./harness');
const { startProxy } = require('./proxy');

const env = {};
before(async () => {
  env.server = await h.startServer('127.0.0.1:0');
  env.browser = await h.launchBrowser();
});
after(async () => {
  await env.browser?.close();
  await env.server?.stop();
});

/** Waits until Auto has settled on a page and returns what it carries the chat on. */
async function settled(page) {
  await page.waitForSelector('body[data-auto="settled"]', { timeout: h.WAIT_MS });
  await h.waitLive(page);
  return page.evaluate(() => document.body.dataset.transport);
}

/** A message posted straight to pushwire by someone else appears once on `page`. */
async function receivesOnce(page, body) {
  const other = await h.openChat(env.browser, env.server.url);
  await h.send(other, body);
  await h.waitForBodies(page, [body]);
  const shown = (await h.messages(page)).filter((m) => m.body === body);
  assert.equal(shown.length, 1, `${body} is shown ${shown.length} times`);
  await other.context().close();
}

test('behind a proxy that does not pass WebSocket upgrades, Auto settles on SSE', { timeout: 60000 }, async () => {
  const proxy = await startProxy('no-upgrade', env.server.port);
  try {
    const page = await h.openChat(env.browser, `${proxy.url}?transport=auto`, { transport: null });
    assert.equal(await settled(page), 'sse');
    assert.match(await page.textContent('#status-text'), /Auto → SSE · live — WebSocket refused by the network; WebTransport refused by the network → SSE/);
    await receivesOnce(page, 'through a proxy without upgrades');
    await h.screenshot(page, 'auto-no-upgrade');
    h.assertNoErrors(page, [/WebSocket connection to .* failed/, /Failed to establish a connection to .*\/webtransport/]);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('behind a proxy that also buffers responses, SSE never delivers and Auto falls back to long-poll', { timeout: 60000 }, async () => {
  const proxy = await startProxy('buffering', env.server.port);
  try {
    const page = await h.openChat(env.browser, `${proxy.url}?transport=auto`, { transport: null });
    assert.equal(await settled(page), 'long-poll');
    const status = await page.textContent('#status-text');
    assert.match(status, /WebSocket refused by the network; WebTransport refused by the network; SSE sent nothing within \d+ ms .* → Long-poll/);
    await receivesOnce(page, 'through a buffering proxy');
    h.assertNoErrors(page, [/WebSocket connection to .* failed/, /Failed to establish a connection to .*\/webtransport/]);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('Auto remembers what worked for the origin and says so next time', { timeout: 60000 }, async () => {
  const proxy = await startProxy('no-upgrade', env.server.port);
  try {
    const page = await h.openChat(env.browser, `${proxy.url}?transport=auto`, { transport: null });
    assert.equal(await settled(page), 'sse');
    await page.reload();
    assert.equal(await settled(page), 'sse');
    assert.match(await page.textContent('#status-text'), /remembered: WebSocket refused by the network; WebTransport refused by the network → SSE/);
    await page.context().close();
  } finally {
    await proxy.stop();
  }
});

test('straight to pushwire, Auto settles on WebSocket', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { transport: null });
  assert.equal(await page.evaluate(() => document.body.dataset.choice), 'auto');
  assert.equal(await settled(page), 'websocket');
  await receivesOnce(page, 'straight to the server');
  h.assertNoErrors(page);
  await page.context().close();
});

test('keep-alives longer than a proxy idle timeout: the stream is cut and resumes without loss', { timeout: 90000 }, async () => {
  const server = await h.startServer('127.0.0.1:0', ['--sse-keepalive', '10']);
  const proxy = await startProxy('idle-timeout', server.port);
  try {
    const page = await h.openChat(env.browser, `${proxy.url}?transport=sse`, { transport: null });
    await h.waitLive(page, 'sse');
    // 12 s with the proxy cutting every 5 s of silence (the keep-alive comes every 10 s).
    const other = await h.openChat(env.browser, server.url);
    const bodies = [];
    for (let i = 1; i <= 4; i += 1) {
      await page.waitForTimeout(3000);
      const body = `across the cuts ${i}`;
      await h.send(other, body);
      bodies.push(body);
    }
    await other.context().close();
    await h.waitForBodies(page, bodies);
    const reconnects = Number(await h.hood(page, 'Reconnects', 'sse', /^[1-9]/));
    assert.ok(reconnects >= 1, `the stream was never cut (${reconnects} reconnects)`);
    const shown = (await h.messages(page)).map((m) => m.body).filter((b) => b.startsWith('across the cuts'));
    assert.deepEqual(shown, bodies, 'each message once, in order');
    await page.context().close();
  } finally {
    await proxy.stop();
    await server.stop();
  }
});

test('keep-alives shorter than a proxy idle timeout: the stream holds', { timeout: 60000 }, async () => {
  const server = await h.startServer('127.0.0.1:0', ['--sse-keepalive', '2']);
  const proxy = await startProxy('idle-timeout', server.port);
  try {
    const page = await h.openChat(env.browser, `${proxy.url}?transport=sse`, { transport: null });
    await h.waitLive(page, 'sse');
    // Twice the proxy's 5 s idle timeout, and then some: an observation window.
    await page.waitForTimeout(12000);
    assert.equal(await h.hood(page, 'Reconnects', 'sse'), '0');
    assert.equal(await h.hood(page, 'Requests made', 'sse'), '1');
    await page.context().close();
  } finally {
    await proxy.stop();
    await server.stop();
  }
});

/** Opens `count` pages of `url` in one browser context (one connection pool, as the
 *  tabs of one browser) and returns them, their navigations under way. */
async function tabs(context, url, count) {
  const pages = [];
  for (let i = 0; i < count; i += 1) {
    const page = await context.newPage();
    page.navigation = page.goto(url, { timeout: 60000 }).catch((error) => error);
    pages.push(page);
  }
  return pages;
}

const isLive = (page, timeout) =>
  page
    .waitForSelector('#status[data-state="live"]', { timeout })
    .then(() => true)
    .catch(() => false);

test('over HTTP/1.1 the seventh SSE tab of an origin waits; through HTTP/2 all seven are live', { timeout: 120000 }, async () => {
  // Straight to pushwire, HTTP/1.1: six streams take the origin's six connections, and
  // whichever tab asked last waits for one.
  const direct = await env.browser.newContext();
  const pages = await tabs(direct, `${env.server.url}?transport=sse`, 7);
  const live = await Promise.all(pages.map((page) => isLive(page, h.WAIT_MS)));
  assert.equal(live.filter(Boolean).length, 6, `live tabs: ${live}`);
  // (It waits for a connection for its stream, or for one of its scripts.)
  const waiting = pages[live.indexOf(false)];
  // Closing a live tab frees a connection, and the waiting one goes live.
  await pages[live.indexOf(true)].close();
  assert.ok(await isLive(waiting, h.WAIT_MS), 'the seventh tab never went live');
  await direct.close();

  // Through nginx with TLS and HTTP/2: one connection carries every stream.
  const proxy = await startProxy('http2', env.server.port);
  try {
    const context = await env.browser.newContext({ ignoreHTTPSErrors: true });
    const pages = await tabs(context, `${proxy.url}?transport=sse`, 7);
    const live = await Promise.all(pages.map((page) => isLive(page, h.WAIT_MS)));
    assert.deepEqual(live, Array(7).fill(true), 'all seven SSE tabs are live over HTTP/2');
    const protocol = await pages[0].evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol);
    assert.equal(protocol, 'h2');
    // The ready event names the version that reached pushwire: nginx's HTTP/1.1 hop.
    assert.equal(await h.hoodHttp(pages[0], 'sse', '1.1'), 'HTTP/1.1');
    await context.close();
  } finally {
    await proxy.stop();
  }
});

test('seven WebSocket tabs of one origin are all live over HTTP/1.1', { timeout: 60000 }, async () => {
  const context = await env.browser.newContext();
  const pages = await tabs(context, `${env.server.url}?transport=websocket`, 7);
  const live = await Promise.all(pages.map((page) => isLive(page, h.WAIT_MS)));
  assert.deepEqual(live, Array(7).fill(true), 'all seven WebSocket tabs are live');
  await context.close();
});
