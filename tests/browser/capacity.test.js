// A server at its subscriber cap refuses a new subscriber at once and tells it when to
// come back (long-poll: 503 with Retry-After; SSE, WebSocket, WebTransport: a reconnect
// notice, since the browser shows no status of a refused stream, upgrade or session).
// The page says so, waits that long rather than retrying at once, and gets in once a
// slot is free.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

/** One subscriber at a time: a first page holds the only slot. */
const env = h.useServerAndBrowser('127.0.0.1:0', ['--max-subscribers', '1']);

/** Milliseconds an attempt may come before the told time: Node sees events late. */
const SLACK_MS = 150;
/** The browser logs the refused poll (503). */
const REFUSED = [/503/];

/** Times (Date.now()) at which `page` tries to subscribe over `transport`, and, for
 *  long-poll, the Retry-After of each refusal. A WebTransport session is not shown to
 *  Playwright: its attempts are when the page leaves its wait (`left`). */
function watchAttempts(page, transport) {
  const attempts = { at: [], retryAfter: [], seen: transport !== 'webtransport' };
  if (transport === 'webtransport') return attempts;
  if (transport === 'websocket') {
    page.on('websocket', () => attempts.at.push(Date.now()));
    return attempts;
  }
  const path = transport === 'sse' ? '/a/message/events' : '/a/message/updates';
  page.on('request', (request) => {
    if (new URL(request.url()).pathname === path) attempts.at.push(Date.now());
  });
  page.on('response', (response) => {
    if (new URL(response.url()).pathname === path && response.status() === 503) {
      attempts.retryAfter.push(Number(response.headers()['retry-after']));
    }
  });
  return attempts;
}

for (const transport of ['long-poll', 'sse', 'websocket', 'webtransport']) {
  test(`${transport}: refused at capacity, the page waits the time it was told`, { timeout: 60000 }, async () => {
    const holder = await h.openChat(env.browser, env.server.url, { transport: 'sse' });
    const context = await env.browser.newContext();
    const page = await context.newPage();
    page.errors = [];
    page.on('console', (message) => {
      if (message.type() === 'error') page.errors.push(`console: ${message.text()}`);
    });
    const attempts = watchAttempts(page, transport);
    const url = new URL(env.server.url);
    url.searchParams.set('transport', transport);
    await page.goto(url.href);

    await page.waitForSelector('#status[data-state="waiting"]', { timeout: h.WAIT_MS });
    const seen = Date.now();
    const text = await page.textContent('#status-text');
    const match = text.match(/reconnecting in (\d+\.\d) s \(server at capacity\)/);
    assert.ok(match, `the status line says why and how long: ${text}`);
    const told = Number(match[1]);
    // 5 s ± 50 %, drawn per refusal (whole seconds for a Retry-After), less what passed.
    assert.ok(told > 1 && told <= 8, `told ${told} s`);
    if (transport === 'long-poll') assert.ok(attempts.retryAfter[0] >= 3, `Retry-After: ${attempts.retryAfter}`);
    if (transport === 'sse') await h.screenshot(page, 'capacity-waiting');
    // A slot is freed at once; the page still waits the time it was told.
    await holder.context().close();

    // The next attempt comes when told, not at once, and gets in.
    await page.waitForFunction(() => document.querySelector('#status').dataset.state !== 'waiting', null, {
      timeout: h.WAIT_MS,
      polling: 50,
    });
    const left = Date.now();
    const next = attempts.seen ? attempts.at.find((at) => at > seen) : left;
    assert.ok(next !== undefined, 'it tried again');
    assert.ok(next >= seen + told * 1000 - SLACK_MS, `told ${told} s, tried again after ${next - seen} ms`);
    if (attempts.seen) assert.equal(attempts.at.filter((at) => at <= seen).length, 1, 'one attempt before it was told');
    await h.waitLive(page, transport);
    h.assertNoErrors(page, REFUSED);
    await context.close();
  });
}
