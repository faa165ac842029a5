//! Slow consumers: a client that stops reading never holds the others back, is cut off
//! with its transport's documented reason once its outbound queue has stayed full for
//! the slow-consumer timeout, and resumes from its cursor without loss while the
//! history still holds the rest.

mod common;

use std::time::Duration;

use common::{TestApp, eventually, spawn_app, within};
use futures::StreamExt;
use pushwire::Config;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as Frame;

const MESSAGES: usize = 2_000;
const BODY_BYTES: usize = 4 * 1024;
/// Published between two checks that the fast clients kept up: about 33 KiB on the
/// wire (a message object carries its body twice, as `body` and `html`), half the limit.
const BATCH: usize = 4;

/// A TCP connection whose receive buffer is tiny, so a client that stops reading
/// makes the server's writes stall quickly.
async fn cramped_connection(app: &TestApp) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("a socket");
    socket.set_recv_buffer_size(4096).expect("shrink the receive buffer");
    within("connect", socket.connect(app.addr)).await.expect("connect")
}

/// Reads what a stalled SSE connection had been sent, up to its documented ending:
/// the `event: slow` notice (the response then ends; the connection may stay open for
/// the next request), or the connection cut after the grace period.
async fn read_sse_to_end(stream: &mut TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut chunk = vec![0; 64 * 1024];
    loop {
        match within("the slow SSE response to end", stream.read(&mut chunk)).await {
            Ok(0) | Err(_) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
        }
        if bytes.windows(12).any(|w| w == b"event: slow\n") {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The ids of the message objects in `text`, in order.
fn ids_in(text: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find(r#"{"id":""#) {
        rest = &rest[at + 7..];
        if let Some(end) = rest.find('"') {
            ids.push(rest[..end].to_owned());
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_cut_off_and_resumes_without_loss() {
    let config = Config {
        outbound_limit: 64 * 1024,
        slow_consumer_timeout: Duration::from_millis(500),
        history: MESSAGES + 10,
        ..Config::default()
    };
    let app = spawn_app(config).await;

    // Two fast clients report every id they receive.
    let (fast_tx, mut fast_rx) = mpsc::unbounded_channel::<(&str, String)>();
    let mut fast_ws = app.websocket(None).await;
    let mut fast_sse = app.sse(None, None).await;
    let tx = fast_tx.clone();
    tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let message = fast_ws.next_message().await;
            let _ = tx.send(("websocket", message["id"].as_str().unwrap().to_owned()));
        }
    });
    // Kept open afterwards, so the SSE subscriber count below has one fast stream in it.
    let fast_sse = tokio::spawn(async move {
        for _ in 0..MESSAGES {
            let message = fast_sse.next_message().await;
            let _ = fast_tx.send(("sse", message["id"].as_str().unwrap().to_owned()));
        }
        fast_sse
    });

    // Two slow clients: upgraded or subscribed, then never read.
    let slow_ws_url = format!("ws://{}/a/message/socket", app.addr);
    let (slow_ws, _) = tokio_tungstenite::client_async(slow_ws_url, cramped_connection(&app).await)
        .await
        .expect("slow WebSocket upgrade");
    let mut slow_sse = cramped_connection(&app).await;
    tokio::io::AsyncWriteExt::write_all(
        &mut slow_sse,
        format!("GET /a/message/events HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes(),
    )
    .await
    .expect("send the SSE request");
    app.wait_for_open_subscriptions(4).await;

    let body = "x".repeat(BODY_BYTES);
    let mut published = Vec::new();
    let mut fast = std::collections::HashMap::<&str, Vec<String>>::new();
    for batch in 0..MESSAGES / BATCH {
        for _ in 0..BATCH {
            published.push(app.state.bus.publish(body.clone()).await.expect("publish").id.clone());
        }
        // The fast clients must have everything published so far before the next batch:
        // the stalled ones may not slow them down.
        let expected = (batch + 1) * BATCH;
        while fast.values().map(Vec::len).sum::<usize>() < 2 * expected {
            let (transport, id) = within("fast clients to keep up", fast_rx.recv()).await.expect("a fast client");
            fast.entry(transport).or_default().push(id);
        }
    }
    assert_eq!(fast["websocket"], published, "the fast WebSocket missed or reordered messages");
    assert_eq!(fast["sse"], published, "the fast SSE stream missed or reordered messages");

    // The WebSocket notices while writing; SSE's watchdog looks once per timeout, so
    // it may take up to two timeouts. Nothing signals it, so the metric is polled.
    for transport in ["websocket", "sse"] {
        let sample = format!("pushwire_slow_consumer_disconnects_total{{transport=\"{transport}\"}}");
        eventually(&format!("the stalled {transport} client cut off"), || app.metric(&sample) >= 1.0).await;
        assert_eq!(app.metric(&sample), 1.0, "{transport}: cut off more than once");
    }

    // A stalled SSE client cannot take the slow notice, so after the grace period its
    // TCP connection is cut, with the client still reading nothing: its stream is gone
    // from the server (only the fast one is left), not parked until the client reads.
    let _fast_sse = fast_sse.await.expect("the fast SSE client");
    eventually("the stalled SSE client's connection cut", || match app.subscribers("sse") {
        open if open <= 1.0 => Ok(()),
        open => Err(format!("{open} SSE subscribers")),
    })
    .await;
    assert_eq!(app.subscribers("sse"), 1.0, "the fast SSE stream should still be open");

    // The stalled SSE client finally reads: what it got is an unbroken prefix of the
    // stream, and resuming from its last id brings the rest, with no gap.
    let received = ids_in(&read_sse_to_end(&mut slow_sse).await);
    assert!(received.len() < MESSAGES, "the stalled SSE client was sent everything: it was not cut off");
    assert_eq!(received[..], published[..received.len()], "the SSE prefix is not the published order");
    let mut resumed = app.sse(None, received.last().map(String::as_str)).await;
    for expected in &published[received.len()..] {
        assert_eq!(resumed.next_message().await["id"].as_str(), Some(expected.as_str()));
    }

    // Likewise the stalled WebSocket: frames until the close (1013) or a reset.
    let mut received = Vec::new();
    let mut close_code = None;
    let mut slow_ws = slow_ws;
    while let Ok(Some(Ok(frame))) = tokio::time::timeout(Duration::from_secs(10), slow_ws.next()).await {
        match frame {
            Frame::Text(text) => {
                let frame: Value = serde_json::from_str(&text).expect("JSON frame");
                // The ready frame that opens every socket has no id.
                received.extend(frame["id"].as_str().map(str::to_owned));
            }
            Frame::Close(frame) => close_code = frame.map(|f| u16::from(f.code)),
            _ => {}
        }
    }
    assert!(received.len() < MESSAGES, "the stalled WebSocket was sent everything: it was not cut off");
    assert!(matches!(close_code, None | Some(1013)), "unexpected close code {close_code:?}");
    assert_eq!(received[..], published[..received.len()], "the WebSocket prefix is not the published order");
    let mut resumed = app.websocket(received.last().map(String::as_str)).await;
    for expected in &published[received.len()..] {
        assert_eq!(resumed.next_message().await["id"].as_str(), Some(expected.as_str()));
    }
}
