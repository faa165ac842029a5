// pushwire's browser client: one chat carried by long-poll, WebSocket or Server-Sent
// Events, with the numbers that tell them apart.
//
// How it is put together:
// - Three transport adapters of one shape (`LongPoll`, `Socket`, `Events`). Each keeps its
//   own cursor (the id of the last message it delivered), its counters, and its own
//   reconnect loop (capped exponential backoff with full jitter). They hand messages and
//   gap notices to the page and know nothing else about it.
// - `Inbox` is the conversation: messages deduplicated by id and kept in `seq` order within
//   one server run (epoch). Whichever transport delivers a message first shows it; later
//   copies only count as arrivals. A cursor the server no longer knows starts a new epoch
//   segment, below a notice, instead of silently mixing two histories.
// - Switching transports stops the old adapter and starts the new one from the inbox's
//   last id, so nothing is lost and nothing is shown twice. Race mode runs all three.
// - Latency: own messages are matched by id (POST) or by body (in-band WebSocket frame);
//   the round trip is "send" → first arrival through each running transport.
//
// Every URL is derived from `location`; message text only ever reaches the DOM as text.
'use strict';

(() => {
  const TRANSPORTS = ['long-poll', 'websocket', 'sse'];
  const LABEL = { 'long-poll': 'Long-poll', websocket: 'WebSocket', sse: 'SSE' };
  const SHORT = { 'long-poll': 'LP', websocket: 'WS', sse: 'SSE' };

  /** Reconnect delays: full jitter over min(cap, base · 2^attempt) — spreads a crowd of
   *  clients out after a server restart instead of having them return in lockstep. */
  const BACKOFF_BASE_MS = 500;
  const BACKOFF_CAP_MS = 10000;
  /** A poll that has not failed this soon after being sent has reached a live server. */
  const POLL_SETTLE_MS = 400;
  /** Messages kept on the page; older ones are dropped from the top. */
  const MAX_MESSAGES = 500;
  /** Round trips drawn per chart (percentiles use every sample so far). */
  const CHART_POINTS = 40;
  /** Samples kept per series for the running percentiles. */
  const MAX_SAMPLES = 5000;
  /** Rows kept in the race table. */
  const RACE_ROWS = 40;
  /** Arrival times remembered for matching late POST answers and race rows. */
  const MAX_ARRIVALS = 2000;
  /** Parallel POSTs of a burst: the browser allows six connections per host, and the
   *  long-poll and the SSE stream may hold two of them; more would queue inside the
   *  browser and inflate the measured round trips. */
  const BURST_PARALLEL = 3;
  /** The opening comment the server sends on every SSE stream (`retry: 1000\n: connected\n\n`);
   *  `EventSource` does not expose comments, so it is counted on open. */
  const SSE_OPENING_BYTES = 25;

  const encoder = new TextEncoder();
  const utf8Length = (text) => encoder.encode(text).length;
  const now = () => performance.now();

  /** Where an endpoint lives, from the page's own address. */
  function httpUrl(path) {
    return new URL(path, location.href).href;
  }
  function wsUrl(path) {
    const url = new URL(path, location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    return url.href;
  }
  function withCursor(url, cursor) {
    return cursor ? `${url}?cursor=${encodeURIComponent(cursor)}` : url;
  }

  /** The `_xsrf` cookie set by `GET /`, repeated in every POST. */
  function xsrfToken() {
    const match = document.cookie.match(/(?:^|;\s*)_xsrf=([^;]*)/);
    return match ? decodeURIComponent(match[1]) : '';
  }

  /** `<epoch>-<seq>` → its parts; ids are opaque to the protocol but this client uses the
   *  epoch to tell server runs apart. */
  function parseId(id) {
    const at = id.lastIndexOf('-');
    return { epoch: at > 0 ? id.slice(0, at) : id, seq: at > 0 ? Number(id.slice(at + 1)) : NaN };
  }

  /** Nearest-rank percentile of an unsorted list. */
  function percentile(values, p) {
    if (values.length === 0) return null;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
  }

  function formatMs(ms) {
    if (ms === null || ms === undefined) return '–';
    if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
    if (ms >= 10) return `${Math.round(ms)} ms`;
    return `${ms.toFixed(1)} ms`;
  }

  function formatBytes(n) {
    if (n < 1024) return `${n} B`;
    if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
    return `${(n / 1024 / 1024).toFixed(2)} MiB`;
  }

  function pushBounded(list, value, max) {
    list.push(value);
    if (list.length > max) list.splice(0, list.length - max);
  }

  /** A small element builder: `el('p', {className: 'x'}, 'text', child)`. Strings become
   *  text nodes, never markup. */
  function el(tag, props = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props)) {
      if (key === 'dataset') Object.assign(node.dataset, value);
      else if (key in node) node[key] = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) {
      if (child !== null && child !== undefined) node.append(child);
    }
    return node;
  }

  const URL_PATTERN = /\bhttps?:\/\/[^\s<>"']+/gi;

  /** Message text as DOM: text nodes, with http(s) URLs as links. Trailing punctuation
   *  stays outside the link ("see https://x.example." links without the dot). */
  function renderBody(text) {
    const fragment = document.createDocumentFragment();
    let last = 0;
    for (const match of text.matchAll(URL_PATTERN)) {
      const url = match[0].replace(/[.,;:!?)\]}]+$/, '');
      if (!/^https?:\/\/[^/]/i.test(url)) continue;
      fragment.append(text.slice(last, match.index));
      fragment.append(el('a', { href: url, rel: 'nofollow noopener noreferrer', target: '_blank' }, url));
      last = match.index + url.length;
    }
    fragment.append(text.slice(last));
    return fragment;
  }

  /** Reconnect delays for one transport. */
  class Backoff {
    constructor() {
      this.attempt = 0;
    }
    next() {
      const ceiling = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** this.attempt);
      this.attempt += 1;
      return Math.random() * ceiling;
    }
    reset() {
      this.attempt = 0;
    }
  }

  /**
   * What the three adapters share: counters, cursor, state and the reconnect loop.
   * Subclasses implement `connect()` and `disconnect()` and call `opened()`,
   * `received(bytes)`, `deliver(message)`, `gap(notice)` and `failed(why)`.
   *
   * `generation` changes on every start, stop and reconnect; callbacks of an older
   * connection compare it and fall silent, so a slow answer from a stopped transport
   * can never deliver into the page.
   */
  class Transport {
    constructor(name, sink) {
      this.name = name;
      this.sink = sink;
      this.running = false;
      this.cursor = null;
      this.state = 'idle';
      this.detail = '';
      this.stats = { requests: 0, bytes: 0, messages: 0, reconnects: 0, lastGap: null };
      this.backoff = new Backoff();
      this.retryAt = null;
      this.retryTimer = null;
      this.generation = 0;
    }

    start(cursor) {
      this.stop();
      this.running = true;
      this.cursor = cursor;
      this.backoff.reset();
      this.generation += 1;
      this.connect();
    }

    stop() {
      if (!this.running) return;
      this.running = false;
      this.generation += 1;
      clearTimeout(this.retryTimer);
      this.retryAt = null;
      this.disconnect();
      this.setState('idle', '');
    }

    opened() {
      this.backoff.reset();
      this.setState('live', '');
    }

    received(bytes) {
      this.stats.bytes += bytes;
      this.sink.changed();
    }

    deliver(message) {
      if (!message || typeof message.id !== 'string' || typeof message.body !== 'string') return;
      this.cursor = message.id;
      this.stats.messages += 1;
      this.sink.message(this, message);
    }

    gap(notice) {
      const staleCursor = this.cursor;
      this.stats.lastGap = { reason: String(notice.reason), missed: notice.missed ?? null, at: new Date() };
      // The notice names where to resume past the gap, so a reconnect before the replay
      // arrives is not told the same gap twice.
      if (typeof notice.cursor === 'string') this.cursor = notice.cursor;
      else if (notice.reason !== 'evicted') this.cursor = null;
      this.sink.gap(this, this.stats.lastGap, staleCursor);
    }

    failed(why) {
      if (!this.running) return;
      this.generation += 1;
      this.disconnect();
      const delay = this.backoff.next();
      this.retryAt = now() + delay;
      this.setState('waiting', why);
      const generation = this.generation;
      this.retryTimer = setTimeout(() => {
        if (generation !== this.generation) return;
        this.retryAt = null;
        this.stats.reconnects += 1;
        this.connect();
      }, delay);
    }

    setState(state, detail) {
      this.state = state;
      this.detail = detail;
      this.sink.changed();
    }
  }

  /** `POST /a/message/updates`, one held request at a time, Tornado's protocol. */
  class LongPoll extends Transport {
    connect() {
      const generation = this.generation;
      const abort = new AbortController();
      this.abort = abort;
      this.stats.requests += 1;
      if (this.state !== 'live') {
        this.setState('connecting', '');
        this.settle = setTimeout(() => {
          if (generation === this.generation && this.state === 'connecting') this.opened();
        }, POLL_SETTLE_MS);
      }
      const form = new URLSearchParams({ _xsrf: xsrfToken() });
      if (this.cursor) form.set('cursor', this.cursor);
      fetch(httpUrl('/a/message/updates'), { method: 'POST', body: form, signal: abort.signal, cache: 'no-store' })
        .then(async (response) => {
          const text = await response.text();
          if (generation !== this.generation) return;
          this.received(utf8Length(text));
          if (!response.ok) throw new Error(`HTTP ${response.status}`);
          const answer = JSON.parse(text);
          this.opened();
          if (answer.gap) this.gap(answer.gap);
          for (const message of answer.messages || []) {
            if (generation !== this.generation) return;
            this.deliver(message);
          }
          if (generation === this.generation) this.connect();
        })
        .catch((error) => {
          if (generation !== this.generation) return;
          this.failed(error instanceof TypeError ? 'server unreachable' : error.message);
        });
    }

    disconnect() {
      clearTimeout(this.settle);
      if (this.abort) this.abort.abort();
      this.abort = null;
    }
  }

  /** `GET /a/message/socket`: one JSON message per text frame, publishing in-band. */
  class Socket extends Transport {
    connect() {
      const generation = this.generation;
      const socket = new WebSocket(withCursor(wsUrl('/a/message/socket'), this.cursor));
      this.socket = socket;
      this.stats.requests += 1;
      this.setState('connecting', '');
      socket.onopen = () => {
        if (generation === this.generation) this.opened();
      };
      socket.onmessage = (event) => {
        if (generation !== this.generation || typeof event.data !== 'string') return;
        this.received(utf8Length(event.data));
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (frame.gap) this.gap(frame.gap);
        else this.deliver(frame);
      };
      socket.onclose = (event) => {
        if (generation !== this.generation) return;
        this.socket = null;
        const why =
          event.code === 1001
            ? 'server going away'
            : `closed (${event.code}${event.reason ? `: ${event.reason}` : ''})`;
        this.failed(why);
      };
    }

    disconnect() {
      const socket = this.socket;
      this.socket = null;
      if (socket) {
        socket.onopen = socket.onmessage = socket.onclose = null;
        socket.close(1000);
      }
    }

    /** Publishes with a `{"body": …}` frame; false when the socket is not open. */
    send(body) {
      if (!this.socket || this.socket.readyState !== WebSocket.OPEN) return false;
      const frame = JSON.stringify({ body });
      this.socket.send(frame);
      return true;
    }

    get open() {
      return Boolean(this.socket && this.socket.readyState === WebSocket.OPEN);
    }
  }

  /** `GET /a/message/events` through `EventSource`. The browser's own retry would resume
   *  with `Last-Event-ID` after a fixed second; this client closes the source on error and
   *  reconnects itself, so the backoff and the resume point are the same for all three. */
  class Events extends Transport {
    connect() {
      const generation = this.generation;
      const source = new EventSource(withCursor(httpUrl('/a/message/events'), this.cursor));
      this.source = source;
      this.stats.requests += 1;
      this.setState('connecting', '');
      source.onopen = () => {
        if (generation !== this.generation) return;
        this.received(SSE_OPENING_BYTES);
        this.opened();
      };
      source.onmessage = (event) => {
        if (generation !== this.generation) return;
        this.received(utf8Length(`id: ${event.lastEventId}\ndata: ${event.data}\n\n`));
        try {
          this.deliver(JSON.parse(event.data));
        } catch {
          // Not a message object; nothing to show.
        }
      };
      source.addEventListener('gap', (event) => {
        if (generation !== this.generation) return;
        this.received(utf8Length(`event: gap\nid: ${event.lastEventId}\ndata: ${event.data}\n\n`));
        try {
          this.gap(JSON.parse(event.data));
        } catch {
          // A malformed notice carries nothing to act on.
        }
      });
      source.onerror = () => {
        if (generation !== this.generation) return;
        this.failed(source.readyState === EventSource.CONNECTING ? 'stream cut' : 'stream refused');
      };
    }

    disconnect() {
      if (this.source) this.source.close();
      this.source = null;
    }
  }

  /**
   * The conversation on the page. Messages of the current epoch are kept in `seq` order;
   * when the server turns out to be a new run, the old messages stay, greyed out, above
   * a notice, and the new run's history follows.
   */
  class Inbox {
    constructor(list) {
      this.list = list;
      this.items = new Map(); // id → <li>
      this.epoch = null;
      this.deadEpochs = new Set();
      this.lastId = null;
      this.lastSeq = 0;
    }

    /** 'new', 'duplicate' or 'stale' (from a server run this page has moved past). */
    add(message) {
      if (this.items.has(message.id)) return 'duplicate';
      const { epoch, seq } = parseId(message.id);
      if (this.deadEpochs.has(epoch)) return 'stale';
      if (this.epoch !== null && epoch !== this.epoch) {
        this.reset(this.epoch, 'History reset — the server started a new history; earlier messages are greyed out.');
      }
      this.epoch = epoch;
      const stick = this.atBottom();
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
        ),
      );
      this.insertInOrder(item, seq);
      this.items.set(message.id, item);
      if (seq > this.lastSeq || this.lastId === null) {
        this.lastSeq = seq;
        this.lastId = message.id;
      }
      this.trim();
      if (stick) this.list.scrollTop = this.list.scrollHeight;
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

    notice(kind, text) {
      const stick = this.atBottom();
      this.list.append(el('li', { className: `notice ${kind}`, role: 'note' }, text));
      if (stick) this.list.scrollTop = this.list.scrollHeight;
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

  // ---------------------------------------------------------------------------------
  // The page.

  const $ = (selector) => document.querySelector(selector);
  const inbox = new Inbox($('#inbox'));
  const composeForm = $('#compose');
  const bodyInput = $('#body');
  const inbandBox = $('#inband');
  const composeError = $('#compose-error');

  /** Round trips of own messages, per transport (all samples, bounded). */
  const roundTrips = Object.fromEntries(TRANSPORTS.map((t) => [t, []]));
  /** Race mode: how far behind the first arrival each transport was, per message. */
  const behind = Object.fromEntries(TRANSPORTS.map((t) => [t, []]));
  const wins = Object.fromEntries(TRANSPORTS.map((t) => [t, 0]));
  /** id → {transport → arrival time}, for matching POST answers that come back late. */
  const arrivals = new Map();
  /** id → {sent, transports already measured}, for own messages. */
  const own = new Map();
  /** In-band sends not yet seen coming back: matched by body, oldest first. */
  const pendingFrames = [];
  /** id → race table row. */
  const raceRows = new Map();

  const RACE_HINT_OFF = $('#race-hint').textContent;
  const RACE_HINT_ON =
    'Subscribed over all three transports. Each row is one message: “first” won, ' +
    'the others show how far behind they arrived.';

  let active = 'long-poll';
  let raceMode = false;

  const sink = {
    message: onMessage,
    gap: onGap,
    changed: scheduleRender,
  };
  const transports = {
    'long-poll': new LongPoll('long-poll', sink),
    websocket: new Socket('websocket', sink),
    sse: new Events('sse', sink),
  };

  function onMessage(transport, message) {
    const at = now();
    const name = transport.name;
    let times = arrivals.get(message.id);
    if (!times) {
      times = {};
      arrivals.set(message.id, times);
      if (arrivals.size > MAX_ARRIVALS) arrivals.delete(arrivals.keys().next().value);
    }
    const firstOnThisTransport = times[name] === undefined;
    if (firstOnThisTransport) times[name] = at;

    if (inbox.add(message) === 'stale') return;

    if (!own.has(message.id)) {
      const index = pendingFrames.findIndex((pending) => pending.body === message.body);
      if (index >= 0) {
        const [pending] = pendingFrames.splice(index, 1);
        claimOwn(message.id, pending.sent);
      }
    }
    if (firstOnThisTransport && own.has(message.id)) measure(message.id, name, at);
    if (firstOnThisTransport && raceMode) raceArrival(message, name, at);
    scheduleRender();
  }

  function onGap(transport, gap, staleCursor) {
    const prefix = raceMode ? `${LABEL[transport.name]}: ` : '';
    if (gap.reason === 'evicted') {
      const count = gap.missed === null ? 'Some' : String(gap.missed);
      const plural = gap.missed === 1 ? 'message' : 'messages';
      inbox.notice('missed', `${prefix}${count} ${plural} missed — history reloaded.`);
    } else if (gap.reason === 'unknown_epoch') {
      const epoch = staleCursor ? parseId(staleCursor).epoch : null;
      inbox.reset(
        epoch,
        'History reset — the server no longer knows our place (it restarted?). ' +
          'Earlier messages are greyed out; its current history follows.',
      );
    } else {
      inbox.notice('missed', `${prefix}The server could not place our cursor (${gap.reason}) — history reloaded.`);
    }
    scheduleRender();
  }

  /** Records an own message (from a POST answer or a matched frame) and measures every
   *  arrival that came before we knew it was ours. */
  function claimOwn(id, sent) {
    own.set(id, { sent, measured: {} });
    if (own.size > MAX_ARRIVALS) own.delete(own.keys().next().value);
    const item = inbox.item(id);
    if (item) item.classList.add('own');
    const times = arrivals.get(id) || {};
    for (const [name, at] of Object.entries(times)) measure(id, name, at);
    scheduleRender();
  }

  function measure(id, name, at) {
    const entry = own.get(id);
    if (!entry || entry.measured[name] !== undefined) return;
    const rtt = Math.max(0, at - entry.sent);
    entry.measured[name] = rtt;
    pushBounded(roundTrips[name], rtt, MAX_SAMPLES);
    const item = inbox.item(id);
    if (item) {
      item.classList.add('own');
      const parts = TRANSPORTS.filter((t) => entry.measured[t] !== undefined);
      const text =
        parts.length === 1
          ? `${formatMs(entry.measured[parts[0]])} via ${LABEL[parts[0]]}`
          : parts.map((t) => `${SHORT[t]} ${formatMs(entry.measured[t])}`).join(' · ');
      const rttLabel = item.querySelector('.rtt');
      rttLabel.textContent = ` · ↩ ${text}`;
      rttLabel.title = 'round trip: send → arrival through the transport';
    }
    scheduleCharts();
  }

  function raceArrival(message, name, at) {
    let row = raceRows.get(message.id);
    if (!row) {
      const { seq } = parseId(message.id);
      const label = message.body.length > 28 ? `${message.body.slice(0, 27)}…` : message.body;
      const cells = Object.fromEntries(
        TRANSPORTS.map((t) => [t, el('td', { className: `arrival t-${t}`, dataset: { transport: t } }, '…')]),
      );
      const tr = el(
        'tr',
        { dataset: { id: message.id } },
        el('th', { scope: 'row', title: message.body }, `#${seq} `, el('span', { className: 'muted' }, label)),
      );
      for (const t of TRANSPORTS) tr.append(cells[t]);
      row = { tr, cells, first: at, winner: name };
      raceRows.set(message.id, row);
      const tbody = $('#race-table tbody');
      tbody.prepend(tr);
      while (tbody.rows.length > RACE_ROWS) {
        raceRows.delete(tbody.lastElementChild.dataset.id);
        tbody.lastElementChild.remove();
      }
      wins[name] += 1;
      pushBounded(behind[name], 0, MAX_SAMPLES);
      row.cells[name].textContent = 'first';
      row.cells[name].classList.add('winner');
    } else {
      const lag = at - row.first;
      pushBounded(behind[name], lag, MAX_SAMPLES);
      row.cells[name].textContent = `+${formatMs(lag)}`;
    }
    row.cells[name].dataset.arrived = 'true';
  }

  // --- switching and race mode -------------------------------------------------------

  function running() {
    return raceMode ? TRANSPORTS : [active];
  }

  function switchTo(name) {
    if (name === active) return;
    const previous = active;
    active = name;
    document.body.dataset.transport = name;
    if (!raceMode) {
      transports[previous].stop();
      transports[name].start(inbox.lastId);
    }
    chartsDirty = true;
    render();
  }

  function setRace(on) {
    raceMode = on;
    document.body.dataset.race = on ? 'on' : 'off';
    for (const name of TRANSPORTS) {
      if (name === active) continue;
      if (on) transports[name].start(inbox.lastId);
      else transports[name].stop();
    }
    $('#race-hint').textContent = on ? RACE_HINT_ON : RACE_HINT_OFF;
    chartsDirty = true;
    render();
  }

  // --- publishing ---------------------------------------------------------------------

  async function post(body) {
    const sent = now();
    const form = new URLSearchParams({ body, _xsrf: xsrfToken() });
    let response;
    try {
      response = await fetch(httpUrl('/a/message/new'), { method: 'POST', body: form, cache: 'no-store' });
    } catch {
      throw new Error('server unreachable');
    }
    const text = await response.text();
    if (!response.ok) throw new Error(`${response.status}: ${text.trim() || response.statusText}`);
    const message = JSON.parse(text);
    claimOwn(message.id, sent);
    return message;
  }

  function sendInBand(body) {
    const socket = transports.websocket;
    const sent = now();
    if (!socket.send(body)) return false;
    pendingFrames.push({ body, sent });
    if (pendingFrames.length > 100) pendingFrames.shift();
    return true;
  }

  function showComposeError(text) {
    composeError.textContent = text;
    composeError.hidden = !text;
  }

  composeForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const body = bodyInput.value;
    if (!body.trim()) return;
    showComposeError('');
    bodyInput.value = '';
    if (inbandBox.checked && running().includes('websocket')) {
      if (sendInBand(body)) return;
      showComposeError('The WebSocket is not open; sent with a POST instead.');
    }
    try {
      await post(body);
    } catch (error) {
      showComposeError(`Not sent (${error.message}).`);
      if (!bodyInput.value) bodyInput.value = body;
    }
  });

  async function burst() {
    const button = $('#burst');
    const progress = $('#burst-progress');
    const count = Math.min(200, Math.max(1, Math.floor(Number($('#burst-count').value) || 1)));
    const tag = Math.random().toString(36).slice(2, 6);
    button.disabled = true;
    let next = 1;
    let done = 0;
    let failures = 0;
    const worker = async () => {
      while (next <= count) {
        const index = next;
        next += 1;
        try {
          await post(`burst ${tag} ${index}/${count}`);
        } catch {
          failures += 1;
        }
        done += 1;
        progress.textContent = `${done}/${count} sent`;
      }
    };
    await Promise.all(Array.from({ length: Math.min(BURST_PARALLEL, count) }, worker));
    progress.textContent = failures ? `${count - failures}/${count} sent, ${failures} failed` : `${count} sent`;
    button.disabled = false;
  }

  // --- rendering ----------------------------------------------------------------------

  let renderTimer = null;
  let chartsDirty = true;
  let countdownTimer = null;

  function scheduleRender() {
    if (renderTimer === null) renderTimer = setTimeout(render, 50);
  }

  function scheduleCharts() {
    chartsDirty = true;
    scheduleRender();
  }

  function describeState(transport) {
    switch (transport.state) {
      case 'live':
        return 'live';
      case 'connecting':
        return 'connecting…';
      case 'waiting': {
        const seconds = Math.max(0, (transport.retryAt - now()) / 1000).toFixed(1);
        return `retry in ${seconds} s (attempt ${transport.backoff.attempt})`;
      }
      default:
        return 'off';
    }
  }

  function render() {
    clearTimeout(renderTimer);
    renderTimer = null;
    renderStatus();
    renderHood();
    renderRaceSummary();
    if (chartsDirty) renderCharts();
    chartsDirty = false;
    const waiting = running().some((name) => transports[name].state === 'waiting');
    if (waiting && countdownTimer === null) countdownTimer = setInterval(render, 100);
    if (!waiting && countdownTimer !== null) {
      clearInterval(countdownTimer);
      countdownTimer = null;
    }
    inbandBox.disabled = !transports.websocket.open;
  }

  function renderStatus() {
    const status = $('#status');
    const current = transports[active];
    status.dataset.state = current.state;
    status.dataset.transport = active;
    let text;
    if (raceMode) {
      text = `Race · ${TRANSPORTS.map((t) => `${LABEL[t]} ${describeState(transports[t])}`).join(' · ')}`;
    } else {
      text = `${LABEL[active]} · ${describeState(current)}`;
      if (current.state === 'waiting' && current.detail) text += ` — ${current.detail}`;
    }
    $('#status-text').textContent = text;
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

  const HOOD_ROWS = [
    ['State', (t) => el('span', { className: `state state-${t.state}` }, describeState(t))],
    ['Requests made', (t) => String(t.stats.requests)],
    ['Bytes received', (t) => formatBytes(t.stats.bytes)],
    ['Messages', (t) => String(t.stats.messages)],
    ['Reconnects', (t) => String(t.stats.reconnects)],
    ['Cursor', (t) => cursorLabel(t.cursor)],
    ['Last gap', (t) => gapLabel(t.stats.lastGap)],
  ];

  function renderHood() {
    const tbody = $('#hood tbody');
    const live = running();
    const rows = HOOD_ROWS.map(([label, cell]) =>
      el(
        'tr',
        {},
        el('th', { scope: 'row' }, label),
        ...TRANSPORTS.map((t) =>
          el(
            'td',
            {
              className: `t-${t}${live.includes(t) ? ' running' : ''}${t === active ? ' active' : ''}`,
              dataset: { transport: t },
            },
            cell(transports[t]),
          ),
        ),
      ),
    );
    tbody.replaceChildren(...rows);
    for (const th of document.querySelectorAll('#hood thead th[class]')) {
      th.classList.toggle('active', th.classList.contains(`t-${active}`));
    }
  }

  function renderRaceSummary() {
    const tbody = $('#race-summary tbody');
    tbody.replaceChildren(
      ...TRANSPORTS.map((t) =>
        el(
          'tr',
          { dataset: { transport: t } },
          el('th', { scope: 'row', className: `t-${t}` }, el('span', { className: 'swatch' }), LABEL[t]),
          el('td', {}, String(wins[t])),
          el('td', {}, formatMs(percentile(behind[t], 50))),
          el('td', {}, formatMs(percentile(behind[t], 99))),
        ),
      ),
    );
  }

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attributes, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  }

  /** One bar chart per transport: the last CHART_POINTS round trips, with the p50 as a
   *  dashed line; the caption gives p50/p99 over every sample so far. The three share
   *  one scale, so bar heights compare across transports. */
  function renderCharts() {
    const container = $('#charts');
    const width = 240;
    const height = 64;
    const top = Math.max(1, ...TRANSPORTS.flatMap((t) => roundTrips[t].slice(-CHART_POINTS))) * 1.1;
    const charts = TRANSPORTS.map((t) => {
      const samples = roundTrips[t];
      const recent = samples.slice(-CHART_POINTS);
      const p50 = percentile(samples, 50);
      const p99 = percentile(samples, 99);
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
          className: `chart-box t-${t}${running().includes(t) ? ' running' : ''}`,
          dataset: { transport: t, samples: String(samples.length) },
        },
        el(
          'figcaption',
          {},
          el('span', { className: 'name' }, el('span', { className: 'swatch' }), LABEL[t]),
          el('span', { className: 'numbers' }, `p50 ${formatMs(p50)} · p99 ${formatMs(p99)} · n=${samples.length}`),
        ),
        plot,
      );
    });
    container.replaceChildren(...charts);
  }

  // --- start ----------------------------------------------------------------------------

  for (const radio of document.querySelectorAll('input[name="transport"]')) {
    radio.addEventListener('change', () => {
      if (radio.checked) switchTo(radio.value);
    });
  }
  $('#race').addEventListener('change', (event) => setRace(event.target.checked));
  $('#burst').addEventListener('click', burst);
  composeForm.elements._xsrf.value = xsrfToken();

  // The radios may have been restored by the browser (back/forward); start from them.
  const checked = document.querySelector('input[name="transport"]:checked');
  active = checked ? checked.value : 'long-poll';
  document.body.dataset.transport = active;
  transports[active].start(null);
  if ($('#race').checked) setRace(true);
  render();

  // Leaving the page closes its connections; coming back to it from the back/forward
  // cache resumes them from where the page left off.
  window.addEventListener('pagehide', () => {
    for (const name of TRANSPORTS) transports[name].stop();
  });
  window.addEventListener('pageshow', (event) => {
    if (!event.persisted) return;
    for (const name of running()) transports[name].start(transports[name].cursor ?? inbox.lastId);
    render();
  });
})();
