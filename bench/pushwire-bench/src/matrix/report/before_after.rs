//! `before-after.md`: pushwire's figures in two runs side by side, what a change to the
//! server did (`--report-from AFTER --before BEFORE`).

use std::fmt::Write as _;

use crate::format::ms;
use crate::record::{Http, Kind, Outcome, Run};

/// Server CPU per delivery, in µs.
fn cpu_us(o: &Outcome) -> Option<f64> {
    o.server_cpu_us_per_1000_deliveries.map(|us| us / 1000.0)
}

/// pushwire's figures in two runs side by side: what a change to the server did.
/// Same scenarios only; nchan is left out (it did not change).
pub(crate) fn before_after(before: &Run, before_json: &str, after: &Run, after_json: &str) -> String {
    let mut md = format!(
        "_Before: `{before_json}` ({}). After: `{after_json}` ({}). Two runs on a shared machine: compare large \
         differences only._\n\n",
        before.date, after.date
    );
    md.push_str("| scenario | transport | subscribers | p50 before → after (ms) | p99 before → after (ms) | server CPU µs per delivery before → after | memory per idle connection before → after (B) |\n");
    md.push_str("|---|---|--:|--:|--:|--:|--:|\n");
    for a in after.outcomes.iter().filter(|o| o.server == "pushwire" && matches!(o.kind, Kind::FanOut | Kind::Idle)) {
        let Some(b) = before.outcomes.iter().find(|b| {
            b.server == a.server
                && b.kind == a.kind
                && b.transport == a.transport
                && b.subscribers == a.subscribers
                && b.http == a.http
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
        // A scenario whose publish rate changed between the runs says so, and one
        // over another HTTP setting than cleartext HTTP/1.1 names it.
        let mut scenario = if a.target_rate == b.target_rate {
            a.kind.name().to_owned()
        } else {
            format!("{} ({} → {} msg/s)", a.kind.name(), b.target_rate, a.target_rate)
        };
        if a.http != Http::H1 {
            scenario = format!("{scenario}, {}", a.http.label());
        }
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
