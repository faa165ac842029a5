//! `GET /a/message/socket[?cursor=ID]`: WebSocket.
//!
//! After the upgrade the server sends `{"ready":{}}` (so a client can tell that frames
//! come through), the history after `cursor` (none: everything retained), then every
//! new message: one JSON message object per text frame, the same bytes for every
//! subscriber. The client may publish in-band with a text frame
//! `{"body": "…"}` (Tornado's WebSocket chat format); the message goes to every
//! transport, the sender included.
//!
//! - Browsers do not apply CORS to WebSockets, so the `Origin` of an upgrade must be
//!   this server's own (or in `--allow-origin`), or it gets 403. Clients without an
//!   `Origin` (not browsers) are let in, as Tornado does.
//! - Gap notices are control objects `{"gap": {"reason": …, "missed": N|null,
//!   "cursor": …}}`: they have no `id`, so clients tell them from messages; `cursor`
//!   is where to resume after the gap.
//! - Bad frames close the socket with a reason: not JSON 1007, no `body` or a body
//!   the bus refuses 1008, binary 1003, too large 1009. Shutdown closes with 1001.
//!   A frame that cannot be published because the shared bus (Redis) is down closes
//!   with 1013 ("try again later"). The reason text is the one a refused POST gets.
//! - A ping goes out every 25 s (default), which also keeps proxies from cutting the
//!   connection while idle; a peer that has not answered by the next ping is dead and
//!   its connection is dropped.
//! - At most `--outbound-limit` bytes (1 MiB) are buffered for a client: then they are
//!   flushed. A client that does not take them within `--slow-consumer-timeout` (5 s)
//!   gets close 1013 ("try again later", reason "slow consumer") after what was
//!   buffered; it reconnects with `?cursor=` and loses nothing the history still
//!   holds. If it does not read even that within a grace period, the TCP connection
//!   is cut.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::{MissedTickBehavior, interval, timeout};

use super::error::publish_reason;
use super::{AppError, CursorQuery, SubscriberSlot};
use crate::AppState;
use crate::bus::{Delivery, PublishError, Subscription};
use crate::metrics::{Transport, TransportMetrics};
use crate::server::Connection;

/// The read buffer each connection allocates up front. tungstenite's default is
/// 128 KiB, which at 10,000 idle sockets is 1.3 GB; chat frames are small, and the
/// buffer still grows for a large frame when one comes.
const READ_BUFFER: usize = 4 * 1024;
/// Frames are buffered up to this size before tungstenite writes: a burst goes out in
/// few syscalls.
const WRITE_BUFFER: usize = 16 * 1024;
/// How long a closing connection gets to send what is buffered and its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Close code for a slow consumer: "try again later", the client should reconnect.
const SLOW_CONSUMER: u16 = close_code::AGAIN;
/// The first frame: it has no `id`, so clients that only read messages skip it.
const READY: &str = r#"{"ready":{}}"#;

/// The WebSocket endpoint, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/socket", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    slot: SubscriberSlot,
    connection: Connection,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    check_origin(&headers, &state.config.allowed_origins)?;
    let max = state.config.max_body;
    let ws = ws.max_message_size(max).max_frame_size(max).read_buffer_size(READ_BUFFER).write_buffer_size(WRITE_BUFFER);
    Ok(ws.on_upgrade(move |socket| {
        let tasks = state.tasks.clone();
        tasks.track_future(serve(socket, state, connection, query.cursor, slot))
    }))
}

/// A frame from the client: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// Why the server closes a connection: the close code, its reason text, and the
/// label under which a refused frame is counted.
struct Closing {
    code: u16,
    reason: Utf8Bytes,
    rejected: Option<&'static str>,
}

impl Closing {
    fn new(code: u16, reason: &'static str) -> Self {
        Closing { code, reason: Utf8Bytes::from_static(reason), rejected: None }
    }

