//! The protocol adapters: one publisher and the subscriber clients (long-poll,
//! Server-Sent Events, WebSocket here; WebTransport in [`crate::webtransport`]) for
//! each kind of server.
//!
//! - [`Protocol::Pushwire`]: pushwire's endpoints (`/a/message/new`, `/updates`,
//!   `/socket`, `/events`), messages as JSON objects whose `body` is our payload.
//! - [`Protocol::Tornado`]: the same long-poll and publish wire as Tornado's chat demo
//!   (pushwire speaks it), so the original demo can be measured; long-poll only.
//! - [`Protocol::Nchan`]: nchan's publisher location (`POST /pub`) and one subscriber
//!   location (`/sub`) for all three transports, the message body being the payload
//!   as published; resume by `last_event_id`, `If-Modified-Since`/`If-None-Match`.
//!
//! Every client works on a counted connection (see [`crate::wire`]) of the endpoint's
//! HTTP setting (see [`crate::http`]: HTTP/1.1 or HTTP/2, cleartext or TLS) and turns
//! what it receives into [`Item`]s: the stamp of a benchmark message, or a gap notice.
//! Each subscriber transport is a file of its own (`long_poll`, `sse`, `websocket`);
//! the publisher, the [`Feed`] over them all and the message parsing they share are here.

mod long_poll;
mod sse;
mod websocket;

use std::borrow::Cow;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, Response};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::http::{ClientError, Connector, HttpConnection};
use crate::payload::Stamp;
use crate::record::{Http, Protocol, Transport};
use crate::webtransport::{SharedClients, WebTransport};
use crate::wire::{Dialer, Traffic};

pub(crate) use long_poll::LongPoll;
use sse::BROWSER_SSE_RETRY;
pub(crate) use sse::Sse;
pub(crate) use websocket::WebSocket;

/// The XSRF token the Tornado-style endpoints get as cookie and form field. Any 32
/// hex digits do: the check is double-submit, comparing the two.
pub(crate) const XSRF: &str = "5e11c0de5e11c0de5e11c0de5e11c0de";

/// What a subscriber receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Item {
    /// A message this tool published (maybe in another scenario: check the tag).
    Message(Stamp),
    /// A message that is not ours (someone else chatting on the same server).
    Foreign,
    /// The server said messages were skipped.
    Gap,
    /// The server said when to come back (a graceful stop, or no room): pushwire's
    /// `{"reconnect":{"reason":…,"delay_ms":…}}`, or SSE's `event: reconnect`.
    Reconnect(Duration),
}

/// One server to talk to, with the HTTP setting to talk over.
#[derive(Clone, Debug)]
pub(crate) struct Endpoint {
    pub protocol: Protocol,
    pub connector: Connector,
    /// WebTransport's client endpoints, made when its first session opens.
    webtransport: SharedClients,
}

impl Endpoint {
    pub(crate) fn new(protocol: Protocol, dialer: Dialer, http: Http) -> Self {
        Endpoint { protocol, connector: Connector::new(dialer, http), webtransport: SharedClients::default() }
    }

    fn request(&self, method: Method, path: &str) -> hyper::http::request::Builder {
        self.connector.request(method, path)
    }
}

/// Reads a whole response body.
async fn read_body(response: Response<Incoming>) -> Result<Bytes, ClientError> {
    Ok(response.into_body().collect().await?.to_bytes())
}

/// Publishes over one keep-alive HTTP connection, one request at a time, so the
/// server sees messages in the order they were sent.
pub(crate) struct Publisher {
    endpoint: Endpoint,
    traffic: std::sync::Arc<Traffic>,
    connection: HttpConnection,
}

impl Publisher {
    pub(crate) async fn connect(endpoint: &Endpoint, traffic: &std::sync::Arc<Traffic>) -> Result<Self, ClientError> {
        let connection = endpoint.connector.open(traffic).await?;
        Ok(Publisher { endpoint: endpoint.clone(), traffic: traffic.clone(), connection })
    }

    /// Publishes `payload`; returns the new message's id (its resume cursor). After a
    /// failure the next call reconnects.
    pub(crate) async fn publish(&mut self, payload: &str) -> Result<String, ClientError> {
        // Servers close keep-alive connections left idle (pushwire after its header
        // timeout, 10 s; the publisher idles that long while 10,000 subscribers
        // connect). Like a browser, open a new connection instead of failing.
        if self.connection.is_closed() {
            self.connection = self.endpoint.connector.open(&self.traffic).await?;
        }
        let result = self.try_publish(payload).await;
        if result.is_err() {
            self.connection = self.endpoint.connector.open(&self.traffic).await?;
        }
        result
    }

    async fn try_publish(&mut self, payload: &str) -> Result<String, ClientError> {
        let request = match self.endpoint.protocol {
            Protocol::Pushwire | Protocol::Tornado => self
                .endpoint
                .request(Method::POST, "/a/message/new")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("_xsrf={XSRF}"))
                // The payload alphabet ([0-9a-z:]) needs no percent-encoding.
                .body(Full::new(Bytes::from(format!("_xsrf={XSRF}&body={payload}")))),
            Protocol::Nchan => self
                .endpoint
                .request(Method::POST, "/pub")
                .header(header::CONTENT_TYPE, "text/plain")
                .header(header::ACCEPT, "application/json")
                .body(Full::new(Bytes::copy_from_slice(payload.as_bytes()))),
        }
        .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = self.connection.send(request).await?;
        let status = response.status();
        let body = read_body(response).await?;
        if !status.is_success() {
            return Err(ClientError::Http(format!("publish answered {status}")));
        }
        #[derive(Deserialize)]
        struct Published {
            id: Option<String>,
            last_message_id: Option<String>,
        }
        let published: Published =
            serde_json::from_slice(&body).map_err(|e| ClientError::Http(format!("publish answer: {e}")))?;
        published.id.or(published.last_message_id).ok_or(ClientError::Http("publish answer has no id".into()))
    }
}

