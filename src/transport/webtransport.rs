//! `/a/message/webtransport[?cursor=ID]`: WebTransport, over HTTP/3 on UDP at the same
//! port number as the HTTP server.
//!
//! The wire contract, all of it (a client needs nothing else):
//! - The server opens one unidirectional stream per session and writes newline-
//!   delimited JSON on it: first `{"ready":{"http":"3"}}`, then the history after
//!   `cursor` (none: everything retained), then every new message — the same objects a
//!   WebSocket receives, one per line: message objects, and gap notices
//!   `{"gap":{"reason":…,"missed":N|null,"cursor":…}}` (no `id`; `cursor` is where to
//!   resume past the gap).
//! - To publish, the client opens a bidirectional stream, writes `{"body":"…"}` and
//!   finishes its side; the server answers on that stream with the published message's
//!   JSON, or `{"error":{"reason":…,"message":…}}` with the reason a refused POST is
//!   counted under (`empty_body`, `body_too_large`, `control_character`,
//!   `bus_unavailable`) or `not_json`, `no_body`, `body_timeout`; then finishes.
//! - The session's `Origin` must be this server's own (or in `--allow-origin`), or it
//!   is answered 403; a path other than this one 404; every subscriber slot taken 429.
//! - A slow consumer follows the fan-out's policy: its last line is
//!   `{"slow":{"reason":"slow_consumer"}}`, then the session is closed with code 1013
//!   (as WebSocket's close code). At shutdown the session is closed with code 1001.
//! - Unidirectional streams and datagrams from the client are not part of the
//!   contract: stopped and dropped, and counted.
//!
//! The certificate is the server's (`--tls-cert`), or the self-signed ECDSA one made at
//! start-up, valid for 13 days: what browsers accept when it is pinned through
//! `serverCertificateHashes`, whose value the page reads from
//! `GET /a/message/webtransport/certificate`.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::Uri;
use axum::routing::get;
use base64::Engine as _;
use bytes::Bytes;
use rustls::pki_types::PrivateKeyDer;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWrite;
use tokio::task::JoinSet;
use tokio::time::timeout;
use wtransport::endpoint::IncomingSession;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::tls::{Certificate, CertificateChain, PrivateKey};
use wtransport::{Connection as Session, Identity, RecvStream, SendStream, ServerConfig, VarInt};

use super::error::publish_reason;
use super::fanout::{Fanout, Release, Sink};
use super::{SubscriberSlot, origin, resume_from_query};
use crate::AppState;
use crate::bus::{Gap, ResumeFrom, WireForm};
use crate::metrics::{Http, Transport};
use crate::server::Connection;
use crate::tls::Tls;

/// The session path.
const PATH: &str = "/a/message/webtransport";
/// How long a closing session gets to send what is queued.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Publish streams a session may have open at once; more are reset.
const MAX_PUBLISH_STREAMS: usize = 16;
/// Session close codes, as WebSocket's: going away, and try again later.
const GOING_AWAY: u32 = 1001;
const SLOW_CONSUMER: u32 = 1013;

/// A message as one line of JSON.
static LINE: WireForm = WireForm::new(|message| Bytes::from([&message.json[..], b"\n"].concat()));

/// Whether this server offers WebTransport, as the page asks.
#[derive(Clone, Debug)]
pub enum Availability {
    /// Serving on this UDP port.
    Serving {
        /// The UDP port.
        port: u16,
        /// For a self-signed certificate, its SHA-256: what a browser must be given
        /// as `serverCertificateHashes` to accept it.
        sha256: Option<[u8; 32]>,
    },
    /// Not serving, and why (`--webtransport off`, or the UDP port is taken).
    Unavailable(String),
}

/// The answer of `GET /a/message/webtransport/certificate`.
#[derive(Serialize)]
struct Offer {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// Base64 of a self-signed certificate's SHA-256 (absent for one browsers trust).
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// What the page learns before it opens a session, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/webtransport/certificate", get(certificate))
}

