//! The section of `tables.md` that compares HTTP settings: each transport over HTTP/1.1
//! in cleartext, HTTP/1.1 over TLS and HTTP/2 over TLS (one subscriber per connection,
//! or several sharing one), so TLS's cost and HTTP/2's show apart. Written when a run
//! measured more than one setting; a combination a server cannot serve (nchan's
//! WebSocket over HTTP/2) is a row saying why.

use std::fmt::Write as _;

use crate::format::{checks, connected, cpu_per_delivery, ms, ratio};
use crate::record::{Http, Kind, Outcome, Run, Transport};

/// A row: a measurement, or a combination the server does not serve and why.
enum Row<'a> {
    Measured(&'a Outcome),
    NotServed { server: &'a str, transport: Transport, subscribers: usize, kind: Kind, http: Http, why: &'static str },
}

impl Row<'_> {
    fn http(&self) -> Http {
        match self {
            Row::Measured(o) => o.http,
            Row::NotServed { http, .. } => *http,
        }
    }
}

/// The rows of `kinds`, each scenario's settings together in the run's order of
/// settings; scenarios by size, then kind, transport and server. WebTransport, HTTP/3
/// whatever the setting, is in the main tables only.
fn rows<'a>(run: &'a Run, kinds: &[Kind]) -> Vec<Row<'a>> {
    let https = if run.http.is_empty() { vec![Http::H1] } else { run.http.clone() };
    let server_rank = |name: &str| run.servers.iter().position(|s| s.name == name).unwrap_or(usize::MAX);
    let mut scenarios: Vec<(usize, Kind, Transport, usize, &str)> = run
        .outcomes
        .iter()
        .filter(|o| kinds.contains(&o.kind) && !o.transport.quic())
        .map(|o| (o.subscribers, o.kind, o.transport, server_rank(&o.server), o.server.as_str()))
        .collect();
    scenarios.sort_by_key(|&(subscribers, kind, transport, rank, _)| {
        (subscribers, kinds.iter().position(|k| *k == kind), transport, rank)
    });
    scenarios.dedup();
    let mut rows = Vec::new();
    for (subscribers, kind, transport, _, server) in scenarios {
        let protocol = run.servers.iter().find(|s| s.name == server).map(|s| s.protocol);
        for &http in &https {
            let measured = run.outcomes.iter().find(|o| {
                o.server == server
                    && o.kind == kind
                    && o.transport == transport
                    && o.subscribers == subscribers
                    && o.http == http
            });
            match (measured, protocol.map(|p| p.serves(transport, http))) {
                (Some(o), _) => rows.push(Row::Measured(o)),
                (None, Some(Err(why))) => {
                    rows.push(Row::NotServed { server, transport, subscribers, kind, http, why });
                }
                (None, _) => {}
            }
        }
    }
    rows
}

/// The same scenario on the same server over cleartext HTTP/1.1, the baseline.
fn baseline<'a>(run: &'a Run, o: &Outcome) -> Option<&'a Outcome> {
    run.outcomes.iter().find(|b| {
        b.http == Http::H1
            && b.server == o.server
            && b.kind == o.kind
            && b.transport == o.transport
            && b.subscribers == o.subscribers
    })
}

/// `a ÷ b` of a figure against the baseline's, or `–`.
fn versus(run: &Run, o: &Outcome, figure: impl Fn(&Outcome) -> Option<f64>) -> String {
    match (figure(o), baseline(run, o).and_then(&figure)) {
        (Some(a), Some(b)) if o.http != Http::H1 => ratio(a, b),
        _ => "–".to_owned(),
    }
}

/// TCP connections the subscriptions took.
fn connections(o: &Outcome) -> usize {
    match o.http {
        Http::H2Tls { per_connection } => o.connected.div_ceil(per_connection),
        Http::H1 | Http::H1Tls => o.connected,
    }
}

/// The section: fan-out, idle subscriptions and round trips by HTTP setting.
pub(crate) fn section(run: &Run) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "### HTTP settings: cleartext HTTP/1.1, TLS, HTTP/2\n");
    let _ = writeln!(
        md,
        "Each transport over HTTP/1.1 in cleartext, HTTP/1.1 over TLS (TLS's cost), and HTTP/2 over TLS \
         (HTTP/2's), with one subscriber per connection or N subscribers' streams sharing one connection (as the \
         tabs of one browser share one). TLS 1.3, client rustls. Bytes are counted at the client's TCP sockets, \
         under TLS: TLS records and HTTP/2 frames included. `÷ h1`: the figure divided by the same server's over \
         cleartext HTTP/1.1 in this run. n/a: the server cannot serve it.\n"
    );

    fan_out(&mut md, run);
    idle(&mut md, run);
    round_trips(&mut md, run);
    md
}

