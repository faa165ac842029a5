//! The records of a run: plain, serialisable data and nothing else. `results.json` is a
//! [`Run`]; `churn.json` holds [`ChurnOutcome`]s. Every experiment's run fills these in
//! and every report reads them, so this module imports no other module of the crate:
//! measuring and reporting both depend on it, never it on them. Changing a field here
//! changes the JSON format, which committed results under `bench/results/` must still
//! load in (`--report-from`); new fields get `#[serde(default)]`.

mod http;

use serde::{Deserialize, Serialize};

pub(crate) use http::Http;

/// Everything one invocation measured, with what is needed to judge it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Run {
    pub tool: String,
    /// UTC, ISO 8601.
    pub date: String,
    pub command: String,
    pub matrix: String,
    pub machine: Machine,
    pub client_worker_threads: usize,
    pub client_nofile_limit: u64,
    pub servers: Vec<ServerFacts>,
    pub outcomes: Vec<Outcome>,
    pub wall_time_s: f64,
    /// The HTTP settings the matrix was measured over: the whole matrix over the first,
    /// fan-out, idle and round trips over each of the others. Empty in runs from before
    /// the setting existed, which were HTTP/1.1 in cleartext throughout.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<Http>,
}

impl Run {
    /// The HTTP setting the whole matrix was measured over.
    pub(crate) fn main_http(&self) -> Http {
        self.http.first().copied().unwrap_or_default()
    }
}

/// The machine the run happened on.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Machine {
    pub cpu_model: String,
    pub cores: usize,
    pub kernel: String,
    pub memory_mib: u64,
    pub rustc: String,
    pub load_average_before: String,
    pub load_average_after: String,
}

/// What the report says about a server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ServerFacts {
    pub name: String,
    pub protocol: Protocol,
    pub version: String,
    pub workers: String,
    pub command: String,
}

/// Which server's wire protocol to speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Protocol {
    Pushwire,
    Tornado,
    Nchan,
}

/// The push transports under comparison.
#[allow(clippy::enum_variant_names, reason = "WebTransport is the protocol's name")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Transport {
    LongPoll,
    Sse,
    #[serde(rename = "websocket")]
    WebSocket,
    /// Over HTTP/3 (QUIC), whatever the run's HTTP setting: one stream, in order.
    #[serde(rename = "webtransport")]
    WebTransport,
    /// WebTransport with each message on its own stream (`?order=none`): a lost packet
    /// holds up only its own message; the client puts them back in order.
    #[serde(rename = "webtransport-unordered")]
    WebTransportUnordered,
}

impl Transport {
    /// What a run measures unless told otherwise (`--transports`).
    pub(crate) const ALL: [Transport; 4] =
        [Transport::LongPoll, Transport::Sse, Transport::WebSocket, Transport::WebTransport];
    /// Every one there is, for `--transports`.
    pub(crate) const EVERY: [Transport; 5] = [
        Transport::LongPoll,
        Transport::Sse,
        Transport::WebSocket,
        Transport::WebTransport,
        Transport::WebTransportUnordered,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Transport::LongPoll => "long-poll",
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
            Transport::WebTransport => "webtransport",
            Transport::WebTransportUnordered => "webtransport-unordered",
        }
    }

    /// Whether it promises messages in order (the unordered one puts them back in order
    /// itself, and reports when it could: `in_order_us`).
    pub(crate) fn ordered(self) -> bool {
        self != Transport::WebTransportUnordered
    }

    /// Over QUIC (UDP) rather than TCP.
    pub(crate) fn quic(self) -> bool {
        matches!(self, Transport::WebTransport | Transport::WebTransportUnordered)
    }

    /// Whether a client can publish on its own subscription (WebSocket frames,
    /// WebTransport streams), for the in-band round trip.
    pub(crate) fn publishes_in_band(self) -> bool {
        matches!(self, Transport::WebSocket | Transport::WebTransport | Transport::WebTransportUnordered)
    }
}

