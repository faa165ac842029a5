// Race mode: every transport subscribed at once. Each message gets a row that says
// which transport delivered it first and how far behind the others came; the summary
// counts wins and the p50/p99 of "behind".
import { el } from './dom.js';
import { formatMs, percentile, pushBounded } from './format.js';
import { parseId } from './inbox.js';
import { LABEL, NAMES } from './transports/index.js';

/** Rows kept in the race table. */
const ROWS = 40;
/** Samples kept per transport for the percentiles. */
const MAX_SAMPLES = 5000;

export class Race {
  constructor(table, summary) {
    this.table = table; // <tbody> of the per-message table
    this.summary = summary; // <tbody> of the summary
    this.rows = new Map(); // id → {tr, cells, first}
    this.wins = Object.fromEntries(NAMES.map((name) => [name, 0]));
    /** transport → ms behind the first arrival, per message (0 when it won). */
    this.behind = Object.fromEntries(NAMES.map((name) => [name, []]));
  }

  /** The first arrival of `message` through transport `name`, at `at`. */
  arrival(message, name, at) {
    let row = this.rows.get(message.id);
    if (!row) {
      row = this.addRow(message, at);
      this.wins[name] += 1;
      pushBounded(this.behind[name], 0, MAX_SAMPLES);
      row.cells[name].textContent = 'first';
      row.cells[name].classList.add('winner');
    } else {
      const lag = at - row.first;
      pushBounded(this.behind[name], lag, MAX_SAMPLES);
      row.cells[name].textContent = `+${formatMs(lag)}`;
    }
    row.cells[name].dataset.arrived = 'true';
  }

  addRow(message, at) {
    const { seq } = parseId(message.id);
    const label = message.body.length > 28 ? `${message.body.slice(0, 27)}…` : message.body;
    const cells = Object.fromEntries(
      NAMES.map((t) => [t, el('td', { className: `arrival t-${t}`, dataset: { transport: t } }, '…')]),
    );
    const tr = el(
      'tr',
      { dataset: { id: message.id } },
      el('th', { scope: 'row', title: message.body }, `#${seq} `, el('span', { className: 'muted' }, label)),
      ...NAMES.map((t) => cells[t]),
    );
    const row = { tr, cells, first: at };
    this.rows.set(message.id, row);
    this.table.prepend(tr);
    while (this.table.rows.length > ROWS) {
      this.rows.delete(this.table.lastElementChild.dataset.id);
      this.table.lastElementChild.remove();
    }
    return row;
  }

  renderSummary() {
    this.summary.replaceChildren(
      ...NAMES.map((t) =>
        el(
          'tr',
          { dataset: { transport: t } },
          el('th', { scope: 'row', className: `t-${t}` }, el('span', { className: 'swatch' }), LABEL[t]),
          el('td', {}, String(this.wins[t])),
          el('td', {}, formatMs(percentile(this.behind[t], 50))),
          el('td', {}, formatMs(percentile(this.behind[t], 99))),
        ),
      ),
    );
  }
}
