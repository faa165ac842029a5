// A page that falls further behind than the server's history says so, instead of
// silently continuing.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const HISTORY = 5;
const env = h.useServerAndBrowser('127.0.0.1:0', ['--history', String(HISTORY)]);

test(
  'a long-poll held back past the history shows "N messages missed — history reloaded"',
  { timeout: 60000 },
  async () => {
    const reader = await h.openChat(env.browser, env.server.url);
    const writer = await h.openChat(env.browser, env.server.url);
    await h.send(writer, 'm1');
    await h.waitForBodies(reader, ['m1']);

    // From now on the reader's polls wait at this gate instead of reaching the server
    // (once it opens, they pass straight through).
    let release;
    const gate = new Promise((resolve) => {
      release = resolve;
    });
    let heldOne;
    const held = new Promise((resolve) => {
      heldOne = resolve;
    });
    await reader.route('**/a/message/updates', async (route) => {
      heldOne();
      await gate;
      await route.continue();
    });
    // The poll already at the server delivers m2; the next one, with cursor m2, is held.
    await h.send(writer, 'm2');
    await h.waitForBodies(reader, ['m2']);
    await h.withTimeout(held, 'the reader to poll again');
    const later = ['m3', 'm4', 'm5', 'm6', 'm7', 'm8', 'm9', 'm10'];
    for (const body of later) await h.send(writer, body);

    // The ring keeps m6…m10; the reader's cursor (m2) is gone, so m3…m5 are lost to it.
    release();
    await h.waitForBodies(reader, later.slice(-HISTORY));
    const notice = reader.locator('#inbox .notice.missed');
    await notice.waitFor({ timeout: h.WAIT_MS });
    assert.equal(await notice.textContent(), '3 messages missed — history reloaded.');
    await h.hood(reader, 'Last gap', 'long-poll', /^3 missed at /);
    const shown = await h.messages(reader);
    assert.deepEqual(
      shown.map((m) => m.body),
      ['m1', 'm2', 'm6', 'm7', 'm8', 'm9', 'm10'],
    );
    // The notice sits where the hole is: after m2, before m6.
    const order = await reader.$$eval('#inbox > li', (items) =>
      items.map((li) => (li.classList.contains('notice') ? 'notice' : li.querySelector('.body').textContent)),
    );
    assert.deepEqual(order, ['m1', 'm2', 'notice', 'm6', 'm7', 'm8', 'm9', 'm10']);

    await h.screenshot(reader, 'gap');
    h.assertNoErrors(reader);
    h.assertNoErrors(writer);
    await reader.context().close();
    await writer.context().close();
  },
);