async fn certificate(State(state): State<AppState>) -> axum::response::Response {
    let offer = match state.webtransport.get() {
        Some(Availability::Serving { port, sha256 }) => Offer {
            available: true,
            port: Some(*port),
            sha256: sha256.map(|hash| base64::engine::general_purpose::STANDARD.encode(hash)),
            reason: None,
        },
        Some(Availability::Unavailable(reason)) => {
            Offer { available: false, port: None, sha256: None, reason: Some(reason.clone()) }
        }
        None => Offer { available: false, port: None, sha256: None, reason: Some("not started".to_owned()) },
    };
    // A struct of strings, numbers and booleans serializes.
    super::json_response(serde_json::to_vec(&offer).expect("the offer serializes"))
}

/// A bound WebTransport endpoint, ready to serve.
pub struct Endpoint {
    inner: wtransport::Endpoint<Server>,
    availability: Availability,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("availability", &self.availability).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds UDP `addr` for HTTP/3 with `tls`'s certificate; says why it cannot.
    pub fn bind(addr: SocketAddr, tls: &Tls, idle: Duration) -> Result<Self, String> {
        let (chain, key) = tls.chain_and_key();
        let PrivateKeyDer::Pkcs8(key) = key else {
            return Err("WebTransport needs a PKCS#8 private key (BEGIN PRIVATE KEY)".to_owned());
        };
        let certificates = chain.iter().map(|der| Certificate::from_der(der.to_vec()));
        let certificates = certificates.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let identity = Identity::new(
            CertificateChain::new(certificates),
            PrivateKey::from_der_pkcs8(key.secret_pkcs8_der().to_vec()),
        );
        let config = ServerConfig::builder()
            .with_bind_address(addr)
            .with_identity(identity)
            .keep_alive_interval(Some(idle / 3))
            .max_idle_timeout(Some(idle))
            .map_err(|e| e.to_string())?
            .build();
        let inner = wtransport::Endpoint::server(config).map_err(|e| format!("cannot use UDP {addr}: {e}"))?;
        let port = inner.local_addr().map_err(|e| e.to_string())?.port();
        let sha256 = tls.spki_sha256().is_some().then(|| tls.sha256_bytes());
        Ok(Endpoint { inner, availability: Availability::Serving { port, sha256 } })
    }

    /// What the page is told about this endpoint.
    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Accepts sessions until shutdown; each runs as a task of the server's.
pub async fn serve(endpoint: Endpoint, state: AppState) {
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.inner.accept() => incoming,
            () = state.shutdown.cancelled() => break,
        };
        state.tasks.spawn(session(incoming, state.clone()));
    }
    // Sessions end themselves at shutdown; this waits for their last packets.
    endpoint.inner.close(VarInt::from_u32(GOING_AWAY), b"server shutting down");
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
    if let Some(origin) = request.origin()
        && !from_own_page(origin, request.authority(), &state)
    {
        state.metrics.rejected("cross_origin");
        return request.forbidden().await;
    }
    let Ok(slot) = SubscriberSlot::take(&state) else {
        state.metrics.rejected("over_capacity");
        return request.too_many_requests().await;
    };
    if let Ok(session) = request.accept().await {
        serve_session(session, state, resume_from_query(&uri), slot).await;
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

/// This transport's sink: the session's one stream to the client.
struct Lines(SendStream);

impl Sink for Lines {
    const WRITES: bool = true;
    const TRANSPORT: Transport = Transport::WebTransport;

    fn form() -> &'static WireForm {
        &LINE
    }

    fn gap(gap: &Gap) -> Bytes {
        Bytes::from(format!("{{\"gap\":{}}}\n", gap.to_json()))
    }

    fn slow_notice() -> Bytes {
        Bytes::from_static(b"{\"slow\":{\"reason\":\"slow_consumer\"}}\n")
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, bytes)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
}

