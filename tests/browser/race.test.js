// Race mode: every transport subscribed at once, each message timed on each.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

test('race mode shows an arrival on every transport for every message, a burst included', { timeout: 90000 }, async () => {
  const racer = await h.openChat(env.browser, env.server.url);
  const other = await h.openChat(env.browser, env.server.url);
  await h.send(other, 'before the race');
  await h.waitForBodies(racer, ['before the race']);

  await racer.click('label[for="race"]');
  await racer.waitForFunction(() => document.querySelectorAll('#hood td.running .state-live').length === 4, null, {
    timeout: h.WAIT_MS,
  });

  const burst = 15;
  await racer.fill('#burst-count', String(burst));
  await racer.click('#burst');
  for (const body of ['other 1', 'other 2', 'other 3']) await h.send(other, body);
  await racer.locator('#burst-progress', { hasText: `${burst} sent` }).waitFor({ timeout: h.WAIT_MS });
  await racer.waitForFunction(() => document.querySelectorAll('#burst:disabled').length === 0, null, {
    timeout: h.WAIT_MS,
  });

  const total = burst + 3;
  await racer.waitForFunction(
    (expected) => {
      const rows = [...document.querySelectorAll('#race-table tbody tr')];
      return rows.length === expected && rows.every((row) => row.querySelectorAll('td[data-arrived]').length === 4);
    },
    total,
    { timeout: h.WAIT_MS },
  );

  const rows = await racer.$$eval('#race-table tbody tr', (trs) =>
    trs.map((tr) => ({
      id: tr.dataset.id,
      winners: tr.querySelectorAll('td.winner').length,
      cells: [...tr.querySelectorAll('td')].map((td) => td.textContent),
    })),
  );
  assert.equal(new Set(rows.map((r) => r.id)).size, total, 'one row per message');
  for (const row of rows) {
    assert.equal(row.winners, 1, `one winner for ${row.id}`);
    for (const cell of row.cells) assert.match(cell, /^(first|\+[\d.]+ (ms|s))$/);
  }
  // The message from before the race has no row: only arrivals during the race count.
  const before = (await h.messages(racer)).find((m) => m.body === 'before the race');
  assert.ok(!rows.some((r) => r.id === before.id));

  // "Came first" adds up, and how far behind each transport was is described: a median
  // (enough messages for one), or its two levels. The summary renders in 50 ms batches,
  // so wait until it counts every arrival on every transport, not only one per message.
  await racer.waitForFunction(
    (expected) => {
      const trs = [...document.querySelectorAll('#race-summary tbody tr')];
      return (
        trs.reduce((sum, tr) => sum + Number(tr.dataset.firsts), 0) === expected &&
        trs.every((tr) => Number(tr.dataset.n) === expected)
      );
    },
    total,
    { timeout: h.WAIT_MS },
  );
  const summary = await racer.$$eval('#race-summary tbody tr', (trs) =>
    trs.map((tr) => [...tr.cells].map((c) => c.textContent)),
  );
  for (const cells of summary) {
    assert.match(cells[1], new RegExp(`^\\d+ of ${total}$`), `came first, for ${cells[0]}`);
    assert.match(cells[2], /^(median [\d.]+ (ms|s)|\d+ on time, \d+ one round trip late \(~[\d.]+ (ms|s)\))$/, cells[0]);
  }
  // Each transport compared with the one first most often, in words.
  const verdicts = await racer.$$eval('#race-verdicts li', (lis) => lis.map((li) => li.dataset.verdict));
  assert.equal(verdicts.length, 3);
  for (const verdict of verdicts) assert.match(verdict, /^(none|ahead|levels)$/);

  // Each burst message is the racer's own: a round trip on every transport.
  for (const transport of ['long-poll', 'websocket', 'sse', 'webtransport']) await h.waitSamples(racer, transport, burst);
  // The page shows every message once even though it got each four times.
  const shown = await h.messages(racer);
  assert.equal(new Set(shown.map((m) => m.id)).size, shown.length);
  assert.equal(shown.length, total + 1);

  await h.screenshot(racer, 'race');
  await h.screenshot(racer, 'race-viewport', { fullPage: false });
  h.assertNoErrors(racer);
  h.assertNoErrors(other);
  await racer.context().close();
  await other.context().close();
});
