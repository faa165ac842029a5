//! What the WebSocket endpoint refuses and how: upgrades from pages of other origins
//! (browsers apply no CORS to WebSockets) and frames it cannot accept, each closed
//! with its own code.

mod common;

use common::{TestApp, spawn_app};
use pushwire::Config;
use reqwest::StatusCode;
use tokio_tungstenite::tungstenite::{self, Bytes, Message as Frame};

/// Close codes of RFC 6455 §7.4.1.
const UNSUPPORTED_DATA: u16 = 1003;
const INVALID_PAYLOAD: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;
const MESSAGE_TOO_BIG: u16 = 1009;

/// The HTTP status of a refused upgrade.
async fn refused_status(app: &TestApp, origin: &str) -> StatusCode {
    match app.try_websocket(None, Some(origin)).await {
        Err(tungstenite::Error::Http(response)) => response.status(),
        Err(error) => panic!("expected an HTTP refusal for {origin}, got {error}"),
        Ok(_) => panic!("the upgrade from {origin} was accepted"),
    }
}

#[tokio::test]
async fn an_upgrade_from_another_origin_is_forbidden() {
    let app = spawn_app(Config::default()).await;
    let other_port = format!("http://127.0.0.1:{}", app.addr.port().wrapping_add(1));
    for origin in ["http://evil.example", other_port.as_str(), "null"] {
        assert_eq!(refused_status(&app, origin).await, StatusCode::FORBIDDEN, "{origin}");
    }
}

#[tokio::test]
async fn an_upgrade_from_the_same_origin_or_without_origin_is_accepted() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let sent = browser.publish("hello").await;
    for origin in [Some(app.origin()), None] {
        let mut socket = app.try_websocket(None, origin.as_deref()).await.expect("upgrade accepted");
        assert_eq!(socket.next_message().await, sent);
    }
}

#[tokio::test]
async fn an_upgrade_from_an_allowed_origin_is_accepted_and_others_still_refused() {
    let config = Config { allowed_origins: vec!["https://chat.example".to_owned()], ..Config::default() };
    let app = spawn_app(config).await;
    assert!(app.try_websocket(None, Some("https://chat.example")).await.is_ok());
    assert_eq!(refused_status(&app, "https://other.example").await, StatusCode::FORBIDDEN);
}

/// Sends `frame` on a fresh socket and returns the close code the server answers with;
/// checks the frame published nothing.
async fn close_code_for(app: &TestApp, frame: Frame) -> u16 {
    let mut socket = app.websocket(None).await;
    socket.send(frame).await;
    let (code, reason) = socket.close_frame().await;
    assert!(!reason.is_empty(), "close {code} carries no reason");
    assert!(app.history().await.is_empty(), "a refused frame published a message");
    code
}

#[tokio::test]
async fn a_frame_that_is_not_json_is_closed_with_1007() {
    let app = spawn_app(Config::default()).await;
    assert_eq!(close_code_for(&app, Frame::text("hello")).await, INVALID_PAYLOAD);
}

#[tokio::test]
async fn a_frame_without_a_usable_body_is_closed_with_1008() {
    let app = spawn_app(Config::default()).await;
    for text in [r#"{}"#, r#"{"text":"hi"}"#, r#"{"body":""}"#, r#"{"body":"  "}"#, r#"{"body":"a\u0007b"}"#] {
        assert_eq!(close_code_for(&app, Frame::text(text)).await, POLICY_VIOLATION, "{text}");
    }
}

#[tokio::test]
async fn a_binary_frame_is_closed_with_1003() {
    let app = spawn_app(Config::default()).await;
    let frame = Frame::Binary(Bytes::from_static(br#"{"body":"hi"}"#));
    assert_eq!(close_code_for(&app, frame).await, UNSUPPORTED_DATA);
}

#[tokio::test]
async fn a_frame_over_the_size_limit_is_closed_with_1009() {
    let app = spawn_app(Config { max_body: 64, ..Config::default() }).await;
    let body = "x".repeat(200);
    let frame = Frame::text(serde_json::json!({ "body": body }).to_string());
    assert_eq!(close_code_for(&app, frame).await, MESSAGE_TOO_BIG);
}

#[tokio::test]
async fn a_request_that_is_not_a_valid_upgrade_gets_400_with_the_reason_and_is_counted() {
    let app = spawn_app(Config::default()).await;
    let client = reqwest::Client::new();
    let url = app.url("/a/message/socket");
    let upgrade = [("connection", "Upgrade"), ("upgrade", "websocket")];
    let key = ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    let cases: [(&[(&str, &str)], &str); 4] = [
        (&[], "expected a WebSocket upgrade"),
        (&[upgrade[0], ("upgrade", "h2c"), ("sec-websocket-version", "13"), key], "expected a WebSocket upgrade"),
        (&[upgrade[0], upgrade[1], ("sec-websocket-version", "8"), key], "Sec-WebSocket-Version must be 13"),
        (&[upgrade[0], upgrade[1], ("sec-websocket-version", "13")], "Sec-WebSocket-Key missing"),
    ];
    for (headers, reason) in cases {
        let mut request = client.get(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("an answer");
        assert_eq!(response.status(), StatusCode::BAD_REQUEST, "{headers:?}");
        assert!(response.text().await.expect("a body").starts_with(reason), "{headers:?}: {reason}");
    }
    let rejected = app.metric("pushwire_requests_rejected_total{reason=\"not_websocket\"}");
    assert_eq!(rejected, cases.len() as f64);
    // Nothing was subscribed, and a proper upgrade still works.
    assert_eq!(app.subscribers("websocket"), 0.0);
    app.websocket(None).await;
}

#[tokio::test]
async fn a_valid_upgrade_that_the_connection_cannot_make_gets_426() {
    // Served through the router alone (no hyper connection), nothing can be upgraded.
    let router = common::router::RouterApp::new(Config::default()).await;
    let request = axum::http::Request::get("/a/message/socket")
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .body(axum::body::Body::empty())
        .expect("a request");
    let answer = router.send(request).await;
    assert_eq!(answer.status, StatusCode::UPGRADE_REQUIRED);
    assert_eq!(answer.text, "this connection cannot be upgraded to a WebSocket\n");
}
