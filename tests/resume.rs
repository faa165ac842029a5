//! Resuming: a reader that comes back with the id of the last message it saw gets
//! exactly what followed, on every transport; one whose cursor the server no longer
//! holds is told so with a gap notice, then gets everything retained.

mod common;

use common::{Browser, TestApp, assert_gap, bodies, ids, spawn_app};
use pushwire::Config;
use serde_json::Value;

/// Publishes `m{i}` for each `i` of `range` and returns their ids.
async fn publish_numbered(browser: &Browser, range: std::ops::RangeInclusive<usize>) -> Vec<String> {
    let mut published = Vec::new();
    for i in range {
        published.push(browser.publish(&format!("m{i}")).await);
    }
    ids(&published)
}

/// A server with `m1`…`m5` published; returns it, a browser and the five ids.
async fn five_messages() -> (TestApp, Browser, Vec<String>) {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let published = publish_numbered(&browser, 1..=5).await;
    (app, browser, published)
}

#[tokio::test]
async fn long_poll_resumes_after_a_cursor_in_the_middle_of_the_history() {
    let (_app, browser, published) = five_messages().await;
    let answer = browser.poll(Some(&published[2])).await;
    assert!(answer.get("gap").is_none(), "{answer}");
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published[3..]);
}

#[tokio::test]
async fn websocket_resumes_after_a_cursor_in_the_middle_of_the_history_then_goes_live() {
    let (app, browser, published) = five_messages().await;
    let mut socket = app.websocket(Some(&published[2])).await;
    assert_eq!(ids(&socket.next_messages(2).await), published[3..]);
    let live = browser.publish("m6").await;
    assert_eq!(socket.next_message().await["id"], live["id"]);
}

#[tokio::test]
async fn sse_resumes_after_a_query_cursor_in_the_middle_of_the_history_then_goes_live() {
    let (app, browser, published) = five_messages().await;
    let mut events = app.sse(Some(&published[2]), None).await;
    assert_eq!(ids(&events.next_messages(2).await), published[3..]);
    let live = browser.publish("m6").await;
    assert_eq!(events.next_message().await["id"], live["id"]);
}

#[tokio::test]
async fn sse_resumes_from_last_event_id() {
    let (app, _browser, published) = five_messages().await;
    let mut events = app.sse(None, Some(&published[1])).await;
    assert_eq!(ids(&events.next_messages(3).await), published[2..]);
}

#[tokio::test]
async fn sse_last_event_id_wins_over_the_cursor_of_the_original_url() {
    // A reconnecting EventSource requests its original URL (with the cursor it started
    // from) and adds the last id it saw: the newer position must be the one used.
    let (app, _browser, published) = five_messages().await;
    let mut events = app.sse(Some(&published[0]), Some(&published[3])).await;
    assert_eq!(events.next_message().await["id"], published[4].as_str());
}

#[tokio::test]
async fn resuming_from_the_last_message_waits_for_the_next_one() {
    let (app, browser, published) = five_messages().await;
    let last = published.last().map(String::as_str);
    let mut socket = app.websocket(last).await;
    let mut events = app.sse(last, None).await;
    let next = browser.publish("m6").await;
    assert_eq!(socket.next_message().await["id"], next["id"]);
    assert_eq!(events.next_message().await["id"], next["id"]);
    assert_eq!(ids(browser.poll(last).await["messages"].as_array().unwrap()), ids(&[next]));
}

/// History 5, `m1`…`m8` published: `m1`…`m3` are gone. A reader last at `m1` missed
/// `m2` and `m3` for good.
async fn evicted() -> (TestApp, Browser, String, Vec<String>) {
    let app = spawn_app(Config { history: 5, ..Config::default() }).await;
    let browser = app.browser().await;
    let published = publish_numbered(&browser, 1..=8).await;
    (app, browser, published[0].clone(), published[3..].to_vec())
}

/// Checks the gap notice of a reader last at `m1` in [`evicted`].
fn assert_evicted_gap(gap: &Value) {
    assert_gap(gap, "evicted", Some(2));
}

