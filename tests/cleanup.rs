//! Departed clients are forgotten at once: a client that vanishes from a pending
//! long-poll, an SSE stream or a WebSocket stops counting (and stops holding its
//! subscription) without waiting for the next message to be published.

mod common;

use std::time::Duration;

use common::{TestApp, eventually, eventually_within, spawn_app, within};
use futures::future::join_all;
use pushwire::Config;

const CLIENTS: usize = 1_000;
const TRANSPORTS: [&str; 3] = ["long_poll", "sse", "websocket"];

/// Whether every subscriber gauge is `expected`; if not, the gauges (long_poll, sse,
/// websocket), for the failure message.
fn gauges_are(app: &TestApp, expected: f64) -> Result<(), String> {
    let gauges: Vec<f64> = TRANSPORTS.iter().map(|t| app.subscribers(t)).collect();
    if gauges.iter().all(|&g| g == expected) { Ok(()) } else { Err(format!("gauges {gauges:?}")) }
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
    eventually("every client counted as subscribed", || gauges_are(&app, CLIENTS as f64)).await;

    // Vanish without a word: no close frame, no FIN before the drop.
    drop((polls, streams, sockets));

    let what = "every subscriber forgotten within 1 s of its client leaving";
    eventually_within(Duration::from_secs(1), what, || gauges_are(&app, 0.0)).await;
    assert_eq!(app.open_subscriptions(), 0, "subscriber slots were not all released");
    app.shutdown().await.expect("clean shutdown");
}
