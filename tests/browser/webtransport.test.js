// WebTransport in Chromium: the page pins the server's self-signed certificate by its
// hash, chats over HTTP/3 on UDP beside the other transports (also unordered, a stream
// per message), and says plainly when the server does not offer it. Auto tries it after
// WebSocket, passes over it at once when it is not offered, and falls back from a
// remembered WebTransport that UDP no longer reaches.
'use strict';

const assert = require('node:assert/strict');
const dgram = require('node:dgram');
const { test } = require('node:test');
const h = require('./harness');

// A burst of 40 goes out at once (the default publish limit lets 20 through, then paces
// the rest): the unordered test wants them in flight together.
const env = h.useServerAndBrowser('127.0.0.1:0', ['--publish-burst', '50']);

/** How long Auto may take to fall back from a silent remembered WebTransport to
 *  WebSocket, page load included (auto.js states the same bound). */
const FALLBACK_MS = 5000;

const CERTIFICATE = '**/a/message/webtransport/certificate';

/** Makes Auto remember WebTransport as what worked here (a `setup` for `h.openChat`). */
function rememberWebTransport(context) {
  return context.addInitScript(() => {
    localStorage.setItem('pushwire.auto', JSON.stringify({ transport: 'webtransport', why: 'WebTransport works here' }));
  });
}

/** Every value the page writes to Auto's memory, in `window.autoMemories`. */
function recordAutoMemory(context) {
  return context.addInitScript(() => {
    window.autoMemories = [];
    const setItem = Storage.prototype.setItem;
    Storage.prototype.setItem = function (key, value) {
      if (key === 'pushwire.auto') window.autoMemories.push(JSON.parse(value));
      return setItem.call(this, key, value);
    };
  });
}

/** Waits until Auto has settled; returns the transport, the status line, and when it
 *  settled (ms since the page's navigation started, an upper bound). */
async function settled(page) {
  await page.waitForSelector('body[data-auto="settled"]', { timeout: h.WAIT_MS });
  const at = await page.evaluate(() => performance.now());
  await h.waitLive(page);
  const transport = await page.evaluate(() => document.body.dataset.transport);
  return { transport, status: await page.textContent('#status-text'), at };
}

const memory = (page) => page.evaluate(() => JSON.parse(localStorage.getItem('pushwire.auto')));

/**
 * A UDP port that WebTransport cannot reach: `dropped` swallows every datagram (a
 * firewall that drops), `refused` has nothing listening (the host answers ICMP port
 * unreachable). Returns `{ port, close() }`.
 */
async function deadUdpPort(kind) {
  const socket = dgram.createSocket('udp4');
  await new Promise((resolve) => socket.bind(0, '127.0.0.1', resolve));
  const { port } = socket.address();
  if (kind === 'refused') await new Promise((resolve) => socket.close(resolve));
  return { port, close: () => kind === 'dropped' && socket.close() };
}

test('two pages chat over WebTransport, pinned by the certificate hash, carried by HTTP/3', { timeout: 60000 }, async () => {
  const alice = await h.openChat(env.browser, env.server.url, { transport: 'webtransport' });
  const bob = await h.openChat(env.browser, env.server.url, { transport: 'webtransport' });
  assert.equal(await h.hoodHttp(alice, 'webtransport', '3'), 'HTTP/3');
  assert.equal(await h.subscribers(env.server.url, 'webtransport', '3'), 2);
  await h.send(alice, 'over QUIC from alice');
  await h.send(bob, 'and back from bob');
  const bodies = ['over QUIC from alice', 'and back from bob'];
  await h.waitForBodies(alice, bodies);
  await h.waitForBodies(bob, bodies);
  assert.equal(await alice.evaluate(() => document.body.dataset.transport), 'webtransport');
  await h.screenshot(alice, 'webtransport-chat');
  h.assertNoErrors(alice);
  h.assertNoErrors(bob);
  await alice.context().close();
  await bob.context().close();
});

test('with WebTransport chosen, the five-way toggle reads on one line down to a 390 px phone, in two even rows below', { timeout: 60000 }, async () => {
  for (const [name, viewport, rows] of [
    ['desktop', { width: 1280, height: 800 }, 1],
    ['phone', { width: 390, height: 844 }, 1],
    ['narrow-phone', { width: 360, height: 740 }, 2],
  ]) {
    const page = await h.openChat(env.browser, env.server.url, { transport: 'webtransport', viewport });
    const labels = await page.$$eval('#transport-toggle label', (all) =>
      all.map((label) => {
        const box = label.getBoundingClientRect();
        return { top: Math.round(box.top), clipped: label.scrollWidth > label.clientWidth || box.right > innerWidth };
      }),
    );
    assert.equal(new Set(labels.map((l) => l.top)).size, rows, `${name}: rows of the toggle`);
    assert.deepEqual(labels.filter((l) => l.clipped), [], `${name}: no label is cut off`);
    await h.screenshot(page, `webtransport-toggle-${name}`, { fullPage: false });
    await page.context().close();
  }
});

