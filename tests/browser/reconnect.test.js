// Reconnecting when it matters, not when the backoff says: the page tries at once when
// the browser goes back online, and when a hidden tab is shown again while its
// connection is down.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

// A short hold: the poll held when the connection goes down only fails when its
// answer is due, and the backoff starts counting after that.
const env = h.useServerAndBrowser('127.0.0.1:0', ['--long-poll-hold', '2']);

/** Waits until the page's transport waits more than `seconds` before its next try,
 *  and returns how long it still waits. */
async function longBackoff(page, seconds) {
  const handle = await page.waitForFunction(
    (min) => {
      const match = document.querySelector('#status-text').textContent.match(/retry in ([\d.]+) s/);
      return match && Number(match[1]) > min ? Number(match[1]) : null;
    },
    seconds,
    { timeout: 60000 },
  );
  return handle.jsonValue();
}

test('going back online reconnects at once, not at the end of the backoff', { timeout: 90000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  await page.context().setOffline(true);
  // Offline, every try fails and the backoff doubles until a retry is seconds away.
  const remaining = await longBackoff(page, 4);
  const online = Date.now();
  await page.context().setOffline(false);
  await h.waitLive(page, 'long-poll');
  const took = (Date.now() - online) / 1000;
  assert.ok(took < remaining - 1, `live again after ${took} s; the backoff had ${remaining} s to go`);
  await h.send(page, 'back online');
  await h.waitForBodies(page, ['back online']);
  await page.context().close();
});

test('a tab shown again with its connection down reconnects at once', { timeout: 90000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  // The server is out of reach (every poll fails) while the tab is hidden...
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'hidden' });
  });
  await page.route('**/a/message/updates', (route) => route.abort());
  const remaining = await longBackoff(page, 4);
  // ...then reachable again, with no event to say so, and the tab is shown.
  await page.unroute('**/a/message/updates');
  const shown = Date.now();
  await page.evaluate(() => {
    Object.defineProperty(document, 'visibilityState', { configurable: true, get: () => 'visible' });
    document.dispatchEvent(new Event('visibilitychange'));
  });
  await h.waitLive(page, 'long-poll');
  const took = (Date.now() - shown) / 1000;
  assert.ok(took < remaining - 1, `live again after ${took} s; the backoff had ${remaining} s to go`);
  await page.context().close();
});
