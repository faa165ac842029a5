//! The network matrix's report: `network.md` (every table), `network-summary.md` (the
//! one in COMPARISON's text) and the plots against round-trip time.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::{CONSTRAINED_P99_US, profiles, sustained};
use crate::format::{checks, generated, ms_coarse as ms, provenance};
use crate::plot::{Series, chart, draw_lines};
use crate::record::{Kind, Outcome, Run, Transport};

/// The profiles' names in matrix order, for rows and plots.
fn profile_order(name: &str) -> usize {
    profiles().iter().position(|p| p.name == name).unwrap_or(usize::MAX)
}

/// The servers of the run, in the order they ran.
fn servers(run: &Run) -> Vec<String> {
    run.servers.iter().map(|s| s.name.clone()).collect()
}

/// `(profile, transport) → server → outcome` for one kind.
type Grid<'a> = BTreeMap<(usize, String, Transport), BTreeMap<String, &'a Outcome>>;

fn grid(run: &Run, kind: Kind) -> Grid<'_> {
    let mut grid = Grid::new();
    for o in run.outcomes.iter().filter(|o| o.kind == kind) {
        let Some(profile) = &o.link else { continue };
        grid.entry((profile_order(profile), profile.clone(), o.transport)).or_default().insert(o.server.clone(), o);
    }
    grid
}

/// A table with one row per profile and transport and one column per server.
fn table(md: &mut String, run: &Run, kind: Kind, heading: &str, cell: impl Fn(&Outcome) -> String) {
    let grid = grid(run, kind);
    if grid.is_empty() {
        return;
    }
    let servers = servers(run);
    let _ = writeln!(md, "### {heading}\n");
    let _ = writeln!(md, "| link | transport | {} |", servers.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "--:|".repeat(servers.len()));
    for ((_, profile, transport), by_server) in &grid {
        let cells: Vec<String> = servers
            .iter()
            .map(|server| by_server.get(server).map_or("–".to_owned(), |o| with_checks(o, cell(o))))
            .collect();
        let _ = writeln!(md, "| {profile} | {} | {} |", transport.name(), cells.join(" | "));
    }
    md.push('\n');
}

/// A cell, marked when the outcome lost, repeated or reordered anything.
fn with_checks(o: &Outcome, text: String) -> String {
    if o.clean() { text } else { format!("{text} ⚠ {}", checks(o)) }
}

/// The `p50 / p99` cell.
fn p50_p99(o: &Outcome) -> String {
    format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.p99))
}

/// The Markdown fragment of a network run.
pub(crate) fn tables(run: &Run, json: &str) -> String {
    let mut md = provenance(run, json, |_| true);
    let _ = writeln!(
        md,
        "Every subscriber connection crosses an emulated link (`emulated-link`: half the RTT each way, one RTT to \
         connect, bandwidth per direction with TCP/IP headers counted; no packet loss, no slow start). The publisher \
         of the fan-out, burst, reconnect and cold-start scenarios is on loopback, as a back end would be; a round \
         trip's POST crosses the link too. Times in ms. ⚠ marks a cell with losses, duplicates, disorder or errors \
         (lost/dup/ooo).\n"
    );
    let _ = writeln!(md, "Link profiles: {}.\n", profile_list());
    table(&mut md, run, Kind::FanOut, "Steady fan-out: p50 / p99 from publish to delivery", p50_p99);
    table(
        &mut md,
        run,
        Kind::Burst,
        "Burst: until each subscriber holds the last message, p50 / p99 (responses, chunks or frames per subscriber)",
        |o| {
            let done = o.completion_us.clone().unwrap_or_default();
            format!("{} / {} ({:.1})", ms(done.p50), ms(done.p99), o.batches_per_subscriber.unwrap_or(0.0))
        },
    );
    table(&mut md, run, Kind::RoundTrip, "Chat round trip: POST, then receive it, p50 / p99", p50_p99);
    table(&mut md, run, Kind::RoundTripInBand, "Chat round trip in-band on the WebSocket, p50 / p99", p50_p99);
    table(
        &mut md,
        run,
        Kind::Resume,
        "Reconnect and resume: from the publish during the cut to its arrival, p50 / max (SSE waits the server's `retry:`)",
        |o| format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.max)),
    );
    table(&mut md, run, Kind::ColdStart, "Cold start: from connect to the first message, p50 / max", |o| {
        format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.max))
    });
    constrained_table(&mut md, run);
    md
}

