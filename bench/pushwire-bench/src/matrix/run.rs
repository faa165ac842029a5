//! Running the loopback matrix: the plan of steps, and each step on every server.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::Matrix;
use super::ramp::sustained;
use crate::progress::announce;
use crate::record::{Kind, Outcome, Transport};
use crate::scenario::{self, Bench, Load};
use crate::servers::Server;

/// One entry of the plan, run for every server.
pub(crate) enum Step {
    Deliver(Load),
    /// This many connections of one transport.
    Idle(Transport, usize),
}

impl Step {
    fn transport(&self) -> Transport {
        match self {
            Step::Deliver(load) => load.transport,
            Step::Idle(transport, _) => *transport,
        }
    }

    /// Whether the step passes the `--kinds` and `--subscribers` filters (empty: all).
    pub(crate) fn chosen(&self, kinds: &[Kind], subscribers: &[usize]) -> bool {
        let (kind, count) = match self {
            Step::Deliver(load) => (load.kind, load.subscribers),
            Step::Idle(_, connections) => (Kind::Idle, *connections),
        };
        (kinds.is_empty() || kinds.contains(&kind)) && (subscribers.is_empty() || subscribers.contains(&count))
    }
}

/// The matrix as a list of steps. Idle cost goes first, on freshly started servers;
/// each step runs on every server before the next, so drift in the machine's load
/// affects both sides of a comparison alike.
pub(crate) fn plan(matrix: &Matrix, transports: &[Transport]) -> Vec<Step> {
    let mut steps = Vec::new();
    for &connections in &matrix.idle_connections {
        for &transport in transports {
            steps.push(Step::Idle(transport, connections));
        }
    }
    let load = |kind, transport, subscribers, rate, messages, payload_bytes| Load {
        kind,
        transport,
        subscribers,
        rate,
        messages,
        payload_bytes,
    };
    for &(subscribers, rate, messages) in &matrix.fan_out {
        for &transport in transports {
            steps.push(Step::Deliver(load(Kind::FanOut, transport, subscribers, rate, messages, 64)));
        }
    }
    for &size in &matrix.payload_sizes {
        let (subscribers, rate, messages) = matrix.payload_load;
        for &transport in transports {
            steps.push(Step::Deliver(load(Kind::Payload, transport, subscribers, rate, messages, size)));
        }
    }
    for &transport in transports.iter().filter(|_| matrix.round_trips > 0) {
        steps.push(Step::Deliver(load(Kind::RoundTrip, transport, 1, 0.0, matrix.round_trips, 64)));
    }
    if transports.contains(&Transport::WebSocket) && matrix.round_trips > 0 {
        let in_band = load(Kind::RoundTripInBand, Transport::WebSocket, 1, 0.0, matrix.round_trips, 64);
        steps.push(Step::Deliver(in_band));
    }
    for &transport in transports {
        for &rate in &matrix.ramp_rates {
            let messages = (rate * matrix.ramp_step.as_secs_f64()).ceil() as u64;
            steps.push(Step::Deliver(load(Kind::Throughput, transport, matrix.ramp_subscribers, rate, messages, 64)));
        }
    }
    steps
}

/// Runs `steps` on every server that offers the step's transport, until `deadline`;
/// idle steps hold their connections for `idle_hold`. Returns the outcomes in the
/// order they ran.
pub(crate) async fn run(
    servers: &mut [Server],
    steps: &[Step],
    idle_hold: Duration,
    progress: &ProgressBar,
    deadline: Instant,
    max_minutes: f64,
) -> Vec<Outcome> {
    let mut outcomes: Vec<Outcome> = Vec::new();
    for step in steps {
        for server in servers.iter_mut() {
            progress.inc(1);
            if !server.facts.protocol.transports().contains(&step.transport()) {
                continue;
            }
            if Instant::now() >= deadline {
                progress.println(format!("time budget of {max_minutes} min spent; skipping the rest"));
                break;
            }
            // A ramp stops at its first failing step.
            if let Step::Deliver(load) = step
                && load.kind == Kind::Throughput
                && ramp_already_failed(&outcomes, &server.facts.name, load)
            {
                continue;
            }
            let mut bench = Bench { server, subscribe_on: None, also_measured: &[], progress, deadline, link: None };
            let outcome = match step {
                Step::Deliver(load) => scenario::deliver(&mut bench, load).await,
                Step::Idle(transport, connections) => {
                    scenario::idle(&mut bench, *transport, *connections, idle_hold).await
                }
            };
            announce(progress, &outcome);
            outcomes.push(outcome);
            // Let the server close the last scenario's connections before the next.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    outcomes
}

fn ramp_already_failed(outcomes: &[Outcome], server: &str, load: &Load) -> bool {
    outcomes
        .iter()
        .filter(|o| o.server == server && o.kind == Kind::Throughput && o.transport == load.transport)
        .any(|o| !sustained(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::MatrixName;

    #[test]
    fn the_scale_matrix_is_idle_then_fan_out_at_each_size_for_each_transport() {
        let planned: Vec<(Kind, usize, Transport)> = plan(&Matrix::of(MatrixName::Scale), &Transport::ALL)
            .iter()
            .map(|step| match step {
                Step::Deliver(load) => (load.kind, load.subscribers, load.transport),
                Step::Idle(transport, connections) => (Kind::Idle, *connections, *transport),
            })
            .collect();
        let sizes = [1000, 3000, 10_000, 19_000];
        let expected: Vec<(Kind, usize, Transport)> = [Kind::Idle, Kind::FanOut]
            .into_iter()
            .flat_map(|kind| sizes.into_iter().flat_map(move |n| Transport::ALL.map(|t| (kind, n, t))))
            .collect();
        assert_eq!(planned, expected);
    }
}
