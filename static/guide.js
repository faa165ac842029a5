// The guided first minute: one button runs a short scenario on every transport at
// once (race mode) and says, after each step, what that step's measured arrivals show:
//
//   1. one message at a time: a long-poll request is already waiting at the server,
//      so long-poll is usually as quick as the streams;
//   2. a burst: messages that reach the server while long-poll's next request is on
//      its way wait for that request, about one round trip;
//   3. back to back: pairs of messages a moment apart, the second of each pair just
//      after long-poll's answer has left.
//
// Every sentence is built from that step's numbers with the rules of compare.js; none
// is written in advance. When the server runs on this machine with no emulated link,
// a note says that the network adds microseconds there, and which flag shows more.
import { aboutOneRoundTrip, comparePair, median } from './compare.js';
import { el } from './dom.js';
import { formatMs } from './format.js';
import { LABEL } from './transports/index.js';

/** Messages sent one at a time, each once the last has arrived everywhere. */
const SINGLES = 3;
/** The burst: the page's default "Publish burst". */
const BURST = 20;
/** Back-to-back pairs. */
const PAIRS = 4;
/** A page from one of these hosts talks to a server on this machine. */
const LOOPBACK = /^(localhost|127(\.\d{1,3}){3}|\[::1\])$/;
/** How long the transports get to be live once race mode is on (ms). */
const START_MS = 10000;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Long-poll asks again once an answer is in (or, in a new race, for the first time):
 *  two round trips give that request time to reach the server, a new connection
 *  included, so that the next message finds it waiting. */
const settle = (roundTrip) => sleep(Math.max(50, 2 * (roundTrip ?? 0)));

export class Guide {
  /**
   * `elements`: the button, a status line, the list the sentences go to, and the note
   * shown when the server is on this machine without an emulated link. `page`: `race`
   * (race.js), `publisher` (publish.js), `startRace()` (turns race mode on),
   * `racing()` (`{ settled, live }`: whether every running transport is live or
   * unavailable, and the live ones), and `roundTrip` (a promise of the measured round
   * trip in ms, or null).
   */
  constructor({ button, state, steps, nearby }, page) {
    this.button = button;
    this.state = state;
    this.steps = steps;
    this.page = page;
    /** The transports racing in the current run. */
    this.names = [];
    button.addEventListener('click', () => this.run());
    // A server on this machine with no emulated link: the network is not there to see.
    nearby.hidden = Boolean(document.getElementById('emulated-link')) || !LOOPBACK.test(location.hostname);
  }

  async run() {
    this.button.disabled = true;
    this.steps.replaceChildren();
    document.body.dataset.guide = 'running';
    try {
      const roundTrip = await this.page.roundTrip;
      this.say('Turning race mode on: every transport subscribes at once…');
      const names = await this.ready();
      this.names = names;
      if (names.length < 2) {
        this.say('Fewer than two transports are live here, so there is nothing to compare.');
        return;
      }
      this.say(`Racing ${list(names)}; a round trip to the server takes ${formatMs(roundTrip)}.`);
      await this.step('single', 'One message at a time', () => this.singles(roundTrip), (records) =>
        singleSentence(records, names, roundTrip),
      );
      await this.step('burst', `A burst of ${BURST}`, () => this.burst(roundTrip), (records) =>
        burstSentence(records, names, roundTrip),
      );
      await this.step('back-to-back', 'Back to back', () => this.pairs(roundTrip), (records) =>
        backToBackSentence(records, names, roundTrip),
      );
      this.say(
        'Done. The race panel shows each message, and compares the transports over every message since race ' +
          'mode came on.',
      );
    } catch (error) {
      this.say(`Stopped: ${error.message}.`);
    } finally {
      this.state.textContent = '';
      document.body.dataset.guide = 'done';
      this.button.disabled = false;
    }
  }

  /** Race mode on, and the transports that are live once each has connected or said
   *  that it cannot run here. */
  async ready() {
    this.page.startRace();
    const deadline = performance.now() + START_MS;
    while (!this.page.racing().settled && performance.now() < deadline) await sleep(100);
    return this.page.racing().live;
  }