#[tokio::test]
async fn long_poll_from_an_evicted_cursor_reports_the_gap_then_the_retained_history() {
    let (_app, browser, cursor, retained) = evicted().await;
    let answer = browser.poll(Some(&cursor)).await;
    assert_evicted_gap(&answer["gap"]);
    assert_eq!(ids(answer["messages"].as_array().unwrap()), retained);
}

#[tokio::test]
async fn websocket_from_an_evicted_cursor_sends_a_gap_frame_then_the_retained_history() {
    let (app, _browser, cursor, retained) = evicted().await;
    let mut socket = app.websocket(Some(&cursor)).await;
    let notice = socket.next_json().await;
    assert_eq!(notice.as_object().map(|o| o.len()), Some(1), "a gap frame holds only \"gap\": {notice}");
    assert_evicted_gap(&notice["gap"]);
    assert_eq!(ids(&socket.next_messages(5).await), retained);
}

#[tokio::test]
async fn sse_from_an_evicted_cursor_sends_a_gap_event_then_the_retained_history() {
    let (app, _browser, cursor, retained) = evicted().await;
    for (query, last_event_id) in [(Some(cursor.as_str()), None), (None, Some(cursor.as_str()))] {
        let mut events = app.sse(query, last_event_id).await;
        let gap = events.next_event().await;
        assert_eq!(gap.event.as_deref(), Some("gap"));
        assert_evicted_gap(&gap.json());
        assert_eq!(ids(&events.next_messages(5).await), retained);
    }
}

#[tokio::test]
async fn without_a_cursor_every_transport_replays_only_the_retained_history_and_no_gap() {
    let (app, browser, _cursor, retained) = evicted().await;
    let answer = browser.poll(None).await;
    assert!(answer.get("gap").is_none(), "{answer}");
    assert_eq!(ids(answer["messages"].as_array().unwrap()), retained);
    // The first frame and the first event are messages, not gap notices.
    assert_eq!(ids(&app.websocket(None).await.next_messages(5).await), retained);
    assert_eq!(ids(&app.sse(None, None).await.next_messages(5).await), retained);
}

/// Resumes from `cursor` on each transport of `app` and expects a gap notice with
/// `reason`, then the whole retained history (`published`, five messages m1..m5).
async fn assert_gap_then_history_on_every_transport(
    app: &TestApp,
    browser: &Browser,
    published: &[String],
    cursor: &str,
    reason: &str,
) {
    let answer = browser.poll(Some(cursor)).await;
    assert_gap(&answer["gap"], reason, None);
    assert_eq!(ids(answer["messages"].as_array().unwrap()), published);

    let mut socket = app.websocket(Some(cursor)).await;
    assert_gap(&socket.next_json().await["gap"], reason, None);
    assert_eq!(bodies(&socket.next_messages(5).await), ["m1", "m2", "m3", "m4", "m5"]);

    let mut events = app.sse(None, Some(cursor)).await;
    let notice = events.next_event().await;
    assert_eq!(notice.event.as_deref(), Some("gap"));
    assert_gap(&notice.json(), reason, None);
    assert_eq!(ids(&events.next_messages(5).await), published);
}

#[tokio::test]
async fn a_cursor_from_another_server_run_gives_a_gap_notice_on_every_transport() {
    let (app, browser, published) = five_messages().await;
    // Another run of the server: same wire format, another epoch.
    let earlier_run = spawn_app(Config::default()).await;
    let foreign = earlier_run.browser().await.publish("m1").await["id"].as_str().unwrap().to_owned();
    assert_gap_then_history_on_every_transport(&app, &browser, &published, &foreign, "unknown_epoch").await;
}

#[tokio::test]
async fn a_malformed_cursor_gives_a_gap_notice_on_every_transport() {
    let (app, browser, published) = five_messages().await;
    for malformed in ["not-a-cursor", "12", "zzzzzzzzzzzzzzzz-1"] {
        assert_gap_then_history_on_every_transport(&app, &browser, &published, malformed, "malformed").await;
    }
}
