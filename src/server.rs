//! The accept loop: connections served by hyper with the limits `axum::serve` does not
//! offer, and a graceful shutdown.
//!
//! - Plain HTTP is HTTP/1.1 only, served by hyper's `http1` builder directly. Sniffing
//!   for cleartext HTTP/2 (hyper-util's `auto` builder) reads the first 24 bytes ahead,
//!   which makes hyper grow every connection's read buffer from 8 to 16 KiB: 8 KiB more
//!   per idle SSE stream or pending long-poll; and browsers speak HTTP/2 only over TLS.
//! - HTTPS ([`crate::tls`]) offers HTTP/2 and HTTP/1.1 by ALPN and serves each with its
//!   own builder. The TLS handshake must finish within the header timeout (a client that
//!   opens TCP and sends no ClientHello is dropped). HTTP/2 allows extended CONNECT (RFC
//!   8441: WebSockets over an HTTP/2 stream) and at most `--h2-max-streams` streams per
//!   connection; hyper's HTTP/2 (the `h2` crate) answers a flood of resets (CVE-2023-44487)
//!   or of frames with GOAWAY, and an oversized header block with 431.
//! - `TCP_NODELAY` on every socket: a pushed message goes out at once, not after
//!   Nagle's algorithm waits for an ACK.
//! - A header read timeout: a client that sends its request head too slowly (a
//!   slowloris) is dropped instead of holding a socket forever.
//! - Inbound memory is bounded: a request head larger than `--max-header-bytes` gets
//!   431 and the connection is closed (hyper's read buffer grows by doubling and is
//!   checked after each read, so a head in progress holds under twice the limit), and
//!   at most `--max-connections` are open at once; more are closed as they come.
//! - A write buffer limit (`--outbound-limit`): what hyper holds for a client that
//!   does not read.
//! - Accept errors (e.g. out of file descriptors) pause the loop briefly instead of
//!   ending the server.
//! - With `--emulate-rtt` (and its siblings), every connection crosses an emulated
//!   network link (crate `emulated-link`), so the demo shows what a real round trip
//!   does to each transport.
//! - Every request can reach its [`Connection`] (handed to it with the request), so
//!   the fan-out can cut a connection (the slow-consumer rule needs that: a client that
//!   stops reading cannot be reached with an in-band goodbye), and
//!   long-lived handlers wait for the end of their connection rather than on the
//!   shutdown token every connection shares.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use emulated_link::{Link, Side};
use futures::FutureExt as _;
use futures::task::{ArcWake, AtomicWaker};
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tokio_util::task::TaskTracker;

use crate::AppState;
use crate::tls::Tls;
use crate::transport::App;

/// How long the accept loop pauses after an accept error, e.g. EMFILE.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The smallest buffer limit hyper accepts.
const MIN_BUFFER: usize = 8 * 1024;

/// The per-connection limits the accept loop applies.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
    /// How many bytes of a response hyper buffers for a client before it stops
    /// asking the body for more.
    pub outbound: usize,
    /// The network link emulated on every connection (`--emulate-rtt`); usually none.
    pub link: Link,
    /// The largest request head; hyper answers a larger one with 431 and closes.
    pub max_header_bytes: usize,
    /// Connections open at once; more are closed as soon as they are accepted.
    pub max_connections: usize,
    /// Streams open at once on one HTTP/2 connection.
    pub h2_max_streams: u32,
}

/// The TCP connection a request arrived on: a handler can wait for it to end, and hand
/// out a [`Closer`] that ends it whatever its request is doing. It ends when closed or when the server shuts down.
///
/// It is a child of the shutdown token. Waiting on a token takes its lock at every
/// poll, and the shutdown token's lock is shared by every connection (waiting on it was
/// the top user-space cost of long-polling); a connection's lock is its own.
///
/// It also holds the connection's `--max-connections` permit: an upgraded WebSocket
/// outlives hyper's connection task, and counts until its handler lets go of this.
///
/// Every request is handed its connection, so a clone is one reference count.
#[derive(Clone, Debug)]
pub struct Connection(Arc<Open>);

