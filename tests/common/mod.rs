//! The shared harness of the real-socket tests: one server per test, real clients of
//! each transport, all over loopback.
//!
//! ```ignore
//! mod common;
//! use common::spawn_app;
//!
//! #[tokio::test]
//! async fn a_published_message_reaches_a_websocket() {
//!     let app = spawn_app(pushwire::Config::default()).await;
//!     let browser = app.browser().await;
//!     let mut socket = app.websocket(None).await;
//!     let sent = browser.publish("hi").await;
//!     assert_eq!(socket.next_message().await["id"], sent["id"]);
//! }
//! ```
//!
//! - [`spawn_app`] runs [`pushwire::run`] in-process on `127.0.0.1:0` with its own
//!   [`AppState`], so tests run in parallel without sharing a bus or a port. Its
//!   publish limit is the test's own: tests publish from one address far faster than a
//!   person types, so a config that leaves `--publish-rate` and `--publish-burst` at
//!   their defaults is served without a limit ([`for_tests`]); a test of the limit sets
//!   them.
//! - [`Browser`] is an HTTP client that loaded `GET /` and holds its `_xsrf` cookie, as
//!   the chat page does; it publishes and long-polls.
//! - [`WsClient`] and [`SseReader`] are WebSocket and Server-Sent Events subscribers.
//! - [`TestApp::history`] reads the bus directly (did a refused request publish?);
//!   [`TestApp::metric`] reads one sample of `/metrics`;
//!   [`TestApp::wait_for_open_subscriptions`] tells when a long-poll is pending.
//! - [`eventually`] waits for a condition: `eventually(what, || …)`.
//! - [`TestApp::raw`] and friends send hand-written requests on a bare TCP connection,
//!   for clients that misbehave (stop reading, vanish).
//! - [`router::RouterApp`] drives the router without sockets, for status-code
//!   contracts.
//! - Each subscriber has `next_messages(n)`: the next `n` message objects, in order.
//!
//! Every wait is bounded by [`TIMEOUT`] and panics with what it was waiting for, so a
//! missing event fails the test instead of hanging it. The timeout is an upper bound
//! only: a test awaits the event itself ([`within`]) or, for a state the server does not
//! signal (a gauge, a counter, a connection gone), [`eventually`] — the one place that
//! polls, with "never happened: …" and the last value seen when the state never comes.
//! No test sleeps to wait for a state; the sleeps left are part of a scenario (a client
//! that pauses, a publisher that paces itself). The timeouts run on tokio time, so do
//! not combine these helpers with paused time: the clock would jump while bytes are
//! still on their way.

// Each test file is its own crate and uses only part of this module.
#![allow(dead_code)]

pub(crate) mod https;
pub(crate) mod router;
pub(crate) mod webtransport;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, Stream, StreamExt};
use percent_encoding::{NON_ALPHANUMERIC, utf8_percent_encode};
use pushwire::bus::{Delivery, Message};
use pushwire::{AppState, Config};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, SET_COOKIE};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest any single wait in a test may take. Generous, because the machine
/// running the tests may be busy; a passing test never waits this long.
pub(crate) const TIMEOUT: Duration = Duration::from_secs(10);

/// Awaits `future`, panicking with `what` if it takes longer than [`TIMEOUT`].
pub(crate) async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for {what}"),
    }
}

/// Awaits `future`, panicking with `what` after a minute: for whole scenarios (chaos,
/// load) made of many bounded steps.
pub(crate) async fn within_long<T>(what: &str, future: impl Future<Output = T>) -> T {
    match tokio::time::timeout(TIMEOUT * 6, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {:?} waiting for {what}", TIMEOUT * 6),
    }
}

/// How often [`eventually`] looks again: short next to any wait a test has, long enough
/// not to take a core from the server under test.
const POLL_EVERY: Duration = Duration::from_millis(5);

/// Waits until `condition` holds and returns what it found, looking every few
/// milliseconds for at most [`TIMEOUT`]; then panics with "never happened: {what}" and
/// the last thing the condition saw, if it says. For states the server does not
/// signal (a counter reached, a connection gone): a test waits for the state, never
/// for a fixed time.
///
/// ```ignore
/// eventually("the stalled stream to be cut off", || app.subscribers("sse") <= 1.0).await;
/// eventually("one SSE subscriber", || match app.subscribers("sse") {
///     1.0 => Ok(()),
///     n => Err(format!("{n} subscribers")),
/// })
/// .await;
/// ```
pub(crate) async fn eventually<C: Condition>(what: &str, mut condition: impl FnMut() -> C) -> C::Holds {
    wait_until(TIMEOUT, what, || std::future::ready(condition())).await
}

