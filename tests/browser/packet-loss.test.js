// The page over a lossy link: pushwire on the server side of a packet link (50 ms round
// trip, 2 % of packets lost each way, so TCP and QUIC retransmit for real), Chromium on
// its client side. Every transport keeps the chat complete, once each and in order,
// WebTransport with a stream per message too. Needs root and /dev/net/tun, as the
// packet link does; without them the server does not start and the test fails saying
// which is missing.
'use strict';

const assert = require('node:assert/strict');
const { after, before, test } = require('node:test');
const h = require('./harness');

const LINK = ['--rtt', '50ms', '--loss', '2'];
const MESSAGES = 40;

const env = {};
before(async () => {
  env.server = await h.startServer('10.99.0.1:0', [], { link: LINK });
  assert.ok(env.server.clientSide, 'packet-link names its client side');
  env.browser = await h.launchBrowser({ clientSide: env.server.clientSide, secureOrigin: new URL(env.server.url).origin });
});
after(async () => {
  await env.browser?.close();
  await env.server?.stop();
});

test('over 2 % loss every transport shows every message once and in order', { timeout: 180000 }, async () => {
  const views = {
    'long-poll': '?transport=long-poll',
    sse: '?transport=sse',
    websocket: '?transport=websocket',
    webtransport: '?transport=webtransport',
    'webtransport, a stream per message': '?transport=webtransport&order=none',
  };
  const pages = {};
  for (const [name, query] of Object.entries(views)) {
    pages[name] = await h.openChat(env.browser, `${env.server.url}${query}`, { transport: null });
    await h.waitLive(pages[name], query.match(/transport=([\w-]+)/)[1]);
  }
  const bodies = Array.from({ length: MESSAGES }, (_, i) => `through loss ${i + 1}`);
  for (const body of bodies) await h.send(pages['long-poll'], body);

  for (const [name, page] of Object.entries(pages)) {
    await h.waitForBodies(page, bodies);
    const shown = (await h.messages(page)).filter((m) => m.body.startsWith('through loss '));
    assert.deepEqual(
      shown.map((m) => m.body),
      bodies,
      `${name}: every message once, in the order sent`,
    );
    const seqs = shown.map((m) => m.seq);
    assert.ok(
      seqs.every((seq, i) => i === 0 || seq === seqs[i - 1] + 1),
      `${name}: consecutive seqs ${seqs}`,
    );
    h.assertNoErrors(page);
  }
  await h.screenshot(pages.webtransport, 'packet-loss-webtransport');

  // QUIC's own count says the link lost WebTransport's packets too.
  // (Fetched by the page: this process is not on the link's client side.)
  const metrics = await pages['long-poll'].evaluate(() => fetch('/metrics').then((r) => r.text()));
  const quicLost = Number(metrics.match(/^pushwire_quic_lost_packets_total (\d+)/m)?.[1]);
  for (const page of Object.values(pages)) await page.context().close();
  await env.server.stop();
  const report = env.server.linkReport();
  const [, down, lostDown, up, lostUp] = report.match(/(\d+) packets server → client \((\d+) lost\), (\d+) client → server \((\d+) lost\)/);
  assert.ok(Number(lostDown) > 0 && Number(lostUp) > 0, `the link lost packets both ways: ${report}`);
  assert.ok(Number(down) > 0 && Number(up) > 0, report);
  assert.ok(Number.isFinite(quicLost), `pushwire_quic_lost_packets_total in /metrics:\n${metrics}`);
});
