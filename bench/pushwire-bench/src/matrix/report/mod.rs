//! The loopback matrix's report: `tables.md` (the evidence), `headline.md` (the table
//! that opens COMPARISON.md, when both servers ran), `targets.md` (the performance
//! targets), `protocols.md` (the comparison across HTTP settings, when there are
//! several), the SVG plots, and on request `before-after.md`. COMPARISON.md pastes the
//! tables verbatim, so every number in it comes from a committed JSON file.
//!
//! A run over several HTTP settings (`--protocols`) is reported over the one the whole
//! matrix ran over (the headline, the targets, the plots and the scenario families'
//! tables), and compared across settings in one section of `tables.md` ([`protocols`]).

pub(crate) mod before_after;
mod headline;
mod plots;
mod protocols;
mod tables;
mod targets;

use std::borrow::Cow;
use std::io;
use std::path::Path;

use crate::format::provenance;
use crate::record::{Kind, Run};

/// Writes the matrix's fragments and plots for `run` into `dir`; `json` is the path
/// the tables cite as their source.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> io::Result<()> {
    let main = over_main_http(run);
    std::fs::write(dir.join("tables.md"), tables::tables(run, &main, json))?;
    if let Some(md) = headline::table(&main, json) {
        std::fs::write(dir.join("headline.md"), md)?;
    }
    let targets = targets::table(&main);
    if !targets.is_empty() {
        std::fs::write(dir.join("targets.md"), provenance(&main, json, |o| o.kind != Kind::ScaleOut) + &targets)?;
    }
    if run.outcomes.iter().any(|o| o.http != run.main_http()) {
        let fragment = provenance(run, json, |o| o.kind != Kind::ScaleOut) + &protocols::section(run);
        std::fs::write(dir.join("protocols.md"), fragment)?;
    }
    plots::write(&main, dir).map_err(io::Error::other)
}

/// `run` with only the outcomes over the HTTP setting the whole matrix ran over.
fn over_main_http(run: &Run) -> Cow<'_, Run> {
    let main = run.main_http();
    if run.outcomes.iter().all(|o| o.http == main) {
        return Cow::Borrowed(run);
    }
    let mut filtered = run.clone();
    filtered.outcomes.retain(|o| o.http == main);
    Cow::Owned(filtered)
}
