//! Departed clients are forgotten at once: a client that vanishes from a pending
//! long-poll, an SSE stream or a WebSocket stops counting (and stops holding its
//! subscription) without waiting for the next message to be published.

mod common;

use std::time::{Duration, Instant};

use common::{TIMEOUT, TestApp, spawn_app, within};
use futures::future::join_all;
use pushwire::Config;

const CLIENTS: usize = 1_000;
const TRANSPORTS: [&str; 3] = ["long_poll", "sse", "websocket"];

/// Polls the subscriber gauges until `done` holds for all of them, or `limit` passes.
async fn gauges_until(app: &TestApp, limit: Duration, done: impl Fn(f64) -> bool) -> Result<(), Vec<f64>> {
    let start = Instant::now();
    loop {
        let gauges: Vec<f64> = TRANSPORTS.iter().map(|t| app.subscribers(t)).collect();
        if gauges.iter().all(|&g| done(g)) {
            return Ok(());
        }
        if start.elapsed() > limit {
            return Err(gauges);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_clients_per_transport_that_vanish_are_forgotten_within_a_second() {
    // 3,000 client sockets and 3,000 server sockets live in this one process.
    rlimit::increase_nofile_limit(u64::MAX).expect("raise the open-file limit");
    let app = spawn_app(Config::default()).await;

    let polls = join_all((0..CLIENTS).map(|_| app.raw_long_poll())).await;
    let streams = join_all((0..CLIENTS).map(|_| app.raw_sse())).await;
    let sockets = join_all((0..CLIENTS).map(|_| async {
        let url = format!("ws://{}/a/message/socket", app.addr);
        within("a WebSocket handshake", tokio_tungstenite::connect_async(url)).await.expect("upgrade").0
    }))
    .await;
    gauges_until(&app, TIMEOUT, |g| g == CLIENTS as f64)
        .await
        .unwrap_or_else(|gauges| panic!("not every client was counted as subscribed: {gauges:?}"));

    // Vanish without a word: no close frame, no FIN before the drop.
    drop((polls, streams, sockets));

    if let Err(gauges) = gauges_until(&app, Duration::from_secs(1), |g| g == 0.0).await {
        panic!("subscribers still counted 1 s after their clients left (long_poll, sse, websocket): {gauges:?}");
    }
    assert_eq!(app.open_subscriptions(), 0, "subscriber slots were not all released");
    app.shutdown().await.expect("clean shutdown");
}
