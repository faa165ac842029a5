//! Running the network matrix: per link profile, the plan of steps, each on every server;
//! over the packet link, with what the link and TCP did during each.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use packet_link::PacketLink;

use super::rounds::{cold_start, resume};
use super::{CONSTRAINED_PAYLOAD, NetworkMatrix, NetworkRun, Profile, sustained};
use crate::progress::announce;
use crate::record::{Http, Kind, LinkFigures, Outcome, Transport};
use crate::scenario::{self, Behind, Bench, Load};
use crate::servers::{Server, metrics};

/// How long a new profile's link is left to empty: packets in flight keep the times the
/// last profile gave them, and a bandwidth queue takes a while to drain.
const PROFILE_SETTLE: Duration = Duration::from_secs(1);

/// Runs the matrix on every server; returns the outcomes in the order they ran.
pub(crate) async fn run(
    servers: &mut [Server],
    network: &NetworkRun,
    transports: &[Transport],
    progress: &ProgressBar,
    deadline: Instant,
) -> Vec<Outcome> {
    let NetworkRun { matrix, profiles, packet_link } = network;
    let mut outcomes = Vec::new();
    for profile in profiles {
        if let Some(link) = packet_link {
            link.set_profile(profile.packet());
            tokio::time::sleep(PROFILE_SETTLE).await;
        }
        for step in plan(matrix, profile, transports) {
            for server in servers.iter_mut() {
                progress.inc(1);
                if !server.facts.protocol.transports().contains(&step.transport()) || Instant::now() >= deadline {
                    continue;
                }
                if let Step::Deliver(load) = &step
                    && load.kind == Kind::Constrained
                    && ramp_failed(&outcomes, &server.facts.name, profile.name, load.transport)
                {
                    continue;
                }
                // QUIC's losses are counted inside the server; only pushwire's `/metrics` has them.
                let quic_metrics = step.transport().quic().then_some(server.addr);
                let mut bench = Bench {
                    server,
                    subscribe_on: None,
                    also_measured: &[],
                    progress,
                    deadline,
                    link: Some(Behind {
                        profile: profile.name,
                        emulated: profile.emulated(),
                        rtt: profile.rtt(),
                        packet_link: packet_link.as_ref(),
                    }),
                    http: Http::H1,
                };
                let before = match packet_link.as_deref() {
                    Some(link) => Tally::take(link, quic_metrics).await,
                    None => None,
                };
                let mut outcome = match &step {
                    Step::Deliver(load) => scenario::deliver(&mut bench, load).await,
                    Step::Resume(transport) => resume(&bench, *transport, matrix.resume_rounds).await,
                    Step::ColdStart(transport) => cold_start(&bench, *transport, matrix.cold_starts).await,
                };
                if let (Some(link), Some(before)) = (packet_link, before) {
                    outcome.packet_link = Tally::take(link, quic_metrics).await.map(|after| after.since(&before));
                }
                announce(progress, &outcome);
                outcomes.push(outcome);
                // Let the server close the last scenario's connections before the next.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    outcomes
}

/// How many steps [`run`] takes per server, for the progress bar.
pub(crate) fn steps(matrix: &NetworkMatrix, profiles: &[Profile], transports: &[Transport]) -> usize {
    profiles.iter().map(|profile| plan(matrix, profile, transports).len()).sum()
}

enum Step {
    Deliver(Load),
    Resume(Transport),
    ColdStart(Transport),
}

impl Step {
    fn transport(&self) -> Transport {
        match self {
            Step::Deliver(load) => load.transport,
            Step::Resume(transport) | Step::ColdStart(transport) => *transport,
        }
    }
}

fn plan(matrix: &NetworkMatrix, profile: &Profile, transports: &[Transport]) -> Vec<Step> {
    let load = |kind, transport, subscribers, rate, messages, payload_bytes| {
        Step::Deliver(Load { kind, transport, subscribers, rate, messages, payload_bytes })
    };
    // The emulated link carries TCP byte streams: WebTransport (QUIC datagrams) has no
    // place behind it; the packet link carries both.
    let transports: Vec<Transport> =
        transports.iter().copied().filter(|transport| profile.is_packet() || !transport.quic()).collect();
    let mut steps = Vec::new();
    for &transport in &transports {
        let (subscribers, rate, messages) = matrix.fan_out;
        steps.push(load(Kind::FanOut, transport, subscribers, rate, messages, 64));
        let (subscribers, messages) = matrix.burst;
        // Open loop at a rate no publisher reaches: back to back.
        steps.push(load(Kind::Burst, transport, subscribers, 100_000.0, messages, 64));
        steps.push(load(Kind::RoundTrip, transport, 1, 0.0, matrix.round_trips, 64));
        steps.push(Step::Resume(transport));
        steps.push(Step::ColdStart(transport));
    }
    if transports.contains(&Transport::WebSocket) {
        steps.push(load(Kind::RoundTripInBand, Transport::WebSocket, 1, 0.0, matrix.round_trips, 64));
    }
    if profile.limited() {
        for &transport in &transports {
            for &rate in &matrix.constrained_rates {
                let messages = (rate * matrix.constrained_step.as_secs_f64()).ceil() as u64;
                let subscribers = matrix.constrained_subscribers;
                steps.push(load(Kind::Constrained, transport, subscribers, rate, messages, CONSTRAINED_PAYLOAD));
            }
        }
    }
    steps
}

fn ramp_failed(outcomes: &[Outcome], server: &str, profile: &str, transport: Transport) -> bool {
    outcomes
        .iter()
        .filter(|o| o.server == server && o.kind == Kind::Constrained && o.transport == transport)
        .filter(|o| o.link.as_deref() == Some(profile))
        .any(|o| !sustained(o))
}

/// The packet link's counters, each side's TCP retransmits and, for WebTransport, the
/// packets the server's QUIC declared lost, at one moment.
struct Tally {
    counts: (packet_link::Counts, packet_link::Counts),
    retransmits: (u64, u64),
    quic_lost: Option<f64>,
}

impl Tally {
    /// `None` when a side's TCP counters cannot be read; QUIC's losses read from the
    /// `/metrics` at `quic_metrics`, when given.
    async fn take(link: &PacketLink, quic_metrics: Option<SocketAddr>) -> Option<Tally> {
        let retransmits = |side: &packet_link::Namespace| side.tcp_counter("RetransSegs").ok();
        let quic_lost = match quic_metrics {
            Some(addr) => metrics::sum(addr, "pushwire_quic_lost_packets_total").await,
            None => None,
        };
        Some(Tally {
            counts: link.counts(),
            retransmits: (retransmits(link.server())?, retransmits(link.client())?),
            quic_lost,
        })
    }

    fn since(&self, before: &Tally) -> LinkFigures {
        let ((down, up), (was_down, was_up)) = (self.counts, before.counts);
        LinkFigures {
            packets_down: down.packets - was_down.packets,
            packets_up: up.packets - was_up.packets,
            lost_down: down.lost - was_down.lost,
            lost_up: up.lost - was_up.lost,
            queue_drops_down: down.queue_drops - was_down.queue_drops,
            queue_drops_up: up.queue_drops - was_up.queue_drops,
            tcp_retransmits_server: self.retransmits.0.saturating_sub(before.retransmits.0),
            tcp_retransmits_client: self.retransmits.1.saturating_sub(before.retransmits.1),
            quic_lost_server: self.quic_lost.zip(before.quic_lost).map(|(after, before)| (after - before) as u64),
        }
    }
}
