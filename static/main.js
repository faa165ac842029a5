// pushwire's browser client: one chat carried by long-poll, WebSocket, Server-Sent
// Events or WebTransport, with the numbers that tell them apart. This entry module
// wires the page:
//
//   transports/   one client per transport behind a shared base (backoff, cursor, counters)
//   auto.js       "Auto": the transport this network lets through, found by trying
//   inbox.js      the conversation: dedup by id, order by seq, server runs (epochs)
//   roundtrip.js  how long this page's own messages take to come back
//   race.js       race mode: every transport at once, who delivered first
//   compare.js    what the arrivals allow the page to say (noise, two levels)
//   guide.js      the guided first minute: a narrated race, step by step
//   publish.js    POST /a/message/new, in-band frames, bursts
//   render.js     the status line, "Under the hood" and the charts
//   timeline.js   the wire timeline: each transport's requests and frames as they happen
//
// Switching transports stops the old client and starts the new one from the inbox's
// newest id, so nothing is lost and nothing is shown twice. Race mode runs them all.
// `?transport=auto|long-poll|websocket|sse|webtransport` picks the transport (Auto for a
// first visit); the last choice is kept across reloads; `document.body.dataset.transport`
// names the transport carrying the chat, `dataset.choice` what the reader chose.
// `?order=none` makes WebTransport sessions unordered (a stream per message).
import { Auto } from './auto.js';
import { Guide } from './guide.js';
import { Inbox, parseId } from './inbox.js';
import { measureRoundTrip, xsrfToken } from './net.js';
import { BURST_MAX, Publisher } from './publish.js';
import { Race } from './race.js';
import { renderCharts, renderHood, renderStatus } from './render.js';
import { RoundTrips } from './roundtrip.js';
import { Timeline } from './timeline.js';
import { LABEL, NAMES, TRANSPORTS } from './transports/index.js';

/** Where the reader's last choice of transport is kept. */
const CHOICE_KEY = 'pushwire.transport';
/** The choices the toggle offers. */
const CHOICES = ['auto', ...NAMES];

const $ = (selector) => document.querySelector(selector);
const inbox = new Inbox($('#inbox'));
const roundTrips = new RoundTrips(inbox, () => {
  chartsDirty = true;
  scheduleRender();
});
const race = new Race($('#race-table tbody'), $('#race-summary tbody'), $('#race-verdicts'));
const raceHint = $('#race-hint');
const RACE_HINT_OFF = raceHint.textContent;
const RACE_HINT_ON =
  'Subscribed over every transport. Each row is one message: “first” arrived first, ' +
  'the others show how far behind it they arrived.';
/** The round trip to the server (ms, or null), measured once: what "a round trip late" means. */
const roundTrip = measureRoundTrip();
roundTrip.then((ms) => {
  race.roundTrip = ms;
  scheduleRender();
});

/** 'auto' or a transport's id: what the reader chose. */
let choice = chosenTransport();
/** The transport carrying the chat (in race mode, the one the status line follows). */
let active = choice === 'auto' ? NAMES[0] : choice;
let raceMode = false;
/** What Auto is doing ('trying', 'settled') and why, for the status line. */
let autoState = { state: 'settled', text: '' };

const sink = {
  message: onMessage,
  gap: onGap,
  live: onLive,
  failed: onFailed,
  refused: onRefused,
  changed: scheduleRender,
};
const transports = Object.fromEntries(TRANSPORTS.map((Client) => [Client.id, new Client(sink)]));
const publisher = new Publisher(roundTrips, transports.websocket);
new Timeline($('#timeline'), transports);
/** Requests each transport had made when Auto began a trial of it: a trial that Auto
 *  gives up on is not the transport's own use, and is not counted as such (the status
 *  line says what the trial met). */
const requestsBeforeTrial = {};
const auto = new Auto(
  (name) => {
    requestsBeforeTrial[name] = transports[name].stats.requests;
    carry(name);
  },
  (state, text) => {
    autoState = { state, text };
    document.body.dataset.auto = state;
    render();
  },
  (name) => {
    transports[name].stats.requests = requestsBeforeTrial[name];
    scheduleRender();
  },
);

function onLive(transport) {
  auto.live(transport);
}

/** A failure during Auto's trial counts against that transport; a settled transport
 *  that keeps failing (the network changed) sends Auto back to choosing. */
