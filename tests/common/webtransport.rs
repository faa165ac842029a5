//! WebTransport for the real-socket tests: a server with its HTTP/1.1 listener on TCP
//! and WebTransport on UDP at the same port number, and a client (wtransport's) that
//! pins the server's self-signed certificate by its hash, as a browser does.

use pushwire::tls::Tls;
use pushwire::transport::webtransport::Endpoint;
use pushwire::{AppState, Config, Listener};
use serde_json::Value;
use tokio::net::TcpListener;
use wtransport::endpoint::ConnectOptions;
use wtransport::error::ConnectingError;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, RecvStream};

use super::{TestApp, within};

/// Starts pushwire on `127.0.0.1:0` (TCP) and WebTransport on the same UDP port.
pub(crate) async fn spawn_webtransport_app(config: Config) -> TestApp {
    let state = AppState::new(config);
    let tls = Tls::self_signed().expect("make a certificate");
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let endpoint = Endpoint::bind(addr, &tls, state.config.ws_ping * 2).expect("bind UDP at the same port");
    let listeners = vec![Listener::plain(listener), Listener::WebTransport(endpoint)];
    let server = tokio::spawn(pushwire::run_listeners(listeners, state.clone()));
    TestApp { addr, state, server, tls: None, webtransport: Some(tls.sha256_bytes()) }
}

/// A WebTransport session and the stream the server writes its lines on.
pub(crate) struct WtClient {
    pub session: Connection,
    lines: RecvStream,
    buffer: Vec<u8>,
}

impl TestApp {
    /// A session at `/a/message/webtransport{query}`, from a page of `origin` if given.
    pub(crate) async fn try_webtransport(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<WtClient, ConnectingError> {
        let hash = self.webtransport.expect("a WebTransport server");
        let config = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([Sha256Digest::new(hash)])
            .build();
        let endpoint = wtransport::Endpoint::client(config).expect("a client endpoint");
        let mut options = ConnectOptions::builder(format!("https://{}/a/message/webtransport{query}", self.addr));
        if let Some(origin) = origin {
            options = options.add_header("origin", origin);
        }
        let session = within("the WebTransport session", endpoint.connect(options.build())).await?;
        let opening = within("the server's stream", session.accept_uni()).await.expect("a stream from the server");
        Ok(WtClient { session, lines: opening, buffer: Vec::new() })
    }

    /// A session from `query` that opens with the ready line.
    pub(crate) async fn webtransport(&self, query: &str) -> WtClient {
        let mut client = self.try_webtransport(query, None).await.expect("a WebTransport session");
        assert_eq!(client.next_json().await, serde_json::json!({ "ready": { "http": "3" } }), "the first line");
        client
    }
}

impl WtClient {
    /// The next line from the server as JSON; `None` once the stream has ended.
    pub(crate) async fn next_line(&mut self) -> Option<Value> {
        loop {
            if let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buffer.drain(..=end).collect();
                return Some(serde_json::from_slice(&line[..end]).expect("a line of JSON"));
            }
            let mut chunk = [0; 4096];
            match within("a line from the server", self.lines.read(&mut chunk)).await {
                Ok(Some(read)) => self.buffer.extend_from_slice(&chunk[..read]),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// The next line, which must come.
    pub(crate) async fn next_json(&mut self) -> Value {
        self.next_line().await.expect("the stream ended while a line was expected")
    }

    /// Publishes on a stream of its own, as the contract says, and returns the answer.
    pub(crate) async fn publish_raw(&self, request: &[u8]) -> Value {
        let opening = within("a publish stream", self.session.open_bi()).await.expect("open a stream");
        let (mut send, mut recv) = within("the stream", opening).await.expect("a stream");
        within("the request", send.write_all(request)).await.expect("write");
        within("finishing the request", send.finish()).await.expect("finish");
        let mut answer = Vec::new();
        let mut chunk = [0; 4096];
        while let Some(read) = within("the answer", recv.read(&mut chunk)).await.expect("read") {
            answer.extend_from_slice(&chunk[..read]);
        }
        assert_eq!(answer.last(), Some(&b'\n'), "an answer is one line");
        serde_json::from_slice(&answer).expect("a JSON answer")
    }
}