test('two pages chat over unordered WebTransport (?order=none): each shows every message once, in seq order', { timeout: 60000 }, async () => {
  const url = `${env.server.url}?transport=webtransport&order=none`;
  const alice = await h.openChat(env.browser, url);
  const bob = await h.openChat(env.browser, url);
  // The server's ready line says it honours the order asked for.
  await alice.waitForSelector('#hood td[data-transport="webtransport"] [title*="order: none"]', { timeout: h.WAIT_MS });
  await h.send(alice, 'unordered from alice');
  await h.send(bob, 'unordered from bob');
  // A burst: parallel POSTs, each message on a stream of its own.
  await alice.fill('#burst-count', '40');
  await alice.click('#burst');
  for (const page of [alice, bob]) {
    await h.waitForBodies(page, ['unordered from alice', 'unordered from bob']);
    await page.waitForFunction(
      () => [...document.querySelectorAll('#inbox .body')].filter((b) => /^burst \w+ \d+\/40$/.test(b.textContent)).length >= 40,
      null,
      { timeout: h.WAIT_MS },
    );
    const shown = await h.messages(page);
    const seqs = shown.map((m) => m.seq);
    assert.equal(new Set(shown.map((m) => m.id)).size, shown.length, 'no message is shown twice');
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b), 'the list is in seq order');
    assert.equal(seqs.at(-1) - seqs[0] + 1, seqs.length, 'no seq is missing');
    assert.equal(await page.locator('#inbox .notice').count(), 0, 'no gap or reset notice');
    assert.equal(await page.evaluate(() => document.body.dataset.transport), 'webtransport');
    h.assertNoErrors(page);
  }
  await alice.context().close();
  await bob.context().close();
});

test('an unordered session resumes before the first message still missing, never past it', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  // Each step: a message id arrived, or `gap <cursor>` (a gap notice); then the cursor.
  const runs = await page.evaluate(async () => {
    const { UnbrokenRun } = await import('/static/transports/webtransport.js');
    const play = (start, steps) => {
      const run = new UnbrokenRun(start);
      return steps.map((step) => (step.startsWith('gap ') ? run.restart(step.slice(4)) : run.arrived(step)));
    };
    const [a, b] = ['00000000000000aa', '00000000000000bb'];
    return {
      fromCursor: play(`${a}-10`, [`${a}-12`, `${a}-13`, `${a}-11`, `${a}-9`]),
      fromNothing: play(null, [`${a}-5`, `${a}-3`, `${a}-4`, `${a}-7`, `${a}-6`]),
      newServerRun: play(`${a}-7`, [`${b}-2`, `${b}-3`, `gap ${b}-0`, `${b}-1`]),
      evicted: play(`${a}-2`, [`${a}-9`, `gap ${a}-8`, `${a}-10`]),
    };
  });
  const [a, b] = ['00000000000000aa', '00000000000000bb'];
  assert.deepEqual(runs.fromCursor, [`${a}-10`, `${a}-10`, `${a}-13`, `${a}-13`]);
  // From no cursor the lowest arrival stands for the start, moved down by an older one.
  assert.deepEqual(runs.fromNothing, [`${a}-5`, `${a}-3`, `${a}-5`, `${a}-5`, `${a}-7`]);
  // Messages of a new server run before its gap notice: the notice names the start.
  assert.deepEqual(runs.newServerRun, [`${b}-2`, `${b}-3`, `${b}-0`, `${b}-3`]);
  assert.deepEqual(runs.evicted, [`${a}-2`, `${a}-9`, `${a}-10`]);
  h.assertNoErrors(page);
  await page.context().close();
});

test('a server without WebTransport is shown as such, with its reason, and the chat goes on', { timeout: 60000 }, async () => {
  const server = await h.startServer('127.0.0.1:0', ['--webtransport', 'off']);
  try {
    const page = await h.openChat(env.browser, server.url, { transport: 'long-poll' });
    await h.chooseTransport(page, 'webtransport');
    await page.waitForFunction(() => /unavailable: .*turned off/.test(document.querySelector('#status-text').textContent), null, {
      timeout: h.WAIT_MS,
    });
    await h.chooseTransport(page, 'sse');
    await h.waitLive(page, 'sse');
    await h.send(page, 'still chatting');
    await h.waitForBodies(page, ['still chatting']);
    await page.context().close();
  } finally {
    await server.stop();
  }
});

