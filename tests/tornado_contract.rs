//! The long-poll wire contract of Tornado's chat demo, status code by status code, as
//! router tests (no sockets; `tower::ServiceExt::oneshot`): the XSRF cookie and token,
//! `POST /a/message/new` with its `next` redirect, `POST /a/message/updates`, and the
//! `html` field the page inserts as HTML. What needs a connection (held polls, streams,
//! clients that vanish) is tested over real sockets elsewhere.

mod common;

use axum::body::Body;
use axum::http::header::{LOCATION, SET_COOKIE};
use axum::http::{Request, StatusCode};
use common::router::{Answer, RouterApp, encode};
use common::{content_type, ids, xsrf_from_set_cookie};
use pushwire::Config;
use pushwire::transport::webtransport::Availability;
use serde_json::Value;

const NEW: &str = "/a/message/new";
const UPDATES: &str = "/a/message/updates";

/// Both POST endpoints, each with the fields that make a valid request apart from XSRF.
const ENDPOINTS: [(&str, &[(&str, &str)]); 2] = [(NEW, &[("body", "hi")]), (UPDATES, &[])];

async fn app() -> RouterApp {
    RouterApp::new(Config::default()).await
}

/// Asserts a plain-text refusal with `status` and a message, and that the bus is still
/// empty.
async fn assert_refused(app: &RouterApp, answer: Answer, status: StatusCode) {
    assert_eq!(answer.status, status, "body: {}", answer.text);
    assert_eq!(content_type(&answer.headers), "text/plain");
    assert!(!answer.text.trim().is_empty(), "a refusal says why");
    assert!(app.history().await.is_empty(), "a refused request published a message");
}

fn get(path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut request = Request::get(path);
    if let Some(cookie) = cookie {
        request = request.header("cookie", cookie);
    }
    request.body(Body::empty()).expect("a request")
}

