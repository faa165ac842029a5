//! `GET /` and `GET /static/…`: the chat page, compiled into the binary so it is served
//! wherever the server is started from, with no network needed.
//!
//! `GET /` also hands out the `_xsrf` cookie when the request has no valid one, and,
//! when the server emulates a network link (`--emulate-rtt`), says so on the page.
//!
//! Every answer carries `security_headers`: the page may run only its own files and
//! talk only to this server, and other sites may not frame it.

use axum::Router;
use std::borrow::Cow;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use emulated_link::Link;

use super::form::{new_xsrf_cookie, xsrf_cookie};
use super::webtransport::Availability;
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
    ("compare.js", include_str!("../../static/compare.js")),
    ("guide.js", include_str!("../../static/guide.js")),
    ("publish.js", include_str!("../../static/publish.js")),
    ("render.js", include_str!("../../static/render.js")),
    ("auto.js", include_str!("../../static/auto.js")),
    ("transports/index.js", include_str!("../../static/transports/index.js")),
    ("transports/base.js", include_str!("../../static/transports/base.js")),
    ("transports/long-poll.js", include_str!("../../static/transports/long-poll.js")),
    ("transports/websocket.js", include_str!("../../static/transports/websocket.js")),
    ("transports/sse.js", include_str!("../../static/transports/sse.js")),
    ("transports/webtransport.js", include_str!("../../static/transports/webtransport.js")),
    ("transports/wire.js", include_str!("../../static/transports/wire.js")),
    ("timeline.js", include_str!("../../static/timeline.js")),
];

/// The page and its static files, for [`super::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/", get(index)).route("/static/{*file}", get(static_file))
}

async fn index(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Response {
    let link = state.config.link();
    let page = if link.is_emulated() { Cow::Owned(with_link_note(&link)) } else { Cow::Borrowed(INDEX) };
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], page).into_response();
    if xsrf_cookie(&headers).is_none() {
        response.headers_mut().insert(header::SET_COOKIE, new_xsrf_cookie());
    }
    response.headers_mut().extend(security_headers(&state, &uri, &headers));
    response
}

/// The headers that make the page safe to put online. The page is ES modules and one
/// style sheet from `/static/`, nothing inline, so the policy allows only this origin's
/// files: an injected `<script>` or `style` attribute does not run. It may connect to
/// this origin (fetch and, by CSP 3, WebSocket) and, for WebTransport, to any UDP port of
/// this host: the page learns the port when it runs, and one that does not answer must
/// fail as the network fails (Auto then falls back), not as a refusal by the policy.
/// `data:` is the favicon. Only this origin may frame the page (no clickjacking; tests
/// frame the chat to share one connection pool).
fn security_headers(state: &AppState, uri: &Uri, headers: &HeaderMap) -> HeaderMap {
    let webtransport = match (state.webtransport.get(), request_host(uri, headers)) {
        (Some(Availability::Serving { .. }), Some(host)) => format!(" https://{host}:*"),
        _ => String::new(),
    };
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{webtransport}; frame-src 'self'; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'self'"
    );
    let mut security = HeaderMap::new();
    // `request_host` lets through only characters a header value may hold.
    security.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::try_from(policy).expect("a valid header value"));
    security.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    security.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    security
}

/// The host name (without port) the browser asked for: `:authority` on HTTP/2, `Host`
/// on HTTP/1.1. `None` unless it is plainly a host name or address, so it cannot add to
/// the policy it is written into.
fn request_host(uri: &Uri, headers: &HeaderMap) -> Option<String> {
    let authority = match uri.authority() {
        Some(authority) => authority.as_str(),
        None => headers.get(header::HOST)?.to_str().ok()?,
    };
    let authority: axum::http::uri::Authority = authority.parse().ok()?;
    let host = authority.host();
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']');
    (!host.is_empty() && host.chars().all(plain)).then(|| host.to_owned())
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

async fn static_file(
    State(state): State<AppState>,
    Path(file): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let Some((name, text)) = STATIC_FILES.iter().find(|(name, _)| *name == file) else {
        return (StatusCode::NOT_FOUND, "no such file\n").into_response();
    };
    // Modules must be served with a JavaScript type, or browsers refuse to run them.
    let content_type =
        if name.ends_with(".css") { "text/css; charset=utf-8" } else { "text/javascript; charset=utf-8" };
    let mut response = ([(header::CONTENT_TYPE, content_type)], *text).into_response();
    response.headers_mut().extend(security_headers(&state, &uri, &headers));
    response
}
