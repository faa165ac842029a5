//! The throughput ramp's criterion: a step is sustained when it stays clean with p99
//! within 100 ms and the publisher keeps its rate. The matrix run stops a ramp at its
//! first step not sustained; the tables and the targets report the highest one that was.

use std::collections::BTreeMap;

use crate::format::{checks, ms};
use crate::record::{Kind, Outcome, Run, Transport};

/// One server's throughput ramp on one transport.
pub(crate) struct Ramp<'a> {
    /// The steps run, in rising publish rate.
    pub steps: Vec<&'a Outcome>,
    /// The highest step sustained ([`sustained`]).
    pub best: Option<&'a Outcome>,
    /// The first step not sustained, where the ramp stopped; `None` when it ran out
    /// of rates (or time) first.
    pub stop: Option<&'a Outcome>,
}

/// Every ramp of the run, by server and transport.
pub(crate) fn ramps(run: &Run) -> BTreeMap<(String, Transport), Ramp<'_>> {
    let mut steps: BTreeMap<(String, Transport), Vec<&Outcome>> = BTreeMap::new();
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Throughput) {
        steps.entry((o.server.clone(), o.transport)).or_default().push(o);
    }
    steps
        .into_iter()
        .map(|(key, steps)| {
            let best = steps.iter().rev().find(|o| sustained(o)).copied();
            let stop = steps.iter().find(|o| !sustained(o)).copied();
            (key, Ramp { steps, best, stop })
        })
        .collect()
}

/// The ramp's criterion: clean, p99 within 100 ms, publisher kept 90 % of the rate.
pub(crate) fn sustained(o: &Outcome) -> bool {
    o.clean() && o.latency_us.p99 <= 100_000 && o.achieved_rate >= 0.9 * o.target_rate
}

/// Why a ramp step was not sustained, in a few words.
pub(crate) fn why_not_sustained(o: &Outcome) -> String {
    if !o.clean() {
        format!("lost/dup/ooo {}", checks(o))
    } else if o.latency_us.p99 > 100_000 {
        format!("p99 {} ms", ms(o.latency_us.p99))
    } else {
        format!("publisher reached {:.0} msg/s", o.achieved_rate)
    }
}
