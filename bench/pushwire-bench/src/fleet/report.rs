//! `fleet.md`: a row per step (number of instances), then the rolling restart's;
//! `fleet-summary.md`: the rows alone.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use crate::format::{generated, ms_coarse as ms};
use crate::plot::{Series, chart, legend, line_plot};
use crate::record::{FleetOutcome, Latency, Transport};

/// Writes `fleet.md` (every step, and the rolling restart) and `fleet-summary.md` (the
/// steps alone, for COMPARISON.md) into `dir`; returns the first. `command` is the run's.
pub(crate) fn write(outcomes: &[FleetOutcome], dir: &Path, source: &str, command: &str) -> Result<String, String> {
    let md = tables(outcomes, source, command);
    std::fs::write(dir.join("fleet.md"), &md).map_err(|e| e.to_string())?;
    let summary = format!(
        "{}_pushwire instances on one redis-server, the subscribers spread evenly over them, one message of 64 B a \
         second (`{source}`; the whole run, with its rolling restart, in docs/results.md). Latency: publish to \
         arrival, ms._\n\n{}",
        generated(source),
        steps(outcomes)
    );
    std::fs::write(dir.join("fleet-summary.md"), summary).map_err(|e| e.to_string())?;
    steps_plot(&dir.join("fleet-steps.svg"), outcomes)?;
    if let Some(rolled) = outcomes.iter().find(|o| o.rolling.iter().any(|r| !r.receiving.is_empty())) {
        rolling_plot(&dir.join("fleet-rolling.svg"), rolled)?;
    }
    Ok(md)
}

/// p99 against the subscribers, a point per step.
fn steps_plot(path: &Path, outcomes: &[FleetOutcome]) -> Result<(), String> {
    let mut series = Series::new();
    for o in outcomes.iter().filter(|o| o.latency_us.samples > 0) {
        let line = series.entry(("pushwire".to_owned(), o.transport)).or_default();
        line.push((o.subscribers as f64, o.latency_us.p99 as f64 / 1000.0));
    }
    let per_instance = outcomes.first().map_or(0, |o| o.subscribers / o.instances.max(1));
    let title = format!("The fleet: p99 against subscribers ({per_instance} per instance)");
    line_plot(path, &title, "subscribers (log scale)", &series)
}

/// The share of subscribers receiving against the seconds since each restart's signal,
/// a line per instance.
fn rolling_plot(path: &Path, o: &FleetOutcome) -> Result<(), String> {
    let end = o.rolling.iter().flat_map(|r| r.receiving.last()).map(|&(ms, _)| ms as f64 / 1e3).fold(1.0, f64::max);
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let title = format!("Rolling restart: {} of {} subscribers receiving", o.transport.name(), o.subscribers);
    let mut chart = chart(&root, &title, 45, 0f64..end, 0f64..1.05f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the instance was signalled (SIGTERM)")
        .y_desc("share of subscribers receiving")
        .draw()
        .map_err(|e| e.to_string())?;
    let n = o.subscribers.max(1) as f64;
    for (i, restart) in o.rolling.iter().enumerate() {
        let colour = Palette99::pick(i).to_rgba();
        let points = restart.receiving.iter().map(|&(ms, receiving)| (ms as f64 / 1e3, f64::from(receiving) / n));
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(format!("instance {}", restart.instance))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())
}

fn tables(outcomes: &[FleetOutcome], source: &str, command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Generated from `{source}` by `{command}`.\n\nEach row: pushwire instances sharing one \
         conversation through one redis-server, the subscribers spread evenly over them (clients in worker \
         processes of the load generator, each instance and worker under the open-file limit of 20,000), one \
         message of 64 B a second published on one instance and delivered to every subscriber. Latency: publish \
         to arrival, ms, over the steady minute. CPU: cores busy over that minute, each instance (summed, and the \
         busiest), redis-server, and the load generator's workers; per delivery: the instances' CPU time over the \
         deliveries. Memory: the instances' resident memory grown since they started, per subscriber. Lost / dup \
         / ooo: over every subscriber, accepted messages never received, received twice, received after a later \
         one (none may be; a subscriber still reconnecting at the end is held only to what came before its last message, \
         which it would fetch on its return; a message a gap notice covered, one the history no longer held when its \
         subscriber came back, is counted apart, as told; so is a publish left unanswered for 2 s, which may have got \
         in after the next one). At the end the clients get up to a minute to receive what is on its way.\n"
    );
    md += &steps(outcomes);
    for o in outcomes.iter().filter(|o| !o.rolling.is_empty()) {
        let _ = writeln!(
            md,
            "\n### Rolling restart of {} instances under {} {} subscribers\n\nEach instance in turn stopped \
             gracefully (`SIGTERM`: its clients told when to come back, over the server's `--restart-spread`) and \
             started again on the same port while the others served and the publisher went on; the next once \
             every subscriber was receiving again. A client whose connection ended came back on the page's \
             schedule to an instance picked at random. Up: from the signal until the new process listened. Back: \
             from the signal until 99 % and all of the subscribers were receiving again (`fleet-rolling.svg`: the \
             share receiving against time). Latency meanwhile: {} ms (p50 / p99 / max). Connection \
             attempts: {} ({} failed). Still reconnecting at the end: {} subscribers. Lost / dup / ooo over the whole \
             step: {} / {} / {}.\n",
            o.instances,
            o.subscribers,
            o.transport.name(),
            o.rolling_latency_us.as_ref().map_or("–".to_owned(), spread),
            o.attempts,
            o.failed_attempts,
            o.away,
            o.lost,
            o.duplicated,
            o.out_of_order,
        );
        let _ = writeln!(md, "| instance | up | back: 99 % | back: all |\n|--:|--:|--:|--:|");
        let seconds = |ms: Option<f64>| ms.map_or("not within the limit".to_owned(), |at| format!("{:.1} s", at / 1e3));
        for restart in &o.rolling {
            // Runs before the 99 % figure was kept show none.
            let back_99 = if restart.receiving.is_empty() { "–".to_owned() } else { seconds(restart.back_99_ms) };
            let note = restart.note.as_deref().map_or(String::new(), |note| format!(" ⚠ {note}"));
            let _ = writeln!(
                md,
                "| {} | {:.1} s | {back_99} | {}{note} |",
                restart.instance,
                restart.up_ms / 1e3,
                seconds(restart.back_all_ms)
            );
        }
    }
    md
}

