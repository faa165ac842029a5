//! The network matrix's tables, one per scenario with a row per link profile and
//! transport and a column per server, and the summary that COMPARISON's text shows.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use super::{Grid, Marks, grid, packet_run, profile_order, servers};
use crate::format::{checks, generated, ms_coarse as ms, provenance};
use crate::network::profiles::profiles;
use crate::network::{CONSTRAINED_P99_US, sustained};
use crate::record::{Kind, Outcome, Run, Transport};

/// A table with one row per profile and transport and one column per server.
fn table(md: &mut String, run: &Run, kind: Kind, heading: &str, cell: impl Fn(&Outcome) -> String) {
    let grid = grid(run, kind);
    if grid.is_empty() {
        return;
    }
    let (servers, marks) = (servers(run), Marks::of(run));
    let _ = writeln!(md, "### {heading}\n");
    let _ = writeln!(md, "| link | transport | {} |", servers.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "--:|".repeat(servers.len()));
    for ((_, profile, transport), by_server) in &grid {
        let cells: Vec<String> = servers
            .iter()
            .map(|server| by_server.get(server).map_or("–".to_owned(), |o| marks.cell(o, cell(o))))
            .collect();
        let _ = writeln!(md, "| {profile} | {} | {} |", transport.name(), cells.join(" | "));
    }
    md.push('\n');
}

/// The `p50 / p99` cell.
fn p50_p99(o: &Outcome) -> String {
    format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.p99))
}

/// The Markdown fragment of a network run.
pub(crate) fn tables(run: &Run, json: &str) -> String {
    let mut md = provenance(run, json, |_| true);
    if packet_run(run) {
        let _ = writeln!(
            md,
            "Every subscriber connection crosses a packet link (`packet-link`): the servers run in a network \
             namespace of the run's own and the load generator in another, joined through TUN devices (MTU 1500) \
             by a forwarder that delays, throttles and drops IP packets, so kernel TCP and QUIC lose packets and \
             retransmit for real. The publisher of the fan-out, burst, reconnect and cold-start scenarios is on the \
             servers' side, as a back end would be; a round trip's POST crosses the link too. An emulated profile \
             in this run is `emulated-link` over the packet link left clear: the twin of a profile without loss, for \
             the agreement check at the end. Times in ms. ⚠ marks a cell with losses, duplicates, disorder where \
             the transport promises order, or errors (lost/dup/ooo).{}\n",
            Marks::of(run).busy_note()
        );
    } else {
        let _ = writeln!(
            md,
            "Every subscriber connection crosses an emulated link (`emulated-link`: half the RTT each way, one RTT \
             to connect, bandwidth per direction with TCP/IP headers counted; no packet loss, no slow start). The \
             publisher of the fan-out, burst, reconnect and cold-start scenarios is on loopback, as a back end would \
             be; a round trip's POST crosses the link too. Times in ms. ⚠ marks a cell with losses, duplicates, \
             disorder or errors (lost/dup/ooo).\n"
        );
    }
    let _ = writeln!(md, "Link profiles: {}.\n", profile_list(run));
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

/// The profiles of the run, in matrix order, each with what it does.
fn profile_list(run: &Run) -> String {
    profiles()
        .iter()
        .filter(|p| run.outcomes.iter().any(|o| o.link.as_deref() == Some(p.name)))
        .map(|p| format!("`{}` {}", p.name, p.describe()))
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
    let (servers, marks) = (servers(run), Marks::of(run));
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
                        let bytes = o.bytes.down_per_delivery + o.bytes.up_per_delivery;
                        marks.cell(o, format!("{} msg/s ({bytes:.0} B)", o.target_rate))
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
    let (servers, marks) = (servers(run), Marks::of(run));
    let (fan_out, burst, resume) = (grid(run, Kind::FanOut), grid(run, Kind::Burst), grid(run, Kind::Resume));
    let mut md = generated(json);
    let _ = writeln!(
        md,
        "_Each cell: {} (`{json}`; all its tables are in docs/results.md). ms; ⚠ marks losses or errors.{} {}_\n",
        servers.iter().map(|s| format!("**{s}**")).collect::<Vec<_>>().join(" · "),
        marks.busy_note(),
        super::scenarios(run),
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
                grid.get(key).and_then(|by| by.get(server)).map_or("–".to_owned(), |o| marks.cell(o, ms(value(o))))
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
