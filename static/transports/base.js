// What the transport clients share: the cursor (the id of the last message
// delivered), the counters, the state shown on the page, and the reconnect loop with
// capped exponential backoff and full jitter. A transport file only says how it
// connects, reads and disconnects; it calls the hooks below, and tells `this.wire`
// (wire.js) what it puts on the wire: requests, handshakes and frames, with their bytes.
//
//   connect()          open a connection from `this.cursor`     (each transport)
//   disconnect()       close it, silently                       (each transport)
//   opened()           data came through (the server's first event, not just an open
//                      connection): reset the backoff, show "live"
//   carried(http, how) the HTTP version that carries it ('2', '1.1'; null: not known)
//   deliver(message)   a message object: advance the cursor, hand it to the page
//   gap(notice)        the server could not resume from our cursor
//   told(notice)       the server said when to come back (`{"reason", "delay_ms"}`: it is
//                      stopping, or has no room): the next reconnect waits that long
//   failed(why)        the connection is gone: reconnect after the told delay, or else
//                      after a backoff delay
//   unavailable(why)   the server does not offer it here: no retries

import { Wire } from './wire.js';

/** Reconnect delays: full jitter over min(cap, base · 2^attempt). It spreads a crowd of
 *  clients out after a server restart instead of having them return in lockstep. */
const BACKOFF_BASE_MS = 500;
const BACKOFF_CAP_MS = 10000;

/** The reasons a server gives for telling a client when to come back, as the page
 *  says them. The server draws each client's delay, so that they come back spread out. */
const TOLD = { server_restart: 'server restarting', over_capacity: 'server at capacity' };

/** The HTTP version a ready notice names (`{"http":"2"}` → '2'), or null: servers
 *  before HTTPS sent `{}`, and the page must still work with them. */
export function httpOfReady(ready) {
  const http = ready !== null && typeof ready === 'object' ? ready.http : undefined;
  return typeof http === 'string' && /^\d(\.\d)?$/.test(http) ? http : null;
}

/** The HTTP version of a Resource Timing `nextHopProtocol` (an ALPN id): 'h2' → '2',
 *  'http/1.1' → '1.1', 'h3' → '3'; null when the browser does not say (''). */
export function httpOfAlpn(protocol) {
  const match = /^(?:http\/(\d(?:\.\d)?)|h(\d)(?:-\w+)?)$/.exec(protocol ?? '');
  return match ? (match[1] ?? match[2]) : null;
}

/** Reconnect delays for one transport. */
export class Backoff {
  constructor() {
    this.attempt = 0;
  }

  next() {
    const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
    this.attempt += 1;
    return Math.random() * ceiling;
  }

  reset() {
    this.attempt = 0;
  }
}

/**
 * The base of every transport client. `sink` is the page: `message(transport, message)`,
 * `gap(transport, notice, staleCursor)`, `live(transport)`, `failed(transport, why)`,
 * `refused(transport, error)` (an in-band publish refused: `{"reason", "message",
 * "retry_after"}`) and `changed()`.
 *
 * `generation` changes on every start, stop and reconnect; callbacks of an older
 * connection compare it and fall silent, so a late answer from a stopped transport can
 * never deliver into the page.
 */
export class Transport {
  constructor(sink) {
    this.name = this.constructor.id;
    this.sink = sink;
    this.running = false;
    this.cursor = null;
    this.state = 'idle';
    this.detail = '';
    /** The HTTP version that carried the last connection ('2', '1.1'), null until known,
     *  and where that came from (shown as a tooltip). */
    this.http = null;
    this.httpFrom = '';
    this.stats = { requests: 0, messages: 0, reconnects: 0, lastGap: null, lastCut: null };
    this.wire = new Wire(() => this.sink.changed());
    /** Failures since the transport was last live: a network that stopped letting it through. */
    this.failuresSinceLive = 0;
    this.backoff = new Backoff();
    /** What the server last told: `{ why, delay }` (ms), until the next reconnect uses it. */
    this.hint = null;
    /** Why the reconnect being waited for waits that long, when the server said so. */
    this.toldWhy = null;
    this.retryAt = null;
    this.retryTimer = null;
    this.generation = 0;
  }

