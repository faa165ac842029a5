// The guided first minute and the page's plain words, at a 300 ms emulated round trip:
// the tour runs to its end and says what each step measured; race mode names a real
// difference (long-poll a round trip late for messages back to back) and declares no
// winner within the noise (WebSocket against SSE); messages from another page say which
// transport brought them and how long they took one way; a send that had to open a
// connection is not charged to the transport; Auto's failed trial is not counted as the
// transport's request.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const RTT_MS = 300;
const env = h.useServerAndBrowser('127.0.0.1:0', ['--emulate-rtt', `${RTT_MS}ms`]);

/** Runs `use(server)` with a server of its own, started with `args`, and stops it. */
async function withServer(args, use) {
  const server = await h.startServer('127.0.0.1:0', args);
  try {
    await use(server);
  } finally {
    await server.stop();
  }
}

/** The race verdict comparing transports `a` and `b` (either way round). */
async function verdict(page, a, b) {
  return page.$$eval(
    '#race-verdicts li',
    (items, pair) =>
      items
        .map((li) => ({ ...li.dataset, text: li.textContent }))
        .find((v) => [v.transport, v.reference].sort().join() === pair),
    [a, b].sort().join(),
  );
}

test('the tour runs every step on every transport and says what each measured', { timeout: 120000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { transport: 'websocket' });
  assert.ok(await page.isHidden('#guide-nearby'), 'the loopback note is shown over an emulated link');
  await page.click('#guide-start');
  await page.waitForSelector('body[data-guide="done"]', { timeout: 90000 });

  const steps = await page.$$eval('#guide-steps li[data-step]', (items) =>
    items.map((li) => ({
      step: li.dataset.step,
      state: li.dataset.state,
      says: li.querySelector('.says').textContent,
    })),
  );
  assert.deepEqual(
    steps.map((s) => [s.step, s.state]),
    [
      ['single', 'done'],
      ['burst', 'done'],
      ['back-to-back', 'done'],
    ],
  );
  // One message at a time: a poll waits at the server, so long-poll keeps up.
  assert.match(steps[0].says, /within \d+ ms of the first \(a round trip here: \d+ ms\), long-poll included/);
  // The burst: the two streams are within the noise of each other.
  assert.match(steps[1].says, /^WebSocket and SSE showed no clear difference/);
  // Back to back: the second of each pair waits for long-poll's next request.
  assert.match(steps[2].says, /^long-poll had \d+ on time and \d+ about one round trip late \(~\d+ ms\)/);

  // The race panel over the whole run: no winner between WebSocket and SSE, whose
  // difference is within the noise; long-poll's two levels named.
  await page.waitForFunction(() => document.querySelectorAll('#race-verdicts li').length === 2);
  const streams = await verdict(page, 'websocket', 'sse');
  assert.equal(streams.verdict, 'none', streams.text);
  assert.match(streams.text, /no clear difference\. Within [\d.]+ ms of each other for the middle half of \d+ messages/);
  const longPoll = await verdict(page, 'long-poll', streams.reference);
  assert.equal(longPoll.verdict, 'levels', longPoll.text);
  assert.match(longPoll.text, /one round trip late \(~\d+ ms\) for \d+: those reached the server while its next request/);
  const spread = await page.textContent('#race-summary tr[data-transport="long-poll"] td.spread');
  assert.match(spread, /^\d+ on time, \d+ one round trip late \(~\d+ ms\)$/);

  // Race mode runs every transport: the toggle picks none, and says so.
  assert.ok(await page.isDisabled('#t-sse'));
  assert.ok(await page.isVisible('#toggle-note'));

  await h.screenshot(page, 'guide-done');
  await h.screenshot(page, 'guide-done-viewport', { fullPage: false });
  h.assertNoErrors(page);
  await page.context().close();
});

