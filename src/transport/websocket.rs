//! `GET /a/message/socket[?cursor=ID]`: WebSocket.
//!
//! After the upgrade the server sends the history after `cursor` (none: everything
//! retained), then every new message: one JSON message object per text frame, the
//! same bytes for every subscriber. The client may publish in-band with a text frame
//! `{"body": "…"}` (Tornado's WebSocket chat format); the message goes to every
//! transport, the sender included.
//!
//! - Browsers do not apply CORS to WebSockets, so the `Origin` of an upgrade must be
//!   this server's own (or in `--allow-origin`), or it gets 403. Clients without an
//!   `Origin` (not browsers) are let in, as Tornado does.
//! - Gap notices are control objects `{"gap": {"reason": …, "missed": N|null}}`: they
//!   have no `id`, so clients tell them from messages.
//! - Bad frames close the socket with a reason: not JSON 1007, no `body` or a body
//!   the bus refuses 1008, binary 1003, too large 1009. Shutdown closes with 1001.
//! - A ping goes out every 25 s (default), which also keeps proxies from cutting the
//!   connection while idle.

use axum::Router;
use axum::extract::ws::{CloseFrame, Message as Frame, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use axum::routing::get;
use futures::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::time::{MissedTickBehavior, interval};

use super::{AppError, CursorQuery};
use crate::AppState;
use crate::bus::Delivery;

pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/socket", get(upgrade))
}

async fn upgrade(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<CursorQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, AppError> {
    check_origin(&headers, &state.config.allowed_origins)?;
    let max = state.config.max_body;
    Ok(ws.max_message_size(max).max_frame_size(max).on_upgrade(move |socket| serve(socket, state, query.cursor)))
}

/// A frame from the client: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// Runs one connection until either side closes or the server shuts down.
async fn serve(socket: WebSocket, state: AppState, cursor: Option<String>) {
    let (mut sink, mut frames) = socket.split();
    let mut subscription = state.bus.subscribe(cursor.as_deref().filter(|c| !c.is_empty())).await;
    let mut ping = interval(state.config.ws_ping);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping.reset(); // the first tick would fire at once

    let close: Option<(u16, &str)> = loop {
        tokio::select! {
            delivery = subscription.next() => {
                let text = match delivery {
                    Some(Delivery::Message(message)) => message.json.clone(),
                    Some(Delivery::Gap(gap)) => Utf8Bytes::from(format!(r#"{{"gap":{}}}"#, gap.to_json())),
                    None => break Some((close_code::AWAY, "server is going away")),
                };
                if sink.send(Frame::Text(text)).await.is_err() {
                    break None;
                }
            }
            frame = frames.next() => match frame {
                Some(Ok(Frame::Text(text))) => {
                    if let Err(refusal) = publish(&state, &text).await {
                        break Some(refusal);
                    }
                }
                Some(Ok(Frame::Binary(_))) => break Some((close_code::UNSUPPORTED, "binary frames are not accepted")),
                Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
                Some(Ok(Frame::Close(_))) | None => break None,
                Some(Err(error)) => break too_large(&error).then_some((close_code::SIZE, "frame too large")),
            },
            _ = ping.tick() => {
                if sink.send(Frame::Ping(Default::default())).await.is_err() {
                    break None;
                }
            }
            () = state.shutdown.cancelled() => break Some((close_code::AWAY, "server shutting down")),
        }
    };
    if let Some((code, reason)) = close {
        let frame = CloseFrame { code, reason: Utf8Bytes::from(reason) };
        // The peer may be gone already; nothing is left to do about it.
        let _ = sink.send(Frame::Close(Some(frame))).await;
    }
}

/// Publishes a client frame, or says which close code and reason refuse it.
async fn publish(state: &AppState, text: &str) -> Result<(), (u16, &'static str)> {
    let post: Post = serde_json::from_str(text).map_err(|_| (close_code::INVALID, "frame is not a JSON object"))?;
    let body = post.body.ok_or((close_code::POLICY, "frame has no \"body\""))?;
    match state.bus.publish(body).await {
        Ok(_) => Ok(()),
        Err(crate::bus::PublishError::TooLarge { .. }) => Err((close_code::SIZE, "message body too large")),
        Err(_) => Err((close_code::POLICY, "message body refused (empty or control characters)")),
    }
}

fn too_large(error: &axum::Error) -> bool {
    use std::error::Error;
    matches!(
        error.source().and_then(|e| e.downcast_ref::<tokio_tungstenite::tungstenite::Error>()),
        Some(tokio_tungstenite::tungstenite::Error::Capacity(_))
    )
}

/// Allows upgrades without `Origin`, from this server's own origin (the `Host` the
/// request was sent to) and from the configured extra origins.
fn check_origin(headers: &HeaderMap, allowed: &[String]) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| AppError::CrossOrigin)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    let same_origin = host.is_some_and(|host| origin_host.is_some_and(|o| o.eq_ignore_ascii_case(host)));
    if same_origin || allowed.iter().any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin)) {
        Ok(())
    } else {
        Err(AppError::CrossOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        headers
    }

    #[test]
    fn same_origin_missing_origin_and_allowed_origins_pass() {
        assert!(check_origin(&headers(Some("http://127.0.0.1:8888"), "127.0.0.1:8888"), &[]).is_ok());
        assert!(check_origin(&headers(None, "127.0.0.1:8888"), &[]).is_ok());
        let allowed = ["https://chat.example".to_owned()];
        assert!(check_origin(&headers(Some("https://chat.example"), "127.0.0.1:8888"), &allowed).is_ok());
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in ["http://evil.example", "http://127.0.0.1:9999", "null"] {
            assert!(check_origin(&headers(Some(origin), "127.0.0.1:8888"), &[]).is_err(), "{origin}");
        }
    }
}
