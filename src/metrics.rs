//! Prometheus metrics, served at `GET /metrics` in the text exposition format.
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `pushwire_subscribers` | gauge: open subscriptions (for long-poll: pending polls) | `transport`, `http` (`1.1`, `2`, `3`) |
//! | `pushwire_messages_published_total` | counter | |
//! | `pushwire_deliveries_total` | counter: messages written to subscribers | `transport` |
//! | `pushwire_gaps_total` | counter: gap notices sent | `transport`, `reason` |
//! | `pushwire_slow_consumer_disconnects_total` | counter | `transport` |
//! | `pushwire_requests_rejected_total` | counter | `reason` |
//! | `pushwire_delivery_latency_seconds` | histogram: publish → handed to the socket | `transport` |
//! | `pushwire_fanout_deferred_writes_total` | counter: WebSocket writes the fan-out could not finish at once (left for the connection's task to drain) | |
//! | `pushwire_fanout_releases_total` | counter: streaming connections (WebSocket and SSE) the fan-out let go of, to catch up by themselves or end | |
//!
//! Each transport's handles are looked up once, at start-up ([`Metrics::transport`]),
//! so the delivery path only bumps atomics. Per-transport series exist from start-up at
//! zero; `gaps` and `requests_rejected` series appear with their first occurrence.

use std::time::Duration;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::AppState;
use crate::bus::GapReason;

/// The push transports, as metric labels. The order of the variants is the
/// order of `Metrics::by_transport`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Transport {
    /// `POST /a/message/updates`.
    LongPoll,
    /// `GET /a/message/socket`.
    WebSocket,
    /// `GET /a/message/events`.
    Sse,
    /// A WebTransport session at `/a/message/webtransport`, over HTTP/3.
    WebTransport,
}

impl Transport {
    /// The label value: `long_poll`, `websocket` or `sse`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::LongPoll => "long_poll",
            Transport::WebSocket => "websocket",
            Transport::Sse => "sse",
            Transport::WebTransport => "webtransport",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TransportLabel {
    transport: &'static str,
}

/// The HTTP version a subscription is carried by, as a metric label. The order of the
/// variants is the order of a transport's subscriber gauges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Http {
    /// HTTP/1.1 (and 1.0).
    V1,
    /// HTTP/2.
    V2,
    /// HTTP/3 (WebTransport).
    V3,
}

impl Http {
    const ALL: [Http; 3] = [Http::V1, Http::V2, Http::V3];

    /// The version of a request.
    pub fn of(version: axum::http::Version) -> Self {
        if version >= axum::http::Version::HTTP_2 { Http::V2 } else { Http::V1 }
    }