/// [`eventually`] with a bound of its own, for a test whose claim is the bound
/// ("forgotten within a second").
pub(crate) async fn eventually_within<C: Condition>(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> C,
) -> C::Holds {
    wait_until(limit, what, || std::future::ready(condition())).await
}

/// [`eventually`] for a condition that has to await (a request to the server); each
/// look is bounded by what is left of [`TIMEOUT`] too.
pub(crate) async fn eventually_async<C: Condition, F: Future<Output = C>>(
    what: &str,
    condition: impl FnMut() -> F,
) -> C::Holds {
    wait_until(TIMEOUT, what, condition).await
}

async fn wait_until<C: Condition, F: Future<Output = C>>(
    limit: Duration,
    what: &str,
    mut condition: impl FnMut() -> F,
) -> C::Holds {
    let deadline = tokio::time::Instant::now() + limit;
    let mut seen = None;
    loop {
        match tokio::time::timeout_at(deadline, condition()).await.map(Condition::check) {
            Ok(Ok(holds)) => return holds,
            Ok(Err(now)) => seen = now.or(seen),
            Err(_) => {} // the look itself outlasted the limit
        }
        if tokio::time::Instant::now() >= deadline {
            match seen {
                Some(seen) => panic!("never happened within {limit:?}: {what} (last seen: {seen})"),
                None => panic!("never happened within {limit:?}: {what}"),
            }
        }
        tokio::time::sleep(POLL_EVERY).await;
    }
}

/// What a condition of [`eventually`] returns: `bool`, `Option<T>` (`Some` once it
/// holds), or `Result<T, E>` whose `Err` is what was seen instead, for the message.
pub(crate) trait Condition {
    /// What the wait returns once the condition holds.
    type Holds;
    /// `Ok` when the condition holds, otherwise what was seen (if it says).
    fn check(self) -> Result<Self::Holds, Option<String>>;
}

impl Condition for bool {
    type Holds = ();
    fn check(self) -> Result<(), Option<String>> {
        if self { Ok(()) } else { Err(None) }
    }
}

impl<T> Condition for Option<T> {
    type Holds = T;
    fn check(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: std::fmt::Display> Condition for Result<T, E> {
    type Holds = T;
    fn check(self) -> Result<T, Option<String>> {
        self.map_err(|seen| Some(seen.to_string()))
    }
}

/// Resident memory of this process (the server under test runs in it), in bytes.
pub(crate) fn resident_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches(" kB").trim().parse().ok())
        .expect("VmRSS");
    kib * 1024
}

/// A running server and the handles a test needs to drive it.
pub(crate) struct TestApp {
    /// Where the server listens (`127.0.0.1`, a free port).
    pub addr: SocketAddr,
    /// The server's state: its bus, settings and shutdown token.
    pub state: AppState,
    server: JoinHandle<io::Result<()>>,
    /// Set when the server speaks HTTPS ([`https::spawn_https_app`]).
    tls: Option<pushwire::tls::Tls>,
    /// The certificate hash a WebTransport client pins, when the server offers
    /// WebTransport ([`webtransport::spawn_webtransport_app`]).
    webtransport: Option<[u8; 32]>,
}

/// Starts [`pushwire::run`] on `127.0.0.1:0` with a fresh [`AppState`] built from
/// `config` (whose `addr` is ignored) as [`for_tests`] has it.
pub(crate) async fn spawn_app(config: Config) -> TestApp {
    spawn_app_with(AppState::new(for_tests(config))).await
}

/// `config`, without a publish limit unless it sets one of its own (`--publish-rate` or
/// `--publish-burst` other than the default).
pub(crate) fn for_tests(config: Config) -> Config {
    let default = Config::default();
    if (config.publish_rate, config.publish_burst) == (default.publish_rate, default.publish_burst) {
        Config { publish_rate: f64::INFINITY, ..config }
    } else {
        config
    }
}