impl Protocol {
    /// The transports a server of this protocol offers.
    pub(crate) fn transports(self) -> &'static [Transport] {
        match self {
            Protocol::Pushwire => &Transport::EVERY,
            Protocol::Nchan => &[Transport::LongPoll, Transport::Sse, Transport::WebSocket],
            Protocol::Tornado => &[Transport::LongPoll],
        }
    }

    /// Whether a server of this protocol serves `transport` over `http`, or why not.
    pub(crate) fn serves(self, transport: Transport, http: Http) -> Result<(), &'static str> {
        match (self, transport, http) {
            (_, transport, _) if !self.transports().contains(&transport) => Err("not offered by this server"),
            (Protocol::Tornado, _, Http::H1Tls | Http::H2Tls { .. }) => {
                Err("Tornado's chat demo is measured over plain HTTP/1.1 only")
            }
            (Protocol::Nchan, Transport::WebSocket, Http::H2Tls { .. }) => {
                Err("n/a: nginx 1.22 has no WebSocket over HTTP/2 (RFC 8441 extended CONNECT)")
            }
            _ => Ok(()),
        }
    }
}

/// Which question a measurement answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// One publisher at a steady rate, N subscribers.
    FanOut,
    /// One step of the publish-rate ramp.
    Throughput,
    /// Fan-out with a given payload size.
    Payload,
    /// POST, then receive it on the transport (closed loop, one subscriber).
    RoundTrip,
    /// WebSocket: send in-band, receive it back on the same socket.
    RoundTripInBand,
    /// N connections held open with nothing to deliver.
    Idle,
    /// Fan-out across instances: publish on one, subscribers on another, sharing the
    /// conversation through Redis; or the same load on one in-memory instance.
    ScaleOut,
    /// Network matrix: messages published back to back; how long until each subscriber
    /// holds the last, and in how many responses or frames they came.
    Burst,
    /// Network matrix: the subscriber's connection is cut, a message is published at
    /// once, and the subscriber reconnects from its cursor as a browser would.
    Resume,
    /// Network matrix: a new subscriber connects; how long until its first message.
    ColdStart,
    /// Network matrix: one step of a publish-rate ramp of 1 KiB messages on a link of
    /// limited bandwidth.
    Constrained,
}

/// Latency percentiles in microseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Latency {
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
    /// Samples over 1 s (stalls a person notices). Recorded over the packet link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub over_1s: Option<u64>,
    /// Points of the distribution, `(quantile, µs)` in rising order, the last the
    /// maximum, for CDF plots. Recorded over the packet link.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cdf: Vec<(f64, u64)>,
}

/// Bytes at the client's sockets, headers and framing included.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct WireBytes {
    /// Received by subscribers, per delivered message.
    pub down_per_delivery: f64,
    /// Sent by subscribers (long-poll requests, WebSocket pongs), per delivered message.
    pub up_per_delivery: f64,
    /// Sent by the publisher, per published message.
    pub publish_up_per_message: f64,
    /// Received by the publisher (the publish answers), per published message.
    pub publish_down_per_message: f64,
    /// Both directions of connection setup (handshake, headers), per subscriber.
    pub setup_per_connection: f64,
}

/// Server memory around an idle-connection measurement.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct Memory {
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub rss_per_connection_bytes: f64,
    pub pss_per_connection_bytes: f64,
    /// Server CPU spent holding the idle connections, per connection and second.
    pub idle_cpu_us_per_connection_s: f64,
    pub held_s: f64,
}

/// The figures of one measurement.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Outcome {
    pub server: String,
    pub kind: Kind,
    pub transport: Transport,
    /// What the subscribers' and publisher's HTTP went over; HTTP/1.1 in cleartext in
    /// runs from before the setting existed (and not written for it).
    #[serde(default, skip_serializing_if = "Http::is_cleartext_h1")]
    pub http: Http,
    pub subscribers: usize,
    pub connected: usize,
    pub payload_bytes: usize,
    pub target_rate: f64,
    pub published: u64,
    pub achieved_rate: f64,
    /// From publish to arrival, as a message's bytes come in.
    pub latency_us: Latency,
    /// Unordered transports: from publish until the message could be shown in order
    /// (every earlier one had arrived too). Ordered transports deliver in order, so
    /// theirs is `latency_us`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_order_us: Option<Latency>,
    pub expected: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub gaps: u64,
    pub publish_errors: u64,
    pub connect_errors: u64,
    pub subscriber_errors: u64,
    /// Long-polls sent again on a new connection because the server had closed the one
    /// they were sent on (as a browser does).
    #[serde(default)]
    pub resent: u64,
    /// From the first publish to the last delivery (or the drain timeout).
    pub duration_s: f64,
    pub delivered_per_s: f64,
    pub server_cpu_ms: Option<f64>,
    pub server_cpu_us_per_1000_deliveries: Option<f64>,
    /// `server_cpu_us_per_1000_deliveries` split into user and kernel time; `None` in
    /// runs before the split was recorded, or when too little CPU time passed to tell.
    #[serde(default)]
    pub server_cpu_user_us_per_1000_deliveries: Option<f64>,
    #[serde(default)]
    pub server_cpu_system_us_per_1000_deliveries: Option<f64>,
    /// CPU time of this tool (publisher and subscribers) during the measurement.
    #[serde(default)]
    pub load_generator_cpu_ms: Option<f64>,
    /// Busy CPU of the machine not used by the server or this tool, as a share of all
    /// cores during the measurement: how much the run was disturbed.
    pub other_load: Option<f64>,
    pub bytes: WireBytes,
    pub memory: Option<Memory>,
    /// The first error seen, when any.
    pub note: Option<String>,
    /// The network matrix's link profile the subscribers were behind (`None`: loopback
    /// runs, which emulate nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// Burst: per subscriber, from the first publish until it held the last message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completion_us: Option<Latency>,
    /// Burst: responses (long-poll), chunks (SSE) or frames (WebSocket) that carried
    /// the burst, per subscriber.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub batches_per_subscriber: Option<f64>,
    /// Over the packet link: what it and the kernels' TCP did during the measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packet_link: Option<LinkFigures>,
}

