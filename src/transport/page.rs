//! `GET /` and `GET /static/…`: the chat page, compiled into the binary so it is served
//! wherever the server is started from, with no network needed.
//!
//! `GET /` also hands out the `_xsrf` cookie when the request has no valid one.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::form::{new_xsrf_cookie, xsrf_cookie};
use crate::AppState;

const INDEX: &str = include_str!("../../static/index.html");

/// Every file under `/static/`, with its content type.
const STATIC_FILES: &[(&str, &str, &str)] = &[
    ("chat.js", "text/javascript; charset=utf-8", include_str!("../../static/chat.js")),
    ("style.css", "text/css; charset=utf-8", include_str!("../../static/style.css")),
];

pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/static/{file}", get(static_file))
}

async fn index(headers: HeaderMap) -> Response {
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    if xsrf_cookie(&headers).is_none() {
        response.headers_mut().insert(header::SET_COOKIE, new_xsrf_cookie());
    }
    response
}

async fn static_file(Path(file): Path<String>) -> Response {
    match STATIC_FILES.iter().find(|(name, _, _)| *name == file) {
        Some((_, content_type, text)) => ([(header::CONTENT_TYPE, *content_type)], *text).into_response(),
        None => (StatusCode::NOT_FOUND, "no such file\n").into_response(),
    }
}