test('Auto tries WebTransport after WebSocket: with WebSocket refused, it settles on WebTransport', { timeout: 60000 }, async () => {
  const refuseWebSockets = (context) => context.routeWebSocket(/\/a\/message\/socket/, (ws) => ws.close({ code: 1008 }));
  const page = await h.openChat(env.browser, `${env.server.url}?transport=auto`, { transport: null, setup: refuseWebSockets });
  const { transport, status } = await settled(page);
  assert.equal(transport, 'webtransport');
  assert.match(status, /WebSocket refused by the network → WebTransport/);
  assert.equal((await memory(page)).transport, 'webtransport');
  await h.send(page, 'carried by Auto over QUIC');
  await h.waitForBodies(page, ['carried by Auto over QUIC']);
  h.assertNoErrors(page);
  await page.context().close();
});

test('on a server with --webtransport off, Auto settles on WebSocket and never remembers WebTransport', { timeout: 60000 }, async () => {
  const server = await h.startServer('127.0.0.1:0', ['--webtransport', 'off']);
  try {
    const fresh = await h.openChat(env.browser, `${server.url}?transport=auto`, { transport: null, setup: recordAutoMemory });
    assert.equal((await settled(fresh)).transport, 'websocket');
    assert.equal((await memory(fresh)).transport, 'websocket');
    await fresh.context().close();

    // Remembered from when the server offered it: passed over at once, with the
    // server's reason, not after a silent trial.
    const seeded = await h.openChat(env.browser, `${server.url}?transport=auto`, {
      transport: null,
      setup: async (context) => {
        await rememberWebTransport(context);
        await recordAutoMemory(context);
      },
    });
    const { transport, status } = await settled(seeded);
    assert.equal(transport, 'websocket');
    assert.match(status, /WebTransport unavailable: the server does not offer it \(turned off .*\) → WebSocket/);
    const written = await seeded.evaluate(() => window.autoMemories);
    assert.deepEqual(
      written.map((m) => m.transport),
      ['websocket'],
      `what Auto remembered: ${JSON.stringify(written)}`,
    );
    h.assertNoErrors(seeded);
    await seeded.context().close();
  } finally {
    await server.stop();
  }
});

/** What the status line says after each: a dropped session sends nothing until Auto
 *  stops waiting; a refused one usually fails first (Chromium reads the ICMP answer). */
const WHY_FALLEN_BACK = {
  dropped: /WebTransport sent nothing within \d+ ms \(UDP blocked\?\) → WebSocket/,
  refused: /WebTransport (refused by the network|sent nothing within \d+ ms \(UDP blocked\?\)) → WebSocket/,
};

for (const kind of ['dropped', 'refused']) {
  test(`Auto remembered WebTransport, but its UDP is now ${kind}: it falls back to WebSocket within ${FALLBACK_MS} ms and says why`, { timeout: 60000 }, async () => {
    const udp = await deadUdpPort(kind);
    try {
      const offer = await (await fetch(new URL('/a/message/webtransport/certificate', env.server.url))).json();
      assert.equal(offer.available, true);
      // The page is told WebTransport is on a UDP port that nothing answers on.
      const deadOffer = (context) =>
        context.route(CERTIFICATE, (route) => route.fulfill({ json: { available: true, port: udp.port, sha256: offer.sha256 } }));
      const page = await h.openChat(env.browser, `${env.server.url}?transport=auto`, {
        transport: null,
        setup: async (context) => {
          await rememberWebTransport(context);
          await deadOffer(context);
        },
      });
      const { transport, status, at } = await settled(page);
      assert.equal(transport, 'websocket');
      assert.ok(at < FALLBACK_MS, `settled ${Math.round(at)} ms after the page was opened`);
      assert.match(status, WHY_FALLEN_BACK[kind]);
      assert.equal((await memory(page)).transport, 'websocket');
      await h.send(page, `after UDP was ${kind}`);
      await h.waitForBodies(page, [`after UDP was ${kind}`]);
      h.assertNoErrors(page, [/Failed to establish a connection to .*\/webtransport/]);
      await page.context().close();
    } finally {
      udp.close();
    }
  });
}