/// What the packet link did between the start and the end of one measurement (from
/// its own counters), and what TCP retransmitted on each side meanwhile (each network
/// namespace's `RetransSegs` of `/proc/net/snmp`). QUIC retransmits inside its
/// endpoints: for WebTransport, what pushwire's QUIC declared lost, from its `/metrics`.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub(crate) struct LinkFigures {
    /// IP packets that came to the link server → client, and client → server.
    pub packets_down: u64,
    pub packets_up: u64,
    /// Of those, lost by its loss model.
    pub lost_down: u64,
    pub lost_up: u64,
    /// Dropped because its bandwidth's queue was full.
    pub queue_drops_down: u64,
    pub queue_drops_up: u64,
    /// TCP segments the server side's kernel retransmitted, and the client side's.
    pub tcp_retransmits_server: u64,
    pub tcp_retransmits_client: u64,
    /// Packets the server's QUIC declared lost (and sent again what they held);
    /// WebTransport on pushwire only. Counted each second and as each session ends, so
    /// the last second's may fall to the next measurement.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quic_lost_server: Option<u64>,
}

impl Outcome {
    /// No loss, duplication, gap or error, and no disorder where the transport promises
    /// order.
    pub(crate) fn clean(&self) -> bool {
        self.lost == 0
            && self.duplicated == 0
            && (self.out_of_order == 0 || !self.transport.ordered())
            && self.gaps == 0
            && self.publish_errors == 0
            && self.connect_errors == 0
            && self.subscriber_errors == 0
    }
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::FanOut => "fan-out",
            Kind::Throughput => "throughput",
            Kind::Payload => "payload",
            Kind::RoundTrip => "round trip",
            Kind::RoundTripInBand => "in-band round trip",
            Kind::Idle => "idle",
            Kind::ScaleOut => "scale-out",
            Kind::Burst => "burst",
            Kind::Resume => "reconnect and resume",
            Kind::ColdStart => "cold start",
            Kind::Constrained => "constrained link",
        }
    }
}

/// What one transport's churn did to the server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ChurnOutcome {
    pub transport: Transport,
    pub connections: u64,
    pub clean_closes: u64,
    pub resets: u64,
    pub mid_request_drops: u64,
    /// Clients that could not connect or timed out.
    pub errors: u64,
    pub duration_s: f64,
    /// From the last client's close until the server's subscriber gauge read 0;
    /// `None` when it did not within the churn's settle limit.
    pub settled_ms: Option<f64>,
    /// Before anything of this transport, and after its warm-up.
    pub rss_fresh_kib: u64,
    pub rss_before_kib: u64,
    /// Right after the gauge read 0, and once the allocator has returned freed pages.
    pub rss_after_kib: u64,
    pub rss_settled_kib: u64,
}

