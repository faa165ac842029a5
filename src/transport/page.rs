//! `GET /` and `GET /static/…`: the chat page, compiled into the binary so it is served
//! wherever the server is started from, with no network needed.
//!
//! `GET /` also hands out the `_xsrf` cookie when the request has no valid one, and,
//! when the server emulates a network link (`--emulate-rtt`), says so on the page.

use axum::Router;
use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use emulated_link::Link;

use super::form::{new_xsrf_cookie, xsrf_cookie};
use crate::AppState;

const INDEX: &str = include_str!("../../static/index.html");
/// Where the page says that the link is emulated, when it is.
const LINK_NOTE_MARKER: &str = "<!-- emulated link -->";

/// Every file under `/static/`: the style sheet and the client's ES modules (the page
/// loads `main.js`, which imports the rest; no build step).
const STATIC_FILES: &[(&str, &str)] = &[
    ("style.css", include_str!("../../static/style.css")),
    ("main.js", include_str!("../../static/main.js")),
    ("net.js", include_str!("../../static/net.js")),
    ("dom.js", include_str!("../../static/dom.js")),
    ("format.js", include_str!("../../static/format.js")),
    ("inbox.js", include_str!("../../static/inbox.js")),
    ("roundtrip.js", include_str!("../../static/roundtrip.js")),
    ("race.js", include_str!("../../static/race.js")),
    ("publish.js", include_str!("../../static/publish.js")),
    ("render.js", include_str!("../../static/render.js")),
    ("auto.js", include_str!("../../static/auto.js")),
    ("transports/index.js", include_str!("../../static/transports/index.js")),
    ("transports/base.js", include_str!("../../static/transports/base.js")),
    ("transports/long-poll.js", include_str!("../../static/transports/long-poll.js")),
    ("transports/websocket.js", include_str!("../../static/transports/websocket.js")),
    ("transports/sse.js", include_str!("../../static/transports/sse.js")),
    ("transports/webtransport.js", include_str!("../../static/transports/webtransport.js")),
];

/// The page and its static files, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/static/{*file}", get(static_file))
}

async fn index(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let link = state.config.link();
    let page = if link.is_emulated() { Cow::Owned(with_link_note(&link)) } else { Cow::Borrowed(INDEX) };
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    if xsrf_cookie(&headers).is_none() {
        response.headers_mut().insert(header::SET_COOKIE, new_xsrf_cookie());
    }
    response
}

/// The page with a note saying plainly that every connection crosses an emulated link.
fn with_link_note(link: &Link) -> String {
    let note = format!(
        r#"<p class="emulated-link" id="emulated-link" role="note" data-rtt-ms="{}">Emulated link: {} (added by the server to every connection: half the round trip each way, one more to connect)</p>"#,
        link.rtt.as_millis(),
        html_escape::encode_text(&link.to_string()),
    );
    INDEX.replacen(LINK_NOTE_MARKER, &note, 1)
}

async fn static_file(Path(file): Path<String>) -> Response {
    let Some((name, text)) = STATIC_FILES.iter().find(|(name, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    // Modules must be served with a JavaScript type, or browsers refuse to run them.
    let content_type =
        if name.ends_with(".css") { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
    ([(header::CONTENT_TYPE, content_type)], *text).into_response()
}