/// One subscriber connection of any transport.
pub(crate) enum Feed {
    LongPoll(LongPoll),
    Sse(Sse),
    WebSocket(Box<WebSocket>),
    WebTransport(Box<WebTransport>),
}

impl Feed {
    /// Connects a subscriber that receives everything after the message `cursor`.
    /// Returns once the connection is open (WebSocket: upgraded; SSE: response
    /// headers in; long-poll: connected, the first poll goes out on the first `next`;
    /// WebTransport: the session's stream opened). `inband` (WebSocket and WebTransport)
    /// carries payloads to publish on the same connection.
    pub(crate) async fn connect(
        endpoint: &Endpoint,
        transport: Transport,
        cursor: &str,
        traffic: &std::sync::Arc<Traffic>,
        inband: Option<mpsc::Receiver<String>>,
    ) -> Result<Feed, ClientError> {
        Ok(match transport {
            Transport::LongPoll => Feed::LongPoll(LongPoll::connect(endpoint, cursor, traffic).await?),
            Transport::Sse => Feed::Sse(Sse::connect(endpoint, cursor, traffic).await?),
            Transport::WebSocket => {
                Feed::WebSocket(Box::new(WebSocket::connect(endpoint, cursor, traffic, inband).await?))
            }
            Transport::WebTransport | Transport::WebTransportUnordered => {
                let unordered = transport == Transport::WebTransportUnordered;
                let (connector, clients) = (&endpoint.connector, &endpoint.webtransport);
                Feed::WebTransport(Box::new(
                    WebTransport::connect(connector, clients, cursor, unordered, traffic, inband).await?,
                ))
            }
        })
    }

    /// How long a browser waits after this connection breaks before it reconnects:
    /// `EventSource` the server's `retry:` (or its own default). WebSocket and
    /// long-poll (and WebTransport) reconnect in the page's own code, here at once: the best a page can
    /// do (pushwire's page first waits a random 0–0.5 s, Tornado's `chat.js` 1 s).
    pub(crate) fn reconnect_delay(&self) -> Duration {
        match self {
            Feed::Sse(feed) => feed.retry.unwrap_or(BROWSER_SSE_RETRY),
            Feed::LongPoll(_) | Feed::WebSocket(_) | Feed::WebTransport(_) => Duration::ZERO,
        }
    }

    /// Long-polls sent again on a new connection (see [`LongPoll::next`]).
    pub(crate) fn resent(&self) -> u64 {
        match self {
            Feed::LongPoll(feed) => feed.resent,
            Feed::Sse(_) | Feed::WebSocket(_) | Feed::WebTransport(_) => 0,
        }
    }

    /// Waits for the next delivery and appends what it carried to `items`.
    pub(crate) async fn next(&mut self, items: &mut Vec<Item>) -> Result<(), ClientError> {
        match self {
            Feed::LongPoll(feed) => feed.next(items).await,
            Feed::Sse(feed) => feed.next(items).await,
            Feed::WebSocket(feed) => feed.next(items).await,
            Feed::WebTransport(feed) => {
                let mut lines = Vec::new();
                feed.next(&mut lines).await?;
                lines.iter().try_for_each(|line| webtransport_item(line, items))
            }
        }
    }
}

/// A message object as pushwire (or Tornado) sends it; `body` is our payload.
#[derive(Deserialize)]
struct JsonMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    body: Option<Cow<'a, str>>,
    gap: Option<serde::de::IgnoredAny>,
    reconnect: Option<Told>,
}

/// When the server told a client to come back.
#[derive(Deserialize)]
struct Told {
    delay_ms: u64,
}

impl Told {
    fn item(&self) -> Item {
        Item::Reconnect(Duration::from_millis(self.delay_ms))
    }
}

impl JsonMessage<'_> {
    fn item(&self) -> Item {
        if self.gap.is_some() {
            return Item::Gap;
        }
        if let Some(told) = &self.reconnect {
            return told.item();
        }
        match self.body.as_deref().and_then(Stamp::parse) {
            Some(stamp) => Item::Message(stamp),
            None => Item::Foreign,
        }
    }
}

/// A JSON message object (pushwire WebSocket frame, SSE data or WebTransport line) as
/// an item.
fn json_item(text: &[u8]) -> Item {
    match serde_json::from_slice::<JsonMessage>(text) {
        Ok(message) => message.item(),
        Err(_) => Item::Foreign,
    }
}

/// One line of pushwire's WebTransport stream: the ready line passes, a slow
/// consumer's notice ends the feed (as a WebSocket close would), and anything else is
/// a message or a gap notice, as on a WebSocket.
fn webtransport_item(line: &[u8], items: &mut Vec<Item>) -> Result<(), ClientError> {
    if line.starts_with(b"{\"slow\"") {
        return Err(ClientError::Http("let go as a slow consumer".into()));
    }
    if !line.starts_with(b"{\"ready\"") {
        items.push(json_item(line));
    }
    Ok(())
}

/// A raw payload (nchan) as an item.
fn raw_item(body: &[u8]) -> Item {
    match std::str::from_utf8(body).ok().and_then(Stamp::parse) {
        Some(stamp) => Item::Message(stamp),
        None => Item::Foreign,
    }
}
