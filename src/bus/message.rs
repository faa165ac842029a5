//! A chat message, the rules a body must follow, and the cache of its wire forms.
//!
//! The bus knows one form: the JSON message object every transport carries. How a
//! transport frames it (an SSE event, a WebSocket frame, a long-poll answer) is the
//! transport's own [`WireForm`]; each message caches every form it was asked for, so a
//! form is encoded once per message and shared by every subscriber of that transport:
//! fan-out to N subscribers copies pointers, not bytes.

use std::fmt;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use linkify::{LinkFinder, LinkKind};
use serde::Serialize;

use super::Cursor;

/// How many wire forms a message can cache: one per transport that encodes messages,
/// with room to spare (each empty slot costs a few words per retained message).
const WIRE_FORMS: usize = 8;

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
    pub json: Bytes,
    /// The wire forms encoded so far, by [`WireForm`] slot.
    forms: [OnceLock<Bytes>; WIRE_FORMS],
}

/// A transport's encoding of a message, declared once as a `static` in its module.
///
/// ```
/// use bytes::Bytes;
/// use pushwire::bus::{Cursor, Message, WireForm};
///
/// static LINE: WireForm = WireForm::new(|message| Bytes::from([&message.json[..], b"\n"].concat()));
///
/// let message = Message::new("00000000000000ff-1".parse::<Cursor>().unwrap(), "hi".into(), 0);
/// let line = message.wire(&LINE);
/// assert!(line.ends_with(b"}\n"));
/// assert_eq!(line.as_ptr(), message.wire(&LINE).as_ptr(), "encoded once, then shared");
/// ```
#[derive(Debug)]
pub struct WireForm {
    encode: fn(&Message) -> Bytes,
    /// The cache slot, taken from [`NEXT_SLOT`] the first time the form is used.
    slot: OnceLock<usize>,
}

/// The next free cache slot.
static NEXT_SLOT: AtomicUsize = AtomicUsize::new(0);

impl WireForm {
    /// A form encoded by `encode`.
    pub const fn new(encode: fn(&Message) -> Bytes) -> Self {
        WireForm { encode, slot: OnceLock::new() }
    }

    fn slot(&self) -> usize {
        *self.slot.get_or_init(|| {
            let slot = NEXT_SLOT.fetch_add(1, Ordering::Relaxed);
            assert!(slot < WIRE_FORMS, "more than {WIRE_FORMS} wire forms: raise WIRE_FORMS");
            slot
        })
    }
}

/// Why a published body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The body is empty or only white space.
    Empty,
    /// The body is longer than the limit, in bytes of UTF-8.
    TooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// The body contains a control character other than tab and newline.
    ControlCharacter,
    /// The shared message bus (Redis) cannot be reached; nothing was published.
    Unavailable,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Empty => f.write_str("message body is empty"),
            PublishError::TooLarge { limit } => write!(f, "message body exceeds {limit} bytes"),
            PublishError::ControlCharacter => f.write_str("message body contains a control character"),
            PublishError::Unavailable => f.write_str("the message bus (Redis) is unavailable; try again shortly"),
        }
    }
}

impl std::error::Error for PublishError {}

/// The message rules: non-empty, at most `limit` bytes, no control characters but
/// tab, newline and carriage return. Any other Unicode (emoji, other planes) is fine.
pub(super) fn validate_body(body: &str, limit: usize) -> Result<(), PublishError> {
    if body.trim().is_empty() {
        return Err(PublishError::Empty);
    }
    if body.len() > limit {
        return Err(PublishError::TooLarge { limit });
    }
    if body.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(PublishError::ControlCharacter);
    }
    Ok(())
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
    /// Builds a message and its JSON object.
    pub fn new(cursor: Cursor, body: String, time_ms: u64) -> Self {
        let id = cursor.to_string();
        let html = render_html(&id, &body);
        let object = MessageObject { id: &id, body: &body, html: &html, seq: cursor.seq, time: time_ms };
        // Serializing a struct of strings and integers cannot fail.
        let json = serde_json::to_vec(&object).expect("message serializes").into();
        let created = Instant::now();
        Message { cursor, id, body, time_ms, created, json, forms: Default::default() }
    }

    /// This message in `form`: encoded by the first caller, shared with every later one.
    pub fn wire(&self, form: &WireForm) -> &Bytes {
        self.forms[form.slot()].get_or_init(|| (form.encode)(self))
    }
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
    fn a_wire_form_is_encoded_once_per_message() {
        static CALLS: AtomicUsize = AtomicUsize::new(0);
        static COUNTED: WireForm = WireForm::new(|message| {
            CALLS.fetch_add(1, Ordering::Relaxed);
            message.json.clone()
        });
        let cursor: Cursor = "00000000000000ff-3".parse().unwrap();
        let message = Message::new(cursor, "hi".into(), 7);
        let object: serde_json::Value = serde_json::from_slice(&message.json).unwrap();
        assert_eq!((object["id"].as_str(), object["seq"].as_u64()), (Some("00000000000000ff-3"), Some(3)));
        assert_eq!(message.wire(&COUNTED), &message.json);
        assert_eq!(message.wire(&COUNTED), &message.json);
        assert_eq!(CALLS.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn message_rules_refuse_empty_oversized_and_control_characters() {
        assert_eq!(validate_body("  \n\t", 8), Err(PublishError::Empty));
        assert_eq!(validate_body("123456789", 8), Err(PublishError::TooLarge { limit: 8 }));
        assert_eq!(validate_body("a\u{7}b", 8), Err(PublishError::ControlCharacter));
        assert_eq!(validate_body("tab\there", 16), Ok(()));
        assert_eq!(validate_body("🦀 ok", 16), Ok(()));
    }
}
