//! What loss does, in a packet run: per loss profile, transport and server, the
//! latency of each message as it arrived and (unordered WebTransport) as it could be
//! shown in order, the stalls over 1 s, the messages lost (none may be), and what the
//! link dropped and TCP retransmitted meanwhile. `loss-summary.md` is the one table of
//! it that COMPARISON's text shows.

use std::fmt::Write as _;

use super::{Marks, profile_order, servers};
use crate::format::{generated, ms_coarse as ms};
use crate::network::profiles::profile;
use crate::record::{Kind, Latency, Outcome, Run, Transport};

/// The loss tables of the steady fan-out and the burst.
pub(super) fn tables(run: &Run) -> String {
    let marks = Marks::of(run);
    let mut md = String::new();
    let _ = writeln!(
        md,
        "## Under loss\n\nPer message, from publish to arrival, and for the unordered WebTransport (each message on a \
         stream of its own) until it could be shown in order. Over 1 s: messages that took longer (arrived / in \
         order). Lost: messages that never arrived (none may); polls resent: long-polls sent again on a new connection, as \
         a browser does, because the server had closed the one they went out on (it let it idle out while the last \
         answer was still on its way). TCP retransmits: segments the server side's and the \
         client side's kernels sent again during the scenario; for WebTransport, the packets the server's QUIC declared \
         lost (it retransmits inside the endpoint, and a lost packet's frames go out again in a new one). Link: IP packets the link lost server → client / client → server (and \
         dropped at a full queue).{}\n",
        marks.busy_note()
    );
    for (kind, heading) in [(Kind::FanOut, "Steady fan-out under loss"), (Kind::Burst, "Burst under loss")] {
        table(&mut md, run, marks, kind, heading);
    }
    md
}

/// The outcomes of `kind` behind packet profiles, by profile, transport and server.
fn rows(run: &Run, kind: Kind) -> Vec<&Outcome> {
    let servers = servers(run);
    let mut rows: Vec<&Outcome> = run
        .outcomes
        .iter()
        .filter(|o| o.kind == kind && o.link.as_deref().and_then(profile).is_some_and(|p| p.is_packet()))
        .collect();
    rows.sort_by_key(|o| {
        let server = servers.iter().position(|s| *s == o.server);
        (o.link.as_deref().map_or(usize::MAX, profile_order), o.transport, server)
    });
    rows
}

fn table(md: &mut String, run: &Run, marks: Marks, kind: Kind, heading: &str) {
    let rows = rows(run, kind);
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(md, "### {heading}\n");
    let _ = writeln!(
        md,
        "| link | transport | server | arrived p50 / p99 / max | in order p50 / p99 / max | over 1 s | lost | TCP \
         retransmits server / client (QUIC: lost) | link lost down / up |"
    );
    let _ = writeln!(md, "|---|---|---|--:|--:|--:|--:|--:|--:|");
    for o in rows {
        let in_order = o.in_order_us.as_ref();
        let stalls = |l: &Latency| l.over_1s.map_or("–".to_owned(), |n| n.to_string());
        let over_1s = match in_order {
            Some(in_order) => format!("{} / {}", stalls(&o.latency_us), stalls(in_order)),
            None => stalls(&o.latency_us),
        };
        let (retransmits, dropped) = o.packet_link.as_ref().map_or(("–".to_owned(), "–".to_owned()), |f| {
            let queue = f.queue_drops_down + f.queue_drops_up;
            let queue = if queue > 0 { format!(" (+{queue} queue)") } else { String::new() };
            (
                match f.quic_lost_server {
                    Some(lost) => format!("QUIC {lost} lost"),
                    None => format!("{} / {}", f.tcp_retransmits_server, f.tcp_retransmits_client),
                },
                format!("{} / {}{queue}", f.lost_down, f.lost_up),
            )
        });
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {over_1s} | {} | {retransmits} | {dropped} |",
            o.link.as_deref().unwrap_or("–"),
            o.transport.name(),
            o.server,
            marks.cell(o, spread(&o.latency_us)),
            in_order.map_or("–".to_owned(), spread),
            if o.resent > 0 { format!("{} ({} polls resent)", o.lost, o.resent) } else { o.lost.to_string() },
        );
    }
    md.push('\n');
}

/// `p50 / p99 / max` in ms.
fn spread(l: &Latency) -> String {
    format!("{} / {} / {}", ms(l.p50), ms(l.p99), ms(l.max))
}

/// `loss-summary.md`: the steady fan-out's p99 per loss profile (rows) and server and
/// transport (columns); for the unordered transport, until shown in order.
pub(super) fn summary(run: &Run, json: &str) -> String {
    let marks = Marks::of(run);
    let rows = rows(run, Kind::FanOut);
    let mut columns: Vec<(String, Transport)> = Vec::new();
    let mut profiles: Vec<&str> = Vec::new();
    let servers = servers(run);
    for o in &rows {
        if !columns.contains(&(o.server.clone(), o.transport)) {
            columns.push((o.server.clone(), o.transport));
        }
        let name = o.link.as_deref().unwrap_or_default();
        if !profiles.contains(&name) {
            profiles.push(name);
        }
    }
    columns.sort_by_key(|(server, transport)| (servers.iter().position(|s| s == server), *transport));
    let mut md = generated(json);
    let _ = writeln!(
        md,
        "_Steady fan-out over the packet link: p99 from publish to delivery, ms (unordered WebTransport: until it \
         could be shown in order), and messages over 1 s where any were (`{json}`; all its tables are in \
         docs/results.md). ⚠ marks losses or errors.{} {}_\n",
        marks.busy_note(),
        super::scenarios(run),
    );
    let names: Vec<String> =
        columns.iter().map(|(server, transport)| format!("{server} {}", transport.name())).collect();
    let _ = writeln!(md, "| link | {} |", names.join(" | "));
    let _ = writeln!(md, "|---|{}", "--:|".repeat(columns.len()));
    for name in profiles {
        let cells: Vec<String> = columns
            .iter()
            .map(|(server, transport)| {
                let found = rows
                    .iter()
                    .find(|o| o.link.as_deref() == Some(name) && o.server == *server && o.transport == *transport);
                found.map_or("–".to_owned(), |o| {
                    let shown = o.in_order_us.as_ref().unwrap_or(&o.latency_us);
                    let stalls = shown.over_1s.filter(|&n| n > 0).map_or(String::new(), |n| format!(" ({n} > 1 s)"));
                    marks.cell(o, format!("{}{stalls}", ms(shown.p99)))
                })
            })
            .collect();
        let _ = writeln!(md, "| {name} | {} |", cells.join(" | "));
    }
    md
}
