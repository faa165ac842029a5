//! HTTPS and HTTP/2 served by pushwire itself: every transport over HTTP/2 (WebSocket by
//! RFC 8441 extended CONNECT), streams multiplexed on one connection up to
//! `--h2-max-streams`, HTTP/1.1 over TLS beside it, and the limits that hold there: a
//! stalled TLS handshake and a stalled request body.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::https::spawn_https_app;
use common::{Browser, SseReader, eventually, spawn_app, within};
use futures::StreamExt;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::Frame as BodyFrame;
use pushwire::Config;
use reqwest::Version;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as Frame;

/// The next text frame of a WebSocket as JSON, skipping control frames.
async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Frame, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match within("a WebSocket frame", socket.next()).await {
            Some(Ok(Frame::Text(text))) => return serde_json::from_str(&text).expect("a JSON frame"),
            Some(Ok(Frame::Ping(_) | Frame::Pong(_))) => {}
            other => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn every_transport_is_served_over_http2() {
    let app = spawn_https_app(Config::default()).await;
    let browser = app.browser().await;
    let page = within("GET /", browser.http.get(app.url("/")).send()).await.expect("GET /");
    assert_eq!(page.version(), Version::HTTP_2, "the page over HTTP/2");

    let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
    assert_eq!(events.version(), Version::HTTP_2);
    let mut sse = SseReader::open(events, "2").await;
    let mut connection = app.h2().await;
    let (status, socket) = app.h2_websocket(&mut connection, "", Some(&app.origin())).await;
    assert_eq!(status, hyper::StatusCode::OK, "an extended CONNECT is accepted with 200");
    let mut socket = socket.expect("a WebSocket over an HTTP/2 stream");
    assert_eq!(next_json(&mut socket).await, json!({ "ready": { "http": "2" } }), "the first frame");
    eventually("the SSE stream and the WebSocket counted under HTTP/2", || {
        let over_h2 =
            |transport: &str| app.metric(&format!("pushwire_subscribers{{transport=\"{transport}\",http=\"2\"}}"));
        over_h2("sse") == 1.0 && over_h2("websocket") == 1.0
    })
    .await;

    // Published by a POST over HTTP/2: every transport gets it.
    let sent = browser.publish("over HTTP/2").await;
    assert_eq!(sse.next_message().await, sent);
    assert_eq!(next_json(&mut socket).await, sent);
    let polled = browser.poll(None).await;
    assert_eq!(polled["messages"].as_array().and_then(|m| m.last()), Some(&sent), "long-poll over HTTP/2");

    // Published in-band on the WebSocket over HTTP/2.
    futures::SinkExt::send(&mut socket, Frame::text(json!({ "body": "in-band" }).to_string())).await.expect("send");
    let in_band = sse.next_message().await;
    assert_eq!(in_band["body"], "in-band");
    assert_eq!(next_json(&mut socket).await, in_band);
}

#[tokio::test]
async fn https_serves_http1_to_clients_that_ask_for_it() {
    let app = spawn_https_app(Config::default()).await;
    let browser = Browser::open_with(&app, reqwest::Client::builder().http1_only()).await;
    let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
    assert_eq!(events.version(), Version::HTTP_11);
    let mut sse = SseReader::open(events, "1.1").await;
    let sent = browser.publish("over HTTP/1.1 and TLS").await;
    assert_eq!(sse.next_message().await, sent);
}

#[tokio::test]
async fn many_streams_share_one_http2_connection() {
    // One connection allowed in all: twenty streams live only if they share it.
    let app = spawn_https_app(Config { max_connections: 1, ..Config::default() }).await;
    let browser = app.browser().await;
    let mut streams = Vec::new();
    for _ in 0..20 {
        let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
        streams.push(SseReader::open(events, "2").await);
    }
    assert_eq!(app.metric(r#"pushwire_subscribers{transport="sse",http="2"}"#), 20.0);
    let sent = browser.publish("to twenty streams").await;
    for stream in &mut streams {
        assert_eq!(stream.next_message().await, sent);
    }
    assert_eq!(app.metric(r#"pushwire_requests_rejected_total{reason="too_many_connections"}"#), 0.0);
}

#[tokio::test]
async fn an_http2_connection_opens_at_most_h2_max_streams_at_once() {
    let app = spawn_https_app(Config { h2_max_streams: 4, ..Config::default() }).await;
    let mut connection = app.h2().await;
    let mut open = Vec::new();
    for _ in 0..4 {
        within("a stream", connection.ready()).await.expect("ready");
        let request = hyper::Request::get(app.url("/a/message/events")).body(Empty::<Bytes>::new()).expect("request");
        let response = within("an SSE answer", connection.send_request(request)).await.expect("SSE");
        open.push(response);
    }
    // The server said 4 (SETTINGS_MAX_CONCURRENT_STREAMS): a fifth waits for one to end.
    let request = hyper::Request::get(app.url("/a/message/events")).body(Empty::<Bytes>::new()).expect("request");
    let mut fifth = std::pin::pin!(connection.send_request(request));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), fifth.as_mut()).await.is_err(),
        "a fifth stream was answered while four were open"
    );
    open.pop();
    let answer = within("the fifth stream, once one ended", fifth).await.expect("SSE");
    assert_eq!(answer.status(), hyper::StatusCode::OK);
}

#[tokio::test]
async fn a_client_that_stalls_in_the_tls_handshake_is_dropped() {
    let app = spawn_https_app(Config { header_timeout: Duration::from_millis(300), ..Config::default() }).await;
    // Nothing at all, and a ClientHello's record header with none of the hello.
    for sent in [&b""[..], &[0x16, 0x03, 0x01, 0x02, 0x00][..]] {
        let mut tcp = TcpStream::connect(app.addr).await.expect("connect");
        tcp.write_all(sent).await.expect("send");
        let mut rest = Vec::new();
        within("the server to drop a stalled handshake", tcp.read_to_end(&mut rest)).await.expect("read to the end");
    }
    let refused = r#"pushwire_requests_rejected_total{reason="tls_handshake_timeout"}"#;
    eventually("both stalled handshakes counted", || app.metric(refused) == 2.0).await;
}

#[tokio::test]
async fn a_request_body_that_stalls_is_answered_408_on_http1_and_http2() {
    let config = Config { body_timeout: Duration::from_millis(300), ..Config::default() };
    // HTTP/1.1: ten bytes of a hundred, then nothing; answered, then closed.
    let app = spawn_app(config.clone()).await;
    let mut tcp = app
        .raw("POST /a/message/new HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nbody=stall")
        .await;
    let mut answer = String::new();
    within("a 408 and the end of the connection", tcp.read_to_string(&mut answer)).await.expect("read");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert_eq!(app.metric(r#"pushwire_requests_rejected_total{reason="body_timeout"}"#), 1.0);

    // HTTP/2: a body stream that never ends.
    let app = spawn_https_app(config).await;
    let mut connection = app.h2().await;
    let body = StreamBody::new(futures::stream::pending::<Result<BodyFrame<Bytes>, std::convert::Infallible>>());
    let request = hyper::Request::post(app.url("/a/message/new"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .expect("request");
    let answer = within("a 408 over HTTP/2", connection.send_request(request)).await.expect("an answer");
    assert_eq!(answer.status(), hyper::StatusCode::REQUEST_TIMEOUT);
    let text = within("the reason", answer.into_body().collect()).await.expect("body").to_bytes();
    assert!(String::from_utf8_lossy(&text).contains("stalled"), "{text:?}");
}

#[tokio::test]
async fn a_client_that_opens_and_resets_streams_as_fast_as_it_can_gets_goaway_and_others_keep_receiving() {
    let app = spawn_https_app(Config::default()).await;
    let browser = app.browser().await;
    let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
    let mut witness = SseReader::open(events, "2").await;

    // CVE-2023-44487: open a stream, reset it at once, again and again.
    let tls = app.tls_connect(&[b"h2"]).await;
    let (mut client, connection) = within("the HTTP/2 handshake", h2::client::handshake(tls)).await.expect("handshake");
    let connection = tokio::spawn(connection);
    let mut reset = 0;
    for _ in 0..20_000 {
        let Ok(ready) = within("a stream", client.ready()).await else { break };
        client = ready;
        let request = hyper::Request::get(app.url("/a/message/events")).body(()).expect("request");
        let Ok((_answer, mut stream)) = client.send_request(request, true) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        reset += 1;
    }
    let ended = within("the flooding connection to end", connection).await.expect("the connection task");
    let error = ended.expect_err("the server ends the connection with an error");
    assert!(
        error.is_go_away() && error.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM),
        "{error} after {reset} resets"
    );
    eventually("the GOAWAY counted", || {
        app.metric(r#"pushwire_requests_rejected_total{reason="http2_goaway"}"#) == 1.0
    })
    .await;

    // Nothing of the flood stays open, and the witness never noticed.
    eventually("only the witness subscribed", || app.subscribers("sse") == 1.0).await;
    let sent = browser.publish("after the flood").await;
    assert_eq!(witness.next_message().await, sent);
}

#[tokio::test]
async fn an_http2_head_over_the_limit_counted_after_hpack_is_answered_431() {
    let app = spawn_https_app(Config::default()).await;
    let tls = app.tls_connect(&[b"h2"]).await;
    let (client, connection) = within("the HTTP/2 handshake", h2::client::handshake(tls)).await.expect("handshake");
    tokio::spawn(connection);
    let mut client = within("a stream", client.ready()).await.expect("ready");
    // 20 KiB of header: over the 16 KiB limit once decoded, whatever HPACK makes of it.
    let request = hyper::Request::get(app.url("/")).header("x-large", "a".repeat(20 * 1024)).body(()).expect("request");
    let (answer, _) = client.send_request(request, true).expect("a stream");
    let answer = within("the answer", answer).await.expect("an answer, not a reset");
    assert_eq!(answer.status(), hyper::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
}

#[tokio::test]
async fn a_flood_of_pings_and_settings_leaves_memory_bounded_while_others_keep_receiving() {
    let app = spawn_https_app(Config::default()).await;
    let browser = app.browser().await;
    let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
    let mut witness = SseReader::open(events, "2").await;
    let before = common::resident_bytes();

    // The client preface, then PING and empty SETTINGS frames, never reading an ack.
    let mut flood = app.tls_connect(&[b"h2"]).await;
    let ping: &[u8] = &[0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
    let settings: &[u8] = &[0, 0, 0, 4, 0, 0, 0, 0, 0];
    flood.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await.expect("preface");
    let mut frames = Vec::new();
    for _ in 0..1000 {
        frames.extend_from_slice(ping);
        frames.extend_from_slice(settings);
    }
    // The server answers each, and stops reading once its answers back up: the flood
    // is bounded by the flooder's own reading, so the write below stalls.
    let mut written = 0;
    for _ in 0..100 {
        match tokio::time::timeout(Duration::from_millis(500), flood.write_all(&frames)).await {
            Ok(Ok(())) => written += frames.len(),
            Ok(Err(_)) | Err(_) => break,
        }
    }
    let growth = common::resident_bytes().saturating_sub(before);
    assert!(growth < 64 << 20, "resident memory grew by {growth} bytes during a flood of {written} bytes");
    let sent = browser.publish("through the flood").await;
    assert_eq!(witness.next_message().await, sent);
}

#[tokio::test]
async fn a_slow_consumer_over_http2_is_cut_off_while_another_connection_keeps_receiving() {
    let config =
        Config { outbound_limit: 16 * 1024, slow_consumer_timeout: Duration::from_millis(200), ..Config::default() };
    let app = spawn_https_app(config).await;
    let browser = app.browser().await;
    let events = within("GET events", browser.http.get(app.url("/a/message/events")).send()).await.expect("SSE");
    let mut witness = SseReader::open(events, "2").await;
    // Another connection whose stream is never read: its HTTP/2 window (16 KiB) fills,
    // then its outbox, and nothing is taken from it any more.
    let tls = app.tls_connect(&[b"h2"]).await;
    let handshake = h2::client::Builder::new().initial_window_size(16 * 1024).handshake::<_, Bytes>(tls);
    let (client, connection) = within("the HTTP/2 handshake", handshake).await.expect("handshake");
    tokio::spawn(connection);
    let mut client = within("a stream", client.ready()).await.expect("ready");
    let request = hyper::Request::get(app.url("/a/message/events")).body(()).expect("request");
    let (answer, _) = client.send_request(request, true).expect("a stream");
    let _unread = within("the SSE answer", answer).await.expect("an answer");
    eventually("two SSE subscribers", || app.subscribers("sse") == 2.0).await;

    let body = "x".repeat(1024);
    for _ in 0..300 {
        let sent = browser.publish(&body).await;
        assert_eq!(witness.next_message().await, sent, "the witness gets every message, in order");
    }
    let slow_disconnects = r#"pushwire_slow_consumer_disconnects_total{transport="sse"}"#;
    eventually("the unread stream cut off as a slow consumer", || app.metric(slow_disconnects) == 1.0).await;
    eventually("the unread stream gone", || app.subscribers("sse") == 1.0).await;
}

#[tokio::test]
async fn origin_and_xsrf_checks_hold_over_http2() {
    let app = spawn_https_app(Config::default()).await;
    let mut connection = app.h2().await;
    let (status, _) = app.h2_websocket(&mut connection, "", Some("https://evil.example")).await;
    assert_eq!(status, hyper::StatusCode::FORBIDDEN, "a WebSocket from another origin");
    let browser = app.browser().await;
    let forged = browser.post("/a/message/new", &[("body", "forged"), ("_xsrf", "not-the-cookie")]).await;
    assert_eq!((forged.version(), forged.status()), (Version::HTTP_2, reqwest::StatusCode::FORBIDDEN));
    assert!(app.history().await.is_empty(), "nothing was published");
}
