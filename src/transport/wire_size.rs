//! `POST /a/message/wire-size`: the size of the request head this server received, so
//! that the page can count what its requests cost on the wire. A page sees the headers
//! of the answers it gets, but not of the requests it sends: the browser adds most of
//! them (its identity, the cookie, the fetch metadata).
//!
//! The page asks once, with a POST shaped like its polls (the same fetch options and
//! form), and adjusts for what it knows differs (the path, the body's length). The
//! answer is `{"request_head": N, "body_headers": M, "time_ms": T}`: the head as
//! HTTP/1.1 text (over HTTP/2 the same fields travel compressed, so fewer bytes), the
//! part of it that only a request with a body has (`content-type`, `content-length`),
//! and the server's clock, from which the page tells the messages published before a
//! transport started (its history download) from live ones.
//!
//! Nothing here is on a transport's path: polls are never measured one by one.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, Uri, header};
use axum::response::Response;
use axum::routing::post;

use super::json_response;
use crate::AppState;

/// The endpoint, for [`super::routes`] to merge.
pub(super) fn routes() -> Router<AppState> {
    Router::new().route("/a/message/wire-size", post(measure))
}

/// The body is read (and dropped) so that the connection stays usable for the next
/// request, as after a poll.
async fn measure(method: Method, uri: Uri, headers: HeaderMap, _body: Bytes) -> Response {
    let request_head = request_head_size(&method, &uri, &headers);
    let body_headers: usize = [header::CONTENT_TYPE, header::CONTENT_LENGTH]
        .iter()
        .filter_map(|name| headers.get(name).map(|value| header_line_size(name.as_str(), value.as_bytes())))
        .sum();
    // A clock before 1970 is a broken host; 0 tells the page nothing rather than failing.
    let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_millis());
    json_response(format!(r#"{{"request_head":{request_head},"body_headers":{body_headers},"time_ms":{time_ms}}}"#))
}

/// `METHOD target HTTP/1.1\r\n`, a `name: value\r\n` line per header, and the blank line
/// that ends the head. Header names arrive lowercased, which does not change their length.
fn request_head_size(method: &Method, uri: &Uri, headers: &HeaderMap) -> usize {
    let target = uri.path_and_query().map_or("/", |target| target.as_str());
    let request_line = method.as_str().len() + 1 + target.len() + " HTTP/1.1\r\n".len();
    let fields: usize = headers.iter().map(|(name, value)| header_line_size(name.as_str(), value.as_bytes())).sum();
    request_line + fields + "\r\n".len()
}

fn header_line_size(name: &str, value: &[u8]) -> usize {
    name.len() + ": ".len() + value.len() + "\r\n".len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_head_size_counts_the_head_as_http_1_1_text() {
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, "a:1".parse().unwrap());
        headers.insert(header::CONTENT_LENGTH, "5".parse().unwrap());
        let uri: Uri = "/p?q=1".parse().unwrap();
        let text = "POST /p?q=1 HTTP/1.1\r\nhost: a:1\r\ncontent-length: 5\r\n\r\n";
        assert_eq!(request_head_size(&Method::POST, &uri, &headers), text.len());
    }
}
