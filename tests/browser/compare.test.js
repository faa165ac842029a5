// The rules by which race mode and the guided tour call a transport ahead (static/
// compare.js), on arrivals like those measured at a 300 ms emulated round trip. Plain
// functions of numbers: no browser needed.
'use strict';

const assert = require('node:assert/strict');
const path = require('node:path');
const { test } = require('node:test');

const load = () => import(path.resolve(__dirname, '..', '..', 'static', 'compare.js'));

/** WebSocket minus SSE, per message, from a burst of 38 at 300 ms RTT: SSE first in
 *  27, by 1 to 30 ms. */
const WEBSOCKET_MINUS_SSE = [
  30, 16, 15, 11, 10, 7.6, 7.4, 5, 3.8, 6.3, 9.3, 4.7, 3.2, 5.8, 5.1, 13, 16, 15, 1.4, 5.2, 3.2, 3.6, 2.7, 19, 20,
  3.4, 3.2, -2.9, -2, -3.1, -1.5, -1.8, -6, -9, -2.9, -3.2, -3.5, -7.5,
];
/** Long-poll minus the first stream, from the same burst: most on time, 13 about a
 *  round trip late. */
const LONG_POLL_MINUS_FIRST = [
  37, 339, 337, 15, 13, 328, 14, 10, 8.9, 43, 31, 29, 22, 21, 19, 24, 12, 11, 21, 3.3, 27, 340, 338, 13, 313, 307, 16,
  293, 290, 7.6, 290, 285, 6.8, 300, 297,
];

test('the sign test is exact, small and large', async () => {
  const { signTest } = await load();
  assert.ok(Math.abs(signTest(0, 6) - 1 / 32) < 1e-12);
  assert.equal(signTest(10, 20), 1);
  assert.ok(Math.abs(signTest(3, 20) - 0.00258) < 1e-5);
  assert.ok(signTest(1000, 2500) < 1e-20);
});

test('a lead of a few milliseconds, smaller than the spread of the differences, is no clear difference', async () => {
  const { comparePair } = await load();
  const verdict = comparePair(WEBSOCKET_MINUS_SSE, 300);
  assert.equal(verdict.kind, 'none');
  // The sign test alone would have called SSE the winner: it is the size that is noise.
  assert.equal(verdict.consistent, true);
  assert.equal(verdict.referenceFirst, 27);
});

test('some messages on time and others a round trip late are two levels, not one median', async () => {
  const { comparePair, describeSpread } = await load();
  const verdict = comparePair(LONG_POLL_MINUS_FIRST, 300);
  assert.deepEqual(verdict, { kind: 'levels', n: 35, onTime: 22, late: 13, lateBy: 307 });
  assert.equal(describeSpread(LONG_POLL_MINUS_FIRST, 300).kind, 'levels');
  // Without a round trip to measure "late" by, no levels: a median.
  assert.equal(describeSpread(LONG_POLL_MINUS_FIRST, null).kind, 'median');
});

test('a steady lead smaller than a tenth of the round trip is no clear difference', async () => {
  const { comparePair } = await load();
  // SSE first 18 times of 20, by 6 ms give or take one: at a 300 ms round trip, noise.
  const steady = [6, 5, 7, 6, 6.5, 5.5, 6, 7, 5, 6, 6, 6.2, 5.8, 6.4, 5.6, 6, 6.1, 5.9, -1, -0.5];
  const verdict = comparePair(steady, 300);
  assert.equal(verdict.kind, 'none');
  assert.equal(verdict.floor, 30);
  // At a 20 ms round trip the same lead is a third of it, and is called.
  assert.equal(comparePair(steady, 20).kind, 'ahead');
});

test('a lead larger than its spread, first every time, is called', async () => {
  const { comparePair } = await load();
  const alwaysLate = [295, 301, 298, 305, 299, 302, 300, 297];
  assert.deepEqual(comparePair(alwaysLate, 300), {
    kind: 'ahead',
    n: 8,
    leader: 'reference',
    by: 299,
    firsts: 8,
    spread: 4,
  });
  const alwaysEarly = alwaysLate.map((d) => -d);
  assert.equal(comparePair(alwaysEarly, 300).leader, 'name');
});

test('one late message is a hiccup, not a level; lags far from a round trip are not "a round trip late"', async () => {
  const { twoLevels } = await load();
  assert.equal(twoLevels([1, 2, 3, 2, 1, 190], 300), null);
  // On loopback: long-poll some 20 ms behind, five round trips of 3.7 ms, is not that.
  assert.equal(twoLevels([0.5, 0.8, 19, 20, 18], 3.7), null);
  assert.ok(twoLevels([1, 2, 3, 2, 190, 280], 300));
});

test('too few messages: no comparison, no median', async () => {
  const { comparePair, describeSpread, MIN_PAIRED, MIN_FOR_MEDIAN } = await load();
  assert.deepEqual(comparePair([300, 300, 300, 300, 300], 300), { kind: 'too-few', n: 5 });
  assert.equal(MIN_PAIRED, 6);
  assert.deepEqual(describeSpread([1, 2, 3, 4], 300), { kind: 'too-few', n: 4 });
  assert.equal(MIN_FOR_MEDIAN, 5);
});
