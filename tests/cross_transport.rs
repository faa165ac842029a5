//! One conversation, every transport: whatever way a message is published, each
//! subscriber (long-poll, WebSocket, SSE) receives it exactly once, in the one order
//! the bus gave all messages.

mod common;

use common::{bodies, ids, spawn_app};
use pushwire::Config;
use serde_json::Value;

/// Messages in the conversation, alternating between the two ways to publish.
const MESSAGES: usize = 12;

#[tokio::test]
async fn messages_from_http_posts_and_websocket_frames_reach_every_transport_once_in_order() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let mut publisher = app.websocket(None).await;
    let mut socket = app.websocket(None).await;
    let mut events = app.sse(None, None).await;
    // The long-poller follows the conversation as it happens, each poll from the last
    // id it received, concurrently with the publishing below.
    let poller = {
        let browser = browser.clone();
        tokio::spawn(async move { browser.poll_messages(None, MESSAGES + 1).await })
    };

    let mut expected = Vec::new();
    for i in 0..MESSAGES {
        let body = if i % 2 == 0 { format!("post {i}") } else { format!("frame {i}") };
        if i % 2 == 0 {
            browser.publish(&body).await;
        } else {
            publisher.publish(&body).await;
        }
        // The publisher's own socket hears every message, its own included; waiting for
        // each fixes the order in which the next is published.
        assert_eq!(publisher.next_message().await["body"], body.as_str());
        expected.push(body);
    }
    // A last message after everything: if any subscriber got a message twice, the next
    // thing it receives is not this one.
    let last = browser.publish("last").await;
    expected.push("last".to_owned());

    let mut over_websocket = Vec::new();
    let mut over_sse = Vec::new();
    for _ in 0..=MESSAGES {
        over_websocket.push(socket.next_message().await);
        over_sse.push(events.next_message().await);
    }
    let over_long_poll = common::within("the long-poller", poller).await.expect("the long-poller panicked");

    assert_eq!(bodies(&over_websocket), expected);
    assert_eq!(ids(&over_websocket).last(), last["id"].as_str().map(str::to_owned).as_ref());
    assert_eq!(ids(&over_sse), ids(&over_websocket), "SSE and WebSocket differ");
    assert_eq!(ids(&over_long_poll), ids(&over_websocket), "long-poll and WebSocket differ");
    assert_strictly_increasing(&over_websocket);
}

/// The `seq` of each message is greater than the one before: no duplicates, no reordering.
fn assert_strictly_increasing(messages: &[Value]) {
    let seqs: Vec<u64> = messages.iter().map(|m| m["seq"].as_u64().expect("seq is a number")).collect();
    assert!(seqs.windows(2).all(|pair| pair[0] < pair[1]), "sequence numbers out of order: {seqs:?}");
}

#[tokio::test]
async fn a_message_published_over_websocket_answers_a_pending_long_poll() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let mut publisher = app.websocket(None).await;
    app.wait_for_open_subscriptions(1).await;
    let poll = {
        let browser = browser.clone();
        tokio::spawn(async move { browser.poll(None).await })
    };
    app.wait_for_open_subscriptions(2).await; // the poll is held: nothing to answer yet
    publisher.publish("wake up").await;
    let answer = common::within("the long-poll answer", poll).await.expect("the poll panicked");
    assert_eq!(bodies(answer["messages"].as_array().unwrap()), ["wake up"]);
}

#[tokio::test]
async fn the_same_message_has_the_same_object_on_every_transport() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let mut socket = app.websocket(None).await;
    let mut events = app.sse(None, None).await;
    let posted = browser.publish("one object").await;
    let polled = browser.poll(None).await["messages"][0].clone();
    assert_eq!(socket.next_message().await, posted);
    assert_eq!(events.next_message().await, posted);
    assert_eq!(polled, posted);
}
