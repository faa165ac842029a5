// Two people chatting, and one of them flipping transports mid-conversation.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

/** Every message once, in `seq` order. */
function assertInOrderOnce(list, label) {
  const ids = list.map((m) => m.id);
  assert.equal(new Set(ids).size, ids.length, `${label}: a message is shown twice`);
  const seqs = list.map((m) => m.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    `${label}: messages out of order`,
  );
}

test('two pages chat: each sees both messages once, and its own with a round trip', { timeout: 60000 }, async () => {
  const alice = await h.openChat(env.browser, env.server.url);
  const bob = await h.openChat(env.browser, env.server.url);

  await h.send(alice, 'hello from alice');
  await h.send(bob, 'hi alice, bob here — see https://example.com/docs.');
  const bodies = ['hello from alice', 'hi alice, bob here — see https://example.com/docs.'];
  await h.waitForBodies(alice, bodies);
  await h.waitForBodies(bob, bodies);

  const seenByAlice = await h.messages(alice);
  const seenByBob = await h.messages(bob);
  assert.deepEqual(seenByAlice, seenByBob);
  assert.deepEqual(
    seenByAlice.map((m) => m.body),
    bodies,
  );

  // Alice's own message carries its round trip through long-poll; Bob's is not hers.
  const ownOnAlice = alice.locator('#inbox .msg.own');
  await ownOnAlice.locator('.rtt', { hasText: 'via Long-poll' }).waitFor({ timeout: h.WAIT_MS });
  assert.equal(await ownOnAlice.count(), 1);
  assert.equal(await ownOnAlice.locator('.body').textContent(), 'hello from alice');
  await h.waitSamples(alice, 'long-poll', 1);

  // The URL became a link, without the trailing full stop.
  assert.equal(await bob.getAttribute('#inbox .msg a', 'href'), 'https://example.com/docs');

  await h.screenshot(alice, 'chat-alice');
  await h.screenshot(bob, 'chat-bob');
  h.assertNoErrors(alice);
  h.assertNoErrors(bob);
  await alice.context().close();
  await bob.context().close();
});

test(
  'switching Long-poll → WebSocket → SSE → Long-poll mid-conversation loses and repeats nothing',
  { timeout: 120000 },
  async () => {
    const alice = await h.openChat(env.browser, env.server.url);
    const bob = await h.openChat(env.browser, env.server.url);
    const before = (await h.messages(alice)).length;

    const sequence = ['websocket', 'sse', 'long-poll'];
    const posted = [];
    let switches = 0;
    for (let i = 1; i <= 24; i += 1) {
      const body = `bob ${i}`;
      await h.send(bob, body);
      posted.push(body);
      if (i % 6 === 3 && switches < sequence.length) {
        // Switch while the message just posted is still on its way.
        const next = sequence[switches];
        switches += 1;
        await h.chooseTransport(alice, next);
        // Alice speaks on each transport, so each one measures a round trip.
        const own = `alice on ${next}`;
        await h.waitLive(alice, next);
        await h.send(alice, own);
        posted.push(own);
      }
    }
    assert.equal(switches, 3);

    await h.waitForBodies(alice, posted);
    await h.waitForBodies(bob, posted);
    const seenByAlice = await h.messages(alice);
    const seenByBob = await h.messages(bob);
    assertInOrderOnce(seenByAlice, 'alice');
    assertInOrderOnce(seenByBob, 'bob');
    assert.deepEqual(
      seenByAlice.slice(before).map((m) => m.body),
      posted,
    );
    assert.deepEqual(seenByAlice, seenByBob);

    // Every transport carried part of the conversation and measured one of Alice's messages.
    for (const transport of ['long-poll', 'websocket', 'sse']) {
      assert.ok(Number(await h.hood(alice, 'Messages', transport)) > 0, `${transport} delivered nothing`);
      await h.waitSamples(alice, transport, 1);
    }
    // Long-poll needs a request per delivery, the streams one per connection.
    assert.ok(Number(await h.hood(alice, 'Requests made', 'long-poll')) > 2);
    assert.equal(await h.hood(alice, 'Requests made', 'websocket'), '1');
    assert.equal(await h.hood(alice, 'Requests made', 'sse'), '1');

    await h.screenshot(alice, 'toggle-alice');
    await h.screenshot(bob, 'toggle-bob');
    h.assertNoErrors(alice);
    h.assertNoErrors(bob);
    await alice.context().close();
    await bob.context().close();
  },
);

test('in-band WebSocket sends come back and are measured', { timeout: 60000 }, async () => {
  const alice = await h.openChat(env.browser, env.server.url);
  await h.chooseTransport(alice, 'websocket');
  await h.waitLive(alice, 'websocket');
  await alice.check('#inband');
  await alice.fill('#body', 'sent as a frame');
  await alice.press('#body', 'Enter');
  const own = alice.locator('#inbox .msg.own', { hasText: 'sent as a frame' });
  await own.locator('.rtt', { hasText: 'via WebSocket' }).waitFor({ timeout: h.WAIT_MS });
  h.assertNoErrors(alice);
  await alice.context().close();
});

test('the transport toggle and race switch work from the keyboard', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url);
  await page.focus('#t-long-poll');
  await page.keyboard.press('ArrowRight');
  await h.waitLive(page, 'websocket');
  await page.keyboard.press('ArrowRight');
  await h.waitLive(page, 'sse');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement.id), 'race');
  await page.keyboard.press('Space');
  await page.waitForSelector('body[data-race="on"]', { timeout: h.WAIT_MS });
  // On to the message field (the guide's button and glossary, and the scrollable inbox,
  // are tab stops on the way).
  for (let i = 0; i < 6 && (await page.evaluate(() => document.activeElement.id)) !== 'body'; i += 1) {
    await page.keyboard.press('Tab');
  }
  assert.equal(await page.evaluate(() => document.activeElement.id), 'body');
  await page.keyboard.type('typed without a mouse');
  await page.keyboard.press('Enter');
  await h.waitForBodies(page, ['typed without a mouse']);
  h.assertNoErrors(page);
  await page.context().close();
});

test('without JavaScript the form still posts to the Tornado endpoint', { timeout: 60000 }, async () => {
  const context = await env.browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await page.goto(env.server.url);
  const form = await page.$eval('#compose', (f) => ({
    action: f.getAttribute('action'),
    method: f.getAttribute('method'),
    next: f.elements.next.value,
    fields: [...f.elements].map((e) => e.name).filter(Boolean),
  }));
  assert.deepEqual(form, { action: '/a/message/new', method: 'post', next: '/', fields: ['next', '_xsrf', 'body'] });
  await context.close();
});

test('the page is usable on a phone-sized screen', { timeout: 60000 }, async () => {
  const phone = await h.openChat(env.browser, env.server.url, { viewport: { width: 390, height: 844 } });
  await h.send(phone, 'typed on a phone');
  await h.waitForBodies(phone, ['typed on a phone']);
  const overflow = await phone.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 0, `the page scrolls sideways by ${overflow}px`);
  await h.screenshot(phone, 'phone');
  h.assertNoErrors(phone);
  await phone.context().close();
});
