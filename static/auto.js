// Auto: the transport this network lets through, found by trying them in turn:
// WebSocket, then WebTransport, then SSE, then long-poll. A transport is chosen only once
// data has come through it (its server's ready frame or event): an open connection is no
// proof, since a buffering proxy opens an event stream and then holds every event, and
// some proxies complete a WebSocket upgrade and pass nothing. How long to wait for that
// data is derived from the round trip this page measured. A transport that says at once
// that it cannot run here (WebTransport: no browser support, or the server does not
// offer it) is passed over at once, with its reason. Long-poll, the last resort, passes
// anything that passes HTTP, and is taken without a trial. What worked is remembered for
// this origin and tried first next time; if it has gone silent since (WebTransport with
// UDP now blocked), that costs one trial's wait: about 0.3 s on loopback, and the browser
// tests allow 5 s for the whole fallback to WebSocket.
import { LABEL } from './transports/index.js';

// WebTransport comes after WebSocket, not before: it costs the server more CPU per
// delivery than WebSocket over loopback, it needs a certificate fetch and a QUIC
// handshake before any data, and WebSocket passes wherever TCP does. It is what Auto
// tries when WebSocket is refused, before one-way SSE.
// Measured (bench/results/2026-12-06): server CPU per delivery 24.7 µs against
// WebSocket's 7.0 at 1,000 subscribers, 60.9 against 8.4 at 10,000.
/** Most capable first: two-way and lean, then two-way over QUIC, then one-way streaming, then polling. */
const ORDER = ['websocket', 'webtransport', 'sse', 'long-poll'];
/** Where the last choice is remembered, with why. */
const MEMORY_KEY = 'pushwire.auto';
/** Round trips a trial may take: connect, request (or upgrade), and two to spare. */
const TRIAL_ROUND_TRIPS = 4;
/** What a trial gets beyond the round trips: the server and the browser at work. */
const TRIAL_SLACK_MS = 250;
/** Round trips a transport needs before data beyond WebSocket's: WebTransport first
 *  asks the server for its certificate and port. */
const EXTRA_ROUND_TRIPS = { webtransport: 1 };
/** What a transport that sent nothing may have met, for the status line. */
const SILENT_SUSPECT = { webtransport: 'UDP blocked?' };

export class Auto {
  /**
   * `carry(name)` makes transport `name` the one carrying the chat (from the inbox's
   * newest message); `report(state, text)` shows what Auto is doing; `abandoned(name)`
   * says that the trial of `name` ended without data (what it cost is the trial's,
   * not the transport's).
   */
  constructor(carry, report, abandoned) {
    this.carry = carry;
    this.report = report;
    this.abandoned = abandoned;
    this.trial = null;
    this.choosing = false;
  }

  /** Tries the transports in turn and settles on the first one data comes through. */
  async choose() {
    this.choosing = true;
    const remembered = recall();
    const order = remembered ? [remembered.transport, ...ORDER.filter((t) => t !== remembered.transport)] : ORDER;
    const rtt = await roundTrip();
    const refused = [];
    for (const name of order) {
      if (!this.choosing) return;
      if (name === 'long-poll') break;
      const patience = Math.round(TRIAL_SLACK_MS + (TRIAL_ROUND_TRIPS + (EXTRA_ROUND_TRIPS[name] ?? 0)) * rtt);
      this.report('trying', `trying ${LABEL[name]} (waiting up to ${patience} ms for data)`);
      const outcome = await this.attempt(name, patience);
      if (outcome === 'live') {
        const why = remembered?.transport === name ? `remembered: ${remembered.why}` : because(refused, name);
        return this.settle(name, why);
      }
      if (!this.choosing) return;
      this.abandoned(name);
      refused.push(`${LABEL[name]} ${outcome}`);
    }
    if (!this.choosing) return;
    this.carry('long-poll');
    this.settle('long-poll', because(refused, 'long-poll'));
  }

  /** Stops choosing (the reader picked a transport). */
  cancel() {
    this.choosing = false;
    this.trial?.resolve('cancelled');
  }

  /** Starts `name` and resolves 'live' when data comes through, or why not. */
  attempt(name, patience) {
    return new Promise((resolve) => {
      const suspect = SILENT_SUSPECT[name] ?? 'a buffering proxy?';
      const timer = setTimeout(() => done(`sent nothing within ${patience} ms (${suspect})`), patience);
      const done = (outcome) => {
        clearTimeout(timer);
        this.trial = null;
        resolve(outcome);
      };
      this.trial = { name, resolve: done };
      this.carry(name);
    });
  }

  /** Called by the page when a transport's data comes through. */
  live(transport) {
    if (this.trial?.name === transport.name) this.trial.resolve('live');
  }

  /** Called by the page when a transport's connection fails, or when the transport
   *  cannot run here at all (unavailable: its reason is the refusal's). */
  failed(transport) {
    if (this.trial?.name !== transport.name) return;
    const unavailable = transport.state === 'unavailable';
    this.trial.resolve(unavailable ? `unavailable: ${transport.detail}` : 'refused by the network');
  }

  settle(name, why) {
    this.choosing = false;
    remember({ transport: name, why });
    this.report('settled', why);
  }

  /** Forgets what worked (it stopped working) and chooses again. */
  rechoose() {
    forget();
    return this.choose();
  }
}

/** Why `chosen` was taken after the `refused` ones. */
function because(refused, chosen) {
  if (refused.length === 0) return `${LABEL[chosen]} works here`;
  return `${refused.join('; ')} → ${LABEL[chosen]}`;
}

/**
 * This page's round trip to its server, in ms: from the navigation's timing (request
 * sent → first byte of the answer), or one small request when that is not there.
 */
async function roundTrip() {
  const [navigation] = performance.getEntriesByType('navigation');
  if (navigation && navigation.responseStart > navigation.requestStart) {
    return navigation.responseStart - navigation.requestStart;
  }
  const sent = performance.now();
  try {
    await fetch(new URL('/static/style.css', location.href), { method: 'HEAD', cache: 'no-store' });
  } catch {
    // Unreachable: the trials will say so.
  }
  return performance.now() - sent;
}

function recall() {
  try {
    const memory = JSON.parse(localStorage.getItem(MEMORY_KEY));
    return ORDER.includes(memory?.transport) ? memory : null;
  } catch {
    return null;
  }
}

function remember(choice) {
  try {
    localStorage.setItem(MEMORY_KEY, JSON.stringify(choice));
  } catch {
    // Storage refused: Auto chooses again on the next visit.
  }
}

function forget() {
  try {
    localStorage.removeItem(MEMORY_KEY);
  } catch {
    // Nothing was stored.
  }
}
