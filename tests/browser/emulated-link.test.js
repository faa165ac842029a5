// The demo with `--emulate-rtt`: the page says plainly that the link is emulated, and
// what the reader sees is what that round trip does: a WebSocket message comes back no
// sooner than one RTT after it was sent, and in race mode every transport still
// delivers every message.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const RTT_MS = 300;
const env = h.useServerAndBrowser('127.0.0.1:0', ['--emulate-rtt', `${RTT_MS}ms`]);

/** The round trip a message of the page shows, in ms ("↩ 612 ms via WebSocket"). */
async function shownRoundTrip(page, body) {
  const label = page.locator('#inbox .msg.own', { hasText: body }).locator('.rtt');
  await label.filter({ hasText: '↩' }).waitFor({ timeout: h.WAIT_MS });
  const text = await label.textContent();
  const match = text.match(/([\d.]+) (ms|s)/);
  assert.ok(match, `no round trip in ${JSON.stringify(text)}`);
  return Number(match[1]) * (match[2] === 's' ? 1000 : 1);
}

test('the page names the emulated link, and a round trip takes at least its RTT', { timeout: 90000 }, async () => {
  const page = await h.openChat(env.browser, `${env.server.url}?transport=websocket`);
  await h.waitLive(page, 'websocket');
  const note = await page.textContent('#emulated-link');
  assert.match(note, /Emulated link: 300 ms RTT/);

  await page.check('#inband');
  await page.fill('#body', 'across the emulated link');
  await page.press('#body', 'Enter');
  const inBand = await shownRoundTrip(page, 'across the emulated link');
  assert.ok(inBand >= RTT_MS, `an in-band round trip of ${inBand} ms, under the ${RTT_MS} ms RTT`);

  // Race mode: all three deliver.
  await page.click('label[for="race"]');
  await page.waitForFunction(() => document.querySelectorAll('#hood td.running .state-live').length === 3, null, {
    timeout: h.WAIT_MS,
  });
  await page.uncheck('#inband');
  await h.send(page, 'raced over 300 ms');
  await page.waitForFunction(
    () => {
      const row = document.querySelector('#race-table tbody tr');
      return row && row.querySelectorAll('td[data-arrived]').length === 3;
    },
    null,
    { timeout: h.WAIT_MS },
  );
  // The POST takes one way to the server, the message one way back on each transport.
  const raced = await shownRoundTrip(page, 'raced over 300 ms');
  assert.ok(raced >= RTT_MS, `a POST round trip of ${raced} ms, under the ${RTT_MS} ms RTT`);
  await h.screenshot(page, 'emulated-link-race');
  h.assertNoErrors(page);
  await page.context().close();
});

test('the note fits a phone-sized screen', { timeout: 60000 }, async () => {
  const phone = await h.openChat(env.browser, env.server.url, { viewport: { width: 390, height: 844 } });
  assert.ok(await phone.isVisible('#emulated-link'));
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await h.screenshot(phone, 'emulated-link-phone');
  h.assertNoErrors(phone);
  await phone.context().close();
});
