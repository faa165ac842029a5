//! The network matrix: the three transports over emulated links (crate
//! `emulated-link`), on pushwire, nchan and Tornado's chat demo alike. Every
//! subscriber connection, and the publisher of a person's own message, crosses the
//! link; a back end's publisher stays on loopback. On loopback the transports differ
//! mainly in server CPU; here they differ in how many round trips they need.
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
//! [`run`] measures it (with the reconnect and cold-start drivers of [`rounds`]),
//! [`report`] writes `network.md`, `network-summary.md` and the plots.

pub(crate) mod report;
pub(crate) mod rounds;
pub(crate) mod run;

use std::time::Duration;

use emulated_link::{Link, Rate};

use crate::record::Outcome;

/// A named link, modelled on what people have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub name: &'static str,
    pub link: Link,
}

/// Bits per second of a DevTools preset, which gives bytes per second.
fn devtools_rate(bytes_per_second: f64) -> Option<Rate> {
    Rate::from_bits_per_second((bytes_per_second * 8.0).round() as u64)
}

/// Round trips of 0, 20, 100 and 300 ms with unlimited bandwidth, and Chrome DevTools'
/// throttling presets (devtools-frontend's `NetworkManager`: "Fast 3G", now "Slow 4G",
/// 1.6 Mibit/s × 0.9 down, 750 kibit/s × 0.9 up, 150 ms × 3.75 latency; "Slow 3G", now
/// "3G", 500 kibit/s × 0.8 both ways, 400 ms × 5 latency), their latency taken as the RTT.
pub(crate) fn profiles() -> Vec<Profile> {
    let rtt = |ms| Link::with_rtt(Duration::from_millis(ms));
    vec![
        Profile { name: "loopback", link: Link::default() },
        Profile { name: "rtt-20ms", link: rtt(20) },
        Profile { name: "rtt-100ms", link: rtt(100) },
        Profile { name: "rtt-300ms", link: rtt(300) },
        Profile {
            name: "fast-3g",
            link: Link {
                rtt: Duration::from_micros(562_500),
                jitter: Duration::ZERO,
                down: devtools_rate(1.6 * 1024.0 * 1024.0 / 8.0 * 0.9),
                up: devtools_rate(750.0 * 1024.0 / 8.0 * 0.9),
            },
        },
        Profile {
            name: "slow-3g",
            link: Link {
                rtt: Duration::from_millis(2000),
                jitter: Duration::ZERO,
                down: devtools_rate(500.0 * 1024.0 / 8.0 * 0.8),
                up: devtools_rate(500.0 * 1024.0 / 8.0 * 0.8),
            },
        },
    ]
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
