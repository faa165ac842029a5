//! The `Origin` check of the transports that browsers do not protect with CORS
//! (WebSocket): a page of another site must not open one with the user's cookies.

use axum::http::{HeaderMap, Uri, header};

use super::AppError;

/// Allows upgrades without `Origin`, from this server's own origin (the host the
/// request was sent to: `Host` over HTTP/1.1, the `:authority` of the URI over HTTP/2)
/// and from the configured extra origins.
pub(super) fn check_origin(headers: &HeaderMap, uri: &Uri, allowed: &[String]) -> Result<(), AppError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().map_err(|_| AppError::CrossOrigin)?;
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).or(uri.authority().map(|a| a.as_str()));
    check(origin, host, allowed)
}

/// [`check_origin`] for a request whose `Origin` and host are known as text (a
/// WebTransport session request).
pub(super) fn check(origin: &str, host: Option<&str>, allowed: &[String]) -> Result<(), AppError> {
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

    /// The check for a request to `host` (its `Host` header) from a page of `origin`.
    fn check_headers(origin: Option<&str>, host: &str, allowed: &[String]) -> Result<(), AppError> {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            headers.insert(header::ORIGIN, HeaderValue::from_str(origin).unwrap());
        }
        check_origin(&headers, &Uri::from_static("/"), allowed)
    }

    #[test]
    fn same_origin_missing_origin_and_allowed_origins_pass() {
        assert!(check_headers(Some("http://127.0.0.1:8888"), "127.0.0.1:8888", &[]).is_ok());
        assert!(check_headers(None, "127.0.0.1:8888", &[]).is_ok());
        let allowed = ["https://chat.example".to_owned()];
        assert!(check_headers(Some("https://chat.example"), "127.0.0.1:8888", &allowed).is_ok());
    }

    #[test]
    fn over_http2_the_host_is_the_uri_authority() {
        let mut headers = HeaderMap::new();
        headers.insert(header::ORIGIN, HeaderValue::from_static("https://127.0.0.1:8443"));
        let uri = Uri::from_static("https://127.0.0.1:8443/a/message/socket");
        assert!(check_origin(&headers, &uri, &[]).is_ok());
        let elsewhere = Uri::from_static("https://127.0.0.1:9999/a/message/socket");
        assert!(check_origin(&headers, &elsewhere, &[]).is_err());
    }

    #[test]
    fn other_origins_are_refused() {
        for origin in ["http://evil.example", "http://127.0.0.1:9999", "null"] {
            assert!(check_headers(Some(origin), "127.0.0.1:8888", &[]).is_err(), "{origin}");
        }
    }
}
