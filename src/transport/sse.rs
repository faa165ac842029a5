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
//! - A comment is sent as soon as the stream opens, so the headers and first bytes pass
//!   any buffering at once, and again after each quiet keep-alive period (default 15 s)
//!   so proxies do not cut an idle stream.
//! - `Cache-Control: no-cache` and `X-Accel-Buffering: no` keep caches and nginx from
//!   holding events back; no compression layer wraps this route.
//! - Gap notices are events of their own type, without an `id:` (so they never move
//!   the resume point): `event: gap` / `data: {"reason": …, "missed": N|null}`.
//! - The stream ends at server shutdown.

use std::convert::Infallible;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::StreamExt;
use futures::stream::{self, Stream};
use tokio::time::{Instant, sleep_until};

use super::CursorQuery;
use crate::AppState;
use crate::bus::{Delivery, Subscription};

/// Sent first: flushes the headers and tells the browser to retry after 1 s if cut.
const OPENING: &[u8] = b"retry: 1000\n: connected\n\n";
/// Sent after each quiet keep-alive period.
const KEEPALIVE: &[u8] = b": keep-alive\n\n";

pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/events", get(events))
}

async fn events(State(state): State<AppState>, headers: HeaderMap, Query(query): Query<CursorQuery>) -> Response {
    let last_event_id = headers.get("last-event-id").and_then(|v| v.to_str().ok());
    let cursor = last_event_id.or(query.cursor.as_deref()).filter(|c| !c.is_empty());
    let subscription = state.bus.subscribe(cursor).await;
    let body = Body::from_stream(event_stream(subscription, state));
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

/// The body: the opening comment, then one chunk per delivery or keep-alive, until
/// shutdown. hyper polls it only when the socket can take more, so a client that
/// stops reading stops the stream from pulling; its subscription falls behind and,
/// once the ring has moved past it, receives a gap notice instead of growing memory.
fn event_stream(subscription: Subscription, state: AppState) -> impl Stream<Item = Result<Bytes, Infallible>> {
    let keepalive = state.config.sse_keepalive;
    let opening = stream::once(async { Ok(Bytes::from_static(OPENING)) });
    let events = stream::unfold((subscription, state), move |(mut subscription, state)| async move {
        let chunk = tokio::select! {
            delivery = subscription.next() => match delivery? {
                Delivery::Message(message) => message.sse_event.clone(),
                Delivery::Gap(gap) => Bytes::from(format!("event: gap\ndata: {}\n\n", gap.to_json())),
            },
            () = sleep_until(Instant::now() + keepalive) => Bytes::from_static(KEEPALIVE),
            () = state.shutdown.cancelled() => return None,
        };
        Some((Ok(chunk), (subscription, state)))
    });
    opening.chain(events)
}
