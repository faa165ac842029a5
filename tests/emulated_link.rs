//! `--emulate-rtt`: every connection the server accepts crosses an emulated link, so a
//! round trip through the server costs at least the configured RTT, and a pushed
//! message at least half of it; without the flag nothing is added. Lower bounds only:
//! how much longer a round trip takes depends on the machine.

mod common;

use std::time::{Duration, Instant};

use common::{TestApp, spawn_app};
use pushwire::Config;

const RTT: Duration = Duration::from_millis(200);

async fn emulated() -> TestApp {
    spawn_app(Config { emulate_rtt: RTT, ..Config::default() }).await
}

/// How long a WebSocket in-band publish takes to come back to its sender.
async fn in_band_round_trip(app: &TestApp) -> Duration {
    let mut socket = app.websocket(None).await;
    let sent = Instant::now();
    socket.publish("there and back").await;
    let message = socket.next_message().await;
    assert_eq!(message["body"], "there and back");
    sent.elapsed()
}

#[tokio::test]
async fn a_websocket_in_band_round_trip_takes_at_least_the_emulated_rtt() {
    let app = emulated().await;
    let took = in_band_round_trip(&app).await;
    assert!(took >= RTT, "the round trip took {took:?}, under the emulated {RTT:?}");
}

#[tokio::test]
async fn a_long_poll_delivery_arrives_at_least_one_way_after_its_publish_reaches_the_server() {
    let app = emulated().await;
    let browser = app.browser().await;
    let poll = tokio::spawn(async move { (browser.poll(None).await, Instant::now()) });
    app.wait_for_open_subscriptions(1).await;
    // Published in the server itself: the moment the message is there.
    let published = Instant::now();
    app.state.bus.publish("pushed".to_owned()).await.expect("publish");
    let (answer, arrived) = poll.await.expect("the poll");
    assert_eq!(answer["messages"][0]["body"], "pushed");
    let took = arrived - published;
    assert!(took >= RTT / 2, "delivered {took:?} after the publish, under one way ({:?})", RTT / 2);
}

#[tokio::test]
async fn the_page_says_that_the_link_is_emulated_and_how() {
    let app = emulated().await;
    let page = reqwest::get(app.url("/")).await.unwrap().text().await.unwrap();
    assert!(page.contains(r#"id="emulated-link""#), "{page}");
    assert!(page.contains("Emulated link: 200 ms RTT"), "{page}");
}

#[tokio::test]
async fn without_the_flag_nothing_is_added() {
    let app = spawn_app(Config::default()).await;
    let page = reqwest::get(app.url("/")).await.unwrap().text().await.unwrap();
    assert!(!page.contains("emulated-link"), "the page claims an emulated link");
    // The same round trip as above, on loopback: far under the emulated RTT.
    let took = in_band_round_trip(&app).await;
    assert!(took < RTT, "a loopback round trip took {took:?}");
}
