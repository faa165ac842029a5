//! Form bodies and the XSRF check that every POST goes through.
//!
//! Tornado's chat demo protects POSTs with a double-submit token: the page sets a
//! cookie `_xsrf` that scripts can read, and each POST repeats it as the form field
//! `_xsrf` or the header `X-XSRFToken`. A page of another origin cannot read the cookie,
//! so it cannot forge the field.

use std::borrow::Cow;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, HeaderValue, header};
use bytes::BytesMut;
use http_body_util::BodyExt as _;
use http_body_util::{LengthLimitError, Limited};
use hyper::body::Body as _;
use percent_encoding::percent_decode;

use super::AppError;
use crate::AppState;

/// The name of the XSRF cookie and form field.
pub(super) const XSRF: &str = "_xsrf";

/// A decoded `application/x-www-form-urlencoded` body. As an extractor it is the
/// whole front door of a POST: the body is read up to a limit, decoded, and its XSRF
/// token checked against the cookie before the handler runs.
#[derive(Debug)]
pub struct Form {
    /// The body, copied out of hyper's buffer into a string checked to be UTF-8
    /// once. Fields are found and decoded when asked for: a poll asks for two, and
    /// most need no decoding.
    body: String,
}

/// A field whose value is not UTF-8 text once decoded. The handler decides what that
/// means: a message body is refused, a cursor is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotText;

impl FromRequest<AppState> for Form {
    type Rejection = AppError;

    async fn from_request(request: Request, state: &AppState) -> Result<Self, AppError> {
        let (parts, body) = request.into_parts();
        // Percent-encoding can triple a body; the bus enforces the exact limit on the
        // decoded text, this only stops absurd uploads before they are buffered.
        let limit = state.config.max_body * 3 + 4096;
        let body = read(Limited::new(body, limit), state.config.body_timeout).await?;
        let form = Form::parse(body)?;
        form.check_xsrf(&parts.headers)?;
        Ok(form)
    }
}

/// The whole body, refused when it goes `patience` without a byte (a client trickling
/// it in would hold its connection for nothing) or grows past its limit.
async fn read(mut body: Limited<axum::body::Body>, patience: std::time::Duration) -> Result<Bytes, AppError> {
    let mut bytes = BytesMut::new();
    loop {
        // A body that has arrived is ready at once: the timer is never registered.
        let next =
            tokio::time::timeout(patience, body.frame()).await.map_err(|_elapsed| AppError::BodyTimeout(patience))?;
        match next {
            None => return Ok(bytes.freeze()),
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    if bytes.is_empty() && body.is_end_stream() {
                        return Ok(data); // the usual case: one piece, no copy
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            Some(Err(error)) if error.is::<LengthLimitError>() => return Err(AppError::BodyTooLarge),
            Some(Err(_)) => return Err(AppError::BodyUnreadable),
        }
    }
}

impl Form {
    /// Takes a form body, refused if it is not UTF-8. Its percent-escapes are decoded
    /// by [`Form::get`], which reports those that are not UTF-8 ([`NotText`]) rather
    /// than replacing them: a message is published as sent or not at all.
    pub fn parse(body: Bytes) -> Result<Self, AppError> {
        // A form body is ASCII (anything else is percent-encoded), so UTF-8 is enough.
        let body = String::from_utf8(body.into()).map_err(|_| AppError::MalformedForm)?;
        Ok(Form { body })
    }

    /// The last value of `name` (Tornado's `get_argument`), if present; [`NotText`]
    /// when it is there but not UTF-8 text.
    pub fn get(&self, name: &str) -> Result<Option<Cow<'_, str>>, NotText> {
        let mut found = None;
        for pair in self.body.split('&').filter(|pair| !pair.is_empty()) {
            let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
            if raw_name == name || decode(raw_name).is_ok_and(|decoded| decoded == name) {
                found = Some(raw_value);
            }
        }
        found.map(decode).transpose()
    }

    /// Checks the request's XSRF token (form field or header) against its cookie.
    pub fn check_xsrf(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let field = self.get(XSRF).map_err(|NotText| AppError::MalformedForm)?;
        let sent = match &field {
            Some(token) => token,
            None => ["x-xsrftoken", "x-csrftoken"]
                .iter()
                .find_map(|h| headers.get(*h)?.to_str().ok())
                .ok_or(AppError::XsrfMissing)?,
        };
        let cookie = xsrf_cookie(headers).ok_or(AppError::XsrfNoCookie)?;
        let equal = constant_time_eq::constant_time_eq(sent.as_bytes(), cookie.as_bytes());
        if equal { Ok(()) } else { Err(AppError::XsrfMismatch) }
    }
}

/// A field's name or value as text: borrowed from the body when it has no `+` or
/// `%XX` escapes, which is most of them.
fn decode(raw: &str) -> Result<Cow<'_, str>, NotText> {
    if !raw.bytes().any(|b| b == b'+' || b == b'%') {
        return Ok(Cow::Borrowed(raw));
    }
    let spaced: Vec<u8> = raw.bytes().map(|b| if b == b'+' { b' ' } else { b }).collect();
    match percent_decode(&spaced).decode_utf8() {
        Ok(decoded) => Ok(Cow::Owned(decoded.into_owned())),
        Err(_) => Err(NotText),
    }
}

/// The request's `_xsrf` cookie, if it has one of the form we issue. Scans bytes: the
/// other cookies need not be text, and checking that they are cost every POST a pass.
pub(super) fn xsrf_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .filter_map(|pair| pair.trim_ascii().strip_prefix(b"_xsrf="))
        .find(|token| is_token(token))
        // A token is ASCII hex, so this cannot fail.
        .and_then(|token| std::str::from_utf8(token).ok())
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
    text.len() == 32 && text.iter().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_decodes_plus_and_percent_and_keeps_the_last_value() {
        let form = Form::parse(Bytes::from_static(b"body=a+b%26c&x=1&x=2&flag&%63ursor=7")).unwrap();
        let get = |name| form.get(name).map(|value| value.map(Cow::into_owned));
        assert_eq!(get("body"), Ok(Some("a b&c".to_owned())));
        assert_eq!(get("x"), Ok(Some("2".to_owned())));
        assert_eq!(get("flag"), Ok(Some(String::new())));
        assert_eq!(get("cursor"), Ok(Some("7".to_owned())), "names are decoded too");
        assert_eq!(get("missing"), Ok(None));
    }

    #[test]
    fn escapes_that_are_not_utf8_make_that_field_not_text_and_raw_bytes_the_whole_form() {
        let form = Form::parse(Bytes::from_static(b"cursor=%FF%FE&x=1")).unwrap();
        assert_eq!(form.get("cursor"), Err(NotText));
        assert_eq!(form.get("x"), Ok(Some(Cow::Borrowed("1"))));
        assert!(matches!(Form::parse(Bytes::from_static(b"body=\xFF")), Err(AppError::MalformedForm)));
    }

    #[test]
    fn issued_cookies_are_recognised() {
        let cookie = new_xsrf_cookie();
        let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        assert_eq!(xsrf_cookie(&headers), pair.strip_prefix("_xsrf="));
    }

    #[test]
    fn cookies_that_are_not_text_do_not_hide_the_token() {
        let token = "0123456789abcdef0123456789abcdef";
        let mut headers = HeaderMap::new();
        let value = [b"name=J\xc3\xbcrgen; _xsrf=".as_slice(), token.as_bytes()].concat();
        headers.insert(header::COOKIE, HeaderValue::from_bytes(&value).unwrap());
        assert_eq!(xsrf_cookie(&headers), Some(token));
    }
}