fn fan_out(md: &mut String, run: &Run) {
    let rows = rows(run, &[Kind::FanOut]);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "#### Fan-out by HTTP setting\n");
    let _ = writeln!(
        md,
        "| server | transport | subscribers | HTTP | p50 | p99 | ÷ h1 | lost/dup/ooo | server CPU ms per 1,000 \
         deliveries (user share) | ÷ h1 | bytes in per delivery | ÷ h1 | bytes out per delivery |"
    );
    let _ = writeln!(md, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let o = match row {
            Row::Measured(o) => o,
            Row::NotServed { server, transport, subscribers, http, why, .. } => {
                let _ = writeln!(
                    md,
                    "| {server} | {} | {subscribers} | {} | n/a | n/a | | {why} | n/a | | n/a | | n/a |",
                    transport.name(),
                    http.label()
                );
                continue;
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {:.0} |",
            o.server,
            o.transport.name(),
            connected(o),
            o.http.label(),
            ms(o.latency_us.p50),
            ms(o.latency_us.p99),
            versus(run, o, |o| Some(o.latency_us.p99 as f64)),
            checks(o),
            cpu_per_delivery(o),
            versus(run, o, |o| o.server_cpu_us_per_1000_deliveries),
            o.bytes.down_per_delivery,
            versus(run, o, |o| Some(o.bytes.down_per_delivery)),
            o.bytes.up_per_delivery,
        );
    }
    md.push('\n');
}

fn idle(md: &mut String, run: &Run) {
    let rows = rows(run, &[Kind::Idle]);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "#### Idle subscriptions by HTTP setting\n");
    let _ = writeln!(
        md,
        "| server | transport | subscriptions | HTTP | TCP connections | RSS per subscription (B) | ÷ h1 | PSS per \
         subscription (B) | server CPU µs per subscription-second | errors |"
    );
    let _ = writeln!(md, "|---|---|--:|---|--:|--:|--:|--:|--:|--:|");
    for row in rows {
        let o = match row {
            Row::Measured(o) => o,
            Row::NotServed { server, transport, subscribers, http, why, .. } => {
                let _ = writeln!(
                    md,
                    "| {server} | {} | {subscribers} | {} | n/a | n/a | | n/a | n/a | {why} |",
                    transport.name(),
                    http.label()
                );
                continue;
            }
        };
        let memory = |figure: fn(&crate::record::Memory) -> f64, decimals: usize| {
            o.memory.as_ref().map_or("–".to_owned(), |m| format!("{:.decimals$}", figure(m)))
        };
        let errors = match (&o.memory, &o.note) {
            (None, Some(note)) => note.clone(),
            _ => o.connect_errors.to_string(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {errors} |",
            o.server,
            o.transport.name(),
            connected(o),
            o.http.label(),
            connections(o),
            memory(|m| m.rss_per_connection_bytes, 0),
            versus(run, o, |o| o.memory.as_ref().map(|m| m.rss_per_connection_bytes)),
            memory(|m| m.pss_per_connection_bytes, 0),
            memory(|m| m.idle_cpu_us_per_connection_s, 3),
        );
    }
    md.push('\n');
}

fn round_trips(md: &mut String, run: &Run) {
    let rows = rows(run, &[Kind::RoundTrip, Kind::RoundTripInBand]);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "#### Chat round trip by HTTP setting\n");
    let _ = writeln!(md, "| server | how | HTTP | round trips | p50 | p99 | ÷ h1 | max | lost/dup/ooo |");
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|");
    let how = |kind: Kind, transport: Transport| match kind {
        Kind::RoundTripInBand => format!("{} in-band send", transport.name()),
        _ => format!("POST, receive on {}", transport.name()),
    };
    for row in rows {
        let http = row.http();
        let o = match row {
            Row::Measured(o) => o,
            Row::NotServed { server, transport, kind, why, .. } => {
                let _ = writeln!(
                    md,
                    "| {server} | {} | {} | n/a | n/a | n/a | | n/a | {why} |",
                    how(kind, transport),
                    http.label()
                );
                continue;
            }
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            o.server,
            how(o.kind, o.transport),
            http.label(),
            o.published,
            ms(o.latency_us.p50),
            ms(o.latency_us.p99),
            versus(run, o, |o| Some(o.latency_us.p99 as f64)),
            ms(o.latency_us.max),
            checks(o),
        );
    }
    md.push('\n');
}
