// The panels that show how each transport delivers: the status line, "Under the hood"
// (HTTP version, requests, bytes, reconnects, cursor, last gap per transport) and one
// round-trip chart per transport. They are redrawn from the transports' state, a moment
// after it changes.
import { el, svg } from './dom.js';
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

function cursorLabel(cursor) {
  if (!cursor) return el('span', { className: 'muted' }, 'none');
  const { epoch, seq } = parseId(cursor);
  return el('code', { title: cursor }, `…${epoch.slice(-4)}-${seq}`);
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

/** Rows of `#hood`: a label, a cell's content, and optionally its `data-` attributes. */
const HOOD_ROWS = [
  ['State', (t) => el('span', { className: `state state-${t.state}` }, describeState(t))],
  ['HTTP', httpLabel, (t) => ({ http: t.http ?? '' })],
  ['Requests made', (t) => String(t.stats.requests)],
  ['Bytes received', (t) => formatBytes(t.stats.bytes)],
  ['Messages', (t) => String(t.stats.messages)],
  ['Reconnects', (t) => String(t.stats.reconnects)],
  ['Last cut', (t) => t.stats.lastCut ?? el('span', { className: 'muted' }, 'none')],
  ['Cursor', (t) => cursorLabel(t.cursor)],
  ['Last gap', (t) => gapLabel(t.stats.lastGap)],
];

/** `#hood`: one column per transport, the running ones marked. */
export function renderHood(table, { active, running, transports }) {
  const rows = HOOD_ROWS.map(([label, cell, data = () => ({})]) =>
    el(
      'tr',
      {},
      el('th', { scope: 'row' }, label),
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

/** One bar chart per transport: the last CHART_POINTS round trips, with the p50 as a
 *  dashed line; the caption gives p50/p99 over every sample so far. They share one
 *  scale, so bar heights compare across transports. */
export function renderCharts(container, samples, running) {
  const width = 240;
  const height = 64;
  const top = Math.max(1, ...NAMES.flatMap((t) => samples[t].slice(-CHART_POINTS))) * 1.1;
  const charts = NAMES.map((t) => {
    const all = samples[t];
    const recent = all.slice(-CHART_POINTS);
    const p50 = percentile(all, 50);
    const p99 = percentile(all, 99);
    // Stretched to the box's width; text lives outside the SVG so it is not stretched too.
    const chart = svg('svg', {
      viewBox: `0 0 ${width} ${height}`,
      preserveAspectRatio: 'none',
      class: 'chart',
      role: 'img',
      'aria-label': `${LABEL[t]}: last ${recent.length} round trips`,
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
        ? el('span', { className: 'scale' }, formatMs(top))
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
        el('span', { className: 'numbers' }, `p50 ${formatMs(p50)} · p99 ${formatMs(p99)} · n=${all.length}`),
      ),
      plot,
    );
  });
  container.replaceChildren(...charts);
}
