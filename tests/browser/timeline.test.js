// The wire timeline and the bytes on the wire, over a link with a 300 ms round trip
// (where a burst shows long-poll's batching and the gap after each answer): long-poll's
// lane has one bar per request with the messages its answer carried, the page's byte
// count of each poll is within 10 % of what Chromium's network layer counted, the
// streaming lanes tick once per frame, and the history download is counted apart.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser('127.0.0.1:0', ['--emulate-rtt', '300ms']);

const POLLS = '/a/message/updates';
const VIEWPORTS = { desktop: { width: 1280, height: 900 }, phone: { width: 390, height: 844 } };

/** Opens the chat, collecting every poll request Chromium makes, in the order sent, and
 *  the payload of every WebSocket frame received. */
async function openWatched(viewport, transport) {
  const polls = [];
  const frames = [];
  const page = await h.openChat(env.browser, env.server.url, {
    viewport,
    transport,
    setup: (context) => {
      context.on('request', (r) => r.url().endsWith(POLLS) && polls.push(r));
      context.on('page', (p) => p.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(f.payload))));
    },
  });
  return { page, polls, frames };
}

/** Publishes a burst of `count` from the page's own button and waits for all of it. */
async function burst(page, count) {
  await page.fill('#burst-count', String(count));
  await page.click('#burst');
  await page.locator('#burst-progress', { hasText: `${count} sent` }).waitFor({ timeout: h.WAIT_MS });
}

/** The number in the data-bytes of Under the hood's `row` for `transport`. */
function hoodBytes(page, row, transport) {
  return page.$$eval(
    '#hood tbody tr',
    (rows, [label, name]) =>
      Number(
        rows.find((r) => r.cells[0].textContent === label).querySelector(`td[data-transport="${name}"]`).dataset.bytes,
      ),
    [row, transport],
  );
}

/** The long-poll lane's bars: `{ index, state, messages, bytes }` (bytes null until known). */
function pollBars(page) {
  return page.$$eval('[data-lane="long-poll"] .poll', (bars) =>
    bars.map((bar) => ({
      index: Number(bar.dataset.index),
      state: bar.dataset.state,
      messages: Number(bar.dataset.messages),
      bytes: bar.dataset.bytes === '' ? null : Number(bar.dataset.bytes),
    })),
  );
}

for (const [width, viewport] of Object.entries(VIEWPORTS)) {
  test(
    `long-poll's lane shows each request with its messages and its bytes on the wire (${width})`,
    { timeout: 60000 },
    async (t) => {
      const { page, polls } = await openWatched(viewport, 'long-poll');
      const before = new Set((await h.messages(page)).map((message) => message.id));
      await burst(page, 12);
      await page.waitForFunction((n) => document.querySelectorAll('#inbox .msg').length === n, before.size + 12);

      // All delivered, a poll waits at the server again: every request so far has its bar,
      // and every answered one its bytes.
      await page.waitForFunction(
        (n) => {
          const bars = [...document.querySelectorAll('[data-lane="long-poll"] .poll')];
          return bars.length === n && bars.every((bar) => bar.dataset.state === 'held' || bar.dataset.bytes !== '');
        },
        polls.length,
        { timeout: h.WAIT_MS },
      );
      const bars = await pollBars(page);
      assert.deepEqual(
        bars.map((bar) => bar.index),
        polls.map((_, i) => i + 1),
        'one bar per request Chromium made, in order',
      );
      assert.equal(bars.at(-1).state, 'held', 'the last poll waits at the server');
      const answered = [];
      for (const request of polls.slice(0, -1)) answered.push({ request, response: await request.response() });

      let pageTotal = 0;
      let networkTotal = 0;
      let carried = 0;
      let carrying = 0;
      for (const [i, { request, response }] of answered.entries()) {
        const bar = bars[i];
        const messages = (await response.json()).messages ?? [];
        assert.equal(bar.messages, messages.length, `poll ${i + 1}: the messages its answer carried`);
        const burstOnes = messages.filter((message) => !before.has(message.id)).length;
        carried += burstOnes;
        if (burstOnes) carrying += 1;
        const sizes = await request.sizes();
        const network =
          sizes.requestHeadersSize + sizes.requestBodySize + sizes.responseHeadersSize + sizes.responseBodySize;
        const error = Math.abs(bar.bytes - network) / network;
        assert.ok(
          error < 0.1,
          `poll ${i + 1}: the page counted ${bar.bytes} B, Chromium ${network} B (${JSON.stringify(sizes)})`,
        );
        pageTotal += bar.bytes;
        networkTotal += network;
      }
      assert.equal(carried, 12, 'the answers carried the burst, each message once');
      assert.ok(carrying < 12, `a burst at 300 ms is batched: ${carrying} answers for 12 messages`);
      assert.ok(
        Math.abs(pageTotal - networkTotal) / networkTotal < 0.1,
        `page ${pageTotal} B, Chromium ${networkTotal} B`,
      );
      t.diagnostic(`${answered.length} polls: the page counted ${pageTotal} B, Chromium ${networkTotal} B`);

      // The table is redrawn shortly after each count (renders are batched): wait for it.
      let shown;
      let history;
      for (const until = Date.now() + h.WAIT_MS; ; await page.waitForTimeout(100)) {
        shown = await hoodBytes(page, 'Bytes on the wire', 'long-poll');
        history = await hoodBytes(page, 'History download', 'long-poll');
        if (shown >= pageTotal - history || Date.now() > until) break;
      }
      assert.ok(
        shown >= pageTotal - history,
        `Under the hood counts at least the answered polls (${shown} B + ${history} B of history ≥ ${pageTotal} B)`,
      );
      const lanes = await page.$$eval('.lane', (all) => all.map((lane) => [lane.dataset.lane, lane.dataset.state]));
      assert.deepEqual(
        lanes,
        [
          ['long-poll', 'on'],
          ['websocket', 'off'],
          ['sse', 'off'],
          ['webtransport', 'off'],
        ],
        'only the running transport is on',
      );
      h.assertNoErrors(page);
      await page.context().close();
    },
  );
}

