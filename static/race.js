// Race mode: every transport subscribed at once. Each message gets a row that says
// which transport delivered it first and how far behind the others came. The summary
// counts who came first, describes how far behind each was (a median, or the two
// levels when some messages were on time and others a round trip late), and compares
// each transport with the one first most often, calling a leader only when the
// difference is larger than the noise (the rules are in compare.js).
import { compareArrivals, describeSpread, MIN_FOR_P99, MIN_PAIRED } from './compare.js';
import { el } from './dom.js';
import { formatMs, percentile } from './format.js';
import { parseId } from './inbox.js';
import { LABEL, NAMES } from './transports/index.js';

/** Rows kept in the race table. */
const ROWS = 40;
/** Messages whose arrivals are kept for the summary. */
const MAX_RECORDS = 5000;

export class Race {
  constructor(table, summary, verdicts) {
    this.table = table; // <tbody> of the per-message table
    this.summary = summary; // <tbody> of the summary
    this.verdicts = verdicts; // <ul> of the comparisons, in words
    this.rows = new Map(); // id → {tr, cells, first}
    /** id → { transport → arrival time }, oldest first. */
    this.records = new Map();
    /** The page's round trip to the server (ms), once measured: "late by a round trip". */
    this.roundTrip = null;
    /** Waiting for the arrivals of given messages (the guided tour). */
    this.waiters = new Set();
  }

  /** The first arrival of `message` through transport `name`, at `at`. */
  arrival(message, name, at) {
    let record = this.records.get(message.id);
    if (!record) {
      record = {};
      this.records.set(message.id, record);
      if (this.records.size > MAX_RECORDS) this.records.delete(this.records.keys().next().value);
    }
    record[name] = at;
    let row = this.rows.get(message.id);
    if (!row) {
      row = this.addRow(message, at);
      row.cells[name].textContent = 'first';
      row.cells[name].classList.add('winner');
    } else {
      row.cells[name].textContent = `+${formatMs(at - row.first)}`;
    }
    row.cells[name].dataset.arrived = 'true';
    for (const waiter of this.waiters) waiter.check();
  }

  addRow(message, at) {
    const { seq } = parseId(message.id);
    const label = message.body.length > 28 ? `${message.body.slice(0, 27)}…` : message.body;
    const cells = Object.fromEntries(
      NAMES.map((t) => [t, el('td', { className: `arrival t-${t}`, dataset: { transport: t } }, '…')]),
    );
    const tr = el(
      'tr',
      { dataset: { id: message.id } },
      el('th', { scope: 'row', title: message.body }, `#${seq} `, el('span', { className: 'muted' }, label)),
      ...NAMES.map((t) => cells[t]),
    );
    const row = { tr, cells, first: at };
    this.rows.set(message.id, row);
    this.table.prepend(tr);
    while (this.table.rows.length > ROWS) {
      this.rows.delete(this.table.lastElementChild.dataset.id);
      this.table.lastElementChild.remove();
    }
    return row;
  }

  /** The arrivals of the messages `ids` (`{ transport → time }` each). */
  recordsOf(ids) {
    return ids.map((id) => this.records.get(id) ?? {});
  }

