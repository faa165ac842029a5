//! A publish stream: the client opens a bidirectional stream, writes `{"body":"…"}` and
//! finishes its side; the server answers on it with the message, or with the refusal
//! `{"error":{"reason":…,"message":…}}` (and `"retry_after"` when over the publish
//! limit), then finishes.

use std::net::SocketAddr;

use bytes::Bytes;
use serde::Deserialize;
use tokio::time::timeout;
use wtransport::{RecvStream, SendStream};

use super::CLOSE_GRACE;
use crate::AppState;
use crate::transport::error::publish_reason;

/// A publish stream's request: `{"body": "…"}`.
#[derive(Deserialize)]
struct Post {
    body: Option<String>,
}

/// Reads one publish stream to its end, publishes, and answers on it.
pub(super) async fn publish(mut send: SendStream, recv: RecvStream, state: AppState, peer: SocketAddr) {
    let answer = match read_post(recv, &state).await {
        Ok(body) => match state.publish_limit.check(peer, &body) {
            Err(limited) => {
                state.metrics.rejected("rate_limited");
                Bytes::from(limited.json() + "\n")
            }
            Ok(()) => match state.bus.publish(body).await {
                Ok(message) => {
                    state.metrics.published();
                    Bytes::from([&message.json[..], b"\n"].concat())
                }
                Err(error) => refusal(&state, publish_reason(&error), &error.to_string()),
            },
        },
        Err((reason, message)) => refusal(&state, reason, message),
    };
    let _ = timeout(CLOSE_GRACE, async {
        send.write_all(&answer).await?;
        send.finish().await
    })
    .await;
}

/// The body of a publish stream, or why it is refused.
async fn read_post(mut recv: RecvStream, state: &AppState) -> Result<String, (&'static str, &'static str)> {
    // A message object carries its body about twice, escaped: a generous bound.
    let limit = state.config.max_body * 6 + 1024;
    let mut bytes = Vec::new();
    let mut buffer = [0; 4096];
    loop {
        match timeout(state.config.body_timeout, recv.read(&mut buffer)).await {
            Err(_elapsed) => return Err(("body_timeout", "the stream stalled before it finished")),
            Ok(Ok(None)) => break,
            Ok(Ok(Some(read))) => bytes.extend_from_slice(&buffer[..read]),
            Ok(Err(_)) => return Err(("body_unreadable", "the stream was reset")),
        }
        if bytes.len() > limit {
            return Err(("body_too_large", "request body too large"));
        }
    }
    let post: Post = serde_json::from_slice(&bytes).map_err(|_| ("not_json", "the stream is not a JSON object"))?;
    post.body.ok_or(("no_body", "the object has no \"body\""))
}

/// An `{"error":…}` answer, counted under `reason` as the other paths count it.
fn refusal(state: &AppState, reason: &'static str, message: &str) -> Bytes {
    state.metrics.rejected(reason);
    let error = serde_json::json!({ "error": { "reason": reason, "message": message } });
    Bytes::from(format!("{error}\n"))
}