/// How a session ends.
enum Ending {
    /// The server closes it with this code and reason, after what is queued.
    Close(u32, &'static str),
    /// The client went away.
    Gone,
}

/// Runs one session until the client leaves, it is let go, or the server shuts down.
/// New messages are written by the fan-out; this task sends the history, drains what
/// the stream did not take at once, and hands publish streams to their own tasks.
async fn serve_session(session: Session, state: AppState, from: ResumeFrom, _slot: SubscriberSlot) {
    let metrics = state.metrics.transport(Transport::WebTransport);
    let _subscriber = metrics.subscriber(Http::V3);
    let connection = Connection::detached(&state.shutdown);
    let subscription = state.bus.subscribe_from(from).await;
    let stream = match session.open_uni().await {
        Ok(opening) => opening.await.ok(),
        Err(_) => None,
    };
    let Some(stream) = stream else { return };
    let outbox = state.fanout.open(&state, Lines(stream), subscription.position(), connection.closer());
    let mut catching_up = Some(subscription);
    let mut publishes = JoinSet::new();
    let mut ended = pin!(connection.ended());
    let incoming = state.tasks.spawn(refuse_the_unexpected(session.clone(), state.clone()));

    let ending = if outbox.send(Bytes::from_static(b"{\"ready\":{\"http\":\"3\"}}\n")).is_err() {
        Ending::Gone
    } else {
        loop {
            state.fanout.keep_up(&state, &outbox, &mut catching_up, metrics);
            tokio::select! {
                biased;
                () = outbox.woken() => match Fanout::woken(&state, &outbox, &mut catching_up).await {
                    None | Some(Release::Behind) => {}
                    Some(Release::Ended) => break Ending::Close(GOING_AWAY, "server is going away"),
                    Some(Release::Slow) => break Ending::Close(SLOW_CONSUMER, "slow consumer: fell too far behind"),
                },
                written = outbox.drain(), if outbox.waiting() > 0 => {
                    if written.is_err() {
                        break Ending::Gone;
                    }
                }
                stream = session.accept_bi() => match stream {
                    Ok((send, recv)) if publishes.len() < MAX_PUBLISH_STREAMS => {
                        publishes.spawn(publish(send, recv, state.clone()));
                    }
                    Ok((mut send, recv)) => {
                        state.metrics.rejected("webtransport_too_many_streams");
                        let _ = send.reset(VarInt::from_u32(SLOW_CONSUMER));
                        recv.stop(VarInt::from_u32(SLOW_CONSUMER));
                    }
                    Err(_) => break Ending::Gone,
                },
                Some(_) = publishes.join_next() => {}
                () = &mut ended => break Ending::Close(GOING_AWAY, "server shutting down"),
            }
        }
    };
    state.fanout.leave(&outbox);
    incoming.abort();
    if let Ending::Close(code, reason) = ending {
        // What is queued (a slow consumer's notice last) goes first.
        let _ = timeout(CLOSE_GRACE, outbox.drain()).await;
        session.close(VarInt::from_u32(code), reason.as_bytes());
    }
    publishes.abort_all();
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

/// A publish stream's request: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// Reads one publish stream to its end, publishes, and answers on it.
async fn publish(mut send: SendStream, recv: RecvStream, state: AppState) {
    let answer = match read_post(recv, &state).await {
        Ok(body) => match state.bus.publish(body).await {
            Ok(message) => {
                state.metrics.published();
                Bytes::from([&message.json[..], b"\n"].concat())
            }
            Err(error) => refusal(&state, publish_reason(&error), &error.to_string()),
        },
        Err((reason, message)) => refusal(&state, reason, message),
    };
    let _ = timeout(CLOSE_GRACE, async {
        send.write_all(&answer).await?;
        send.finish().await
    })
    .await;
}

/// The body of a publish stream, or why it is refused.
async fn read_post(mut recv: RecvStream, state: &AppState) -> Result<String, (&'static str, &'static str)> {
    // A message object carries its body about twice, escaped: a generous bound.
    let limit = state.config.max_body * 6 + 1024;
    let mut bytes = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match timeout(state.config.body_timeout, recv.read(&mut buffer)).await {
            Err(_elapsed) => return Err(("body_timeout", "the stream stalled before it finished")),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(read))) => bytes.extend_from_slice(&buffer[..read]),
            Ok(Err(_)) => return Err(("body_unreadable", "the stream was reset")),
        }
        if bytes.len() > limit {
            return Err(("body_too_large", "request body too large"));
        }
    }
    let post: Post = serde_json::from_slice(&bytes).map_err(|_| ("not_json", "the stream is not a JSON object"))?;
    post.body.ok_or(("no_body", "the object has no \"body\""))
}

/// An `{"error":…}` answer, counted under `reason` as the other paths count it.
fn refusal(state: &AppState, reason: &'static str, message: &str) -> Bytes {
    state.metrics.rejected(reason);
    let error = serde_json::json!({ "error": { "reason": reason, "message": message } });
    Bytes::from(format!("{error}\n"))
}