  /** Resolves once every message of `ids` has arrived through every transport of
   *  `names`, or after `timeout` ms, with their records either way. */
  waitFor(ids, names, timeout) {
    return new Promise((resolve) => {
      const waiter = {
        check: () => {
          const records = this.recordsOf(ids);
          if (records.every((record) => names.every((name) => record[name] !== undefined))) done();
        },
      };
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(waiter);
        resolve(this.recordsOf(ids));
      };
      const timer = setTimeout(done, timeout);
      this.waiters.add(waiter);
      waiter.check();
    });
  }

  renderSummary() {
    const records = [...this.records.values()];
    const names = NAMES.filter((name) => records.some((record) => record[name] !== undefined));
    const compared = names.length > 0 ? compareArrivals(records, names, this.roundTrip) : null;
    this.summary.replaceChildren(
      ...NAMES.map((t) => {
        const behind = compared?.behind[t] ?? [];
        const firsts = compared?.firsts[t] ?? 0;
        return el(
          'tr',
          { dataset: { transport: t, firsts: String(firsts), n: String(behind.length) } },
          el('th', { scope: 'row', className: `t-${t}` }, el('span', { className: 'swatch' }), LABEL[t]),
          el('td', {}, behind.length ? `${firsts} of ${behind.length}` : '–'),
          el('td', { className: 'spread' }, spreadLabel(behind, this.roundTrip)),
        );
      }),
    );
    const items = (compared?.pairs ?? []).map((pair) =>
      el(
        'li',
        {
          dataset: {
            transport: pair.name,
            reference: pair.reference,
            verdict: pair.verdict.kind,
            ...(pair.verdict.kind === 'ahead' ? { leader: leaderOf(pair) } : {}),
          },
        },
        pairSentence(pair),
      ),
    );
    this.verdicts.replaceChildren(...items);
  }
}

/** How far behind the first arrival a transport was, in words: its two levels, or a
 *  median (and the slowest 1 in 100 once there are enough), or too few to say. The n
 *  is the "of n" beside it. */
function spreadLabel(behind, roundTrip) {
  if (behind.length === 0) return el('span', { className: 'muted' }, 'nothing yet');
  const spread = describeSpread(behind, roundTrip);
  if (spread.kind === 'too-few') return el('span', { className: 'muted' }, 'too few to say');
  if (spread.kind === 'levels') {
    return `${spread.onTime.length} on time, ${spread.late.length} one round trip late (~${formatMs(spread.lateBy)})`;
  }
  const slowest = spread.n >= MIN_FOR_P99 ? ` · slowest 1 in 100: ${formatMs(percentile(behind, 99))}` : '';
  return `median ${formatMs(spread.median)}${slowest}`;
}

function leaderOf({ name, reference, verdict }) {
  return verdict.leader === 'reference' ? reference : name;
}

/** One comparison (`compareArrivals`'s pair) in a sentence that says only what the
 *  numbers support. */
export function pairSentence(pair) {
  const { name, reference, verdict: v } = pair;
  const both = `${LABEL[name]} and ${LABEL[reference]}`;
  switch (v.kind) {
    case 'too-few':
      return `${both}: too few messages to compare yet (${v.n}; ${MIN_PAIRED} needed).`;
    case 'levels': {
      const why = name === 'long-poll' ? ': those reached the server while its next request was on its way' : '';
      return (
        `${both}: ${LABEL[name]} was on time for ${v.onTime} of ${v.n} messages and ` +
        `one round trip late (~${formatMs(v.lateBy)}) for ${v.late}${why}.`
      );
    }
    case 'ahead': {
      const leader = leaderOf(pair);
      const other = leader === name ? reference : name;
      return (
        `${LABEL[leader]} ahead of ${LABEL[other]}: typically by ${formatMs(v.by)}, first in ${v.firsts} of ${v.n}, ` +
        `more than the spread of the differences (${formatMs(v.spread)}).`
      );
    }
    default: {
      const within = formatMs(Math.max(Math.abs(v.low), Math.abs(v.high)));
      const often = v.referenceFirst >= v.nameFirst ? reference : name;
      const count = Math.max(v.referenceFirst, v.nameFirst);
      const typical = Math.abs(v.typical);
      let why = 'less than that spread';
      if (typical > v.high - v.low) why = `less than a tenth of the round trip (${formatMs(v.floor)})`;
      const tail = v.consistent
        ? `${LABEL[often]} came first more often (${count} of ${v.n}), but by ${why}`
        : 'neither came first clearly more often than chance would give ' +
          `(${LABEL[reference]} ${v.referenceFirst}, ${LABEL[name]} ${v.nameFirst})`;
      return (
        `${both}: no clear difference. Within ${within} of each other for the middle half of ${v.n} messages, ` +
        `typically ${formatMs(typical)} apart; ${tail}.`
      );
    }
  }
}
