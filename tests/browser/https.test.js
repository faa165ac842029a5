// pushwire's own HTTPS (`--tls`, `--tls-addr`) with HTTP/2, no proxy in front: the
// browser carries every stream of an origin on one connection, the WebSocket included
// (RFC 8441's extended CONNECT), and the page says which HTTP version carries each
// transport (Under the hood, the "HTTP" row and its `data-http`).
// - Twenty SSE streams of one origin are all live over HTTP/2; over HTTP/1.1 six are
//   (Chromium's connections per origin) and the rest wait.
// - The WebSocket is carried by HTTP/2, as its ready frame says.
// - Every transport chats over HTTPS; long-poll's version comes from Resource Timing.
// - A server that does not name the version (`{"ready":{}}`) still works: "–".
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

// Plain HTTP on --addr and HTTPS on --tls-addr: two origins of one server, so one
// /metrics (read over plain HTTP by Node) counts the streams of both.
const env = h.useServerAndBrowser('127.0.0.1:0', ['--tls-addr', '127.0.0.1:0']);

/** SSE streams the browser keeps open at once in this test. */
const STREAMS = 20;
/** Chromium's connections per origin (host and port) over HTTP/1.1. */
const HTTP1_CONNECTIONS = 6;

/**
 * One page of `origin` (a static file, so that it holds no connection itself) with
 * `count` iframes of the chat on SSE: frames of one page share its connection pool.
 * Returns the page and its chat frames, their loads under way.
 */
async function sseFrames(context, origin, count) {
  const page = await context.newPage();
  await page.goto(new URL('/static/style.css', origin).href);
  const chat = new URL('/?transport=sse', origin).href;
  await page.evaluate(
    ([src, n]) => {
      const frames = Array.from({ length: n }, (_, i) => {
        const frame = document.createElement('iframe');
        frame.name = `chat-${i}`;
        frame.src = src;
        frame.width = '320';
        frame.height = '200';
        return frame;
      });
      document.body.replaceChildren(...frames);
    },
    [chat, count],
  );
  const frames = () => page.frames().filter((frame) => frame.name().startsWith('chat-'));
  const deadline = Date.now() + h.WAIT_MS;
  while (frames().length < count && Date.now() < deadline) await page.waitForTimeout(50);
  assert.equal(frames().length, count, 'chat frames attached');
  return { page, frames: frames() };
}

/** True once the chat in `frame` is live, false if it is not within `timeout` ms. */
const isLive = (frame, timeout) =>
  frame
    .waitForSelector('#status[data-state="live"]', { timeout })
    .then(() => true)
    .catch(() => false);

/** The state of the chat in `frame` ('live', 'connecting', …; 'loading' before its
 *  scripts ran). */
const state = (frame) =>
  frame.evaluate(() => document.querySelector('#status')?.dataset.state ?? 'loading').catch(() => 'loading');

