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