/// Like [`spawn_app`], with a state built by the test (e.g. around a Redis-backed bus).
pub(crate) async fn spawn_app_with(state: AppState) -> TestApp {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
    let addr = listener.local_addr().expect("a bound listener has an address");
    let server = tokio::spawn(pushwire::run(listener, state.clone()));
    TestApp { addr, state, server, tls: None, webtransport: None }
}

impl TestApp {
    /// `http://127.0.0.1:PORT` (`https://` for an HTTPS server) followed by `path_and_query`.
    pub(crate) fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin())
    }

    /// The origin a page served by this server has, as browsers send it in `Origin`.
    pub(crate) fn origin(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// A client that has loaded the chat page: it holds the `_xsrf` cookie the page set.
    pub(crate) async fn browser(&self) -> Browser {
        Browser::open(self).await
    }

    /// A WebSocket subscriber from `cursor` (none: the whole retained history), sending
    /// no `Origin` (like a non-browser client).
    pub(crate) async fn websocket(&self, cursor: Option<&str>) -> WsClient {
        match self.try_websocket(cursor, None).await {
            Ok(socket) => socket,
            Err(error) => panic!("WebSocket upgrade failed: {error}"),
        }
    }

    /// Attempts a WebSocket upgrade, optionally with an `Origin` header; the error
    /// carries the HTTP response of a refused upgrade (`tungstenite::Error::Http`).
    pub(crate) async fn try_websocket(
        &self,
        cursor: Option<&str>,
        origin: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        self.try_websocket_at(&cursor_query(cursor), origin).await
    }

    /// A WebSocket upgrade with `query` (`?…` or empty) as it is, for queries a cursor
    /// would not make (escapes that are not UTF-8).
    pub(crate) async fn try_websocket_at(
        &self,
        query: &str,
        origin: Option<&str>,
    ) -> Result<WsClient, tungstenite::Error> {
        let url = format!("ws://{}/a/message/socket{query}", self.addr);
        let mut request = url.into_client_request()?;
        if let Some(origin) = origin {
            request.headers_mut().insert("origin", HeaderValue::from_str(origin).expect("origin is a header value"));
        }
        let (socket, _response) = within("the WebSocket handshake", tokio_tungstenite::connect_async(request)).await?;
        let mut client = WsClient { socket };
        // Every socket opens with the ready frame, before any history.
        assert_eq!(client.next_json().await, serde_json::json!({ "ready": { "http": "1.1" } }), "the first frame");
        Ok(client)
    }

    /// A WebSocket the server accepts only to say when to come back (every subscriber
    /// slot is taken): the notice, and the close's code and reason.
    pub(crate) async fn websocket_turned_away(&self) -> (Value, u16, String) {
        let url = format!("ws://{}/a/message/socket", self.addr);
        let (socket, _) = within("the WebSocket handshake", tokio_tungstenite::connect_async(url))
            .await
            .expect("the upgrade is accepted");
        WsClient { socket }.reconnect_then_close().await
    }

    /// An SSE subscriber from `cursor` (query string) and/or `last_event_id` (the
    /// `Last-Event-ID` header a reconnecting `EventSource` sends). Asserts the response
    /// is a `200 text/event-stream`.
    pub(crate) async fn sse(&self, cursor: Option<&str>, last_event_id: Option<&str>) -> SseReader {
        self.sse_at(&cursor_query(cursor), last_event_id).await
    }

    /// An SSE subscriber with `query` (`?…` or empty) as it is.
    pub(crate) async fn sse_at(&self, query: &str, last_event_id: Option<&str>) -> SseReader {
        let mut request = reqwest::Client::new().get(self.url(&format!("/a/message/events{query}")));
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = within("the SSE response headers", request.send()).await.expect("SSE request");
        SseReader::open(response, "1.1").await
    }

    /// Every message the bus retains, oldest first, read straight from the bus: how a
    /// test checks that a refused request published nothing.
    pub(crate) async fn history(&self) -> Vec<Arc<Message>> {
        history(&self.state).await
    }

    /// How many subscriptions (SSE streams, WebSockets, pending long-polls) the server
    /// holds open now: the `--max-subscribers` slots in use.
    pub(crate) fn open_subscriptions(&self) -> usize {
        self.state.subscriber_slots.taken()
    }

    /// Waits until the server holds exactly `count` subscriptions open: how a test knows
    /// that a long-poll it sent is pending at the server (the server does not signal it).
    pub(crate) async fn wait_for_open_subscriptions(&self, count: usize) {
        eventually(&format!("{count} open subscriptions"), || match self.open_subscriptions() {
            open if open == count => Ok(()),
            open => Err(format!("{open} open")),
        })
        .await;
    }

    /// Cancels `state.shutdown` and waits for [`pushwire::run`] to return.
    pub(crate) async fn shutdown(self) -> io::Result<()> {
        self.state.shutdown.cancel();
        within("pushwire::run to return after shutdown", self.server).await.expect("the server task panicked")
    }
}

