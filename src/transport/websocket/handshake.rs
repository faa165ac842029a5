//! The opening handshake (RFC 6455 §4.2 over HTTP/1.1, RFC 8441 §5 over HTTP/2), and
//! what a socket refused for want of a subscriber slot is told once it is open: a
//! browser is shown no status of a refused upgrade, only close code 1006.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use futures::{SinkExt, StreamExt};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::time::timeout;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};

use super::{CLOSE_GRACE, READ_BUFFER};
use crate::transport::AppError;
use crate::transport::reconnect::Reconnect;

/// Checks an opening handshake: over HTTP/1.1, the `Sec-WebSocket-Accept` to answer
/// with; over HTTP/2, `None` (an extended CONNECT has no key). Or why it is not one.
pub(super) fn check(request: &Request) -> Result<Option<HeaderValue>, AppError> {
    let headers = request.headers();
    if request.version() >= Version::HTTP_2 {
        let protocol = request.extensions().get::<hyper::ext::Protocol>();
        if request.method() != Method::CONNECT || protocol.is_none_or(|p| p.as_str() != "websocket") {
            return Err(AppError::NotWebSocket("expected an extended CONNECT with :protocol websocket (RFC 8441)"));
        }
        check_version(headers)?;
        return Ok(None);
    }
    accept_key(headers).map(Some)
}

fn check_version(headers: &HeaderMap) -> Result<(), AppError> {
    match headers.get(header::SEC_WEBSOCKET_VERSION) {
        Some(version) if version == "13" => Ok(()),
        _ => Err(AppError::NotWebSocket("Sec-WebSocket-Version must be 13")),
    }
}

/// The `Sec-WebSocket-Accept` for a valid upgrade request, or why it is not one.
fn accept_key(headers: &HeaderMap) -> Result<HeaderValue, AppError> {
    let has_token = |name: header::HeaderName, token: &str| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .any(|value| value.split(',').any(|item| item.trim().eq_ignore_ascii_case(token)))
    };
    if !has_token(header::CONNECTION, "upgrade") || !has_token(header::UPGRADE, "websocket") {
        return Err(AppError::NotWebSocket("expected a WebSocket upgrade (Connection: upgrade, Upgrade: websocket)"));
    }
    check_version(headers)?;
    let key = headers.get(header::SEC_WEBSOCKET_KEY).ok_or(AppError::NotWebSocket("Sec-WebSocket-Key missing"))?;
    // The accept key is base64: always a valid header value.
    Ok(HeaderValue::from_str(&derive_accept_key(key.as_bytes())).expect("base64 header value"))
}

/// The answer that accepts a checked handshake: 101 with the accept key over HTTP/1.1,
/// 200 over HTTP/2 (RFC 8441 §5: no key).
pub(super) fn accepted(accept: Option<HeaderValue>) -> Response {
    let mut response = Response::new(Body::empty());
    if let Some(accept) = accept {
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    response
}

/// Tells a socket that has no subscriber slot when to come back: the notice frame
/// `{"reconnect":{"reason":"over_capacity","delay_ms":N}}`, then close 1013 with the
/// delay in its reason, and the client's close awaited for up to the close grace.
pub(super) async fn turn_away(upgraded: Upgraded, reconnect: Reconnect) {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let mut socket = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    let close = CloseFrame { code: CloseCode::from(reconnect.close_code()), reason: reconnect.sentence().into() };
    let _ = timeout(CLOSE_GRACE, async {
        socket.send(Frame::text(super::reconnect_notice(&reconnect))).await?;
        socket.close(Some(close)).await?;
        // Until the client's close frame, and the end.
        while socket.next().await.transpose()?.is_some() {}
        Ok::<_, tokio_tungstenite::tungstenite::Error>(())
    })
    .await;
}
