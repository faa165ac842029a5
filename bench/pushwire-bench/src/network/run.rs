//! Running the network matrix: per link profile, the plan of steps, each on every server.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::rounds::{cold_start, resume};
use super::{CONSTRAINED_PAYLOAD, NetworkMatrix, Profile, sustained};
use crate::progress::announce;
use crate::record::{Http, Kind, Outcome, Transport};
use crate::scenario::{self, Bench, Load};
use crate::servers::Server;

/// Runs the matrix on every server; returns the outcomes in the order they ran.
pub(crate) async fn run(
    servers: &mut [Server],
    matrix: &NetworkMatrix,
    profiles: &[Profile],
    transports: &[Transport],
    progress: &ProgressBar,
    deadline: Instant,
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for profile in profiles {
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
                let mut bench = Bench {
                    server,
                    subscribe_on: None,
                    also_measured: &[],
                    progress,
                    deadline,
                    link: Some((profile.name, profile.link)),
                    http: Http::H1,
                };
                let outcome = match &step {
                    Step::Deliver(load) => scenario::deliver(&mut bench, load).await,
                    Step::Resume(transport) => resume(&bench, *transport, matrix.resume_rounds).await,
                    Step::ColdStart(transport) => cold_start(&bench, *transport, matrix.cold_starts).await,
                };
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
    // place behind it.
    let transports: Vec<Transport> = transports.iter().copied().filter(|transport| !transport.quic()).collect();
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
    if profile.link.down.is_some() {
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
