//! The progress bar every experiment advances, and the line each outcome prints above it.

use indicatif::{ProgressBar, ProgressStyle};

use crate::format;
use crate::record::Outcome;

/// A bar of `steps` steps with the elapsed time.
pub(crate) fn bar(steps: u64) -> ProgressBar {
    let progress = ProgressBar::new(steps);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .expect("a valid progress template")
            .progress_chars("=> "),
    );
    progress
}

/// Prints one outcome's summary line above the progress bar (or alone without one).
pub(crate) fn announce(progress: &ProgressBar, outcome: &Outcome) {
    line(progress, format::summary(outcome));
}

/// Prints `text` above the progress bar, or alone when the bar is hidden (output not
/// a terminal), where the bar's own `println` would print nothing.
pub(crate) fn line(progress: &ProgressBar, text: String) {
    if progress.is_hidden() {
        eprintln!("{text}");
    } else {
        progress.println(text);
    }
}
