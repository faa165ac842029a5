//! `GET /a/message/events[?cursor=ID]`: Server-Sent Events.
//!
//! One long `text/event-stream` response. Each message is one event,
//!
//! ```text
//! id: 3f9c…-42
//! data: {"id":"3f9c…-42","body":"hi","html":"…","seq":42,"time":…}
//!
//! ```
//!
//! pre-encoded once per publish (`Message::sse_event`), so every subscriber gets the
//! same bytes. A browser's `EventSource` reconnects by itself and sends the last `id:`
//! it saw as `Last-Event-ID`; we resume from that (or from `?cursor=`).
//!
//! - The stream opens with `retry: 1000` and an `event: ready` (`data: {}`), so the
//!   headers and first bytes leave at once and a client can tell that events come
//!   through (a buffering proxy opens the stream and then holds every event, `ready`
//!   included); a keep-alive comment follows each quiet period (default 15 s) so
//!   proxies do not cut an idle stream.
//! - `Cache-Control: no-cache` and `X-Accel-Buffering: no` keep caches and nginx from
//!   holding events back; no compression layer wraps this route.
//! - Gap notices are events of their own type: `event: gap` / `id: <cursor>` /
//!   `data: {"reason": …, "missed": N|null, "cursor": …}`. Their `id:` moves the
//!   browser's `Last-Event-ID` past the gap, so a reconnect is not told it twice.
//! - The stream ends at server shutdown; `EventSource` then retries by itself.
//!
//! The response body sends the history itself, from its own subscription; then it
//! joins the fan-out (module `fanout`), whose task for all streams hands it each new
//! event: hyper asks the body for the next chunk whenever the socket can take more,
//! and several events that are ready together go out as one chunk. hyper buffers at
//! most `--outbound-limit` bytes (1 MiB) of it, and at most as much again waits in the
//! body for hyper; beyond that the fan-out lets go, and the body catches up from the
//! bus by itself when hyper asks again. One watchdog task for all streams looks, once
//! per `--slow-consumer-timeout` (5 s), for a body that has had something to send but
//! was not asked for it during a whole timeout: that client is a slow consumer. Its
//! stream's next chunk is `event: slow` / `data: {"reason":"slow_consumer"}`, and then
//! the stream ends; if hyper does not take even that within a grace period, the
//! connection is cut. The client reconnects with `Last-Event-ID` and loses nothing
//! the history still holds.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::BytesMut;
use futures::stream::{self, Stream, StreamExt};
use tokio::time::{Instant, Sleep, sleep};

use super::fanout::{Fanout, Outbox, Release, Taken, encode};
use super::{CursorQuery, NOT_TEXT, SubscriberSlot};
use crate::AppState;
use crate::bus::{Gap, Subscription};
use crate::metrics::{SubscriberGuard, Transport, TransportMetrics};
use crate::server::{Closer, Connection};

/// Sent first: flushes the headers, tells the browser to retry after 1 s if cut, and
/// proves to the client that events reach it.
const OPENING: &[u8] = b"retry: 1000\nevent: ready\ndata: {}\n\n";
/// Sent after each quiet keep-alive period.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";
/// The last event to a slow consumer.
const SLOW: &[u8] = b"event: slow\ndata: {\"reason\":\"slow_consumer\"}\n\n";
/// How long a slow consumer gets to read its last events before the connection is cut.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(2);
/// Events that are ready together are joined into one chunk up to this size.
const BATCH_BYTES: usize = 64 * 1024;

/// The SSE endpoint, for [`super::routes`] to merge, with the watchlist of its open
/// streams (this module's own state: no other transport needs it).
pub fn routes() -> Router<AppState> {
    let watchlist = Arc::new(Watchlist::default());
    Router::new().route("/a/message/events", get(events)).layer(Extension(watchlist))
}

