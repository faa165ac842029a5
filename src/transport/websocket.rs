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
//!   `Origin` (not browsers) are let in, as Tornado does. A request that is not a
//!   valid upgrade gets 400 with the reason.
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
//! - New messages are written into the socket by the fan-out (module `fanout`): one
//!   task per worker thread for every socket, so a message does not wake each
//!   connection's task. The connection's task sends the history first, reads the
//!   client's frames, and sends pings and the close frame.
//! - At most `--outbound-limit` bytes (1 MiB), plus one batch, wait in the server for
//!   a client that does not read. Then the fan-out lets go of it, and its task drains
//!   what waits: a client that does not take it within `--slow-consumer-timeout` (5 s)
//!   gets close 1013 ("try again later", reason "slow consumer") after what was
//!   buffered, and reconnects with `?cursor=`, losing nothing the history still holds;
//!   one that does catches up from the bus and is handed to the fan-out again. If it
//!   does not read even the close frame within a grace period, the TCP connection is
//!   cut.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::get;
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame, Utf8Bytes};

use super::error::publish_reason;
use super::fanout::{Fanout, Outbox, Release, Socket, encode};
use super::{AppError, CursorQuery, SubscriberSlot};
use crate::AppState;
use crate::bus::{Gap, PublishError, Subscription, websocket_text_frame};
use crate::metrics::{Transport, TransportMetrics};
use crate::server::Connection;

/// The read buffer each connection allocates up front. tungstenite's default is
/// 128 KiB, which at 10,000 idle sockets is 1.3 GB; chat frames are small, and the
/// buffer still grows for a large frame when one comes.
const READ_BUFFER: usize = 4 * 1024;
/// How long a closing connection gets to send what is buffered and its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// The first frame: it has no `id`, so clients that only read messages skip it.
const READY: &str = r#"{"ready":{}}"#;

/// The WebSocket endpoint, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/socket", get(upgrade))
}

/// The handshake (RFC 6455 §4.2), done here rather than by axum's `WebSocketUpgrade`,
/// which keeps the upgraded socket to itself: the fan-out writes into it.
async fn upgrade(
    State(state): State<AppState>,
    Extension(fanout): Extension<Arc<Fanout>>,
    slot: SubscriberSlot,
    connection: Connection,
    Query(query): Query<CursorQuery>,
    mut request: Request,
) -> Result<Response, AppError> {
    let accept = accept_key(request.headers())?;
    check_origin(request.headers(), &state.config.allowed_origins)?;
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>().ok_or(AppError::NotUpgradable)?;
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        // Err: the client went away before the switch completed.
        if let Ok(upgraded) = on_upgrade.await {
            serve(upgraded, state, fanout, connection, query.cursor, slot).await;
        }
    });
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    Ok(response)
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request, or why it is not one.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, AppError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|item| item.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(AppError::NotWebSocket("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)"));
    }
    if headers.get(header::SEC_WEBSOCKET_VERSION).is_none_or(|version| version != "13") {
        return Err(AppError::NotWebSocket("Sec-WebSocket-Version must be 13"));
    }
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(AppError::NotWebSocket("Sec-WebSocket-Key missing"))?;
    // The accept key is base64: always a valid header value.
    Ok(HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 header value"))
}

/// A frame from the client: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// Why the server closes a connection: the close code, its reason text, and the
/// label under which a refused frame is counted.
struct Closing {
    code: CloseCode,
    reason: Utf8Bytes,
    rejected: Option<&'static str>,
}

impl Closing {
    fn new(code: CloseCode, reason: &'static str) -> Self {
        Closing { code, reason: Utf8Bytes::from_static(reason), rejected: None }
    }

    fn refusal(code: CloseCode, reason: &'static str, label: &'static str) -> Self {
        Closing { code, reason: Utf8Bytes::from_static(reason), rejected: Some(label) }
    }

    /// Close code for a slow consumer: "try again later", the client should reconnect.
    fn slow_consumer(metrics: &TransportMetrics) -> Self {
        metrics.slow_disconnect();
        Closing::new(CloseCode::Again, "slow consumer: fell too far behind")
    }

    fn going_away() -> Self {
        Closing::new(CloseCode::Away, "server is going away")
    }
}

