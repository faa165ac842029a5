//! The loopback matrix's plots: p99 against subscribers and against publish rate, idle
//! memory and bytes per message.

use std::path::Path;

use crate::plot::{Series, bar_plot, bars, line_plot};
use crate::record::{Kind, Run};

/// Writes `fanout-latency.svg`, `throughput.svg`, `idle-memory.svg` and
/// `bytes-per-message.svg` into `dir`.
pub(crate) fn write(run: &Run, dir: &Path) -> Result<(), String> {
    latency_plot(run, &dir.join("fanout-latency.svg"))?;
    throughput_plot(run, &dir.join("throughput.svg"))?;
    bar_plot(
        &dir.join("idle-memory.svg"),
        "Server memory per idle connection (RSS growth / connections)",
        "bytes",
        &bars(run, Kind::Idle, |o| o.memory.as_ref().map(|m| m.rss_per_connection_bytes)),
    )?;
    bar_plot(
        &dir.join("bytes-per-message.svg"),
        "Bytes received per delivered message (64 B payload, fan-out)",
        "bytes",
        &bars(run, Kind::Payload, |o| (o.payload_bytes == 64).then_some(o.bytes.down_per_delivery)),
    )
}

fn latency_plot(run: &Run, path: &Path) -> Result<(), String> {
    let mut series = Series::new();
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::FanOut && o.latency_us.samples > 0) {
        let point = (o.subscribers as f64, o.latency_us.p99 as f64 / 1000.0);
        series.entry((o.server.clone(), o.transport)).or_default().push(point);
    }
    line_plot(path, "Fan-out: p99 latency vs subscribers", "subscribers (log scale)", &series)
}

fn throughput_plot(run: &Run, path: &Path) -> Result<(), String> {
    let mut series = Series::new();
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Throughput && o.latency_us.samples > 0) {
        let point = (o.target_rate, o.latency_us.p99 as f64 / 1000.0);
        series.entry((o.server.clone(), o.transport)).or_default().push(point);
    }
    line_plot(
        path,
        "Throughput ramp: p99 latency vs publish rate",
        "messages published per second (log scale)",
        &series,
    )
}
