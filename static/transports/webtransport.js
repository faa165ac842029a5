// WebTransport: a session over HTTP/3 (QUIC, UDP) at
// `https://<this host>:<port>/a/message/webtransport?cursor=…`. The page first asks
// `GET /a/message/webtransport/certificate` whether the server offers it, on which UDP
// port, and (for a self-signed certificate) the certificate's SHA-256, which the
// browser is given as `serverCertificateHashes`. The server opens one unidirectional
// stream and writes newline-delimited JSON on it: `{"ready":{"http":"3"}}`, the
// history after the cursor, then every new message; `{"gap": {...}}` and
// `{"slow": {...}}` lines are notices, not messages. The transport is live at the ready
// line. To publish, the client opens a bidirectional stream, writes `{"body": "…"}`,
// closes its side and reads the answer (the message, or `{"error": {...}}`).
import { httpUrl, utf8Length, withCursor } from '../net.js';
import { httpOfReady, Transport } from './base.js';

/** What the server said about WebTransport; fetched once per page. */
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
    this.setState('connecting', '');
    this.session = null;
    this.run(current).catch((error) => {
      if (current()) this.failed(error?.message ? `failed: ${error.message}` : 'failed');
    });
  }

  async run(current) {
    if (typeof WebTransport !== 'function') return this.unavailable('this browser has no WebTransport');
    const { available, port, sha256, reason } = await askOffer();
    if (!current()) return;
    if (!available) return this.unavailable(`the server does not offer it (${reason})`);
    const url = new URL(withCursor('/a/message/webtransport', this.cursor), location.href);
    url.protocol = 'https:';
    url.port = String(port);
    const options = sha256 ? { serverCertificateHashes: [{ algorithm: 'sha-256', value: fromBase64(sha256) }] } : {};
    const session = new WebTransport(url.href, options);
    this.session = session;
    session.closed.then(
      (info) => current() && this.failed(`closed (${info.closeCode}${info.reason ? `: ${info.reason}` : ''})`),
      (error) => current() && this.failed(`closed: ${error.message}`),
    );
    await session.ready;
    const { value: stream } = await session.incomingUnidirectionalStreams.getReader().read();
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
    this.received(utf8Length(text) + 1);
    let object;
    try {
      object = JSON.parse(text);
    } catch {
      return;
    }
    if (object.ready) {
      this.carried(httpOfReady(object.ready), 'the server’s ready line');
      this.opened();
    } else if (object.gap) {
      this.gap(object.gap);
    } else if (!object.slow) {
      this.deliver(object);
    }
  }

  disconnect() {
    const session = this.session;
    this.session = null;
    if (session) session.close({ closeCode: 0, reason: 'done' });
  }
}
