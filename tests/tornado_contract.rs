//! The long-poll wire contract of Tornado's chat demo, status code by status code, over
//! real sockets: the XSRF cookie and token, `POST /a/message/new` with its `next`
//! redirect, `POST /a/message/updates`, and the `html` field the page inserts as HTML.

mod common;

use common::{Browser, TestApp, content_type, ids, spawn_app, xsrf_from_set_cookie};
use pushwire::Config;
use reqwest::StatusCode;
use reqwest::header::{LOCATION, SET_COOKIE};

const NEW: &str = "/a/message/new";
const UPDATES: &str = "/a/message/updates";

/// Both POST endpoints, each with the fields that make a valid request apart from XSRF.
const ENDPOINTS: [(&str, &[(&str, &str)]); 2] = [(NEW, &[("body", "hi")]), (UPDATES, &[])];

async fn app() -> TestApp {
    spawn_app(Config::default()).await
}

/// Asserts a plain-text refusal with `status` and that the bus is still empty.
async fn assert_refused(app: &TestApp, response: reqwest::Response, status: StatusCode) {
    let code = response.status();
    let text = response.text().await.unwrap_or_default();
    assert_eq!(code, status, "body: {text}");
    assert!(app.history().await.is_empty(), "a refused request published a message");
}

#[tokio::test]
async fn the_page_sets_a_script_readable_xsrf_cookie() {
    let app = app().await;
    let response = reqwest::get(app.url("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(content_type(response.headers()), "text/html");
    let cookie = response.headers().get(SET_COOKIE).expect("Set-Cookie").to_str().unwrap().to_owned();
    let token = xsrf_from_set_cookie(response.headers()).unwrap();
    assert_eq!(token.len(), 32, "{cookie}");
    assert!(token.bytes().all(|b| b.is_ascii_hexdigit()), "{cookie}");
    assert!(cookie.contains("Path=/"), "{cookie}");
    // The page's script copies the token into each POST, so it must be able to read it.
    assert!(!cookie.to_ascii_lowercase().contains("httponly"), "{cookie}");
}

#[tokio::test]
async fn the_page_keeps_a_valid_cookie_and_replaces_an_invalid_one() {
    let app = app().await;
    let browser = app.browser().await;
    let again = browser.http.get(app.url("/")).send().await.unwrap();
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(again.headers().get(SET_COOKIE), None, "a valid cookie was replaced");

    let forged = reqwest::Client::new().get(app.url("/")).header("cookie", "_xsrf=not-a-token").send().await.unwrap();
    let token = xsrf_from_set_cookie(forged.headers()).expect("an invalid cookie gets a new one");
    assert_ne!(token, "not-a-token");
}

#[tokio::test]
async fn publish_with_the_token_as_form_field_answers_the_message_as_json() {
    let app = app().await;
    let browser = app.browser().await;
    let message = browser.publish("hello").await;
    assert_eq!(message["body"], "hello");
    assert!(message["id"].is_string() && message["html"].is_string(), "{message}");
    assert!(message["seq"].is_u64() && message["time"].is_u64(), "{message}");
    assert_eq!(ids(&[message]), [app.history().await[0].id.clone()]);
}

#[tokio::test]
async fn publish_with_the_token_as_x_xsrftoken_header_is_accepted() {
    let app = app().await;
    let browser = app.browser().await;
    let response =
        browser.http.post(app.url(NEW)).header("X-XSRFToken", &browser.xsrf).form(&[("body", "hi")]).send().await;
    let message = common::json_ok(response.unwrap()).await;
    assert_eq!(message["body"], "hi");
}

#[tokio::test]
async fn posts_without_a_token_are_forbidden() {
    let app = app().await;
    let browser = app.browser().await;
    for (path, fields) in ENDPOINTS {
        let response = browser.post(path, fields).await;
        assert_refused(&app, response, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn posts_with_a_token_that_does_not_match_the_cookie_are_forbidden() {
    let app = app().await;
    let browser = app.browser().await;
    let other = app.browser().await; // a valid token, but another browser's
    assert_ne!(browser.xsrf, other.xsrf);
    for (path, fields) in ENDPOINTS {
        // The header form of the token is checked just the same.
        let response = browser.http.post(app.url(path)).header("X-XSRFToken", &other.xsrf).form(fields);
        assert_refused(&app, response.send().await.unwrap(), StatusCode::FORBIDDEN).await;
        let mut fields = fields.to_vec();
        fields.push(("_xsrf", &other.xsrf));
        let response = browser.post(path, &fields).await;
        assert_refused(&app, response, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn posts_without_the_cookie_are_forbidden_even_with_a_token() {
    let app = app().await;
    let stolen = app.browser().await.xsrf;
    let cookieless = reqwest::Client::new();
    for (path, fields) in ENDPOINTS {
        let mut fields = fields.to_vec();
        fields.push(("_xsrf", &stolen));
        let response = cookieless.post(app.url(path)).form(&fields).send().await.unwrap();
        assert_refused(&app, response, StatusCode::FORBIDDEN).await;
    }
}

#[tokio::test]
async fn publish_without_a_body_field_is_a_bad_request() {
    let app = app().await;
    let browser = app.browser().await;
    let response = browser.post(NEW, &[("_xsrf", &browser.xsrf)]).await;
    assert_refused(&app, response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn publish_of_an_empty_blank_or_control_character_body_is_a_bad_request() {
    let app = app().await;
    let browser = app.browser().await;
    for body in ["", "  \n\t ", "bell\u{7}"] {
        let response = browser.post(NEW, &[("body", body), ("_xsrf", &browser.xsrf)]).await;
        assert_refused(&app, response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn publish_of_a_form_that_is_not_utf8_is_a_bad_request() {
    let app = app().await;
    let browser = app.browser().await;
    let form = format!("body=%FF%FE&_xsrf={}", browser.xsrf);
    let response = browser
        .http
        .post(app.url(NEW))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .unwrap();
    assert_refused(&app, response, StatusCode::BAD_REQUEST).await;
}

#[tokio::test]
async fn publish_of_an_oversized_body_is_payload_too_large() {
    let app = spawn_app(Config { max_body: 16, ..Config::default() }).await;
    let browser = app.browser().await;
    let exactly = "x".repeat(16);
    assert_eq!(browser.publish(&exactly).await["body"], exactly.as_str());
    // Over the message limit, and far over the request-size guard in front of it.
    for size in [17, 100_000] {
        let body = "x".repeat(size);
        let response = browser.post(NEW, &[("body", &body), ("_xsrf", &browser.xsrf)]).await;
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE, "{size} bytes");
    }
    assert_eq!(app.history().await.len(), 1);
}

#[tokio::test]
async fn publish_with_a_local_next_redirects_there_and_publishes() {
    let app = app().await;
    let browser = app.browser().await;
    let response = browser.post(NEW, &[("body", "via form"), ("_xsrf", &browser.xsrf), ("next", "/room?x=1")]).await;
    assert_eq!(response.status(), StatusCode::FOUND);
    assert_eq!(response.headers().get(LOCATION).unwrap(), "/room?x=1");
    let history = app.history().await;
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].body, "via form");
}

#[tokio::test]
async fn publish_with_an_offsite_next_is_a_bad_request_and_publishes_nothing() {
    let app = app().await;
    let browser = app.browser().await;
    for next in ["//evil.example", "http://evil.example", "https://evil.example/", "/\\evil.example", "evil"] {
        let response = browser.post(NEW, &[("body", "hi"), ("_xsrf", &browser.xsrf), ("next", next)]).await;
        assert!(response.headers().get(LOCATION).is_none(), "{next}");
        assert_refused(&app, response, StatusCode::BAD_REQUEST).await;
    }
}

#[tokio::test]
async fn get_on_the_post_endpoints_is_method_not_allowed() {
    let app = app().await;
    let browser = app.browser().await;
    for path in [NEW, UPDATES] {
        let response = browser.http.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "{path}");
    }
}

#[tokio::test]
async fn html_escapes_markup_and_links_web_urls() {
    let app = app().await;
    let browser = app.browser().await;
    let body = r#"<script>alert("x")</script> & <b>see</b> https://example.com/a?b=1&c=2"#;
    let message = browser.publish(body).await;
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
    let browser = app.browser().await;
    let message = browser.publish(r#"https://example.com/"onmouseover="alert(1) javascript:alert(2)"#).await;
    let html = message["html"].as_str().unwrap();
    assert!(!html.contains(r#"onmouseover=""#), "a quote in the URL ended the attribute: {html}");
    assert!(!html.contains("href=\"javascript"), "{html}");
}

#[tokio::test]
async fn message_ids_are_safe_as_html_ids_and_css_selectors() {
    let app = app().await;
    let browser = app.browser().await;
    let message = browser.publish("hi").await;
    let id = message["id"].as_str().unwrap();
    // `$("#m" + id)` in the old client: "m" then only hex digits and hyphens is a valid
    // CSS identifier and HTML id, with nothing to escape.
    assert!(!id.is_empty() && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "{id}");
    assert!(message["html"].as_str().unwrap().contains(&format!(r#"id="m{id}""#)));
}

/// Publishes `bodies` and returns their ids.
async fn publish_all(browser: &Browser, bodies: &[&str]) -> Vec<String> {
    let mut published = Vec::new();
    for body in bodies {
        published.push(browser.publish(body).await);
    }
    ids(&published)
}

#[tokio::test]
async fn updates_without_a_cursor_answer_the_whole_history_as_json() {
    let app = app().await;
    let browser = app.browser().await;
    let published = publish_all(&browser, &["a", "b", "c"]).await;
    let answer = browser.poll(None).await; // checks 200 application/json
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published);
    assert!(answer.get("gap").is_none(), "{answer}");
}

#[tokio::test]
async fn updates_from_a_cursor_answer_only_what_follows_it() {
    let app = app().await;
    let browser = app.browser().await;
    let published = publish_all(&browser, &["a", "b", "c"]).await;
    let answer = browser.poll(Some(&published[0])).await;
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published[1..]);
    assert!(answer.get("gap").is_none(), "{answer}");
}

#[tokio::test]
async fn updates_with_an_unknown_cursor_answer_the_whole_history_and_a_gap() {
    let app = app().await;
    let browser = app.browser().await;
    let published = publish_all(&browser, &["a", "b"]).await;
    let other_run = spawn_app(Config::default()).await.browser().await.publish("elsewhere").await;
    let cases = [(other_run["id"].as_str().unwrap(), "unknown_epoch"), ("garbage", "malformed")];
    for (cursor, reason) in cases {
        let answer = browser.poll(Some(cursor)).await;
        assert_eq!(ids(answer["messages"].as_array().unwrap()), published, "{cursor}");
        common::assert_gap(&answer["gap"], reason, None);
    }
}
