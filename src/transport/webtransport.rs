//! `/a/message/webtransport[?cursor=ID][&order=none]`: WebTransport, over HTTP/3 on UDP
//! at the same port number as the HTTP server.
//!
//! The wire contract, all of it (a client needs nothing else):
//! - The server opens one unidirectional stream per session and writes newline-
//!   delimited JSON on it: first `{"ready":{"http":"3"}}`, then the history after
//!   `cursor` (none: everything retained), then every new message — the same objects a
//!   WebSocket receives, one per line: message objects, and gap notices
//!   `{"gap":{"reason":…,"missed":N|null,"cursor":…}}` (no `id`; `cursor` is where to
//!   resume past the gap).
//! - `?order=none` makes the session unordered. The first stream the server opens (the
//!   control stream) carries `{"ready":{"http":"3","order":"none"}}`, then only the gap
//!   and slow notices. Every message, of the history and live, comes on a
//!   unidirectional stream of its own: one line, its message object, then the stream
//!   is finished. Streams arrive in any order (a lost packet delays only its own
//!   message), so the client orders messages by `seq`: one more for each message of an
//!   epoch, and a gap notice's `cursor` (`<epoch>-<seq>`) says after which seq the
//!   messages that follow it start. To resume without a hole, a client gives the id of
//!   the last message before the first one it is still missing, not of the newest it
//!   has. `order=seq` is the default (one stream, in order, as above).
//! - To publish, the client opens a bidirectional stream, writes `{"body":"…"}` and
//!   finishes its side; the server answers on that stream with the published message's
//!   JSON, or `{"error":{"reason":…,"message":…}}` with the reason a refused POST is
//!   counted under (`empty_body`, `body_too_large`, `control_character`,
//!   `bus_unavailable`) or `not_json`, `no_body`, `body_timeout`; then finishes.
//!   A client publishing faster than `--publish-rate` allows is answered
//!   `{"error":{"reason":"rate_limited","message":…,"retry_after":N}}` (whole seconds).
//! - The session's `Origin` must be this server's own (or in `--allow-origin`), or it
//!   is answered 403; a path other than this one 404. When every subscriber slot is
//!   taken, the session is accepted only to be told when to come back (a browser is not
//!   shown a refused session's status): its first stream carries
//!   `{"reconnect":{"reason":"over_capacity","delay_ms":N}}`, then the session is closed
//!   with code 1013 once the client has closed it or 2 s have passed.
//!   An `order` other than `seq` or `none` is answered 404 too: wtransport 0.7 answers
//!   a session request with 200, 403, 404 or 429 only, and of those 404 ("no such
//!   resource") is the nearest to 400. It is counted as `bad_order`, not `not_found`.
//! - A slow consumer follows the fan-out's policy: its last line is
//!   `{"slow":{"reason":"slow_consumer"}}` (on the control stream when unordered), then
//!   the session is closed with code 1013 (as WebSocket's close code). At a graceful
//!   stop, the last line is `{"reconnect":{"reason":"server_restart","delay_ms":N}}`
//!   (a delay of its own, module `reconnect`), and the session is closed with code 1012
//!   once the client has closed it. Either way, what was queued gets up to 2 s in all to
//!   reach the client and the server's streams to be finished.
//! - Unidirectional streams and datagrams from the client are not part of the
//!   contract: stopped and dropped, and counted.
//!
//! The certificate is the server's (`--tls-cert`), or the self-signed ECDSA one made at
//! start-up, valid for 13 days: what browsers accept when it is pinned through
//! `serverCertificateHashes`, whose value the page reads from
//! `GET /a/message/webtransport/certificate`.

mod endpoint;
mod loss_count;
mod publish;
mod unordered;

pub use endpoint::{Availability, Endpoint, routes, serve};