#[derive(Debug)]
struct Open {
    token: CancellationToken,
    /// The client's address and port, as the socket has them (no proxy header is read).
    peer: SocketAddr,
    _permit: Option<OwnedSemaphorePermit>,
}

/// What can close a connection without keeping it counted as open: for a watcher that
/// may outlive the connection (the fan-out's slow-consumer watchdog).
#[derive(Clone, Debug)]
pub struct Closer(CancellationToken);

impl Closer {
    /// Ends the connection now, if it is still open.
    pub fn close(&self) {
        self.0.cancel();
    }
}

impl Connection {
    /// A connection that is not one of this accept loop's (a WebTransport session over
    /// QUIC, from `peer`): it ends when closed or at `shutdown`, and holds no TCP permit.
    pub fn detached(shutdown: &CancellationToken, peer: SocketAddr) -> Self {
        Connection(Arc::new(Open { token: shutdown.child_token(), peer, _permit: None }))
    }

    /// The connection of a request served without a socket (through `oneshot`, in
    /// tests): it ends at shutdown, from the unspecified address (all such requests
    /// share its publish limit).
    pub fn unknown(state: &AppState) -> Self {
        Connection::detached(&state.shutdown, SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// One of this accept loop's connections, holding its `permit`.
    fn accepted(shutdown: &CancellationToken, peer: SocketAddr, permit: OwnedSemaphorePermit) -> Self {
        Connection(Arc::new(Open { token: shutdown.child_token(), peer, _permit: Some(permit) }))
    }

    /// The client's address and port: the key of its publish limit.
    pub fn peer(&self) -> SocketAddr {
        self.0.peer
    }

    /// A handle that closes this connection but does not hold its `--max-connections`
    /// permit.
    pub fn closer(&self) -> Closer {
        Closer(self.0.token.clone())
    }

    /// Resolves when the connection is closed or the server shuts down.
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.0.token.cancelled()
    }
}

/// For handlers behind the router, which [`App`] hands the connection as a request
/// extension.
impl FromRequestParts<AppState> for Connection {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Infallible> {
        // Always there when the request came through `App`.
        Ok(parts.extensions.get::<Connection>().cloned().unwrap_or_else(|| Connection::unknown(state)))
    }
}

/// Serves `app` on `listener` (over TLS when `tls` is given) until `shutdown` is
/// cancelled, then stops accepting and waits for open connections to finish (the
/// handlers end their own long-lived work when they see `shutdown`).
pub async fn serve(
    listener: TcpListener,
    app: App,
    limits: Limits,
    tls: Option<Tls>,
    shutdown: CancellationToken,
    refused: impl Fn(Refusal) + Clone + Send + Sync + 'static,
) -> std::io::Result<()> {
    let mut http1 = http1::Builder::new();
    http1
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(limits.max_header_bytes)
        // A small answer copied after its head and written with one `write` costs less
        // than queueing both for `writev` (callgrind, docs/performance.md).
        .writev(false)
        // hyper stops asking a streaming body for more once this much is buffered:
        // the SSE outbound limit. hyper refuses less than 8 KiB.
        .max_buf_size(limits.outbound.max(MIN_BUFFER));
    let mut http2 = http2::Builder::new(TokioExecutor::new());
    http2
        .timer(TokioTimer::new())
        .enable_connect_protocol()
        .max_concurrent_streams(limits.h2_max_streams)
        // HPACK-decoded size, so a compressed head cannot grow past the limit.
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_send_buf_size(limits.outbound.max(MIN_BUFFER));
    let served = Arc::new(Served { http1, http2, app, tls, header_timeout: limits.header_timeout });
    let connections = TaskTracker::new();
    // One permit per open connection; a connection's task holds it until it ends.
    let open = Arc::new(Semaphore::new(limits.max_connections));

    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            // Over the cap: closed before a byte is read, so it costs next to nothing.
            drop(stream);
            refused(Refusal::TooManyConnections);
            continue;
        };
        // Best effort: a socket that refuses NODELAY still works, just with more delay.
        let _ = stream.set_nodelay(true);
        let closer = Connection::accepted(&shutdown, peer, permit);
        let (served, shutdown, refused) = (served.clone(), shutdown.clone(), refused.clone());
        if limits.link.is_emulated() {
            let stream = limits.link.wrap(stream, Side::Server);
            spawn(&connections, served, stream, closer, shutdown, refused);
        } else {
            spawn(&connections, served, stream, closer, shutdown, refused);
        }
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}

