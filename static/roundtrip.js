// Round trips of this page's own messages: from "send" to the message's first arrival
// through each running transport. A POST's answer names the message id; an in-band
// WebSocket frame has no answer, so its message is matched by body when it comes back.
// A POST that opened a new connection first is shown, marked, but left out of the
// charts: the connection's setup is the send's cost, not the transport's.
import { formatMs, pushBounded } from './format.js';
import { LABEL, NAMES } from './transports/index.js';

/** Samples kept per transport for the running percentiles. */
const MAX_SAMPLES = 5000;
/** Arrival times remembered, for POST answers that come back after the message. */
const MAX_ARRIVALS = 2000;
/** In-band sends remembered while they are on their way. */
const MAX_PENDING_FRAMES = 100;
const SHORT = { 'long-poll': 'LP', websocket: 'WS', sse: 'SSE', webtransport: 'WT' };

export class RoundTrips {
  /** `inbox` shows the measured round trip on the message; `changed()` redraws charts. */
  constructor(inbox, changed) {
    this.inbox = inbox;
    this.changed = changed;
    /** transport → round trips in ms, oldest first. */
    this.samples = Object.fromEntries(NAMES.map((name) => [name, []]));
    /** id → {transport → arrival time}. */
    this.arrivals = new Map();
    /** id → {sent, newConnection, measured: {transport → ms}}, for own messages. */
    this.own = new Map();
    /** In-band sends not yet seen coming back, oldest first. */
    this.pendingFrames = [];
  }

  /** Notes that `message` arrived through `name` at `at`; returns whether it is the
   *  first arrival of that message through that transport. */
  arrived(message, name, at) {
    let times = this.arrivals.get(message.id);
    if (!times) {
      times = {};
      this.arrivals.set(message.id, times);
      if (this.arrivals.size > MAX_ARRIVALS) this.arrivals.delete(this.arrivals.keys().next().value);
    }
    if (times[name] !== undefined) return false;
    times[name] = at;
    return true;
  }

  /** Measures `message` if it is ours (call once it is on the page). */
  measureArrival(message, name) {
    if (!this.own.has(message.id)) {
      const index = this.pendingFrames.findIndex((pending) => pending.body === message.body);
      if (index < 0) return;
      const [pending] = this.pendingFrames.splice(index, 1);
      this.claim(message.id, pending.sent);
      return;
    }
    this.measure(message.id, name, this.arrivals.get(message.id)[name]);
  }

  /** An in-band frame was sent at `sent`. */
  sentInBand(body, sent) {
    this.pendingFrames.push({ body, sent });
    if (this.pendingFrames.length > MAX_PENDING_FRAMES) this.pendingFrames.shift();
  }

  /** Message `id` is ours, sent at `sent` (`newConnection`: its POST opened a
   *  connection first): measures every arrival seen so far. */
  claim(id, sent, { newConnection = false } = {}) {
    this.own.set(id, { sent, newConnection, measured: {} });
    if (this.own.size > MAX_ARRIVALS) this.own.delete(this.own.keys().next().value);
    this.inbox.item(id)?.classList.add('own');
    for (const [name, at] of Object.entries(this.arrivals.get(id) || {})) this.measure(id, name, at);
    this.changed();
  }

  measure(id, name, at) {
    const entry = this.own.get(id);
    if (!entry || entry.measured[name] !== undefined) return;
    const rtt = Math.max(0, at - entry.sent);
    entry.measured[name] = rtt;
    if (!entry.newConnection) pushBounded(this.samples[name], rtt, MAX_SAMPLES);
    const item = this.inbox.item(id);
    if (item) {
      item.classList.add('own');
      const parts = NAMES.filter((t) => entry.measured[t] !== undefined);
      const text =
        parts.length === 1
          ? `${formatMs(entry.measured[parts[0]])} via ${LABEL[parts[0]]}`
          : parts.map((t) => `${SHORT[t]} ${formatMs(entry.measured[t])}`).join(' · ');
      const marked = entry.newConnection ? ' (the send opened a new connection first: not in the charts)' : '';
      item.querySelector('.rtt').textContent = ` · ↩ round trip ${text}${marked}`;
    }
    this.changed();
  }
}
