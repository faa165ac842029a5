// WebTransport: a session over HTTP/3 (QUIC, UDP) at
// `https://<this host>:<port>/a/message/webtransport?cursor=…`. The page first asks
// `GET /a/message/webtransport/certificate` whether the server offers it, on which UDP
// port, and (for a self-signed certificate) the certificate's SHA-256, which the
// browser is given as `serverCertificateHashes`. The server opens one unidirectional
// stream and writes newline-delimited JSON on it: `{"ready":{"http":"3"}}`, the
// history after the cursor, then every new message; `{"gap": {...}}`, `{"slow": {...}}`
// and `{"reconnect": {"reason", "delay_ms"}}` (when to come back: the server is stopping,
// or has no room) lines are notices, not messages. The transport is live at the ready
// line. To publish, the client opens a bidirectional stream, writes `{"body": "…"}`,
// closes its side and reads the answer (the message, or `{"error": {...}}`).
//
// With `?order=none` in the page's address the session is unordered
// (`…/webtransport?order=none`): the first stream carries the ready line
// (`{"ready":{"http":"3","order":"none"}}`) and then only notices, and every message
// comes on a stream of its own, one line, so one lost packet holds up only its own
// message. Messages then arrive in any order; the inbox places them by seq, and the
// cursor stays at the end of the unbroken run (UnbrokenRun below).
import { parseId } from '../inbox.js';
import { httpUrl, utf8Length, withCursor } from '../net.js';
import { httpOfReady, Transport } from './base.js';

/** Whether this page asked for unordered sessions. */
const UNORDERED = new URLSearchParams(location.search).get('order') === 'none';

/** What the server said about WebTransport; asked again after a failure, since a
 *  restarted server has a new self-signed certificate. */
let offer = null;

async function askOffer() {
  offer ??= fetch(httpUrl('/a/message/webtransport/certificate'), { cache: 'no-store' }).then((r) => r.json());
  return offer;
}

function fromBase64(text) {
  return Uint8Array.from(atob(text), (c) => c.charCodeAt(0));
}

export class WebTransportTransport extends Transport {
  static id = 'webtransport';
  static label = 'WebTransport';

  connect() {
    const generation = this.generation;
    const current = () => generation === this.generation;
    this.stats.requests += 1;
    // Its CONNECT, and QUIC's packets and stream frames, are not visible to the page:
    // only the lines are counted.
    this.wire.connecting(null);
    this.setState('connecting', '');
    this.session = null;
    this.unbroken = null;
    this.run(current).catch((error) => {
      offer = null;
      if (current()) this.failed(error?.message ? `failed: ${error.message}` : 'failed');
    });
  }

