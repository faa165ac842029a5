//! WebTransport as the fourth transport: the ready line, live delivery and history,
//! resume and gaps, the unordered mode (`?order=none`), publishing on a stream of its
//! own and its refusals, the Origin check, slow consumers cut, departed sessions
//! forgotten, and a UDP port that is taken. What a client does wrong is in
//! `webtransport_bad_input.rs`.

mod common;

use std::time::Duration;

use common::webtransport::spawn_webtransport_app;
use common::{eventually, within};
use pushwire::Config;
use pushwire::tls::Tls;
use pushwire::transport::webtransport::Endpoint;
use wtransport::error::ConnectionError;

#[tokio::test]
async fn a_session_gets_the_ready_line_the_history_then_every_message_once() {
    let app = spawn_webtransport_app(Config::default()).await;
    let browser = app.browser().await;
    let before = browser.publish("before").await;
    let mut session = app.webtransport("").await;
    assert_eq!(session.next_json().await, before, "the history first");
    eventually("the session counted under HTTP/3", || {
        app.metric(r#"pushwire_subscribers{transport="webtransport",http="3"}"#) == 1.0
    })
    .await;
    let sent = browser.publish("live").await;
    assert_eq!(session.next_json().await, sent);
    // Resumed from the first: only what follows it.
    let first = before["id"].as_str().unwrap();
    let mut resumed = app.webtransport(&format!("?cursor={first}")).await;
    assert_eq!(resumed.next_json().await, sent);
}

#[tokio::test]
async fn a_cursor_the_server_cannot_place_gets_a_gap_line_then_the_history() {
    let app = spawn_webtransport_app(Config::default()).await;
    let sent = app.browser().await.publish("kept").await;
    let mut session = app.webtransport("?cursor=0123456789abcdef-7").await;
    let gap = session.next_json().await;
    assert_eq!(gap["gap"]["reason"], "unknown_epoch", "{gap}");
    assert_eq!(session.next_json().await, sent);
}

#[tokio::test]
async fn an_unordered_session_gets_each_message_once_on_a_stream_of_its_own() {
    let app = spawn_webtransport_app(Config::default()).await;
    let browser = app.browser().await;
    let mut sent = Vec::new();
    for n in 0..3 {
        sent.push(browser.publish(&format!("history {n}")).await);
    }
    let mut session = app.webtransport_unordered("").await;
    for n in 0..20 {
        sent.push(browser.publish(&format!("live {n}")).await);
    }
    // The client checks that each came on a stream of its own, one line, then its end.
    let mut received = session.next_messages(sent.len()).await;
    received.sort_by_key(|message| message["seq"].as_u64());
    assert_eq!(received, sent, "every message once, in order once sorted by seq");
    let last = browser.publish("last").await;
    assert_eq!(session.next_message().await, last, "nothing came twice");
    session.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn an_unordered_session_resumes_after_its_cursor() {
    let app = spawn_webtransport_app(Config::default()).await;
    let browser = app.browser().await;
    let mut sent = Vec::new();
    for n in 0..5 {
        sent.push(browser.publish(&format!("message {n}")).await);
    }
    let cursor = sent[1]["id"].as_str().unwrap();
    let mut session = app.webtransport_unordered(&format!("&cursor={cursor}")).await;
    let mut received = session.next_messages(3).await;
    received.sort_by_key(|message| message["seq"].as_u64());
    assert_eq!(received, sent[2..], "only what follows the cursor");
    let live = browser.publish("live").await;
    assert_eq!(session.next_message().await, live);
    sent.push(live);
    // A cursor of another run: the gap notice on the control stream, then everything.
    let mut foreign = app.webtransport_unordered("&cursor=0123456789abcdef-7").await;
    let gap = foreign.next_notice().await;
    assert_eq!(gap["gap"]["reason"], "unknown_epoch", "{gap}");
    let mut received = foreign.next_messages(sent.len()).await;
    received.sort_by_key(|message| message["seq"].as_u64());
    assert_eq!(received, sent);
    session.session.close(0u32.into(), b"bye");
    foreign.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn a_session_publishes_on_a_stream_of_its_own_and_refusals_are_answered_there() {
    let app = spawn_webtransport_app(Config::default()).await;
    let mut session = app.webtransport("").await;
    let answer = session.publish_raw(br#"{"body":"over WebTransport"}"#).await;
    assert_eq!(answer["body"], "over WebTransport");
    assert_eq!(session.next_json().await, answer, "it reaches the sender's own stream too");
    for (request, reason) in [
        (&b"not json"[..], "not_json"),
        (&br#"{"text":"x"}"#[..], "no_body"),
        (&br#"{"body":"  "}"#[..], "empty_body"),
        (&br#"{"body":"a\u0007b"}"#[..], "control_character"),
    ] {
        let answer = session.publish_raw(request).await;
        assert_eq!(answer["error"]["reason"], reason, "{answer}");
        assert_eq!(app.metric(&format!("pushwire_requests_rejected_total{{reason=\"{reason}\"}}")), 1.0);
    }
    assert_eq!(app.history().await.len(), 1, "nothing refused was published");
}

#[tokio::test]
async fn a_session_from_another_origin_is_refused() {
    let app = spawn_webtransport_app(Config::default()).await;
    let refused = app.try_webtransport("", Some("https://evil.example")).await;
    assert!(refused.is_err(), "a session from another origin was accepted");
    assert_eq!(app.metric(r#"pushwire_requests_rejected_total{reason="cross_origin"}"#), 1.0);
    let own = app.try_webtransport("", Some(&app.origin())).await;
    assert!(own.is_ok(), "the page's own origin is refused");
}

#[tokio::test]
async fn a_departed_session_is_forgotten_at_once() {
    let app = spawn_webtransport_app(Config::default()).await;
    let session = app.webtransport("").await;
    eventually("one WebTransport subscriber", || app.subscribers("webtransport") == 1.0).await;
    session.session.close(0u32.into(), b"bye");
    drop(session);
    eventually("no WebTransport subscriber", || app.subscribers("webtransport") == 0.0).await;
    assert_eq!(app.open_subscriptions(), 0);
}

#[tokio::test]
async fn a_udp_port_that_is_taken_is_reported_plainly() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind UDP");
    let addr = taken.local_addr().unwrap();
    let tls = Tls::self_signed().unwrap();
    let error = Endpoint::bind(addr, &tls, std::time::Duration::from_secs(30)).expect_err("a taken port");
    assert!(error.contains(&addr.to_string()), "{error}");
}

#[tokio::test]
async fn at_shutdown_a_session_is_told_when_to_come_back_ends_its_streams_then_is_closed_with_1012() {
    let app = spawn_webtransport_app(Config::default()).await;
    let mut ordered = app.webtransport("").await;
    let mut unordered = app.webtransport_unordered("").await;
    let sent = app.browser().await.publish("before shutdown").await;
    assert_eq!(ordered.next_json().await, sent);
    assert_eq!(unordered.next_message().await, sent);
    app.state.shutdown.cancel();
    // The last line says when to come back (a delay of each session's own), on the
    // control stream when unordered.
    for notice in [ordered.next_json().await, unordered.next_notice().await] {
        assert_eq!(notice["reconnect"]["reason"], "server_restart", "{notice}");
        let delay = notice["reconnect"]["delay_ms"].as_u64().expect("a delay");
        assert!((1000..=6000).contains(&delay), "{notice}");
    }
    // Ended, not broken: the server finished them before it closed the sessions.
    ordered.expect_end().await;
    unordered.expect_control_end().await;
    for session in [&ordered.session, &unordered.session] {
        match within("the session to be closed", session.closed()).await {
            ConnectionError::ApplicationClosed(close) => assert_eq!(close.code().into_inner(), 1012, "{close}"),
            other => panic!("expected a close with code 1012, got {other}"),
        }
    }
    app.no_webtransport_subscriber().await;
}

#[tokio::test]
async fn an_ordered_session_that_never_reads_is_cut_as_a_slow_consumer() {
    a_session_that_never_reads_is_cut("").await;
}

#[tokio::test]
async fn an_unordered_session_that_never_reads_is_cut_as_a_slow_consumer() {
    a_session_that_never_reads_is_cut("?order=none").await;
}

/// A session from `query` that never reads gets closed with 1013 while a witness,
/// which reads, gets every message. Before the server's queue stalls, the client's
/// stream window (1.25 MB in quinn) fills when ordered; when unordered, its stream
/// credit (100 streams), then the 64 streams the server lets wait for it.
async fn a_session_that_never_reads_is_cut(query: &str) {
    let config =
        Config { outbound_limit: 64 * 1024, slow_consumer_timeout: Duration::from_millis(500), ..Config::default() };
    let app = spawn_webtransport_app(config).await;
    let mut witness = app.webtransport("").await;
    let stalled = app.webtransport_session(query, None).await.expect("a session");
    eventually("two sessions", || app.subscribers("webtransport") == 2.0).await;
    let browser = app.browser().await;
    let body = "x".repeat(8 * 1024);
    let slow = r#"pushwire_slow_consumer_disconnects_total{transport="webtransport"}"#;
    // The bound only stops a server that never cuts it: fewer than 200 messages do.
    for _ in 0..1000 {
        let sent = browser.publish(&body).await;
        assert_eq!(witness.next_json().await, sent, "the witness gets every message");
        if app.metric(slow) > 0.0 {
            break;
        }
    }
    match within("the stalled session to be closed", stalled.closed()).await {
        ConnectionError::ApplicationClosed(close) => assert_eq!(close.code().into_inner(), 1013, "{close}"),
        other => panic!("expected a close with code 1013, got {other}"),
    }
    assert_eq!(app.metric(slow), 1.0);
    let after = browser.publish("after").await;
    assert_eq!(witness.next_json().await, after);
    eventually("the witness only", || app.subscribers("webtransport") == 1.0).await;
    witness.session.close(0u32.into(), b"bye");
    app.no_webtransport_subscriber().await;
}
