//! `tables.md`: provenance, then one table per scenario family of the loopback matrix.

use std::fmt::Write as _;

use super::protocols;
use crate::format::{checks, connected, cpu_per_delivery, errors, ms, opt, percentiles, provenance, ratio};
use crate::matrix::ramp::{ramps, why_not_sustained};
use crate::record::{Http, Kind, Outcome, Run};

/// The Markdown fragment: provenance, then one table per scenario family (the
/// scale-out part has its own fragment, `scale-out.md`). The families' tables show
/// `main`, the outcomes over the HTTP setting the whole matrix ran over; when `run`
/// has others, a section compares the settings.
pub(crate) fn tables(run: &Run, main: &Run, json: &str) -> String {
    let mut md = provenance(run, json, |o| o.kind != Kind::ScaleOut);
    let others = run.outcomes.len() != main.outcomes.len();
    if others || main.main_http() != Http::H1 {
        let _ = writeln!(md, "The tables before the section on HTTP settings are over {}.\n", main.main_http().label());
    }
    // The families' tables below read `run`: the main setting's outcomes.
    let (all, run) = (run, main);
    let webtransport = if run.outcomes.iter().any(|o| o.transport.quic()) {
        "; WebTransport's, which runs over HTTP/3 whatever the HTTP setting, are its QUIC connection's UDP payload \
         (QUIC headers, acknowledgements and encryption tags included)"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "Latencies in ms, publisher send → subscriber receive on one clock. `lost/dup/ooo` are checked per \
         subscriber (⚠ counts gaps and connection or publish errors). CPU is the server's, from /proc. Bytes are \
         counted at the client's sockets (HTTP headers and framing included){webtransport}. In brackets after the \
         server CPU per delivery: the share of it spent in user space (the rest is the kernel's, mostly the TCP \
         stack), where the run recorded it. `other load` is the share of both cores busy with neither server nor \
         load generator during the measurement (other engineers' builds).\n"
    );

    let _ = writeln!(md, "### Fan-out\n");
    let _ = writeln!(
        md,
        "| server | transport | subscribers | msg/s | p50 | p90 | p99 | p99.9 | max | delivered/s | lost/dup/ooo | \
         server CPU ms per 1,000 deliveries (user share) | bytes in per delivery | bytes out per delivery | \
         other load |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::FanOut) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {} | {} | {:.0} | {:.0} | {} |",
            o.server,
            o.transport.name(),
            connected(o),
            o.target_rate,
            percentiles(&o.latency_us),
            o.delivered_per_s,
            checks(o),
            cpu_per_delivery(o),
            o.bytes.down_per_delivery,
            o.bytes.up_per_delivery,
            opt(o.other_load.map(|l| l * 100.0), 0) + "%",
        );
    }
    md.push('\n');
    in_order_table(&mut md, run);
    ratio_table(&mut md, run);
    throughput_table(&mut md, run);

    let _ = writeln!(md, "### Payload size (fan-out)\n");
    let _ = writeln!(
        md,
        "| server | transport | payload B | subscribers | p50 | p99 | max | lost/dup/ooo | bytes in per delivery | \
         publish bytes out per message | server CPU ms per 1,000 deliveries (user share) |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Payload) {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {:.0} | {} |",
            o.server,
            o.transport.name(),
            o.payload_bytes,
            connected(o),
            ms(o.latency_us.p50),
            ms(o.latency_us.p99),
            ms(o.latency_us.max),
            checks(o),
            o.bytes.down_per_delivery,
            o.bytes.publish_up_per_message,
            cpu_per_delivery(o),
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Chat round trip (send, then see it arrive; one at a time)\n");
    let _ = writeln!(md, "| server | how | round trips | p50 | p90 | p99 | max | lost/dup/ooo |");
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|");
    for o in run.outcomes.iter().filter(|o| matches!(o.kind, Kind::RoundTrip | Kind::RoundTripInBand)) {
        let how = match o.kind {
            Kind::RoundTripInBand => format!("{} in-band send", o.transport.name()),
            _ => format!("POST, receive on {}", o.transport.name()),
        };
        let _ = writeln!(
            md,
            "| {} | {how} | {} | {} | {} | {} | {} | {} |",
            o.server,
            o.published,
            ms(o.latency_us.p50),
            ms(o.latency_us.p90),
            ms(o.latency_us.p99),
            ms(o.latency_us.max),
            checks(o),
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Idle connections\n");
    let _ = writeln!(
        md,
        "| server | transport | connections | RSS before (KiB) | RSS after (KiB) | RSS per connection (B) | \
         PSS per connection (B) | server CPU µs per connection-second | errors |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|");
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Idle) {
        let Some(memory) = &o.memory else {
            let _ = writeln!(
                md,
                "| {} | {} | {} | – | – | – | – | – | {} |",
                o.server,
                o.transport.name(),
                connected(o),
                o.note.as_deref().unwrap_or("no /proc data")
            );
            continue;
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.0} | {:.0} | {:.3} | {} |",
            o.server,
            o.transport.name(),
            connected(o),
            memory.rss_before_kib,
            memory.rss_after_kib,
            memory.rss_per_connection_bytes,
            memory.pss_per_connection_bytes,
            memory.idle_cpu_us_per_connection_s,
            o.connect_errors,
        );
    }
    md.push('\n');
    if others {
        md.push_str(&protocols::section(all));
    }
    let notes: Vec<String> = all
        .outcomes
        .iter()
        .filter(|o| o.kind != Kind::ScaleOut)
        .filter_map(|o| Some(format!("{} {}: {}", o.server, label(o), o.note.as_ref()?)))
        .collect();
    errors(&mut md, "Errors reported by the run", &notes);
    md
}