/// Every message the bus of `state` holds, oldest first.
pub(crate) async fn history(state: &AppState) -> Vec<Arc<Message>> {
    let mut subscription = state.bus.subscribe_from(pushwire::bus::ResumeFrom::Start).await;
    std::iter::from_fn(|| subscription.try_next())
        .map(|delivery| match delivery {
            Delivery::Message(message) => message,
            Delivery::Gap(gap) => panic!("a subscription without a cursor has no gap, got {gap:?}"),
        })
        .collect()
}

/// `?cursor=…` (percent-encoded), or nothing.
fn cursor_query(cursor: Option<&str>) -> String {
    cursor.map_or(String::new(), |c| format!("?cursor={}", utf8_percent_encode(c, NON_ALPHANUMERIC)))
}

/// The media type of a response, without parameters.
pub(crate) fn content_type(headers: &HeaderMap) -> &str {
    let value = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    value.split(';').next().unwrap_or("").trim()
}

/// An HTTP client in the position of the chat page: it loaded `GET /`, keeps cookies
/// and does not follow redirects (so tests see the 302s). Clones share the cookies.
#[derive(Clone)]
pub(crate) struct Browser {
    pub http: reqwest::Client,
    /// The `_xsrf` token from the cookie `GET /` set; every POST repeats it.
    pub xsrf: String,
    base: String,
}

impl Browser {
    async fn open(app: &TestApp) -> Self {
        Browser::open_with(app, reqwest::Client::builder()).await
    }

    /// [`TestApp::browser`] with a client built from `builder` (an HTTPS server's
    /// certificate is added to what it trusts).
    pub(crate) async fn open_with(app: &TestApp, mut builder: reqwest::ClientBuilder) -> Self {
        if let Some(tls) = &app.tls {
            let certificate = reqwest::Certificate::from_der(tls.certificate()).expect("a DER certificate");
            builder = builder.add_root_certificate(certificate).https_only(true);
        }
        let http = builder
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("build an HTTP client");
        let page = within("GET /", http.get(app.url("/")).send()).await.expect("GET /");
        assert_eq!(page.status(), StatusCode::OK);
        let xsrf = xsrf_from_set_cookie(page.headers()).expect("GET / sets the _xsrf cookie");
        Browser { http, xsrf, base: app.url("") }
    }

    /// POSTs exactly `fields`, form-encoded, with the cookies the page set. Add
    /// `("_xsrf", &browser.xsrf)` to pass the XSRF check.
    pub(crate) async fn post(&self, path: &str, fields: &[(&str, &str)]) -> reqwest::Response {
        let request = self.http.post(format!("{}{path}", self.base)).form(fields);
        within(&format!("POST {path}"), request.send()).await.expect("POST request")
    }

    /// Publishes `body` through `POST /a/message/new` and returns the message object.
    pub(crate) async fn publish(&self, body: &str) -> Value {
        let response = self.post("/a/message/new", &[("body", body), ("_xsrf", &self.xsrf)]).await;
        json_ok(response).await
    }

    /// One long-poll from `cursor`: the whole answer, `{"messages": [...]}` plus `gap`
    /// when the server reports one.
    pub(crate) async fn poll(&self, cursor: Option<&str>) -> Value {
        let mut fields = vec![("_xsrf", self.xsrf.as_str())];
        fields.extend(cursor.map(|c| ("cursor", c)));
        json_ok(self.post("/a/message/updates", &fields).await).await
    }