async fn events(
    State(state): State<AppState>,
    Extension(watchlist): Extension<Arc<Watchlist>>,
    Extension(fanout): Extension<Arc<Fanout>>,
    slot: SubscriberSlot,
    connection: Connection,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> Response {
    // A header that is not text (bytes beyond ASCII) is a malformed cursor, not none.
    let last_event_id = headers.get("last-event-id").map(|v| v.to_str().unwrap_or(NOT_TEXT));
    let cursor = last_event_id.or(query.cursor.as_deref()).filter(|c| !c.is_empty());
    let subscription = state.bus.subscribe(cursor).await;
    let metrics = state.metrics.transport(Transport::Sse).clone();
    let progress = Arc::new(Progress::new());
    watchlist.watch(&state, &progress, connection.closer());
    let reader = Reader {
        _subscriber: metrics.subscriber(),
        _slot: slot,
        keepalive: Box::pin(sleep(state.config.sse_keepalive)),
        last_sent: Instant::now(),
        _connection: connection,
        outbox: Arc::new(Outbox::sse(subscription.position())),
        subscription: Some(subscription),
        fanout,
        state,
        metrics,
        progress,
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        Body::from_stream(body(reader)),
    )
        .into_response()
}

/// What the body and its watchdog share.
#[derive(Debug)]
struct Progress {
    /// The origin of `asked_at`, on tokio's clock (so paused test time applies).
    start: Instant,
    /// Milliseconds after `start` at which hyper last asked the body for a chunk.
    asked_at: AtomicU64,
    /// The body is waiting for something to send: the client has everything.
    caught_up: AtomicBool,
    /// Set by the watchdog: the body's next chunk is the slow notice, its last.
    slow: AtomicBool,
}

impl Progress {
    fn new() -> Self {
        Progress {
            start: Instant::now(),
            asked_at: AtomicU64::new(0),
            caught_up: AtomicBool::new(false),
            slow: AtomicBool::new(false),
        }
    }

    /// Milliseconds from `start` to `instant`.
    fn since_start(&self, instant: Instant) -> u64 {
        instant.saturating_duration_since(self.start).as_millis() as u64
    }
}

/// The state of one stream's body.
struct Reader {
    /// Where the events come from while the stream catches up (the history at first):
    /// then it joins the fan-out, and they come through `outbox`.
    subscription: Option<Subscription>,
    outbox: Arc<Outbox>,
    fanout: Arc<Fanout>,
    state: AppState,
    metrics: TransportMetrics,
    progress: Arc<Progress>,
    /// Fires a keep-alive period after the last chunk: the timer is set once and moved
    /// on only when it fires, not at every delivery.
    keepalive: Pin<Box<Sleep>>,
    last_sent: Instant,
    _connection: Connection,
    /// Hold the subscriber count and the slot for as long as the body lives.
    _subscriber: SubscriberGuard,
    _slot: SubscriberSlot,
}

impl Reader {
    /// The next chunk: events (several joined when they are ready together), a
    /// keep-alive, or `None` at shutdown or after the slow notice.
    async fn next(&mut self) -> Option<Bytes> {
        let mut now = Instant::now();
        let progress = &self.progress;
        progress.asked_at.store(progress.since_start(now), Ordering::Relaxed);
        if progress.slow.load(Ordering::Acquire) {
            return None;
        }
        loop {
            if let Some(chunk) = self.catch_up() {
                self.last_sent = now;
                return Some(chunk);
            }
            // Joined: what the fan-out handed over, or why it let go.
            match self.outbox.take() {
                Some(Taken::Chunk(chunk)) => {
                    self.last_sent = now;
                    return Some(chunk);
                }
                Some(Taken::Released(Release::Behind)) => {
                    let position = self.outbox.position().to_string();
                    self.subscription = Some(self.state.bus.subscribe(Some(&position)).await);
                    continue;
                }
                Some(Taken::Released(Release::Ended)) => return None,
                None => {}
            }
            match self.wait().await {
                Waited::Woken => now = Instant::now(),
                Waited::KeepAlive => return Some(Bytes::from_static(KEEPALIVE)),
            }
        }
    }

    /// While catching up: what the subscription has ready, joined into one chunk; when
    /// it has nothing more, the stream joins the fan-out instead.
    fn catch_up(&mut self) -> Option<Bytes> {
        let subscription = self.subscription.as_mut()?;
        let Some(first) = subscription.try_next() else {
            self.subscription = None;
            self.fanout.join(&self.state, &self.outbox);
            return None;
        };
        let mut chunk = BytesMut::new();
        let mut next = Some(first);
        while let Some(delivery) = next {
            let (event, position) = encode(delivery, &self.metrics, |m| &m.sse_event, gap_event);
            chunk.extend_from_slice(&event);
            self.outbox.sent(position);
            // Whatever else is ready goes in the same chunk: one write for a burst.
            next = if chunk.len() < BATCH_BYTES { subscription.try_next() } else { None };
        }
        Some(chunk.freeze())
    }

    /// Waits for the fan-out, or for a keep-alive period to pass since the last chunk.
    async fn wait(&mut self) -> Waited {
        self.progress.caught_up.store(true, Ordering::Relaxed);
        let waited = self.wait_caught_up().await;
        self.progress.caught_up.store(false, Ordering::Relaxed);
        waited
    }

    async fn wait_caught_up(&mut self) -> Waited {
        let period = self.state.config.sse_keepalive;
        loop {
            tokio::select! {
                // The fan-out first: woken by it, the body does not poll the timer
                // again. (At shutdown the fan-out lets go with `Ended`; a connection
                // closed by the server is dropped by its task, body and all.)
                biased;
                () = self.outbox.woken() => return Waited::Woken,
                () = self.keepalive.as_mut() => {
                    let due = self.last_sent + period;
                    let now = Instant::now();
                    if due <= now {
                        self.last_sent = now;
                        self.keepalive.as_mut().reset(now + period);
                        return Waited::KeepAlive;
                    }
                    self.keepalive.as_mut().reset(due); // something was sent meanwhile
                }
            }
        }
    }
}

/// A gap notice's event: its `id:` moves the browser's `Last-Event-ID` past the gap.
fn gap_event(gap: &Gap) -> Bytes {
    Bytes::from(format!("event: gap\nid: {}\ndata: {}\n\n", gap.resume, gap.to_json()))
}

/// What the body waited for.
enum Waited {
    /// The fan-out handed over events, or let go.
    Woken,
    KeepAlive,
}

/// A stream that ends leaves its shard, which then drops its outbox.
impl Drop for Reader {
    fn drop(&mut self) {
        self.fanout.leave(&self.outbox);
    }
}

/// The response body: the opening comment, then the reader's chunks, then the slow
/// notice if the watchdog called for it.
fn body(reader: Reader) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let opening = stream::once(async { Bytes::from_static(OPENING) });
    let chunks = stream::unfold(Some(reader), |reader| async move {
        let mut reader = reader?;
        match reader.next().await {
            Some(chunk) => Some((chunk, Some(reader))),
            None if reader.progress.slow.load(Ordering::Acquire) => Some((Bytes::from_static(SLOW), None)),
            None => None,
        }
    });
    opening.chain(chunks).map(Ok)
}