    fn refusal(code: u16, reason: &'static str, label: &'static str) -> Self {
        Closing { code, reason: Utf8Bytes::from_static(reason), rejected: Some(label) }
    }
}

/// Runs one connection until either side closes, the client stops answering pings or
/// reading, or the server shuts down. One task does it all, so a delivery costs one
/// wake-up: frames are fed to the socket as deliveries come and flushed once none is
/// ready (a burst goes out in few writes).
async fn serve(
    mut socket: WebSocket,
    state: AppState,
    connection: Connection,
    cursor: Option<String>,
    _slot: SubscriberSlot,
) {
    let metrics = state.metrics.transport(Transport::WebSocket);
    let _subscriber = metrics.subscriber();
    let mut subscription = state.bus.subscribe(cursor.as_deref().filter(|c| !c.is_empty())).await;
    let ready = socket.send(Frame::Text(Utf8Bytes::from_static(READY)));
    if !matches!(timeout(state.config.slow_consumer_timeout, ready).await, Ok(Ok(()))) {
        return; // gone, or not reading even the first frame
    }
    let mut ping = interval(state.config.ws_ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick would fire at once
    let mut awaiting_pong = false;
    // Made once: a fresh one at every turn of the loop would register with the
    // connection's token again after each burst.
    let mut ended = std::pin::pin!(connection.ended());

    let closing: Option<Closing> = loop {
        tokio::select! {
            // Deliveries first: woken by one, the task does not poll the socket, the
            // ping timer and the end of the connection on the way. They are polled
            // whenever no delivery is ready, as on entering this loop after each burst.
            biased;
            delivery = subscription.next() => {
                let Some(first) = delivery else {
                    break Some(Closing::new(close_code::AWAY, "server is going away"));
                };
                match deliver(&mut socket, &mut subscription, first, &state, metrics).await {
                    Ok(()) => {}
                    Err(Stall::Slow) => {
                        metrics.slow_disconnect();
                        break Some(Closing::new(SLOW_CONSUMER, "slow consumer: fell too far behind"));
                    }
                    Err(Stall::Failed) => break None,
                }
            }
            frame = socket.next() => match frame {
                Some(Ok(Frame::Text(text))) => {
                    if let Err(refusal) = publish(&state, &text).await {
                        break Some(refusal);
                    }
                }
                Some(Ok(Frame::Binary(_))) => {
                    break Some(Closing::refusal(close_code::UNSUPPORTED, "binary frames are not accepted", "ws_binary"))
                }
                Some(Ok(Frame::Pong(_))) => awaiting_pong = false,
                Some(Ok(Frame::Ping(_))) => {}
                Some(Ok(Frame::Close(_))) | None => break None,
                Some(Err(error)) => {
                    break too_large(&error).then_some(Closing::refusal(close_code::SIZE, "frame too large", "ws_too_large"))
                }
            },
            _ = ping.tick() => {
                if awaiting_pong {
                    break None; // a dead peer: nobody would read a close frame
                }
                awaiting_pong = true;
                match timeout(state.config.slow_consumer_timeout, socket.send(Frame::Ping(Default::default()))).await {
                    Ok(Ok(())) => {}
                    Ok(Err(_)) => break None,
                    Err(_) => {
                        metrics.slow_disconnect();
                        break Some(Closing::new(SLOW_CONSUMER, "slow consumer: fell too far behind"));
                    }
                }
            }
            () = &mut ended => break Some(Closing::new(close_code::AWAY, "server shutting down")),
        }
    };
    drop(subscription);
    if let Some(closing) = closing {
        if let Some(label) = closing.rejected {
            state.metrics.rejected(label);
        }
        let frame = CloseFrame { code: closing.code, reason: closing.reason };
        // What is buffered goes first; a client that does not read even that within
        // the grace period (a slow consumer) is cut off when the socket is dropped.
        let _ = timeout(CLOSE_GRACE, socket.send(Frame::Close(Some(frame)))).await;
    }
}

/// Why writing to the client stopped.
enum Stall {
    /// The socket did not take the frames within the slow-consumer timeout.
    Slow,
    /// The socket failed (the client went away).
    Failed,
}

/// Writes `first` and every delivery ready behind it, flushing each time
/// `--outbound-limit` bytes are buffered and at the end. So at most that much waits
/// in memory for this client; a write or flush that does not finish within
/// `--slow-consumer-timeout` means the client is not reading.
async fn deliver(
    socket: &mut WebSocket,
    subscription: &mut Subscription,
    first: Delivery,
    state: &AppState,
    metrics: &TransportMetrics,
) -> Result<(), Stall> {
    let patience = state.config.slow_consumer_timeout;
    let mut buffered = 0;
    let mut next = Some(first);
    while let Some(delivery) = next {
        let (text, created) = match delivery {
            Delivery::Message(message) => (message.json.clone(), Some(message.created)),
            Delivery::Gap(gap) => {
                metrics.gap(gap.reason);
                (Utf8Bytes::from(format!(r#"{{"gap":{}}}"#, gap.to_json())), None)
            }
        };
        buffered += text.len();
        within(patience, socket.feed(Frame::Text(text))).await?;
        if let Some(created) = created {
            metrics.delivered(created.elapsed());
        }
        if buffered >= state.config.outbound_limit {
            within(patience, socket.flush()).await?;
            buffered = 0;
        }
        next = subscription.try_next();
    }
    within(patience, socket.flush()).await
}

/// Runs a socket operation with the slow-consumer timeout.
async fn within(patience: Duration, operation: impl Future<Output = Result<(), axum::Error>>) -> Result<(), Stall> {
    match timeout(patience, operation).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stall::Failed),
        Err(_) => Err(Stall::Slow),
    }
}

/// Publishes a client frame, or says why the connection closes instead.
async fn publish(state: &AppState, text: &str) -> Result<(), Closing> {
    let post: Post = serde_json::from_str(text)
        .map_err(|_| Closing::refusal(close_code::INVALID, "frame is not a JSON object", "ws_not_json"))?;
    let body = post.body.ok_or(Closing::refusal(close_code::POLICY, "frame has no \"body\"", "ws_no_body"))?;
    let error = match state.bus.publish(body).await {
        Ok(_) => {
            state.metrics.published();
            return Ok(());
        }
        Err(error) => error,
    };
    let code = match error {
        PublishError::TooLarge { .. } => close_code::SIZE,
        // Nothing was published; "try again later" tells the client to reconnect and resend.
        PublishError::Unavailable => close_code::AGAIN,
        PublishError::Empty | PublishError::ControlCharacter => close_code::POLICY,
    };
    // The same reason text and metric label as a refused POST.
    Err(Closing { code, reason: error.to_string().into(), rejected: Some(publish_reason(&error)) })
}

fn too_large(error: &axum::Error) -> bool {
    use std::error::Error;
    matches!(
        error.source().and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>()),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}

/// Allows upgrades without `Origin`, from this server's own origin (the `Host` the
/// request was sent to) and from the configured extra origins.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| AppError::CrossOrigin)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    let same_origin = host.is_some_and(|host| origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)));
    if same_origin || allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(AppError::CrossOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn same_origin_missing_origin_and_allowed_origins_pass() {
        assert!(check_origin(&headers(Some("http://127.0.0.1:8888"), "127.0.0.1:8888"), &[]).is_ok());
        assert!(check_origin(&headers(None, "127.0.0.1:8888"), &[]).is_ok());
        let allowed = ["https://chat.example".to_owned()];
        assert!(check_origin(&headers(Some("https://chat.example"), "127.0.0.1:8888"), &allowed).is_ok());
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in ["http://evil.example", "http://127.0.0.1:9999", "null"] {
            assert!(check_origin(&headers(Some(origin), "127.0.0.1:8888"), &[]).is_err(), "{origin}");
        }
    }
}
