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
//! - The stream opens with `retry: 1000` and a comment, so the headers and first bytes
//!   pass any buffering at once; a keep-alive comment follows each quiet period
//!   (default 15 s) so proxies do not cut an idle stream.
//! - `Cache-Control: no-cache` and `X-Accel-Buffering: no` keep caches and nginx from
//!   holding events back; no compression layer wraps this route.
//! - Gap notices are events of their own type: `event: gap` / `id: <cursor>` /
//!   `data: {"reason": …, "missed": N|null, "cursor": …}`. Their `id:` moves the
//!   browser's `Last-Event-ID` past the gap, so a reconnect is not told it twice.
//! - A client that leaves `--outbound-limit` bytes (1 MiB) unread for
//!   `--slow-consumer-timeout` (5 s) receives what was already queued, then
//!   `event: slow` / `data: {"reason":"slow_consumer"}`, and the stream ends (or, if it
//!   does not read even that within a grace period, the connection is cut). It reconnects with `Last-Event-ID` and loses nothing the
//!   history still holds.
//! - The stream ends at server shutdown; `EventSource` then retries by itself.
//!
//! Two halves: a pump task moves deliveries from the subscription into a bounded
//! [`outbox`](super::outbox), and the response body drains it as hyper writes.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::stream::{self, Stream};
use tokio::time::{self, sleep};

use super::outbox::{Inbox, Outbox, outbox};
use super::{CursorQuery, SubscriberSlot};
use crate::AppState;
use crate::bus::{Delivery, Subscription};
use crate::metrics::{Transport, TransportMetrics};
use crate::server::ConnectionCloser;

/// Sent first: flushes the headers and tells the browser to retry after 1 s if cut.
const OPENING: &[u8] = b"retry: 1000\n: connected\n\n";
/// Sent after each quiet keep-alive period.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";
/// The last event to a slow consumer.
const SLOW: &[u8] = b"event: slow\ndata: {\"reason\":\"slow_consumer\"}\n\n";
/// How long a slow consumer gets to read its last events before the connection is cut.
const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(2);

pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/events", get(events))
}

/// One chunk of the stream.
struct Chunk {
    bytes: Bytes,
    /// When the message it carries was created (none for comments and notices).
    created: Option<Instant>,
    /// The body ends after this chunk.
    last: bool,
}

impl Chunk {
    fn notice(bytes: Bytes) -> Self {
        Chunk { bytes, created: None, last: false }
    }
}

async fn events(
    State(state): State<AppState>,
    slot: SubscriberSlot,
    // Absent when the app is driven without `server::serve` (router tests).
    closer: Option<Extension<ConnectionCloser>>,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let cursor = last_event_id.or(query.cursor.as_deref()).filter(|c| !c.is_empty());
    let subscription = state.bus.subscribe(cursor).await;
    let metrics = state.metrics.transport(Transport::Sse);
    let (outbox, inbox) = outbox(state.config.outbound_limit);
    outbox.force(Chunk::notice(Bytes::from_static(OPENING)), OPENING.len());
    let closer = closer.map(|Extension(closer)| closer);
    state.tasks.spawn(pump(subscription, outbox, state.clone(), metrics.clone(), closer, slot));
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/event-stream")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::HeaderName::from_static("x-accel-buffering"), HeaderValue::from_static("no")),
        ],
        Body::from_stream(body(inbox, metrics.clone())),
    )
        .into_response()
}

/// Moves deliveries and keep-alives into the outbox until the client leaves, falls
/// too far behind, or the server shuts down. Holds the subscriber slot meanwhile.
async fn pump(
    mut subscription: Subscription,
    outbox: Outbox<Chunk>,
    state: AppState,
    metrics: TransportMetrics,
    closer: Option<ConnectionCloser>,
    _slot: SubscriberSlot,
) {
    let _subscriber = metrics.subscriber();
    let keepalive = state.config.sse_keepalive;
    // One timer for the keep-alive, re-armed when it fires rather than after every
    // delivery: a busy stream then costs no timer work per message.
    let mut last_sent = time::Instant::now();
    let quiet = sleep(keepalive);
    tokio::pin!(quiet);
    loop {
        let chunk = tokio::select! {
            delivery = subscription.next() => match delivery {
                Some(Delivery::Message(message)) => {
                    Chunk { bytes: message.sse_event.clone(), created: Some(message.created), last: false }
                }
                Some(Delivery::Gap(gap)) => {
                    metrics.gap(gap.reason);
                    Chunk::notice(Bytes::from(format!("event: gap\nid: {}\ndata: {}\n\n", gap.resume, gap.to_json())))
                }
                None => return,
            },
            () = &mut quiet => {
                let due = last_sent + keepalive;
                if time::Instant::now() < due {
                    quiet.as_mut().reset(due);
                    continue;
                }
                quiet.as_mut().reset(time::Instant::now() + keepalive);
                Chunk::notice(Bytes::from_static(KEEPALIVE))
            }
            () = outbox.closed() => return, // the client went away and the body was dropped
            () = state.shutdown.cancelled() => return,
        };
        last_sent = time::Instant::now();
        let size = chunk.bytes.len();
        if outbox.send(chunk, size, state.config.slow_consumer_timeout).await.is_err() {
            metrics.slow_disconnect();
            outbox.force(Chunk { bytes: Bytes::from_static(SLOW), created: None, last: true }, SLOW.len());
            tokio::select! {
                () = outbox.closed() => {}
                () = sleep(SLOW_CONSUMER_GRACE) => closer.iter().for_each(ConnectionCloser::close),
            }
            return;
        }
    }
}

/// The response body: the outbox's chunks as hyper asks for them. It ends after a
/// `last` chunk, or when the pump has finished and everything queued was sent;
/// dropping it (at the end, or when the client goes away) tells the pump.
fn body(inbox: Inbox<Chunk>, metrics: TransportMetrics) -> impl Stream<Item = Result<Bytes, Infallible>> {
    stream::unfold(Some((inbox, metrics)), |state| async move {
        let (mut inbox, metrics) = state?;
        let chunk = inbox.recv().await?;
        if let Some(created) = chunk.created {
            metrics.delivered(created.elapsed());
        }
        let next = (!chunk.last).then_some((inbox, metrics));
        Some((Ok(chunk.bytes), next))
    })
}