    /// Long-polls from `cursor` like the chat page does, each poll from the last id
    /// received, until `count` messages have arrived. Panics on a gap notice or if a
    /// poll brings more than `count` in total.
    pub(crate) async fn poll_messages(&self, cursor: Option<&str>, count: usize) -> Vec<Value> {
        let mut cursor = cursor.map(str::to_owned);
        let mut received = Vec::new();
        // Every poll brings at least one message unless it is held for the whole hold
        // time; the bound only stops a broken server from looping the test forever.
        for _ in 0..count + 3 {
            if received.len() >= count {
                break;
            }
            let answer = self.poll(cursor.as_deref()).await;
            assert!(answer.get("gap").is_none(), "unexpected gap notice: {answer}");
            let messages = answer["messages"].as_array().expect("\"messages\" is an array").clone();
            if let Some(last) = messages.last() {
                cursor = Some(last["id"].as_str().expect("message id is a string").to_owned());
            }
            received.extend(messages);
        }
        assert_eq!(received.len(), count, "long-poll delivered {} messages, expected {count}", received.len());
        received
    }
}

/// The token of a `Set-Cookie: _xsrf=…` header, if the response has one.
pub(crate) fn xsrf_from_set_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .find_map(|value| value.split(';').next()?.trim().strip_prefix("_xsrf=").map(str::to_owned))
}

/// Asserts a `200 application/json` answer and returns its body.
pub(crate) async fn json_ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let media_type = content_type(response.headers()).to_owned();
    let text = within("a response body", response.text()).await.expect("response body");
    assert_eq!(status, StatusCode::OK, "body: {text}");
    assert_eq!(media_type, "application/json", "body: {text}");
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// The `id`s of message objects, in order.
pub(crate) fn ids(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["id"].as_str().expect("message id is a string").to_owned()).collect()
}

/// The `body`s of message objects, in order.
pub(crate) fn bodies(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["body"].as_str().expect("message body is a string").to_owned()).collect()
}

/// Asserts a gap notice object says `reason` and `missed` (`null` when not known).
/// Further fields (such as where to resume) are not part of this check.
pub(crate) fn assert_gap(gap: &Value, reason: &str, missed: Option<u64>) {
    assert!(gap.is_object(), "expected a gap notice, got {gap}");
    assert_eq!(gap["reason"], reason, "gap notice {gap}");
    assert_eq!(gap["missed"], missed.map_or(Value::Null, Value::from), "gap notice {gap}");
}

/// A WebSocket client of `/a/message/socket`.
pub(crate) struct WsClient {
    pub socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    /// Sends one frame.
    pub(crate) async fn send(&mut self, frame: Frame) {
        within("sending a WebSocket frame", self.socket.send(frame)).await.expect("send a WebSocket frame");
    }

    /// Publishes `body` in-band, as `{"body": …}` (Tornado's WebSocket chat format).
    pub(crate) async fn publish(&mut self, body: &str) {
        self.send(Frame::text(serde_json::json!({ "body": body }).to_string())).await;
    }