/// Runs one connection until either side closes, the client stops answering pings or
/// reading, or the server shuts down. New messages are written by the fan-out, not
/// by this task: it is woken for them only when the socket could not take them at
/// once (to drain what waits) or the fan-out let go (to catch up and join again).
async fn serve(
    upgraded: Upgraded,
    state: AppState,
    fanout: Arc<Fanout>,
    connection: Connection,
    cursor: Option<String>,
    _slot: SubscriberSlot,
) {
    let metrics = state.metrics.transport(Transport::WebSocket);
    let _subscriber = metrics.subscriber();
    let subscription = state.bus.subscribe(cursor.as_deref().filter(|c| !c.is_empty())).await;
    let outbox = Arc::new(Outbox::websocket(TokioIo::new(upgraded), subscription.position()));
    let max = Some(state.config.max_body);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).max_message_size(max).max_frame_size(max);
    let mut socket = WebSocketStream::from_raw_socket(Socket(outbox.clone()), Role::Server, Some(config)).await;
    let patience = state.config.slow_consumer_timeout;
    let ready = socket.send(Frame::text(READY));
    if !matches!(timeout(patience, ready).await, Ok(Ok(()))) {
        return; // gone, or not reading even the first frame
    }
    let mut ping = interval(state.config.ws_ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick would fire at once
    let mut awaiting_pong = false;
    // Made once: a fresh one at every turn of the loop would register with the
    // connection's token again each time.
    let mut ended = std::pin::pin!(connection.ended());

    let caught_up = catch_up(&outbox, subscription, &fanout, &state, metrics).await;
    let closing: Option<Closing> = if let Err(stall) = caught_up {
        stall.closing(metrics)
    } else {
        loop {
            tokio::select! {
                biased;
                () = outbox.woken() => {
                    if let Err(closing) = on_woken(&outbox, &fanout, &state, metrics).await {
                        break closing;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(text))) => {
                        if let Err(refusal) = publish(&state, &text).await {
                            break Some(refusal);
                        }
                    }
                    Some(Ok(Frame::Binary(_))) => {
                        break Some(Closing::refusal(CloseCode::Unsupported, "binary frames are not accepted", "ws_binary"))
                    }
                    Some(Ok(Frame::Pong(_))) => awaiting_pong = false,
                    Some(Ok(Frame::Ping(_) | Frame::Frame(_))) => {}
                    Some(Ok(Frame::Close(_))) | None => break None,
                    Some(Err(error)) => {
                        break too_large(&error).then_some(Closing::refusal(CloseCode::Size, "frame too large", "ws_too_large"))
                    }
                },
                _ = ping.tick() => {
                    if awaiting_pong {
                        break None; // a dead peer: nobody would read a close frame
                    }
                    awaiting_pong = true;
                    match timeout(patience, socket.send(Frame::Ping(Bytes::new()))).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => break None,
                        Err(_) => break Some(Closing::slow_consumer(metrics)),
                    }
                }
                () = &mut ended => break Some(Closing::new(CloseCode::Away, "server shutting down")),
            }
        }
    };
    fanout.leave(&outbox);
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

/// Woken by the fan-out: drains what waits for the socket, and catches up from the bus
/// if the fan-out let go; or says why the connection closes instead.
async fn on_woken(
    outbox: &Arc<Outbox>,
    fanout: &Fanout,
    state: &AppState,
    metrics: &TransportMetrics,
) -> Result<(), Option<Closing>> {
    let closing = |stall: Stall| stall.closing(metrics);
    within(state.config.slow_consumer_timeout, outbox.drain()).await.map_err(closing)?;
    match outbox.take_release() {
        None => Ok(()),
        Some(Release::Ended) => Err(Some(Closing::going_away())),
        Some(Release::Behind) => {
            let subscription = state.bus.subscribe(Some(&outbox.position().to_string())).await;
            catch_up(outbox, subscription, fanout, state, metrics).await.map_err(closing)
        }
    }
}

/// Why writing to the client stopped.
enum Stall {
    /// The socket did not take the frames within the slow-consumer timeout.
    Slow,
    /// The socket failed (the client went away).
    Failed,
}

impl Stall {
    fn closing(self, metrics: &TransportMetrics) -> Option<Closing> {
        match self {
            Stall::Slow => Some(Closing::slow_consumer(metrics)),
            Stall::Failed => None,
        }
    }
}

/// Sends what `subscription` holds for the client (the history, or what it missed
/// while the fan-out let go), then hands the connection to the fan-out. At most
/// `--outbound-limit` bytes wait in memory for the client: then they are drained, and
/// a drain that does not finish within `--slow-consumer-timeout` means the client is
/// not reading.
async fn catch_up(
    outbox: &Arc<Outbox>,
    mut subscription: Subscription,
    fanout: &Fanout,
    state: &AppState,
    metrics: &TransportMetrics,
) -> Result<(), Stall> {
    let patience = state.config.slow_consumer_timeout;
    loop {
        let Some(delivery) = subscription.try_next() else {
            if outbox.waiting() == 0 {
                break;
            }
            within(patience, outbox.drain()).await?;
            continue; // more may have come meanwhile
        };
        let (frame, position) = encode(delivery, metrics, |m| &m.websocket_frame, gap_frame);
        outbox.send(frame, position).map_err(|_| Stall::Failed)?;
        if outbox.waiting() >= state.config.outbound_limit {
            within(patience, outbox.drain()).await?;
        }
    }
    // What is published from here on, the fan-out writes (it knows where the client is).
    drop(subscription);
    fanout.join(state, outbox);
    Ok(())
}

/// A gap notice's frame: a control object without `id`.
fn gap_frame(gap: &Gap) -> Bytes {
    websocket_text_frame(&format!(r#"{{"gap":{}}}"#, gap.to_json()))
}

/// Runs a socket operation with the slow-consumer timeout.
async fn within<E>(patience: Duration, operation: impl Future<Output = Result<(), E>>) -> Result<(), Stall> {
    match timeout(patience, operation).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Stall::Failed),
        Err(_) => Err(Stall::Slow),
    }
}

/// Publishes a client frame, or says why the connection closes instead.
async fn publish(state: &AppState, text: &str) -> Result<(), Closing> {
    let post: Post = serde_json::from_str(text)
        .map_err(|_| Closing::refusal(CloseCode::Invalid, "frame is not a JSON object", "ws_not_json"))?;
    let body = post.body.ok_or(Closing::refusal(CloseCode::Policy, "frame has no \"body\"", "ws_no_body"))?;
    let error = match state.bus.publish(body).await {
        Ok(_) => {
            state.metrics.published();
            return Ok(());
        }
        Err(error) => error,
    };
    let code = match error {
        PublishError::TooLarge { .. } => CloseCode::Size,
        // Nothing was published; "try again later" tells the client to reconnect and resend.
        PublishError::Unavailable => CloseCode::Again,
        PublishError::Empty | PublishError::ControlCharacter => CloseCode::Policy,
    };
    // The same reason text and metric label as a refused POST.
    Err(Closing { code, reason: error.to_string().into(), rejected: Some(publish_reason(&error)) })
}

fn too_large(error: &WsError) -> bool {
    matches!(error, WsError::Capacity(_))
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
