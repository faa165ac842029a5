//! The fan-out: one task per worker hands each message to every joined WebSocket and
//! SSE stream. Whether a connection joins while messages flow, is one of hundreds, or
//! stops reading for a while, its client gets every message once and in order.

mod common;

use std::time::Duration;

use common::{spawn_app, within, within_long};
use futures::StreamExt;
use pushwire::Config;
use serde_json::Value;
use tokio::net::TcpSocket;
use tokio_tungstenite::tungstenite::Message as Frame;

/// More sockets per shard than tokio's cooperative budget (128 operations per task
/// turn) on a 2-worker runtime: a shard under that budget would find the sockets past
/// the 128th "not ready" and leave them to their tasks.
const SUBSCRIBERS: usize = 300;

/// The `seq` of every message a client receives, up to and including `last`.
async fn seqs_until(client: &mut common::WsClient, last: u64) -> Vec<u64> {
    let mut seqs = Vec::new();
    while seqs.last() != Some(&last) {
        seqs.push(client.next_message().await["seq"].as_u64().expect("a seq"));
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_sockets_are_written_by_the_fan_out_itself() {
    const MESSAGES: u64 = 30;
    let app = spawn_app(Config::default()).await;
    let mut clients = Vec::new();
    for _ in 0..SUBSCRIBERS {
        clients.push(app.websocket(None).await);
    }
    app.wait_for_open_subscriptions(SUBSCRIBERS).await;
    // Joining happens once a connection has sent its (empty) history: the first
    // message reaches everyone through the fan-out or, for a late joiner, by its task.
    for seq in 1..=MESSAGES {
        app.state.bus.publish(format!("message {seq}")).await.expect("publish");
        // In lockstep: every client has each message before the next is published, so
        // no socket is ever full.
        for client in &mut clients {
            assert_eq!(client.next_message().await["seq"], seq);
        }
    }
    let deferred = app.metric("pushwire_fanout_deferred_writes_total");
    assert!(
        deferred < MESSAGES as f64,
        "{deferred} of {} writes were left to the connections' tasks although every socket was empty",
        MESSAGES as usize * SUBSCRIBERS
    );
    assert_eq!(app.metric("pushwire_fanout_releases_total"), 0.0, "no client fell behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_and_sse_streams_that_join_while_messages_flow_get_each_one_once_in_order() {
    const MESSAGES: u64 = 600;
    let app = spawn_app(Config { history: 1_000, ..Config::default() }).await;
    let bus = app.state.bus.clone();
    let publisher = tokio::spawn(async move {
        for i in 0..MESSAGES {
            bus.publish(format!("message {i}")).await.expect("publish");
            if i % 10 == 0 {
                // Paced, so the stream lasts while the clients below arrive.
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
    });
    // Clients arrive throughout the stream; without a cursor each gets the history from
    // the first message, then joins a shard mid-stream.
    let mut readers = Vec::new();
    for i in 0..40 {
        if i % 2 == 0 {
            let mut client = app.websocket(None).await;
            readers.push(tokio::spawn(async move { seqs_until(&mut client, MESSAGES).await }));
        } else {
            let mut stream = app.sse(None, None).await;
            readers.push(tokio::spawn(async move {
                let mut seqs = Vec::new();
                while seqs.last() != Some(&MESSAGES) {
                    seqs.push(stream.next_message().await["seq"].as_u64().expect("a seq"));
                }
                seqs
            }));
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    within("the publisher", publisher).await.expect("the publisher panicked");
    for reader in readers {
        let seqs = within_long("a reader to receive everything", reader).await.expect("a reader panicked");
        assert_eq!(seqs, (1..=MESSAGES).collect::<Vec<_>>(), "missed, repeated or reordered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_pauses_reading_is_let_go_catches_up_and_loses_nothing() {
    /// Enough to fill the kernel's buffers (the server's send buffer grows to a few
    /// MiB) and the 16 KiB limit many times over; publishing stops once it is let go.
    const MOST: u64 = 20_000;
    let config = Config {
        outbound_limit: 16 * 1024,
        slow_consumer_timeout: Duration::from_secs(5),
        history: MOST as usize,
        ..Config::default()
    };
    let app = spawn_app(config).await;
    // A tiny receive buffer: the server's writes back up soon after the client pauses.
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("shrink the receive buffer");
    let stream = within("connect", socket.connect(app.addr)).await.expect("connect");
    let url = format!("ws://{}/a/message/socket", app.addr);
    let (mut paused, _) = within("the upgrade", tokio_tungstenite::client_async(url, stream)).await.expect("upgrade");
    let mut fast = app.websocket(None).await;
    app.wait_for_open_subscriptions(2).await;

    // About 2 KiB each on the wire (the body is sent as `body` and as `html`).
    let body = "y".repeat(1024);
    let mut published = 0;
    while app.metric("pushwire_fanout_releases_total") < 1.0 {
        assert!(published < MOST, "the paused client was never let go");
        for _ in 0..50 {
            app.state.bus.publish(body.clone()).await.expect("publish");
        }
        published += 50;
        // The fast client keeps up with everything, whatever the paused one does.
        assert_eq!(seqs_until(&mut fast, published).await.len(), 50, "the fast client");
    }

    // Reading again, well within the slow-consumer timeout: everything, once, in order.
    let mut seqs = Vec::new();
    while seqs.last() != Some(&published) {
        match within("the paused client's messages", paused.next()).await {
            Some(Ok(Frame::Text(text))) => {
                let json: Value = serde_json::from_str(&text).expect("JSON");
                if let Some(seq) = json["seq"].as_u64() {
                    seqs.push(seq);
                }
            }
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            other => panic!("expected messages, got {other:?}"),
        }
    }
    assert_eq!(seqs, (1..=published).collect::<Vec<_>>(), "missed, repeated or reordered");
    assert_eq!(app.metric("pushwire_slow_consumer_disconnects_total{transport=\"websocket\"}"), 0.0);
}
