// The registry: every transport the page offers, in the order of its toggle. Race
// mode, Under the hood and the round-trip figures are built from it. A new transport:
//   1. one file beside this one: a class over `Transport` (base.js) with a static `id`
//      and `label`, and its `connect()`;
//   2. one line here, and its file in the server's list of static files
//      (STATIC_FILES in src/transport/page.rs);
//   3. its toggle button in index.html (a radio `t-<id>` and its label), its colour in
//      style.css (a `--<id>` variable, `.t-<id>` and `body[data-transport='<id>']`),
//      its place in Auto's order (auto.js, ORDER) and its short name for the
//      round-trip figures (roundtrip.js, SHORT).
import { LongPoll } from './long-poll.js';
import { Sse } from './sse.js';
import { WebSocketTransport } from './websocket.js';
import { WebTransportTransport } from './webtransport.js';

export const TRANSPORTS = [LongPoll, WebSocketTransport, Sse, WebTransportTransport];

/** Transport ids, in toggle order: 'long-poll', 'websocket', 'sse', 'webtransport'. */
export const NAMES = TRANSPORTS.map((transport) => transport.id);

/** id → label shown on the page. */
export const LABEL = Object.fromEntries(TRANSPORTS.map((transport) => [transport.id, transport.label]));
