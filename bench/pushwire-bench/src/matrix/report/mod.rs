//! The loopback matrix's report: `tables.md` (the evidence), `headline.md` (the table
//! that opens COMPARISON.md, when both servers ran), `targets.md` (the performance
//! targets), the SVG plots, and on request `before-after.md`. COMPARISON.md pastes the
//! tables verbatim, so every number in it comes from a committed JSON file.

pub(crate) mod before_after;
mod headline;
mod plots;
mod tables;
mod targets;

use std::io;
use std::path::Path;

use crate::format::provenance;
use crate::record::{Kind, Run};

/// Writes the matrix's fragments and plots for `run` into `dir`; `json` is the path
/// the tables cite as their source.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> io::Result<()> {
    std::fs::write(dir.join("tables.md"), tables::tables(run, json))?;
    if let Some(md) = headline::table(run, json) {
        std::fs::write(dir.join("headline.md"), md)?;
    }
    let targets = targets::table(run);
    if !targets.is_empty() {
        std::fs::write(dir.join("targets.md"), provenance(run, json, |o| o.kind != Kind::ScaleOut) + &targets)?;
    }
    plots::write(run, dir).map_err(io::Error::other)
}
