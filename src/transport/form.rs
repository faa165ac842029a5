//! Form bodies and the XSRF check that every POST goes through.
//!
//! Tornado's chat demo protects POSTs with a double-submit token: the page sets a
//! cookie `_xsrf` that scripts can read, and each POST repeats it as the form field
//! `_xsrf` or the header `X-XSRFToken`. A page of another origin cannot read the cookie,
//! so it cannot forge the field.

use std::borrow::Cow;
use std::ops::Range;

use axum::BoxError;
use axum::body::{Bytes, HttpBody};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Request, header};
use bytes::BytesMut;
use futures::FutureExt as _;
use http_body_util::BodyExt as _;
use hyper::body::Frame;
use percent_encoding::percent_decode;

use super::AppError;
use crate::AppState;

/// The name of the XSRF cookie and form field.
pub(super) const XSRF: &str = "_xsrf";

/// The fields of a POST that the server reads; any other field is skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    /// `_xsrf`, the token checked against the cookie.
    Xsrf,
    /// `cursor`, where a poll resumes.
    Cursor,
    /// `body`, the message text.
    Body,
    /// `next`, where a no-script publish is redirected.
    Next,
}

impl Field {
    const ALL: [Field; 4] = [Field::Xsrf, Field::Cursor, Field::Body, Field::Next];

    /// Its name in the form.
    pub fn name(self) -> &'static str {
        match self {
            Field::Xsrf => XSRF,
            Field::Cursor => "cursor",
            Field::Body => "body",
            Field::Next => "next",
        }
    }

    /// The field a raw (still encoded) name in a form stands for, if any.
    fn named(raw: &[u8]) -> Option<Field> {
        match raw {
            b"_xsrf" => Some(Field::Xsrf),
            b"cursor" => Some(Field::Cursor),
            b"body" => Some(Field::Body),
            b"next" => Some(Field::Next),
            // Names are decoded too (`%63ursor` is `cursor`), which is rare.
            _ if has_escapes(raw) => {
                let name = decode(std::str::from_utf8(raw).ok()?).ok()?;
                Field::ALL.into_iter().find(|field| field.name() == name)
            }
            _ => None,
        }
    }
}

/// An `application/x-www-form-urlencoded` body. [`Form::read`] is the whole front door
/// of a POST: the body is read up to a limit, split into its fields in one pass, and
/// its XSRF token checked against the cookie before the handler goes on.
#[derive(Debug)]
pub struct Form {
    /// The body as hyper buffered it, checked to be UTF-8.
    body: Bytes,
    /// Where each [`Field`]'s raw value is in `body`: the last of that name, as
    /// Tornado's `get_argument` takes it. Decoded only when asked for; most values
    /// need no decoding.
    values: [Option<Range<usize>>; Field::ALL.len()],
}

/// A field whose value is not UTF-8 text once decoded. The handler decides what that
/// means: a message body is refused, a cursor is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotText;

impl Form {
    /// The form of a POST: its body read, split and its XSRF token checked. Any body
    /// type: hyper's own, unboxed, on the hot path ([`super::App`]).
    pub async fn read<B>(request: Request<B>, state: &AppState) -> Result<Self, AppError>
    where
        B: HttpBody<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        // Only the headers are needed after the body, for the XSRF check.
        let (Parts { headers, .. }, body) = request.into_parts();
        // Percent-encoding can triple a body; the bus enforces the exact limit on the
        // decoded text, this only stops absurd uploads before they are buffered.
        let limit = state.config.max_body * 3 + 4096;
        let body = read(body, limit, state.config.body_timeout).await?;
        let form = Form::parse(body)?;
        form.check_xsrf(&headers)?;
        Ok(form)
    }
}

