// Tornado's own chat client — `chat.js` of the tornado 4.5.3 demo, with the jQuery 3.1.0 its
// page loads — run unmodified in Chromium against pushwire: two people chat through the
// demo's page and each sees both messages.
//
// Each browser context gets its `_xsrf` cookie from pushwire's `GET /`, then loads Tornado's
// page at `/` as Tornado would render it (its `index.html` with the template tags filled in:
// no messages yet). Playwright serves only that page, the demo's `static/` files and jQuery
// (the page's googleapis URL, answered with npm's copy: the network stops at loopback);
// every request chat.js makes (`/a/message/new`, `/a/message/updates`) goes to the real
// server untouched. The demo comes from PyPI through `bench/tornado/setup`.
'use strict';

const assert = require('node:assert/strict');
const { execFileSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');
const { before, test } = require('node:test');
const h = require('./harness');

const ROOT = path.resolve(__dirname, '..', '..');
/** Where the demo's page loads jQuery from; served from npm's `jquery`, the same release. */
const JQUERY_URL = 'https://ajax.googleapis.com/ajax/libs/jquery/3.1.0/jquery.min.js';

// A hold of 1 s, so that idle answers come often: chat.js must take them in its stride.
const HOLD_S = 1;
const env = h.useServerAndBrowser('127.0.0.1:0', ['--long-poll-hold', String(HOLD_S)]);
/** `demos/chat` of the tornado 4.5.3 sdist. */
let demo;

before(() => {
  // Idempotent, and quick once downloaded; prints `--tornado-python P --tornado-demo D`.
  const printed = execFileSync(path.join(ROOT, 'bench', 'tornado', 'setup'), {
    cwd: ROOT,
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    timeout: 5 * 60 * 1000,
  });
  const found = printed.match(/--tornado-demo (\S+)/);
  assert.ok(found, `bench/tornado/setup printed no --tornado-demo:\n${printed}`);
  demo = path.resolve(ROOT, found[1]);
});

/** What Tornado's `static_url(name)` renders: the path with the file's MD5 as version. */
function staticUrl(name) {
  const md5 = crypto.createHash('md5').update(fs.readFileSync(path.join(demo, 'static', name))).digest('hex');
  return `/static/${name}?v=${md5}`;
}

/**
 * The demo's `templates/index.html` as Tornado's `MainHandler` renders it with no messages
 * yet, at `requestPath`, with `xsrf` in the form's hidden field. Each tag is filled in
 * exactly where the template has it, so a template that differs fails here.
 */
function renderIndex(requestPath, xsrf) {
  let html = fs.readFileSync(path.join(demo, 'templates', 'index.html'), 'utf8');
  const fill = (tag, value) => {
    assert.equal(html.split(tag).length, 2, `index.html has ${tag} once`);
    html = html.replace(tag, () => value);
  };
  const messages = html.match(/\{% for message in messages %\}[\s\S]*?\{% end %\}/);
  assert.ok(messages, 'index.html loops over the messages');
  fill(messages[0], '');
  fill('{{ static_url("chat.css") }}', staticUrl('chat.css'));
  fill('{{ static_url("chat.js") }}', staticUrl('chat.js'));
  fill('{{ _("Post") }}', 'Post');
  fill('{{ request.path }}', requestPath);
  fill('{% module xsrf_form_html() %}', `<input type="hidden" name="_xsrf" value="${xsrf}"/>`);
  assert.doesNotMatch(html, /\{\{|\{%/, 'a template tag is left unfilled');
  assert.equal(html.split(JQUERY_URL).length, 2, `index.html loads jQuery from ${JQUERY_URL}`);
  return html;
}

/**
 * A person on Tornado's page: a fresh context, its cookie from pushwire, the page loaded
 * and chat.js polling. The page has `errors` (uncaught exceptions, console errors and the
 * failures chat.js itself logs), `exchanges` (every request to `/a/message/…`:
 * `{ path, form, status }`) and `outside` (requests that tried to leave loopback).
 */
async function openTornadoChat(name) {
  const origin = new URL(env.server.url).origin;
  const context = await env.browser.newContext({ viewport: { width: 800, height: 500 } });
  // Requests of `context.request` share the context's cookie jar.
  const front = await context.request.get(`${origin}/`);
  assert.equal(front.status(), 200, `${name}: GET /`);
  const xsrf = (await context.cookies(origin)).find((cookie) => cookie.name === '_xsrf')?.value;
  assert.match(xsrf ?? '', /^[0-9a-f]{32}$/, `${name}: GET / set no _xsrf cookie`);

  const served = new Map([
    [`${origin}/`, { contentType: 'text/html; charset=UTF-8', body: renderIndex('/', xsrf) }],
    [`${origin}/static/chat.js`, { contentType: 'application/javascript', path: path.join(demo, 'static', 'chat.js') }],
    [`${origin}/static/chat.css`, { contentType: 'text/css', path: path.join(demo, 'static', 'chat.css') }],
    [JQUERY_URL, { contentType: 'application/javascript', path: require.resolve('jquery/dist/jquery.min.js') }],
  ]);
  const outside = [];
  // Only these URLs and those of other origins are intercepted: the server's own are not.
  await context.route(
    (url) => served.has(url.origin + url.pathname) || url.origin !== origin,
    (route) => {
      const url = new URL(route.request().url());
      const file = served.get(url.origin + url.pathname);
      if (file) return route.fulfill({ status: 200, ...file });
      outside.push(url.href);
      return route.abort('blockedbyclient');
    },
  );

  const page = await context.newPage();
  page.setDefaultTimeout(h.WAIT_MS);
  Object.assign(page, { errors: [], exchanges: [], outside });
  page.on('pageerror', (error) => page.errors.push(`pageerror: ${error.message}`));
  page.on('console', (message) => {
    // chat.js reports a failed POST ("ERROR:") and a failed poll with console.log.
    if (message.type() === 'error' || /^(ERROR:|Poll error)/.test(message.text())) {
      page.errors.push(`console.${message.type()}: ${message.text()}`);
    }
  });
  page.on('response', (response) => {
    const url = new URL(response.url());
    if (url.origin !== origin || !url.pathname.startsWith('/a/message/')) return;
    const form = Object.fromEntries(new URLSearchParams(response.request().postData() ?? ''));
    page.exchanges.push({ path: url.pathname, form, status: response.status() });
  });
  // The first poll comes from chat.js's ready handler, after it has bound the form.
  const polling = page.waitForRequest(`${origin}/a/message/updates`);
  await page.goto(`${origin}/`);
  await polling;
  return page;
}

/** Types `body` into the demo's form and sends it (by Enter or its Post button), as a
 *  person would; returns the message object pushwire answered with. */
async function post(page, body, how) {
  await page.fill('#message', body);
  const answered = page.waitForResponse(
    (r) => new URL(r.url()).pathname === '/a/message/new' && r.request().method() === 'POST',
  );
  if (how === 'enter') await page.press('#message', 'Enter');
  else await page.click('#messageform input[type=submit]');
  const response = await answered;
  assert.equal(response.status(), 200, `POST /a/message/new of ${JSON.stringify(body)}: ${await response.text()}`);
  // chat.js empties the field once it has shown the message.
  await page.waitForFunction(() => document.querySelector('#message').value === '');
  return response.json();
}

/** Waits until `#inbox` holds `expected.length` messages and chat.js has finished sliding
 *  them in, then asserts that they are the messages `expected` (`{ id, body }`), in that
 *  order, and visible. */
async function assertInbox(page, expected, who) {
  await page
    .waitForFunction(
      (n) => document.querySelectorAll('#inbox .message').length >= n && !jQuery('#inbox .message:animated').length,
      expected.length,
    )
    .catch(() => {}); // the assertion below says what is shown instead
  const shown = await page.$$eval('#inbox .message', (nodes) =>
    nodes.map((n) => ({ id: n.id, body: n.textContent, visible: n.offsetHeight > 0 })),
  );
  assert.deepEqual(
    shown,
    expected.map((m) => ({ id: `m${m.id}`, body: m.body, visible: true })),
    `${who}'s #inbox`,
  );
}

test("Tornado's chat.js chats with pushwire: two pages each see both messages once, in order", { timeout: 90000 }, async () => {
  const alice = await openTornadoChat('alice');
  const bob = await openTornadoChat('bob');

  const first = await post(alice, 'hello from alice', 'enter');
  assert.equal(first.body, 'hello from alice');
  // Bob sees it through his poll; Alice's poll delivers it too (chat.js skips the copy).
  await assertInbox(bob, [first], 'bob');
  await alice.waitForFunction((id) => updater.cursor === id, first.id);

  const second = await post(bob, 'hi alice, bob here: https://example.com/docs', 'click');
  for (const [page, who] of [
    [alice, 'alice'],
    [bob, 'bob'],
  ]) {
    await assertInbox(page, [first, second], who);
    // chat.js takes pushwire's ids as its cursor and polls on from them.
    await page.waitForFunction((id) => updater.cursor === id, second.id);
    assert.ok(
      page.exchanges.some((e) => e.path === '/a/message/updates' && e.form.cursor === first.id && e.status === 200),
      `${who} never polled from ${first.id}: ${JSON.stringify(page.exchanges)}`,
    );
  }
  // The message's html is pushwire's rendering, inserted by chat.js as it is.
  assert.equal(await alice.getAttribute('#inbox .message a', 'href'), 'https://example.com/docs');

  await h.screenshot(alice, 'tornado-chat-alice');
  await h.screenshot(bob, 'tornado-chat-bob');
  for (const [page, who] of [
    [alice, 'alice'],
    [bob, 'bob'],
  ]) {
    const posts = page.exchanges.filter((e) => e.path === '/a/message/new');
    assert.equal(posts.length, 1, `${who} posted once: ${JSON.stringify(posts)}`);
    assert.deepEqual(
      page.exchanges.filter((e) => e.status !== 200),
      [],
      `${who}: answers other than 200`,
    );
    assert.deepEqual(page.outside, [], `${who}: requests that left loopback`);
    h.assertNoErrors(page);
  }
  await alice.context().close();
  await bob.context().close();
});

test("an idle chat.js page still shows the next message at once: idle answers are not errors to it", { timeout: 60000 }, async () => {
  const alice = await openTornadoChat('alice');
  const bob = await openTornadoChat('bob');
  // Several holds without a message: were an idle answer an error to chat.js, its wait
  // would have doubled with each (1, 2, 4, 8 s).
  const idle = (n) => alice.exchanges.filter((e) => e.path === '/a/message/updates').length >= n;
  const began = Date.now();
  while (!idle(5) && Date.now() - began < 20000) await new Promise((r) => setTimeout(r, 100));
  assert.ok(idle(5), `alice polled ${alice.exchanges.length} times in 20 s with a hold of ${HOLD_S} s`);

  const sent = Date.now();
  const message = await post(bob, 'after a quiet spell', 'enter');
  // The first poll (without a cursor) brought the history of the test before: the new
  // message is the last one shown.
  await alice.locator(`[id="m${message.id}"]`).waitFor({ state: 'visible' });
  const shownAfterMs = Date.now() - sent;
  const shown = await alice.$$eval('#inbox .message', (nodes) => nodes.map((n) => n.id));
  assert.equal(shown.at(-1), `m${message.id}`, `alice's #inbox: ${shown}`);
  // Within one hold and chat.js's slide-in, not after a back-off.
  assert.ok(shownAfterMs < 2 * HOLD_S * 1000 + 1000, `shown ${shownAfterMs} ms after it was sent`);
  h.assertNoErrors(alice);
  h.assertNoErrors(bob);
  await alice.context().close();
  await bob.context().close();
});
