// WebTransport in Chromium: the page pins the server's self-signed certificate by its
// hash, chats over HTTP/3 on UDP beside the other transports, and says plainly when the
// server does not offer it.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

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