/// The whole body, refused when it goes `patience` without a byte (a client trickling
/// it in would hold its connection for nothing) or grows past `limit` bytes.
async fn read<B>(body: B, limit: usize, patience: std::time::Duration) -> Result<Bytes, AppError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = std::pin::pin!(body);
    let mut bytes = BytesMut::new();
    loop {
        // A body that has arrived is ready at once, without a timer.
        let ready = body.frame().now_or_never().map(data_of).transpose()?;
        let next = match ready {
            Some(next) => next,
            // Boxed: a form's future is moved about, and this is the rare path.
            None => data_of(
                Box::pin(tokio::time::timeout(patience, body.frame()))
                    .await
                    .map_err(|_elapsed| AppError::BodyTimeout(patience))?,
            )?,
        };
        let Some(data) = next else { return Ok(bytes.freeze()) };
        if bytes.len() + data.len() > limit {
            return Err(AppError::BodyTooLarge);
        }
        if bytes.is_empty() && body.is_end_stream() {
            return Ok(data); // the usual case: one piece, no copy
        }
        bytes.extend_from_slice(&data);
    }
}

/// The data of a body's next frame (none at its end; trailers have none).
fn data_of<E>(next: Option<Result<Frame<Bytes>, E>>) -> Result<Option<Bytes>, AppError> {
    match next {
        None => Ok(None),
        Some(Ok(frame)) => Ok(Some(frame.into_data().unwrap_or_default())),
        Some(Err(_)) => Err(AppError::BodyUnreadable),
    }
}

impl Form {
    /// Splits a form body into its fields, refused if it is not UTF-8. Percent-escapes
    /// are decoded by [`Form::get`], which reports those that are not UTF-8
    /// ([`NotText`]) rather than replacing them: a message is published as sent or not
    /// at all.
    pub fn parse(body: Bytes) -> Result<Self, AppError> {
        // A form body is ASCII (anything else is percent-encoded); raw UTF-8 is taken.
        if !body.is_ascii() && std::str::from_utf8(&body).is_err() {
            return Err(AppError::MalformedForm);
        }
        let mut values = [const { None }; Field::ALL.len()];
        let mut start = 0;
        // One pass: each pair up to its `&`, its name up to its `=`.
        while start <= body.len() {
            let end = memchr::memchr(b'&', &body[start..]).map_or(body.len(), |at| start + at);
            let pair = &body[start..end];
            let (name, value_start) = match memchr::memchr(b'=', pair) {
                Some(equals) => (&pair[..equals], start + equals + 1),
                None => (pair, end),
            };
            if let Some(field) = Field::named(name) {
                values[field as usize] = Some(value_start..end);
            }
            start = end + 1;
        }
        Ok(Form { body, values })
    }

    /// The value of `field` (the last one of its name), if present; [`NotText`] when
    /// it is there but not UTF-8 text.
    pub fn get(&self, field: Field) -> Result<Option<Cow<'_, str>>, NotText> {
        let Some(raw) = self.raw(field) else { return Ok(None) };
        // Cut at ASCII `&` and `=` out of UTF-8 text: still UTF-8.
        let raw = std::str::from_utf8(raw).map_err(|_| NotText)?;
        if has_escapes(raw.as_bytes()) { decode(raw).map(Some) } else { Ok(Some(Cow::Borrowed(raw))) }
    }

    /// The value of `field` as sent, escapes and all.
    fn raw(&self, field: Field) -> Option<&[u8]> {
        self.values[field as usize].clone().map(|range| &self.body[range])
    }

    /// Checks the request's XSRF token (form field or header) against its cookie.
    pub fn check_xsrf(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let decoded;
        let sent = match self.raw(Field::Xsrf) {
            // A token has nothing to decode: its bytes are compared as sent.
            Some(raw) if !has_escapes(raw) => raw,
            Some(_) => {
                decoded = self.get(Field::Xsrf).map_err(|NotText| AppError::MalformedForm)?.unwrap_or_default();
                decoded.as_bytes()
            }
            None => ["x-xsrftoken", "x-csrftoken"]
                .iter()
                .find_map(|h| headers.get(*h)?.to_str().ok())
                .ok_or(AppError::XsrfMissing)?
                .as_bytes(),
        };
        let cookie = xsrf_cookie(headers).ok_or(AppError::XsrfNoCookie)?;
        let equal = constant_time_eq::constant_time_eq(sent, cookie);
        if equal { Ok(()) } else { Err(AppError::XsrfMismatch) }
    }
}

/// Whether a raw name or value has `+` or `%XX` escapes; most have none.
fn has_escapes(raw: &[u8]) -> bool {
    memchr::memchr2(b'+', b'%', raw).is_some()
}