/// Unordered transports: when a message arrived against when it could be shown in
/// order (every earlier one in too).
fn in_order_table(md: &mut String, run: &Run) {
    let rows: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.in_order_us.is_some()).collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "Messages on streams of their own arrive in any order; a page shows them in order:\n");
    let _ = writeln!(md, "| transport | scenario | subscribers | arrived p50 / p99 | in order p50 / p99 |");
    let _ = writeln!(md, "|---|---|--:|--:|--:|");
    for o in rows {
        let in_order = o.in_order_us.clone().unwrap_or_default();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} / {} | {} / {} |",
            o.transport.name(),
            o.kind.name(),
            connected(o),
            ms(o.latency_us.p50),
            ms(o.latency_us.p99),
            ms(in_order.p50),
            ms(in_order.p99),
        );
    }
    md.push('\n');
}

fn label(o: &Outcome) -> String {
    let over = if o.http == Http::H1 { String::new() } else { format!(" over {}", o.http) };
    format!("{:?} {} ×{} {} B{over}", o.kind, o.transport.name(), o.subscribers, o.payload_bytes)
}

/// pushwire divided by nchan, same scenario, same run.
fn ratio_table(md: &mut String, run: &Run) {
    let find = |server: &str, o: &Outcome| {
        run.outcomes.iter().find(|p| {
            p.server == server && p.kind == o.kind && p.transport == o.transport && p.subscribers == o.subscribers
        })
    };
    let rows: Vec<(&Outcome, &Outcome)> = run
        .outcomes
        .iter()
        .filter(|o| o.kind == Kind::FanOut && o.server == "pushwire")
        .filter_map(|o| Some((o, find("nchan", o)?)))
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "### pushwire ÷ nchan (fan-out, same run; below 1 means pushwire needs less)\n");
    let _ = writeln!(
        md,
        "| transport | subscribers | p50 | p99 | delivered/s (above 1: pushwire delivers more) | server CPU per delivery | bytes in per delivery | both clean |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|");
    for (p, n) in rows {
        let cpu = match (p.server_cpu_us_per_1000_deliveries, n.server_cpu_us_per_1000_deliveries) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "–".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {cpu} | {} | {} |",
            p.transport.name(),
            p.subscribers,
            ratio(p.latency_us.p50 as f64, n.latency_us.p50 as f64),
            ratio(p.latency_us.p99 as f64, n.latency_us.p99 as f64),
            ratio(p.delivered_per_s, n.delivered_per_s),
            ratio(p.bytes.down_per_delivery, n.bytes.down_per_delivery),
            if p.clean() && n.clean() { "yes" } else { "**no**" },
        );
    }
    md.push('\n');
}

/// The highest step of each ramp that stayed clean with p99 ≤ 100 ms.
fn throughput_table(md: &mut String, run: &Run) {
    let ramps = ramps(run);
    if ramps.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "### Throughput ramp (publish rate rises step by step until p99 > 100 ms, a loss, or the publisher falls \
         behind)\n"
    );
    let _ = writeln!(
        md,
        "One message published is delivered once to every subscriber: deliveries/s = msg/s × subscribers. The CPU \
         column shows how the machine's cores were shared at the highest sustained step: server and load generator \
         together near the core count means the machine, not one of them, was the limit; a load generator busier \
         than the server means the ramp may have measured the tool.\n"
    );
    let _ = writeln!(
        md,
        "| server | transport | subscribers | highest sustained msg/s published | deliveries/s there | p99 there | \
         CPU there, cores: server / load generator | stopped at msg/s | why |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|---|");
    for ((server, transport), ramp) in ramps {
        let best = ramp.best;
        let why = ramp.stop.map_or("ramp ended".to_owned(), why_not_sustained);
        let _ = writeln!(
            md,
            "| {server} | {} | {} | {} | {} | {} | {} | {} | {why} |",
            transport.name(),
            ramp.steps[0].subscribers,
            best.map_or("–".to_owned(), |o| format!("{:.0}", o.achieved_rate)),
            best.map_or("–".to_owned(), |o| format!("{:.0}", o.delivered_per_s)),
            best.map_or("–".to_owned(), |o| ms(o.latency_us.p99)),
            best.map_or("–".to_owned(), cores),
            ramp.stop.map_or("–".to_owned(), |o| format!("{:.0}", o.target_rate)),
        );
    }
    md.push('\n');
}

/// Server and load-generator CPU during a measurement, in cores busy on average.
fn cores(o: &Outcome) -> String {
    let per_core =
        |cpu_ms: Option<f64>| opt(cpu_ms.filter(|_| o.duration_s > 0.0).map(|ms| ms / 1e3 / o.duration_s), 2);
    format!("{} / {}", per_core(o.server_cpu_ms), per_core(o.load_generator_cpu_ms))
}