#[tokio::test]
async fn the_page_sets_a_script_readable_xsrf_cookie() {
    let app = app().await;
    let answer = app.send(get("/", None)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(content_type(&answer.headers), "text/html");
    let cookie = answer.headers.get(SET_COOKIE).expect("Set-Cookie").to_str().unwrap().to_owned();
    let token = xsrf_from_set_cookie(&answer.headers).unwrap();
    assert_eq!(token.len(), 32, "{cookie}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // The page's script copies the token into each POST, so it must be able to read it.
    assert!(!cookie.to_ascii_lowercase().contains("httponly"), "{cookie}");
}

#[tokio::test]
async fn the_page_keeps_a_valid_cookie_and_replaces_an_invalid_one() {
    let app = app().await;
    let again = app.send(get("/", Some(&format!("_xsrf={}", app.xsrf)))).await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.headers.get(SET_COOKIE), None, "a valid cookie was replaced");

    let forged = app.send(get("/", Some("_xsrf=not-a-token"))).await;
    let token = xsrf_from_set_cookie(&forged.headers).expect("an invalid cookie gets a new one");
    assert_ne!(token, "not-a-token");
}

#[tokio::test]
async fn the_page_loads_its_script_as_modules_served_as_javascript() {
    let app = app().await;
    let page = app.send(get("/", None)).await;
    assert!(page.text.contains(r#"<script type="module" src="/static/main.js">"#), "{}", page.text);
    for module in
        ["main.js", "transports/index.js", "transports/long-poll.js", "transports/websocket.js", "transports/sse.js"]
    {
        let answer = app.send(get(&format!("/static/{module}"), None)).await;
        assert_eq!(answer.status, StatusCode::OK, "{module}");
        assert_eq!(content_type(&answer.headers), "text/javascript", "{module}");
    }
    let missing = app.send(get("/static/transports/carrier-pigeon.js", None)).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn the_page_and_its_files_allow_only_their_own_scripts_styles_and_connections() {
    let app = app().await;
    let webtransport = Availability::Serving { port: 4433, sha256: None };
    app.state.webtransport.set(webtransport).expect("not set before");
    for path in ["/", "/static/main.js", "/static/style.css"] {
        let request = Request::get(path).header("host", "chat.example:8080").body(Body::empty()).unwrap();
        let answer = app.send(request).await;
        assert_eq!(answer.status, StatusCode::OK, "{path}");
        let header = |name: &str| answer.headers.get(name).map(|v| v.to_str().unwrap().to_owned());
        let policy = header("content-security-policy").unwrap_or_else(|| panic!("{path} has no CSP"));
        let directives: Vec<&str> = policy.split(';').map(str::trim).collect();
        for expected in [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            // The WebTransport session: on a UDP port of the host the page was asked for.
            "connect-src 'self' https://chat.example:*",
            "frame-ancestors 'self'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(directives.contains(&expected), "{path}: {expected:?} not in {policy}");
        }
        assert!(!policy.contains("unsafe"), "{path}: {policy}");
        assert_eq!(header("x-content-type-options").as_deref(), Some("nosniff"), "{path}");
        assert_eq!(header("referrer-policy").as_deref(), Some("no-referrer"), "{path}");
    }
}

#[tokio::test]
async fn a_host_header_that_is_not_a_plain_host_name_adds_nothing_to_the_policy() {
    let app = app().await;
    app.state.webtransport.set(Availability::Serving { port: 4433, sha256: None }).expect("not set before");
    let request = Request::get("/").header("host", "evil.example;script-src *").body(Body::empty()).unwrap();
    let policy = app.send(request).await.headers["content-security-policy"].to_str().unwrap().to_owned();
    assert!(policy.contains("connect-src 'self';"), "{policy}");
    assert!(!policy.contains("evil"), "{policy}");
}

#[tokio::test]
async fn publish_with_the_token_as_form_field_answers_the_message_as_json() {
    let app = app().await;
    let message = app.publish("hello").await;
    assert_eq!(message["body"], "hello");
    assert!(message["id"].is_string() && message["html"].is_string(), "{message}");
    assert!(message["seq"].is_u64() && message["time"].is_u64(), "{message}");
    assert_eq!(ids(&[message]), [app.history().await[0].id.clone()]);
}

#[tokio::test]
async fn publish_with_the_token_as_x_xsrftoken_header_is_accepted() {
    let app = app().await;
    let request = RouterApp::form_request(NEW, Some(&app.xsrf), &[("X-XSRFToken", &app.xsrf)], "body=hi");
    assert_eq!(app.send(request).await.json()["body"], "hi");
}

#[tokio::test]
async fn posts_without_a_token_are_forbidden() {
    let app = app().await;
    for (path, fields) in ENDPOINTS {
        let answer = app.post(path, fields).await;
        assert_refused(&app, answer, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn posts_with_a_token_that_does_not_match_the_cookie_are_forbidden() {
    let app = app().await;
    let other = RouterApp::new(Config::default()).await.xsrf; // a valid token, but another browser's
    assert_ne!(app.xsrf, other);
    for (path, fields) in ENDPOINTS {
        // The header form of the token is checked just the same.
        let request = RouterApp::form_request(path, Some(&app.xsrf), &[("X-XSRFToken", &other)], encode(fields));
        assert_refused(&app, app.send(request).await, StatusCode::FORBIDDEN).await;
        let mut fields = fields.to_vec();
        fields.push(("_xsrf", &other));
        let answer = app.post(path, &fields).await;
        assert_refused(&app, answer, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn posts_without_the_cookie_are_forbidden_even_with_a_token() {
    let app = app().await;
    for (path, fields) in ENDPOINTS {
        let mut fields = fields.to_vec();
        fields.push(("_xsrf", &app.xsrf));
        let request = RouterApp::form_request(path, None, &[], encode(&fields));
        assert_refused(&app, app.send(request).await, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn publish_without_a_body_field_is_a_bad_request() {
    let app = app().await;
    let answer = app.post(NEW, &[("_xsrf", &app.xsrf)]).await;
    assert_refused(&app, answer, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn publish_of_an_empty_blank_or_control_character_body_is_a_bad_request() {
    let app = app().await;
    for body in ["", "  \n\t ", "bell\u{7}"] {
        let answer = app.post(NEW, &[("body", body), ("_xsrf", &app.xsrf)]).await;
        assert_refused(&app, answer, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn publish_of_a_form_that_is_not_utf8_is_a_bad_request() {
    let app = app().await;
    let form = format!("body=%FF%FE&_xsrf={}", app.xsrf);
    let answer = app.send(RouterApp::form_request(NEW, Some(&app.xsrf), &[], form)).await;
    assert_refused(&app, answer, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn publish_of_an_oversized_body_is_payload_too_large() {
    let app = RouterApp::new(Config { max_body: 16, ..Config::default() }).await;
    let exactly = "x".repeat(16);
    assert_eq!(app.publish(&exactly).await["body"], exactly.as_str());
    // Over the message limit, and far over the request-size guard in front of it.
    for size in [17, 100_000] {
        let body = "x".repeat(size);
        let answer = app.post(NEW, &[("body", &body), ("_xsrf", &app.xsrf)]).await;
        assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
    }
    assert_eq!(app.history().await.len(), 1);
}

#[tokio::test]
async fn publish_with_a_local_next_redirects_there_and_publishes() {
    let app = app().await;
    let answer = app.post(NEW, &[("body", "via form"), ("_xsrf", &app.xsrf), ("next", "/room?x=1")]).await;
    assert_eq!(answer.status, StatusCode::FOUND);
    assert_eq!(answer.headers.get(LOCATION).unwrap(), "/room?x=1");
    let history = app.history().await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, "via form");
}

#[tokio::test]
async fn publish_with_an_offsite_next_is_a_bad_request_and_publishes_nothing() {
    let app = app().await;
    for next in ["//evil.example", "http://evil.example", "https://evil.example/", "/\\evil.example", "evil"] {
        let answer = app.post(NEW, &[("body", "hi"), ("_xsrf", &app.xsrf), ("next", next)]).await;
        assert!(answer.headers.get(LOCATION).is_none(), "{next}");
        assert_refused(&app, answer, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn get_on_the_post_endpoints_is_method_not_allowed() {
    let app = app().await;
    for path in [NEW, UPDATES, WIRE_SIZE] {
        let answer = app.send(get(path, Some(&format!("_xsrf={}", app.xsrf)))).await;
        assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}

/// The page's byte count asks the server how large a poll's request head is.
const WIRE_SIZE: &str = "/a/message/wire-size";

#[tokio::test]
async fn the_wire_size_endpoint_measures_the_request_head_it_received() {
    let app = app().await;
    let answer = app.post(WIRE_SIZE, &[("_xsrf", &app.xsrf), ("cursor", "")]).await.json();
    let head = answer["request_head"].as_u64().expect("request_head");
    let body_headers = answer["body_headers"].as_u64().expect("body_headers");
    // The request line, the cookie, the content type, and the blank line at least.
    let cookie = format!("cookie: _xsrf={}\r\n", app.xsrf).len() as u64;
    let content_type = "content-type: application/x-www-form-urlencoded\r\n".len() as u64;
    assert!(head >= "POST /a/message/wire-size HTTP/1.1\r\n\r\n".len() as u64 + cookie + content_type, "{answer}");
    assert_eq!(body_headers, content_type, "{answer}");
    assert!(answer["time_ms"].as_u64().is_some_and(|ms| ms > 0), "{answer}");
}

#[tokio::test]
async fn html_escapes_markup_and_links_web_urls() {
    let app = app().await;
    let body = r#"<script>alert("x")</script> & <b>see</b> https://example.com/a?b=1&c=2"#;
    let message = app.publish(body).await;
    let html = message["html"].as_str().unwrap();
    let id = message["id"].as_str().unwrap();

    let opening = format!(r#"<div class="message" id="m{id}">"#);
    let inner =
        html.strip_prefix(&opening).and_then(|rest| rest.strip_suffix("</div>")).unwrap_or_else(|| panic!("{html}"));
    assert!(!inner.contains("<script") && !inner.contains("<b>"), "markup was not escaped: {html}");
    let (text, link) = inner.split_once("<a ").unwrap_or_else(|| panic!("the URL was not linked: {html}"));
    assert_eq!(html_escape::decode_html_entities(text), r#"<script>alert("x")</script> & <b>see</b> "#);
    let href = link.strip_prefix(r#"href=""#).and_then(|rest| rest.split('"').next()).unwrap();
    assert_eq!(html_escape::decode_html_entities(href), "https://example.com/a?b=1&c=2");
}

#[tokio::test]
async fn a_link_cannot_break_out_of_its_attribute_and_only_web_urls_are_linked() {
    let app = app().await;
    let message = app.publish(r#"https://example.com/"onmouseover="alert(1) javascript:alert(2)"#).await;
    let html = message["html"].as_str().unwrap();
    assert!(!html.contains(r#"onmouseover=""#), "a quote in the URL ended the attribute: {html}");
    assert!(!html.contains("href=\"javascript"), "{html}");
}

#[tokio::test]
async fn message_ids_are_safe_as_html_ids_and_css_selectors() {
    let app = app().await;
    let message = app.publish("hi").await;
    let id = message["id"].as_str().unwrap();
    // `$("#m" + id)` in the old client: "m" then only hex digits and hyphens is a valid
    // CSS identifier and HTML id, with nothing to escape.
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{id}");
    assert!(message["html"].as_str().unwrap().contains(&format!(r#"id="m{id}""#)));
}

/// Publishes `bodies` and returns their ids.
async fn publish_all(app: &RouterApp, bodies: &[&str]) -> Vec<String> {
    let mut published = Vec::new();
    for body in bodies {
        published.push(app.publish(body).await);
    }
    ids(&published)
}

/// A long-poll from `cursor` that has something to answer at once.
async fn poll(app: &RouterApp, cursor: Option<&str>) -> Value {
    let mut fields = vec![("_xsrf", app.xsrf.as_str())];
    fields.extend(cursor.map(|cursor| ("cursor", cursor)));
    app.post(UPDATES, &fields).await.json()
}

#[tokio::test]
async fn updates_without_a_cursor_answer_the_whole_history_as_json() {
    let app = app().await;
    let published = publish_all(&app, &["a", "b", "c"]).await;
    let answer = poll(&app, None).await; // checks 200 application/json
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published);
    assert!(answer.get("gap").is_none(), "{answer}");
}

#[tokio::test]
async fn updates_from_a_cursor_answer_only_what_follows_it() {
    let app = app().await;
    let published = publish_all(&app, &["a", "b", "c"]).await;
    let answer = poll(&app, Some(&published[0])).await;
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published[1..]);
    assert!(answer.get("gap").is_none(), "{answer}");
}

#[tokio::test]
async fn updates_with_an_unknown_cursor_answer_the_whole_history_and_a_gap() {
    let app = app().await;
    let published = publish_all(&app, &["a", "b"]).await;
    let other_run = RouterApp::new(Config::default()).await.publish("elsewhere").await;
    let cases = [(other_run["id"].as_str().unwrap(), "unknown_epoch"), ("garbage", "malformed")];
    for (cursor, reason) in cases {
        let answer = poll(&app, Some(cursor)).await;
        assert_eq!(ids(answer["messages"].as_array().unwrap()), published, "{cursor}");
        common::assert_gap(&answer["gap"], reason, None);
    }
}
