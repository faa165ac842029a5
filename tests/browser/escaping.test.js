// Hostile message text renders as text on every transport: nothing it contains runs.
'use strict';

const assert = require('node:assert/strict');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser();

const HOSTILE = [
  '<script>window.__pwned = "script"</script>',
  '<img src=x onerror="window.__pwned = \'img\'">',
  '<a href="javascript:window.__pwned=\'link\'">click</a> and "quotes" & ampersands',
  'javascript:window.__pwned=1 is not a link, http://127.0.0.1/x"onmouseover="window.__pwned=2 is',
];

test('<script> and <img onerror> render as text on every transport', { timeout: 90000 }, async () => {
  const pages = await h.pagePerTransport(env);
  for (const body of HOSTILE) await h.send(pages['long-poll'], body);

  for (const [transport, page] of Object.entries(pages)) {
    await h.waitForBodies(page, HOSTILE);
    const shown = (await h.messages(page)).map((m) => m.body);
    assert.deepEqual(shown, HOSTILE, `${transport}: the text as typed`);
    assert.equal(await page.locator('#inbox script, #inbox img, #inbox [onerror], #inbox [onmouseover]').count(), 0);
    assert.equal(await page.evaluate(() => window.__pwned), undefined, `${transport}: something ran`);
    // Only the http URL became a link, cut at the quote.
    const links = await page.$$eval('#inbox a', (as) => as.map((a) => a.getAttribute('href')));
    assert.deepEqual(links, ['http://127.0.0.1/x'], transport);
  }

  await h.screenshot(pages.sse, 'escaping');
  for (const page of Object.values(pages)) {
    h.assertNoErrors(page);
    await page.context().close();
  }
});
