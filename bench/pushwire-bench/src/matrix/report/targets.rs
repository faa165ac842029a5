//! The performance targets of the first engineering round judged from a run, generated
//! from the run record so COMPARISON.md can show them without a number typed by hand.

use crate::format::{ms, thousands};
use crate::matrix::ramp::{Ramp, ramps, why_not_sustained};
use crate::record::{Kind, Outcome, Run, Transport};

/// The throughput target compares delivered messages per second at this many subscribers.
const THROUGHPUT_SUBSCRIBERS: usize = 1000;
/// The same, as the table writes it.
const THROUGHPUT_SUBSCRIBERS_TEXT: &str = "1,000";

/// The pushwire and nchan outcomes of one scenario in one run.
fn pair(run: &Run, kind: Kind, transport: Transport, subscribers: usize) -> [Option<&Outcome>; 2] {
    ["pushwire", "nchan"].map(|server| {
        run.outcomes
            .iter()
            .find(|o| o.server == server && o.kind == kind && o.transport == transport && o.subscribers == subscribers)
    })
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "**not met**" }
}

/// Server CPU per delivery, in µs.
fn cpu_us(o: &Outcome) -> Option<f64> {
    o.server_cpu_us_per_1000_deliveries.map(|us| us / 1000.0)
}

/// Server CPU per delivery with its user and kernel parts, when the run has them:
/// `11.1 µs (user 2.3, kernel 8.8)`.
fn cpu_cell(o: &Outcome) -> Option<String> {
    let total = cpu_us(o)?;
    Some(match (o.server_cpu_user_us_per_1000_deliveries, o.server_cpu_system_us_per_1000_deliveries) {
        (Some(user), Some(system)) => {
            format!("{total:.1} µs (user {:.1}, kernel {:.1})", user / 1000.0, system / 1000.0)
        }
        _ => format!("{total:.1} µs"),
    })
}

/// One ramp's cell in the throughput row: its highest sustained step, in messages
/// published and deliveries per second, and why the next step failed.
fn ramp_cell(ramp: &Ramp) -> String {
    let best = ramp.best.map_or("none sustained".to_owned(), |o| {
        format!("{} msg/s published, {} deliveries/s", o.target_rate, thousands(o.delivered_per_s))
    });
    match ramp.stop {
        Some(stop) => format!("{best}; stopped at {} msg/s ({})", stop.target_rate, why_not_sustained(stop)),
        None => format!("{best}; ramp ended without stopping"),
    }
}

/// Target 2 judged from the ramps at [`THROUGHPUT_SUBSCRIBERS`]: pushwire's highest
/// sustained step against nchan's. Steps are the ramp's resolution, so equal steps
/// are reported as such rather than as a win or a loss.
fn throughput_verdict(pushwire: &Ramp, nchan: &Ramp) -> String {
    let rate = |ramp: &Ramp| ramp.best.map_or(0.0, |o| o.target_rate);
    let (p, n) = (rate(pushwire), rate(nchan));
    if p > n {
        verdict(true).to_owned()
    } else if p < n {
        verdict(false).to_owned()
    } else if p == 0.0 {
        "neither sustained the lowest step: not judged".to_owned()
    } else if pushwire.stop.is_none() && nchan.stop.is_none() {
        format!("both sustained the ramp's top rate ({p} msg/s): met within the ramp's range")
    } else {
        format!("same step ({p} msg/s): met within the ramp's resolution")
    }
}

