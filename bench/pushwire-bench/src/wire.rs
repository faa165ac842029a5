//! Byte counting at the client's socket layer.
//!
//! Every connection the load generator opens is a [`Counted`] stream that adds what it
//! reads and writes to a shared [`Traffic`] tally, so "bytes on the wire per message"
//! includes HTTP headers, chunked framing, SSE field names and WebSocket frame
//! headers: everything above TCP. Over TLS, the counted stream is the TCP stream under
//! it, so TLS records (handshakes, record headers, authentication tags) and HTTP/2
//! frames count too. Connections are opened through [`Dialer`], which also bounds how
//! many handshakes (TCP, and TLS when it has a connector) are in flight at once (a burst
//! of 10,000 SYNs would overflow the server's accept backlog and turn into 1 s
//! retransmits) and, for the network matrix, puts each connection behind an emulated
//! link (crate `emulated-link`), or makes its socket on the packet link's server side
//! (crate `packet-link`), where a back end's publisher sits beside the server.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use emulated_link::{Link, Side};
use packet_link::PacketLink;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::rustls::pki_types::ServerName;

/// Bytes read and written by a group of connections (subscribers, or the publisher).
#[derive(Debug, Default)]
pub(crate) struct Traffic {
    read: AtomicU64,
    written: AtomicU64,
}

impl Traffic {
    /// `(read, written)` so far.
    pub(crate) fn snapshot(&self) -> (u64, u64) {
        (self.read.load(Ordering::Relaxed), self.written.load(Ordering::Relaxed))
    }

    /// Adds what a connection not counted here moved (QUIC counts its own UDP bytes).
    pub(crate) fn add(&self, read: u64, written: u64) {
        self.read.fetch_add(read, Ordering::Relaxed);
        self.written.fetch_add(written, Ordering::Relaxed);
    }
}

/// What a connection is: a TCP stream, the application's end of an emulated link, TLS
/// over either, or an upgraded HTTP/2 stream.
pub(crate) trait Wire: AsyncRead + AsyncWrite + Send + Unpin {}

/// An open connection, counted below its TLS if it has any.
pub(crate) type Connection = Box<dyn Wire>;

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Wire for T {}

/// A connection that counts its bytes into a [`Traffic`].
pub(crate) struct Counted {
    inner: Box<dyn Wire>,
    traffic: Arc<Traffic>,
}

impl AsyncRead for Counted {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let poll = Pin::new(&mut this.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        this.traffic.read.fetch_add(read as u64, Ordering::Relaxed);
        poll
    }
}

impl AsyncWrite for Counted {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = poll {
            this.traffic.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = poll {
            this.traffic.written.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// How many TCP handshakes may be in flight at once. Below the accept backlog of
/// tokio (1024) and of nginx (511 by default), so no SYN is dropped.
const CONCURRENT_CONNECTS: usize = 256;
/// A handshake slower than this on loopback means the server is not accepting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Opens counted connections to one address, a bounded number at a time, each behind
/// the dialer's emulated link (none by default) and over TLS if it has a connector.
#[derive(Clone)]
pub(crate) struct Dialer {
    addr: SocketAddr,
    /// What every clone of this dialer shares (one `Arc`, so a dialer stays small).
    shared: Arc<Shared>,
    link: Link,
    tls: Option<TlsConnector>,
    /// Make the sockets on this packet link's server side, not in the calling thread's
    /// network namespace.
    server_side: Option<Arc<PacketLink>>,
}

struct Shared {
    permits: Semaphore,
    /// Connect from this many loopback addresses in turn (127.0.0.1, .2, …), and the
    /// turn: with tens of thousands of connections to one port from one address, the
    /// kernel's search for a free source port became the load generator's largest cost.
    sources: u8,
    next_source: AtomicUsize,
}

impl Shared {
    fn new(sources: u8) -> Arc<Shared> {
        Arc::new(Shared {
            permits: Semaphore::new(CONCURRENT_CONNECTS),
            sources: sources.max(1),
            next_source: AtomicUsize::new(0),
        })
    }
}

impl std::fmt::Debug for Dialer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dialer").field("addr", &self.addr).field("tls", &self.tls.is_some()).finish()
    }
}

impl Dialer {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Dialer { addr, shared: Shared::new(1), link: Link::default(), tls: None, server_side: None }
    }

    /// The same dialer, connecting from `sources` loopback addresses in turn (with a
    /// handshake limit of its own).
    pub(crate) fn connecting_from(self, sources: u8) -> Self {
        Dialer { shared: Shared::new(sources), ..self }
    }

    /// The same dialer, its connections behind `link`.
    pub(crate) fn with_link(self, link: Link) -> Self {
        Dialer { link, ..self }
    }

    /// The same dialer, its connections made from `link`'s server side.
    pub(crate) fn on_server_side(self, link: Arc<PacketLink>) -> Self {
        Dialer { server_side: Some(link), ..self }
    }

    /// The same dialer, its connections over TLS with `tls` (see [`crate::tls`]).
    pub(crate) fn with_tls(self, tls: TlsConnector) -> Self {
        Dialer { tls: Some(tls), ..self }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A new connection whose bytes count into `traffic`, its TLS handshake done.
    pub(crate) async fn connect(&self, traffic: &Arc<Traffic>) -> io::Result<Connection> {
        // The semaphore is never closed, so acquiring only waits.
        let _permit = self.shared.permits.acquire().await.expect("the dial semaphore is never closed");
        tokio::time::timeout(CONNECT_TIMEOUT, self.handshakes(traffic))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connect timed out"))?
    }

    async fn handshakes(&self, traffic: &Arc<Traffic>) -> io::Result<Connection> {
        let stream = match &self.server_side {
            None if self.shared.sources > 1 => {
                let turn = self.shared.next_source.fetch_add(1, Ordering::Relaxed) % usize::from(self.shared.sources);
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1 + turn as u8), 0)))?;
                socket.connect(self.addr).await?
            }
            None => TcpStream::connect(self.addr).await?,
            // A socket belongs to the namespace it was made in, whichever thread uses it.
            Some(link) => link.server().run(TcpSocket::new_v4)?.connect(self.addr).await?,
        };
        stream.set_nodelay(true)?;
        let inner: Box<dyn Wire> =
            if self.link.is_emulated() { Box::new(self.link.wrap(stream, Side::Client)) } else { Box::new(stream) };
        let counted = Counted { inner, traffic: traffic.clone() };
        let Some(tls) = &self.tls else {
            return Ok(Box::new(counted));
        };
        let stream = tls.connect(ServerName::IpAddress(self.addr.ip().into()), counted).await?;
        // The connector offers one protocol; a server that picks none has not agreed
        // to it (an HTTP/1.1-only server asked for h2), and its figures would be
        // reported under the wrong HTTP version.
        if stream.get_ref().1.alpn_protocol().is_none() {
            return Err(io::Error::other("the server accepted none of the offered ALPN protocols"));
        }
        Ok(Box::new(stream))
    }
}