    /// The label value, as the ready notices name it too: `1.1`, `2` or `3`.
    pub fn as_str(self) -> &'static str {
        match self {
            Http::V1 => "1.1",
            Http::V2 => "2",
            Http::V3 => "3",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SubscriberLabel {
    transport: &'static str,
    http: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GapLabel {
    transport: &'static str,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// Every metric of one server, with the registry that encodes them.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    published: Counter,
    rejected: Family<ReasonLabel, Counter>,
    fanout_deferred: Counter,
    fanout_released: Counter,
    quic_lost_packets: Counter,
    /// The handles of each transport, looked up once here rather than per connection,
    /// in the order of [`Transport`]'s variants.
    by_transport: [TransportMetrics; 4],
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("pushwire");
        let published = Counter::default();
        let subscribers = Family::<SubscriberLabel, Gauge>::default();
        let deliveries = Family::default();
        let gaps = Family::default();
        let slow_disconnects = Family::default();
        let rejected = Family::default();
        let fanout_deferred = Counter::default();
        let fanout_released = Counter::default();
        let quic_lost_packets = Counter::default();
        // 50 µs to ~1.6 s in 16 doublings: loopback deliveries sit at the low end,
        // overloaded ones at the high end.
        let latency = Family::<TransportLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(5e-5, 2.0, 16))
        });
        registry.register("messages_published", "Messages accepted by the bus", published.clone());
        registry.register("subscribers", "Open subscriptions (long-poll: pending polls)", subscribers.clone());
        registry.register("deliveries", "Messages written to subscribers", deliveries.clone());
        registry.register("gaps", "Gap notices sent to subscribers", gaps.clone());
        registry.register("slow_consumer_disconnects", "Subscribers cut off for not reading", slow_disconnects.clone());
        registry.register("requests_rejected", "Requests and frames refused, by reason", rejected.clone());
        registry.register(
            "fanout_deferred_writes",
            "WebSocket writes the fan-out left to the connection's task: the socket could not take them at once",
            fanout_deferred.clone(),
        );
        registry.register(
            "fanout_releases",
            "Streaming connections the fan-out let go of, to catch up from the bus by themselves or end",
            fanout_released.clone(),
        );
        registry.register(
            "quic_lost_packets",
            "Packets QUIC declared lost on WebTransport sessions (and sent again what they held)",
            quic_lost_packets.clone(),
        );
        registry.register(
            "delivery_latency_seconds",
            "From publish to handing the message to the socket",
            latency.clone(),
        );
        // Creating the handles also creates every per-transport series, at zero, so
        // dashboards and readers see every transport before any traffic.
        let by_transport =
            [Transport::LongPoll, Transport::WebSocket, Transport::Sse, Transport::WebTransport].map(|transport| {
                let label = TransportLabel { transport: transport.as_str() };
                TransportMetrics {
                    transport,
                    subscribers: Http::ALL.map(|http| {
                        subscribers
                            .get_or_create_owned(&SubscriberLabel { transport: label.transport, http: http.as_str() })
                    }),
                    deliveries: deliveries.get_or_create_owned(&label),
                    slow_disconnects: slow_disconnects.get_or_create_owned(&label),
                    latency: latency.get_or_create_owned(&label),
                    gaps: gaps.clone(),
                }
            });
        Metrics { registry, published, rejected, fanout_deferred, fanout_released, quic_lost_packets, by_transport }
    }
}

impl Metrics {
    /// Counts one message accepted by the bus.
    pub fn published(&self) {
        self.published.inc();
    }

    /// Counts one refused request or frame.
    pub fn rejected(&self, reason: &'static str) {
        self.rejected.get_or_create(&ReasonLabel { reason }).inc();
    }

    /// Counts a WebSocket write the fan-out left to the connection's task.
    pub fn fanout_deferred(&self) {
        self.fanout_deferred.inc();
    }

    /// Counts a streaming connection the fan-out let go of.
    pub fn fanout_released(&self) {
        self.fanout_released.inc();
    }

    /// Counts packets QUIC declared lost on a WebTransport session.
    pub fn quic_lost(&self, packets: u64) {
        self.quic_lost_packets.inc_by(packets);
    }

    /// The handles of one transport.
    pub fn transport(&self, transport: Transport) -> &TransportMetrics {
        &self.by_transport[transport as usize]
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry).expect("metrics encode");
        text
    }
}

/// One transport's metric handles.
#[derive(Clone, Debug)]
pub struct TransportMetrics {
    transport: Transport,
    /// By [`Http`] version.
    subscribers: [Gauge; 3],
    deliveries: Counter,
    slow_disconnects: Counter,
    latency: Histogram,
    gaps: Family<GapLabel, Counter>,
}

impl TransportMetrics {
    /// Counts a subscriber over `http` for as long as the returned guard lives.
    pub fn subscriber(&self, http: Http) -> SubscriberGuard {
        let gauge = &self.subscribers[http as usize];
        gauge.inc();
        SubscriberGuard(gauge.clone())
    }

    /// Counts one delivery that waited `since_publish` after its publish.
    pub fn delivered(&self, since_publish: Duration) {
        self.deliveries.inc();
        self.latency.observe(since_publish.as_secs_f64());
    }

    /// Counts a gap notice sent.
    pub fn gap(&self, reason: GapReason) {
        self.gaps.get_or_create(&GapLabel { transport: self.transport.as_str(), reason: reason.as_str() }).inc();
    }

    /// Counts a subscriber cut off for not reading.
    pub fn slow_disconnect(&self) {
        self.slow_disconnects.inc();
    }
}

/// Decrements the subscriber gauge when dropped, whichever way the subscriber leaves.
#[derive(Debug)]
pub struct SubscriberGuard(Gauge);

impl Drop for SubscriberGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// `GET /metrics`.
pub async fn serve(State(state): State<AppState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], state.metrics.encode())
}