/** Resolves once `condition()` is true, or fails after WAIT_MS naming `what`. */
async function eventually(what, condition) {
  const deadline = Date.now() + h.WAIT_MS;
  for (;;) {
    const value = await condition();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`never happened within ${h.WAIT_MS} ms: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

/** Publishes `body` from outside the browser's connection pool (Playwright's own HTTP
 *  client, with the context's cookies: the `_xsrf` one that `GET /` set). */
async function publish(context, origin, body) {
  const [cookie] = await context.cookies(origin);
  assert.ok(cookie?.name === '_xsrf', 'the page set an _xsrf cookie');
  const response = await context.request.post(new URL('/a/message/new', origin).href, {
    form: { body, _xsrf: cookie.value },
  });
  assert.equal(response.status(), 200, `POST of ${body}`);
}

const showsBody = (frame, body) =>
  frame.waitForFunction(
    (expected) => [...document.querySelectorAll('#inbox .msg .body')].some((b) => b.textContent === expected),
    body,
    { timeout: h.WAIT_MS },
  );

test(`${STREAMS} SSE streams of one origin are all live over HTTP/2; over HTTP/1.1 only ${HTTP1_CONNECTIONS} are`, { timeout: 120000 }, async () => {
  // HTTPS: HTTP/2 carries every stream on one connection.
  const secure = await env.browser.newContext({ ignoreHTTPSErrors: true });
  const { page, frames } = await sseFrames(secure, env.server.https, STREAMS);
  const live = await Promise.all(frames.map((frame) => isLive(frame, h.WAIT_MS)));
  assert.deepEqual(live, Array(STREAMS).fill(true), `all ${STREAMS} SSE frames are live over HTTP/2`);
  assert.equal(await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol), 'h2');
  assert.equal(await h.subscribers(env.server.url, 'sse', '2'), STREAMS, 'SSE subscriptions over HTTP/2');
  for (const frame of frames) assert.equal(await h.hoodHttp(frame, 'sse', '2'), 'HTTP/2');
  await publish(secure, env.server.https, 'to twenty streams over HTTP/2');
  await Promise.all(frames.map((frame) => showsBody(frame, 'to twenty streams over HTTP/2')));
  await secure.close();
  await eventually('the HTTP/2 streams are gone from /metrics', async () => (await h.subscribers(env.server.url, 'sse', '2')) === 0);

  // Plain HTTP/1.1: each stream holds a connection of its own, and the origin has six.
  const plain = await env.browser.newContext();
  const { frames: waiting } = await sseFrames(plain, env.server.url, STREAMS);
  const liveNow = async () => (await Promise.all(waiting.map(state))).filter((s) => s === 'live').length;
  await eventually(`${HTTP1_CONNECTIONS} SSE frames live over HTTP/1.1`, async () => (await liveNow()) >= HTTP1_CONNECTIONS);
  // An observation window: the others stay pending (a connection never frees up).
  await new Promise((resolve) => setTimeout(resolve, 2000));
  assert.equal(await liveNow(), HTTP1_CONNECTIONS, 'live SSE frames over HTTP/1.1');
  assert.equal(await h.subscribers(env.server.url, 'sse', '1.1'), HTTP1_CONNECTIONS, 'SSE subscriptions over HTTP/1.1');
  for (const frame of waiting) if ((await state(frame)) === 'live') assert.equal(await h.hoodHttp(frame, 'sse', '1.1'), 'HTTP/1.1');
  // A message reaches the six live ones; the others are still waiting for a connection.
  const states = await Promise.all(waiting.map(state));
  await publish(plain, env.server.url, 'to six streams over HTTP/1.1');
  await Promise.all(
    waiting.filter((_, i) => states[i] === 'live').map((frame) => showsBody(frame, 'to six streams over HTTP/1.1')),
  );
  assert.equal(await liveNow(), HTTP1_CONNECTIONS, 'live SSE frames over HTTP/1.1, after the message');
  await plain.close();
});

/** Waits until the WebSocket of `page` is live; failing that, says what the server
 *  refused (`pushwire_requests_rejected_total`) and the page's last cut. */
async function websocketLive(page) {
  try {
    await h.waitLive(page, 'websocket');
  } catch (error) {
    const metrics = await (await fetch(new URL('/metrics', env.server.url))).text();
    const rejected = metrics.split('\n').filter((l) => l.startsWith('pushwire_requests_rejected_total{'));
    const cut = await h.hood(page, 'Last cut', 'websocket');
    throw new Error(`the WebSocket never went live (last cut: ${cut}; server refusals: ${rejected.join(', ')})`, {
      cause: error,
    });
  }
}

test('the WebSocket is carried by HTTP/2 over HTTPS, and Under the hood says so', { timeout: 60000 }, async () => {
  const context = await env.browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.errors = [];
  page.on('console', (message) => {
    if (message.type() === 'error') page.errors.push(`console: ${message.text()}`);
  });
  await page.goto(`${env.server.https}?transport=websocket`);
  await websocketLive(page);
  assert.equal(await h.hoodHttp(page, 'websocket', '2'), 'HTTP/2');
  assert.equal(await h.subscribers(env.server.url, 'websocket', '2'), 1, 'WebSockets over HTTP/2');
  assert.equal(await h.subscribers(env.server.url, 'websocket', '1.1'), 0, 'WebSockets over HTTP/1.1');
  // Carried by HTTP/2 both ways: a message sent in-band comes back on the socket.
  await page.check('#inband');
  await page.fill('#body', 'in-band over HTTP/2');
  await page.press('#body', 'Enter');
  await h.waitForBodies(page, ['in-band over HTTP/2']);
  h.assertNoErrors(page);
  await page.context().close();
});

test('over plain HTTP every transport says HTTP/1.1', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { transport: 'long-poll' });
  // Long-poll learns it when a poll is answered: a message answers the pending one.
  await h.send(page, 'a poll answered over HTTP/1.1');
  assert.equal(await h.hoodHttp(page, 'long-poll', '1.1'), 'HTTP/1.1');
  for (const transport of ['websocket', 'sse']) {
    await h.chooseTransport(page, transport);
    await h.waitLive(page, transport);
    assert.equal(await h.hoodHttp(page, transport, '1.1'), 'HTTP/1.1');
  }
  h.assertNoErrors(page);
  await page.context().close();
});

test('a server that does not name the HTTP version still works: Under the hood shows –', { timeout: 60000 }, async () => {
  const context = await env.browser.newContext();
  const page = await context.newPage();
  // A WebSocket answered as servers before HTTPS did: `{"ready":{}}`, then a message.
  await page.routeWebSocket(/\/a\/message\/socket/, (socket) => {
    socket.send('{"ready":{}}');
    socket.send(JSON.stringify({ id: '00000000000000ab-1', body: 'from an older server', html: 'x', seq: 1, time: Date.now() }));
  });
  await page.goto(`${env.server.url}?transport=websocket`);
  await h.waitLive(page, 'websocket');
  await h.waitForBodies(page, ['from an older server']);
  assert.equal(await h.hoodHttp(page, 'websocket', ''), '–');
  // The parsing itself, for both notices and Resource Timing's protocol ids.
  const parsed = await page.evaluate(async () => {
    const { httpOfReady, httpOfAlpn } = await import('/static/transports/base.js');
    return {
      ready: [{ http: '2' }, { http: '1.1' }, {}, null, 'x', { http: 2 }, { http: '<b>' }].map(httpOfReady),
      alpn: ['h2', 'http/1.1', 'http/1.0', 'h3', 'h3-29', '', undefined, 'spdy/3'].map(httpOfAlpn),
    };
  });
  assert.deepEqual(parsed.ready, ['2', '1.1', null, null, null, null, null]);
  assert.deepEqual(parsed.alpn, ['2', '1.1', '1.0', '3', '3', null, null, null]);
  await context.close();
});

test('on every transport two pages chat over HTTPS (--tls), carried by HTTP/2', { timeout: 90000 }, async () => {
  const server = await h.startServer('127.0.0.1:0', ['--tls']);
  try {
    assert.match(server.url, /^https:\/\/127\.0\.0\.1:\d+\/$/);
    assert.equal(server.https, server.url);
    for (const transport of ['long-poll', 'websocket', 'sse']) {
      const alice = await h.openChat(env.browser, server.url, { transport });
      const bob = await h.openChat(env.browser, server.url, { transport });
      const bodies = [`alice over ${transport}`, `bob over ${transport}`];
      await h.send(alice, bodies[0]);
      await h.send(bob, bodies[1]);
      for (const page of [alice, bob]) {
        await h.waitForBodies(page, bodies);
        assert.equal(await h.hoodHttp(page, transport, '2'), 'HTTP/2', `${transport} is carried by HTTP/2`);
      }
      if (transport === 'long-poll') {
        const polls = await alice.evaluate(() =>
          performance
            .getEntriesByType('resource')
            .filter((entry) => entry.name.endsWith('/a/message/updates'))
            .map((entry) => entry.nextHopProtocol),
        );
        assert.ok(polls.length > 0 && polls.every((p) => p === 'h2'), `long-poll's polls: ${polls}`);
      }
      for (const page of [alice, bob]) {
        h.assertNoErrors(page);
        await page.context().close();
      }
    }
  } finally {
    await server.stop();
  }
});

test('Under the hood over HTTPS shows HTTP/2 for every transport over TCP, HTTP/3 for WebTransport (race mode; screenshots)', { timeout: 60000 }, async () => {
  for (const [name, viewport] of [
    ['https-hood', { width: 1280, height: 900 }],
    ['https-hood-phone', { width: 390, height: 844 }],
  ]) {
    const page = await h.openChat(env.browser, env.server.https, { transport: 'sse', viewport });
    await page.click('label[for="race"]');
    await h.waitLive(page, 'sse');
    await h.send(page, `racing over HTTP/2 (${name})`);
    await h.waitForBodies(page, [`racing over HTTP/2 (${name})`]);
    for (const transport of ['long-poll', 'websocket', 'sse']) {
      assert.equal(await h.hoodHttp(page, transport, '2'), 'HTTP/2', `${transport} in race mode`);
    }
    assert.equal(await h.hoodHttp(page, 'webtransport', '3'), 'HTTP/3', 'WebTransport in race mode');
    await h.screenshot(page, name);
    await page.locator('#hood').scrollIntoViewIfNeeded();
    await h.screenshot(page, `${name}-viewport`, { fullPage: false });
    h.assertNoErrors(page);
    await page.context().close();
  }
});