/// A row per step.
fn steps(outcomes: &[FleetOutcome]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| instances | transport | subscribers (received) | p50 / p99 / max | instances' cores (busiest) | redis-server \
         cores | load cores | CPU µs per delivery | memory per subscriber | lost / dup / ooo |"
    );
    let _ = writeln!(md, "|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in outcomes {
        let busiest = o.instance_cores.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            md,
            "| {} | {} | {} ({}) | {} | {:.2} ({busiest:.2}) | {:.2} | {:.2} | {} | {} | {} / {} / {}{}{} |",
            o.instances,
            o.transport.name(),
            o.subscribers,
            o.connected,
            spread(&o.latency_us),
            o.instance_cores.iter().sum::<f64>(),
            o.redis_cores,
            o.load_cores,
            o.cpu_us_per_delivery.map_or("–".to_owned(), |us| format!("{us:.1}")),
            o.rss_per_connection_bytes.map_or("–".to_owned(), |b| format!("{:.1} KiB", b / 1024.0)),
            o.lost,
            o.duplicated,
            o.out_of_order,
            left_out(o),
            o.note.as_deref().map_or(String::new(), |note| format!(" ⚠ {note}")),
        );
    }
    md
}

/// What the lost / dup / ooo counts leave out, if anything: subscribers told of a gap
/// (and the messages it covered), publishes left unanswered.
fn left_out(o: &FleetOutcome) -> String {
    let mut said = Vec::new();
    if o.gap_clients > 0 {
        said.push(format!("gap told to {} subscribers, covering {} messages", o.gap_clients, o.covered_by_gap));
    }
    if o.uncertain > 0 {
        said.push(format!("{} publishes unanswered", o.uncertain));
    }
    if said.is_empty() { String::new() } else { format!(" ({})", said.join("; ")) }
}

/// `p50 / p99 / max` in ms.
fn spread(l: &Latency) -> String {
    format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max))
}

impl FleetOutcome {
    /// A step that could not run, and why.
    pub(crate) fn failed(instances: usize, subscribers: usize, transport: Transport, note: String) -> FleetOutcome {
        FleetOutcome {
            instances,
            subscribers,
            transport,
            connected: 0,
            connect_s: 0.0,
            latency_us: Latency::default(),
            instance_cores: Vec::new(),
            redis_cores: 0.0,
            load_cores: 0.0,
            cpu_us_per_delivery: None,
            rss_per_connection_bytes: None,
            rolling: Vec::new(),
            rolling_latency_us: None,
            published: 0,
            uncertain: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            gap_clients: 0,
            covered_by_gap: 0,
            away: 0,
            attempts: 0,
            failed_attempts: 0,
            note: Some(note),
        }
    }

    /// The line a step prints.
    pub(crate) fn summary(&self) -> String {
        format!(
            "fleet {} instances, {} {} (received {} in {:.0} s): p50/p99 {}/{} ms, {:.2} cores, redis {:.2}, \
             lost/dup/ooo {}/{}/{}{}",
            self.instances,
            self.subscribers,
            self.transport.name(),
            self.connected,
            self.connect_s,
            ms(self.latency_us.p50),
            ms(self.latency_us.p99),
            self.instance_cores.iter().sum::<f64>(),
            self.redis_cores,
            self.lost,
            self.duplicated,
            self.out_of_order,
            self.note.as_deref().map_or(String::new(), |n| format!(" ({n})")),
        )
    }
}
