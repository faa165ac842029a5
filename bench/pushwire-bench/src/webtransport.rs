//! WebTransport's carriage: pushwire's `/a/message/webtransport` over HTTP/3 (QUIC, on
//! UDP at the HTTP port's number), opened as a browser opens it, handing over the
//! server's lines (what they mean is [`crate::clients`]'s business, as for the other
//! transports). It first asks
//! `GET /a/message/webtransport/certificate` on which port and under which self-signed
//! certificate the server offers it, and pins that certificate by its SHA-256 (a
//! browser's `serverCertificateHashes`). The server writes newline-delimited JSON on
//! one stream it opens: the ready line, then messages and notices. Unordered
//! (`?order=none`), that stream carries the notices and each message comes on a stream
//! of its own. Publishing in-band is a bidirectional stream per message.
//!
//! QUIC counts its own bytes: each feed adds its connection's UDP payload (QUIC
//! headers, ACK frames and AEAD tags included, as TLS records and TCP payload are for
//! the other transports; IP and UDP headers not, as IP and TCP headers are not) to its
//! group's [`Traffic`] as it reads. Sessions share a few client endpoints (UDP sockets),
//! as a browser's tabs share its network stack, so 10,000 sessions are not 10,000
//! sockets in the load generator.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use http_body_util::{BodyExt, Full};
use hyper::Method;
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::sync::{Mutex, Semaphore, mpsc};
use wtransport::endpoint::endpoint_side::Client;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection as Session, RecvStream};

use crate::http::{ClientError, Connector};
use crate::wire::Traffic;

/// Client endpoints (UDP sockets) the sessions of one scenario share, in turn.
const ENDPOINTS: usize = 4;
/// Session handshakes in flight at once. Each is a few packets of up to 1,200 bytes
/// into the server's one UDP socket, whose receive buffer is the kernel's default
/// (208 KiB); 64 at once overflowed it, and a lost handshake packet can end a session
/// in wtransport 0.7's HTTP/3 layer (H3_FRAME_UNEXPECTED, H3_EXCESSIVE_LOAD: see
/// docs/performance.md), where a browser opening one session would not meet it.
const HANDSHAKES: usize = 16;
/// Longest line (or one message's stream) accepted: the largest payload the matrices
/// send (16 KiB), JSON-escaped at most twice over, and the message's other fields.
const MAX_LINE: usize = 64 * 1024;

/// What the server offers, learnt once per scenario: the sessions' shared endpoints
/// and the address they connect to.
pub(crate) struct Clients {
    endpoints: Vec<wtransport::Endpoint<Client>>,
    next: AtomicUsize,
    authority: SocketAddr,
    handshakes: Semaphore,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Clients").field("authority", &self.authority).finish_non_exhaustive()
    }
}

/// The answer of `GET /a/message/webtransport/certificate`.
#[derive(Deserialize)]
struct Offer {
    available: bool,
    port: Option<u16>,
    sha256: Option<String>,
    reason: Option<String>,
}

/// A scenario's [`Clients`], made by its first session; made again after a session
/// fails to open, as the page asks the server again: a restarted server has a new
/// self-signed certificate.
pub(crate) type SharedClients = Arc<Mutex<Option<Arc<Clients>>>>;

impl Clients {
    /// Asks the server over `connector` what it offers and makes the endpoints.
    async fn new(connector: &Connector, traffic: &Arc<Traffic>) -> Result<Clients, ClientError> {
        let mut connection = connector.open(traffic).await?;
        let request =
            connector.request(Method::GET, "/a/message/webtransport/certificate").body(Full::new(Bytes::new()))?;
        let body = connection.send(request).await?.into_body().collect().await?.to_bytes();
        let offer: Offer = serde_json::from_slice(&body).map_err(|e| ClientError::Http(format!("the offer: {e}")))?;
        let (true, Some(port)) = (offer.available, offer.port) else {
            let reason = offer.reason.unwrap_or_default();
            return Err(ClientError::Http(format!("the server does not offer WebTransport: {reason}")));
        };
        let hash = offer.sha256.ok_or(ClientError::Http("no certificate hash to pin".into()))?;
        let hash = base64::engine::general_purpose::STANDARD.decode(hash).ok().and_then(|h| h.try_into().ok());
        let hash: [u8; 32] = hash.ok_or(ClientError::Http("the certificate hash is not 32 bytes of base64".into()))?;
        // On loopback when the server is; otherwise (across the packet link) wherever
        // the route to it goes.
        let local = if connector.addr().ip().is_loopback() { Ipv4Addr::LOCALHOST } else { Ipv4Addr::UNSPECIFIED };
        let endpoints = (0..ENDPOINTS)
            .map(|_| {
                let config = ClientConfig::builder()
                    .with_bind_address(SocketAddr::from((local, 0)))
                    .with_server_certificate_hashes([Sha256Digest::new(hash)])
                    .build();
                wtransport::Endpoint::client(config)
            })
            .collect::<Result<_, _>>()?;
        let authority = SocketAddr::new(connector.addr().ip(), port);
        Ok(Clients { endpoints, next: AtomicUsize::new(0), authority, handshakes: Semaphore::new(HANDSHAKES) })
    }

    fn endpoint(&self) -> &wtransport::Endpoint<Client> {
        &self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()]
    }
}

