// The wire timeline: what each transport put on the wire over the last WINDOW_MS, one
// lane per transport, redrawn as it happens from the transports' `wire` (wire.js).
//
// Long-poll draws a bar per request: a thin line while it travels (out above the
// middle, back below it; half a round trip each way, as the page measured one), a thick
// bar while the server holds it, and above it the number of messages its answer
// carried. Where no thick bar is, no poll waits at the server: a message published then
// waits for the next poll. A stream draws one bar per connection and a tick per frame
// or event: a tall one for a live message, a short one for the history downloaded at the
// start, a low one for a notice, one below the bar for a frame the page sent; a break in
// the bar is a reconnect (↻).
//
// Each lane's caption says the same in words; the drawing is hidden from screen readers.
import { el, svg } from './dom.js';
import { formatBytes, formatMs, percentile } from './format.js';
import { LABEL, NAMES } from './transports/index.js';
import { measure } from './transports/wire.js';

/** The time the lanes show: long enough for a burst and what follows it, short enough
 *  that one poll over a slow link (a round trip of 300 ms) is still wide enough to see. */
const WINDOW_MS = 10_000;
/** How often the lanes are redrawn while a transport runs (bars grow with time). */
const FRAME_MS = 250;
const HEIGHT = 44;
/** Where things sit in a lane: labels above, bars around the middle (sent frames below). */
const Y = { label: 13, held: 18, bar: 26 };

export class Timeline {
  /** Draws into `container` the lanes of `transports` (id → Transport). */
  constructor(container, transports) {
    this.transports = transports;
    /** The shortest of the page's measure of a round trip and every poll (one answered
     *  at once takes a round trip): each is at least one round trip. Over an emulated
     *  link the measure may include the connection's set-up; a real network's does not. */
    this.quickest = Infinity;
    measure().then((measured) => {
      this.quickest = Math.min(this.quickest, measured?.roundTripMs ?? Infinity);
    });
    this.lanes = Object.fromEntries(NAMES.map((name) => [name, lane(name)]));
    const axis = el(
      'div',
      { className: 'wire-axis' },
      el('span', {}, `${WINDOW_MS / 1000} s ago`),
      el('span', {}, 'now'),
    );
    axis.setAttribute('aria-hidden', 'true');
    container.replaceChildren(...NAMES.map((name) => this.lanes[name].figure), axis);
    setInterval(() => this.draw(), FRAME_MS);
  }

  /** One round trip, as far as the page knows (0 before it knows anything). */
  roundTrip() {
    return Number.isFinite(this.quickest) ? this.quickest : 0;
  }

  draw() {
    if (document.hidden) return;
    const now = performance.now();
    for (const name of NAMES) {
      const { figure, drawing, summary } = this.lanes[name];
      const transport = this.transports[name];
      const width = drawing.clientWidth || 300;
      const x = (at) => Math.max(0, width - ((now - at) / WINDOW_MS) * width);
      const on = transport.running && transport.state !== 'unavailable';
      const shown = (event) => on && (event.endedAt ?? now) >= now - WINDOW_MS;
      const events = transport.wire.events.filter(shown);
      drawing.setAttribute('viewBox', `0 0 ${width} ${HEIGHT}`);
      figure.dataset.state = on ? 'on' : 'off';
      if (name === 'long-poll') {
        for (const request of events) {
          if (request.ended === 'answered') this.quickest = Math.min(this.quickest, request.endedAt - request.sentAt);
        }
        const labels = { right: -Infinity };
        drawing.replaceChildren(...events.map((request) => this.poll(request, x, now, labels)));
        if (on) summary.textContent = this.pollSummary(events);
      } else {
        drawing.replaceChildren(...events.flatMap((connection, i) => stream(connection, events[i - 1], x, now)));
        if (on) summary.textContent = streamSummary(events, now);
      }
      if (!on) summary.textContent = transport.running ? 'off: unavailable here' : 'off';
    }
  }

  /** One request: out, held at the server, back; its messages above, unless that would
   *  overlap the label before it (`labels.right`, its right edge; the caption counts all). */
  poll(request, x, now, labels) {
    const end = request.endedAt ?? now;
    const answered = request.ended === 'answered';
    const half = this.roundTrip() / 2;
    const out = Math.min(half, answered ? (end - request.sentAt) / 2 : end - request.sentAt);
    const heldFrom = request.sentAt + out;
    const heldTo = answered ? end - out : end;
    const state = request.ended ?? 'held';
    const group = svg('g', {
      class: `poll ${state}`,
      'data-index': request.index,
      'data-state': state,
      'data-messages': request.messages,
      'data-bytes': request.bytes ?? '',
    });
    // Out above the middle, back below it: an answer coming back and the next request
    // going out read as one round trip in which no poll is at the server.
    group.append(
      svg('line', { x1: x(request.sentAt), x2: x(heldFrom), y1: Y.bar - 4, y2: Y.bar - 4, class: 'travel' }),
      svg('rect', {
        x: x(heldFrom),
        y: Y.held,
        width: Math.max(1.5, x(heldTo) - x(heldFrom)),
        height: 16,
        rx: 2,
        class: 'held',
      }),
    );
    if (answered)
      group.append(svg('line', { x1: x(heldTo), x2: x(end), y1: Y.bar + 4, y2: Y.bar + 4, class: 'travel' }));
    const at = Math.min(x(end) - 2, Math.max(6, (x(heldFrom) + x(heldTo)) / 2));
    const halfWidth = String(request.messages).length * 3.5;
    if (request.messages > 0 && at - halfWidth > labels.right + 2) {
      group.append(svg('text', { x: at, y: Y.label - 3, class: 'count' }, String(request.messages)));
      labels.right = at + halfWidth;
    }
    const bytes = request.bytes === null ? 'bytes not known yet' : `${formatBytes(request.bytes)} on the wire`;
    const history = request.history ? ` (${request.history} of them the history download)` : '';
    const carried = answered ? `answered with ${plural(request.messages, 'message')}${history}` : describeEnd(state);
    group.append(svg('title', {}, `Poll ${request.index}: held ${formatMs(heldTo - heldFrom)}, ${carried}; ${bytes}`));
    return group;
  }