    /// The next frame of any kind; `None` once the connection has ended.
    pub(crate) async fn next_frame(&mut self) -> Option<Frame> {
        match within("a WebSocket frame", self.socket.next()).await {
            Some(Ok(frame)) => Some(frame),
            None | Some(Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed)) => None,
            Some(Err(error)) => panic!("WebSocket error: {error}"),
        }
    }

    /// The next text frame as JSON, skipping pings and pongs. Panics on anything else.
    pub(crate) async fn next_json(&mut self) -> Value {
        loop {
            match self.next_frame().await {
                Some(Frame::Text(text)) => {
                    return serde_json::from_str(&text).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {text}"));
                }
                Some(Frame::Ping(_) | Frame::Pong(_)) => {}
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next message object (a frame with an `id`; gap notices have none).
    pub(crate) async fn next_message(&mut self) -> Value {
        let json = self.next_json().await;
        assert!(json["id"].is_string(), "expected a message object, got {json}");
        json
    }

    /// The next `count` message objects, in the order they came.
    pub(crate) async fn next_messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            messages.push(self.next_message().await);
        }
        messages
    }

    /// Asserts the next frame says when to come back, `{"reconnect":…}`, and that the
    /// close frame follows it. Returns the notice, and the close's code and reason.
    pub(crate) async fn reconnect_then_close(&mut self) -> (Value, u16, String) {
        let frame = self.next_json().await;
        let notice = frame.get("reconnect").unwrap_or_else(|| panic!("expected a reconnect notice, got {frame}"));
        let (code, reason) = self.close_frame().await;
        (notice.clone(), code, reason)
    }

    /// Waits for the server's close frame, skipping pings, and returns its code and
    /// reason. Panics on a message frame or if the connection ends without one.
    pub(crate) async fn close_frame(&mut self) -> (u16, String) {
        loop {
            match self.next_frame().await {
                Some(Frame::Close(Some(frame))) => return (u16::from(frame.code), frame.reason.to_string()),
                Some(Frame::Ping(_) | Frame::Pong(_)) => {}
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    }
}

/// One block of an event stream (the lines up to a blank line), parsed per the
/// Server-Sent Events format. `data` lines are joined with `\n`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct SseBlock {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: Option<String>,
    pub retry: Option<String>,
    /// The text of `:` comment lines (keep-alives), leading space removed.
    pub comments: Vec<String>,
}

impl SseBlock {
    /// Parses one block. A field pushwire does not send fails the test rather than being
    /// ignored as a browser would, so an unintended change to the stream shows up.
    fn parse(text: &str) -> Self {
        let mut block = SseBlock::default();
        for line in text.split('\n') {
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value).to_owned();
            match field {
                "" => block.comments.push(value),
                "id" => block.id = Some(value),
                "event" => block.event = Some(value),
                "retry" => block.retry = Some(value),
                "data" => match &mut block.data {
                    Some(data) => {
                        data.push('\n');
                        data.push_str(&value);
                    }
                    None => block.data = Some(value),
                },
                other => panic!("unexpected SSE field {other:?} in {text:?}"),
            }
        }
        block
    }

    /// The `data` parsed as JSON.
    pub(crate) fn json(&self) -> Value {
        let data = self.data.as_deref().unwrap_or_else(|| panic!("SSE block has no data: {self:?}"));
        serde_json::from_str(data).unwrap_or_else(|e| panic!("SSE data is not JSON ({e}): {data}"))
    }
}

/// A reader of one `GET /a/message/events` response.
pub(crate) struct SseReader {
    /// The response headers.
    pub headers: HeaderMap,
    body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
    buffer: Vec<u8>,
}

impl SseReader {
    /// Reads an SSE response: asserts it is a `200 text/event-stream` that opens with
    /// a retry time of its own (1000 ms ± 50 %) and the ready event naming `http`, the
    /// HTTP version it came over.
    pub(crate) async fn open(response: reqwest::Response, http: &str) -> SseReader {
        let mut reader = SseReader::event_stream(response);
        // Every stream opens with the retry time and the ready event, before any history.
        let mut opening = reader.next_block().await.expect("the opening block");
        let retry = opening.retry.take().and_then(|ms| ms.parse::<u64>().ok());
        assert!(retry.is_some_and(|ms| (500..=1500).contains(&ms)), "retry: {retry:?} in {opening:?}");
        let ready = SseBlock {
            event: Some("ready".to_owned()),
            data: Some(format!(r#"{{"http":"{http}"}}"#)),
            ..SseBlock::default()
        };
        assert_eq!(opening, ready, "the opening block");
        reader
    }

    /// Reads an event stream that only says when to come back (`reconnect`) and ends:
    /// the answer at capacity. Returns the notice.
    pub(crate) async fn told_to_reconnect(response: reqwest::Response) -> Value {
        SseReader::event_stream(response).reconnect_then_end().await
    }

    /// A reader of `response`, which must be a `200 text/event-stream`.
    fn event_stream(response: reqwest::Response) -> SseReader {
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(content_type(response.headers()), "text/event-stream");
        SseReader { headers: response.headers().clone(), body: Box::pin(response.bytes_stream()), buffer: Vec::new() }
    }

    /// Asserts the next event says when to come back, with `retry:` set to its delay,
    /// and that the stream then ends. Returns the notice.
    pub(crate) async fn reconnect_then_end(&mut self) -> Value {
        let block = self.next_event().await;
        assert_eq!(block.event.as_deref(), Some("reconnect"), "{block:?}");
        let notice = block.json();
        assert_eq!(block.retry, Some(notice["delay_ms"].to_string()), "retry: is the delay");
        self.expect_end().await;
        notice
    }

    /// The next block, comments-only ones included; `None` when the stream has ended.
    /// pushwire ends lines with `\n` only; a `\r` fails the test.
    pub(crate) async fn next_block(&mut self) -> Option<SseBlock> {
        loop {
            if let Some(end) = self.buffer.windows(2).position(|pair| pair == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = std::str::from_utf8(&block[..end]).expect("the event stream is UTF-8");
                assert!(!text.contains('\r'), "unexpected CR in the event stream: {text:?}");
                return Some(SseBlock::parse(text));
            }
            match within("SSE bytes", self.body.next()).await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(error)) => panic!("SSE stream failed: {error}"),
                None => {
                    assert!(self.buffer.is_empty(), "SSE stream ended mid-block: {:?}", self.buffer);
                    return None;
                }
            }
        }
    }