  /** Runs one step: `send()` resolves to the ids it published; the sentence is
   *  `describe(records)` of their arrivals. */
  async step(name, title, send, describe) {
    const says = el('span', { className: 'says' }, 'sending…');
    const item = el('li', { dataset: { step: name, state: 'running' } }, el('strong', {}, `${title}: `), says);
    this.steps.append(item);
    this.state.textContent = `${title}…`;
    try {
      says.textContent = describe(await send());
      item.dataset.state = 'done';
    } catch (error) {
      says.textContent = 'not sent.';
      item.dataset.state = 'failed';
      throw error;
    }
  }

  /** Publishes `body`; resolves to its id. */
  async publish(body) {
    const message = await this.page.publisher.publish(body);
    return message.id;
  }

  /** Waits for `ids` to arrive on every racing transport (or for a generous while). */
  arrivals(ids, roundTrip) {
    return this.page.race.waitFor(ids, this.names, Math.max(5000, 10 * (roundTrip ?? 0)));
  }

  async singles(roundTrip) {
    const ids = [];
    for (let i = 1; i <= SINGLES; i += 1) {
      await settle(roundTrip);
      const id = await this.publish(`tour: one message (${i}/${SINGLES})`);
      ids.push(id);
      await this.arrivals([id], roundTrip);
    }
    return this.page.race.recordsOf(ids);
  }

  async burst(roundTrip) {
    const { sent } = await this.page.publisher.burst(BURST, () => {}, 'tour: burst');
    return this.arrivals(
      sent.map((message) => message.id),
      roundTrip,
    );
  }

  /** Pairs: the second message of each follows the first by a tenth of a round trip,
   *  so it reaches the server after the first has been answered (not in the same
   *  answer) and before long-poll's next request does. */
  async pairs(roundTrip) {
    const ids = [];
    const apart = Math.max(10, (roundTrip ?? 0) / 10);
    for (let i = 1; i <= PAIRS; i += 1) {
      await settle(roundTrip);
      const first = this.publish(`tour: back to back (${i}a)`);
      await sleep(apart);
      const second = this.publish(`tour: back to back (${i}b)`);
      const pair = await Promise.all([first, second]);
      ids.push(...pair);
      await this.arrivals(pair, roundTrip);
    }
    return this.page.race.recordsOf(ids);
  }

  say(text) {
    this.steps.append(el('li', { className: 'note' }, text));
  }
}

/** How far behind the first arrival `name` was, per message (missing ones left out). */
function lags(records, name) {
  return records
    .filter((record) => record[name] !== undefined)
    .map((record) => record[name] - Math.min(...Object.values(record)));
}

/** Per message, `name`'s arrival minus `reference`'s. */
function diffs(records, name, reference) {
  return records
    .filter((record) => record[name] !== undefined && record[reference] !== undefined)
    .map((record) => record[name] - record[reference]);
}

function list(names) {
  const labels = names.map((name) => LABEL[name]);
  return labels.length < 2 ? labels.join('') : `${labels.slice(0, -1).join(', ')} and ${labels.at(-1)}`;
}

/** The streams (every racing transport but long-poll), and the one of them first most
 *  often: what long-poll is compared with. */
function streams(records, names) {
  const others = names.filter((name) => name !== 'long-poll');
  const firsts = (name) => records.filter((record) => lags([record], name)[0] === 0).length;
  const reference = others.reduce((best, name) => (firsts(name) > firsts(best) ? name : best), others[0]);
  return { others, reference };
}

/** What the streams' arrivals show among themselves. */
function streamsClause(records, others, roundTrip) {
  if (others.length < 2) return `${list(others)} delivered them`;
  const pairs = [];
  for (let i = 0; i < others.length; i += 1) {
    for (let j = i + 1; j < others.length; j += 1) {
      pairs.push({ a: others[i], b: others[j], verdict: comparePair(diffs(records, others[i], others[j]), roundTrip) });
    }
  }
  const ahead = pairs.filter((pair) => pair.verdict.kind === 'ahead');
  if (ahead.length > 0) {
    return ahead
      .map(({ a, b, verdict }) => {
        const [leader, other] = verdict.leader === 'reference' ? [b, a] : [a, b];
        const by = formatMs(verdict.by);
        return `${LABEL[leader]} came ahead of ${LABEL[other]} by ${by} (first in ${verdict.firsts} of ${verdict.n})`;
      })
      .join(', ');
  }
  const within = formatMs(Math.max(0, ...others.flatMap((name) => lags(records, name))));
  if (pairs.every((pair) => pair.verdict.kind === 'none')) {
    return `${list(others)} showed no clear difference (each within ${within} of the first)`;
  }
  const tooFew = pairs.some((pair) => pair.verdict.kind === 'too-few') ? ', too few messages to say more' : '';
  return `${list(others)} were each within ${within} of the first${tooFew}`;
}

