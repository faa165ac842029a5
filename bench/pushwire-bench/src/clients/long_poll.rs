//! The long-poll subscriber: pushwire's and Tornado's `/a/message/updates`, nchan's `/sub`
//! with its validators.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, StatusCode};
use serde::Deserialize;

use super::{Endpoint, Item, JsonMessage, Told, XSRF, raw_item, read_body};
use crate::http::{ClientError, HttpConnection};
use crate::record::Protocol;
use crate::wire::Traffic;

/// Long-polling: one request per answer, resubmitted with the newest cursor.
pub(crate) struct LongPoll {
    endpoint: Endpoint,
    connection: HttpConnection,
    /// pushwire/Tornado: the last message id. nchan: `last_event_id` for the first
    /// poll, then the validators of the last answer.
    cursor: String,
    validators: Option<(HeaderValue, HeaderValue)>,
    traffic: std::sync::Arc<Traffic>,
    /// Whether `connection` has answered a poll: one closed after that was reused.
    reused: bool,
    /// Polls sent again on a new connection.
    pub(super) resent: u64,
}

impl LongPoll {
    pub(super) async fn connect(
        endpoint: &Endpoint,
        cursor: &str,
        traffic: &std::sync::Arc<Traffic>,
    ) -> Result<Self, ClientError> {
        let connection = endpoint.connector.open_for_subscriber(traffic).await?;
        Ok(LongPoll {
            endpoint: endpoint.clone(),
            connection,
            cursor: cursor.to_owned(),
            validators: None,
            traffic: traffic.clone(),
            reused: false,
            resent: 0,
        })
    }

    pub(super) async fn next(&mut self, items: &mut Vec<Item>) -> Result<(), ClientError> {
        let response = match self.connection.send(self.request()?).await {
            Ok(response) => response,
            // The server closed a connection it had answered on before this poll was
            // answered: it let it idle out while its last answer was still on the way
            // (on a slow link, longer than pushwire's header timeout). Like a browser,
            // send the poll again at once on a new connection.
            Err(_) if self.reused => {
                self.connection = self.endpoint.connector.open_for_subscriber(&self.traffic).await?;
                self.resent += 1;
                self.connection.send(self.request()?).await?
            }
            Err(e) => return Err(e),
        };
        self.reused = true;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await?;
        self.answered(status, &headers, &body, items)
    }

    /// The next poll, from the cursor (nchan: with the last answer's validators).
    fn request(&self) -> Result<hyper::Request<Full<Bytes>>, ClientError> {
        match self.endpoint.protocol {
            Protocol::Pushwire | Protocol::Tornado => self
                .endpoint
                .request(Method::POST, "/a/message/updates")
                .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
                .header(header::COOKIE, format!("_xsrf={XSRF}"))
                .body(Full::new(Bytes::from(format!("_xsrf={XSRF}&cursor={}", self.cursor)))),
            Protocol::Nchan => {
                let builder = match &self.validators {
                    None => self.endpoint.request(Method::GET, &format!("/sub?last_event_id={}", self.cursor)),
                    Some((modified, etag)) => self
                        .endpoint
                        .request(Method::GET, "/sub")
                        .header(header::IF_MODIFIED_SINCE, modified.clone())
                        .header(header::IF_NONE_MATCH, etag.clone()),
                };
                builder.body(Full::new(Bytes::new()))
            }
        }
        .map_err(|e| ClientError::Http(e.to_string()))
    }

    /// Takes in an answer: its items, and where to poll from next.
    fn answered(
        &mut self,
        status: StatusCode,
        headers: &hyper::HeaderMap,
        body: &[u8],
        items: &mut Vec<Item>,
    ) -> Result<(), ClientError> {
        match self.endpoint.protocol {
            Protocol::Pushwire | Protocol::Tornado => {
                if status != StatusCode::OK {
                    return Err(ClientError::Http(format!("poll answered {status}")));
                }
                #[derive(Deserialize)]
                struct Answer<'a> {
                    // An idle poll is answered `{}`.
                    #[serde(borrow, default)]
                    messages: Vec<JsonMessage<'a>>,
                    gap: Option<serde::de::IgnoredAny>,
                    reconnect: Option<Told>,
                }
                let answer: Answer =
                    serde_json::from_slice(body).map_err(|e| ClientError::Http(format!("poll answer: {e}")))?;
                if answer.gap.is_some() {
                    items.push(Item::Gap);
                }
                for message in &answer.messages {
                    items.push(message.item());
                }
                items.extend(answer.reconnect.as_ref().map(Told::item));
                if let Some(last) = answer.messages.last().and_then(|m| m.id.as_ref()) {
                    self.cursor = last.to_string();
                }
            }
            Protocol::Nchan => match status {
                StatusCode::OK => {
                    items.push(raw_item(body));
                    let modified = headers.get(header::LAST_MODIFIED).cloned();
                    let etag = headers.get(header::ETAG).cloned();
                    match modified.zip(etag) {
                        Some(validators) => self.validators = Some(validators),
                        None => return Err(ClientError::Http("nchan answer without validators".into())),
                    }
                }
                // A subscriber timeout or a 304: ask again from the same place.
                StatusCode::NOT_MODIFIED | StatusCode::REQUEST_TIMEOUT => {}
                other => return Err(ClientError::Http(format!("poll answered {other}"))),
            },
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;
    use crate::payload::Stamp;
    use crate::record::Http;
    use crate::wire::Dialer;

    /// Answers one poll per connection, with the message `seq`, then closes it.
    async fn answer_once_per_connection(listener: TcpListener) {
        for seq in 1.. {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            let mut request = vec![0; 4096];
            let _ = tcp.read(&mut request).await;
            let payload = Stamp { tag: 7, seq, sent_ns: 1 }.payload(32);
            let body = format!(r#"{{"messages":[{{"id":"m{seq}","body":"{payload}"}}]}}"#);
            let answer = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}", body.len());
            let _ = tcp.write_all(answer.as_bytes()).await;
            // Left idle: closed, as a server closes a keep-alive connection that idled out.
        }
    }

    #[tokio::test]
    async fn a_poll_whose_reused_connection_was_closed_goes_again_on_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(answer_once_per_connection(listener));
        let endpoint = Endpoint::new(Protocol::Pushwire, Dialer::new(addr), Http::H1);
        let traffic = Arc::new(Traffic::default());
        let mut poll = LongPoll::connect(&endpoint, "m0", &traffic).await.unwrap();
        for seq in 1..=3 {
            let mut items = Vec::new();
            poll.next(&mut items).await.expect("each poll is answered");
            assert!(matches!(items[..], [Item::Message(stamp)] if stamp.seq == seq), "{items:?}");
            assert_eq!(poll.cursor, format!("m{seq}"));
        }
        assert_eq!(poll.resent, 2);
    }
}
