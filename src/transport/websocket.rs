//! `GET /a/message/socket[?cursor=ID]`: WebSocket (over HTTP/2: an extended CONNECT).
//!
//! After the upgrade the server sends `{"ready":{"http":"1.1"}}` (frames come through,
//! and over which HTTP), the history after `cursor` (none: everything retained), then
//! every new message: one JSON message object per text frame, the same bytes for every
//! subscriber. The client may publish in-band with a frame `{"body": "…"}` (Tornado's
//! WebSocket chat format); the message goes to every transport, the sender included.
//!
//! - Browsers do not apply CORS to WebSockets, so the `Origin` of an upgrade must be
//!   this server's own (or in `--allow-origin`), or it gets 403. Clients without an
//!   `Origin` (not browsers) are let in, as Tornado does. A request that is not a
//!   valid upgrade gets 400 with the reason.
//! - Gap notices are control objects `{"gap": {"reason": …, "missed": N|null,
//!   "cursor": …}}`: they have no `id`, so clients tell them from messages; `cursor`
//!   is where to resume after the gap.
//! - Bad frames close the socket with a reason: not JSON 1007, no `body` or a body
//!   the bus refuses 1008, binary 1003, too large 1009. A frame that cannot be
//!   published because the shared bus (Redis) is down closes with 1013 ("try again
//!   later"). The reason text is the one a refused POST gets. A frame over the client's
//!   publish limit (`--publish-rate`) is refused with a frame `{"error":{"reason":
//!   "rate_limited","message":…,"retry_after":N}}` (whole seconds), and the socket stays
//!   open: closing it would hand the client a fresh allowance when it reconnects.
//! - At a graceful stop, the last frame says when to come back, a delay of the socket's
//!   own (module `reconnect`): `{"reconnect":{"reason":"server_restart","delay_ms":N}}`,
//!   then close 1012 ("service restart") with the delay in its reason. When every
//!   subscriber slot is taken, the upgrade is accepted only to say the same
//!   (`"over_capacity"`, close 1013), holding no slot (`handshake`).
//! - The closing handshake (RFC 6455 §5.5.1, §7.4): a client's Close frame is answered
//!   with one (echoing its code), so the client sees a clean close; a frame that breaks
//!   the protocol (unmasked, reserved bits or opcodes, a control frame too long or
//!   fragmented, a continuation with nothing to continue, an invalid close code) is
//!   answered with Close 1002, invalid UTF-8 in a text frame with 1007.
//! - A ping every 25 s (default) keeps proxies from cutting an idle connection; a peer
//!   that has not answered by the next ping is dead and its connection is dropped.
//! - New messages are written into the socket by the fan-out (module `fanout`): one
//!   task per worker thread for every socket, so a message does not wake each
//!   connection's task. The connection's task sends the history first, reads the
//!   client's frames, drains what the socket did not take at once, and sends pings and
//!   the close frame. Every byte goes through the connection's outbox, in order.
//! - Slow consumers follow the fan-out's policy: a client that takes nothing for
//!   `--slow-consumer-timeout` (5 s) gets close 1013 ("try again later", reason "slow
//!   consumer") after what was buffered, and reconnects with `?cursor=`, losing
//!   nothing the history still holds.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{MethodFilter, on};
use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::{OnUpgrade, Upgraded};
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{MissedTickBehavior, interval, timeout};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::ProtocolError;
use tokio_tungstenite::tungstenite::protocol::frame::Frame as RawFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message as Frame};

mod handshake;

use super::error::publish_reason;
use super::fanout::{Fanout, Outbox, Release, Sink};
use super::origin::check_origin;
use super::reconnect::Reconnect;
use super::{AppError, Resume, SubscriberSlot};
use crate::AppState;
use crate::bus::{Gap, PublishError, ResumeFrom, WireForm};
use crate::metrics::{Http, Transport};
use crate::server::Connection;

