// Server-Sent Events: `GET /a/message/events?cursor=…` through the browser's
// `EventSource`. One long `text/event-stream` response; each message is an event whose
// `id:` is the message id, so a reconnect can resume from it. The server also sends
//   event: ready  first, so the client knows events come through (a buffering proxy
//                 opens the stream and then holds everything: the open event is no proof);
//                 its data names the HTTP version that carries the stream,
//                 `{"http":"2"}` (older servers sent `{}`)
//   event: gap    the cursor could not be placed (`id:` is where to resume past it)
//   event: slow   this client did not read fast enough; the stream ends after it
//   event: reconnect  when to come back (`{"reason", "delay_ms"}`: the server is stopping,
//                 or has no room); the stream ends after it
//
// `EventSource` would reconnect by itself, after the server's `retry:` (about 1 s, each
// stream its own; after a reconnect event, its delay), sending `Last-Event-ID`. This
// client closes the source on error and reconnects itself instead, from its own cursor,
// so that the backoff and the resume point are the same for all transports.
import { httpUrl, utf8Length, withCursor } from '../net.js';
import { httpOfReady, Transport } from './base.js';
import { handshakeBytes } from './wire.js';

/** The `retry: N\n` line before the ready event, which `EventSource` does not expose
 *  (N from 500 to 1500 ms: 11 or 12 bytes, counted as 12). */
const RETRY_BYTES = 12;
/** The server's answer head (200, content-type, cache-control, x-accel-buffering,
 *  transfer-encoding, date), which `EventSource` does not expose. The chunk sizes of
 *  HTTP/1.1's chunked encoding (about 7 bytes per write) are not counted. */
const ANSWER_HEAD_BYTES = 165;

export class Sse extends Transport {
  static id = 'sse';
  static label = 'SSE';

  connect() {
    const generation = this.generation;
    const url = withCursor(httpUrl('/a/message/events'), this.cursor);
    const source = new EventSource(url);
    this.source = source;
    this.stats.requests += 1;
    const { pathname, search } = new URL(url);
    this.wire.connecting(handshakeBytes(pathname + search, ANSWER_HEAD_BYTES));
    this.setState('connecting', '');
    const current = () => generation === this.generation;
    /** Counts an event as it came over the wire (the parsed event hides the framing). */
    const count = (type, event, extra = 0) => {
      const header = type ? `event: ${type}\n` : '';
      const id = event.lastEventId ? `id: ${event.lastEventId}\n` : '';
      this.wire.frame(extra + utf8Length(`${header}${id}data: ${event.data}\n\n`));
    };
    source.addEventListener('ready', (event) => {
      if (!current()) return;
      count('ready', event, RETRY_BYTES);
      this.carried(httpOfReady(parse(event.data)), 'the server’s ready event');
      this.opened();
    });
    source.onmessage = (event) => {
      if (!current()) return;
      count('', event);
      const message = parse(event.data);
      if (message) this.deliver(message);
    };
    source.addEventListener('gap', (event) => {
      if (!current()) return;
      count('gap', event);
      const notice = parse(event.data);
      if (notice) this.gap(notice);
    });
    source.addEventListener('slow', (event) => {
      if (!current()) return;
      count('slow', event);
      // The server ends the stream after this; say why rather than "stream cut".
      this.failed('too slow: the server cut the stream (slow consumer)');
    });
    source.addEventListener('reconnect', (event) => {
      if (!current()) return;
      count('reconnect', event);
      const notice = parse(event.data);
      if (notice) this.told(notice);
      this.failed('stream ended by the server');
    });
    source.onerror = () => {
      if (!current()) return;
      this.failed(source.readyState === EventSource.CONNECTING ? 'stream cut' : 'stream refused');
    };
  }

  disconnect() {
    if (this.source) this.source.close();
    this.source = null;
  }
}

/** An event's JSON data, or null when it is not JSON (nothing to act on). */
function parse(data) {
  try {
    return JSON.parse(data);
  } catch {
    return null;
  }
}