/// A field's name or value with its `+` and `%XX` escapes decoded.
fn decode(raw: &str) -> Result<Cow<'_, str>, NotText> {
    let spaced: Vec<u8> = raw.bytes().map(|b| if b == b'+' { b' ' } else { b }).collect();
    match percent_decode(&spaced).decode_utf8() {
        Ok(decoded) => Ok(Cow::Owned(decoded.into_owned())),
        Err(_) => Err(NotText),
    }
}

/// The request's `_xsrf` cookie, if it has one of the form we issue. Scans bytes: the
/// other cookies need not be text, and checking that they are cost every POST a pass.
pub(super) fn xsrf_cookie(headers: &HeaderMap) -> Option<&[u8]> {
    for value in headers.get_all(header::COOKIE) {
        let mut rest = value.as_bytes();
        loop {
            let end = memchr::memchr(b';', rest).unwrap_or(rest.len());
            let token = rest[..end].trim_ascii().strip_prefix(b"_xsrf=");
            if let Some(token) = token.filter(|token| is_token(token)) {
                return Some(token);
            }
            let Some(next) = rest.get(end + 1..) else { break };
            rest = next;
        }
    }
    None
}

/// A fresh token and the `Set-Cookie` value that hands it to the page. The cookie is
/// readable by scripts on purpose (clients copy it into each POST).
pub(super) fn new_xsrf_cookie() -> HeaderValue {
    let token = uuid::Uuid::new_v4().simple().to_string();
    // A hex token and fixed attributes are always a valid header value.
    HeaderValue::from_str(&format!("{XSRF}={token}; Path=/; SameSite=Lax")).expect("cookie is ASCII")
}

/// Tokens are 32 lowercase hex digits.
fn is_token(text: &[u8]) -> bool {
    // Folded without an early exit, so that it runs on whole vectors.
    text.len() == 32 && text.iter().fold(true, |hex, b| hex & matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_decodes_plus_and_percent_and_keeps_the_last_value() {
        let form = Form::parse(Bytes::from_static(b"body=a+b%26c&next=1&next=2&_xsrf&%63ursor=7&other=x")).unwrap();
        let get = |field| form.get(field).map(|value| value.map(Cow::into_owned));
        assert_eq!(get(Field::Body), Ok(Some("a b&c".to_owned())));
        assert_eq!(get(Field::Next), Ok(Some("2".to_owned())));
        assert_eq!(get(Field::Xsrf), Ok(Some(String::new())));
        assert_eq!(get(Field::Cursor), Ok(Some("7".to_owned())), "names are decoded too");
        let empty = Form::parse(Bytes::from_static(b"&&other=1")).unwrap();
        assert_eq!(empty.get(Field::Cursor), Ok(None));
    }

    #[test]
    fn escapes_that_are_not_utf8_make_that_field_not_text_and_raw_bytes_the_whole_form() {
        let form = Form::parse(Bytes::from_static(b"cursor=%FF%FE&body=1")).unwrap();
        assert_eq!(form.get(Field::Cursor), Err(NotText));
        assert_eq!(form.get(Field::Body), Ok(Some(Cow::Borrowed("1"))));
        assert!(matches!(Form::parse(Bytes::from_static(b"body=\xFF")), Err(AppError::MalformedForm)));
    }

    #[test]
    fn raw_utf8_values_are_kept_whole() {
        let form = Form::parse(Bytes::from("next=/x&body=Jürgen=ok".as_bytes())).unwrap();
        assert_eq!(form.get(Field::Body), Ok(Some(Cow::Borrowed("Jürgen=ok"))));
        assert_eq!(form.get(Field::Next), Ok(Some(Cow::Borrowed("/x"))));
    }

    #[test]
    fn issued_cookies_are_recognised() {
        let cookie = new_xsrf_cookie();
        let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        assert_eq!(xsrf_cookie(&headers), pair.strip_prefix("_xsrf=").map(str::as_bytes));
    }

    #[test]
    fn cookies_that_are_not_text_do_not_hide_the_token() {
        let token = "0123456789abcdef0123456789abcdef";
        let mut headers = HeaderMap::new();
        let value = [b"name=J\xc3\xbcrgen; _xsrf=".as_slice(), token.as_bytes()].concat();
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&value).unwrap());
        assert_eq!(xsrf_cookie(&headers), Some(token.as_bytes()));
    }
}
