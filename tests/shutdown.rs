//! Shutdown: cancelling `state.shutdown` ends every open connection, SSE streams,
//! WebSockets (close 1012) and pending long-polls alike, each told when to come back at
//! a time of its own, and `pushwire::run` returns. axum's graceful shutdown alone would
//! wait for them forever.

mod common;

use std::time::Duration;

use common::spawn_app;
use pushwire::Config;
use serde_json::{Value, json};

const SERVICE_RESTART: u16 = 1012;

/// Asserts `notice` tells a client of a server started with `config` to come back
/// after a restart, within the window `--restart-spread` sets (from 1 s), and returns its
/// delay in milliseconds.
fn restart_delay(config: &Config, notice: &Value) -> u64 {
    assert_eq!(notice["reason"], "server_restart", "{notice}");
    let delay = notice["delay_ms"].as_u64().unwrap_or_else(|| panic!("no delay_ms in {notice}"));
    let latest = 1000 + u64::try_from(config.restart_spread.as_millis()).unwrap();
    assert!((1000..=latest).contains(&delay), "{delay} ms is outside 1 s to {latest} ms");
    delay
}

#[tokio::test]
async fn shutdown_tells_an_open_sse_stream_when_to_come_back_ends_it_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    // The reader has checked the opening block: the stream is live.
    let mut events = app.sse(None, None).await;
    app.wait_for_open_subscriptions(1).await;
    let told = tokio::spawn(async move { events.reconnect_then_end().await });
    let config = app.state.config.clone();
    app.shutdown().await.expect("run returns Ok");
    let notice = common::within("the SSE stream to end", told).await.expect("the SSE reader panicked");
    restart_delay(&config, &notice);
}

#[tokio::test]
async fn shutdown_tells_websockets_when_to_come_back_closes_them_with_1012_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    let mut socket = app.websocket(None).await;
    app.wait_for_open_subscriptions(1).await;
    let told = tokio::spawn(async move {
        let told = socket.reconnect_then_close().await;
        // After the close frame the connection ends.
        assert!(socket.next_frame().await.is_none());
        told
    });
    let config = app.state.config.clone();
    app.shutdown().await.expect("run returns Ok");
    let (notice, code, reason) = common::within("the close frame", told).await.expect("the WebSocket reader panicked");
    assert_eq!(code, SERVICE_RESTART);
    let seconds = restart_delay(&config, &notice) as f64 / 1000.0;
    assert_eq!(reason, format!("server restarting: reconnect in {seconds:.1} s"));
}

#[tokio::test]
async fn shutdown_answers_a_pending_long_poll_with_when_to_come_back_and_run_returns() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let poll = tokio::spawn(async move { browser.poll(None).await });
    app.wait_for_open_subscriptions(1).await; // held: the bus is empty
    let config = app.state.config.clone();
    app.shutdown().await.expect("run returns Ok");
    let answer = common::within("the long-poll answer", poll).await.expect("the poll panicked");
    assert_eq!(answer["messages"], json!([]), "{answer}");
    restart_delay(&config, &answer["reconnect"]);
}

/// The claim of a graceful stop without a storm: every client of every transport is
/// told a delay within the window, and the delays are spread over it, not one for all.
#[tokio::test]
async fn a_graceful_stop_tells_every_client_of_every_transport_a_delay_of_its_own_spread_over_the_window() {
    const EACH: usize = 10;
    let app = spawn_app(Config { restart_spread: Duration::from_secs(4), ..Config::default() }).await;
    let browser = app.browser().await;
    let mut told = Vec::new();
    for _ in 0..EACH {
        let mut socket = app.websocket(None).await;
        told.push(tokio::spawn(async move {
            let (notice, code, _) = socket.reconnect_then_close().await;
            assert_eq!(code, SERVICE_RESTART);
            notice
        }));
        let mut events = app.sse(None, None).await;
        told.push(tokio::spawn(async move { events.reconnect_then_end().await }));
        let browser = browser.clone();
        told.push(tokio::spawn(async move { browser.poll(None).await["reconnect"].clone() }));
    }
    app.wait_for_open_subscriptions(3 * EACH).await;
    let config = app.state.config.clone();
    app.shutdown().await.expect("run returns Ok");

    let mut delays = Vec::new();
    for notice in told {
        let notice = common::within("every client told", notice).await.expect("a reader panicked");
        delays.push(restart_delay(&config, &notice));
    }
    delays.sort_unstable();
    delays.dedup();
    assert!(
        delays.len() >= 3 * EACH * 9 / 10,
        "{} different delays for {} clients: {delays:?}",
        delays.len(),
        3 * EACH
    );
    let (first, last) = (delays[0], delays[delays.len() - 1]);
    assert!(last - first >= 2000, "30 clients told to come back within {} ms of each other: {delays:?}", last - first);
}
