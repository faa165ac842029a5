//! The Server-Sent Events subscriber: pushwire's `/a/message/events`, nchan's `/sub` as
//! `text/event-stream`; keeps the server's `retry:` for the reconnect delay.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header;
use hyper::{Method, StatusCode};

use super::{Endpoint, Item, Told, json_item, raw_item};
use crate::http::{ClientError, HttpConnection};
use crate::record::Protocol;
use crate::wire::Traffic;

/// Server-Sent Events: one long response, parsed event by event.
pub(crate) struct Sse {
    protocol: Protocol,
    // Kept so the connection lives as long as the stream.
    _connection: HttpConnection,
    body: Incoming,
    buffer: BytesMut,
    /// The server's `retry:`, which a browser's `EventSource` waits before reconnecting.
    pub(super) retry: Option<Duration>,
}

/// How long Chromium's `EventSource` waits before reconnecting when the server sent
/// no `retry:` (its `kDefaultReconnectDelayMs`).
pub(super) const BROWSER_SSE_RETRY: Duration = Duration::from_secs(3);

impl Sse {
    pub(super) async fn connect(
        endpoint: &Endpoint,
        cursor: &str,
        traffic: &std::sync::Arc<Traffic>,
    ) -> Result<Self, ClientError> {
        let mut connection = endpoint.connector.open_for_subscriber(traffic).await?;
        let path = match endpoint.protocol {
            Protocol::Pushwire | Protocol::Tornado => format!("/a/message/events?cursor={cursor}"),
            Protocol::Nchan => format!("/sub?last_event_id={cursor}"),
        };
        let request = endpoint
            .request(Method::GET, &path)
            .header(header::ACCEPT, "text/event-stream")
            .body(Full::new(Bytes::new()))
            .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = connection.send(request).await?;
        if response.status() != StatusCode::OK {
            return Err(ClientError::Http(format!("event stream answered {}", response.status())));
        }
        Ok(Sse {
            protocol: endpoint.protocol,
            _connection: connection,
            body: response.into_body(),
            buffer: BytesMut::new(),
            retry: None,
        })
    }

    pub(super) async fn next(&mut self, items: &mut Vec<Item>) -> Result<(), ClientError> {
        let before = items.len();
        while items.len() == before {
            while let Some(end) = find(&self.buffer, b"\n\n") {
                let event = self.buffer.split_to(end + 2);
                self.parse_event(&event[..end], items);
            }
            if items.len() > before {
                break;
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buffer.extend_from_slice(data.chunk());
                    }
                }
                Some(Err(e)) => return Err(e.into()),
                None => return Err(ClientError::Closed),
            }
        }
        Ok(())
    }

    /// One event block (without its blank line): comments are skipped, `retry:` is kept.
    pub(super) fn parse_event(&mut self, event: &[u8], items: &mut Vec<Item>) {
        let mut data: Option<&[u8]> = None;
        let (mut gap, mut reconnect) = (false, false);
        for line in event.split(|&b| b == b'\n') {
            if let Some(value) = line.strip_prefix(b"data: ") {
                data = Some(value);
            } else if line == b"event: gap" {
                gap = true;
            } else if line == b"event: reconnect" {
                reconnect = true;
            } else if let Some(ms) = line.strip_prefix(b"retry:").and_then(|v| std::str::from_utf8(v).ok()) {
                self.retry = ms.trim().parse().ok().map(Duration::from_millis).or(self.retry);
            }
        }
        if reconnect {
            // `{"reason":…,"delay_ms":…}`; its `retry:` says the same to an `EventSource`.
            if let Some(told) = data.and_then(|data| serde_json::from_slice::<Told>(data).ok()) {
                items.push(told.item());
            }
            return;
        }
        match (gap, data) {
            (true, _) => items.push(Item::Gap),
            (false, Some(data)) => items.push(match self.protocol {
                Protocol::Pushwire | Protocol::Tornado => json_item(data),
                Protocol::Nchan => raw_item(data),
            }),
            (false, None) => {}
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|window| window == needle)
}