/// The read buffer each connection allocates up front. tungstenite's default is
/// 128 KiB, which at 10,000 idle sockets is 1.3 GB; chat frames are small, and the
/// buffer still grows for a large frame when one comes.
const READ_BUFFER: usize = 4 * 1024;
/// How long a closing connection gets to send what is buffered and its close frame.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// A message as a text frame, header included: the same bytes for every socket.
static FRAME: WireForm = WireForm::new(|message| text_frame(&message.json));

/// The WebSocket endpoint, for [`super::routes`] to merge: `GET` with `Upgrade` over
/// HTTP/1.1, `CONNECT` with `:protocol websocket` over HTTP/2 (RFC 8441).
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/socket", on(MethodFilter::GET.or(MethodFilter::CONNECT), upgrade))
}

/// The handshake (module `handshake`), done here rather than by axum's
/// `WebSocketUpgrade`, which keeps the upgraded socket to itself: the fan-out writes
/// into it.
async fn upgrade(
    State(state): State<AppState>,
    connection: Connection,
    Resume(from): Resume,
    mut request: Request,
) -> Result<Response, AppError> {
    let accept = handshake::check(&request)?;
    check_origin(request.headers(), request.uri(), &state.config.allowed_origins)?;
    let on_upgrade = request.extensions_mut().remove::<OnUpgrade>().ok_or(AppError::NotUpgradable)?;
    let http = Http::of(request.version());
    let slot = SubscriberSlot::take(&state);
    if slot.is_err() {
        state.metrics.rejected("over_capacity");
    }
    let tasks = state.tasks.clone();
    tasks.spawn(async move {
        // Err: the client went away before the switch completed.
        let Ok(upgraded) = on_upgrade.await else { return };
        match slot {
            Ok(slot) => serve(upgraded, state, connection, from, http, slot).await,
            Err(reconnect) => handshake::turn_away(upgraded, reconnect).await,
        }
    });
    Ok(handshake::accepted(accept))
}

/// This transport's sink: the upgraded socket, written by whoever holds the outbox
/// (the fan-out for messages, the connection's task for everything else).
struct Socket(TokioIo<Upgraded>);

impl Sink for Socket {
    const WRITES: bool = true;
    const TRANSPORT: Transport = Transport::WebSocket;