test('a message from another page shows the transport that brought it and its one-way time', { timeout: 60000 }, async () => {
  const reader = await h.openChat(env.browser, env.server.url, { transport: 'sse' });
  const writer = await h.openChat(env.browser, env.server.url, { transport: 'websocket' });
  await h.send(writer, 'from the other window');
  const via = reader.locator('#inbox .msg', { hasText: 'from the other window' }).locator('.via');
  await via.waitFor({ timeout: h.WAIT_MS });
  const match = (await via.textContent()).match(/^ · via SSE, one way (\d+) ms$/);
  assert.ok(match, await via.textContent());
  // The server stamps the message as it publishes it; half the round trip brings it here.
  const oneWay = Number(match[1]);
  assert.ok(oneWay >= RTT_MS / 2 - 10 && oneWay < 2 * RTT_MS, `one way ${oneWay} ms over a ${RTT_MS} ms round trip`);
  // The writer's own copy shows its round trip instead.
  const own = writer.locator('#inbox .msg.own', { hasText: 'from the other window' });
  await own.locator('.rtt', { hasText: 'via WebSocket' }).waitFor({ timeout: h.WAIT_MS });
  assert.ok(await own.locator('.via').isHidden());
  h.assertNoErrors(reader);
  h.assertNoErrors(writer);
  await reader.context().close();
  await writer.context().close();
});

test('a send that first opens a new connection is marked, and left out of the round-trip chart', { timeout: 60000 }, async () => {
  // Idle connections are closed after a second: a send after a pause needs a new one,
  // which over the emulated link costs a round trip more.
  await withServer(['--emulate-rtt', `${RTT_MS}ms`, '--header-timeout', '1'], async (closing) => {
    const page = await h.openChat(env.browser, closing.url, { transport: 'sse' });
    await page.waitForTimeout(2500);
    await h.send(page, 'after a pause');
    const label = page.locator('#inbox .msg.own', { hasText: 'after a pause' }).locator('.rtt');
    await label.filter({ hasText: 'via SSE' }).waitFor({ timeout: h.WAIT_MS });
    assert.match(await label.textContent(), /the send opened a new connection first: not in the charts/);
    await h.send(page, 'right after');
    await h.waitSamples(page, 'sse', 1);
    const next = page.locator('#inbox .msg.own', { hasText: 'right after' }).locator('.rtt');
    assert.doesNotMatch(await next.textContent(), /new connection/);
    h.assertNoErrors(page);
    await page.context().close();
  });
});

test('on a server without an emulated link the page says how to see real differences', { timeout: 60000 }, async () => {
  await withServer([], async (plain) => {
    const page = await h.openChat(env.browser, plain.url);
    const note = await page.textContent('#guide-nearby');
    assert.match(note, /the network adds\s+microseconds here/);
    assert.match(note, /cargo run --release --\s+--emulate-rtt 300ms/);
    // The glossary opens from a term's link, with the keyboard as with a pointer.
    assert.equal(await page.getAttribute('#glossary', 'open'), null);
    await page.focus('#hood a[href="#g-cursor"]');
    await page.keyboard.press('Enter');
    await page.waitForSelector('#glossary[open]');
    assert.ok(await page.isVisible('#g-cursor'));
    h.assertNoErrors(page);
    await page.context().close();
  });
});

test('a trial that Auto gives up on is not counted as the transport’s request', { timeout: 60000 }, async () => {
  let pass = false;
  await withServer([], async (plain) => {
    // WebSocket upgrades that pass nothing until told to (as some proxies do): Auto's
    // trial of WebSocket gets no data and moves on.
    const page = await h.openChat(env.browser, `${plain.url}?transport=auto`, {
      transport: null,
      setup: (context) =>
        context.routeWebSocket(/\/a\/message\/socket/, (socket) => {
          if (pass) socket.connectToServer();
        }),
    });
    await page.waitForSelector('body[data-auto="settled"]');
    assert.notEqual(await page.evaluate(() => document.body.dataset.transport), 'websocket');
    assert.match(await page.textContent('#status-text'), /WebSocket sent nothing within \d+ ms/);
    assert.equal(await h.hood(page, 'Requests made', 'websocket'), '0');

    // Picked by the reader, WebSocket's one connection is its one request.
    pass = true;
    await h.chooseTransport(page, 'websocket');
    await h.waitLive(page, 'websocket');
    assert.equal(await h.hood(page, 'Requests made', 'websocket'), '1');
    h.assertNoErrors(page, [/Failed to establish a connection to .*\/webtransport/]);
    await page.context().close();
  });
});
