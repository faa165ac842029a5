//! Shutdown: cancelling `state.shutdown` ends every open connection, SSE streams,
//! WebSockets (close 1001) and pending long-polls alike, and `pushwire::run` returns.
//! axum's graceful shutdown alone would wait for them forever.

mod common;

use common::spawn_app;
use pushwire::Config;
use serde_json::json;

const GOING_AWAY: u16 = 1001;

#[tokio::test]
async fn shutdown_ends_an_open_sse_stream_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    // The reader has checked the opening block: the stream is live.
    let mut events = app.sse(None, None).await;
    app.wait_for_open_subscriptions(1).await;
    let stream_end = tokio::spawn(async move { events.expect_end().await });
    app.shutdown().await.expect("run returns Ok");
    common::within("the SSE stream to end", stream_end).await.expect("the SSE reader panicked");
}

#[tokio::test]
async fn shutdown_closes_websockets_with_going_away_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    let mut socket = app.websocket(None).await;
    app.wait_for_open_subscriptions(1).await;
    let close = tokio::spawn(async move {
        let close = socket.close_frame().await;
        // After the close frame the connection ends.
        assert!(socket.next_frame().await.is_none());
        close
    });
    app.shutdown().await.expect("run returns Ok");
    let (code, _reason) = common::within("the close frame", close).await.expect("the WebSocket reader panicked");
    assert_eq!(code, GOING_AWAY);
}

#[tokio::test]
async fn shutdown_answers_a_pending_long_poll_with_no_messages_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let poll = tokio::spawn(async move { browser.poll(None).await });
    app.wait_for_open_subscriptions(1).await; // held: the bus is empty
    app.shutdown().await.expect("run returns Ok");
    let answer = common::within("the long-poll answer", poll).await.expect("the poll panicked");
    assert_eq!(answer, json!({ "messages": [] }));
}

#[tokio::test]
async fn shutdown_ends_all_transports_at_once() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let mut events = app.sse(None, None).await;
    let mut socket = app.websocket(None).await;
    let poll = tokio::spawn(async move { browser.poll(None).await });
    app.wait_for_open_subscriptions(3).await;
    let sse_end = tokio::spawn(async move { events.expect_end().await });
    let ws_close = tokio::spawn(async move { socket.close_frame().await });

    app.shutdown().await.expect("run returns Ok");
    common::within("the SSE stream to end", sse_end).await.expect("the SSE reader panicked");
    let (code, _) = common::within("the close frame", ws_close).await.expect("the WebSocket reader panicked");
    assert_eq!(code, GOING_AWAY);
    let answer = common::within("the long-poll answer", poll).await.expect("the poll panicked");
    assert_eq!(answer["messages"], json!([]));
}
