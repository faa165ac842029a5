// Which transport the page uses: `?transport=` picks it, the reader's last choice
// survives a reload, `document.body.dataset.transport` names it, and each transport
// client explains why it reconnects (the SSE client: the server's `event: slow`).
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

const bodyTransport = (page) => page.evaluate(() => document.body.dataset.transport);

test('?transport= selects each transport, and an unknown one falls back to Auto', { timeout: 60000 }, async () => {
  for (const transport of ['sse', 'websocket', 'long-poll']) {
    const page = await h.openChat(env.browser, `${env.server.url}?transport=${transport}`);
    await h.waitLive(page, transport);
    assert.equal(await bodyTransport(page), transport);
    assert.ok(await page.isChecked(`#t-${transport}`), `the ${transport} radio is checked`);
    // The transport really carries the chat: its own message comes back through it.
    await h.send(page, `over ${transport}`);
    await h.waitSamples(page, transport, 1);
    h.assertNoErrors(page);
    await page.context().close();
  }
  const page = await h.openChat(env.browser, `${env.server.url}?transport=carrier-pigeon`);
  assert.equal(await page.evaluate(() => document.body.dataset.choice), 'auto');
  assert.ok(await page.isChecked('#t-auto'), 'the Auto radio is checked');
  h.assertNoErrors(page);
  await page.context().close();
});

test('the last choice is kept across reloads, and ?transport= follows the toggle', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  await h.chooseTransport(page, 'sse');
  await h.waitLive(page, 'sse');
  await page.reload();
  await h.waitLive(page, 'sse');
  assert.equal(await bodyTransport(page), 'sse');

  // An address that names a transport wins over the stored choice, and the toggle
  // rewrites it, so a reload (or a copied link) keeps what the reader picked last.
  await page.goto(`${env.server.url}?transport=websocket`);
  await h.waitLive(page, 'websocket');
  await h.chooseTransport(page, 'long-poll');
  await h.waitLive(page, 'long-poll');
  assert.equal(new URL(page.url()).searchParams.get('transport'), 'long-poll');
  await page.reload();
  await h.waitLive(page, 'long-poll');
  assert.equal(await bodyTransport(page), 'long-poll');
  h.assertNoErrors(page);
  await page.context().close();
});

test('an SSE stream ended by "event: slow" says the server cut a slow consumer, then resumes', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, `${env.server.url}?transport=sse`);
  await h.waitLive(page, 'sse');
  // The next stream the page opens is one the server ended for reading too slowly:
  // the opening, the slow notice, the end. The one after is the real stream again.
  let cut = 0;
  await page.route('**/a/message/events*', async (route) => {
    if (cut > 0) return route.continue();
    cut += 1;
    await route.fulfill({
      status: 200,
      headers: { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' },
      body: 'retry: 1000\n: connected\n\nevent: slow\ndata: {"reason":"slow_consumer"}\n\n',
    });
  });
  // Make the page reconnect: a restart of its stream goes through the route above.
  await h.chooseTransport(page, 'long-poll');
  await h.waitLive(page, 'long-poll');
  await h.chooseTransport(page, 'sse');
  await h.hood(page, 'Last cut', 'sse', /slow consumer/);
  await h.waitLive(page, 'sse');
  assert.equal(cut, 1);
  await h.send(page, 'after the cut');
  await h.waitForBodies(page, ['after the cut']);
  h.assertNoErrors(page);
  await page.context().close();
});
