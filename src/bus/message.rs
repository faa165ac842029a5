//! A chat message and its wire forms.
//!
//! Every form a transport sends is built here once, at publish time, and shared by
//! reference count: fan-out to N subscribers copies pointers, not bytes.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use linkify::{LinkFinder, LinkKind};
use serde::Serialize;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

use super::Cursor;

/// One published chat message.
#[derive(Debug)]
pub struct Message {
    /// Position in the stream; its text form is the message `id`.
    pub cursor: Cursor,
    /// The id as sent on the wire, also the resume cursor.
    pub id: String,
    /// The text as posted.
    pub body: String,
    /// Server time of publishing, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// When this server built the message: the start of the delivery-latency metric.
    pub created: Instant,
    /// The JSON message object (`{"id","body","html","seq","time"}`), shared by every transport.
    pub json: Utf8Bytes,
    /// The SSE event for this message (`id:` + `data:` lines), see `transport::sse`.
    pub sse_event: Bytes,
    /// The long-poll answer when this is the only message in it, `{"messages":[json]}`:
    /// every poll waiting at the same cursor is answered with these same bytes.
    pub long_poll_answer: Bytes,
    /// The WebSocket text frame carrying `json`, header included, see `transport::fanout`.
    pub websocket_frame: Bytes,
}

/// The JSON message object, as Tornado's chat demo sends it plus `seq` and `time`.
#[derive(Serialize)]
struct MessageObject<'a> {
    id: &'a str,
    body: &'a str,
    html: &'a str,
    seq: u64,
    time: u64,
}

impl Message {
    /// Builds a message and encodes its wire forms.
    pub fn new(cursor: Cursor, body: String, time_ms: u64) -> Self {
        let id = cursor.to_string();
        let html = render_html(&id, &body);
        let object = MessageObject { id: &id, body: &body, html: &html, seq: cursor.seq, time: time_ms };
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_string(&object).expect("message serializes");
        let sse_event = Bytes::from(format!("id: {id}\ndata: {json}\n\n"));
        let long_poll_answer = Bytes::from(format!(r#"{{"messages":[{json}]}}"#));
        let websocket_frame = websocket_text_frame(&json);
        let created = Instant::now();
        Message { cursor, id, body, time_ms, created, json: json.into(), sse_event, long_poll_answer, websocket_frame }
    }
}

/// A complete server-to-client WebSocket text frame (unmasked, final) carrying `text`.
pub fn websocket_text_frame(text: &str) -> Bytes {
    let frame = Frame::message(Bytes::copy_from_slice(text.as_bytes()), OpCode::Data(Data::Text), true);
    let mut bytes = Vec::with_capacity(frame.len());
    // Formatting into a Vec cannot fail.
    frame.format(&mut bytes).expect("frame formats");
    bytes.into()
}

/// Milliseconds since the Unix epoch, the clock every message is stamped with.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The `html` field: `<div class="message" id="m{id}">…</div>` with the body escaped and
/// its http(s) URLs turned into links. Pages insert this as HTML, so escaping here is
/// the security boundary: every byte of user text goes through `encode_safe`.
fn render_html(id: &str, body: &str) -> String {
    let mut html = format!(r#"<div class="message" id="m{id}">"#);
    let mut finder = LinkFinder::new();
    finder.kinds(&[LinkKind::Url]);
    for span in finder.spans(body) {
        let text = html_escape::encode_safe(span.as_str());
        let is_web_link = span.kind().is_some() && {
            let lower = span.as_str().get(..8).unwrap_or(span.as_str()).to_ascii_lowercase();
            lower.starts_with("http://") || lower.starts_with("https://")
        };
        if is_web_link {
            html.push_str(&format!(r#"<a href="{text}" rel="nofollow noopener" target="_blank">{text}</a>"#));
        } else {
            html.push_str(&text);
        }
    }
    html.push_str("</div>");
    html
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_escapes_markup_and_links_web_urls_only() {
        let html = render_html(
            "x-1",
            r#"<script>alert("hi")</script> see https://example.com/a?b=1&c=2 or javascript:alert(1)"#,
        );
        assert!(html.starts_with(r#"<div class="message" id="mx-1">&lt;script&gt;"#), "{html}");
        assert!(!html.contains("<script>"));
        assert!(html.contains(r#"<a href="https:&#x2F;&#x2F;example.com&#x2F;a?b=1&amp;c=2""#), "{html}");
        assert!(!html.contains(r#"href="javascript"#));
    }

    #[test]
    fn json_and_sse_forms_carry_the_same_object() {
        let cursor: Cursor = "00000000000000ff-3".parse().unwrap();
        let message = Message::new(cursor, "hi".into(), 7);
        let object: serde_json::Value = serde_json::from_str(&message.json).unwrap();
        assert_eq!(object["id"], "00000000000000ff-3");
        assert_eq!(object["seq"], 3);
        assert_eq!(message.sse_event, format!("id: {}\ndata: {}\n\n", message.id, &*message.json));
        assert_eq!(message.long_poll_answer, format!(r#"{{"messages":[{}]}}"#, &*message.json));
        // A text frame: FIN and opcode 1, no mask, a 7-bit length, then the object.
        let frame = &message.websocket_frame;
        assert_eq!(frame[0], 0x81);
        assert_eq!(usize::from(frame[1]), message.json.len());
        assert_eq!(&frame[2..], message.json.as_bytes());
    }
}
