//! The agreement check at 0 % loss: each packet profile that loses nothing beside its
//! emulated twin of the same round trip (measured in the same run, `emulated-link`
//! over the packet link left clear), scenario by scenario. Where they agree, each link
//! validates the other; where they do not, the table says by how much.

use std::fmt::Write as _;

use super::{Marks, checked, servers};
use crate::format::{ms_coarse as ms, ratio};
use crate::network::profiles::profiles;
use crate::record::{Kind, Outcome, Run};

/// Two figures agree when they are within this share of the emulated one...
const TOLERANCE_SHARE: f64 = 0.2;
/// ...or within this many µs of it: at a few ms, scheduling on a shared machine moves
/// a figure by more than 20 %, and neither link models it.
const TOLERANCE_US: f64 = 5_000.0;

/// The scenarios compared, each by its latency per message (per round, for resume and
/// cold start).
const KINDS: [Kind; 6] =
    [Kind::FanOut, Kind::Burst, Kind::RoundTrip, Kind::RoundTripInBand, Kind::Resume, Kind::ColdStart];

/// Whether `packet` agrees with `emulated` within the tolerance.
fn agrees(packet: u64, emulated: u64) -> bool {
    (packet as f64 - emulated as f64).abs() <= (emulated as f64 * TOLERANCE_SHARE).max(TOLERANCE_US)
}

/// The section of `network.md`; empty when the run has no pair.
pub(super) fn section(run: &Run) -> String {
    let pairs: Vec<(&str, &str)> = profiles()
        .iter()
        .filter_map(|p| Some((p.name, p.twin()?)))
        .filter(|&(packet, twin)| measured(run, packet) && measured(run, twin))
        .collect();
    if pairs.is_empty() {
        return String::new();
    }
    let (marks, servers) = (Marks::of(run), servers(run));
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Agreement at 0 % loss\n\nThe packet link without loss against `emulated-link` at the same round trip, \
         scenario by scenario, in ms: packet / emulated (ratio). They agree when within {:.0} % or {:.0} ms of the \
         emulated figure, whichever is larger.{} Here it gives both loads, packet / emulated.\n",
        TOLERANCE_SHARE * 100.0,
        TOLERANCE_US / 1000.0,
        marks.busy_note()
    );
    let _ = writeln!(md, "| links | scenario | transport | server | p50 | p99 | agree |");
    let _ = writeln!(md, "|---|---|---|---|--:|--:|---|");
    let (mut rows, mut agreeing) = (0, 0);
    for (packet_name, twin_name) in pairs {
        for kind in KINDS {
            let mut outcomes: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.kind == kind).collect();
            outcomes.retain(|o| o.link.as_deref() == Some(packet_name));
            outcomes.sort_by_key(|o| (o.transport, servers.iter().position(|s| *s == o.server)));
            for packet in outcomes {
                let twin = run.outcomes.iter().find(|o| {
                    o.kind == kind
                        && o.transport == packet.transport
                        && o.server == packet.server
                        && o.link.as_deref() == Some(twin_name)
                });
                let Some(twin) = twin else { continue };
                let (p, e) = (&packet.latency_us, &twin.latency_us);
                let agree = agrees(p.p50, e.p50) && agrees(p.p99, e.p99);
                rows += 1;
                agreeing += usize::from(agree);
                let figure = |packet: u64, emulated: u64| {
                    format!("{} / {} ({})", ms(packet), ms(emulated), ratio(packet as f64, emulated as f64))
                };
                let _ = writeln!(
                    md,
                    "| {packet_name} vs {twin_name} | {} | {} | {} | {} | {} | {} |",
                    kind.name(),
                    packet.transport.name(),
                    packet.server,
                    figure(p.p50, e.p50),
                    figure(p.p99, e.p99),
                    verdict(marks, agree, packet, twin),
                );
            }
        }
    }
    let _ = writeln!(md, "\n{agreeing} of {rows} rows agree.\n");
    md
}

/// `yes` or `**no**`, marked for either outcome's losses or errors, and for a busy
/// machine with both loads (packet / emulated).
fn verdict(marks: Marks, agree: bool, packet: &Outcome, twin: &Outcome) -> String {
    let verdict = checked(twin, checked(packet, if agree { "yes" } else { "**no**" }.to_owned()));
    if marks.busy_load(packet).is_none() && marks.busy_load(twin).is_none() {
        return verdict;
    }
    let load = |o: &Outcome| o.other_load.map_or("–".to_owned(), |load| format!("{:.0} %", load * 100.0));
    format!("{verdict} ⚠ busy {} / {}", load(packet), load(twin))
}

fn measured(run: &Run, profile: &str) -> bool {
    run.outcomes.iter().any(|o| o.link.as_deref() == Some(profile))
}

#[cfg(test)]
mod tests {
    use super::agrees;

    #[test]
    fn figures_agree_within_a_fifth_or_five_milliseconds() {
        assert!(agrees(120_000, 100_000) && !agrees(121_000, 100_000));
        assert!(agrees(9_000, 4_500), "a few ms apart on a short figure");
        assert!(!agrees(10_000, 4_000));
    }
}