/// Serves one connection as a task of its own. A plain connection's task holds only
/// HTTP/1.1's state: a future that could also do TLS and HTTP/2 would be as large as
/// their state too, and every idle connection would carry that (about 10 KiB).
fn spawn<I>(
    connections: &TaskTracker,
    served: Arc<Served>,
    io: I,
    closer: Connection,
    shutdown: CancellationToken,
    refused: impl Fn(Refusal) + Send + 'static,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    if served.tls.is_some() {
        connections.spawn(async move { served.https(io, closer, shutdown, refused).await });
    } else {
        connections.spawn(served.http1(io, closer, shutdown, refused));
    }
}

/// What every connection of one listener is served with.
struct Served {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
    app: App,
    tls: Option<Tls>,
    header_timeout: Duration,
}

impl Served {
    /// Serves the requests of one HTTPS connection until it ends, the server closes
    /// it, or the server shuts down: the TLS handshake, then HTTP/2 or HTTP/1.1.
    async fn https<I>(
        &self,
        io: I,
        closer: Connection,
        shutdown: CancellationToken,
        refused: impl Fn(Refusal) + Send + 'static,
    ) where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let Some(tls) = &self.tls else { return };
        let handshake = tokio::select! {
            handshake = tokio::time::timeout(self.header_timeout, tls.acceptor().accept(io)) => handshake,
            () = closer.ended() => return,
        };
        let stream = match handshake {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                tracing::debug!(%error, "TLS handshake failed");
                return refused(Refusal::TlsHandshakeFailed);
            }
            Err(_elapsed) => return refused(Refusal::TlsHandshakeTimeout),
        };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let service = service(self.app.clone(), closer.clone());
            let connection = self.http2.serve_connection(TokioIo::new(stream), service);
            if let Err(error) = drive(connection, |connection| connection.graceful_shutdown(), closer, shutdown).await
                && let Some(reason) = goaway_sent(&error)
            {
                tracing::debug!(%error, "HTTP/2 connection ended with GOAWAY {reason:?}");
                refused(Refusal::Http2GoAway);
            }
        } else {
            self.http1(stream, closer, shutdown, refused).await;
        }
    }

    /// Serves the requests of one HTTP/1.1 connection until it ends, the server closes
    /// it, or the server shuts down. A plain function returning the connection's future,
    /// not an `async fn`: that would hold hyper's connection twice (its own local, and
    /// the one it moved into `drive`), 2 KiB more for every pending poll.
    fn http1<I, R>(
        &self,
        io: I,
        closer: Connection,
        shutdown: CancellationToken,
        refused: R,
    ) -> impl Future<Output = ()> + Send + 'static + use<I, R>
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
        R: Fn(Refusal) + Send + 'static,
    {
        let service = service(self.app.clone(), closer.clone());
        let connection = self.http1.serve_connection(TokioIo::new(io), service).with_upgrades();
        let driven = drive(connection, |connection| connection.graceful_shutdown(), closer, shutdown);
        async move {
            // hyper has answered 431 and closed.
            if driven.await.is_err_and(|error| error.is_parse_too_large()) {
                refused(Refusal::HeaderTooLarge);
            }
        }
    }
}

