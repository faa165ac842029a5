// What the measured arrivals allow the page to say, and no more. Race mode and the
// guided tour both compare transports from the same numbers: per message, when each
// transport delivered it. The rules, in the words the page uses:
//
//   - A transport is "ahead" of another only if it came first in clearly more messages
//     than a coin toss would give (a two-sided sign test over the paired arrivals,
//     p < 0.05), and if the typical difference (the median of the per-message
//     differences) is larger than the noise: the spread of those differences (the width
//     of their middle half, the interquartile range), and never less than a tenth of
//     the round trip. Otherwise: "no clear difference". The browser's and the server's
//     own scheduling move arrivals by a few milliseconds, often the same way for a
//     whole run (SSE first in 17 of 20 messages by 1 to 10 ms in one run, in 27 of 49
//     in another): a lead that small is no property of a transport, and changes
//     nothing a reader of the chat sees at that round trip.
//   - Where some messages are on time and others about a round trip late, one median
//     would describe neither group: the two levels are reported instead. A message is
//     late when it is at least half a round trip behind; the late ones are a level of
//     their own when there are at least two (one is a hiccup, not a pattern), they are
//     typically within half a round trip of one round trip, and they stand apart from
//     the on-time ones (the gap between the groups is wider than the on-time group's
//     own spread).
//   - A median needs MIN_FOR_MEDIAN samples, "slowest 1 in 100" MIN_FOR_P99.
//
// No DOM here: plain functions of numbers.
import { percentile } from './format.js';

/** Messages two transports must both have delivered before they are compared: with
 *  fewer, not even "first every time" passes the sign test (6 of 6: p = 0.03). */
export const MIN_PAIRED = 6;
/** Samples below which the page shows the values, or says "too few", not a median. */
export const MIN_FOR_MEDIAN = 5;
/** Samples below which "slowest 1 in 100" would only be the slowest one seen. */
export const MIN_FOR_P99 = 100;
/** The chance, if neither transport were faster, of a lead at least as lopsided. */
const SIGNIFICANCE = 0.05;
/** The smallest lead called, as a share of the round trip (see the rules above). */
const LEAD_FLOOR = 1 / 10;

export function median(values) {
  return percentile(values, 50);
}

/**
 * Two-sided sign test: the probability that a fair coin, tossed `n` times, comes up
 * one way `k` or fewer times, or `n - k` or more (exact; computed from logarithms
 * so that it stays finite for thousands of tosses).
 */
export function signTest(k, n) {
  if (n === 0) return 1;
  const fewer = Math.min(k, n - k);
  // C(n, fewer) / 2^n, then the smaller terms relative to it.
  let logTerm = -n * Math.LN2;
  for (let i = 1; i <= fewer; i += 1) logTerm += Math.log((n - fewer + i) / i);
  let ratio = 1;
  let sum = 1;
  for (let i = fewer; i > 0; i -= 1) {
    ratio *= i / (n - i + 1);
    sum += ratio;
  }
  return Math.min(1, 2 * Math.exp(logTerm + Math.log(sum)));
}

/** Whether `ms` is about one round trip: within half a round trip of it. */
export function aboutOneRoundTrip(ms, roundTrip) {
  return roundTrip > 0 && Math.abs(ms - roundTrip) <= roundTrip / 2;
}

/**
 * `values` (ms, e.g. how far behind) split into an on-time level and a level about a
 * round trip later (`lateBy`: its median), or null when they do not form these two
 * levels (see the rules above).
 */
export function twoLevels(values, roundTrip) {
  if (!(roundTrip > 0)) return null;
  const onTime = values.filter((v) => v < roundTrip / 2);
  const late = values.filter((v) => v >= roundTrip / 2);
  if (onTime.length === 0 || late.length < 2) return null;
  const lateBy = median(late);
  const gap = Math.min(...late) - Math.max(...onTime);
  const spread = Math.max(...onTime) - Math.min(...onTime);
  if (!aboutOneRoundTrip(lateBy, roundTrip) || gap <= spread) return null;
  return { onTime, late, lateBy };
}

/**
 * Compares transport `name` with `reference` over `diffs`: per message, when `name`
 * delivered it minus when `reference` did (ms; positive: `reference` was first).
 * Returns one of
 *   { kind: 'too-few', n }
 *   { kind: 'levels', n, onTime, late, lateBy }      (counts; ms)
 *   { kind: 'ahead', n, leader: 'reference' | 'name', by, firsts, spread }
 *   { kind: 'none', n, typical, low, high, floor, referenceFirst, nameFirst, consistent }
 * where `low`..`high` is the middle half of the differences, `floor` a tenth of the
 * round trip, and `consistent` says whether the sign test alone would have called a
 * leader (then it is the size of the difference that is within the noise).
 */
export function comparePair(diffs, roundTrip) {
  const n = diffs.length;
  if (n < MIN_PAIRED) return { kind: 'too-few', n };
  const levels = twoLevels(diffs, roundTrip);
  if (levels) {
    return {
      kind: 'levels',
      n,
      onTime: levels.onTime.length,
      late: levels.late.length,
      lateBy: levels.lateBy,
    };
  }
  const referenceFirst = diffs.filter((d) => d > 0).length;
  const nameFirst = diffs.filter((d) => d < 0).length;
  const consistent = signTest(Math.min(referenceFirst, nameFirst), referenceFirst + nameFirst) < SIGNIFICANCE;
  const typical = median(diffs);
  const low = percentile(diffs, 25);
  const high = percentile(diffs, 75);
  const spread = high - low;
  const floor = roundTrip > 0 ? roundTrip * LEAD_FLOOR : 0;
  if (consistent && Math.abs(typical) > Math.max(spread, floor)) {
    const leader = typical > 0 ? 'reference' : 'name';
    return { kind: 'ahead', n, leader, by: Math.abs(typical), firsts: Math.max(referenceFirst, nameFirst), spread };
  }
  return { kind: 'none', n, typical, low, high, floor, referenceFirst, nameFirst, consistent };
}

/**
 * Per-message arrivals (`records`: one `{ transport: time }` per message) of the
 * transports `names`, compared: how often each came first, how far behind the first
 * arrival it was, and each transport against the one that came first most often.
 */
export function compareArrivals(records, names, roundTrip) {
  const firsts = Object.fromEntries(names.map((name) => [name, 0]));
  const behind = Object.fromEntries(names.map((name) => [name, []]));
  for (const record of records) {
    const present = names.filter((name) => record[name] !== undefined);
    if (present.length === 0) continue;
    const first = Math.min(...present.map((name) => record[name]));
    firsts[present.find((name) => record[name] === first)] += 1;
    for (const name of present) behind[name].push(record[name] - first);
  }
  const reference = names.reduce((best, name) => (firsts[name] > firsts[best] ? name : best), names[0]);
  const pairs = names
    .filter((name) => name !== reference)
    .map((name) => {
      const diffs = records
        .filter((record) => record[name] !== undefined && record[reference] !== undefined)
        .map((record) => record[name] - record[reference]);
      return { name, reference, verdict: comparePair(diffs, roundTrip) };
    });
  return { reference, firsts, behind, pairs };
}

/** How `values` (ms behind) are spread, for a label: the two levels, a median, or
 *  too few to say. */
export function describeSpread(values, roundTrip) {
  if (values.length < MIN_FOR_MEDIAN) return { kind: 'too-few', n: values.length };
  const levels = twoLevels(values, roundTrip);
  if (levels) return { kind: 'levels', n: values.length, ...levels };
  return { kind: 'median', n: values.length, median: median(values) };
}
