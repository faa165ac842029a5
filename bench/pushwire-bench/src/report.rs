//! Which reports a run gets: the one place that looks at a [`Run`] and hands it to the
//! report of the experiment it came from. The experiments' reports never import this
//! module or each other; each reads only the records ([`crate::record`]) and the
//! shared formatting ([`crate::format`], [`crate::plot`]).

use std::io;
use std::path::Path;

use crate::record::{Kind, Run};
use crate::{matrix, network, scale_out};

/// Writes the fragments and plots of `run` into `dir`; `json` is the path they cite as
/// their source. A network run gets the network report; otherwise the scale-out part
/// (if any) gets `scale-out.md` and the loopback matrix (if any) its tables and plots.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> io::Result<()> {
    if run.outcomes.iter().any(|o| o.link.is_some()) {
        return network::report::write(run, dir, json);
    }
    scale_out::report::write(run, dir, json)?;
    if run.outcomes.iter().all(|o| o.kind == Kind::ScaleOut) {
        return Ok(());
    }
    matrix::report::write(run, dir, json)
}

/// Reads a `results.json`.
pub(crate) fn read(json: &Path) -> Result<Run, String> {
    let text = std::fs::read_to_string(json).map_err(|e| format!("{}: {e}", json.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", json.display()))
}
