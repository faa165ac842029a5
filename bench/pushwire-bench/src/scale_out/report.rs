//! The scale-out fragment of the report, `scale-out.md`, which `bench/update-comparison`
//! pastes into COMPARISON.md.

use std::fmt::Write as _;
use std::path::Path;

use super::{IN_MEMORY, THROUGH_REDIS};
use crate::format::{checks, connected, errors, opt, percentiles, provenance, ratio};
use crate::record::{Kind, Outcome, Run};

/// Writes `scale-out.md` into `dir` when `run` has scale-out outcomes.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> std::io::Result<()> {
    match tables(run, json) {
        Some(md) => std::fs::write(dir.join("scale-out.md"), md),
        None => Ok(()),
    }
}

/// The scale-out fragment of the report (`scale-out.md`), or `None` when the run has
/// no scale-out outcomes: provenance, the figures of both setups, and their ratios.
fn tables(run: &Run, json: &str) -> Option<String> {
    let measured: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.kind == Kind::ScaleOut).collect();
    if measured.is_empty() {
        return None;
    }
    let mut md = provenance(run, json, |o| o.kind == Kind::ScaleOut);
    let _ = writeln!(
        md,
        "Fan-out of 64-byte messages at a steady rate. **in-memory**: publisher and subscribers on one pushwire \
         with the in-memory bus. **Redis, A → B**: the publisher posts to instance A, the subscribers are on \
         instance B; both share the conversation through one redis-server (`--bus`), so each message crosses A → \
         Redis → B. Latencies in ms, publisher send → subscriber receive on one clock. `lost/dup/ooo` are checked \
         per subscriber (⚠ counts gaps and connection or publish errors). Server CPU is from /proc: the one \
         instance, or A + B + redis-server together. `other load` is the share of both cores busy with neither \
         the servers nor the load generator. The ratios divide the Redis row by the in-memory row; \
         `server CPU added per message` is the difference of server CPU per published message, the cost of the \
         Redis hop itself (A's `XADD`, both instances' readers, redis-server).\n"
    );
    let _ = writeln!(md, "### Scale-out: cross-instance through Redis vs in-memory\n");
    let _ = writeln!(
        md,
        "| setup | transport | subscribers | msg/s | p50 | p90 | p99 | p99.9 | max | delivered/s | lost/dup/ooo | \
         server CPU ms per 1,000 deliveries | other load |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in &measured {
        let setup = if o.server == THROUGH_REDIS { "Redis, A → B" } else { "in-memory" };
        let _ = writeln!(
            md,
            "| {setup} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            o.transport.name(),
            connected(o),
            o.target_rate,
            percentiles(&o.latency_us),
            o.delivered_per_s,
            checks(o),
            opt(o.server_cpu_us_per_1000_deliveries.map(|us| us / 1000.0), 2),
            opt(o.other_load.map(|l| l * 100.0), 0) + "%",
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Cross-instance ÷ in-memory (same run; above 1 means crossing Redis costs more)\n");
    let _ = writeln!(
        md,
        "| transport | subscribers | p50 | p90 | p99 | max | p50 added (ms) | delivered/s | server CPU per delivery | \
         server CPU added per message (ms) | both clean |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for across in measured.iter().filter(|o| o.server == THROUGH_REDIS) {
        let Some(local) = measured
            .iter()
            .find(|o| o.server == IN_MEMORY && o.transport == across.transport && o.subscribers == across.subscribers)
        else {
            continue;
        };
        let cpu = match (across.server_cpu_us_per_1000_deliveries, local.server_cpu_us_per_1000_deliveries) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "–".to_owned(),
        };
        // The Redis hop's own cost (XADD on A, XREAD on both instances' readers) is per
        // message, whatever the number of subscribers; per delivery it thins out.
        let per_message = |o: &Outcome| Some(o.server_cpu_ms? / (o.published > 0).then_some(o.published as f64)?);
        let cpu_added = match (per_message(across), per_message(local)) {
            (Some(a), Some(b)) => format!("{:+.2}", a - b),
            _ => "–".to_owned(),
        };
        let (a, b) = (&across.latency_us, &local.latency_us);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:+.2} | {} | {cpu} | {cpu_added} | {} |",
            across.transport.name(),
            across.subscribers,
            ratio(a.p50 as f64, b.p50 as f64),
            ratio(a.p90 as f64, b.p90 as f64),
            ratio(a.p99 as f64, b.p99 as f64),
            ratio(a.max as f64, b.max as f64),
            (a.p50 as f64 - b.p50 as f64) / 1000.0,
            ratio(across.delivered_per_s, local.delivered_per_s),
            if across.clean() && local.clean() { "yes" } else { "**no**" },
        );
    }
    md.push('\n');
    let notes: Vec<String> = measured
        .iter()
        .filter_map(|o| {
            let note = o.note.as_ref()?;
            Some(format!("{} {} ×{}: {note}", o.server, o.transport.name(), o.subscribers))
        })
        .collect();
    errors(&mut md, "Errors reported by the scale-out run", &notes);
    Some(md)
}
