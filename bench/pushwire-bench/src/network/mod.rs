//! The network matrix: every transport behind a link, on pushwire, nchan and Tornado's
//! chat demo alike. Every subscriber connection, and the publisher of a person's own
//! message, crosses the link; a back end's publisher stays on the server's side. On
//! loopback the transports differ mainly in server CPU; here they differ in how many
//! round trips they need and, under loss, in what one lost packet holds up.
//!
//! Two kinds of link ([`profiles`]): emulated (crate `emulated-link`, the TCP
//! transports' byte streams delayed inside this process, servers on loopback) and
//! packet (`--link packet`, crate `packet-link`: the servers run in a network namespace
//! of the run's own, this process's threads in another, and every IP packet between
//! them is delayed, throttled or lost, so kernel TCP and QUIC retransmit; WebTransport
//! runs there too, ordered and unordered).
//!
//! Scenarios, per profile and transport:
//! - steady fan-out: p50/p99 from publish to delivery;
//! - a burst published back to back: how long until each subscriber holds the last
//!   message, and in how many responses, chunks or frames the burst came;
//! - chat round trip: POST across the link, then receive (WebSocket: in-band too);
//! - reconnect and resume: the connection is cut, a message is published at once, and
//!   the client reconnects from its cursor as a browser would (SSE after the server's
//!   `retry:`); how long until it holds the message, with nothing lost;
//! - cold start: from the start of a connect to its first message;
//! - on the bandwidth-limited profiles, a rising rate of 1 KiB messages: the highest
//!   rate each transport sustains with p99 under 1 s, and the bytes on the wire.
//!
//! Over the packet link each outcome also records what the link lost each way and
//! what TCP retransmitted on each side meanwhile, and its latencies' CDF.
//!
//! [`run`] measures it (with the reconnect and cold-start drivers of [`rounds`]),
//! [`report`] writes `network.md`, `network-summary.md` and the plots (over the packet
//! link also the loss tables, the latency CDFs and the agreement at 0 % loss).

pub(crate) mod profiles;
pub(crate) mod report;
pub(crate) mod rounds;
pub(crate) mod run;

use std::sync::Arc;
use std::time::Duration;

use packet_link::PacketLink;

pub(crate) use profiles::{LinkKind, Profile};

use crate::record::Outcome;

/// What a network run measures: the sizes, the profiles in turn, and over the packet
/// link the link itself.
pub(crate) struct NetworkRun {
    pub matrix: NetworkMatrix,
    pub profiles: Vec<Profile>,
    /// `--link packet`: the link whose client side this process's threads are on; the
    /// servers run on its server side.
    pub packet_link: Option<Arc<PacketLink>>,
}

/// The sizes of the network matrix.
pub(crate) struct NetworkMatrix {
    /// Steady fan-out: (subscribers, messages per second, messages).
    pub fan_out: (usize, f64, u64),
    /// Burst: (subscribers, messages published back to back).
    pub burst: (usize, u64),
    pub round_trips: u64,
    pub resume_rounds: usize,
    pub cold_starts: usize,
    /// Constrained link: subscribers, rising rates, and how long each step lasts.
    pub constrained_subscribers: usize,
    pub constrained_rates: Vec<f64>,
    pub constrained_step: Duration,
}

/// A constrained-link step with p99 above this is not sustained.
pub(crate) const CONSTRAINED_P99_US: u64 = 1_000_000;
/// The payload of the constrained-link ramp.
pub(crate) const CONSTRAINED_PAYLOAD: usize = 1024;
/// The longest one delivery of the reconnect and cold-start scenarios may take.
pub(crate) const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl NetworkMatrix {
    /// The quick (test) or the standard sizes.
    pub(crate) fn of(quick: bool) -> NetworkMatrix {
        if quick {
            NetworkMatrix {
                fan_out: (3, 10.0, 3),
                burst: (2, 5),
                round_trips: 1,
                resume_rounds: 1,
                cold_starts: 1,
                constrained_subscribers: 2,
                constrained_rates: vec![4.0],
                constrained_step: Duration::from_secs(1),
            }
        } else {
            NetworkMatrix {
                fan_out: (100, 10.0, 50),
                burst: (20, 50),
                round_trips: 5,
                resume_rounds: 3,
                cold_starts: 3,
                constrained_subscribers: 5,
                constrained_rates: vec![2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                constrained_step: Duration::from_secs(5),
            }
        }
    }
}

/// Whether a constrained-link step kept up: nothing lost, p99 under 1 s, and the
/// publisher at (nearly) its rate.
pub(crate) fn sustained(o: &Outcome) -> bool {
    o.clean() && o.latency_us.p99 <= CONSTRAINED_P99_US && o.achieved_rate >= 0.9 * o.target_rate
}