/// The targets table: each target, pushwire's figure, nchan's where it is the bar,
/// and whether the target is met. Empty when the run lacks the scenarios.
pub(crate) fn table(run: &Run) -> String {
    let mut rows = Vec::new();
    for subscribers in [1_000, 10_000] {
        for transport in Transport::ALL {
            if let [Some(p), Some(n)] = pair(run, Kind::FanOut, transport, subscribers) {
                let met = p.clean() && p.latency_us.p99 <= n.latency_us.p99;
                rows.push(format!(
                    "| fan-out p99 ≤ nchan's | {} | {subscribers} | {} ms | {} ms | {} |",
                    transport.name(),
                    ms(p.latency_us.p99),
                    ms(n.latency_us.p99),
                    verdict(met)
                ));
            }
        }
    }
    let ramps = ramps(run);
    for transport in Transport::ALL {
        let ramp = |server: &str| {
            ramps.get(&(server.to_owned(), transport)).filter(|r| r.steps[0].subscribers == THROUGHPUT_SUBSCRIBERS)
        };
        if let (Some(p), Some(n)) = (ramp("pushwire"), ramp("nchan")) {
            rows.push(format!(
                "| delivered messages/s ≥ nchan's (highest sustained step of the throughput ramp) | {} | \
                 {THROUGHPUT_SUBSCRIBERS} | {} | {} | {} |",
                transport.name(),
                ramp_cell(p),
                ramp_cell(n),
                throughput_verdict(p, n),
            ));
        } else if let [Some(p), Some(n)] = pair(run, Kind::FanOut, transport, THROUGHPUT_SUBSCRIBERS) {
            // Runs from before the ramp ran at 1,000 subscribers: at the fan-out's fixed
            // rate both servers deliver what is published, which says nothing about
            // either's ceiling unless one of them could not keep up.
            let judged = if p.clean() && n.clean() && p.delivered == p.expected && n.delivered == n.expected {
                "not judged: both delivered every message at the fixed rate".to_owned()
            } else {
                verdict(p.clean() && p.delivered_per_s >= n.delivered_per_s).to_owned()
            };
            rows.push(format!(
                "| delivered messages/s ≥ nchan's (no ramp at {THROUGHPUT_SUBSCRIBERS_TEXT} subscribers in this run: \
                 fixed-rate fan-out, {} msg/s published) | {} | {THROUGHPUT_SUBSCRIBERS} | {} deliveries/s | {} \
                 deliveries/s | {judged} |",
                p.target_rate,
                transport.name(),
                thousands(p.delivered_per_s),
                thousands(n.delivered_per_s),
            ));
        }
    }
    for transport in Transport::ALL {
        let limit = if transport == Transport::LongPoll { 10.0 } else { 2.5 };
        if let [Some(p), n] = pair(run, Kind::FanOut, transport, 10_000)
            && let (Some(cpu), Some(cell)) = (cpu_us(p), cpu_cell(p))
        {
            let nchan = n.and_then(cpu_cell).unwrap_or_else(|| "–".to_owned());
            rows.push(format!(
                "| server CPU per delivery ≤ {limit} µs (user + kernel) | {} | 10000 | {cell} | {nchan} | {} |",
                transport.name(),
                verdict(cpu <= limit)
            ));
        }
    }
    for (transport, limit_kib) in [(Transport::WebSocket, 8.0), (Transport::Sse, 6.0), (Transport::LongPoll, 6.0)] {
        let idle =
            run.outcomes.iter().find(|o| o.server == "pushwire" && o.kind == Kind::Idle && o.transport == transport);
        let nchan =
            run.outcomes.iter().find(|o| o.server == "nchan" && o.kind == Kind::Idle && o.transport == transport);
        if let Some(memory) = idle.and_then(|o| o.memory.as_ref()) {
            let kib = memory.rss_per_connection_bytes / 1024.0;
            let nchan = nchan
                .and_then(|o| o.memory.as_ref())
                .map_or("–".to_owned(), |m| format!("{:.1} KiB", m.rss_per_connection_bytes / 1024.0));
            rows.push(format!(
                "| memory per idle connection ≤ {limit_kib} KiB | {} | {} | {kib:.1} KiB | {nchan} | {} |",
                transport.name(),
                idle.map_or(0, |o| o.connected),
                verdict(kib <= limit_kib)
            ));
        }
    }
    for transport in Transport::ALL {
        if let [Some(p), _] = pair(run, Kind::FanOut, transport, 10_000) {
            let met = p.clean() && p.connected == 10_000 && p.latency_us.p99 < 100_000;
            rows.push(format!(
                "| 10,000 subscribers, 0 lost, p99 < 100 ms at {} msg/s | {} | {} | p99 {} ms, lost {} | – | {} |",
                p.target_rate,
                transport.name(),
                p.connected,
                ms(p.latency_us.p99),
                p.lost,
                verdict(met)
            ));
        }
    }
    if rows.is_empty() {
        return String::new();
    }
    let mut md = String::from("### Performance targets, judged from this run\n\n");
    md.push_str("| target | transport | subscribers or connections | pushwire | nchan | verdict |\n");
    md.push_str("|---|---|--:|--:|--:|---|\n");
    for row in rows {
        md.push_str(&row);
        md.push('\n');
    }
    md.push('\n');
    md
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Machine;
    use crate::scenario::{Load, empty_outcome};

    fn run(outcomes: Vec<Outcome>) -> Run {
        let machine = Machine {
            cpu_model: "test".into(),
            cores: 2,
            kernel: "test".into(),
            memory_mib: 0,
            rustc: "test".into(),
            load_average_before: String::new(),
            load_average_after: String::new(),
        };
        Run {
            tool: "test".into(),
            date: "2026-01-01T00:00:00Z".into(),
            command: "test".into(),
            matrix: "test".into(),
            machine,
            client_worker_threads: 2,
            client_nofile_limit: 0,
            servers: Vec::new(),
            outcomes,
            wall_time_s: 0.0,
            http: Vec::new(),
        }
    }

    /// A WebSocket ramp at 1,000 subscribers whose steps up to `sustained_up_to`
    /// pass and whose next one has p99 over 100 ms.
    fn ramp(server: &str, rates: &[f64], sustained_up_to: f64) -> Vec<Outcome> {
        rates
            .iter()
            .map(|&rate| {
                let load = Load {
                    kind: Kind::Throughput,
                    transport: Transport::WebSocket,
                    subscribers: 1000,
                    rate,
                    messages: (rate * 2.0) as u64,
                    payload_bytes: 64,
                };
                let mut o = empty_outcome(server, &load);
                o.connected = 1000;
                o.published = load.messages;
                o.achieved_rate = rate;
                o.delivered = load.messages * 1000;
                o.expected = o.delivered;
                o.delivered_per_s = rate * 1000.0;
                o.latency_us.p99 = if rate <= sustained_up_to { 5_000 } else { 250_000 };
                o
            })
            .collect()
    }

    fn throughput_row(outcomes: Vec<Outcome>) -> String {
        let table = table(&run(outcomes));
        table.lines().find(|l| l.contains("throughput ramp")).expect("a throughput row").to_owned()
    }

    #[test]
    fn a_higher_sustained_step_meets_the_throughput_target_and_the_row_gives_both_units() {
        let rates = [100.0, 140.0, 200.0];
        let mut outcomes = ramp("pushwire", &rates, 140.0);
        outcomes.extend(ramp("nchan", &rates, 100.0));
        let row = throughput_row(outcomes);
        assert!(
            row.contains("| 140 msg/s published, 140,000 deliveries/s; stopped at 200 msg/s (p99 250.00 ms) |"),
            "{row}"
        );
        assert!(row.ends_with("| met |"), "{row}");
    }

    #[test]
    fn the_same_step_is_met_only_within_the_ramps_resolution() {
        let rates = [100.0, 140.0, 200.0];
        let mut outcomes = ramp("pushwire", &rates, 140.0);
        outcomes.extend(ramp("nchan", &rates, 140.0));
        assert!(throughput_row(outcomes).ends_with("| same step (140 msg/s): met within the ramp's resolution |"));
        let mut outcomes = ramp("pushwire", &rates, 100.0);
        outcomes.extend(ramp("nchan", &rates, 140.0));
        assert!(throughput_row(outcomes).ends_with("| **not met** |"));
    }

    #[test]
    fn cpu_per_delivery_shows_user_and_kernel_time_when_recorded() {
        let load = Load {
            kind: Kind::FanOut,
            transport: Transport::Sse,
            subscribers: 10_000,
            rate: 1.0,
            messages: 10,
            payload_bytes: 64,
        };
        let mut split = empty_outcome("pushwire", &load);
        split.server_cpu_us_per_1000_deliveries = Some(11_100.0);
        split.server_cpu_user_us_per_1000_deliveries = Some(2_300.0);
        split.server_cpu_system_us_per_1000_deliveries = Some(8_800.0);
        let mut total_only = empty_outcome("nchan", &load);
        total_only.server_cpu_us_per_1000_deliveries = Some(9_000.0);
        let table = table(&run(vec![split, total_only]));
        let row = table.lines().find(|l| l.contains("server CPU per delivery")).expect("a CPU row");
        assert_eq!(
            row,
            "| server CPU per delivery ≤ 2.5 µs (user + kernel) | sse | 10000 | 11.1 µs (user 2.3, kernel 8.8) | 9.0 µs \
             | **not met** |"
        );
    }
}
