//! Running the loopback matrix: the plan of steps, and each step on every server.

use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::Matrix;
use super::ramp::sustained;
use crate::progress::announce;
use crate::record::{Http, Kind, Outcome, Transport};
use crate::scenario::{self, Bench, Load};
use crate::servers::Server;

/// One entry of the plan, run for every server over one HTTP setting.
pub(crate) enum Step {
    Deliver(Load, Http),
    /// This many connections of one transport.
    Idle(Transport, usize, Http),
}

impl Step {
    fn transport(&self) -> Transport {
        match self {
            Step::Deliver(load, _) => load.transport,
            Step::Idle(transport, ..) => *transport,
        }
    }

    fn http(&self) -> Http {
        match self {
            Step::Deliver(_, http) | Step::Idle(.., http) => *http,
        }
    }

    /// Whether the step passes the `--kinds` and `--subscribers` filters (empty: all).
    pub(crate) fn chosen(&self, kinds: &[Kind], subscribers: &[usize]) -> bool {
        let (kind, count) = match self {
            Step::Deliver(load, _) => (load.kind, load.subscribers),
            Step::Idle(_, connections, _) => (Kind::Idle, *connections),
        };
        (kinds.is_empty() || kinds.contains(&kind)) && (subscribers.is_empty() || subscribers.contains(&count))
    }
}

/// The matrix as a list of steps. Idle cost goes first, on freshly started servers;
/// each step runs on every server before the next, so drift in the machine's load
/// affects both sides of a comparison alike. The whole matrix runs over the first of
/// `https` (HTTP settings); fan-out, idle and round trips, the figures that tell the
/// settings apart (CPU and bytes per delivery, latency, memory per subscription), over
/// each of the others too, each size's settings one after another. WebTransport is
/// HTTP/3 whatever the setting, so it runs once, with the first.
pub(crate) fn plan(matrix: &Matrix, transports: &[Transport], https: &[Http]) -> Vec<Step> {
    let main = https.first().copied().unwrap_or_default();
    let over = |http: Http| transports.iter().copied().filter(move |t| http == main || !t.quic());
    let mut steps = Vec::new();
    for &connections in &matrix.idle_connections {
        for &http in https {
            for transport in over(http) {
                steps.push(Step::Idle(transport, connections, http));
            }
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
        for &http in https {
            for transport in over(http) {
                steps.push(Step::Deliver(load(Kind::FanOut, transport, subscribers, rate, messages, 64), http));
            }
        }
    }
    for &size in &matrix.payload_sizes {
        let (subscribers, rate, messages) = matrix.payload_load;
        for &transport in transports {
            steps.push(Step::Deliver(load(Kind::Payload, transport, subscribers, rate, messages, size), main));
        }
    }
    for &http in https.iter().filter(|_| matrix.round_trips > 0) {
        for transport in over(http) {
            steps.push(Step::Deliver(load(Kind::RoundTrip, transport, 1, 0.0, matrix.round_trips, 64), http));
        }
        for transport in over(http).filter(|transport| transport.publishes_in_band()) {
            let in_band = load(Kind::RoundTripInBand, transport, 1, 0.0, matrix.round_trips, 64);
            steps.push(Step::Deliver(in_band, http));
        }
    }
    for &transport in transports {
        for &rate in &matrix.ramp_rates {
            let messages = (rate * matrix.ramp_step.as_secs_f64()).ceil() as u64;
            let step = load(Kind::Throughput, transport, matrix.ramp_subscribers, rate, messages, 64);
            steps.push(Step::Deliver(step, main));
        }
    }
    steps
}

/// Runs `steps` on every server that serves the step's transport over its HTTP
/// setting, until `deadline`; idle steps hold their connections for `idle_hold`.
/// Returns the outcomes in the order they ran.
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
            // What a server cannot serve (nchan's WebSocket over HTTP/2) the tables
            // mark as such; a server started without HTTPS is not measured over it.
            if server.facts.protocol.serves(step.transport(), step.http()).is_err()
                || server.addr_for(step.http()).is_none()
            {
                continue;
            }
            if Instant::now() >= deadline {
                progress.println(format!("time budget of {max_minutes} min spent; skipping the rest"));
                break;
            }
            // A ramp stops at its first failing step.
            if let Step::Deliver(load, http) = step
                && load.kind == Kind::Throughput
                && ramp_already_failed(&outcomes, &server.facts.name, load, *http)
            {
                continue;
            }
            let http = step.http();
            let mut bench =
                Bench { server, subscribe_on: None, also_measured: &[], progress, deadline, link: None, http };
            let outcome = match step {
                Step::Deliver(load, _) => scenario::deliver(&mut bench, load).await,
                Step::Idle(transport, connections, _) => {
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

fn ramp_already_failed(outcomes: &[Outcome], server: &str, load: &Load, http: Http) -> bool {
    outcomes
        .iter()
        .filter(|o| o.server == server && o.kind == Kind::Throughput && o.transport == load.transport)
        .filter(|o| o.http == http)
        .any(|o| !sustained(o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::MatrixName;

    #[test]
    fn the_scale_matrix_is_idle_then_fan_out_at_each_size_for_each_transport() {
        let planned: Vec<(Kind, usize, Transport)> = plan(&Matrix::of(MatrixName::Scale), &Transport::ALL, &[Http::H1])
            .iter()
            .map(|step| match step {
                Step::Deliver(load, _) => (load.kind, load.subscribers, load.transport),
                Step::Idle(transport, connections, _) => (Kind::Idle, *connections, *transport),
            })
            .collect();
        let sizes = [1000, 3000, 10_000, 19_000];
        let expected: Vec<(Kind, usize, Transport)> = [Kind::Idle, Kind::FanOut]
            .into_iter()
            .flat_map(|kind| sizes.into_iter().flat_map(move |n| Transport::ALL.map(|t| (kind, n, t))))
            .collect();
        assert_eq!(planned, expected);
    }

    #[test]
    fn the_whole_matrix_runs_over_the_first_http_setting_and_the_deciding_scenarios_over_every_one() {
        let https = [Http::H1, Http::H2Tls { per_connection: 100 }];
        let steps = plan(&Matrix::of(MatrixName::Quick), &Transport::ALL, &https);
        let kinds_over = |http: Http| -> std::collections::BTreeSet<String> {
            steps
                .iter()
                .filter(|step| step.http() == http)
                .map(|step| match step {
                    Step::Deliver(load, _) => load.kind.name().to_owned(),
                    Step::Idle(..) => Kind::Idle.name().to_owned(),
                })
                .collect()
        };
        assert_eq!(
            kinds_over(https[0]).into_iter().collect::<Vec<_>>(),
            ["fan-out", "idle", "in-band round trip", "payload", "round trip", "throughput"]
        );
        assert_eq!(
            kinds_over(https[1]).into_iter().collect::<Vec<_>>(),
            ["fan-out", "idle", "in-band round trip", "round trip"]
        );
        let h1_only = plan(&Matrix::of(MatrixName::Quick), &Transport::ALL, &[Http::H1]);
        assert_eq!(h1_only.len(), steps.iter().filter(|step| step.http() == Http::H1).count());
    }
}
