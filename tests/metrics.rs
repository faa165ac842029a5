//! `GET /metrics`: the Prometheus text exposition, with every family the README lists,
//! counting what the transports actually did.

mod common;

use common::{content_type, spawn_app};
use pushwire::Config;

#[tokio::test]
async fn metrics_count_publishes_deliveries_and_subscribers_per_transport() {
    let app = spawn_app(Config::default()).await;
    let browser = app.browser().await;
    let mut socket = app.websocket(None).await;
    let mut stream = app.sse(None, None).await;
    app.wait_for_open_subscriptions(2).await;

    let sent = browser.publish("counted").await;
    assert_eq!(socket.next_message().await["id"], sent["id"]);
    assert_eq!(stream.next_message().await["id"], sent["id"]);
    let answer = browser.poll(None).await;
    assert_eq!(answer["messages"][0]["id"], sent["id"]);

    let response = browser.http.get(app.url("/metrics")).send().await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(content_type(response.headers()), "application/openmetrics-text");
    let text = response.text().await.expect("metrics text");
    for family in [
        "pushwire_subscribers",
        "pushwire_messages_published_total",
        "pushwire_deliveries_total",
        "pushwire_slow_consumer_disconnects_total",
        "pushwire_delivery_latency_seconds",
        "pushwire_fanout_deferred_writes_total",
        "pushwire_fanout_releases_total",
    ] {
        assert!(text.contains(&format!("# TYPE {}", family.trim_end_matches("_total"))), "{family} missing:\n{text}");
    }
    assert!(text.contains("pushwire_messages_published_total 1"), "{text}");
    assert!(text.contains(r#"pushwire_slow_consumer_disconnects_total{transport="sse"} 0"#), "{text}");
    for transport in ["websocket", "sse", "long_poll"] {
        assert_eq!(app.metric(&format!("pushwire_deliveries_total{{transport=\"{transport}\"}}")), 1.0, "{transport}");
        let latency = format!("pushwire_delivery_latency_seconds_count{{transport=\"{transport}\"}}");
        assert_eq!(app.metric(&latency), 1.0, "{transport}");
    }
    assert_eq!(app.subscribers("websocket"), 1.0);
    assert_eq!(app.subscribers("sse"), 1.0);
    assert_eq!(app.subscribers("long_poll"), 0.0, "the answered poll is no longer pending");
}
