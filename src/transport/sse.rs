//! `GET /a/message/events[?cursor=ID]`: Server-Sent Events.
//!
//! One `text/event-stream` response per client: each message is an event `id: <id>` /
//! `data: <json>`, encoded once per message and shared by every stream. A browser's
//! `EventSource` reconnects by itself and sends the last `id:` it saw as
//! `Last-Event-ID`; the stream resumes from that (or from `?cursor=`).
//!
//! - The stream opens with a `retry:` of its own, 1000 ms ± 50 % (so that browsers cut
//!   off together do not come back together), and an `event: ready` (`data:
//!   {"http":"2"}`, the HTTP version that carries the stream), so the
//!   headers and first bytes leave at once and a client can tell that events come
//!   through (a buffering proxy opens the stream and then holds every event, `ready`
//!   included); a keep-alive comment follows each quiet period (default 15 s) so
//!   proxies do not cut an idle stream.
//! - `Cache-Control: no-cache` and `X-Accel-Buffering: no` keep caches and nginx from
//!   holding events back; no compression layer wraps this route.
//! - Gap notices are events of their own type: `event: gap` / `id: <cursor>` /
//!   `data: {"reason": …, "missed": N|null, "cursor": …}`. Their `id:` moves the
//!   browser's `Last-Event-ID` past the gap, so a reconnect is not told it twice.
//! - A slow consumer's last event is `event: slow` / `data: {"reason":"slow_consumer"}`
//!   (the fan-out's policy); the stream then ends, and `EventSource` retries by itself.
//! - At a graceful stop the last event tells when to come back, a delay of the stream's
//!   own (module `reconnect`): `retry: <ms>` / `event: reconnect` / `data: {"reason":
//!   "server_restart","delay_ms":<ms>}`, then the stream ends; `EventSource` waits that
//!   `retry:` before it reconnects. When every subscriber slot is taken, a request is
//!   answered the same way (`"over_capacity"`) at once, holding no slot: `EventSource`
//!   shows no status of a refused request, and would not retry after one.
//!
//! hyper owns the socket and asks the body for the next chunk whenever it can take
//! more, so this transport's [`Sink`] never writes: the fan-out leaves the events in
//! the stream's outbox, and the body hands everything waiting there to hyper as one
//! chunk. hyper itself buffers up to `--outbound-limit` more, so a slow SSE client can
//! hold up to twice that in the server.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, Version, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{self, Stream, StreamExt};
use tokio::time::{Instant, Sleep, sleep};

use super::fanout::{Outbox, Release, Sink, Taken};
use super::reconnect::{self, Reconnect};
use super::{Resume, SubscriberSlot};
use crate::AppState;
use crate::bus::{Gap, ResumeFrom, Subscription, WireForm};
use crate::metrics::{Http, SubscriberGuard, Transport, TransportMetrics};
use crate::server::Connection;

/// Sent first: flushes the headers, tells the browser when to retry if cut (about a
/// second), and proves to the client that events reach it (saying which HTTP version
/// carries them).
fn opening(http: Http) -> Bytes {
    let retry = reconnect::sse_retry().as_millis();
    Bytes::from(format!("retry: {retry}\nevent: ready\ndata: {{\"http\":\"{}\"}}\n\n", http.as_str()))
}

/// The last event: when to come back, as `EventSource` reads it (`retry:`) and as the
/// page does (the event).
fn reconnect_event(reconnect: &Reconnect) -> Bytes {
    let retry = reconnect.delay.as_millis();
    Bytes::from(format!("retry: {retry}\nevent: reconnect\ndata: {}\n\n", reconnect.json()))
}
/// Sent after each quiet keep-alive period.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";
/// The last event to a slow consumer.
const SLOW: &[u8] = b"event: slow\ndata: {\"reason\":\"slow_consumer\"}\n\n";

/// A message as an event: `id:` and `data:` lines.
static EVENT: WireForm = WireForm::new(|message| {
    Bytes::from([b"id: ", message.id.as_bytes(), b"\ndata: ", &message.json, b"\n\n"].concat())
});

/// The SSE endpoint, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/events", get(events))
}

async fn events(
    State(state): State<AppState>,
    connection: Connection,
    version: Version,
    Resume(from): Resume,
) -> Response {
    let slot = match SubscriberSlot::take(&state) {
        Ok(slot) => slot,
        Err(reconnect) => {
            state.metrics.rejected("over_capacity");
            return event_stream(Body::from(reconnect_event(&reconnect)));
        }
    };
    let http = Http::of(version);
    let subscription = state.bus.subscribe_from(from).await;
    let metrics = state.metrics.transport(Transport::Sse).clone();
    let outbox = state.fanout.open(&state, EventStream, subscription.position(), connection.closer());
    let reader = Reader {
        _subscriber: metrics.subscriber(http),
        _slot: slot,
        keepalive: Box::pin(sleep(state.config.sse_keepalive)),
        last_sent: Instant::now(),
        _connection: connection,
        outbox,
        catching_up: Some(subscription),
        told: false,
        state,
        metrics,
    };
    event_stream(Body::from_stream(body(opening(http), reader)))
}