/// The open streams, for the one watchdog task that looks for slow consumers among
/// them. A stream is dropped from the list when its body is gone.
#[derive(Debug, Default)]
struct Watchlist {
    streams: Mutex<Vec<Watched>>,
    /// Set when the watchdog task has been started (with the first stream).
    started: AtomicBool,
}

#[derive(Debug)]
struct Watched {
    progress: Weak<Progress>,
    closer: Closer,
}

impl Watchlist {
    /// Puts a stream on the list; the first one starts the watchdog.
    fn watch(self: &Arc<Self>, state: &AppState, progress: &Arc<Progress>, closer: Closer) {
        let watched = Watched { progress: Arc::downgrade(progress), closer };
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).push(watched);
        if !self.started.swap(true, Ordering::AcqRel) {
            state.tasks.spawn(watchdog(state.clone(), self.clone()));
        }
    }

    /// Flags the streams that were not asked for a chunk they had ready for a whole
    /// `timeout`, and returns them; forgets the streams whose body is gone.
    fn sweep(&self, timeout: Duration) -> Vec<Watched> {
        let timeout = timeout.as_millis() as u64;
        let mut slow = Vec::new();
        self.streams.lock().unwrap_or_else(PoisonError::into_inner).retain_mut(|watched| {
            let Some(progress) = watched.progress.upgrade() else { return false };
            let waiting =
                progress.since_start(Instant::now()).saturating_sub(progress.asked_at.load(Ordering::Relaxed));
            if progress.caught_up.load(Ordering::Relaxed) || waiting < timeout {
                return true;
            }
            progress.slow.store(true, Ordering::Release);
            slow.push(Watched { progress: watched.progress.clone(), closer: watched.closer.clone() });
            false
        });
        slow
    }
}

/// Looks over every open stream once per slow-consumer timeout until shutdown. A
/// flagged stream's body sends the slow notice and ends; if it is still there after
/// the grace period (hyper never took the notice), its connection is cut.
async fn watchdog(state: AppState, watchlist: Arc<Watchlist>) {
    let timeout = state.config.slow_consumer_timeout;
    let metrics = state.metrics.transport(Transport::Sse);
    loop {
        tokio::select! {
            () = sleep(timeout) => {}
            () = state.shutdown.cancelled() => return,
        }
        for stream in watchlist.sweep(timeout) {
            metrics.slow_disconnect();
            let shutdown = state.shutdown.clone();
            state.tasks.spawn(async move {
                tokio::select! {
                    () = sleep(SLOW_CONSUMER_GRACE) => {}
                    () = shutdown.cancelled() => return,
                }
                if stream.progress.upgrade().is_some() {
                    stream.closer.close();
                }
            });
        }
    }
}
