// Publishing: `POST /a/message/new` (form: `body`, `_xsrf`), Tornado's endpoint, which
// every transport delivers; or, on an open WebSocket, an in-band `{"body": …}` frame.
import { httpUrl, xsrfToken } from './net.js';

/** Parallel POSTs of a burst: the browser allows six connections per host, and the
 *  long-poll and the SSE stream may hold two of them; more would queue inside the
 *  browser and inflate the measured round trips. */
const BURST_PARALLEL = 3;
/** The largest burst the page sends. */
export const BURST_MAX = 200;

export class Publisher {
  /** `roundTrips` measures what this page sends; `websocket` carries in-band frames. */
  constructor(roundTrips, websocket) {
    this.roundTrips = roundTrips;
    this.websocket = websocket;
  }

  /** POSTs `body`; resolves to the message object, or throws an Error saying why. */
  async post(body) {
    const sent = performance.now();
    const form = new URLSearchParams({ body, _xsrf: xsrfToken() });
    let response;
    try {
      response = await fetch(httpUrl('/a/message/new'), { method: 'POST', body: form, cache: 'no-store' });
    } catch {
      throw new Error('server unreachable');
    }
    const text = await response.text();
    if (!response.ok) throw new Error(`${response.status}: ${text.trim() || response.statusText}`);
    const message = JSON.parse(text);
    this.roundTrips.claim(message.id, sent);
    return message;
  }

  /** Sends `body` as a frame on the open WebSocket; false when it is not open. */
  sendInBand(body) {
    const sent = performance.now();
    if (!this.websocket.send(body)) return false;
    this.roundTrips.sentInBand(body, sent);
    return true;
  }

  /** POSTs `count` tagged messages, a few at a time; `progress(done, failures)` after each. */
  async burst(count, progress) {
    const tag = Math.random().toString(36).slice(2, 6);
    let next = 1;
    let done = 0;
    let failures = 0;
    const worker = async () => {
      while (next <= count) {
        const index = next;
        next += 1;
        try {
          await this.post(`burst ${tag} ${index}/${count}`);
        } catch {
          failures += 1;
        }
        done += 1;
        progress(done, failures);
      }
    };
    await Promise.all(Array.from({ length: Math.min(BURST_PARALLEL, count) }, worker));
    return failures;
  }
}
