//! WebTransport as the fourth transport: the ready line, live delivery and history,
//! resume and gaps, publishing on a stream of its own and its refusals, the Origin
//! check, departed sessions forgotten, and a UDP port that is taken.

mod common;

use common::eventually;
use common::webtransport::spawn_webtransport_app;
use pushwire::Config;
use pushwire::tls::Tls;
use pushwire::transport::webtransport::Endpoint;

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
