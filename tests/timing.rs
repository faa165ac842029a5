//! Time-dependent behaviour: how long an idle long-poll is held, SSE keep-alive
//! comments and WebSocket pings.
//!
//! The long-poll and SSE timer tests call the router directly
//! (`tower::ServiceExt::oneshot`, no socket) under paused tokio time, so the default
//! 25 s hold and 15 s keep-alive pass instantly and exactly. Paused time cannot drive
//! real sockets (the clock jumps while bytes are in flight), so the wire-level
//! keep-alive and ping tests use a real server with short configured periods and assert
//! on what arrives, never on how long it took.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::{RAW_XSRF, spawn_app};
use http_body_util::BodyExt;
use pushwire::config::DEFAULT_LONG_POLL_HOLD;
use pushwire::{AppState, Config, app};
use serde_json::{Value, json};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;
use tower::ServiceExt;

/// A long-poll request from a client holding the `_xsrf` cookie `RAW_XSRF`.
fn poll_request(cursor: Option<&str>) -> Request<Body> {
    let form = cursor.map_or(String::new(), |cursor| format!("cursor={cursor}"));
    Request::post("/a/message/updates")
        .header(header::COOKIE, format!("_xsrf={RAW_XSRF}"))
        .header("x-xsrftoken", RAW_XSRF)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(form))
        .expect("a valid request")
}

/// Sends one long-poll through the router and returns its JSON answer.
async fn poll(state: &AppState, cursor: Option<&str>) -> Value {
    let response = app(state.clone()).oneshot(poll_request(cursor)).await.expect("the router is infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.expect("the body is read").to_bytes();
    serde_json::from_slice(&body).expect("the answer is JSON")
}

#[tokio::test(start_paused = true)]
async fn an_idle_long_poll_is_answered_empty_after_the_hold_time() {
    let state = AppState::new(Config::default());
    let start = Instant::now();
    assert_eq!(poll(&state, None).await, json!({}));
    // Virtual time: the hold, and at most one tick of the sweep (a twenty-fifth) more.
    let held = start.elapsed();
    assert!(held >= DEFAULT_LONG_POLL_HOLD && held <= DEFAULT_LONG_POLL_HOLD * 26 / 25, "{held:?}");

    // A poll that begins between two ticks waits for the next one.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Instant::now();
    assert_eq!(poll(&state, None).await, json!({}));
    let held = start.elapsed();
    assert!(held >= DEFAULT_LONG_POLL_HOLD && held <= DEFAULT_LONG_POLL_HOLD * 26 / 25, "{held:?}");
}

#[tokio::test(start_paused = true)]
async fn the_hold_time_is_configurable() {
    let hold = Duration::from_secs(3);
    let state = AppState::new(Config { long_poll_hold: hold, ..Config::default() });
    let start = Instant::now();
    assert_eq!(poll(&state, None).await, json!({}));
    assert!(start.elapsed() >= hold && start.elapsed() < DEFAULT_LONG_POLL_HOLD, "{:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_message_published_during_the_hold_answers_the_poll_at_once() {
    let state = AppState::new(Config::default());
    let start = Instant::now();
    let pending = tokio::spawn({
        let state = state.clone();
        async move { poll(&state, None).await }
    });
    // Publish 5 s (virtual) into the hold.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let message = state.bus.publish("now".to_owned()).await.expect("a valid body");
    let answer = pending.await.expect("the poll task panicked");
    assert_eq!(answer["messages"][0]["id"], message.id.as_str());
    assert!(start.elapsed() < Duration::from_secs(6), "answered only after {:?}", start.elapsed());
}

#[tokio::test(start_paused = true)]
async fn a_poll_answered_empty_loses_nothing_when_the_client_polls_again_from_its_cursor() {
    let state = AppState::new(Config::default());
    let first = state.bus.publish("first".to_owned()).await.expect("a valid body");
    assert_eq!(poll(&state, Some(&first.id)).await, json!({}));
    let second = state.bus.publish("second".to_owned()).await.expect("a valid body");
    assert_eq!(poll(&state, Some(&first.id)).await["messages"][0]["id"], second.id.as_str());
}

/// The next chunk of a streamed response body, as text.
async fn next_chunk(body: &mut Body) -> String {
    let frame = body.frame().await.expect("the stream goes on").expect("the body does not fail");
    String::from_utf8(frame.into_data().expect("a data frame").to_vec()).expect("UTF-8")
}

#[tokio::test(start_paused = true)]
async fn sse_sends_a_keep_alive_only_after_a_quiet_period() {
    let keepalive = pushwire::config::DEFAULT_SSE_KEEPALIVE;
    let state = AppState::new(Config::default());
    let request = Request::get("/a/message/events").body(Body::empty()).expect("a valid request");
    let response = app(state.clone()).oneshot(request).await.expect("the router is infallible");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    let start = Instant::now();
    let opening = next_chunk(&mut body).await;
    let (retry, ready) = opening.split_once('\n').expect("a retry line first");
    let retry = retry.strip_prefix("retry: ").and_then(|ms| ms.parse::<u64>().ok());
    assert!(retry.is_some_and(|ms| (500..=1500).contains(&ms)), "a retry time of its own: {opening:?}");
    assert_eq!(ready, "event: ready\ndata: {\"http\":\"1.1\"}\n\n");

    // A message two thirds into the first period restarts the quiet-period count.
    let publish_at = keepalive * 2 / 3;
    tokio::spawn({
        let state = state.clone();
        async move {
            tokio::time::sleep(publish_at).await;
            state.bus.publish("news".to_owned()).await.expect("a valid body");
        }
    });
    assert!(next_chunk(&mut body).await.contains(r#""body":"news""#));
    assert_eq!(next_chunk(&mut body).await, ": keep-alive\n\n");
    let quiet = start.elapsed();
    assert!(quiet >= publish_at + keepalive, "a keep-alive {quiet:?} after opening, within a period of the message");
    assert_eq!(next_chunk(&mut body).await, ": keep-alive\n\n");
    assert!(start.elapsed() >= quiet + keepalive);
}

/// A server whose keep-alive periods are a fifth of a second.
async fn quick_keepalives() -> common::TestApp {
    let short = Duration::from_millis(200);
    spawn_app(Config { sse_keepalive: short, ws_ping: short, ..Config::default() }).await
}

#[tokio::test]
async fn an_idle_sse_stream_gets_keep_alive_comments() {
    let app = quick_keepalives().await;
    // `sse` has read and checked the opening block (retry and the ready event).
    let mut events = app.sse(None, None).await;
    for _ in 0..2 {
        let block = events.next_block().await.expect("a keep-alive");
        assert_eq!(block, common::SseBlock { comments: vec!["keep-alive".to_owned()], ..Default::default() });
    }
}

#[tokio::test]
async fn an_idle_websocket_gets_pings_and_stays_open_while_it_answers_them() {
    let app = quick_keepalives().await;
    let mut socket = app.websocket(None).await;
    // Reading lets the client answer each ping with a pong, so the server keeps the
    // connection past several ping periods.
    for _ in 0..3 {
        assert!(matches!(socket.next_frame().await, Some(Frame::Ping(_))), "expected a ping");
    }
    let sent = app.browser().await.publish("still here").await;
    assert_eq!(socket.next_message().await, sent);
}

#[tokio::test]
async fn a_websocket_peer_that_never_answers_pings_is_dropped() {
    let app = quick_keepalives().await;
    // Never read from: the client never sees the pings, so it never answers them.
    let _silent = app.websocket(None).await;
    app.wait_for_open_subscriptions(1).await;
    app.wait_for_open_subscriptions(0).await;
}
