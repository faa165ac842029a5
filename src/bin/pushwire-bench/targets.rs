//! The performance targets (issue 7) judged from a run, and the before/after table
//! that shows what a change to the server did. Both are generated from run records,
//! so COMPARISON.md can show them without a number typed by hand.

use std::fmt::Write as _;

use crate::clients::Transport;
use crate::report::{Run, ms};
use crate::scenario::{Kind, Outcome};

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

/// The targets table: each target, pushwire's figure, nchan's where it is the bar,
/// and whether the target is met. Empty when the run lacks the scenarios.
pub fn table(run: &Run) -> String {
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
    // At a fixed publish rate both servers deliver what is published; the figure only
    // says something where one of them could not keep up.
    for transport in Transport::ALL {
        if let [Some(p), Some(n)] = pair(run, Kind::FanOut, transport, 1_000) {
            let judged = if p.clean() && n.clean() && p.delivered == p.expected && n.delivered == n.expected {
                "both delivered every message at the fixed rate: equal"
            } else {
                verdict(p.clean() && p.delivered_per_s >= n.delivered_per_s)
            };
            rows.push(format!(
                "| delivered msg/s ≥ nchan's | {} | 1000 | {:.0} | {:.0} | {judged} |",
                transport.name(),
                p.delivered_per_s,
                n.delivered_per_s,
            ));
        }
    }
    for transport in Transport::ALL {
        let limit = if transport == Transport::LongPoll { 10.0 } else { 2.5 };
        if let [Some(p), n] = pair(run, Kind::FanOut, transport, 10_000)
            && let Some(cpu) = cpu_us(p)
        {
            let nchan = n.and_then(cpu_us).map_or("–".to_owned(), |c| format!("{c:.1} µs"));
            rows.push(format!(
                "| server CPU per delivery ≤ {limit} µs | {} | 10000 | {cpu:.1} µs | {nchan} | {} |",
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
    let mut md = String::from("#### Performance targets (issue 7), judged from this run\n\n");
    md.push_str("| target | transport | subscribers or connections | pushwire | nchan | verdict |\n");
    md.push_str("|---|---|--:|--:|--:|---|\n");
    for row in rows {
        md.push_str(&row);
        md.push('\n');
    }
    md.push('\n');
    md
}

/// pushwire's figures in two runs side by side: what a change to the server did.
/// Same scenarios only; nchan is left out (it did not change).
pub fn before_after(before: &Run, before_json: &str, after: &Run, after_json: &str) -> String {
    let mut md = format!(
        "_Before: `{before_json}` ({}). After: `{after_json}` ({}). Two runs on a shared machine: compare large \
         differences only._\n\n",
        before.date, after.date
    );
    md.push_str("| scenario | transport | subscribers | p50 before → after (ms) | p99 before → after (ms) | server CPU µs per delivery before → after | memory per idle connection before → after (B) |\n");
    md.push_str("|---|---|--:|--:|--:|--:|--:|\n");
    for a in after.outcomes.iter().filter(|o| o.server == "pushwire" && matches!(o.kind, Kind::FanOut | Kind::Idle)) {
        let Some(b) = before.outcomes.iter().find(|b| {
            b.server == a.server && b.kind == a.kind && b.transport == a.transport && b.subscribers == a.subscribers
        }) else {
            continue;
        };
        let cpu = match (cpu_us(b), cpu_us(a)) {
            (Some(b), Some(a)) if a.is_finite() && b.is_finite() && a > 0.0 => format!("{b:.1} → {a:.1}"),
            _ => "–".to_owned(),
        };
        let memory = match (&b.memory, &a.memory) {
            (Some(b), Some(a)) => format!("{:.0} → {:.0}", b.rss_per_connection_bytes, a.rss_per_connection_bytes),
            _ => "–".to_owned(),
        };
        let latency = |o: &Outcome, p99: bool| {
            if o.kind == Kind::Idle {
                "–".to_owned()
            } else {
                ms(if p99 { o.latency_us.p99 } else { o.latency_us.p50 })
            }
        };
        // A scenario whose publish rate changed between the runs says so.
        let scenario = if a.target_rate == b.target_rate {
            a.kind.name().to_owned()
        } else {
            format!("{} ({} → {} msg/s)", a.kind.name(), b.target_rate, a.target_rate)
        };
        let _ = writeln!(
            md,
            "| {scenario} | {} | {} | {} → {} | {} → {} | {cpu} | {memory} |",
            a.transport.name(),
            a.subscribers,
            latency(b, false),
            latency(a, false),
            latency(b, true),
            latency(a, true),
        );
    }
    md
}