/// A subscriber's session.
pub(crate) struct WebTransport {
    session: Session,
    /// The server's stream: every line (ordered), or the notices (unordered).
    lines: RecvStream,
    buffer: BytesMut,
    /// Unordered: the message streams being read, each to its end.
    messages: Option<FuturesUnordered<futures::future::BoxFuture<'static, std::io::Result<Vec<u8>>>>>,
    inband: Option<mpsc::Receiver<String>>,
    traffic: Arc<Traffic>,
    /// The connection's UDP bytes (received, sent) already added to `traffic`.
    counted: (u64, u64),
}

impl WebTransport {
    /// Opens a session after `cursor`, each message on its own stream if `unordered`,
    /// and waits for the server's stream.
    pub(crate) async fn connect(
        connector: &Connector,
        clients: &SharedClients,
        cursor: &str,
        unordered: bool,
        traffic: &Arc<Traffic>,
        inband: Option<mpsc::Receiver<String>>,
    ) -> Result<Self, ClientError> {
        let shared = clients;
        let clients = {
            let mut made = shared.lock().await;
            match &*made {
                Some(clients) => clients.clone(),
                None => made.insert(Arc::new(Clients::new(connector, traffic).await?)).clone(),
            }
        };
        let order = if unordered { "&order=none" } else { "" };
        let url = format!("https://{}/a/message/webtransport?cursor={cursor}{order}", clients.authority);
        let opened = async {
            let _turn = clients.handshakes.acquire().await.expect("the semaphore is never closed");
            let session = clients.endpoint().connect(url).await.map_err(|e| ClientError::Http(e.to_string()))?;
            let lines = session.accept_uni().await.map_err(|e| ClientError::Http(e.to_string()))?;
            Ok::<_, ClientError>((session, lines))
        };
        let (session, lines) = match opened.await {
            Ok(opened) => opened,
            Err(e) => {
                // Forgotten (once, by whichever failed session gets here first), so the
                // next session asks the server what it offers now.
                let mut made = shared.lock().await;
                if made.as_ref().is_some_and(|made| Arc::ptr_eq(made, &clients)) {
                    *made = None;
                }
                return Err(e);
            }
        };
        let messages = unordered.then(FuturesUnordered::new);
        let mut feed = WebTransport {
            session,
            lines,
            buffer: BytesMut::new(),
            messages,
            inband,
            traffic: traffic.clone(),
            counted: (0, 0),
        };
        feed.count();
        Ok(feed)
    }

    /// Adds the UDP bytes moved since the last call to the group's tally.
    fn count(&mut self) {
        let stats = self.session.quic_connection().stats();
        let (received, sent) = (stats.udp_rx.bytes, stats.udp_tx.bytes);
        self.traffic.add(received - self.counted.0, sent - self.counted.1);
        self.counted = (received, sent);
    }

    /// Waits for the next lines from the server (without their newlines) and appends
    /// them to `lines`; publishes what comes in on `inband` meanwhile.
    pub(crate) async fn next(&mut self, lines: &mut Vec<Bytes>) -> Result<(), ClientError> {
        let before = lines.len();
        while lines.len() == before {
            while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line = self.buffer.split_to(end + 1).freeze();
                lines.push(line.slice(..end));
            }
            if lines.len() > before {
                break;
            }
            if self.buffer.len() > MAX_LINE {
                return Err(ClientError::Http("a line longer than any message".into()));
            }
            let mut chunk = [0; 8192];
            tokio::select! {
                read = self.lines.read(&mut chunk) => match read {
                    Ok(None) => return Err(ClientError::Closed),
                    Ok(Some(read)) => self.buffer.extend_from_slice(&chunk[..read]),
                    Err(e) => return Err(ClientError::Http(e.to_string())),
                },
                stream = self.session.accept_uni(), if self.messages.is_some() => {
                    let stream = stream.map_err(|e| ClientError::Http(e.to_string()))?;
                    self.messages.as_mut().expect("unordered").push(Box::pin(read_to_end(stream)));
                }
                Some(message) = next_message(&mut self.messages) => {
                    let message = Bytes::from(message?);
                    lines.push(message.slice(..message.trim_ascii_end().len()));
                }
                Some(payload) = next_payload(&mut self.inband) => {
                    tokio::spawn(publish(self.session.clone(), payload));
                }
            }
        }
        self.count();
        Ok(())
    }
}

/// One message stream, read to its end.
async fn read_to_end(stream: RecvStream) -> std::io::Result<Vec<u8>> {
    let mut message = Vec::new();
    stream.take(MAX_LINE as u64).read_to_end(&mut message).await?;
    Ok(message)
}

async fn next_message(
    messages: &mut Option<FuturesUnordered<futures::future::BoxFuture<'static, std::io::Result<Vec<u8>>>>>,
) -> Option<std::io::Result<Vec<u8>>> {
    match messages {
        Some(messages) if !messages.is_empty() => messages.next().await,
        _ => std::future::pending().await,
    }
}

async fn next_payload(inband: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match inband {
        Some(inband) => inband.recv().await,
        None => std::future::pending().await,
    }
}

/// Publishes `payload` on a stream of its own, as the page does, and reads the answer
/// (the message or a refusal; the message itself arrives on the subscription).
async fn publish(session: Session, payload: String) {
    let request = serde_json::json!({ "body": payload }).to_string();
    let published = async {
        let (mut send, mut recv) = session.open_bi().await.ok()?.await.ok()?;
        send.write_all(request.as_bytes()).await.ok()?;
        send.finish().await.ok()?;
        let mut answer = Vec::new();
        (&mut recv).take(MAX_LINE as u64).read_to_end(&mut answer).await.ok()
    };
    // A refused or lost publish shows as a message that never arrives.
    let _answer = published.await;
}
