// Long-polling, Tornado's protocol: `POST /a/message/updates` with the form fields
// `_xsrf` and `cursor`. The server holds the request until something follows the cursor
// and answers `{"messages": [...]}` with everything ready (plus `"gap"` when it could
// not place the cursor); the client then asks again at once. An idle poll is answered
// `{}` after the server's hold time. Resuming is the same request as
// polling: the cursor travels in every one. A server that is stopping answers with
// `"reconnect": {"reason", "delay_ms"}`, and one with no room 503 with `Retry-After`:
// the next poll waits that long.
//
// Which HTTP version carries the polls is not in the answer: the browser's Resource
// Timing says it (`nextHopProtocol` of each finished poll, 'h2' or 'http/1.1').
//
// Each poll costs its request head and form, and the answer's head and body, even when
// the answer is an idle `{}`: that is what the wire timeline shows per request.
import { httpUrl, xsrfToken } from '../net.js';
import { httpOfAlpn, Transport } from './base.js';
import { exchangeBytes } from './wire.js';

const POLLS = '/a/message/updates';

/** A poll that has not failed this soon after being sent has reached a live server
 *  (the answer itself may be held for many seconds). */
const SETTLE_MS = 400;

export class LongPoll extends Transport {
  static id = 'long-poll';
  static label = 'Long-poll';

  constructor(sink) {
    super(sink);
    // An observer rather than `performance.getEntriesByType('resource')`: it sees every
    // poll, even after the page's timing buffer (250 entries by default) is full.
    const polls = httpUrl(POLLS);
    if (PerformanceObserver.supportedEntryTypes?.includes('resource')) {
      new PerformanceObserver((list) => {
        const last = list
          .getEntriesByName(polls)
          .filter((entry) => entry.nextHopProtocol)
          .at(-1);
        if (!last) return;
        this.carried(httpOfAlpn(last.nextHopProtocol), `Resource Timing (the last poll: ${last.nextHopProtocol})`);
      }).observe({ type: 'resource' });
    }
  }

  connect() {
    const generation = this.generation;
    const abort = new AbortController();
    this.abort = abort;
    this.stats.requests += 1;
    if (this.state !== 'live') {
      this.setState('connecting', '');
      this.settle = setTimeout(() => {
        if (generation === this.generation && this.state === 'connecting') this.opened();
      }, SETTLE_MS);
    }
    const form = new URLSearchParams({ _xsrf: xsrfToken() });
    if (this.cursor) form.set('cursor', this.cursor);
    const poll = this.wire.request();
    fetch(httpUrl(POLLS), { method: 'POST', body: form, signal: abort.signal, cache: 'no-store' })
      .then(async (response) => {
        const text = await response.text();
        if (generation !== this.generation) return;
        poll.answered(exchangeBytes(POLLS, form.toString(), response, text));
        if (!response.ok) {
          const retryAfter = Number.parseInt(response.headers.get('Retry-After') ?? '', 10);
          if (response.status === 503 && retryAfter >= 0) {
            this.told({ reason: 'over_capacity', delay_ms: retryAfter * 1000 });
          }
          throw new Error(`HTTP ${response.status}`);
        }
        const answer = JSON.parse(text);
        this.opened();
        if (answer.gap) this.gap(answer.gap);
        for (const message of answer.messages || []) {
          if (generation !== this.generation) return;
          this.deliver(message);
        }
        if (answer.reconnect && generation === this.generation) {
          this.told(answer.reconnect);
          return this.failed('poll answered by a server that is stopping');
        }
        // The next poll, from the cursor the last message moved.
        if (generation === this.generation) this.connect();
      })
      .catch((error) => {
        if (generation !== this.generation) return;
        this.failed(error instanceof TypeError ? 'server unreachable' : error.message);
      });
  }

  disconnect() {
    clearTimeout(this.settle);
    if (this.abort) this.abort.abort();
    this.abort = null;
  }
}
