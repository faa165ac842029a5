//! The network matrix's report: `network.md` (every table), `network-summary.md` (the
//! one in COMPARISON's text) and the plots. A run over emulated links gets the tables
//! of [`tables`] and plots against round-trip time; a run over the packet link gets
//! those tables too, with the loss tables and `loss-summary.md` of [`loss`], the
//! agreement at 0 % loss of [`agreement`], and a latency CDF per loss profile
//! ([`plots`]). Its rows measured on a busy machine are flagged ([`BUSY_OTHER_LOAD`]).

mod agreement;
mod loss;
mod plots;
mod tables;

use std::collections::BTreeMap;
use std::path::Path;

use super::profiles::{self, profile};
use crate::format::checks;
use crate::record::{Kind, Outcome, Run, Transport};

/// Writes the fragments and plots of a network run into `dir`; `json` is the path they
/// cite as their source.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> std::io::Result<()> {
    let packet = packet_run(run);
    let mut md = tables::tables(run, json);
    if packet {
        md += &loss::tables(run);
        md += &agreement::section(run);
    }
    std::fs::write(dir.join("network.md"), md)?;
    std::fs::write(dir.join("network-summary.md"), tables::summary(run, json))?;
    let plotted = if packet {
        std::fs::write(dir.join("loss-summary.md"), loss::summary(run, json))?;
        plots::cdfs(run, dir)
    } else {
        plots::against_rtt(run, dir)
    };
    plotted.map_err(std::io::Error::other)
}

/// Other work on the machine above this share of all cores, while an outcome was
/// measured, flags it (in runs over the packet link, which are taken to be quiet):
/// at 10 % of two cores something else ran a fifth of a core, enough to delay a
/// server's or the load generator's wake-ups by more than the differences measured.
pub(super) const BUSY_OTHER_LOAD: f64 = 0.10;

/// The sizes of the scenarios the summaries show, as the run recorded them, so a p99
/// can be read: how many subscribers, how fast, how many messages.
fn scenarios(run: &Run) -> String {
    let first = |kind: Kind| run.outcomes.iter().find(|o| o.kind == kind);
    let mut said = Vec::new();
    if let Some(o) = first(Kind::FanOut) {
        said.push(format!(
            "steady fan-out: {} messages of {} B, {} a second, to {} subscribers",
            o.published, o.payload_bytes, o.target_rate, o.subscribers
        ));
    }
    if let Some(o) = first(Kind::Burst) {
        said.push(format!("burst: {} messages published back to back to {} subscribers", o.published, o.subscribers));
    }
    format!("Scenarios: {}.", said.join("; "))
}

/// Whether any outcome of `run` was behind a packet profile.
fn packet_run(run: &Run) -> bool {
    run.outcomes.iter().filter_map(|o| o.link.as_deref().and_then(profile)).any(|p| p.is_packet())
}

/// How cells are marked: losses, repeats, disorder and errors always; in a packet run
/// also a busy machine.
#[derive(Clone, Copy)]
struct Marks {
    busy: bool,
}

impl Marks {
    fn of(run: &Run) -> Marks {
        Marks { busy: packet_run(run) }
    }

    /// `text`, then `⚠ lost/dup/ooo` when the outcome was not clean and `⚠ busy N %`
    /// when other work held the machine over [`BUSY_OTHER_LOAD`].
    fn cell(self, o: &Outcome, text: String) -> String {
        let text = checked(o, text);
        match self.busy_load(o) {
            Some(load) => format!("{text} ⚠ busy {:.0} %", load * 100.0),
            None => text,
        }
    }

    /// The other load of `o`, when this run flags it and it was over the threshold.
    fn busy_load(self, o: &Outcome) -> Option<f64> {
        o.other_load.filter(|&load| self.busy && load > BUSY_OTHER_LOAD)
    }

    /// The sentence that explains the busy mark, once per fragment.
    fn busy_note(self) -> String {
        if !self.busy {
            return String::new();
        }
        format!(
            " ⚠ busy N % marks one measured while other work kept the machine busy over {:.0} % of all cores \
             (`other_load`): its times may be the machine's, not the link's.",
            BUSY_OTHER_LOAD * 100.0
        )
    }
}

/// `text`, then `⚠ lost/dup/ooo` when the outcome was not clean.
fn checked(o: &Outcome, text: String) -> String {
    if o.clean() { text } else { format!("{text} ⚠ {}", checks(o)) }
}

/// The profiles' names in matrix order, for rows and plots.
fn profile_order(name: &str) -> usize {
    profiles::profiles().iter().position(|p| p.name == name).unwrap_or(usize::MAX)
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
