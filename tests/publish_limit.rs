//! One client cannot take the room: past its burst (`--publish-burst`) a connection
//! publishes at `--publish-rate`, and an address at four times that. Every publish path
//! refuses the excess with the wait in whole seconds: a POST 429 with `Retry-After`, a
//! WebSocket frame an `{"error":…}` frame (the socket stays open), a WebTransport
//! stream an `{"error":…}` answer. Nothing refused is published, each refusal is counted
//! as `rate_limited`, and a witness keeps receiving everything else.

mod common;

use std::time::Duration;

use common::webtransport::spawn_webtransport_app;
use common::{TestApp, spawn_app};
use pushwire::Config;
use pushwire::transport::publish_limit::PER_ADDRESS;
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Messages a connection may publish at once.
const BURST: u32 = 3;

/// A message every 2 s after a burst of [`BURST`]: a refusal right after the burst
/// says "retry in 2 s" (1 s if the burst itself took more than a second).
fn limited() -> Config {
    Config { publish_rate: 0.5, publish_burst: BURST, ..Config::default() }
}

fn rate_limited(app: &TestApp) -> f64 {
    app.metric(r#"pushwire_requests_rejected_total{reason="rate_limited"}"#)
}

/// Asserts `answer` is the refusal every in-band path answers with, telling to wait
/// what [`limited`] makes a connection wait after its burst.
fn assert_refusal(answer: &Value) {
    let retry_after = answer["error"]["retry_after"].as_u64().unwrap_or_else(|| panic!("not a refusal: {answer}"));
    assert!((1..=2).contains(&retry_after), "{answer}");
    let message = format!("publishing too fast: retry in {retry_after} s");
    assert_eq!(
        answer,
        &json!({ "error": { "reason": "rate_limited", "message": message, "retry_after": retry_after } })
    );
}

async fn bodies(app: &TestApp) -> Vec<String> {
    app.history().await.iter().map(|message| message.body.clone()).collect()
}

#[tokio::test]
async fn a_post_past_the_burst_gets_429_with_retry_after_publishes_nothing_and_the_room_goes_on() {
    let app = spawn_app(limited()).await;
    let mut witness = app.sse(None, None).await;
    let flooder = app.browser().await;
    for n in 0..BURST {
        let sent = flooder.publish(&format!("burst {n}")).await;
        assert_eq!(witness.next_message().await["id"], sent["id"]);
    }
    let refused = flooder.post("/a/message/new", &[("body", "one too many"), ("_xsrf", &flooder.xsrf)]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().expect("whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(refused.text().await.unwrap().trim(), format!("publishing too fast: retry in {retry_after} s"));
    assert_eq!(rate_limited(&app), 1.0);
    assert_eq!(bodies(&app).await, ["burst 0", "burst 1", "burst 2"], "the refused one was not published");

    // Another client (a connection of its own) is not held back, and the witness gets
    // its message next: nothing of the refused one came between.
    let other = app.browser().await;
    let sent = other.publish("someone else").await;
    assert_eq!(witness.next_message().await["id"], sent["id"]);

    // The flooder, having waited as told, may publish again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let sent = flooder.publish("after waiting").await;
    assert_eq!(witness.next_message().await["id"], sent["id"]);
}

#[tokio::test]
async fn an_address_gets_four_connections_worth_and_then_no_new_connection_helps() {
    // A message every 10 s per connection, every 2.5 s per address.
    let app = spawn_app(Config { publish_rate: 0.1, ..limited() }).await;
    // Every client of a test comes from 127.0.0.1: a fresh connection each time.
    for client in 0..PER_ADDRESS {
        let browser = app.browser().await;
        for n in 0..BURST {
            browser.publish(&format!("client {client}, {n}")).await;
        }
    }
    let fresh = app.browser().await;
    let refused = fresh.post("/a/message/new", &[("body", "from a new connection"), ("_xsrf", &fresh.xsrf)]).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    // Refused by the address's bucket, which fills four times as fast as a connection's.
    let retry_after: u64 = refused.headers()["retry-after"].to_str().unwrap().parse().expect("whole seconds");
    assert!((1..=3).contains(&retry_after), "Retry-After: {retry_after}");
    assert_eq!(app.history().await.len(), (PER_ADDRESS * BURST) as usize);
    assert_eq!(rate_limited(&app), 1.0);
}

#[tokio::test]
async fn a_websocket_frame_past_the_burst_is_refused_in_band_and_the_socket_stays_open() {
    let app = spawn_app(limited()).await;
    let mut socket = app.websocket(None).await;
    for n in 0..BURST {
        socket.publish(&format!("in-band {n}")).await;
        assert_eq!(socket.next_message().await["body"], format!("in-band {n}"), "its own message comes back");
    }
    socket.publish("one too many").await;
    assert_refusal(&socket.next_json().await);
    assert_eq!(rate_limited(&app), 1.0);
    assert_eq!(bodies(&app).await, ["in-band 0", "in-band 1", "in-band 2"]);
    // Still subscribed: the next message of someone else arrives on it.
    let sent = app.browser().await.publish("someone else").await;
    assert_eq!(socket.next_message().await["id"], sent["id"]);
    assert_eq!(app.subscribers("websocket"), 1.0);
}

#[tokio::test]
async fn a_webtransport_publish_stream_past_the_burst_is_answered_with_the_refusal() {
    let app = spawn_webtransport_app(limited()).await;
    let mut session = app.webtransport("").await;
    for n in 0..BURST {
        let answer = session.publish_raw(format!(r#"{{"body":"stream {n}"}}"#).as_bytes()).await;
        assert_eq!(answer["body"], format!("stream {n}"), "{answer}");
        assert_eq!(session.next_json().await, answer, "and it comes back on the session");
    }
    assert_refusal(&session.publish_raw(br#"{"body":"one too many"}"#).await);
    assert_eq!(rate_limited(&app), 1.0);
    assert_eq!(bodies(&app).await, ["stream 0", "stream 1", "stream 2"]);
    let sent = app.browser().await.publish("someone else").await;
    assert_eq!(session.next_json().await, sent, "the session still receives");
}

#[tokio::test]
async fn the_limit_is_off_when_asked() {
    let app = spawn_app(Config { publish_rate: f64::INFINITY, ..limited() }).await;
    let browser = app.browser().await;
    for n in 0..4 * PER_ADDRESS * BURST {
        browser.publish(&format!("{n}")).await;
    }
    assert_eq!(rate_limited(&app), 0.0);
}
