// The panels that show how each transport delivers: the status line, "Under the hood"
// (HTTP version, requests, bytes, reconnects, cursor, last gap per transport) and one
// round-trip chart per transport. They are redrawn from the transports' state, a moment
// after it changes.
import { el, svg } from './dom.js';
import { MIN_FOR_MEDIAN, MIN_FOR_P99 } from './compare.js';
import { formatBytes, formatMs, percentile } from './format.js';
import { parseId } from './inbox.js';
import { LABEL, NAMES } from './transports/index.js';

/** Round trips drawn per chart (the percentiles use every sample so far). */
const CHART_POINTS = 40;

/** What a transport is doing, in words. */
export function describeState(transport) {
  switch (transport.state) {
    case 'live':
      return 'live';
    case 'connecting':
      return 'connecting…';
    case 'waiting': {
      const seconds = Math.max(0, (transport.retryAt - performance.now()) / 1000).toFixed(1);
      // The server said when (and why): the delay it chose for this client.
      if (transport.toldWhy) return `reconnecting in ${seconds} s (${transport.toldWhy})`;
      return `retry in ${seconds} s (attempt ${transport.backoff.attempt})`;
    }
    case 'unavailable':
      return `unavailable: ${transport.detail}`;
    default:
      return 'off';
  }
}

/** `#status`: the active transport's state (in race mode, all of them), and with Auto,
 *  what it chose and why. */
export function renderStatus(status, text, { active, raceMode, transports, auto }) {
  const current = transports[active];
  status.dataset.state = auto?.state === 'trying' ? 'connecting' : current.state;
  status.dataset.transport = active;
  if (raceMode) {
    text.textContent = `Race · ${NAMES.map((t) => `${LABEL[t]} ${describeState(transports[t])}`).join(' · ')}`;
    return;
  }
  let line = `${auto ? 'Auto → ' : ''}${LABEL[active]} · ${describeState(current)}`;
  if (current.state === 'waiting' && current.detail && !current.toldWhy) line += ` — ${current.detail}`;
  if (auto?.text) line += ` — ${auto.text}`;
  text.textContent = line;
}

/** Where the transport resumes from: after which message (the id's sequence number). */
function cursorLabel(cursor) {
  if (!cursor) return el('span', { className: 'muted' }, 'none');
  return `after #${parseId(cursor).seq}`;
}

function gapLabel(gap) {
  if (!gap) return el('span', { className: 'muted' }, 'none');
  const what = gap.reason === 'evicted' ? `${gap.missed ?? '?'} missed` : gap.reason.replace('_', ' ');
  return el('span', { title: gap.at.toLocaleTimeString() }, `${what} at ${gap.at.toLocaleTimeString()}`);
}

/** The HTTP version that carries a transport, and where the page learnt it. */
function httpLabel(transport) {
  if (!transport.http) {
    const why = transport.httpFrom ? `${transport.httpFrom} does not say` : 'not known yet';
    return el('span', { className: 'muted', title: why }, '–');
  }
  return el('span', { title: `from ${transport.httpFrom}` }, `HTTP/${transport.http}`);
}

/** Bytes on the wire apart from the history download, headers and framing included;
 *  ≈ when a handshake in it is estimated. */
function wireLabel({ wire }) {
  const bytes = wire.bytes.all - wire.bytes.history;
  if (!wire.estimated) return formatBytes(bytes);
  return el('span', { title: 'includes an estimated handshake, which the page cannot see' }, `≈ ${formatBytes(bytes)}`);
}

/** How much of the bytes on the wire is not the messages themselves. */
function overheadLabel({ wire }) {
  const live = wire.bytes.all - wire.bytes.history;
  const overhead = Math.max(0, wire.bytes.all - wire.bytes.messages);
  if (live === 0) return el('span', { className: 'muted' }, '–');
  return `${formatBytes(overhead)} (${Math.round((overhead / live) * 100)} %)`;
}

function historyLabel({ wire }) {
  if (wire.historyMessages === 0) return el('span', { className: 'muted' }, 'none');
  const plural = wire.historyMessages === 1 ? 'message' : 'messages';
  return `${wire.historyMessages} ${plural} · ${formatBytes(wire.bytes.history)}`;
}

/** Rows of `#hood`: a label, a cell's content, and optionally its `data-` attributes. */
const HOOD_ROWS = [
  ['State', (t) => el('span', { className: `state state-${t.state}` }, describeState(t))],
  ['HTTP', httpLabel, (t) => ({ http: t.http ?? '' })],
  ['Requests made', (t) => String(t.stats.requests)],
  ['Bytes on the wire', wireLabel, (t) => ({ bytes: String(t.wire.bytes.all - t.wire.bytes.history) })],
  ['of it headers and framing', overheadLabel],
  ['History download', historyLabel, (t) => ({ bytes: String(t.wire.bytes.history) })],
  ['Messages', (t) => String(t.stats.messages)],
  ['Reconnects', (t) => String(t.stats.reconnects)],
  ['Last cut', (t) => t.stats.lastCut ?? el('span', { className: 'muted' }, 'none')],
  ['Cursor', (t) => cursorLabel(t.cursor)],
  ['Last gap', (t) => gapLabel(t.stats.lastGap)],
];

