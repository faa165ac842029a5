//! The headline table that opens COMPARISON.md: per transport, the few figures a
//! reader compares first, pushwire beside nchan, all from one run. Generated like the
//! other tables, so the answer at the top cites the same JSON as the evidence below.

use std::fmt::Write as _;

use crate::format::generated;
use crate::record::{Kind, Outcome, Run, Transport};

/// The two fan-out sizes the table shows.
const SMALL: usize = 1_000;
const LARGE: usize = 10_000;

/// The Markdown fragment, or `None` when the run has no fan-out rows for both servers.
pub(crate) fn table(run: &Run, json: &str) -> Option<String> {
    let find = |server: &str, kind: Kind, transport: Transport, subscribers: usize| {
        run.outcomes
            .iter()
            .find(|o| o.server == server && o.kind == kind && o.transport == transport && o.subscribers == subscribers)
    };
    let measured = |transport| run.outcomes.iter().any(|o| o.transport == transport);
    let mut rows = String::new();
    for transport in Transport::ALL.into_iter().filter(|&transport| measured(transport)) {
        let both = |kind, subscribers, figure: &dyn Fn(&Outcome) -> Option<String>| {
            let value = |server| find(server, kind, transport, subscribers).and_then(figure);
            format!("{} · {}", value("pushwire").unwrap_or("–".into()), value("nchan").unwrap_or("–".into()))
        };
        let p99 = |o: &Outcome| Some(format!("{:.1} ms", o.latency_us.p99 as f64 / 1000.0));
        let cpu = |o: &Outcome| o.server_cpu_us_per_1000_deliveries.map(|us| format!("{:.1} µs", us / 1000.0));
        let bytes = |o: &Outcome| Some(format!("{:.0} B", o.bytes.down_per_delivery + o.bytes.up_per_delivery));
        let memory = |o: &Outcome| o.memory.as_ref().map(|m| format!("{:.1} KiB", m.rss_per_connection_bytes / 1024.0));
        let _ = writeln!(
            rows,
            "| {} | {} | {} | {} | {} | {} |",
            transport.name(),
            both(Kind::FanOut, SMALL, &p99),
            both(Kind::FanOut, LARGE, &p99),
            both(Kind::FanOut, LARGE, &cpu),
            both(Kind::FanOut, SMALL, &bytes),
            both(Kind::Idle, LARGE, &memory),
        );
    }
    find("nchan", Kind::FanOut, Transport::Sse, SMALL)?;
    let mut md = generated(json);
    let webtransport = if measured(Transport::WebTransport) {
        "; nchan serves no WebTransport (–). WebTransport's bytes are UDP payload (QUIC framing, acknowledgements \
         and encryption included)"
    } else {
        ""
    };
    let _ = writeln!(
        md,
        "_Each cell: **pushwire · nchan**, measured in the same run on loopback ({}, {} cores; `{json}`){webtransport}._\n",
        run.machine.cpu_model, run.machine.cores
    );
    let _ = writeln!(
        md,
        "| transport | fan-out p99, 1,000 subscribers | fan-out p99, 10,000 subscribers | server CPU per delivery \
         (10,000) | bytes on the wire per delivery (1,000; both directions) | memory per idle connection (10,000) |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|");
    md.push_str(&rows);
    Some(md)
}