/// `app`, handing each request its [`Connection`].
fn service(
    app: App,
    closer: Connection,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = axum::response::Response,
    Error = Infallible,
    Future = impl Future<Output = Result<axum::response::Response, Infallible>> + Send + 'static,
> + Clone
+ Send
+ 'static {
    hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
        app.clone().handle(request, closer.clone()).map(Ok)
    })
}

/// Drives one hyper connection until it ends or the server closes it; at shutdown,
/// lets the request in progress finish (handlers end their own long-lived work), then
/// closes instead of waiting for another. The error the connection ended with, if any.
async fn drive<C>(
    connection: C,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    closer: Connection,
    shutdown: CancellationToken,
) -> hyper::Result<()>
where
    C: Future<Output = hyper::Result<()>>,
{
    let mut connection = std::pin::pin!(connection);
    let ended = std::pin::pin!(closer.ended());
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = WokenOnly::new(ended) => {
            if !shutdown.is_cancelled() {
                tracing::debug!("connection closed by the server");
                return Ok(());
            }
            graceful_shutdown(connection.as_mut());
            connection.await
        }
    };
    if let Err(error) = &result {
        tracing::debug!(%error, "connection ended with an error");
    }
    result
}

/// A future polled only after it woke its task itself. A connection's task wakes
/// several times per request, and each poll of a cancellation token takes its lock:
/// a poll of the connection's end is wasted unless the end woke the task.
struct WokenOnly<F> {
    future: F,
    woken: Arc<Woken>,
}

struct Woken {
    flag: AtomicBool,
    task: AtomicWaker,
}

impl ArcWake for Woken {
    fn wake_by_ref(woken: &Arc<Self>) {
        woken.flag.store(true, Ordering::Release);
        woken.task.wake();
    }
}

impl<F: Future + Unpin> WokenOnly<F> {
    fn new(future: F) -> Self {
        // Woken to begin with: the first poll registers the future's waker.
        WokenOnly { future, woken: Arc::new(Woken { flag: AtomicBool::new(true), task: AtomicWaker::new() }) }
    }
}

impl<F: Future + Unpin> Future for WokenOnly<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.woken.task.register(cx.waker());
        if !self.woken.flag.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let woken = self.woken.clone();
        let waker = futures::task::waker_ref(&woken);
        self.future.poll_unpin(&mut Context::from_waker(&waker))
    }
}

/// The reason of a GOAWAY that hyper's HTTP/2 sent to end a connection (a client that
/// broke the protocol or flooded it, e.g. with resets), if that is how it ended.
fn goaway_sent(error: &hyper::Error) -> Option<h2::Reason> {
    let h2 = std::error::Error::source(error)?.downcast_ref::<h2::Error>()?;
    (h2.is_go_away() && h2.is_library()).then(|| h2.reason()).flatten()
}

/// A connection refused before it reached the router, as the `requests_rejected`
/// metric names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Accepted while `--max-connections` were open, and closed at once.
    TooManyConnections,
    /// A request head over `--max-header-bytes`: answered 431, then closed.
    HeaderTooLarge,
    /// A TLS handshake that did not finish within the header timeout.
    TlsHandshakeTimeout,
    /// A TLS handshake that failed: not TLS, or a client that refused the certificate
    /// (a browser does, once, before its user accepts a self-signed one).
    TlsHandshakeFailed,
    /// An HTTP/2 connection ended by a GOAWAY the server sent: a protocol error, or a
    /// flood of resets (CVE-2023-44487) or of streams.
    Http2GoAway,
}

impl Refusal {
    /// The reason label of the `requests_rejected` metric.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::TooManyConnections => "too_many_connections",
            Refusal::HeaderTooLarge => "header_too_large",
            Refusal::TlsHandshakeTimeout => "tls_handshake_timeout",
            Refusal::TlsHandshakeFailed => "tls_handshake_failed",
            Refusal::Http2GoAway => "http2_goaway",
        }
    }
}
