//! The network run's plots: against round-trip time (emulated runs), and the latency
//! CDFs per loss profile (packet runs), where head-of-line blocking shows as a tail a
//! p99 alone hides.

use std::path::Path;

use plotters::prelude::*;

use super::profile_order;
use crate::network::profiles::profile;
use crate::plot::{CdfLine, Series, cdf_plot, chart, colour, draw_lines};
use crate::record::{Kind, Outcome, Run};

/// `network-fanout.svg` and `network-burst.svg`: p99 against the round trip of the
/// profiles with unlimited bandwidth.
pub(super) fn against_rtt(run: &Run, dir: &Path) -> Result<(), String> {
    rtt_plot(
        run,
        Kind::FanOut,
        &dir.join("network-fanout.svg"),
        "Steady fan-out: p99 latency vs round-trip time",
        |o| Some(o.latency_us.p99),
    )?;
    rtt_plot(
        run,
        Kind::Burst,
        &dir.join("network-burst.svg"),
        "Burst of messages: p99 time until the last one is held vs round-trip time",
        |o| o.completion_us.as_ref().map(|c| c.p99),
    )
}

/// The round trip of a profile with unlimited bandwidth, in ms; `None` for the
/// constrained ones, which a line against RTT would misread.
fn unlimited_rtt_ms(name: &str) -> Option<f64> {
    let p = profile(name)?;
    (!p.limited()).then_some(p.rtt().as_secs_f64() * 1000.0)
}

fn rtt_plot(
    run: &Run,
    kind: Kind,
    path: &Path,
    title: &str,
    value_us: impl Fn(&Outcome) -> Option<u64>,
) -> Result<(), String> {
    let mut series = Series::new();
    for o in run.outcomes.iter().filter(|o| o.kind == kind) {
        let (Some(rtt), Some(us)) = (o.link.as_deref().and_then(unlimited_rtt_ms), value_us(o)) else { continue };
        series.entry((o.server.clone(), o.transport)).or_default().push((rtt, us as f64 / 1000.0));
    }
    for data in series.values_mut() {
        data.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let x_max = series.values().flatten().map(|p| p.0).fold(1.0f64, f64::max) * 1.05;
    // Log scale: nchan's long-poll falls behind by orders of magnitude, which a linear
    // axis would flatten the others against.
    let y_max = series.values().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 2.0;
    let y_min = series.values().flatten().map(|p| p.1).fold(f64::MAX, f64::min).clamp(0.01, 1.0) * 0.5;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    let mut chart = chart(&root, title, 45, 0f64..x_max, (y_min..y_max).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("round-trip time of the link (ms)")
        .y_desc("ms (log scale)")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    draw_lines(&mut chart, &series)?;
    root.present().map_err(|e| e.to_string())
}

/// `loss-cdf-<profile>.svg` per packet profile: the steady fan-out's latency
/// distribution, a line per server and transport as messages arrived, and dashed for
/// the unordered transport as they could be shown in order.
pub(super) fn cdfs(run: &Run, dir: &Path) -> Result<(), String> {
    let mut names: Vec<&str> = run.outcomes.iter().filter_map(|o| o.link.as_deref()).collect();
    names.sort_by_key(|name| profile_order(name));
    names.dedup();
    for name in names.into_iter().filter(|name| profile(name).is_some_and(|p| p.is_packet())) {
        let mut lines = Vec::new();
        for o in run.outcomes.iter().filter(|o| o.kind == Kind::FanOut && o.link.as_deref() == Some(name)) {
            let label = format!("{} {}", o.server, o.transport.name());
            lines.push(line(&label, o, &o.latency_us.cdf, false));
            if let Some(in_order) = &o.in_order_us {
                lines.push(line(&format!("{label}, in order"), o, &in_order.cdf, true));
            }
        }
        lines.retain(|line| !line.points.is_empty());
        if lines.is_empty() {
            continue;
        }
        let title = format!("Steady fan-out over {name}: share of messages delivered within a time");
        cdf_plot(&dir.join(format!("loss-cdf-{name}.svg")), &title, &lines)?;
    }
    Ok(())
}

/// One outcome's CDF points, in ms.
fn line(label: &str, o: &Outcome, cdf: &[(f64, u64)], dashed: bool) -> CdfLine {
    let points = cdf.iter().map(|&(quantile, us)| (us as f64 / 1000.0, quantile)).collect();
    CdfLine { label: label.to_owned(), colour: colour(&o.server, o.transport), points, dashed }
}