    /// The next block that carries `data` (an event), skipping comment-only blocks.
    pub(crate) async fn next_event(&mut self) -> SseBlock {
        loop {
            match self.next_block().await {
                Some(block) if block.data.is_some() => return block,
                Some(_) => {}
                None => panic!("SSE stream ended while an event was expected"),
            }
        }
    }

    /// The next event as a message object; checks it is a plain (untyped) event whose
    /// `id:` equals the object's `id`, which is what `Last-Event-ID` resumes from.
    pub(crate) async fn next_message(&mut self) -> Value {
        let event = self.next_event().await;
        assert_eq!(event.event, None, "expected a message event, got {event:?}");
        let json = event.json();
        assert_eq!(event.id.as_deref(), json["id"].as_str(), "SSE id: differs from the message id");
        json
    }

    /// The next `count` message events' objects, in the order they came.
    pub(crate) async fn next_messages(&mut self, count: usize) -> Vec<Value> {
        let mut messages = Vec::with_capacity(count);
        for _ in 0..count {
            messages.push(self.next_message().await);
        }
        messages
    }

    /// Asserts the stream ends, allowing only comment blocks before the end.
    pub(crate) async fn expect_end(&mut self) {
        while let Some(block) = self.next_block().await {
            assert!(block.data.is_none(), "expected the stream to end, got an event: {block:?}");
        }
    }
}

/// A token in the form the server issues, for raw clients that skip `GET /`.
pub(crate) const RAW_XSRF: &str = "0123456789abcdef0123456789abcdef";

impl TestApp {
    /// The value of one sample of the server's `/metrics`, e.g.
    /// `pushwire_subscribers{transport="sse"}`; 0 when the sample does not exist yet.
    pub(crate) fn metric(&self, sample: &str) -> f64 {
        let text = self.state.metrics.encode();
        text.lines().find_map(|line| line.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok()).unwrap_or(0.0)
    }

    /// Open subscribers of one transport (`long_poll`, `websocket`, `sse`) per `/metrics`,
    /// over every HTTP version.
    pub(crate) fn subscribers(&self, transport: &str) -> f64 {
        let series = format!("pushwire_subscribers{{transport=\"{transport}\",");
        let text = self.state.metrics.encode();
        let values =
            text.lines().filter_map(|line| line.strip_prefix(&series)?.split_once("} ")?.1.parse::<f64>().ok());
        values.sum()
    }

    /// Opens a TCP connection and sends `request` as is: a client that can then stop
    /// reading, or vanish, at the test's command.
    pub(crate) async fn raw(&self, request: &str) -> TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut stream = within("a TCP connection", TcpStream::connect(self.addr)).await.expect("connect");
        within("sending a request", stream.write_all(request.as_bytes())).await.expect("send the request");
        stream
    }

    /// A long-poll held open on a raw connection, from `cursor` (or the start).
    pub(crate) async fn raw_long_poll(&self) -> TcpStream {
        let form = format!("_xsrf={RAW_XSRF}");
        self.raw(&format!(
            "POST /a/message/updates HTTP/1.1\r\nHost: {}\r\nCookie: _xsrf={RAW_XSRF}\r\n\
             Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
            self.addr,
            form.len()
        ))
        .await
    }

    /// An SSE stream on a raw connection.
    pub(crate) async fn raw_sse(&self) -> TcpStream {
        self.raw(&format!("GET /a/message/events HTTP/1.1\r\nHost: {}\r\nAccept: text/event-stream\r\n\r\n", self.addr))
            .await
    }
}
