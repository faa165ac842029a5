//! WebTransport for the real-socket tests: a server with its HTTP/1.1 listener on TCP
//! and WebTransport on UDP at the same port number, and a client (wtransport's) that
//! pins the server's self-signed certificate by its hash, as a browser does: ordered
//! ([`WtClient`]) or unordered ([`WtUnordered`], `?order=none`).

use std::collections::{HashMap, VecDeque};

use pushwire::tls::Tls;
use pushwire::transport::webtransport::Endpoint;
use pushwire::{AppState, Config, Listener};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::task::AbortOnDropHandle;
use wtransport::endpoint::ConnectOptions;
use wtransport::error::ConnectingError;
use wtransport::tls::Sha256Digest;
use wtransport::{ClientConfig, Connection, RecvStream, SendStream};

use super::{TestApp, eventually, within};

/// Starts pushwire on `127.0.0.1:0` (TCP) and WebTransport on the same UDP port.
pub(crate) async fn spawn_webtransport_app(config: Config) -> TestApp {
    let state = AppState::new(super::for_tests(config));
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
    /// A session at `/a/message/webtransport{query}` from a page of `origin` if given,
    /// of which nothing is read yet: a client that may never read.
    pub(crate) async fn webtransport_session(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<Connection, ConnectingError> {
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
        within("the WebTransport session", endpoint.connect(options.build())).await
    }

    /// An ordered session from `query`, from a page of `origin` if given: its stream accepted.
    pub(crate) async fn try_webtransport(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<WtClient, ConnectingError> {
        let session = self.webtransport_session(query, origin).await?;
        let opening = within("the server's stream", session.accept_uni()).await.expect("a stream from the server");
        Ok(WtClient { session, lines: opening, buffer: Vec::new() })
    }

    /// A session from `query` that opens with the ready line.
    pub(crate) async fn webtransport(&self, query: &str) -> WtClient {
        let mut client = self.try_webtransport(query, None).await.expect("a WebTransport session");
        assert_eq!(client.next_json().await, json!({ "ready": { "http": "3" } }), "the first line");
        client
    }

    /// Waits until no WebTransport session is counted in
    /// `pushwire_subscribers{transport="webtransport",http="3"}`.
    pub(crate) async fn no_webtransport_subscriber(&self) {
        let gauge = r#"pushwire_subscribers{transport="webtransport",http="3"}"#;
        eventually("no WebTransport subscriber", || match self.metric(gauge) {
            0.0 => Ok(()),
            n => Err(format!("{n} subscribers")),
        })
        .await;
    }

    /// An unordered session from `?order=none{more}` that opens with its ready line.
    pub(crate) async fn webtransport_unordered(&self, more: &str) -> WtUnordered {
        let session = self.webtransport_session(&format!("?order=none{more}"), None).await.expect("a session");
        let (sender, arrivals) = mpsc::unbounded_channel();
        let reader = AbortOnDropHandle::new(tokio::spawn(read_every_stream(session.clone(), sender)));
        let mut client = WtUnordered {
            session,
            arrivals,
            _reader: reader,
            control: None,
            control_ended: false,
            open: HashMap::new(),
            messages: VecDeque::new(),
            notices: VecDeque::new(),
        };
        let ready = json!({ "ready": { "http": "3", "order": "none" } });
        assert_eq!(client.next_notice().await, ready, "the first line");
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

    /// Waits for the server to finish its stream, with no line before the end; panics
    /// if it breaks instead (the session closed before the stream's end was sent).
    pub(crate) async fn expect_end(&mut self) {
        let mut chunk = [0; 4096];
        match within("the stream's end", self.lines.read(&mut chunk)).await {
            Ok(None) => assert!(self.buffer.is_empty(), "the stream ended mid-line"),
            Ok(Some(read)) => panic!("expected the stream's end, got {:?}", String::from_utf8_lossy(&chunk[..read])),
            Err(error) => panic!("the stream broke instead of ending: {error}"),
        }
    }

    /// Publishes on a stream of its own, as the contract says, and returns the answer.
    pub(crate) async fn publish_raw(&self, request: &[u8]) -> Value {
        let (_send, recv) = self.publish_stream(request, true).await;
        answer(recv).await
    }

    /// A publish stream with `request` written on it, finished or (`finish` false) not.
    pub(crate) async fn publish_stream(&self, request: &[u8], finish: bool) -> (SendStream, RecvStream) {
        let opening = within("a publish stream", self.session.open_bi()).await.expect("open a stream");
        let (mut send, recv) = within("the stream", opening).await.expect("a stream");
        within("the request", send.write_all(request)).await.expect("write");
        if finish {
            within("finishing the request", send.finish()).await.expect("finish");
        }
        (send, recv)
    }
}

/// The server's answer on a publish stream: one line of JSON, then the stream's end.
pub(crate) async fn answer(mut recv: RecvStream) -> Value {
    let mut answer = Vec::new();
    let mut chunk = [0; 4096];
    while let Some(read) = within("the answer", recv.read(&mut chunk)).await.expect("read") {
        answer.extend_from_slice(&chunk[..read]);
    }
    assert_eq!(answer.last(), Some(&b'\n'), "an answer is one line");
    serde_json::from_slice(&answer).expect("a JSON answer")
}

/// An unordered session (`?order=none`): every stream the server opens is read as it
/// comes, and each is checked against the contract: the ready line's stream carries
/// only notices, every other stream one message object and then its end.
pub(crate) struct WtUnordered {
    pub session: Connection,
    arrivals: mpsc::UnboundedReceiver<Arrival>,
    _reader: AbortOnDropHandle<()>,
    /// The stream that carried the ready line.
    control: Option<usize>,
    /// The control stream has ended (it does when the session closes).
    control_ended: bool,
    /// The lines of message streams that have not ended yet.
    open: HashMap<usize, Vec<Value>>,
    messages: VecDeque<Value>,
    notices: VecDeque<Value>,
}

/// A line from the `stream`th stream accepted, or (`None`) its end.
struct Arrival {
    stream: usize,
    line: Option<Value>,
}

impl WtUnordered {
    /// The next message whose stream has ended, in the order they end.
    pub(crate) async fn next_message(&mut self) -> Value {
        loop {
            if let Some(message) = self.messages.pop_front() {
                return message;
            }
            self.take_arrival().await;
        }
    }

    /// The next `count` messages, in the order their streams ended.
    pub(crate) async fn next_messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            messages.push(self.next_message().await);
        }
        messages
    }

    /// The next line of the control stream.
    pub(crate) async fn next_notice(&mut self) -> Value {
        loop {
            if let Some(notice) = self.notices.pop_front() {
                return notice;
            }
            self.take_arrival().await;
        }
    }

    /// Waits for the control stream's end; panics if it breaks instead.
    pub(crate) async fn expect_control_end(&mut self) {
        while !self.control_ended {
            self.take_arrival().await;
        }
        assert!(self.notices.is_empty(), "notices before the end: {:?}", self.notices);
    }

    async fn take_arrival(&mut self) {
        let Arrival { stream, line } =
            within("a line from the server", self.arrivals.recv()).await.expect("the session ended");
        match line {
            Some(ready) if ready.get("ready").is_some() => {
                assert_eq!(self.control, None, "a second ready line: {ready}");
                self.control = Some(stream);
                self.notices.push_back(ready);
            }
            Some(notice) if notice.get("id").is_none() => {
                assert_eq!(self.control, Some(stream), "a notice not on the ready line's stream: {notice}");
                self.notices.push_back(notice);
            }
            Some(message) => {
                assert_ne!(self.control, Some(stream), "a message on the control stream: {message}");
                let lines = self.open.entry(stream).or_default();
                lines.push(message);
                assert_eq!(lines.len(), 1, "a message stream carries one line: {lines:?}");
            }
            None if self.control == Some(stream) => self.control_ended = true,
            None => {
                let lines = self.open.remove(&stream).unwrap_or_default();
                assert_eq!(lines.len(), 1, "a message stream carries one line: {lines:?}");
                self.messages.extend(lines);
            }
        }
    }
}

/// Accepts every stream the server opens, each read by a task of its own: a stream
/// held up does not hold up the others.
async fn read_every_stream(session: Connection, arrivals: mpsc::UnboundedSender<Arrival>) {
    let mut readers = JoinSet::new();
    for stream in 0.. {
        let Ok(recv) = session.accept_uni().await else { return };
        readers.spawn(read_lines(stream, recv, arrivals.clone()));
        while readers.try_join_next().is_some() {}
    }
}

/// Sends each line of `recv` as it comes, then its end (nothing if it breaks).
async fn read_lines(stream: usize, mut recv: RecvStream, arrivals: mpsc::UnboundedSender<Arrival>) {
    let mut buffer = Vec::new();
    let mut chunk = [0; 4096];
    loop {
        match recv.read(&mut chunk).await {
            Ok(Some(read)) => buffer.extend_from_slice(&chunk[..read]),
            Ok(None) => {
                assert!(buffer.is_empty(), "a stream ended mid-line: {buffer:?}");
                let _ = arrivals.send(Arrival { stream, line: None });
                return;
            }
            Err(_) => return,
        }
        while let Some(end) = buffer.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = buffer.drain(..=end).collect();
            let line = serde_json::from_slice(&line[..end]).expect("a line of JSON");
            let _ = arrivals.send(Arrival { stream, line: Some(line) });
        }
    }
}