use std::io;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::Query;
use axum::http::Uri;
use bytes::Bytes;
use serde::Deserialize;
use tokio::io::AsyncWrite;
use tokio::task::JoinSet;
use tokio::time::{interval, timeout};
use wtransport::endpoint::IncomingSession;
use wtransport::{Connection as Session, SendStream, VarInt};

use super::fanout::{Fanout, Outbox, Release, Sink};
use super::reconnect::Reconnect;
use super::{SubscriberSlot, origin, resume_from_query};
use crate::AppState;
use crate::bus::{Gap, ResumeFrom, WireForm};
use crate::metrics::{Http, Transport};
use crate::server::Connection;

/// The session path.
const PATH: &str = "/a/message/webtransport";
/// How long a closing session gets to send what is queued and have it acknowledged.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Publish streams a session may have open at once; more are reset.
const MAX_PUBLISH_STREAMS: usize = 16;
/// Session close codes, as WebSocket's: going away, and try again later.
const GOING_AWAY: u32 = 1001;
const SLOW_CONSUMER: u32 = 1013;

/// A message as one line of JSON.
static LINE: WireForm = WireForm::new(|message| Bytes::from([&message.json[..], b"\n"].concat()));
/// The last line to a slow consumer.
const SLOW_LINE: &[u8] = b"{\"slow\":{\"reason\":\"slow_consumer\"}}\n";

/// A gap notice as one line of JSON.
fn gap_line(gap: &Gap) -> Bytes {
    Bytes::from(format!("{{\"gap\":{}}}\n", gap.to_json()))
}

/// When to come back, as one line of JSON.
fn reconnect_line(reconnect: &Reconnect) -> Bytes {
    Bytes::from(format!("{{\"reconnect\":{}}}\n", reconnect.json()))
}

/// How a session sends messages: `?order=seq` (the default) or `?order=none`.
#[derive(Default, Deserialize)]
enum Order {
    /// All on one stream, in order.
    #[default]
    #[serde(rename = "seq")]
    Sequenced,
    /// Each on a stream of its own: the client orders them by `seq`.
    #[serde(rename = "none")]
    Unordered,
}

/// `?order=…`; any other parameter (`cursor`) is read elsewhere.
#[derive(Deserialize)]
struct OrderQuery {
    #[serde(default)]
    order: Order,
}

/// One session request: checked, then accepted and served.
async fn session(incoming: IncomingSession, state: AppState) {
    let Ok(Ok(request)) = timeout(state.config.header_timeout, incoming.into_future()).await else {
        return state.metrics.rejected("webtransport_handshake");
    };
    let Ok(uri) = request.path().parse::<Uri>() else { return request.not_found().await };
    if uri.path() != PATH {
        state.metrics.rejected("not_found");
        return request.not_found().await;
    }
    let Ok(Query(OrderQuery { order })) = Query::try_from_uri(&uri) else {
        // 404 for want of a 400: the module docs say why.
        state.metrics.rejected("bad_order");
        return request.not_found().await;
    };
    if let Some(origin) = request.origin()
        && !from_own_page(origin, request.authority(), &state)
    {
        state.metrics.rejected("cross_origin");
        return request.forbidden().await;
    }
    let slot = SubscriberSlot::take(&state);
    let Ok(session) = request.accept().await else { return };
    let slot = match slot {
        Ok(slot) => slot,
        Err(reconnect) => {
            state.metrics.rejected("over_capacity");
            return turn_away(session, reconnect).await;
        }
    };
    let from = resume_from_query(&uri);
    match order {
        Order::Sequenced => serve_session::<Lines>(session, state, from, slot).await,
        Order::Unordered => serve_session::<unordered::Streams>(session, state, from, slot).await,
    }
}

/// Whether `origin` is a page of this server: its host is the session's, on one of the
/// ports the page is served on (the session itself is on the UDP port), or it is one
/// of `--allow-origin`.
fn from_own_page(origin: &str, authority: &str, state: &AppState) -> bool {
    let host = authority.rsplit_once(':').map_or(authority, |(host, _)| host);
    let ports = state.page_ports.get().map_or(&[][..], Vec::as_slice);
    ports.iter().any(|port| origin::check(origin, Some(&format!("{host}:{port}")), &[]).is_ok())
        || origin::check(origin, None, &state.config.allowed_origins).is_ok()
}

