// The page on a phone (390×844) and on a desktop, over an emulated 300 ms link: the chat
// follows a burst to its last message, the comparison is one tap away, and tables fit
// or say that they scroll.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');
const { assertAccessible } = require('./axe');

const env = h.useServerAndBrowser('127.0.0.1:0', ['--emulate-rtt', '300ms']);

const PHONE = { width: 390, height: 844 };
const DESKTOP = { width: 1280, height: 900 };
const BURST = 20;

/** How far the inbox is from its bottom, and whether its newest message is in view. */
function inboxView(page) {
  return page.evaluate(() => {
    const inbox = document.querySelector('#inbox');
    const messages = [...inbox.querySelectorAll('.msg')];
    const newest = messages.reduce((a, b) => (Number(b.dataset.seq) > Number(a.dataset.seq) ? b : a));
    const [box, item] = [inbox.getBoundingClientRect(), newest.getBoundingClientRect()];
    return {
      fromBottom: Math.round(inbox.scrollHeight - inbox.scrollTop - inbox.clientHeight),
      newest: newest.querySelector('.body').textContent,
      newestInView: item.top >= box.top - 1 && item.bottom <= box.bottom + 1,
    };
  });
}

/** Publishes a burst with the page's button and waits until every running transport
 *  has delivered it and each message's round trips are shown. */
async function burst(page, transports) {
  await page.fill('#burst-count', String(BURST));
  await page.click('#burst');
  await page.waitForFunction(
    ([count, running]) => {
      const mine = [...document.querySelectorAll('#inbox .msg.own')].filter((m) => m.querySelector('.body').textContent.startsWith('burst '));
      const measured = (m) => (m.querySelector('.rtt').textContent.match(/\d+(\.\d+)? m?s/g) ?? []).length;
      return mine.length === count && mine.every((m) => measured(m) === running);
    },
    [BURST, transports],
    { timeout: 30000 },
  );
}

for (const [width, viewport, scheme] of [
  ['phone', PHONE, 'light'],
  ['desktop', DESKTOP, 'dark'],
]) {
  test(`the chat follows a race burst to its last message (${width})`, { timeout: 90000 }, async () => {
    const page = await h.openChat(env.browser, env.server.url, { viewport, context: { colorScheme: scheme } });
    await page.click('label[for="race"]');
    // WebTransport is not carried by the emulated link: three transports race.
    await page.waitForFunction(() => document.querySelectorAll('#hood td.running .state-live').length === 3, null, {
      timeout: h.WAIT_MS,
    });
    await burst(page, 3);
    const view = await inboxView(page);
    assert.ok(view.fromBottom <= 2 && view.newestInView, `the chat stopped following: ${JSON.stringify(view)}`);
    assert.match(view.newest, new RegExp(`${BURST}/${BURST}$`));
    await assertAccessible(page, `race burst, ${width}, ${scheme}, emulated link`);
    h.assertNoErrors(page);
    await page.context().close();
  });
}

test('the chat follows a burst on one transport (phone)', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { viewport: PHONE });
  await burst(page, 1);
  const view = await inboxView(page);
  assert.ok(view.fromBottom <= 2 && view.newestInView, `the chat stopped following: ${JSON.stringify(view)}`);
  await page.context().close();
});

test('a reader who scrolled up in the chat is left where they are', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { viewport: PHONE });
  await burst(page, 1);
  await page.evaluate(() => {
    document.querySelector('#inbox').scrollTop = 0;
  });
  await h.send(page, 'while reading the top');
  await h.waitForBodies(page, ['while reading the top']);
  assert.equal(await page.evaluate(() => document.querySelector('#inbox').scrollTop), 0);
  await page.context().close();
});

test('on a phone the comparison is one tap from the first screen; on a desktop it is beside the chat', async () => {
  const phone = await h.openChat(env.browser, env.server.url, { viewport: PHONE });
  const jump = phone.getByRole('link', { name: 'Jump to the comparison' });
  const box = await jump.boundingBox();
  assert.ok(box && box.y + box.height <= PHONE.height, `the link is not on the first screen: ${JSON.stringify(box)}`);
  await jump.click();
  await phone.waitForFunction(() => Math.abs(document.querySelector('#comparison').getBoundingClientRect().top) < 2);
  assert.equal(await phone.evaluate(() => document.activeElement.id), 'comparison', 'focus follows the jump');
  await phone.context().close();

  const desktop = await h.openChat(env.browser, env.server.url, { viewport: DESKTOP });
  assert.equal(await desktop.getByRole('link', { name: 'Jump to the comparison' }).isVisible(), false);
  const [chat, side] = await Promise.all(['.chat', '#comparison'].map((s) => desktop.locator(s).boundingBox()));
  assert.ok(side.x > chat.x + chat.width, 'the comparison is beside the chat');
  await desktop.context().close();
});

test('on a phone the race table fits, and Under the hood says that it scrolls and can be scrolled by keyboard', { timeout: 60000 }, async () => {
  const page = await h.openChat(env.browser, env.server.url, { viewport: PHONE });
  await page.click('label[for="race"]');
  await h.send(page, 'one row');
  await page.waitForSelector('#race-table tbody tr td[data-arrived]');
  const fits = (selector) =>
    page.$eval(selector, (region) => region.scrollWidth <= region.clientWidth);
  assert.ok(await fits('.race-scroll'), 'the race table is wider than the phone');

  const hood = page.getByRole('region', { name: 'Counters per transport' });
  assert.equal(await hood.getAttribute('tabindex'), '0');
  if (!(await fits('.wide-scroll'))) {
    assert.ok(await page.locator('.scroll-note').isVisible(), 'Under the hood scrolls with no word of it');
    await hood.focus();
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => document.querySelector('.wide-scroll').scrollLeft > 0);
  }
  await page.context().close();
});