  pollSummary(requests) {
    if (requests.length === 0) return 'no request yet';
    const answered = requests.filter((request) => request.ended === 'answered');
    const carrying = answered.filter((request) => request.messages > 0);
    const messages = carrying.reduce((sum, request) => sum + request.messages, 0);
    const counted = answered.filter((request) => request.bytes !== null);
    const bytes = counted.reduce((sum, request) => sum + request.bytes, 0);
    // No poll at the server: from an answer leaving it to the next request reaching it.
    const gaps = requests
      .slice(1)
      .map((next, i) => [requests[i], next])
      .filter(([before]) => before.ended === 'answered')
      .map(([before, next]) => next.sentAt - before.endedAt + this.roundTrip());
    const parts = [
      plural(requests.length, 'request'),
      `${plural(messages, 'message')} in ${plural(carrying.length, 'answer')}`,
    ];
    if (counted.length) parts.push(`${formatBytes(Math.round(bytes / counted.length))} a request, headers included`);
    if (gaps.length) parts.push(`no poll at the server for ${formatMs(percentile(gaps, 50))} after each answer`);
    return parts.join(' · ');
  }
}

/** A lane: its name and summary (the text alternative), and the drawing. */
function lane(name) {
  const summary = el('span', { className: 'summary' }, 'off');
  const drawing = svg('svg', { class: 'wire', height: HEIGHT, 'aria-hidden': 'true', focusable: 'false' });
  const caption = el(
    'figcaption',
    {},
    el('span', { className: 'name' }, el('span', { className: 'swatch' }), LABEL[name]),
    summary,
  );
  const figure = el('figure', { className: `lane t-${name}`, dataset: { lane: name, state: 'off' } }, caption, drawing);
  return { figure, drawing, summary };
}

/** One connection: its bar, a tick per frame, ↻ where it came back after a cut. */
function stream(connection, before, x, now) {
  const end = connection.endedAt ?? now;
  const shapes = [
    svg('rect', {
      x: x(connection.openedAt),
      y: Y.bar,
      width: Math.max(1, x(end) - x(connection.openedAt)),
      height: 6,
      rx: 3,
      class: `connection ${connection.ended ?? 'open'}`,
    }),
  ];
  if (before?.ended === 'cut') {
    const mark = svg('text', { x: x(connection.openedAt), y: Y.label, class: 'reconnect' }, '↻');
    mark.append(svg('title', {}, `reconnected after ${describeEnd('cut')}`));
    shapes.push(mark);
  }
  for (const frame of connection.frames) {
    if (frame.at < now - WINDOW_MS) continue;
    const kind = frame.sent ? 'sent' : frame.history ? 'history' : frame.messages ? 'message' : 'notice';
    const [top, bottom] = { message: [4, Y.bar], history: [14, Y.bar], notice: [19, Y.bar], sent: [Y.bar + 6, HEIGHT] }[
      kind
    ];
    const tick = svg('rect', {
      x: x(frame.at) - 0.75,
      y: top,
      width: 1.5,
      height: bottom - top,
      class: `tick ${kind}`,
      'data-kind': kind,
      'data-bytes': frame.bytes ?? '',
    });
    tick.append(svg('title', {}, `${frame.bytes ?? '?'} B: ${TICK_WORDS[kind]}`));
    shapes.push(tick);
  }
  return shapes;
}

const TICK_WORDS = {
  message: 'a message, framing included',
  history: 'a message of the history download',
  notice: 'a notice (ready, gap, when to come back)',
  sent: 'a frame this page sent',
};

function streamSummary(connections, now) {
  if (connections.length === 0) return 'not connected yet';
  const frames = connections.flatMap((connection) => connection.frames).filter((frame) => frame.at >= now - WINDOW_MS);
  const counted = frames.filter((frame) => frame.bytes !== null);
  const bytes = counted.reduce((sum, frame) => sum + frame.bytes, 0);
  const cuts = connections.filter((connection) => connection.ended === 'cut').length;
  const parts = [plural(connections.length, 'connection'), plural(frames.length, 'frame')];
  if (counted.length) parts.push(`${formatBytes(Math.round(bytes / counted.length))} a frame, framing included`);
  parts.push(cuts ? `cut ${plural(cuts, 'time')}` : 'no reconnect');
  return parts.join(' · ');
}

function describeEnd(state) {
  return { held: 'still held', cut: 'cut (a reconnect follows)', stopped: 'stopped' }[state] ?? state;
}

function plural(n, word) {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