/// What a session needs of its sink besides the fan-out's [`Sink`]: its ready line, how
/// it is made from the session's first stream, and how it ends.
trait SessionSink: Sink + Sized {
    /// The session's first line.
    const READY: &'static [u8];
    /// The sink that writes on `first`, the first stream the server opened.
    fn open(session: &Session, first: SendStream, state: &AppState) -> Self;
    /// Takes nothing more and resolves once the client has acknowledged all it took:
    /// closing the session discards what has not reached the client yet.
    fn settle(outbox: &Outbox<Self>) -> impl Future<Output = ()> + Send;
}

/// What both of this transport's sinks write: lines of JSON.
macro_rules! json_lines {
    () => {
        const WRITES: bool = true;
        const TRANSPORT: Transport = Transport::WebTransport;

        fn form() -> &'static WireForm {
            &LINE
        }

        fn gap(gap: &Gap) -> Bytes {
            gap_line(gap)
        }

        fn slow_notice() -> Bytes {
            Bytes::from_static(SLOW_LINE)
        }
    };
}
use json_lines;

/// The ordered sink: every line on the session's one stream. `None` once settled.
struct Lines(Option<SendStream>);

impl Sink for Lines {
    json_lines!();

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let Some(stream) = &mut self.0 else { return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())) };
        Pin::new(stream).poll_write(cx, bytes)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.as_mut().map_or(Poll::Ready(Ok(())), |stream| Pin::new(stream).poll_flush(cx))
    }
}

impl SessionSink for Lines {
    const READY: &'static [u8] = b"{\"ready\":{\"http\":\"3\"}}\n";

    fn open(_: &Session, first: SendStream, _: &AppState) -> Self {
        Lines(Some(first))
    }

    async fn settle(outbox: &Outbox<Self>) {
        if let Some(mut stream) = outbox.with_sink(|lines| lines.0.take()) {
            let _ = stream.finish().await;
        }
    }
}

