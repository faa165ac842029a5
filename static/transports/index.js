// The registry: every transport the page offers, in the order of its toggle. A new
// transport is one file beside this one and one line here.
import { LongPoll } from './long-poll.js';
import { Sse } from './sse.js';
import { WebSocketTransport } from './websocket.js';

export const TRANSPORTS = [LongPoll, WebSocketTransport, Sse];

/** Transport ids, in toggle order: 'long-poll', 'websocket', 'sse'. */
export const NAMES = TRANSPORTS.map((transport) => transport.id);

/** id → label shown on the page. */
export const LABEL = Object.fromEntries(TRANSPORTS.map((transport) => [transport.id, transport.label]));
