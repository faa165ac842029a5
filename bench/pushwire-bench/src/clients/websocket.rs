//! The WebSocket subscriber: pushwire's `/a/message/socket`, nchan's `/sub` (`/pubsub`
//! when it publishes in-band); by HTTP/1.1 upgrade or HTTP/2 extended CONNECT.

use futures::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{Endpoint, Item, json_item, raw_item};
use crate::http::{ClientError, HttpConnection};
use crate::record::Protocol;
use crate::wire::{Connection, Traffic};

/// WebSocket: one message per text frame; optionally publishes in-band.
pub(crate) struct WebSocket {
    protocol: Protocol,
    stream: WebSocketStream<Connection>,
    inband: Option<mpsc::Receiver<String>>,
    // HTTP/2: the connection the stream is on, kept open as long as the stream.
    _connection: Option<HttpConnection>,
}

impl WebSocket {
    pub(super) async fn connect(
        endpoint: &Endpoint,
        cursor: &str,
        traffic: &std::sync::Arc<Traffic>,
        inband: Option<mpsc::Receiver<String>>,
    ) -> Result<Self, ClientError> {
        let path = match (endpoint.protocol, inband.is_some()) {
            (Protocol::Pushwire | Protocol::Tornado, _) => format!("/a/message/socket?cursor={cursor}"),
            // nchan publishes client frames only on a pubsub location.
            (Protocol::Nchan, true) => format!("/pubsub?last_event_id={cursor}"),
            (Protocol::Nchan, false) => format!("/sub?last_event_id={cursor}"),
        };
        let (stream, connection) = endpoint.connector.websocket(traffic, &path).await?;
        Ok(WebSocket { protocol: endpoint.protocol, stream, inband, _connection: connection })
    }

    pub(super) async fn next(&mut self, items: &mut Vec<Item>) -> Result<(), ClientError> {
        let WebSocket { protocol, stream, inband, .. } = self;
        loop {
            let outgoing = async {
                match inband.as_mut() {
                    Some(inband) => inband.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                frame = stream.next() => match frame {
                    Some(Ok(Frame::Text(text))) => {
                        items.push(match protocol {
                            Protocol::Pushwire | Protocol::Tornado => json_item(text.as_bytes()),
                            Protocol::Nchan => raw_item(text.as_bytes()),
                        });
                        return Ok(());
                    }
                    Some(Ok(Frame::Binary(data))) => {
                        items.push(raw_item(&data));
                        return Ok(());
                    }
                    Some(Ok(Frame::Close(_))) | None => return Err(ClientError::Closed),
                    // tungstenite answers pings by itself on the next read or write.
                    Some(Ok(_)) => {}
                    Some(Err(e)) => return Err(e.into()),
                },
                Some(payload) = outgoing => {
                    let frame = match protocol {
                        Protocol::Pushwire | Protocol::Tornado => serde_json::json!({ "body": payload }).to_string(),
                        Protocol::Nchan => payload,
                    };
                    stream.send(Frame::text(frame)).await?;
                }
            }
        }
    }
}