  async run(current) {
    if (typeof WebTransport !== 'function') {
      return this.unavailable(isSecureContext ? 'this browser has no WebTransport' : 'the page is not served over https');
    }
    const { available, port, sha256, reason } = await askOffer();
    if (!current()) return;
    if (!available) return this.unavailable(`the server does not offer it (${reason})`);
    const url = new URL(withCursor('/a/message/webtransport', this.cursor), location.href);
    url.protocol = 'https:';
    url.port = String(port);
    if (UNORDERED) {
      url.searchParams.set('order', 'none');
      this.unbroken = new UnbrokenRun(this.cursor);
    }
    const options = sha256 ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: fromBase64(sha256) }] } : {};
    const session = new WebTransport(url.href, options);
    this.session = session;
    session.closed.then(
      (info) => current() && this.failed(`closed (${info.closeCode}${info.reason ? `: ${info.reason}` : ''})`),
      (error) => current() && this.failed(`closed: ${error.message}`),
    );
    await session.ready;
    const incoming = session.incomingUnidirectionalStreams.getReader();
    const { value: control } = await incoming.read();
    if (!UNORDERED) return this.readLines(control, current);
    await Promise.all([this.readLines(control, current), this.acceptMessages(incoming, current)]);
  }

  /** Unordered: reads every further stream the server opens (one message each) as it
   *  comes, without waiting for the ones before it. A stream that breaks while the
   *  session lives fails the session: the reconnect resumes before its message. */
  async acceptMessages(incoming, current) {
    const broken = (error) => current() && this.failed(`a message stream broke: ${error?.message ?? error}`);
    while (current()) {
      const { value: stream, done } = await incoming.read();
      if (done) return;
      this.readLines(stream, current).catch(broken);
    }
  }

  /** Reads newline-delimited JSON from `stream` until it ends. */
  async readLines(stream, current) {
    const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = '';
    while (current()) {
      const { value, done } = await reader.read();
      if (done) break;
      buffered += value;
      let end;
      while ((end = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, end);
        buffered = buffered.slice(end + 1);
        if (current()) this.line(line);
      }
    }
  }

  /** One line from the server. */
  line(text) {
    this.wire.frame(utf8Length(text) + 1);
    let object;
    try {
      object = JSON.parse(text);
    } catch {
      return;
    }
    if (object.ready) {
      const order = object.ready.order ? ` (order: ${object.ready.order})` : '';
      this.carried(httpOfReady(object.ready), `the server’s ready line${order}`);
      this.opened();
    } else if (object.gap) {
      this.gap(object.gap);
    } else if (object.reconnect) {
      // Closing the session at once tells the server the notice was read.
      this.told(object.reconnect);
      this.failed('session ended by the server');
    } else if (!object.slow) {
      this.deliver(object);
    }
  }

  deliver(message) {
    super.deliver(message);
    if (this.unbroken && typeof message?.id === 'string') this.cursor = this.unbroken.arrived(message.id);
  }

  gap(notice) {
    super.gap(notice);
    if (this.unbroken) this.cursor = this.unbroken.restart(this.cursor);
  }

  /** Unordered, messages after one still in flight may already be shown: a transport
   *  taking over resumes from the end of the unbroken run. */
  handover(newest) {
    return this.unbroken ? this.cursor : newest;
  }

  disconnect() {
    const session = this.session;
    this.session = null;
    if (session) session.close({ closeCode: 0, reason: 'done' });
  }
}

/**
 * The cursor of an unordered session: the newest message with every one before it
 * arrived, so a reconnect never skips a message still in flight when the session ended
 * (those after it come again, and the inbox drops the copies). Seqs are dense within
 * an epoch, and a cursor is `<epoch>-<seq>`, 0 being before the first. A session from
 * no cursor does not know its first seq: the lowest that arrived stands for it, moved
 * down if an older one arrives later, until a gap notice names the start.
 */
export class UnbrokenRun {
  /** `cursor`: where the session resumes from (null: the whole history). */
  constructor(cursor) {
    this.epoch = null;
    this.floor = 0;
    this.lowest = 1;
    this.guessed = true;
    this.ahead = new Set();
    if (cursor) this.restart(cursor);
  }

  /** The run starts at `cursor` (where a gap notice says to resume), keeping the
   *  arrivals past it. Returns the cursor. */
  restart(cursor) {
    const at = cursor ? parseId(cursor) : { epoch: null, seq: 0 };
    const kept = at.epoch === this.epoch ? this.arrivals() : [];
    this.epoch = at.epoch;
    this.floor = at.seq;
    this.lowest = at.seq + 1;
    this.guessed = !cursor;
    this.ahead = new Set(kept.filter((seq) => seq > this.floor));
    return this.advance();
  }

  /** Message `id` arrived. Returns the cursor. */
  arrived(id) {
    const { epoch, seq } = parseId(id);
    // The first message from no cursor, or from another server run (its gap notice
    // may come after the message, on the other stream).
    if (epoch !== this.epoch) {
      this.epoch = epoch;
      this.ahead = new Set();
      this.guessed = true;
      this.floor = seq;
      this.lowest = seq;
    } else if (this.guessed && seq < this.lowest) {
      this.ahead = new Set(this.arrivals());
      this.floor = seq;
      this.lowest = seq;
    } else if (seq > this.floor) {
      this.ahead.add(seq);
    }
    return this.advance();
  }

  /** Seqs known to have arrived past the start. */
  arrivals() {
    const run = Array.from({ length: Math.max(0, this.floor - this.lowest + 1) }, (_, i) => this.lowest + i);
    return [...run, ...this.ahead];
  }

  advance() {
    while (this.ahead.delete(this.floor + 1)) this.floor += 1;
    return this.epoch === null ? null : `${this.epoch}-${this.floor}`;
  }
}
