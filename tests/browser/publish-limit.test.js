// The server limits how fast one client publishes: the page shows a refusal and waits
// the server's Retry-After before every send it makes after it. A burst goes on after
// each wait and gets every message through; a message typed meanwhile says it waits; an
// in-band WebSocket frame refused for its pace is said under the form.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

/** Two messages at once per connection, then one every 2 s (eight, then two a second, per
 *  address): a refusal asks for a wait of a second or two. */
const env = h.useServerAndBrowser('127.0.0.1:0', ['--publish-rate', '0.5', '--publish-burst', '2']);

/** Milliseconds a send may go before the Retry-After is over: Node sees events late. */
const SLACK_MS = 100;

/** The POSTs of `/a/message/new` of `page`, as they are sent and answered. */
function watchPosts(page) {
  const posts = { sent: [], refused: [] };
  const isPost = (request) => request.url().endsWith('/a/message/new') && request.method() === 'POST';
  page.on('request', (request) => {
    if (isPost(request)) posts.sent.push(Date.now());
  });
  page.on('response', (response) => {
    if (!isPost(response.request()) || response.status() !== 429) return;
    posts.refused.push({ at: Date.now(), retryAfter: Number(response.headers()['retry-after']) });
  });
  return posts;
}

test('a burst past the limit waits out each Retry-After and gets every message through', { timeout: 90000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  const posts = watchPosts(page);
  const count = 12;
  await page.fill('#burst-count', String(count));
  await page.click('#burst');
  await page.locator('#burst-progress', { hasText: 'publishing too fast: waiting' }).waitFor({ timeout: h.WAIT_MS });
  await h.screenshot(page, 'publish-limit-burst');
  await page.locator('#burst-progress', { hasText: new RegExp(`^${count} sent$`) }).waitFor({ timeout: 60000 });
  assert.equal(await page.textContent('#burst-progress'), `${count} sent`, 'every message, none failed');
  await page.waitForFunction(
    (n) => document.querySelectorAll('#inbox .msg .body').length === n,
    count,
    { timeout: h.WAIT_MS },
  );

  assert.ok(posts.refused.length > 0, 'the server refused some');
  for (const { at, retryAfter } of posts.refused) {
    assert.ok(retryAfter >= 1, `Retry-After: ${retryAfter}`);
    const early = posts.sent.filter((sent) => sent > at + SLACK_MS && sent < at + retryAfter * 1000 - SLACK_MS);
    assert.deepEqual(early, [], `sent within the ${retryAfter} s the server asked to wait`);
  }
  h.assertNoErrors(page, [/429/]);
  await page.context().close();
});

test('a message typed while the page waits says so, then goes', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  // The page's own sends until one is refused: then the page waits.
  const posts = watchPosts(page);
  const refused = page.waitForResponse((r) => r.url().endsWith('/a/message/new') && r.status() === 429);
  await page.fill('#burst-count', '12');
  await page.click('#burst');
  await refused;
  await page.fill('#body', 'typed while waiting');
  await page.press('#body', 'Enter');
  await page.locator('#compose-error', { hasText: /^Sending in \d+ s: the server asked this page to slow down\.$/ }).waitFor();
  await h.waitForBodies(page, ['typed while waiting']);
  await page.locator('#compose-error').waitFor({ state: 'hidden' });
  assert.ok(posts.refused.length > 0);
  await page.locator('#burst-progress', { hasText: /^12 sent$/ }).waitFor({ timeout: 60000 });
  await page.context().close();
});

test('an in-band frame refused for its pace is said under the form, and the socket stays', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { transport: 'websocket' });
  await page.check('#inband');
  // A socket is one connection: two frames at once, the third refused.
  const bodies = ['in-band 1', 'in-band 2', 'in-band 3'];
  await page.evaluate((all) => {
    const input = document.querySelector('#body');
    for (const body of all) {
      input.value = body;
      document.querySelector('#compose').requestSubmit();
    }
  }, bodies);
  await page.locator('#compose-error', { hasText: /^Not sent \(publishing too fast: retry in \d+ s\)\.$/ }).waitFor();
  await h.waitForBodies(page, bodies.slice(0, 2));
  await h.screenshot(page, 'publish-limit-in-band');
  // Still live on the same socket, and the next send waits as told, then goes.
  assert.equal(await page.getAttribute('#status', 'data-state'), 'live');
  await page.fill('#body', 'in-band 4');
  await page.press('#body', 'Enter');
  await h.waitForBodies(page, ['in-band 4']);
  await h.hood(page, 'Reconnects', 'websocket', /^0$/);
  await page.context().close();
});
