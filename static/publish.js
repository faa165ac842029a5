// Publishing: `POST /a/message/new` (form: `body`, `_xsrf`), Tornado's endpoint, which
// every transport delivers; or, on an open WebSocket, an in-band `{"body": …}` frame.
//
// The server limits how fast one client publishes: past it, a POST gets 429 with
// `Retry-After` (whole seconds), an in-band frame an `{"error": {"reason":
// "rate_limited", "retry_after": N, …}}` frame. Either way every send this page makes
// waits that long first; a POST refused so is sent again after the wait.
//
// A POST that had to open a new connection first (Resource Timing says so: its
// connection took time to set up) takes a round trip more, which is the send's cost,
// not the transport's: its message says so, and the round-trip charts leave it out.
// (Counting from the request's own start would not do: an emulated link charges the
// connection's setup to its first request.)
import { pushBounded } from './format.js';
import { httpUrl, xsrfToken } from './net.js';

/** Parallel POSTs of a burst: the browser allows six connections per host, and the
 *  long-poll and the SSE stream may hold two of them; more would queue inside the
 *  browser and inflate the measured round trips. */
const BURST_PARALLEL = 3;
/** The largest burst the page sends. */
export const BURST_MAX = 200;
/** How long a POST's Resource Timing entry is waited for once its answer is in (it is
 *  queued for the page a moment after the answer ends); without it, the POST counts as
 *  one on a connection already open. */
const TIMING_WAIT_MS = 1000;
/** Finished POSTs' timing entries kept for matching with their sends. */
const TIMINGS_KEPT = 50;

/** A POST the server refused with `status` for now: it said when to try again. */
class Refused extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class Publisher {
  /** `roundTrips` measures what this page sends; `websocket` carries in-band frames. */
  constructor(roundTrips, websocket) {
    this.roundTrips = roundTrips;
    this.websocket = websocket;
    /** performance.now() before which nothing is sent: the server's last Retry-After. */
    this.pausedUntil = 0;
    this.url = httpUrl('/a/message/new');
    /** Resource Timing entries of finished POSTs, and sends waiting for theirs. An
     *  observer sees every one, even once the page's timing buffer (250 entries) is
     *  full of polls. */
    this.timings = [];
    this.matched = new WeakSet();
    this.timingWaiters = new Set();
    if (PerformanceObserver.supportedEntryTypes?.includes('resource')) {
      new PerformanceObserver((list) => {
        for (const entry of list.getEntriesByName(this.url)) pushBounded(this.timings, entry, TIMINGS_KEPT);
        for (const waiter of this.timingWaiters) waiter();
      }).observe({ type: 'resource' });
    }
  }

  /** Milliseconds left before the next send may go (0: now). */
  pausedFor() {
    return Math.max(0, this.pausedUntil - performance.now());
  }

  /** The server asked to wait `seconds` before publishing again. */
  pause(seconds) {
    this.pausedUntil = Math.max(this.pausedUntil, performance.now() + seconds * 1000);
  }

  /** Resolves once the server's last Retry-After has passed. */
  async waitOut() {
    while (this.pausedFor() > 0) await new Promise((resolve) => setTimeout(resolve, this.pausedFor()));
  }

  /** POSTs `body`, again after each wait the server asks for when it refuses it for
   *  its pace (429), calling `refused()` then; resolves to the message object, or throws
   *  an Error saying why it was not published. */
  async publish(body, refused = () => {}) {
    for (;;) {
      try {
        return await this.post(body);
      } catch (error) {
        if (!(error instanceof Refused && error.status === 429)) throw error;
        refused();
      }
    }
  }

  /** POSTs `body` once any wait the server asked for is over; resolves to the message
   *  object, or throws an Error saying why (a `Refused` when the server said when to
   *  try again). */
  async post(body) {
    await this.waitOut();
    const sent = performance.now();
    const form = new URLSearchParams({ body, _xsrf: xsrfToken() });
    let response;
    try {
      response = await fetch(this.url, { method: 'POST', body: form, cache: 'no-store' });
    } catch {
      throw new Error('server unreachable');
    }
    const text = await response.text();
    if (!response.ok) {
      const why = `${response.status}: ${text.trim() || response.statusText}`;
      const retryAfter = Number.parseInt(response.headers.get('Retry-After') ?? '', 10);
      if (Number.isInteger(retryAfter) && retryAfter >= 0) {
        this.pause(retryAfter);
        throw new Refused(why, response.status);
      }
      throw new Error(why);
    }
    const message = JSON.parse(text);
    const timing = await this.timingOf(sent);
    const newConnection = Boolean(timing && timing.connectEnd > timing.connectStart);
    this.roundTrips.claim(message.id, sent, { newConnection });
    return message;
  }

  /** The timing entry of the POST whose fetch was called just after `sent`, or null if
   *  none comes in time. Parallel POSTs each take the earliest unmatched one. */
  timingOf(sent) {
    const find = () => {
      const entry = this.timings.find((e) => e.startTime >= sent && !this.matched.has(e));
      if (entry) this.matched.add(entry);
      return entry ?? null;
    };
    const found = find();
    if (found || !PerformanceObserver.supportedEntryTypes?.includes('resource')) return Promise.resolve(found);
    return new Promise((resolve) => {
      const done = (entry) => {
        clearTimeout(timer);
        this.timingWaiters.delete(waiter);
        resolve(entry);
      };
      const waiter = () => {
        const entry = find();
        if (entry) done(entry);
      };
      const timer = setTimeout(() => done(null), TIMING_WAIT_MS);
      this.timingWaiters.add(waiter);
    });
  }

  /** Sends `body` as a frame on the open WebSocket once any wait is over; false when
   *  the socket is not open. */
  async sendInBand(body) {
    await this.waitOut();
    const sent = performance.now();
    if (!this.websocket.send(body)) return false;
    this.roundTrips.sentInBand(body, sent);
    return true;
  }

  /** POSTs `count` messages (`<label> <tag> <i>/<count>`), a few at a time;
   *  `progress(done, failures)` after each, and when the server says the page publishes
   *  too fast: that message is sent again once the wait is over. Resolves to the
   *  messages published (in the order the server answered) and how many failed. */
  async burst(count, progress, label = 'burst') {
    const tag = Math.random().toString(36).slice(2, 6);
    const sent = [];
    let next = 1;
    let done = 0;
    let failures = 0;
    const worker = async () => {
      while (next <= count) {
        const index = next;
        next += 1;
        try {
          sent.push(await this.publish(`${label} ${tag} ${index}/${count}`, () => progress(done, failures)));
        } catch {
          failures += 1;
        }
        done += 1;
        progress(done, failures);
      }
    };
    await Promise.all(Array.from({ length: Math.min(BURST_PARALLEL, count) }, worker));
    return { sent, failures };
  }
}