/** Rows whose label links to its entry in the glossary (`#glossary`). */
const GLOSSARY = { 'Last cut': 'g-cut', Cursor: 'g-cursor', 'Last gap': 'g-gap' };

/** `#hood`: one column per transport, the running ones marked. */
export function renderHood(table, { active, running, transports }) {
  const rows = HOOD_ROWS.map(([label, cell, data = () => ({})]) =>
    el(
      'tr',
      {},
      el('th', { scope: 'row' }, GLOSSARY[label] ? el('a', { href: `#${GLOSSARY[label]}` }, label) : label),
      ...NAMES.map((t) =>
        el(
          'td',
          {
            className: `t-${t}${running.includes(t) ? ' running' : ''}${t === active ? ' active' : ''}`,
            dataset: { transport: t, ...data(transports[t]) },
          },
          cell(transports[t]),
        ),
      ),
    ),
  );
  table.tBodies[0].replaceChildren(...rows);
  for (const th of table.querySelectorAll('thead th[class]')) {
    th.classList.toggle('active', th.classList.contains(`t-${active}`));
  }
}

/** One bar chart per transport: the last CHART_POINTS round trips, with the median as
 *  a dashed line; the caption gives the median and the slowest 1 in 100 over every
 *  sample so far, each once there are enough samples for it (else the values). They
 *  share one scale, labelled, so bar heights compare across transports. */
export function renderCharts(container, samples, running) {
  const width = 240;
  const height = 64;
  const top = Math.max(1, ...NAMES.flatMap((t) => samples[t].slice(-CHART_POINTS))) * 1.1;
  const charts = NAMES.map((t) => {
    const all = samples[t];
    const recent = all.slice(-CHART_POINTS);
    const p50 = all.length >= MIN_FOR_MEDIAN ? percentile(all, 50) : null;
    // Stretched to the box's width; text lives outside the SVG so it is not stretched too.
    const chart = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: 'none',
      class: 'chart',
      role: 'img',
      'aria-label': `${LABEL[t]}: last ${recent.length} round trips, on a scale of 0 to ${formatMs(top)}`,
    });
    chart.append(svg('line', { x1: 0, y1: height - 0.5, x2: width, y2: height - 0.5, class: 'axis' }));
    const slot = width / CHART_POINTS;
    recent.forEach((value, index) => {
      const barHeight = Math.max(1.5, (value / top) * (height - 4));
      const bar = svg('rect', {
        x: (index + CHART_POINTS - recent.length) * slot + 1,
        y: height - barHeight,
        width: Math.max(1, slot - 2),
        height: barHeight,
        rx: 1.5,
        class: 'bar',
      });
      bar.append(svg('title', {}, formatMs(value)));
      chart.append(bar);
    });
    if (p50 !== null) {
      const y = height - Math.max(1.5, (p50 / top) * (height - 4));
      chart.append(svg('line', { x1: 0, y1: y, x2: width, y2: y, class: 'p50' }));
    }
    const plot = el(
      'div',
      { className: 'plot' },
      chart,
      recent.length > 0
        ? el('span', { className: 'scale' }, `scale 0–${formatMs(top)}`)
        : el('span', { className: 'empty' }, 'no round trips yet'),
    );
    return el(
      'figure',
      {
        className: `chart-box t-${t}${running.includes(t) ? ' running' : ''}`,
        dataset: { transport: t, samples: String(all.length) },
      },
      el(
        'figcaption',
        {},
        el('span', { className: 'name' }, el('span', { className: 'swatch' }), LABEL[t]),
        el('span', { className: 'numbers' }, roundTripNumbers(all)),
      ),
      plot,
    );
  });
  container.replaceChildren(...charts);
}

/** A chart's caption: the values themselves while there are few, then the median, and
 *  the slowest 1 in 100 once there are enough round trips for it to mean that. */
function roundTripNumbers(all) {
  const n = all.length;
  if (n === 0) return 'n = 0';
  if (n < MIN_FOR_MEDIAN) return `n = ${n}: ${all.map(formatMs).join(', ')}`;
  const slowest = n >= MIN_FOR_P99 ? ` · slowest 1 in 100: ${formatMs(percentile(all, 99))}` : '';
  return `median ${formatMs(percentile(all, 50))}${slowest} · n = ${n}`;
}
