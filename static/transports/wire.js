// What a transport puts on the wire, as far as the page can count it: each request or
// connection, each frame, and their bytes with headers and framing. The base (base.js)
// gives every transport a Wire; the transport tells it what happened, and the timeline
// and "Under the hood" read it.
//
//   request()          a request sent now (long-poll); its answer is given to the handle:
//                      `handle.answered(bytes)`
//   connecting(bytes)  a connection opening now, its handshake's bytes (null: not counted)
//   frame(bytes)       a frame or event received, framing included
//   sent(bytes)        a frame the page sent on the connection
//   delivered(message) the last frame or answer carried this chat message  (from base.js)
//   started()          the transport starts: older messages are its history download
//   closed(why)        the connection or the pending request is gone      (from base.js)
//
// Bytes may be a number or a promise of one (a poll's count needs the server's measure).
//
// The page sees an answer's headers but not the ones the browser adds to a request: the
// server measures one request shaped like a poll (`POST /a/message/wire-size`), and each
// poll's head is that, adjusted for its path and body length. A WebSocket's or an event
// stream's handshake is not visible at all: it is estimated as such a request head plus
// the server's answer head (marked ≈ on the page).
import { httpUrl, utf8Length, xsrfToken } from '../net.js';

/** Events kept for the timeline, which shows a shorter window. */
const KEEP_MS = 60_000;
const PROBE_PATH = '/a/message/wire-size';

/** The page's wall clock in ms, comparable with a message's `time` once offset. */
const wallClock = () => performance.timeOrigin + performance.now();

let probe = null;

/**
 * The server's measure of a poll-like request, asked once: `{ requestHead, bodyHeaders,
 * formBytes, offsetMs, roundTripMs }` (the head as HTTP/1.1 text, its content-type and
 * content-length lines, the form it was sent with, server clock minus page clock, and
 * one round trip to the server), or null where the server does not offer it.
 */
export function measure() {
  probe ??= askServer().catch(() => null);
  return probe;
}

async function askServer() {
  const url = httpUrl(PROBE_PATH);
  // The same form and fetch options as a poll, so the browser adds the same headers.
  const form = new URLSearchParams({ _xsrf: xsrfToken() });
  const sent = performance.now();
  const response = await fetch(url, { method: 'POST', body: form, cache: 'no-store' });
  if (!response.ok) return null;
  const answer = await response.json();
  const back = performance.now();
  // Request sent to first byte back: a round trip without connecting (the probe may
  // open a new connection, which costs one more).
  const timing = performance.getEntriesByName(url).at(-1);
  const roundTripMs = timing?.responseStart > 0 ? timing.responseStart - timing.requestStart : back - sent;
  return {
    requestHead: answer.request_head,
    bodyHeaders: answer.body_headers,
    formBytes: utf8Length(form.toString()),
    offsetMs: answer.time_ms - (performance.timeOrigin + (sent + back) / 2),
    roundTripMs,
  };
}

const digits = (n) => String(n).length;

/** The head of a request the page sends like its polls, for `path` with a form of
 *  `formBytes` (null: a GET without body); 0 when the server did not measure one. */
function requestHead(measured, path, formBytes) {
  if (!measured) return 0;
  const head = measured.requestHead - PROBE_PATH.length + utf8Length(path);
  if (formBytes === null) return head - measured.bodyHeaders - 'POST'.length + 'GET'.length;
  return head - digits(measured.formBytes) + digits(formBytes);
}

/** The head of an answer as HTTP/1.1 text: the status line, each header the page may
 *  read (all of a same-origin answer's but `Set-Cookie`), and the blank line. */
function responseHead(response) {
  let bytes = utf8Length(`HTTP/1.1 ${response.status} ${response.statusText}\r\n\r\n`);
  for (const [name, value] of response.headers) bytes += utf8Length(`${name}: ${value}\r\n`);
  return bytes;
}

/** Bytes of one POST and its answer: request head and form, answer head and body. */
export async function exchangeBytes(path, form, response, text) {
  const measured = await measure();
  const formBytes = utf8Length(form);
  return requestHead(measured, path, formBytes) + formBytes + responseHead(response) + utf8Length(text);
}