  /** Starts from `cursor` (null: the whole retained history). */
  start(cursor) {
    this.stop();
    this.running = true;
    this.cursor = cursor;
    this.backoff.reset();
    this.generation += 1;
    this.wire.started();
    this.connect();
  }

  stop() {
    if (!this.running) return;
    this.running = false;
    this.generation += 1;
    clearTimeout(this.retryTimer);
    this.retryAt = null;
    this.hint = null;
    this.toldWhy = null;
    this.disconnect();
    this.wire.closed('stopped');
    this.setState('idle', '');
  }

  /** Where a transport taking over from this one resumes, given the newest message
   *  shown: from there, unless this one may still owe older messages. */
  handover(newest) {
    return newest;
  }

  /** Reconnects now, skipping the backoff delay (the network came back); not before a
   *  time the server told, which spreads its clients out. */
  reconnectNow() {
    if (!this.running || this.toldWhy) return;
    this.start(this.cursor);
  }

  opened() {
    this.hint = null; // a told delay is for the end of the connection it came on
    this.backoff.reset();
    this.failuresSinceLive = 0;
    const wasLive = this.state === 'live';
    this.setState('live', '');
    if (!wasLive) this.sink.live(this);
  }

  carried(http, how) {
    if (http === this.http && how === this.httpFrom) return;
    this.http = http;
    this.httpFrom = how;
    this.sink.changed();
  }

  deliver(message) {
    if (!message || typeof message.id !== 'string' || typeof message.body !== 'string') return;
    this.cursor = message.id;
    this.stats.messages += 1;
    this.wire.delivered(message);
    this.sink.message(this, message);
  }

  gap(notice) {
    const staleCursor = this.cursor;
    this.stats.lastGap = { reason: String(notice.reason), missed: notice.missed ?? null, at: new Date() };
    // The notice names where to resume past the gap, so a reconnect before the replay
    // arrives is not told the same gap twice.
    if (typeof notice.cursor === 'string') this.cursor = notice.cursor;
    else if (notice.reason !== 'evicted') this.cursor = null;
    this.sink.gap(this, this.stats.lastGap, staleCursor);
  }

  told(notice) {
    const delay = Number(notice?.delay_ms);
    if (!Number.isFinite(delay) || delay < 0) return;
    this.hint = { why: TOLD[notice.reason] ?? String(notice.reason), delay };
  }

  failed(why) {
    if (!this.running) return;
    this.generation += 1;
    this.disconnect();
    this.wire.closed(why);
    // Told by the server, the delay is its; a stop it announced is no failure of the
    // transport's (three in a row send Auto back to choosing).
    const hint = this.hint;
    this.hint = null;
    this.toldWhy = hint?.why ?? null;
    this.stats.lastCut = hint ? `${why} (${hint.why})` : why;
    if (!hint) this.failuresSinceLive += 1;
    const delay = hint ? hint.delay : this.backoff.next();
    this.retryAt = performance.now() + delay;
    this.setState('waiting', why);
    const generation = this.generation;
    this.retryTimer = setTimeout(() => {
      if (generation !== this.generation) return;
      this.retryAt = null;
      this.toldWhy = null;
      this.stats.reconnects += 1;
      this.connect();
    }, delay);
    this.sink.failed(this, why);
  }

  unavailable(why) {
    if (!this.running) return;
    this.generation += 1;
    this.disconnect();
    this.wire.closed(why);
    this.setState('unavailable', why);
    this.sink.failed(this, why);
  }

  setState(state, detail) {
    this.state = state;
    this.detail = detail;
    this.sink.changed();
  }
}