/// `body` as an event stream that nothing in between holds back.
fn event_stream(body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        body,
    )
        .into_response()
}

/// This transport's sink: its bytes wait in the outbox until hyper asks the body.
struct EventStream;

impl Sink for EventStream {
    const WRITES: bool = false;
    const TRANSPORT: Transport = Transport::Sse;

    fn form() -> &'static WireForm {
        &EVENT
    }

    /// A gap notice's event: its `id:` moves the browser's `Last-Event-ID` past the gap.
    fn gap(gap: &Gap) -> Bytes {
        Bytes::from(format!("event: gap\nid: {}\ndata: {}\n\n", gap.resume, gap.to_json()))
    }

    fn slow_notice() -> Bytes {
        Bytes::from_static(SLOW)
    }

    fn poll_write(&mut self, _: &mut Context<'_>, _: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Pending // hyper takes the bytes when it asks the body (`Outbox::take`)
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The state of one stream's body.
struct Reader {
    /// Where the events come from while the stream catches up (the history at first);
    /// then it joins the fan-out, which leaves them in `outbox`.
    catching_up: Option<Subscription>,
    outbox: Arc<Outbox<EventStream>>,
    state: AppState,
    metrics: TransportMetrics,
    /// Fires a keep-alive period after the last chunk: the timer is set once and moved
    /// on only when it fires, not at every delivery.
    keepalive: Pin<Box<Sleep>>,
    last_sent: Instant,
    /// The stream was told when to come back: it ends now.
    told: bool,
    _connection: Connection,
    /// Hold the subscriber count and the slot for as long as the body lives.
    _subscriber: SubscriberGuard,
    _slot: SubscriberSlot,
}

impl Reader {
    /// The next chunk: everything waiting in the outbox (events, and last the slow
    /// notice), a keep-alive, when to come back at a graceful stop, or `None` once the
    /// stream was let go for good.
    async fn next(&mut self) -> Option<Bytes> {
        if self.told {
            return None;
        }
        loop {
            self.state.fanout.keep_up(&self.state, &self.outbox, &mut self.catching_up, &self.metrics);
            match self.outbox.take() {
                Some(Taken::Chunk(chunk)) => {
                    self.last_sent = Instant::now();
                    return Some(chunk);
                }
                Some(Taken::Released(Release::Behind)) => {
                    let from = ResumeFrom::Cursor(self.outbox.position());
                    self.catching_up = Some(self.state.bus.subscribe_from(from).await);
                    continue;
                }
                Some(Taken::Released(Release::Ended)) if self.state.shutdown.is_cancelled() => {
                    self.told = true;
                    return Some(reconnect_event(&Reconnect::restart(&self.state.config)));
                }
                Some(Taken::Released(Release::Ended | Release::Slow)) => return None,
                None => {}
            }
            if !self.wait().await {
                return Some(Bytes::from_static(KEEPALIVE));
            }
        }
    }

    /// Waits for the fan-out (true), or for a keep-alive period to pass since the
    /// last chunk (false).
    async fn wait(&mut self) -> bool {
        let period = self.state.config.sse_keepalive;
        loop {
            tokio::select! {
                // The fan-out first: woken by it, the body does not poll the timer
                // again. (At shutdown the fan-out lets go with `Ended`; a connection
                // closed by the server is dropped by its task, body and all.)
                biased;
                () = self.outbox.woken() => return true,
                () = self.keepalive.as_mut() => {
                    let due = self.last_sent + period;
                    let now = Instant::now();
                    if due <= now {
                        self.last_sent = now;
                        self.keepalive.as_mut().reset(now + period);
                        return false;
                    }
                    self.keepalive.as_mut().reset(due); // something was sent meanwhile
                }
            }
        }
    }
}

/// A stream that ends leaves its shard, which then drops its outbox.
impl Drop for Reader {
    fn drop(&mut self) {
        self.state.fanout.leave(&self.outbox);
    }
}

/// The response body: the opening, then the reader's chunks.
fn body(opening: Bytes, reader: Reader) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let opening = stream::once(async { opening });
    let chunks = stream::unfold(reader, |mut reader| async move { reader.next().await.map(|chunk| (chunk, reader)) });
    opening.chain(chunks).map(Ok)
}
