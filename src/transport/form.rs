//! Form bodies and the XSRF check that every POST goes through.
//!
//! Tornado's chat demo protects POSTs with a double-submit token: the page sets a
//! cookie `_xsrf` that scripts can read, and each POST repeats it as the form field
//! `_xsrf` or the header `X-XSRFToken`. A page of another origin cannot read the cookie,
//! so it cannot forge the field.

use axum::http::{HeaderMap, HeaderValue, header};
use percent_encoding::percent_decode;
use subtle::ConstantTimeEq;

use super::AppError;

/// The name of the XSRF cookie and form field.
pub const XSRF: &str = "_xsrf";

/// A decoded `application/x-www-form-urlencoded` body.
#[derive(Debug, Default)]
pub struct Form {
    fields: Vec<(String, String)>,
}

impl Form {
    /// Decodes a form body, refusing percent-escapes that are not UTF-8 rather than
    /// replacing them: a message is published as sent or not at all.
    pub fn parse(body: &[u8]) -> Result<Self, AppError> {
        let mut fields = Vec::new();
        for pair in body.split(|&b| b == b'&').filter(|pair| !pair.is_empty()) {
            let (name, value) = match pair.iter().position(|&b| b == b'=') {
                Some(at) => (&pair[..at], &pair[at + 1..]),
                None => (pair, &pair[..0]),
            };
            fields.push((decode(name)?, decode(value)?));
        }
        Ok(Form { fields })
    }

    /// The last value of `name` (Tornado's `get_argument`), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.fields.iter().rev().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    /// Checks the request's XSRF token (form field or header) against its cookie.
    pub fn check_xsrf(&self, headers: &HeaderMap) -> Result<(), AppError> {
        let sent = self
            .get(XSRF)
            .or_else(|| ["x-xsrftoken", "x-csrftoken"].iter().find_map(|h| headers.get(*h)?.to_str().ok()))
            .ok_or(AppError::XsrfMissing)?;
        let cookie = xsrf_cookie(headers).ok_or(AppError::XsrfNoCookie)?;
        if bool::from(sent.as_bytes().ct_eq(cookie.as_bytes())) { Ok(()) } else { Err(AppError::XsrfMismatch) }
    }
}

fn decode(raw: &[u8]) -> Result<String, AppError> {
    let spaced: Vec<u8> = raw.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    let decoded = percent_decode(&spaced).decode_utf8().map_err(|_| AppError::MalformedForm)?;
    Ok(decoded.into_owned())
}

/// The request's `_xsrf` cookie, if it has one of the form we issue.
pub fn xsrf_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix("_xsrf="))
        .find(|token| is_token(token))
}

/// A fresh token and the `Set-Cookie` value that hands it to the page. The cookie is
/// readable by scripts on purpose (clients copy it into each POST).
pub fn new_xsrf_cookie() -> HeaderValue {
    let token = uuid::Uuid::new_v4().simple().to_string();
    // A hex token and fixed attributes are always a valid header value.
    HeaderValue::from_str(&format!("{XSRF}={token}; Path=/; SameSite=Lax")).expect("cookie is ASCII")
}

/// Tokens are 32 lowercase hex digits.
fn is_token(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_decodes_plus_and_percent_and_keeps_the_last_value() {
        let form = Form::parse(b"body=a+b%26c&x=1&x=2&flag").unwrap();
        assert_eq!(form.get("body"), Some("a b&c"));
        assert_eq!(form.get("x"), Some("2"));
        assert_eq!(form.get("flag"), Some(""));
        assert_eq!(form.get("missing"), None);
    }

    #[test]
    fn parse_refuses_invalid_utf8() {
        assert!(matches!(Form::parse(b"body=%FF%FE"), Err(AppError::MalformedForm)));
    }

    #[test]
    fn issued_cookies_are_recognised() {
        let cookie = new_xsrf_cookie();
        let pair = cookie.to_str().unwrap().split(';').next().unwrap().to_owned();
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(&format!("other=1; {pair}")).unwrap());
        assert_eq!(xsrf_cookie(&headers), pair.strip_prefix("_xsrf="));
    }
}