    fn form() -> &'static WireForm {
        &FRAME
    }

    /// A gap notice: a control object without `id`.
    fn gap(gap: &Gap) -> Bytes {
        text_frame(format!(r#"{{"gap":{}}}"#, gap.to_json()).as_bytes())
    }

    fn slow_notice() -> Bytes {
        close_frame(CloseCode::Again, "slow consumer: fell too far behind")
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, bytes)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
}

/// The outbox as tungstenite's stream: reads come from the socket; writes (pings,
/// pongs, the reply to a close) go into the outbox, behind whatever waits there, and
/// count as flushed once there: the connection's task drains the outbox.
struct Stream(Arc<Outbox<Socket>>);

impl AsyncRead for Stream {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        self.0.with_sink(|socket| Pin::new(&mut socket.0).poll_read(cx, buf))
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // tungstenite hands over whole frames; taking all of each keeps them whole.
        self.0.send(Bytes::copy_from_slice(buf))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// A complete server-to-client frame (unmasked, final).
fn raw_frame(frame: RawFrame) -> Bytes {
    let mut bytes = Vec::with_capacity(frame.len());
    // Formatting into a Vec cannot fail.
    frame.format(&mut bytes).expect("frame formats");
    bytes.into()
}

fn text_frame(text: &[u8]) -> Bytes {
    raw_frame(RawFrame::message(Bytes::copy_from_slice(text), OpCode::Data(Data::Text), true))
}

fn close_frame(code: CloseCode, reason: &str) -> Bytes {
    raw_frame(RawFrame::close(Some(CloseFrame { code, reason: reason.into() })))
}

/// When to come back, `{"reconnect":{…}}`: a control object without `id`.
fn reconnect_notice(reconnect: &Reconnect) -> String {
    format!(r#"{{"reconnect":{}}}"#, reconnect.json())
}

/// A frame from the client: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// How a connection ends.
enum Ending {
    /// The client closed: its Close frame is answered (tungstenite queued the reply).
    ByClient,
    /// The server closes with this code and reason; `rejected` counts a refused frame.
    Close { code: CloseCode, reason: String, rejected: Option<&'static str> },
    /// The slow notice is already queued: only what waits is sent.
    Slow,
    /// The server stops: when to come back, then close 1012.
    Restart(Reconnect),
    /// The client is gone or dead: nothing to send.
    Gone,
}

impl Ending {
    fn refusal(code: CloseCode, reason: &str, label: &'static str) -> Self {
        Ending::Close { code, reason: reason.to_owned(), rejected: Some(label) }
    }

    /// At a graceful stop, when to come back; otherwise close 1001 with `reason`.
    fn going_away(state: &AppState, reason: &str) -> Self {
        if state.shutdown.is_cancelled() {
            return Ending::Restart(Reconnect::restart(&state.config));
        }
        Ending::Close { code: CloseCode::Away, reason: reason.to_owned(), rejected: None }
    }
}

/// Runs one connection until either side closes, the client stops answering pings or
/// reading, or the server shuts down. New messages are written by the fan-out, not
/// by this task: it is woken for them only when the socket could not take them at
/// once (to drain what waits) or the connection was let go (to catch up and join
/// again, or to end).
async fn serve(
    upgraded: Upgraded,
    state: AppState,
    connection: Connection,
    from: ResumeFrom,
    http: Http,
    _slot: SubscriberSlot,
) {
    let metrics = state.metrics.transport(Transport::WebSocket);
    let _subscriber = metrics.subscriber(http);
    let subscription = state.bus.subscribe_from(from).await;
    let fanout = &state.fanout;
    let outbox = fanout.open(&state, Socket(TokioIo::new(upgraded)), subscription.position(), connection.closer());
    let max = Some(state.config.max_body);
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER).max_message_size(max).max_frame_size(max);
    let mut socket = WebSocketStream::from_raw_socket(Stream(outbox.clone()), Role::Server, Some(config)).await;
    let mut catching_up = Some(subscription);
    let mut ping = interval(state.config.ws_ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick would fire at once
    let mut awaiting_pong = false;
    // Made once: a fresh one at every turn of the loop would register with the
    // connection's token again each time.
    let mut ended = pin!(connection.ended());

    // The first frame, `{"ready":{"http":…}}`: it has no `id`, so clients that only read
    // messages skip it; it says which HTTP version carries the socket.
    let ready = text_frame(format!(r#"{{"ready":{{"http":"{}"}}}}"#, http.as_str()).as_bytes());
    let ending = if outbox.send(ready).is_err() {
        Ending::Gone
    } else {
        loop {
            fanout.keep_up(&state, &outbox, &mut catching_up, metrics);
            tokio::select! {
                biased;
                () = outbox.woken() => match Fanout::woken(&state, &outbox, &mut catching_up).await {
                    None | Some(Release::Behind) => {}
                    Some(Release::Ended) => break Ending::going_away(&state, "server is going away"),
                    Some(Release::Slow) => break Ending::Slow,
                },
                written = outbox.drain(), if outbox.waiting() > 0 => {
                    if written.is_err() {
                        break Ending::Gone;
                    }
                }
                frame = socket.next() => match frame {
                    Some(Ok(Frame::Text(text))) => match publish(&state, connection.peer(), &text).await {
                        Ok(None) => {}
                        Ok(Some(answer)) => {
                            if outbox.send(answer).is_err() {
                                break Ending::Gone;
                            }
                        }
                        Err(refusal) => break refusal,
                    },
                    Some(Ok(Frame::Binary(_))) => {
                        break Ending::refusal(CloseCode::Unsupported, "binary frames are not accepted", "ws_binary")
                    }
                    Some(Ok(Frame::Pong(_))) => awaiting_pong = false,
                    Some(Ok(Frame::Ping(_) | Frame::Frame(_))) => {}
                    Some(Ok(Frame::Close(_))) => break Ending::ByClient,
                    Some(Err(error)) => break refusal_of(&error),
                    None => break Ending::Gone,
                },
                _ = ping.tick() => {
                    if awaiting_pong {
                        break Ending::Gone; // a dead peer: nobody would read a close frame
                    }
                    awaiting_pong = true;
                    // Queued behind what waits; the drain above sends it.
                    if socket.send(Frame::Ping(Bytes::new())).await.is_err() {
                        break Ending::Gone;
                    }
                }
                () = &mut ended => break Ending::going_away(&state, "server shutting down"),
            }
        }
    };
    fanout.leave(&outbox);
    // What is buffered goes first, then the close frame; a client that does not read
    // even that within the grace period is cut off when the socket is dropped.
    let _ = timeout(CLOSE_GRACE, async {
        match ending {
            // tungstenite queued the reply (the client's code, or 1002 for one not
            // allowed on the wire); flushing hands it to the outbox, draining sends it.
            Ending::ByClient => {
                let _ = socket.flush().await;
                outbox.drain().await.map_err(|_| ())
            }
            Ending::Close { code, reason, rejected } => {
                if let Some(label) = rejected {
                    state.metrics.rejected(label);
                }
                outbox.send(close_frame(code, &reason)).map_err(|_| ())?;
                outbox.drain().await.map_err(|_| ())
            }
            Ending::Slow => outbox.drain().await.map_err(|_| ()),
            Ending::Restart(reconnect) => {
                outbox.send(text_frame(reconnect_notice(&reconnect).as_bytes())).map_err(|_| ())?;
                let code = CloseCode::from(reconnect.close_code());
                outbox.send(close_frame(code, &reconnect.sentence())).map_err(|_| ())?;
                outbox.drain().await.map_err(|_| ())
            }
            Ending::Gone => Ok(()),
        }
    })
    .await;
}

/// How a frame that tungstenite refused is answered: too large 1009, text that is not
/// UTF-8 1007, any other breach of the protocol 1002; a failed socket, nothing.
fn refusal_of(error: &WsError) -> Ending {
    match error {
        WsError::Capacity(_) => Ending::refusal(CloseCode::Size, "frame too large", "ws_too_large"),
        WsError::Utf8(_) => Ending::refusal(CloseCode::Invalid, "text frame is not valid UTF-8", "ws_not_utf8"),
        // The TCP connection ended without a close frame: nobody reads ours.
        WsError::Protocol(ProtocolError::ResetWithoutClosingHandshake) => Ending::Gone,
        WsError::Protocol(violation) => Ending::refusal(CloseCode::Protocol, &violation.to_string(), "ws_protocol"),
        _ => Ending::Gone,
    }
}

/// Publishes a client frame from `peer`; or the frame that refuses it for now (the
/// connection stays); or why the connection closes instead.
async fn publish(state: &AppState, peer: SocketAddr, text: &str) -> Result<Option<Bytes>, Ending> {
    let post: Post = serde_json::from_str(text)
        .map_err(|_| Ending::refusal(CloseCode::Invalid, "frame is not a JSON object", "ws_not_json"))?;
    let body = post.body.ok_or(Ending::refusal(CloseCode::Policy, "frame has no \"body\"", "ws_no_body"))?;
    if let Err(limited) = state.publish_limit.check(peer, &body) {
        state.metrics.rejected("rate_limited");
        return Ok(Some(text_frame(limited.json().as_bytes())));
    }
    let error = match state.bus.publish(body).await {
        Ok(_) => {
            state.metrics.published();
            return Ok(None);
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
    Err(Ending::Close { code, reason: error.to_string(), rejected: Some(publish_reason(&error)) })
}