fn profile_list() -> String {
    profiles()
        .iter()
        .map(|p| if p.link.is_emulated() { format!("`{}` {}", p.name, p.link) } else { format!("`{}` none", p.name) })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One ramp's highest sustained step and its first failing one.
type Ramp<'a> = (Option<&'a Outcome>, Option<&'a Outcome>);

/// Per profile, transport and server: the highest sustained rate of 1 KiB messages and
/// the bytes on the wire per delivered message there.
fn constrained_table(md: &mut String, run: &Run) {
    let mut best: BTreeMap<(usize, String, Transport), BTreeMap<String, Ramp<'_>>> = BTreeMap::new();
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Constrained) {
        let Some(profile) = &o.link else { continue };
        let entry = best.entry((profile_order(profile), profile.clone(), o.transport)).or_default();
        let (sustained_best, first_failure) = entry.entry(o.server.clone()).or_default();
        if sustained(o) {
            if sustained_best.is_none_or(|b| b.target_rate < o.target_rate) {
                *sustained_best = Some(o);
            }
        } else if first_failure.is_none_or(|f| f.target_rate > o.target_rate) {
            *first_failure = Some(o);
        }
    }
    if best.is_empty() {
        return;
    }
    let servers = servers(run);
    let _ = writeln!(
        md,
        "### Constrained link: highest rate of 1 KiB messages with p99 under 1 s (bytes on the wire per delivery \
         there, both directions; what stopped the next step)\n"
    );
    let _ = writeln!(md, "| link | transport | {} |", servers.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "--:|".repeat(servers.len()));
    for ((_, profile, transport), by_server) in &best {
        let cells: Vec<String> = servers
            .iter()
            .map(|server| match by_server.get(server) {
                None => "–".to_owned(),
                Some((ok, stop)) => {
                    let rate = ok.map_or("none".to_owned(), |o| {
                        format!(
                            "{} msg/s ({:.0} B)",
                            o.target_rate,
                            o.bytes.down_per_delivery + o.bytes.up_per_delivery
                        )
                    });
                    let why = stop.map_or(" (the highest rate tried)".to_owned(), |o| {
                        format!("; {} msg/s: {}", o.target_rate, why_not(o))
                    });
                    format!("{rate}{why}")
                }
            })
            .collect();
        let _ = writeln!(md, "| {profile} | {} | {} |", transport.name(), cells.join(" | "));
    }
    md.push('\n');
}

fn why_not(o: &Outcome) -> String {
    if !o.clean() {
        format!("lost/dup/ooo {}", checks(o))
    } else if o.latency_us.p99 > CONSTRAINED_P99_US {
        format!("p99 {} ms", ms(o.latency_us.p99))
    } else {
        format!("publisher reached {:.1} msg/s", o.achieved_rate)
    }
}

/// The one table COMPARISON.md shows in its text: per link and transport, the p99 of
/// the steady fan-out and of the burst, and the p50 of a reconnect, for every server.
pub(crate) fn summary(run: &Run, json: &str) -> String {
    let servers = servers(run);
    let (fan_out, burst, resume) = (grid(run, Kind::FanOut), grid(run, Kind::Burst), grid(run, Kind::Resume));
    let mut md = generated(json);
    let _ = writeln!(
        md,
        "_Each cell: {} (`{json}`; all its tables are in the appendix). ms; ⚠ marks losses or errors._\n",
        servers.iter().map(|s| format!("**{s}**")).collect::<Vec<_>>().join(" · ")
    );
    let _ = writeln!(
        md,
        "| link | transport | steady fan-out p99 | burst of {}: p99 until the last is held | reconnect and resume p50 |",
        run.outcomes.iter().find(|o| o.kind == Kind::Burst).map_or(0, |o| o.published)
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|");
    let cells = |grid: &Grid<'_>, key: &(usize, String, Transport), value: &dyn Fn(&Outcome) -> u64| {
        servers
            .iter()
            .map(|server| {
                grid.get(key).and_then(|by| by.get(server)).map_or("–".to_owned(), |o| with_checks(o, ms(value(o))))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    for key in fan_out.keys() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            key.1,
            key.2.name(),
            cells(&fan_out, key, &|o| o.latency_us.p99),
            cells(&burst, key, &|o| o.completion_us.as_ref().map_or(0, |c| c.p99)),
            cells(&resume, key, &|o| o.latency_us.p50),
        );
    }
    md
}

/// Writes `network.md` (every table), `network-summary.md` (the one in COMPARISON's
/// text) and the plots of a network run into `dir`.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> std::io::Result<()> {
    std::fs::write(dir.join("network.md"), tables(run, json))?;
    std::fs::write(dir.join("network-summary.md"), summary(run, json))?;
    let plot = |result: Result<(), String>| result.map_err(std::io::Error::other);
    plot(rtt_plot(
        run,
        Kind::FanOut,
        &dir.join("network-fanout.svg"),
        "Steady fan-out: p99 latency vs round-trip time",
        |o| Some(o.latency_us.p99),
    ))?;
    plot(rtt_plot(
        run,
        Kind::Burst,
        &dir.join("network-burst.svg"),
        "Burst of messages: p99 time until the last one is held vs round-trip time",
        |o| o.completion_us.as_ref().map(|c| c.p99),
    ))?;
    Ok(())
}

/// The round trip of a profile with unlimited bandwidth, in ms; `None` for the
/// constrained ones, which a line against RTT would misread.
fn unlimited_rtt_ms(profile: &str) -> Option<f64> {
    let p = profiles().into_iter().find(|p| p.name == profile)?;
    (p.link.down.is_none() && p.link.up.is_none()).then_some(p.link.rtt.as_secs_f64() * 1000.0)
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