test(
  'in race mode every lane is live, and the streaming lanes tick once per frame with its bytes',
  { timeout: 60000 },
  async () => {
    const { page, frames } = await openWatched(VIEWPORTS.desktop, 'websocket');
    await page.click('label[for="race"]');
    // WebTransport runs over UDP, which the emulated link does not carry: its lane says so.
    await page.waitForFunction(() => document.querySelectorAll('#hood td.running .state-live').length === 3, null, {
      timeout: h.WAIT_MS,
    });
    await page.waitForSelector('[data-lane="webtransport"][data-state="off"]');
    for (const lane of ['long-poll', 'websocket', 'sse'])
      await page.waitForSelector(`[data-lane="${lane}"][data-state="on"]`);

    const before = new Set((await h.messages(page)).map((message) => message.id));
    await burst(page, 5);
    await page.waitForFunction(
      () =>
        ['websocket', 'sse'].every(
          (lane) =>
            document.querySelectorAll(`[data-lane="${lane}"] .tick[data-kind="message"]:not([data-bytes=""])`).length >=
            5,
        ),
      null,
      { timeout: h.WAIT_MS },
    );
    const ticks = (lane) =>
      page.$$eval(`[data-lane="${lane}"] .tick[data-kind="message"]`, (all) =>
        all.map((tick) => Number(tick.dataset.bytes)),
      );
    const sent = frames.filter((payload) => {
      const id = JSON.parse(payload).id;
      return id !== undefined && !before.has(id);
    });
    const websocket = await ticks('websocket');
    assert.equal(websocket.length, 5, 'one tick per message frame');
    // Each frame: its payload and a header of 2 bytes, 4 from 126 bytes of payload on.
    const expected = sent.map((payload) => Buffer.byteLength(payload) + (Buffer.byteLength(payload) < 126 ? 2 : 4));
    assert.deepEqual(websocket.toSorted(), expected.toSorted(), 'frame bytes: payload and header');
    const sse = await ticks('sse');
    assert.equal(sse.length, 5, 'one tick per event');
    for (const bytes of sse) assert.ok(bytes > 0);

    const caption = await page.textContent('[data-lane="long-poll"] .summary');
    assert.match(caption, /messages? in \d+ answers?/);
    // After each answer, no poll waits at the server for about one round trip.
    const gap = Number(caption.match(/no poll at the server for (\d+) ms after each answer/)?.[1]);
    assert.ok(gap >= 250 && gap < 500, `the gap after each answer at 300 ms: ${caption}`);
    h.assertNoErrors(page);
    await page.context().close();
  },
);

test('the history downloaded at the start is counted apart from live delivery', { timeout: 60000 }, async () => {
  const writer = await h.openChat(env.browser, env.server.url);
  const earlier = ['history 1', 'history 2', 'history 3'];
  for (const body of earlier) await h.send(writer, body);

  const reader = await h.openChat(env.browser, env.server.url, { transport: 'sse' });
  await h.waitForBodies(reader, earlier);
  const history = await h.hood(reader, 'History download', 'sse', /^\d+ messages/);
  const downloaded = Number(history.split(' ')[0]);
  assert.ok(downloaded >= earlier.length, `the history: ${history}`);
  await h.send(writer, 'live 1');
  await h.waitForBodies(reader, ['live 1']);
  await h.hood(reader, 'Messages', 'sse', new RegExp(`^${downloaded + 1}$`));
  assert.equal(await h.hood(reader, 'History download', 'sse'), history, 'a live message is not history');
  await writer.context().close();
  await reader.context().close();
});
