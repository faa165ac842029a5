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
}

impl LongPoll {
    pub(super) async fn connect(
        endpoint: &Endpoint,
        cursor: &str,
        traffic: &std::sync::Arc<Traffic>,
    ) -> Result<Self, ClientError> {
        let connection = endpoint.connector.open_for_subscriber(traffic).await?;
        Ok(LongPoll { endpoint: endpoint.clone(), connection, cursor: cursor.to_owned(), validators: None })
    }

    pub(super) async fn next(&mut self, items: &mut Vec<Item>) -> Result<(), ClientError> {
        let request = match self.endpoint.protocol {
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
        .map_err(|e| ClientError::Http(e.to_string()))?;
        let response = self.connection.send(request).await?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(response).await?;
        match self.endpoint.protocol {
            Protocol::Pushwire | Protocol::Tornado => {
                if status != StatusCode::OK {
                    return Err(ClientError::Http(format!("poll answered {status}")));
                }
                #[derive(Deserialize)]
                struct Answer<'a> {
                    #[serde(borrow)]
                    messages: Vec<JsonMessage<'a>>,
                    gap: Option<serde::de::IgnoredAny>,
                    reconnect: Option<Told>,
                }
                let answer: Answer =
                    serde_json::from_slice(&body).map_err(|e| ClientError::Http(format!("poll answer: {e}")))?;
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
                    items.push(raw_item(&body));
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
