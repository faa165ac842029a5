// The conversation on the page: messages deduplicated by id and kept in `seq` order
// within one server run (epoch). Whichever transport delivers a message first shows it;
// later copies are only arrivals. When the server turns out to be a new run, the old
// messages stay, greyed out, above a notice, and the new run's history follows, instead
// of two histories silently mixed.
import { el, renderBody } from './dom.js';
import { formatMs } from './format.js';

/** Messages kept on the page; older ones are dropped from the top. */
const MAX_MESSAGES = 500;

/** `<epoch>-<seq>` → its parts. Ids are opaque to the protocol, but this client uses
 *  the epoch to tell server runs apart. */
export function parseId(id) {
  const at = id.lastIndexOf('-');
  return { epoch: at > 0 ? id.slice(0, at) : id, seq: at > 0 ? Number(id.slice(at + 1)) : NaN };
}

export class Inbox {
  constructor(list) {
    this.list = list;
    this.items = new Map(); // id → <li>
    this.epoch = null;
    this.deadEpochs = new Set();
    /** The id of the newest message shown: where a transport that starts now resumes. */
    this.lastId = null;
    this.lastSeq = 0;
    this.followNewMessages();
  }

  /** Keeps the newest message in view while the reader is at the bottom. Whether they
   *  are is learnt from their scrolling, not measured when a message comes: a message
   *  grows after it is shown (its round trips fill in, over several lines on a phone),
   *  and a burst of them would leave the bottom out of reach of any threshold. */
  followNewMessages() {
    this.following = true;
    this.list.addEventListener('scroll', () => {
      this.following = this.atBottom();
    });
    const follow = () => {
      if (this.following) this.list.scrollTop = this.list.scrollHeight;
    };
    new MutationObserver(follow).observe(this.list, { childList: true, subtree: true, characterData: true });
    new ResizeObserver(follow).observe(this.list);
  }

  /** Shows `message`, delivered first by the transport labelled `via.label` at
   *  `via.at` (performance.now()); returns 'new', 'duplicate' or 'stale' (from a server
   *  run this page has moved past). */
  add(message, via = null) {
    if (this.items.has(message.id)) return 'duplicate';
    const { epoch, seq } = parseId(message.id);
    if (this.deadEpochs.has(epoch)) return 'stale';
    if (this.epoch !== null && epoch !== this.epoch) {
      this.reset(this.epoch, 'History reset — the server started a new history; earlier messages are greyed out.');
    }
    this.epoch = epoch;
    const time = new Date(Number.isFinite(message.time) ? message.time : Date.now());
    const item = el(
      'li',
      { className: 'msg', dataset: { id: message.id, seq: String(seq), epoch } },
      el('p', { className: 'body' }, renderBody(message.body)),
      el(
        'p',
        { className: 'meta' },
        el('time', { dateTime: time.toISOString() }, time.toLocaleTimeString()),
        el('span', { className: 'seq' }, ` · #${seq}`),
        el('span', { className: 'rtt' }),
        via ? el('span', { className: 'via' }, deliveryLabel(message, via)) : null,
      ),
    );
    this.insertInOrder(item, seq);
    this.items.set(message.id, item);
    if (seq > this.lastSeq || this.lastId === null) {
      this.lastSeq = seq;
      this.lastId = message.id;
    }
    this.trim();
    return 'new';
  }

  /** Messages usually arrive in order: walk back from the end only past later ones. */
  insertInOrder(item, seq) {
    let before = null;
    for (let node = this.list.lastElementChild; node; node = node.previousElementSibling) {
      if (!node.classList.contains('msg') || node.dataset.epoch !== this.epoch) break;
      if (Number(node.dataset.seq) < seq) break;
      before = node;
    }
    this.list.insertBefore(item, before);
  }

  /** Ends the segment of `epoch` if it is the current one. Returns whether it did. */
  reset(epoch, text) {
    if (epoch === null || epoch !== this.epoch) return false;
    this.deadEpochs.add(epoch);
    for (const item of this.items.values()) item.classList.add('stale');
    this.epoch = null;
    this.lastId = null;
    this.lastSeq = 0;
    this.notice('reset', text);
    return true;
  }

  /** A line of its own between messages (a gap, a reset). */
  notice(kind, text) {
    this.list.append(el('li', { className: `notice ${kind}`, role: 'note' }, text));
  }

  item(id) {
    return this.items.get(id);
  }

  trim() {
    while (this.items.size > MAX_MESSAGES) {
      const first = this.list.querySelector('.msg');
      this.items.delete(first.dataset.id);
      while (this.list.firstElementChild !== first) this.list.firstElementChild.remove();
      first.remove();
    }
  }

  atBottom() {
    return this.list.scrollHeight - this.list.scrollTop - this.list.clientHeight < 48;
  }
}

/** How a message came here: through which transport, and how long after the server
 *  stamped it (its `time`), which holds only as far as the server's clock and this
 *  device's agree. */
function deliveryLabel(message, { label, at }) {
  if (!Number.isFinite(message.time)) return ` · via ${label}`;
  if (message.time < performance.timeOrigin) return ` · via ${label}, from the history`;
  const oneWay = performance.timeOrigin + at - message.time;
  if (oneWay < 0) return ` · via ${label} (this device’s clock is behind the server’s)`;
  return ` · via ${label}, one way ${formatMs(oneWay)}`;
}
