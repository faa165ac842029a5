// The page under its own Content-Security-Policy: every transport, Auto and race mode
// still work, over an emulated 300 ms link (WebTransport, which that link does not
// carry, on a plain server), and nothing the page does is refused by the policy (a `securitypolicyviolation` event or a "Refused to …" console message is a
// failure). A page with an inline script and an inline style added shows that the
// watch would catch one.
'use strict';

const assert = require('node:assert/strict');
const http = require('node:http');
const { test } = require('node:test');
const h = require('./harness');

const env = h.useServerAndBrowser('127.0.0.1:0', ['--emulate-rtt', '300ms']);

/** Records every CSP violation on the page in `window.cspViolations` (a `setup` for
 *  `h.openChat`). */
function watchViolations(context) {
  return context.addInitScript(() => {
    window.cspViolations = [];
    document.addEventListener('securitypolicyviolation', (event) => {
      window.cspViolations.push(`${event.effectiveDirective} refused ${event.blockedURI || 'inline'}`);
    });
  });
}

/** Asserts that the page met no CSP violation, by event or by console message. */
async function assertNoViolations(page) {
  assert.deepEqual(await page.evaluate(() => window.cspViolations), [], 'CSP violations');
  assert.deepEqual(
    page.errors.filter((e) => /Content Security Policy/i.test(e)),
    [],
    'CSP messages on the console',
  );
}

function openWatched(transport, url = env.server.url) {
  return h.openChat(env.browser, url, { transport, setup: watchViolations });
}

/** Runs `body(url)` against a plain server (no emulated link), which offers WebTransport. */
async function withPlainServer(body) {
  const plain = await h.startServer();
  try {
    await body(plain.url);
  } finally {
    await plain.stop();
  }
}

test('the page is served with a policy that allows only its own scripts, styles and connections', async () => {
  const page = await openWatched('long-poll');
  const response = await page.goto(page.url());
  const headers = response.headers();
  assert.match(headers['content-security-policy'], /script-src 'self'/);
  assert.match(headers['content-security-policy'], /frame-ancestors 'self'/);
  assert.equal(headers['x-content-type-options'], 'nosniff');
  assert.equal(headers['referrer-policy'], 'no-referrer');
  await h.waitLive(page);
  await page.context().close();
});

/** Chats once on `transport` at `url` and checks that nothing was refused. */
async function chatUnderThePolicy(transport, url) {
  const page = await openWatched(transport, url);
  if (transport !== 'auto') await h.waitLive(page, transport);
  await h.send(page, `under the policy on ${transport}`);
  await h.waitForBodies(page, [`under the policy on ${transport}`]);
  await assertNoViolations(page);
  h.assertNoErrors(page);
  await page.context().close();
}

for (const transport of ['long-poll', 'websocket', 'sse', 'auto']) {
  test(`${transport}: chats under the policy with nothing refused`, { timeout: 60000 }, () =>
    chatUnderThePolicy(transport),
  );
}

test('webtransport: chats under the policy, its UDP port allowed, with nothing refused', { timeout: 60000 }, () =>
  withPlainServer((url) => chatUnderThePolicy('webtransport', url)),
);

test('race mode runs all four transports under the policy with nothing refused', { timeout: 90000 }, () =>
  withPlainServer(async (url) => {
    const page = await openWatched('websocket', url);
    await h.raceBurst(page, 5);
    await assertNoViolations(page);
    h.assertNoErrors(page);
    await page.context().close();
  }),
);

test('an inline script or an inline style on the page would be refused and seen', async () => {
  const page = await openWatched('long-poll');
  // The same page and headers, with an inline script and a style attribute added.
  await page.route(env.server.url + '**', async (route) => {
    if (route.request().resourceType() !== 'document') return route.continue();
    const response = await route.fetch();
    const body = (await response.text()).replace(
      '<main class="layout">',
      '<script>window.inlineRan = true</script><main class="layout" style="outline: 1px solid red">',
    );
    return route.fulfill({ response, body });
  });
  await page.reload();
  await page.waitForFunction(() => window.cspViolations.length >= 2, null, { timeout: h.WAIT_MS });
  const violations = await page.evaluate(() => window.cspViolations);
  assert.ok(violations.some((v) => v.startsWith('script-src')), violations.join('\n'));
  assert.ok(violations.some((v) => v.startsWith('style-src')), violations.join('\n'));
  assert.equal(await page.evaluate(() => window.inlineRan), undefined, 'the inline script ran');
  assert.ok(page.errors.some((e) => /Content Security Policy/i.test(e)), 'no console message for the refusal');
  await page.context().close();
});

test('another site cannot frame the page', async () => {
  // Another origin on this machine (another port): a page with the chat in a frame.
  const framer = http.createServer((request, response) => {
    response.setHeader('content-type', 'text/html');
    response.end(`<iframe name="chat" src="${env.server.url}"></iframe>`);
  });
  await new Promise((resolve) => framer.listen(0, '127.0.0.1', resolve));
  const context = await env.browser.newContext();
  const page = await context.newPage();
  try {
    const answered = page.waitForResponse((r) => r.url() === env.server.url);
    await page.goto(`http://127.0.0.1:${framer.address().port}/`);
    assert.equal((await answered).status(), 200, 'the server answered the frame');
    assert.equal(await page.frame({ name: 'chat' }).$('#inbox'), null, 'the chat loaded in a frame of another site');
  } finally {
    await context.close();
    framer.close();
  }
});
