//! HTTPS for the real-socket tests: a server on TLS (HTTP/2 and HTTP/1.1 by ALPN, its
//! self-signed certificate trusted by the clients here), and an HTTP/2 client that
//! opens WebSockets with extended CONNECT (RFC 8441), as Chromium does.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::client::conn::http2;
use hyper::upgrade::Upgraded;
use hyper_util::rt::{TokioExecutor, TokioIo};
use pushwire::tls::Tls;
use pushwire::{AppState, Config, Listener};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, RootCertStore};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::{TestApp, within};

/// Starts pushwire serving HTTPS only on `127.0.0.1:0`, with a fresh self-signed
/// certificate and an in-memory bus built from `config`.
pub(crate) async fn spawn_https_app(config: Config) -> TestApp {
    let state = AppState::new(super::for_tests(config));
    let tls = Tls::self_signed().expect("make a certificate");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let listeners = vec![Listener::tls(listener, tls.clone())];
    let server = tokio::spawn(pushwire::run_listeners(listeners, state.clone()));
    TestApp { addr, state, server, tls: Some(tls), webtransport: None }
}

impl TestApp {
    /// A TLS connection to the server offering `alpn` (e.g. `h2`), trusting its
    /// certificate for the name `127.0.0.1`.
    pub(crate) async fn tls_connect(&self, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
        let tls = self.tls.as_ref().expect("an HTTPS server");
        let mut roots = RootCertStore::empty();
        roots.add(tls.certificate().clone()).expect("a certificate to trust");
        #[allow(deprecated)] // the ring provider, as the server's (src/tls.rs says why)
        let provider = rustls::crypto::ring::default_provider();
        let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let tcp = within("a TCP connection", TcpStream::connect(self.addr)).await.expect("connect");
        let name = ServerName::try_from("127.0.0.1").expect("an IP address name");
        within("the TLS handshake", TlsConnector::from(Arc::new(config)).connect(name, tcp))
            .await
            .expect("TLS handshake")
    }

    /// An HTTP/2 connection to the server, ready for requests with bodies of type `B`.
    pub(crate) async fn h2<B>(&self) -> http2::SendRequest<B>
    where
        B: hyper::body::Body + Unpin + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let tls = self.tls_connect(&[b"h2"]).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]), "the server chose HTTP/2");
        let (send, connection) =
            within("the HTTP/2 handshake", http2::handshake(TokioExecutor::new(), TokioIo::new(tls)))
                .await
                .expect("HTTP/2 handshake");
        tokio::spawn(connection);
        send
    }

    /// A WebSocket over a stream of `connection` (RFC 8441 extended CONNECT) at
    /// `/a/message/socket{query}`, from a page of `origin` if given: the answer's status,
    /// and the socket if it was 200.
    pub(crate) async fn h2_websocket(
        &self,
        connection: &mut http2::SendRequest<Empty<Bytes>>,
        query: &str,
        origin: Option<&str>,
    ) -> (hyper::StatusCode, Option<WebSocketStream<TokioIo<Upgraded>>>) {
        let mut request = hyper::Request::connect(self.url(&format!("/a/message/socket{query}")))
            .header("sec-websocket-version", "13");
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let mut request = request.body(Empty::new()).expect("a CONNECT request");
        request.extensions_mut().insert(hyper::ext::Protocol::from_static("websocket"));
        within("the CONNECT stream", connection.ready()).await.expect("the connection takes a stream");
        let response = within("the CONNECT answer", connection.send_request(request)).await.expect("CONNECT");
        let status = response.status();
        if status != hyper::StatusCode::OK {
            return (status, None);
        }
        let upgraded = within("the upgraded stream", hyper::upgrade::on(response)).await.expect("an upgraded stream");
        let socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await;
        (status, Some(socket))
    }
}
