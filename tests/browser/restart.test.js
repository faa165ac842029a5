// The server goes away and comes back on the same port with an empty history: every
// transport notices, backs off visibly, reconnects, says the history was reset and
// carries on.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

/** While the server is down the browser logs the refused requests; that is expected. */
const REFUSED = [/ERR_CONNECTION_REFUSED/, /WebSocket connection to .* failed/, /Failed to load resource/];

test(
  'every transport reconnects after a restart, shows the history reset and keeps working',
  { timeout: 120000 },
  async () => {
    const pages = await h.pagePerTransport(env);
    await h.send(pages['long-poll'], 'before the restart');
    for (const page of Object.values(pages)) await h.waitForBodies(page, ['before the restart']);

    const { port } = env.server;
    await env.server.stop();
    for (const [transport, page] of Object.entries(pages)) {
      await page.waitForSelector(`#status[data-state="waiting"][data-transport="${transport}"]`, {
        timeout: h.WAIT_MS,
      });
      assert.match(await page.textContent('#status-text'), /retry in \d+\.\d s \(attempt \d+\)/);
    }
    await h.screenshot(pages.sse, 'restart-waiting');

    env.server = await h.startServer(`127.0.0.1:${port}`);
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
