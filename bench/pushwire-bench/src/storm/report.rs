//! `storm.md`: one table per bus and way of stopping, a row per transport and schedule;
//! and `storm-<bus>-<stop>-<transport>.svg`: the share of clients receiving again
//! against the time since the stop, a line per schedule.

use std::fmt::Write as _;
use std::path::Path;

use plotters::prelude::*;

use super::client::SLICE;
use super::{Bus, Schedule, Stop};
use crate::plot::{chart, legend};
use crate::record::{StormOutcome, Transport};

/// Writes `storm.md` and the plots into `dir`; returns the markdown. `command` is the
/// run's, so regenerating from the JSON writes the same file.
pub(crate) fn write(outcomes: &[StormOutcome], dir: &Path, source: &str, command: &str) -> Result<String, String> {
    let md = tables(outcomes, source, command);
    std::fs::write(dir.join("storm.md"), &md).map_err(|e| e.to_string())?;
    for bus in Bus::ALL {
        for stop in Stop::ALL {
            for transport in Transport::ALL {
                let lines: Vec<&StormOutcome> = outcomes
                    .iter()
                    .filter(|o| o.bus == bus.name() && o.stop == stop.name() && o.transport == transport)
                    .collect();
                if !lines.is_empty() {
                    let name = format!("storm-{}-{}-{}.svg", bus.name(), stop.name(), transport.name());
                    plot(&dir.join(name), bus, stop, transport, &lines)?;
                }
            }
        }
    }
    Ok(md)
}

fn tables(outcomes: &[StormOutcome], source: &str, command: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Generated from `{source}` by `{command}`.\n\nEach row: one pushwire under `n` \
         subscribers of one transport, stopped and started again on the same port while a publisher posts four \
         messages a second; its clients come back on one schedule: `fixed` (3 s every time, deaf to the server: \
         `EventSource` without `retry:`, Phoenix), `full-jitter` (a random wait under a ceiling that doubles per \
         failure, 0.5 s to 10 s, deaf to the server: centrifuge-js), `page` (full jitter, but a delay the server \
         told wins: pushwire's page), `eventsource` (SSE only: the stream's own `retry:` and the delay told, as a \
         browser's `EventSource` does). Times from the stop signal. Up: until the new process accepted. Noticed: \
         until 99 % of the clients knew their connection was gone. Back: until that share was receiving again (a \
         message, or a gap notice). Attempts: connection attempts after the stop (failed; most in one second). CPU \
         and memory: the new process's busiest 100 ms (cores) and largest resident set. First data: from a \
         successful attempt to its first message or notice. Lost / dup / ooo: over every client, messages the \
         publisher got accepted and never received, received twice, received after a later one (none may be). Gap: \
         clients told of a gap, and the messages it covered (the in-memory bus's history goes with the process)."
    );
    for bus in Bus::ALL {
        for stop in Stop::ALL {
            let rows: Vec<&StormOutcome> =
                outcomes.iter().filter(|o| o.bus == bus.name() && o.stop == stop.name()).collect();
            if rows.is_empty() {
                continue;
            }
            let how = match stop {
                Stop::Kill => "killed (SIGKILL: no one told)",
                Stop::Term => "stopped gracefully (SIGTERM: every client told when to come back)",
            };
            let _ = writeln!(md, "\n### {} bus, server {how}\n", bus.name());
            let _ = writeln!(
                md,
                "| transport | schedule | n | up | noticed | back 50 / 99 / 100 % | never back | attempts (failed; \
                 peak/s) | CPU peak | RSS peak | first data p50 / p99 | lost / dup / ooo | gap clients (covered) |"
            );
            let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
            for o in rows {
                let _ = writeln!(
                    md,
                    "| {} | {} | {} | {} | {} | {} / {} / {} | {} | {} ({}; {}) | {:.2} | {} MiB | {} / {} | {} / {} \
                     / {} | {} ({}) |{}",
                    o.transport.name(),
                    o.schedule,
                    o.subscribers,
                    seconds(Some(o.up_ms)),
                    seconds(o.noticed_99_ms),
                    seconds(o.back_50_ms),
                    seconds(o.back_99_ms),
                    seconds(o.back_all_ms),
                    o.never_back,
                    o.attempts,
                    o.failed_attempts,
                    o.peak_attempts_per_s,
                    o.server_cpu_peak_cores,
                    o.server_rss_peak_kib / 1024,
                    millis(o.first_data_p50_ms),
                    millis(o.first_data_p99_ms),
                    o.lost,
                    o.duplicated,
                    o.out_of_order,
                    o.gap_clients,
                    o.covered_by_gap,
                    o.note.as_deref().map_or(String::new(), |n| format!(" ⚠ {n}")),
                );
            }
        }
    }
    md
}

fn seconds(ms: Option<f64>) -> String {
    ms.map_or("–".to_owned(), |ms| format!("{:.2} s", ms / 1000.0))
}

fn millis(ms: Option<f64>) -> String {
    ms.map_or("–".to_owned(), |ms| format!("{ms:.0} ms"))
}

fn schedule_colour(schedule: &str) -> RGBColor {
    match Schedule::parse(schedule) {
        Ok(Schedule::Fixed) => RGBColor(0xd6, 0x27, 0x28),
        Ok(Schedule::FullJitter) => RGBColor(0x1f, 0x77, 0xb4),
        Ok(Schedule::Page) => RGBColor(0x2c, 0xa0, 0x2c),
        Ok(Schedule::EventSource) => RGBColor(0x94, 0x67, 0xbd),
        Err(_) => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Clients receiving again (share) against seconds since the stop, a line per schedule.
fn plot(path: &Path, bus: Bus, stop: Stop, transport: Transport, lines: &[&StormOutcome]) -> Result<(), String> {
    let slice = SLICE.as_secs_f64();
    let end = lines.iter().map(|o| o.receiving.len()).max().unwrap_or(1) as f64 * slice;
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    let title = format!(
        "{}: clients receiving again after a {} ({} bus)",
        transport.name(),
        match stop {
            Stop::Kill => "crash (SIGKILL)",
            Stop::Term => "graceful restart (SIGTERM)",
        },
        bus.name()
    );
    let mut chart = chart(&root, &title, 45, 0f64..end.max(1.0), 0f64..1.05f64)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the stop")
        .y_desc("share of clients receiving again")
        .draw()
        .map_err(|e| e.to_string())?;
    for o in lines {
        let colour = schedule_colour(&o.schedule);
        let n = o.subscribers.max(1) as f64;
        let points: Vec<(f64, f64)> =
            o.receiving.iter().enumerate().map(|(i, &back)| (i as f64 * slice, f64::from(back) / n)).collect();
        chart
            .draw_series(LineSeries::new(points, colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(o.schedule.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    root.present().map_err(|e| e.to_string())
}