/** Estimated bytes of a handshake: a GET of `path` with the browser's headers, and the
 *  server's answer head of `answerBytes`. */
export async function handshakeBytes(path, answerBytes) {
  const measured = await measure();
  return measured ? requestHead(measured, path, null) + answerBytes : answerBytes;
}

/** One transport's wire: the events the timeline draws, and the byte totals. */
export class Wire {
  /** `changed()` is called whenever there is something new to show. */
  constructor(changed) {
    this.changed = changed;
    /** Requests `{ kind: 'request', index, sentAt, endedAt, ended, bytes, messages,
     *  history }` and connections `{ kind: 'connection', openedAt, endedAt, ended,
     *  frames: [{ at, bytes, messages, history, sent }] }`, oldest first; times from
     *  `performance.now()`; `ended`: 'answered', 'cut', 'stopped' or null (still open);
     *  `history`: how many of its messages were the history download. */
    this.events = [];
    /** Requests made since the page loaded (numbers long-poll's bars). */
    this.requests = 0;
    /** Every byte counted; of them, the chat messages' own; the history download's. */
    this.bytes = { all: 0, messages: 0, history: 0 };
    this.historyMessages = 0;
    /** Whether a handshake was estimated rather than measured. */
    this.estimated = false;
    this.startedAt = wallClock();
    /** Where the next `delivered` message came from (the last frame or answer). */
    this.last = null;
  }

  started() {
    this.startedAt = wallClock();
  }

  request() {
    this.requests += 1;
    const request = {
      kind: 'request',
      index: this.requests,
      sentAt: performance.now(),
      endedAt: null,
      ended: null,
      bytes: null,
      messages: 0,
    };
    this.push(request);
    return {
      answered: (bytes) => {
        if (request.ended) return;
        request.endedAt = performance.now();
        request.ended = 'answered';
        this.last = request;
        this.count(bytes, (n) => (request.bytes = n));
      },
    };
  }

  connecting(handshake) {
    this.endOpen('cut');
    this.push({ kind: 'connection', openedAt: performance.now(), endedAt: null, ended: null, frames: [] });
    if (handshake === null) return;
    this.estimated = true;
    this.count(handshake);
  }

  frame(bytes) {
    this.last = this.tick(bytes, false);
  }

  sent(bytes) {
    this.tick(bytes, true);
  }

  delivered(message) {
    const from = this.last;
    if (from) from.messages += 1;
    const size = utf8Length(JSON.stringify(message));
    this.bytes.messages += size;
    measure().then((measured) => {
      if (!(message.time < this.startedAt + (measured?.offsetMs ?? 0))) return;
      this.bytes.history += size;
      this.historyMessages += 1;
      if (from) from.history = (from.history ?? 0) + 1;
      this.changed();
    });
  }

  closed(why) {
    this.endOpen(why === 'stopped' ? 'stopped' : 'cut');
    this.changed();
  }

  tick(bytes, sent) {
    const connection = this.events.findLast((event) => event.kind === 'connection' && !event.ended);
    const frame = { at: performance.now(), bytes: null, messages: 0, sent };
    if (connection) {
      connection.frames.push(frame);
      while (connection.frames[0].at < frame.at - KEEP_MS) connection.frames.shift();
    }
    this.count(bytes, (n) => (frame.bytes = n));
    return frame;
  }

  /** Adds `bytes` (a number or a promise) to the total, and tells `known` the number. */
  count(bytes, known = () => {}) {
    Promise.resolve(bytes).then((n) => {
      this.bytes.all += n;
      known(n);
      this.changed();
    });
  }

  endOpen(how) {
    const now = performance.now();
    for (const event of this.events) {
      if (event.ended) continue;
      event.ended = how;
      event.endedAt = now;
    }
  }

  push(event) {
    this.events.push(event);
    const old = performance.now() - KEEP_MS;
    while (this.events.length > 1 && (this.events[0].endedAt ?? Infinity) < old) this.events.shift();
    this.changed();
  }
}