function onFailed(transport) {
  auto.failed(transport);
  const stuck = choice === 'auto' && !auto.choosing && transport.name === active && transport.failuresSinceLive >= 3;
  if (stuck) auto.rechoose();
}

function onMessage(transport, message) {
  const at = performance.now();
  const first = roundTrips.arrived(message, transport.name, at);
  if (inbox.add(message, { label: LABEL[transport.name], at }) === 'stale') return;
  if (first) {
    roundTrips.measureArrival(message, transport.name);
    if (raceMode) race.arrival(message, transport.name, at);
  }
  scheduleRender();
}

/** An in-band publish refused (`{"error": …}`): said under the form, and, when the
 *  server says how long (publishing too fast), every send waits that long first. */
function onRefused(transport, error) {
  const seconds = Number(error.retry_after);
  if (Number.isFinite(seconds) && seconds >= 0) publisher.pause(seconds);
  showComposeError(`Not sent (${error.message ?? error.reason}).`);
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

// --- choosing the transport and race mode ------------------------------------------

/** `?transport=` if it names a choice, else the reader's last choice, else Auto. */
function chosenTransport() {
  const asked = new URLSearchParams(location.search).get('transport');
  if (CHOICES.includes(asked)) return asked;
  if (asked !== null) console.warn(`unknown ?transport=${asked}; choose one of ${CHOICES.join(', ')}`);
  const stored = storage(() => localStorage.getItem(CHOICE_KEY));
  return CHOICES.includes(stored) ? stored : 'auto';
}

/** Keeps `name` for the next visit, and in the address if the address names one. */
function rememberChoice(name) {
  storage(() => localStorage.setItem(CHOICE_KEY, name));
  const url = new URL(location.href);
  if (url.searchParams.has('transport')) {
    url.searchParams.set('transport', name);
    history.replaceState(history.state, '', url);
  }
}

/** Storage may be refused (private modes, policies); the page works without it. */
function storage(use) {
  try {
    return use();
  } catch {
    return null;
  }
}

function running() {
  return raceMode ? NAMES : [active];
}

/** The reader picked `next` ('auto' or a transport) on the toggle. */
function choose(next) {
  if (next === choice) return;
  choice = next;
  document.body.dataset.choice = next;
  rememberChoice(next);
  if (next === 'auto') {
    auto.choose();
  } else {
    auto.cancel();
    document.body.dataset.auto = 'off';
    carry(next);
  }
}

/** Makes `name` the transport that carries the chat, from the newest message shown
 *  (or older, where the previous transport may still owe messages: `handover`). */
function carry(name) {
  const previous = active;
  active = name;
  document.body.dataset.transport = name;
  if (!raceMode) {
    if (previous !== name) transports[previous].stop();
    const from = transports[previous].handover(inbox.lastId);
    if (previous !== name || !transports[name].running) transports[name].start(from);
  }
  chartsDirty = true;
  render();
}

function setRace(on) {
  raceMode = on;
  document.body.dataset.race = on ? 'on' : 'off';
  for (const name of NAMES) {
    if (name === active) continue;
    if (on) transports[name].start(inbox.lastId);
    else transports[name].stop();
  }
  raceHint.textContent = on ? RACE_HINT_ON : RACE_HINT_OFF;
  // Every transport runs in race mode: there is nothing for the toggle to pick.
  const toggle = $('#transport-toggle');
  toggle.disabled = on;
  if (on) toggle.setAttribute('aria-describedby', 'toggle-note');
  else toggle.removeAttribute('aria-describedby');
  $('#toggle-note').hidden = !on;
  chartsDirty = true;
  render();
}

// --- publishing ---------------------------------------------------------------------

const composeForm = $('#compose');
const bodyInput = $('#body');
const inbandBox = $('#inband');
const composeError = $('#compose-error');

function showComposeError(text) {
  composeError.textContent = text;
  composeError.hidden = !text;
}

composeForm.addEventListener('submit', async (event) => {
  event.preventDefault();
  const body = bodyInput.value;
  if (!body.trim()) return;
  // While the server's wait lasts (this page published too fast), say so.
  let paced = false;
  const waiting = () => {
    const wait = Math.ceil(publisher.pausedFor() / 1000);
    if (!wait) return;
    paced = true;
    showComposeError(`Sending in ${wait} s: the server asked this page to slow down.`);
  };
  showComposeError('');
  waiting();
  bodyInput.value = '';
  if (inbandBox.checked && running().includes('websocket')) {
    if (await publisher.sendInBand(body)) {
      if (paced) showComposeError('');
      return;
    }
    showComposeError('The WebSocket is not open; sent with a POST instead.');
  }
  try {
    await publisher.publish(body, waiting);
    if (paced) showComposeError('');
  } catch (error) {
    showComposeError(`Not sent (${error.message}).`);
    if (!bodyInput.value) bodyInput.value = body;
  }
});

$('#burst').addEventListener('click', async () => {
  const button = $('#burst');
  const progress = $('#burst-progress');
  const count = Math.min(BURST_MAX, Math.max(1, Math.floor(Number($('#burst-count').value) || 1)));
  button.disabled = true;
  const { failures } = await publisher.burst(count, (done) => {
    // While the server's wait lasts (one was refused for its pace), say so.
    const wait = Math.ceil(publisher.pausedFor() / 1000);
    const pace = wait ? ` · publishing too fast: waiting ${wait} s, as the server asked` : '';
    progress.textContent = `${done}/${count} sent${pace}`;
  });
  progress.textContent = failures ? `${count - failures}/${count} sent, ${failures} failed` : `${count} sent`;
  button.disabled = false;
});

// --- rendering ----------------------------------------------------------------------

let renderTimer = null;
let chartsDirty = true;
let countdownTimer = null;

function scheduleRender() {
  if (renderTimer === null) renderTimer = setTimeout(render, 50);
}

function render() {
  clearTimeout(renderTimer);
  renderTimer = null;
  const view = { active, raceMode, running: running(), transports, auto: choice === 'auto' ? autoState : null };
  renderStatus($('#status'), $('#status-text'), view);
  renderHood($('#hood'), view);
  race.renderSummary();
  if (chartsDirty) renderCharts($('#charts'), roundTrips.samples, view.running);
  chartsDirty = false;
  // A countdown to the next retry while any running transport waits.
  const waiting = view.running.some((name) => transports[name].state === 'waiting');
  if (waiting && countdownTimer === null) countdownTimer = setInterval(render, 100);
  if (!waiting && countdownTimer !== null) {
    clearInterval(countdownTimer);
    countdownTimer = null;
  }
  inbandBox.disabled = !transports.websocket.open;
}

// --- start ----------------------------------------------------------------------------

for (const radio of document.querySelectorAll('input[name="transport"]')) {
  radio.checked = radio.value === choice;
  radio.addEventListener('change', () => {
    if (radio.checked) choose(radio.value);
  });
}
$('#race').addEventListener('change', (event) => setRace(event.target.checked));
new Guide(
  { button: $('#guide-start'), state: $('#guide-state'), steps: $('#guide-steps'), nearby: $('#guide-nearby') },
  {
    race,
    publisher,
    roundTrip,
    startRace() {
      if (raceMode) return;
      $('#race').checked = true;
      setRace(true);
    },
    racing() {
      const names = running();
      return {
        settled: names.every((name) => ['live', 'unavailable'].includes(transports[name].state)),
        live: names.filter((name) => transports[name].state === 'live'),
      };
    },
  },
);
composeForm.elements._xsrf.value = xsrfToken();

document.body.dataset.transport = active;
document.body.dataset.choice = choice;
document.body.dataset.auto = choice === 'auto' ? 'trying' : 'off';
if (choice === 'auto') auto.choose();
else transports[active].start(null);
// The race switch may have been restored by the browser (back/forward).
if ($('#race').checked) setRace(true);
render();

// Leaving the page closes its connections; coming back to it from the back/forward
// cache resumes them from where the page left off.
window.addEventListener('pagehide', () => {
  for (const name of NAMES) transports[name].stop();
});
window.addEventListener('pageshow', (event) => {
  if (!event.persisted) return;
  for (const name of running()) transports[name].start(transports[name].cursor ?? inbox.lastId);
  render();
});
// When the network comes back, or a hidden tab is shown again with a dead connection,
// a transport waiting out its backoff tries at once.
function reconnectWaiting() {
  for (const name of running()) if (transports[name].state === 'waiting') transports[name].reconnectNow();
}
window.addEventListener('online', reconnectWaiting);
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') reconnectWaiting();
});
