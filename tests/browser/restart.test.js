// The server stops gracefully and comes back on the same port with an empty history:
// every transport is told when to come back (a delay of its own), says so, waits that
// long, reconnects, says the history was reset and carries on.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

/** Delays from 1 s to 3 s, so the test is short and the waits still measurable. */
const SERVER_ARGS = ['--restart-spread', '2'];
const env = h.useServerAndBrowser('127.0.0.1:0', SERVER_ARGS);

/** While the server is down the browser logs the refused requests; that is expected. */
const REFUSED = [/ERR_CONNECTION_REFUSED/, /WebSocket connection to .* failed/, /Failed to load resource/];

/** Milliseconds a page may leave its wait early: the status line is read a frame late. */
const SLACK_MS = 300;

/**
 * Waits for `page` to show that the server told it to come back, and then for it to try
 * again. Returns the delay it showed (s) and how long it actually waited (ms) from then.
 */
async function obeysTheServer(page, transport) {
  await page.waitForSelector(`#status[data-state="waiting"][data-transport="${transport}"]`, { timeout: h.WAIT_MS });
  const seen = Date.now();
  const text = await page.textContent('#status-text');
  const match = text.match(/reconnecting in (\d+\.\d) s \(server restarting\)/);
  assert.ok(match, `${transport}: the status line says who asked for the wait and how long: ${text}`);
  await page.waitForFunction(() => document.querySelector('#status').dataset.state !== 'waiting', null, {
    timeout: h.WAIT_MS,
    polling: 50,
  });
  return { shown: Number(match[1]), waited: Date.now() - seen };
}

test(
  'every transport waits the delay the stopping server told it, reconnects, shows the history reset and keeps working',
  { timeout: 120000 },
  async () => {
    const pages = await h.pagePerTransport(env);
    await h.send(pages['long-poll'], 'before the restart');
    for (const page of Object.values(pages)) await h.waitForBodies(page, ['before the restart']);

    const { port } = env.server;
    const obeyed = Object.entries(pages).map(async ([transport, page]) => [
      transport,
      await obeysTheServer(page, transport),
    ]);
    const stopping = env.server.stop();
    await pages.sse.waitForSelector('#status[data-state="waiting"]', { timeout: h.WAIT_MS });
    await h.screenshot(pages.sse, 'restart-waiting');
    await stopping;
    env.server = await h.startServer(`127.0.0.1:${port}`, SERVER_ARGS);
    for (const [transport, { shown, waited }] of await Promise.all(obeyed)) {
      assert.ok(shown <= 3, `${transport}: told at most 1 s + the 2 s spread, showed ${shown} s`);
      assert.ok(waited >= shown * 1000 - SLACK_MS, `${transport}: showed ${shown} s, tried again after ${waited} ms`);
    }

    for (const [transport, page] of Object.entries(pages)) {
      await h.waitLive(page, transport);
      await page.locator('#inbox .notice.reset').waitFor({ timeout: h.WAIT_MS });
      assert.match(await page.textContent('#inbox .notice.reset'), /history reset/i);
      assert.equal(await page.locator('#inbox .notice.reset').count(), 1);
      await h.hood(page, 'Reconnects', transport, /^[1-9]/);
      await h.hood(page, 'Last gap', transport, /^unknown epoch at /);
    }

    const after = [];
    for (const [transport, page] of Object.entries(pages)) {
      const body = `after the restart, from ${transport}`;
      await h.send(page, body);
      after.push(body);
    }
    for (const [transport, page] of Object.entries(pages)) {
      await h.waitForBodies(page, after);
      const current = await h.messages(page);
      assert.deepEqual(
        current.map((m) => m.body),
        after,
        `${transport}: the new history, once each`,
      );
      assert.deepEqual(
        current.map((m) => m.seq),
        [1, 2, 3],
        `${transport}: the new run counts from 1`,
      );
      // The old conversation is still there, greyed out above the notice.
      assert.equal(await page.textContent('#inbox .msg.stale .body'), 'before the restart');
    }

    await h.screenshot(pages.websocket, 'restart-after');
    for (const page of Object.values(pages)) {
      h.assertNoErrors(page, REFUSED);
      await page.context().close();
    }
  },
);
