//! Inbound memory is bounded per connection and in all: a request head over
//! `--max-header-bytes` is answered 431 and its connection closed, at most
//! `--max-connections` are open at once, and a cursor that is not text is malformed
//! (a gap notice, then the history) on every transport. Each refusal is counted, and
//! the clients already connected keep receiving.

mod common;

use common::{TestApp, assert_gap, eventually_async, ids, resident_bytes, spawn_app, within};
use pushwire::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HEAD_LIMIT: usize = 16 * 1024;

fn rejected(app: &TestApp, reason: &str) -> f64 {
    app.metric(&format!("pushwire_requests_rejected_total{{reason=\"{reason}\"}}"))
}

/// A GET of the page whose head carries one header line of `bytes` bytes.
fn head_of(app: &TestApp, bytes: usize) -> String {
    format!("GET / HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nX-Padding: {}\r\n\r\n", app.addr, "a".repeat(bytes))
}

/// Sends `request` and reads the status line of the answer; `None` when the server
/// closed the connection without one (it may stop reading a huge head half way).
async fn status_of(app: &TestApp, request: &str) -> Option<u16> {
    let mut stream = within("connect", TcpStream::connect(app.addr)).await.expect("connect");
    // A write the server cut short is the connection closed, not a failure.
    let _ = within("sending the head", stream.write_all(request.as_bytes())).await;
    let mut answer = Vec::new();
    let _ = within("the answer", stream.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
}

#[tokio::test]
async fn a_request_head_over_the_limit_gets_431_and_is_counted_while_one_under_it_is_served() {
    let app = spawn_app(Config::default()).await;
    assert_eq!(Config::default().max_header_bytes, HEAD_LIMIT);
    let mut witness = app.websocket(None).await;
    assert_eq!(status_of(&app, &head_of(&app, HEAD_LIMIT - 1024)).await, Some(200));
    assert_eq!(status_of(&app, &head_of(&app, HEAD_LIMIT + 1024)).await, Some(431));
    assert_eq!(rejected(&app, "header_too_large"), 1.0);
    // Far larger heads: 431, or the connection closed before the client is done writing.
    for size in [100_000, 300_000, 500_000] {
        let status = status_of(&app, &head_of(&app, size)).await;
        assert!(matches!(status, Some(431) | None), "{size} bytes: answered {status:?}");
    }
    let message = app.state.bus.publish("still here".to_owned()).await.unwrap();
    assert_eq!(witness.next_message().await["id"], message.id.as_str());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_half_sent_oversized_heads_leave_memory_bounded_while_a_websocket_keeps_receiving() {
    const CLIENTS: usize = 1000;
    const SENT: usize = 100 * 1024;
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let app = spawn_app(Config::default()).await;
    let mut witness = app.websocket(None).await;
    let before = resident_bytes();

    // Each client sends 100 KiB of a head that never ends, and stays connected: without
    // a limit the server would hold all of it, 100 MiB in all.
    let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Padding: {}", "a".repeat(SENT));
    let mut clients = Vec::new();
    for _ in 0..CLIENTS {
        let stream = within("connect", TcpStream::connect(app.addr)).await.expect("connect");
        let head = head.clone();
        clients.push(tokio::spawn(async move {
            let mut stream = stream;
            // Refused half way: the write fails, which is the point.
            let _ = stream.write_all(head.as_bytes()).await;
            stream
        }));
    }
    let message = app.state.bus.publish("through the flood".to_owned()).await.unwrap();
    assert_eq!(witness.next_message().await["id"], message.id.as_str());
    let mut held = Vec::new();
    for client in clients {
        held.push(within("a client's write", client).await.expect("the client task"));
    }

    // hyper's read buffer doubles and is checked after each read: under twice the limit
    // per head. The rest is slack for the tasks, sockets and allocator.
    let growth = resident_bytes().saturating_sub(before);
    let bound = CLIENTS * 2 * HEAD_LIMIT + 16 * 1024 * 1024;
    assert!(growth < bound, "resident memory grew by {growth} bytes, over {bound}");
    assert!(rejected(&app, "header_too_large") >= CLIENTS as f64 * 0.9, "the heads were not refused");
    let message = app.state.bus.publish("after the flood".to_owned()).await.unwrap();
    assert_eq!(witness.next_message().await["id"], message.id.as_str());
    drop(held);
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once_and_counted_without_disturbing_the_others() {
    let app = spawn_app(Config { max_connections: 4, ..Config::default() }).await;
    let mut witness = app.websocket(None).await;
    // Three more connections, idle: the cap is reached.
    let mut idle = Vec::new();
    for _ in 0..3 {
        idle.push(within("connect", TcpStream::connect(app.addr)).await.expect("connect"));
    }
    app.wait_for_open_subscriptions(1).await;
    for attempt in 1..=3 {
        // The handshake completes in the kernel; the server then closes at once.
        let mut extra = within("connect", TcpStream::connect(app.addr)).await.expect("connect");
        let mut byte = [0; 1];
        let read = within("the refused connection to close", extra.read(&mut byte)).await;
        assert!(matches!(read, Ok(0) | Err(_)), "a connection over the cap was kept");
        assert_eq!(rejected(&app, "too_many_connections"), f64::from(attempt));
    }
    let message = app.state.bus.publish("to the connected".to_owned()).await.unwrap();
    assert_eq!(witness.next_message().await["id"], message.id.as_str());

    // Room again once some close.
    drop(idle);
    eventually_async("a connection under the cap answered", || async {
        let mut stream = TcpStream::connect(app.addr).await.expect("connect");
        stream.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes()).await.unwrap();
        let mut head = [0; 12];
        stream.read_exact(&mut head).await.is_ok() && &head == b"HTTP/1.1 200"
    })
    .await;
}

#[tokio::test]
async fn a_cursor_that_is_not_text_gets_a_malformed_gap_then_the_history_on_every_transport() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let published: Vec<String> = ids(&[browser.publish("one").await, browser.publish("two").await]);

    // Long-poll: a form cursor whose escapes are not UTF-8.
    let response = browser
        .http
        .post(app.url("/a/message/updates"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("_xsrf={}&cursor=%FF%FE", browser.xsrf))
        .send()
        .await
        .unwrap();
    let answer = common::json_ok(response).await;
    assert_gap(&answer["gap"], "malformed", None);
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published);

    // SSE: `Last-Event-ID` bytes beyond ASCII, and `?cursor=` escapes that are not UTF-8.
    let request = reqwest::Client::new()
        .get(app.url("/a/message/events"))
        .header("last-event-id", reqwest::header::HeaderValue::from_bytes(b"\xff\xfe-1").unwrap());
    let mut raw = within("the SSE response", request.send()).await.unwrap().bytes_stream();
    let mut text = String::new();
    while !text.contains("\"body\":\"two\"") {
        let chunk = within("SSE bytes", futures::StreamExt::next(&mut raw)).await.expect("more").unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.contains("event: gap") && text.contains(r#""reason":"malformed""#), "{text}");

    let mut events = app.sse_at("?cursor=%FF%FE", None).await;
    let gap = events.next_event().await;
    assert_eq!(gap.event.as_deref(), Some("gap"));
    assert_gap(&gap.json(), "malformed", None);
    assert_eq!(ids(&events.next_messages(2).await), published);

    // WebSocket: the same query.
    let mut socket = app.try_websocket_at("?cursor=%FF%FE", None).await.expect("the upgrade");
    assert_gap(&socket.next_json().await["gap"], "malformed", None);
    assert_eq!(ids(&socket.next_messages(2).await), published);
}

#[tokio::test]
async fn a_closed_event_stream_gives_its_connection_back_at_once() {
    let app = spawn_app(Config { max_connections: 2, ..Config::default() }).await;
    let events = app.sse(None, None).await;
    app.wait_for_open_subscriptions(1).await;
    drop(events);
    // The slow-consumer watchdog still lists the stream until its next sweep (5 s); that
    // must not keep the connection counted.
    app.wait_for_open_subscriptions(0).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut stream = within("connect", TcpStream::connect(app.addr)).await.expect("connect");
        stream.write_all(format!("GET / HTTP/1.1\r\nHost: {}\r\n\r\n", app.addr).as_bytes()).await.unwrap();
        let mut head = [0; 12];
        within("the page", stream.read_exact(&mut head)).await.expect("an answer");
        assert_eq!(&head, b"HTTP/1.1 200");
        held.push(stream);
    }
    assert_eq!(rejected(&app, "too_many_connections"), 0.0);
}
