//! How a client's requests travel, as the run's [`Http`] setting says: HTTP/1.1 in
//! cleartext or over TLS, one connection per client; or HTTP/2 over TLS, where the
//! subscribers of one endpoint share connections, `per_connection` streams on each (as
//! the tabs of one browser share one connection to a site). WebSocket goes over each:
//! by RFC 6455's upgrade on HTTP/1.1, by RFC 8441's extended CONNECT on HTTP/2.
//!
//! The clients ([`crate::clients`]) say what to send for each server; this module only
//! carries it. Every connection comes from the endpoint's [`Dialer`], so its bytes are
//! counted below TLS.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::header::{self, HeaderValue};
use hyper::http::request;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use crate::record::Http;
use crate::tls;
use crate::wire::{Connection, Dialer, Traffic};

/// Why a client stopped.
#[derive(Debug)]
pub(crate) enum ClientError {
    Io(io::Error),
    Http(String),
    WebSocket(tokio_tungstenite::tungstenite::Error),
    /// The server closed the connection or stream.
    Closed,
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Io(e) => write!(f, "i/o: {e}"),
            ClientError::Http(e) => write!(f, "http: {e}"),
            ClientError::WebSocket(e) => write!(f, "websocket: {e}"),
            ClientError::Closed => f.write_str("closed by the server"),
        }
    }
}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

impl From<hyper::Error> for ClientError {
    fn from(e: hyper::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}

impl From<hyper::http::Error> for ClientError {
    fn from(e: hyper::http::Error) -> Self {
        ClientError::Http(e.to_string())
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(e)
    }
}

/// Opens the connections of one endpoint with one HTTP setting. Clones share the
/// HTTP/2 connections that subscribers take turns to join.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    dialer: Dialer,
    http: Http,
    shared: Option<Arc<SharedConnections>>,
}

impl Connector {
    /// Connections to `dialer`'s address with `http`: the dialer gets the TLS connector
    /// the setting needs.
    pub(crate) fn new(dialer: Dialer, http: Http) -> Self {
        let (dialer, shared) = match http {
            Http::H1 => (dialer, None),
            Http::H1Tls => (dialer.with_tls(tls::connector(b"http/1.1")), None),
            Http::H2Tls { per_connection } => {
                let shared = (per_connection > 1).then(|| Arc::new(SharedConnections::new(per_connection)));
                (dialer.with_tls(tls::connector(b"h2")), shared)
            }
        };
        Connector { dialer, http, shared }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.dialer.addr()
    }

    /// A request to `path` (with its query) in the form the HTTP version wants:
    /// HTTP/1.1 a path and a `Host` header, HTTP/2 the whole URI, whose authority
    /// becomes `:authority` (a browser sends no `host` over HTTP/2).
    pub(crate) fn request(&self, method: Method, path: &str) -> request::Builder {
        match self.http {
            Http::H1 | Http::H1Tls => {
                Request::builder().method(method).uri(path).header(header::HOST, self.addr().to_string())
            }
            Http::H2Tls { .. } => Request::builder().method(method).uri(format!("https://{}{path}", self.addr())),
        }
    }

    /// A connection of the client's own: the publisher's (a back end publishes on its
    /// own connection), or a subscriber's when subscribers do not share connections.
    pub(crate) async fn open(&self, traffic: &Arc<Traffic>) -> Result<HttpConnection, ClientError> {
        let stream = TokioIo::new(self.dialer.connect(traffic).await?);
        let (sender, driver): (Sender, JoinHandle<()>) = match self.http {
            Http::H1 | Http::H1Tls => {
                let (sender, connection) = http1::handshake(stream).await?;
                // Its error surfaces through the sender as well; nothing more to report.
                (Sender::Http1(sender), tokio::spawn(async move { drop(connection.await) }))
            }
            Http::H2Tls { .. } => {
                let (sender, connection) = http2::handshake(TokioExecutor::new(), stream).await?;
                (Sender::Http2(sender), tokio::spawn(async move { drop(connection.await) }))
            }
        };
        Ok(HttpConnection { sender, driver: Arc::new(Driver(driver)) })
    }

    /// A subscriber's connection: its own, or with HTTP/2 and more than one subscriber
    /// per connection, a share of the endpoint's current one.
    pub(crate) async fn open_for_subscriber(&self, traffic: &Arc<Traffic>) -> Result<HttpConnection, ClientError> {
        match &self.shared {
            Some(shared) => shared.join(self, traffic).await,
            None => self.open(traffic).await,
        }
    }