/// How a session ends.
enum Ending {
    /// The server closes it with this code and reason, after what is queued.
    Close(u32, &'static str),
    /// The server stops: when to come back is queued last, and the client closes.
    Restart(Reconnect),
    /// The client went away.
    Gone,
}

/// At a graceful stop, the client is told when to come back; otherwise it is closed
/// with `code` and `reason`.
fn going_away(state: &AppState, code: u32, reason: &'static str) -> Ending {
    if state.shutdown.is_cancelled() {
        Ending::Restart(Reconnect::restart(&state.config))
    } else {
        Ending::Close(code, reason)
    }
}

/// Runs one session until the client leaves, it is let go, or the server shuts down.
/// New messages are written by the fan-out; this task sends the history, drains what
/// the sink did not take at once, and hands publish streams to their own tasks.
async fn serve_session<S: SessionSink>(session: Session, state: AppState, from: ResumeFrom, _slot: SubscriberSlot) {
    let metrics = state.metrics.transport(Transport::WebTransport);
    let _subscriber = metrics.subscriber(Http::V3);
    let connection = Connection::detached(&state.shutdown, session.remote_address());
    let subscription = state.bus.subscribe_from(from).await;
    let stream = match session.open_uni().await {
        Ok(opening) => opening.await.ok(),
        Err(_) => None,
    };
    let Some(stream) = stream else { return };
    let sink = S::open(&session, stream, &state);
    let outbox = state.fanout.open(&state, sink, subscription.position(), connection.closer());
    let mut catching_up = Some(subscription);
    let mut publishes = JoinSet::new();
    let mut ended = pin!(connection.ended());
    let incoming = state.tasks.spawn(refuse_the_unexpected(session.clone(), state.clone()));
    let mut losses = loss_count::LossCount::new(&session);
    let mut count_losses = interval(loss_count::EVERY);

    let ending = if outbox.send(Bytes::from_static(S::READY)).is_err() {
        Ending::Gone
    } else {
        loop {
            state.fanout.keep_up(&state, &outbox, &mut catching_up, metrics);
            tokio::select! {
                biased;
                () = outbox.woken() => match Fanout::woken(&state, &outbox, &mut catching_up).await {
                    None | Some(Release::Behind) => {}
                    Some(Release::Ended) => break going_away(&state, GOING_AWAY, "server is going away"),
                    Some(Release::Slow) => break Ending::Close(SLOW_CONSUMER, "slow consumer: fell too far behind"),
                },
                written = outbox.drain(), if outbox.waiting() > 0 => {
                    if written.is_err() {
                        break Ending::Gone;
                    }
                }
                stream = session.accept_bi() => match stream {
                    Ok((send, recv)) if publishes.len() < MAX_PUBLISH_STREAMS => {
                        publishes.spawn(publish::publish(send, recv, state.clone(), connection.peer()));
                    }
                    Ok((mut send, recv)) => {
                        state.metrics.rejected("webtransport_too_many_streams");
                        let _ = send.reset(VarInt::from_u32(SLOW_CONSUMER));
                        recv.stop(VarInt::from_u32(SLOW_CONSUMER));
                    }
                    Err(_) => break Ending::Gone,
                },
                Some(_) = publishes.join_next() => {}
                _ = count_losses.tick() => losses.add(&state),
                () = &mut ended => break going_away(&state, GOING_AWAY, "server shutting down"),
            }
        }
    };
    state.fanout.leave(&outbox);
    incoming.abort();
    losses.add(&state);
    match ending {
        Ending::Close(code, reason) => {
            // What is queued (a slow consumer's notice last) goes first.
            let _ = timeout(CLOSE_GRACE, async {
                let _ = outbox.drain().await;
                S::settle(&outbox).await;
            })
            .await;
            session.close(VarInt::from_u32(code), reason.as_bytes());
        }
        Ending::Restart(reconnect) => {
            let _ = outbox.send(reconnect_line(&reconnect));
            let _ = timeout(CLOSE_GRACE, async {
                let _ = outbox.drain().await;
                S::settle(&outbox).await;
                session.closed().await;
            })
            .await;
            close_told(&session, &reconnect);
        }
        Ending::Gone => {}
    }
    publishes.abort_all();
}

/// Tells a session refused for want of a slot when to come back, on a stream of its own.
async fn turn_away(session: Session, reconnect: Reconnect) {
    let _ = timeout(CLOSE_GRACE, async {
        let Ok(opening) = session.open_uni().await else { return };
        let Ok(mut stream) = opening.await else { return };
        let _ = stream.write_all(&reconnect_line(&reconnect)).await;
        let _ = stream.finish().await;
        session.closed().await;
    })
    .await;
    close_told(&session, &reconnect);
}

/// Closes a session that was told when to come back, once its client has read that and
/// closed it (or the grace has passed): closing first could discard the notice before the
/// page reads it.
fn close_told(session: &Session, reconnect: &Reconnect) {
    session.close(VarInt::from_u32(reconnect.close_code().into()), reconnect.sentence().as_bytes());
}

/// Stops the client's unidirectional streams and drops its datagrams: neither is part
/// of the contract. Each counted, so a client that floods them shows.
async fn refuse_the_unexpected(session: Session, state: AppState) {
    loop {
        tokio::select! {
            stream = session.accept_uni() => match stream {
                Ok(stream) => {
                    state.metrics.rejected("webtransport_uni_stream");
                    stream.stop(VarInt::from_u32(0));
                }
                Err(_) => return,
            },
            datagram = session.receive_datagram() => match datagram {
                Ok(_) => state.metrics.rejected("webtransport_datagram"),
                Err(_) => return,
            },
        }
    }
}
