// WebSocket: `GET /a/message/socket?cursor=…`, upgraded (over HTTP/2, the browser sends
// an extended CONNECT instead, RFC 8441, when its connection to the origin is HTTP/2).
// The server sends `{"ready":{"http":"2"}}` (the HTTP version that carries the socket;
// older servers sent `{"ready":{}}`), the history after the cursor, then every new
// message, one JSON message object per text frame; a gap notice is a frame
// `{"gap": {...}}` (no `id`). The transport is live at the ready frame, not at the open
// event: some proxies complete an upgrade and then pass nothing. The client may publish
// in-band with a frame `{"body": "…"}`; one refused for its pace is answered with a
// frame `{"error": {"reason": "rate_limited", "retry_after": N, …}}` (the page waits N s
// before it sends again). A frame `{"reconnect": {"reason", "delay_ms"}}` says when to
// come back, before the close that follows it (1012 server restarting, 1013 server at
// capacity). On close it reconnects from the last id it received; the close code says
// why (1001 server going away, 1013 also slow consumer or bus unavailable).
import { utf8Length, withCursor, wsUrl } from '../net.js';
import { httpOfReady, Transport } from './base.js';
import { handshakeBytes } from './wire.js';

/** The server's `101 Switching Protocols` head (connection, upgrade,
 *  sec-websocket-accept, date), which the page cannot see. */
const ANSWER_HEAD_BYTES = 166;

/** A frame on the wire: 2 header bytes, 2 or 8 more for a long payload, and a 4-byte
 *  mask on the frames a client sends (RFC 6455 §5.2). */
function frameBytes(payload, masked) {
  const length = payload < 126 ? 0 : payload < 65536 ? 2 : 8;
  return 2 + length + (masked ? 4 : 0) + payload;
}

export class WebSocketTransport extends Transport {
  static id = 'websocket';
  static label = 'WebSocket';

  connect() {
    const generation = this.generation;
    const url = withCursor(wsUrl('/a/message/socket'), this.cursor);
    const socket = new WebSocket(url);
    this.socket = socket;
    this.stats.requests += 1;
    const { pathname, search } = new URL(url);
    this.wire.connecting(handshakeBytes(pathname + search, ANSWER_HEAD_BYTES));
    this.setState('connecting', '');
    socket.onmessage = (event) => {
      if (generation !== this.generation || typeof event.data !== 'string') return;
      this.wire.frame(frameBytes(utf8Length(event.data), false));
      let frame;
      try {
        frame = JSON.parse(event.data);
      } catch {
        return;
      }
      if (frame.ready) {
        this.carried(httpOfReady(frame.ready), 'the server’s ready frame');
        this.opened();
      } else if (frame.gap) {
        this.gap(frame.gap);
      } else if (frame.reconnect) {
        this.told(frame.reconnect);
      } else if (frame.error) {
        this.sink.refused(this, frame.error);
      } else {
        this.deliver(frame);
      }
    };
    socket.onclose = (event) => {
      if (generation !== this.generation) return;
      this.socket = null;
      const why =
        event.code === 1001 ? 'server going away' : `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`;
      this.failed(why);
    };
  }

  disconnect() {
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onmessage = socket.onclose = null;
      socket.close(1000);
    }
  }

  /** Publishes with a `{"body": …}` frame; false when the socket is not open. */
  send(body) {
    if (!this.open) return false;
    const frame = JSON.stringify({ body });
    this.socket.send(frame);
    this.wire.sent(frameBytes(utf8Length(frame), true));
    return true;
  }

  get open() {
    return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
  }
}