/// One step of the fleet: `subscribers` clients of one transport over `instances`
/// pushwire instances sharing one conversation through Redis.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FleetOutcome {
    pub instances: usize,
    pub subscribers: usize,
    pub transport: Transport,
    /// Clients that received, and how long until they all had (or the limit).
    pub connected: u64,
    pub connect_s: f64,
    /// Steady fan-out, publish to arrival at every client.
    pub latency_us: Latency,
    /// Each instance's CPU (cores) over the steady window, redis-server's, and the
    /// load's (the workers').
    pub instance_cores: Vec<f64>,
    pub redis_cores: f64,
    pub load_cores: f64,
    /// The instances' CPU time per delivery, µs.
    pub cpu_us_per_delivery: Option<f64>,
    /// The instances' resident memory grown since they started, per client.
    pub rss_per_connection_bytes: Option<f64>,
    /// The rolling restart (the last step): one restart per instance, and latency
    /// meanwhile.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rolling: Vec<Restart>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rolling_latency_us: Option<Latency>,
    /// Messages published (attempts, each with a seq) and, over every client, accepted
    /// ones never received, received twice, received after a later one.
    pub published: u64,
    /// Publishes whose answer did not come in time: they may have got in, later than
    /// the next one, so they are held to neither order nor delivery.
    #[serde(default)]
    pub uncertain: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub gap_clients: u64,
    /// Messages not received that a gap notice covered (the history no longer held
    /// them when the client came back): told, not lost silently.
    #[serde(default)]
    pub covered_by_gap: u64,
    /// Clients not receiving when the step ended (still reconnecting): only what they
    /// skipped before their last message counts as lost.
    #[serde(default)]
    pub away: u64,
    /// Connection attempts during the rolling restart, and those that failed.
    pub attempts: u64,
    pub failed_attempts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One instance of the fleet restarted (`SIGTERM`, then started on the same port).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct Restart {
    pub instance: usize,
    /// From the signal until the new process listened.
    pub up_ms: f64,
    /// From the signal until every client was receiving again.
    pub back_all_ms: Option<f64>,
    /// From the signal until 99 % of the clients were receiving again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_99_ms: Option<f64>,
    /// `(ms since the signal, clients receiving)` from when the new process listened,
    /// every 100 ms (the plot's line).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receiving: Vec<(u64, u32)>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// One restart storm: a server under `subscribers` clients of one transport stopped
/// and started again, the clients coming back on one schedule. Times in ms from the
/// stop signal.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StormOutcome {
    /// `memory` (the history goes with the process) or `redis` (it survives).
    pub bus: String,
    /// `kill` (SIGKILL, no one told) or `term` (SIGTERM: clients told when to come back).
    pub stop: String,
    pub transport: Transport,
    pub schedule: String,
    pub subscribers: u64,
    /// From the signal until the old process was gone, and until the new one accepted.
    pub down_ms: f64,
    pub up_ms: f64,
    /// When this share of the clients was receiving again (a message, or the gap
    /// notice of a bus that lost its history); `None` if that many never were.
    pub back_50_ms: Option<f64>,
    pub back_99_ms: Option<f64>,
    pub back_all_ms: Option<f64>,
    /// Clients not receiving again when the storm's time limit ran out.
    pub never_back: u64,
    /// When 99 % of the clients had noticed their connection was gone (a crashed QUIC
    /// server's clients notice only at their idle timeout).
    pub noticed_99_ms: Option<f64>,
    /// Connection attempts from the stop until the last client was back, those that
    /// failed (refused, reset, timed out), and the most in any one second.
    pub attempts: u64,
    pub failed_attempts: u64,
    pub peak_attempts_per_s: u64,
    /// The new server process over the storm: its busiest 100 ms (cores), its CPU
    /// seconds until the last client was back, and its largest resident memory.
    pub server_cpu_peak_cores: f64,
    pub server_cpu_s: f64,
    pub server_rss_peak_kib: u64,
    /// From a successful connection attempt to its first message or notice.
    pub first_data_p50_ms: Option<f64>,
    pub first_data_p99_ms: Option<f64>,
    /// Messages the publisher had accepted, and those whose answer the stop cut off
    /// (maybe in, maybe not: neither required nor counted twice).
    pub published: u64,
    pub uncertain: u64,
    /// Over all clients: accepted messages never received, received twice, received
    /// after a later one; and accepted messages missing where a gap notice said so.
    pub lost: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub covered_by_gap: u64,
    /// Clients that were sent a gap notice.
    pub gap_clients: u64,
    /// Clients receiving, every 100 ms from the stop (the plot's line).
    pub receiving: Vec<u32>,
    /// Why the trial could not run or ended early, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nchan_serves_no_websocket_over_http2() {
        assert!(Protocol::Nchan.serves(Transport::WebSocket, Http::H2Tls { per_connection: 1 }).is_err());
        assert!(Protocol::Nchan.serves(Transport::WebSocket, Http::H1Tls).is_ok());
        assert!(Protocol::Pushwire.serves(Transport::WebSocket, Http::H2Tls { per_connection: 100 }).is_ok());
    }
}