    /// A subscriber's WebSocket to `path`: an upgraded HTTP/1.1 connection of its own,
    /// or an extended CONNECT stream on an HTTP/2 connection (shared or not).
    pub(crate) async fn websocket(
        &self,
        traffic: &Arc<Traffic>,
        path: &str,
    ) -> Result<(WebSocketStream<Connection>, Option<HttpConnection>), ClientError> {
        if let Http::H1 | Http::H1Tls = self.http {
            let scheme = if self.http.tls() { "wss" } else { "ws" };
            let url = format!("{scheme}://{}{path}", self.addr());
            let connection = self.dialer.connect(traffic).await?;
            let (stream, _response) =
                tokio_tungstenite::client_async_with_config(url, connection, Some(websocket_config())).await?;
            return Ok((stream, None));
        }
        let mut connection = self.open_for_subscriber(traffic).await?;
        let mut request = self
            .request(Method::CONNECT, path)
            .header(header::SEC_WEBSOCKET_VERSION, HeaderValue::from_static("13"))
            .body(Full::new(Bytes::new()))?;
        request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        let mut response = connection.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(ClientError::Http(format!("extended CONNECT answered {}", response.status())));
        }
        let upgraded = hyper::upgrade::on(&mut response).await?;
        let stream: Connection = Box::new(TokioIo::new(upgraded));
        Ok((WebSocketStream::from_raw_socket(stream, Role::Client, Some(websocket_config())).await, Some(connection)))
    }
}

/// A subscriber's WebSocket settings: a small read buffer, as the server's. tungstenite
/// zeroes its whole read buffer (128 KiB by default) before every read, which made that
/// the load generator's largest cost per message at 100,000 subscribers.
fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default().read_buffer_size(4 * 1024)
}

/// The HTTP/2 connections an endpoint's subscribers share: the n-th subscriber to
/// connect joins connection `n / per_connection`, which the first of its group opens.
#[derive(Debug)]
struct SharedConnections {
    per_connection: usize,
    joined: AtomicUsize,
    /// Held only to find or add a group's cell, never across the connect (which the
    /// cell's own wait covers), so a std mutex.
    connections: Mutex<Vec<Arc<OnceCell<HttpConnection>>>>,
}

impl SharedConnections {
    fn new(per_connection: usize) -> Self {
        SharedConnections { per_connection, joined: AtomicUsize::new(0), connections: Mutex::new(Vec::new()) }
    }

    async fn join(&self, connector: &Connector, traffic: &Arc<Traffic>) -> Result<HttpConnection, ClientError> {
        let group = self.joined.fetch_add(1, Ordering::Relaxed) / self.per_connection;
        let cell = {
            let mut connections = self.connections.lock().unwrap_or_else(|p| p.into_inner());
            if connections.len() <= group {
                connections.resize_with(group + 1, Default::default);
            }
            connections[group].clone()
        };
        let connection = cell.get_or_try_init(|| connector.open(traffic)).await?;
        Ok(connection.share())
    }
}

/// Aborts a connection's driver task when the last user of the connection is gone.
#[derive(Debug)]
struct Driver(JoinHandle<()>);

impl Drop for Driver {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[derive(Debug)]
enum Sender {
    Http1(http1::SendRequest<Full<Bytes>>),
    Http2(http2::SendRequest<Full<Bytes>>),
}

/// An HTTP connection (HTTP/1.1 keep-alive, or HTTP/2, maybe shared); its driver
/// task ends with its last user.
#[derive(Debug)]
pub(crate) struct HttpConnection {
    sender: Sender,
    driver: Arc<Driver>,
}

impl HttpConnection {
    /// Another handle on the same HTTP/2 connection.
    fn share(&self) -> HttpConnection {
        let sender = match &self.sender {
            Sender::Http2(sender) => Sender::Http2(sender.clone()),
            // Only HTTP/2 connections are shared (`SharedConnections` exists for them only).
            Sender::Http1(_) => unreachable!("an HTTP/1.1 connection is never shared"),
        };
        HttpConnection { sender, driver: self.driver.clone() }
    }

    /// Whether the server has closed it (a new one is needed).
    pub(crate) fn is_closed(&self) -> bool {
        match &self.sender {
            Sender::Http1(sender) => sender.is_closed(),
            Sender::Http2(sender) => sender.is_closed(),
        }
    }

    /// Sends one request (HTTP/1.1: after the previous response).
    pub(crate) async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>, ClientError> {
        Ok(match &mut self.sender {
            Sender::Http1(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
            Sender::Http2(sender) => {
                sender.ready().await?;
                sender.send_request(request).await?
            }
        })
    }
}