/** Long-poll against the stream first most often, in words. */
function longPollClause(records, reference, roundTrip) {
  const verdict = comparePair(diffs(records, 'long-poll', reference), roundTrip);
  switch (verdict.kind) {
    case 'levels':
      return (
        `long-poll had ${verdict.onTime} on time and ${verdict.late} about one round trip late ` +
        `(~${formatMs(verdict.lateBy)}): those reached the server while its next request was on its way`
      );
    case 'ahead':
      return verdict.leader === 'reference'
        ? `long-poll was behind ${LABEL[reference]} by ${formatMs(verdict.by)} in ${verdict.firsts} of ${verdict.n}`
        : `long-poll came ahead of ${LABEL[reference]} by ${formatMs(verdict.by)} in ${verdict.firsts} of ${verdict.n}`;
    case 'too-few':
      return `long-poll delivered too few of them to compare (${verdict.n})`;
    default:
      return `long-poll kept up: no clear difference from ${LABEL[reference]}`;
  }
}

/** One message at a time: within how much of each other, and whether long-poll's
 *  request was waiting (it was not when long-poll came about a round trip behind, and
 *  later than the streams' own spread). */
function singleSentence(records, names, roundTrip) {
  const within = Math.max(0, ...names.flatMap((name) => lags(records, name)));
  const round = roundTrip === null ? '' : ` (a round trip here: ${formatMs(roundTrip)})`;
  const all = `every transport delivered each of the ${records.length} within ${formatMs(within)} of the first${round}`;
  if (!names.includes('long-poll')) return `${all}.`;
  const others = names.filter((name) => name !== 'long-poll');
  const othersWithin = Math.max(0, ...others.flatMap((name) => lags(records, name)));
  const longPoll = lags(records, 'long-poll');
  if (longPoll.every((lag) => lag < roundTrip / 2 || lag <= othersWithin)) {
    return `${all}, long-poll included: its request was already waiting at the server.`;
  }
  const rest = `${list(others)} were within ${formatMs(othersWithin)} of the first${round}.`;
  const late = longPoll.filter((lag) => lag > othersWithin && aboutOneRoundTrip(lag, roundTrip));
  if (late.length > 0) {
    return (
      `long-poll was about one round trip behind (~${formatMs(median(late))}) for ${late.length} of ` +
      `${longPoll.length}: its next request had not reached the server when the message did. ${rest}`
    );
  }
  const [least, most] = [Math.min(...longPoll), Math.max(...longPoll)];
  return `long-poll was ${formatMs(least)} to ${formatMs(most)} behind the first; ${rest}`;
}

/** A burst: the streams among themselves, and long-poll's two levels if it has them. */
function burstSentence(records, names, roundTrip) {
  const { others, reference } = streams(records, names);
  const parts = [streamsClause(records, others, roundTrip)];
  if (names.includes('long-poll')) parts.push(longPollClause(records, reference, roundTrip));
  return `${parts.join('; ')}.`;
}

/** Back to back: long-poll against the streams. */
function backToBackSentence(records, names, roundTrip) {
  const { others, reference } = streams(records, names);
  if (!names.includes('long-poll')) return `${streamsClause(records, others, roundTrip)}.`;
  const within = Math.max(0, ...others.flatMap((name) => lags(records, name)));
  const streamsWithin = `${list(others)} had every one within ${formatMs(within)} of the first`;
  return `${longPollClause(records, reference, roundTrip)}; ${streamsWithin}.`;
}
