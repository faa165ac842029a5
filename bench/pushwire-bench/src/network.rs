//! The network matrix: the three transports over emulated links (crate
//! `emulated-link`), on pushwire, nchan and Tornado's chat demo alike. Every
//! subscriber connection, and the publisher of a person's own message, crosses the
//! link; a back end's publisher stays on loopback. On loopback the transports differ
//! mainly in server CPU; here they differ in how many round trips they need.
//!
//! Scenarios, per profile and transport:
//! - steady fan-out: p50/p99 from publish to delivery;
//! - a burst published back to back: how long until each subscriber holds the last
//!   message, and in how many responses, chunks or frames the burst came;
//! - chat round trip: POST across the link, then receive (WebSocket: in-band too);
//! - reconnect and resume: the connection is cut, a message is published at once, and
//!   the client reconnects from its cursor as a browser would (SSE after the server's
//!   `retry:`); how long until it holds the message, with nothing lost;
//! - cold start: from the start of a connect to its first message;
//! - on the bandwidth-limited profiles, a rising rate of 1 KiB messages: the highest
//!   rate each transport sustains with p99 under 1 s, and the bytes on the wire.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use emulated_link::{Link, Rate};
use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use plotters::prelude::*;

use crate::clients::{Feed, Item, Publisher, Transport};
use crate::payload::{Stamp, now_ns};
use crate::report::{self, Run};
use crate::scenario::{self, Bench, Kind, Latency, Load, Outcome, empty_outcome};
use crate::servers::Server;
use crate::wire::Traffic;

/// A named link, modelled on what people have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub name: &'static str,
    pub link: Link,
}

/// Bits per second of a DevTools preset, which gives bytes per second.
fn devtools_rate(bytes_per_second: f64) -> Option<Rate> {
    Rate::from_bits_per_second((bytes_per_second * 8.0).round() as u64)
}

/// Round trips of 0, 20, 100 and 300 ms with unlimited bandwidth, and Chrome DevTools'
/// throttling presets (devtools-frontend's `NetworkManager`: "Fast 3G", now "Slow 4G",
/// 1.6 Mibit/s × 0.9 down, 750 kibit/s × 0.9 up, 150 ms × 3.75 latency; "Slow 3G", now
/// "3G", 500 kibit/s × 0.8 both ways, 400 ms × 5 latency), their latency taken as the RTT.
pub(crate) fn profiles() -> Vec<Profile> {
    let rtt = |ms| Link::with_rtt(Duration::from_millis(ms));
    vec![
        Profile { name: "loopback", link: Link::default() },
        Profile { name: "rtt-20ms", link: rtt(20) },
        Profile { name: "rtt-100ms", link: rtt(100) },
        Profile { name: "rtt-300ms", link: rtt(300) },
        Profile {
            name: "fast-3g",
            link: Link {
                rtt: Duration::from_micros(562_500),
                jitter: Duration::ZERO,
                down: devtools_rate(1.6 * 1024.0 * 1024.0 / 8.0 * 0.9),
                up: devtools_rate(750.0 * 1024.0 / 8.0 * 0.9),
            },
        },
        Profile {
            name: "slow-3g",
            link: Link {
                rtt: Duration::from_millis(2000),
                jitter: Duration::ZERO,
                down: devtools_rate(500.0 * 1024.0 / 8.0 * 0.8),
                up: devtools_rate(500.0 * 1024.0 / 8.0 * 0.8),
            },
        },
    ]
}

/// The sizes of the network matrix.
pub(crate) struct NetworkMatrix {
    /// Steady fan-out: (subscribers, messages per second, messages).
    fan_out: (usize, f64, u64),
    /// Burst: (subscribers, messages published back to back).
    burst: (usize, u64),
    round_trips: u64,
    resume_rounds: usize,
    cold_starts: usize,
    /// Constrained link: subscribers, rising rates, and how long each step lasts.
    constrained_subscribers: usize,
    constrained_rates: Vec<f64>,
    constrained_step: Duration,
}

/// A constrained-link step with p99 above this is not sustained.
const CONSTRAINED_P99_US: u64 = 1_000_000;
/// The payload of the constrained-link ramp.
const CONSTRAINED_PAYLOAD: usize = 1024;
/// The longest one delivery of the reconnect and cold-start scenarios may take.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(30);

impl NetworkMatrix {
    pub(crate) fn of(quick: bool) -> NetworkMatrix {
        if quick {
            NetworkMatrix {
                fan_out: (3, 10.0, 3),
                burst: (2, 5),
                round_trips: 1,
                resume_rounds: 1,
                cold_starts: 1,
                constrained_subscribers: 2,
                constrained_rates: vec![4.0],
                constrained_step: Duration::from_secs(1),
            }
        } else {
            NetworkMatrix {
                fan_out: (100, 10.0, 50),
                burst: (20, 50),
                round_trips: 5,
                resume_rounds: 3,
                cold_starts: 3,
                constrained_subscribers: 5,
                constrained_rates: vec![2.0, 4.0, 8.0, 16.0, 32.0, 64.0],
                constrained_step: Duration::from_secs(5),
            }
        }
    }
}

/// Runs the matrix on every server; returns the outcomes in the order they ran.
pub(crate) async fn run(
    servers: &mut [Server],
    matrix: &NetworkMatrix,
    profiles: &[Profile],
    transports: &[Transport],
    progress: &ProgressBar,
    deadline: Instant,
    announce: impl Fn(&Outcome),
) -> Vec<Outcome> {
    let mut outcomes = Vec::new();
    for profile in profiles {
        for step in plan(matrix, profile, transports) {
            for server in servers.iter_mut() {
                progress.inc(1);
                if !server.facts.protocol.transports().contains(&step.transport()) || Instant::now() >= deadline {
                    continue;
                }
                if let Step::Deliver(load) = &step
                    && load.kind == Kind::Constrained
                    && ramp_failed(&outcomes, &server.facts.name, profile.name, load.transport)
                {
                    continue;
                }
                let mut bench = Bench {
                    server,
                    subscribe_on: None,
                    also_measured: &[],
                    progress,
                    deadline,
                    link: Some((profile.name, profile.link)),
                };
                let outcome = match &step {
                    Step::Deliver(load) => scenario::deliver(&mut bench, load).await,
                    Step::Resume(transport) => resume(&bench, *transport, matrix.resume_rounds).await,
                    Step::ColdStart(transport) => cold_start(&bench, *transport, matrix.cold_starts).await,
                };
                announce(&outcome);
                outcomes.push(outcome);
                // Let the server close the last scenario's connections before the next.
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    outcomes
}

/// How many steps [`run`] takes per server, for the progress bar.
pub(crate) fn steps(matrix: &NetworkMatrix, profiles: &[Profile], transports: &[Transport]) -> usize {
    profiles.iter().map(|profile| plan(matrix, profile, transports).len()).sum()
}

enum Step {
    Deliver(Load),
    Resume(Transport),
    ColdStart(Transport),
}

impl Step {
    fn transport(&self) -> Transport {
        match self {
            Step::Deliver(load) => load.transport,
            Step::Resume(transport) | Step::ColdStart(transport) => *transport,
        }
    }
}

fn plan(matrix: &NetworkMatrix, profile: &Profile, transports: &[Transport]) -> Vec<Step> {
    let load = |kind, transport, subscribers, rate, messages, payload_bytes| {
        Step::Deliver(Load { kind, transport, subscribers, rate, messages, payload_bytes })
    };
    let mut steps = Vec::new();
    for &transport in transports {
        let (subscribers, rate, messages) = matrix.fan_out;
        steps.push(load(Kind::FanOut, transport, subscribers, rate, messages, 64));
        let (subscribers, messages) = matrix.burst;
        // Open loop at a rate no publisher reaches: back to back.
        steps.push(load(Kind::Burst, transport, subscribers, 100_000.0, messages, 64));
        steps.push(load(Kind::RoundTrip, transport, 1, 0.0, matrix.round_trips, 64));
        steps.push(Step::Resume(transport));
        steps.push(Step::ColdStart(transport));
    }
    if transports.contains(&Transport::WebSocket) {
        steps.push(load(Kind::RoundTripInBand, Transport::WebSocket, 1, 0.0, matrix.round_trips, 64));
    }
    if profile.link.down.is_some() {
        for &transport in transports {
            for &rate in &matrix.constrained_rates {
                let messages = (rate * matrix.constrained_step.as_secs_f64()).ceil() as u64;
                let subscribers = matrix.constrained_subscribers;
                steps.push(load(Kind::Constrained, transport, subscribers, rate, messages, CONSTRAINED_PAYLOAD));
            }
        }
    }
    steps
}

/// Whether a constrained-link step kept up: nothing lost, p99 under 1 s, and the
/// publisher at (nearly) its rate.
pub(crate) fn sustained(o: &Outcome) -> bool {
    o.clean() && o.latency_us.p99 <= CONSTRAINED_P99_US && o.achieved_rate >= 0.9 * o.target_rate
}

fn ramp_failed(outcomes: &[Outcome], server: &str, profile: &str, transport: Transport) -> bool {
    outcomes
        .iter()
        .filter(|o| o.server == server && o.kind == Kind::Constrained && o.transport == transport)
        .filter(|o| o.link.as_deref() == Some(profile))
        .any(|o| !sustained(o))
}

/// What the reconnect and cold-start drivers record per round.
struct Rounds {
    outcome: Outcome,
    histogram: Histogram<u64>,
}

impl Rounds {
    fn new(bench: &Bench<'_>, kind: Kind, transport: Transport, rounds: usize) -> Rounds {
        let load = Load { kind, transport, subscribers: 1, rate: 0.0, messages: rounds as u64, payload_bytes: 64 };
        let mut outcome = empty_outcome(&bench.server.facts.name, &load);
        outcome.link = bench.link.map(|(profile, _)| profile.to_owned());
        let histogram = Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds");
        Rounds { outcome, histogram }
    }

    fn record(&mut self, took_us: u64) {
        self.histogram.saturating_record(took_us.max(1));
        self.outcome.delivered += 1;
    }

    fn fail(&mut self, what: String) {
        self.outcome.lost += 1;
        self.outcome.note.get_or_insert(what);
    }

    fn finish(mut self) -> Outcome {
        self.outcome.latency_us = Latency::of(&self.histogram);
        self.outcome.connected = 1;
        self.outcome.expected = self.outcome.delivered + self.outcome.lost;
        self.outcome
    }
}

/// Waits until `feed` brings the message of `tag` and `seq`; counts a repeat of any
/// earlier message of `tag` as a duplicate, a gap as a gap.
async fn await_message(feed: &mut Feed, tag: u32, seq: u64, outcome: &mut Outcome) -> Result<u64, String> {
    let waited = tokio::time::timeout(DELIVERY_TIMEOUT, async {
        let mut items = Vec::new();
        loop {
            items.clear();
            feed.next(&mut items).await.map_err(|e| e.to_string())?;
            let arrived = now_ns();
            for item in &items {
                match item {
                    Item::Message(stamp) if stamp.tag == tag && stamp.seq == seq => return Ok(arrived),
                    Item::Message(stamp) if stamp.tag == tag => outcome.duplicated += 1,
                    Item::Gap => outcome.gaps += 1,
                    Item::Message(_) | Item::Foreign => {}
                }
            }
        }
    });
    waited.await.unwrap_or_else(|_| Err(format!("message {seq} did not arrive within {DELIVERY_TIMEOUT:?}")))
}

/// Reconnect and resume: live on the transport, then cut, publish, reconnect after
/// the browser's delay from the last id held, and time from the publish to its arrival.
async fn resume(bench: &Bench<'_>, transport: Transport, rounds: usize) -> Outcome {
    let mut result = Rounds::new(bench, Kind::Resume, transport, rounds);
    let traffic = Arc::new(Traffic::default());
    let endpoint = bench.subscriber_endpoint();
    let mut publisher = match Publisher::connect(&bench.publisher_endpoint(Kind::Resume), &traffic).await {
        Ok(publisher) => publisher,
        Err(e) => return with_error(result, format!("publisher cannot connect: {e}")),
    };
    let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
    let stamp = |seq| Stamp { tag, seq, sent_ns: now_ns() }.payload(64);
    let mut cursor = match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
        Ok(id) => id,
        Err(e) => return with_error(result, format!("primer not published: {e}")),
    };
    for round in 0..rounds as u64 {
        let (live, after_cut) = (2 * round, 2 * round + 1);
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(result, format!("subscriber cannot connect: {e}")),
        };
        // Live first: a message through the open connection.
        let published = publisher.publish(&stamp(live)).await;
        match published {
            Ok(id) => cursor = id,
            Err(e) => return with_error(result, format!("publish: {e}")),
        }
        if let Err(e) = await_message(&mut feed, tag, live, &mut result.outcome).await {
            result.fail(e);
            continue;
        }
        // Cut, publish at once, reconnect as a browser would, from the last id held.
        let delay = feed.reconnect_delay();
        drop(feed);
        let sent_ns = now_ns();
        let id = match publisher.publish(&stamp(after_cut)).await {
            Ok(id) => id,
            Err(e) => return with_error(result, format!("publish: {e}")),
        };
        tokio::time::sleep(delay).await;
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(result, format!("subscriber cannot reconnect: {e}")),
        };
        match await_message(&mut feed, tag, after_cut, &mut result.outcome).await {
            Ok(arrived) => result.record(arrived.saturating_sub(sent_ns) / 1000),
            Err(e) => result.fail(e),
        }
        cursor = id;
    }
    result.outcome.published = 2 * rounds as u64;
    result.finish()
}

/// Cold start: a message is waiting; time from the start of a new subscriber's
/// connect (from the cursor before it) until the message arrives.
async fn cold_start(bench: &Bench<'_>, transport: Transport, rounds: usize) -> Outcome {
    let mut result = Rounds::new(bench, Kind::ColdStart, transport, rounds);
    let traffic = Arc::new(Traffic::default());
    let endpoint = bench.subscriber_endpoint();
    let mut publisher = match Publisher::connect(&bench.publisher_endpoint(Kind::ColdStart), &traffic).await {
        Ok(publisher) => publisher,
        Err(e) => return with_error(result, format!("publisher cannot connect: {e}")),
    };
    let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
    for round in 0..rounds as u64 {
        let cursor = match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
            Ok(id) => id,
            Err(e) => return with_error(result, format!("primer not published: {e}")),
        };
        if let Err(e) = publisher.publish(&Stamp { tag, seq: round, sent_ns: now_ns() }.payload(64)).await {
            return with_error(result, format!("publish: {e}"));
        }
        let started_ns = now_ns();
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(result, format!("subscriber cannot connect: {e}")),
        };
        match await_message(&mut feed, tag, round, &mut result.outcome).await {
            Ok(arrived) => result.record(arrived.saturating_sub(started_ns) / 1000),
            Err(e) => result.fail(e),
        }
    }
    result.outcome.published = rounds as u64;
    result.finish()
}

fn with_error(mut result: Rounds, error: String) -> Outcome {
    result.outcome.subscriber_errors += 1;
    result.outcome.note = Some(error);
    result.finish()
}

// ---------------------------------------------------------------------------------
// The report: network.md and its plots.

/// The profiles' names in matrix order, for rows and plots.
fn profile_order(name: &str) -> usize {
    profiles().iter().position(|p| p.name == name).unwrap_or(usize::MAX)
}

/// The servers of the run, in the order they ran.
fn servers(run: &Run) -> Vec<String> {
    run.servers.iter().map(|s| s.name.clone()).collect()
}

/// `(profile, transport) → server → outcome` for one kind.
type Grid<'a> = BTreeMap<(usize, String, Transport), BTreeMap<String, &'a Outcome>>;

fn grid(run: &Run, kind: Kind) -> Grid<'_> {
    let mut grid = Grid::new();
    for o in run.outcomes.iter().filter(|o| o.kind == kind) {
        let Some(profile) = &o.link else { continue };
        grid.entry((profile_order(profile), profile.clone(), o.transport)).or_default().insert(o.server.clone(), o);
    }
    grid
}

/// A table with one row per profile and transport and one column per server.
fn table(md: &mut String, run: &Run, kind: Kind, heading: &str, cell: impl Fn(&Outcome) -> String) {
    let grid = grid(run, kind);
    if grid.is_empty() {
        return;
    }
    let servers = servers(run);
    let _ = writeln!(md, "### {heading}\n");
    let _ = writeln!(md, "| link | transport | {} |", servers.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "--:|".repeat(servers.len()));
    for ((_, profile, transport), by_server) in &grid {
        let cells: Vec<String> = servers
            .iter()
            .map(|server| by_server.get(server).map_or("–".to_owned(), |o| with_checks(o, cell(o))))
            .collect();
        let _ = writeln!(md, "| {profile} | {} | {} |", transport.name(), cells.join(" | "));
    }
    md.push('\n');
}

/// A cell, marked when the outcome lost, repeated or reordered anything.
fn with_checks(o: &Outcome, text: String) -> String {
    if o.clean() { text } else { format!("{text} ⚠ {}", report::checks(o)) }
}

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms >= 100.0 { format!("{ms:.0}") } else { format!("{ms:.1}") }
}

/// The Markdown fragment of a network run.
pub(crate) fn tables(run: &Run, json: &str) -> String {
    let mut md = report::provenance(run, json, |_| true);
    let _ = writeln!(
        md,
        "Every subscriber connection crosses an emulated link (`emulated-link`: half the RTT each way, one RTT to \
         connect, bandwidth per direction with TCP/IP headers counted; no packet loss, no slow start). The publisher \
         of the fan-out, burst, reconnect and cold-start scenarios is on loopback, as a back end would be; a round \
         trip's POST crosses the link too. Times in ms. ⚠ marks a cell with losses, duplicates, disorder or errors \
         (lost/dup/ooo).\n"
    );
    let _ = writeln!(md, "Link profiles: {}.\n", profile_list());
    table(&mut md, run, Kind::FanOut, "Steady fan-out: p50 / p99 from publish to delivery", |o| {
        format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.p99))
    });
    table(
        &mut md,
        run,
        Kind::Burst,
        "Burst: until each subscriber holds the last message, p50 / p99 (responses, chunks or frames per subscriber)",
        |o| {
            let done = o.completion_us.clone().unwrap_or_default();
            format!("{} / {} ({:.1})", ms(done.p50), ms(done.p99), o.batches_per_subscriber.unwrap_or(0.0))
        },
    );
    table(&mut md, run, Kind::RoundTrip, "Chat round trip: POST, then receive it, p50 / p99", |o| {
        format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.p99))
    });
    table(&mut md, run, Kind::RoundTripInBand, "Chat round trip in-band on the WebSocket, p50 / p99", |o| {
        format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.p99))
    });
    table(
        &mut md,
        run,
        Kind::Resume,
        "Reconnect and resume: from the publish during the cut to its arrival, p50 / max (SSE waits the server's `retry:`)",
        |o| format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.max)),
    );
    table(&mut md, run, Kind::ColdStart, "Cold start: from connect to the first message, p50 / max", |o| {
        format!("{} / {}", ms(o.latency_us.p50), ms(o.latency_us.max))
    });
    constrained_table(&mut md, run);
    md
}

fn profile_list() -> String {
    profiles()
        .iter()
        .map(|p| if p.link.is_emulated() { format!("`{}` {}", p.name, p.link) } else { format!("`{}` none", p.name) })
        .collect::<Vec<_>>()
        .join("; ")
}

/// One ramp's highest sustained step and its first failing one.
type Ramp<'a> = (Option<&'a Outcome>, Option<&'a Outcome>);

/// Per profile, transport and server: the highest sustained rate of 1 KiB messages and
/// the bytes on the wire per delivered message there.
fn constrained_table(md: &mut String, run: &Run) {
    let mut best: BTreeMap<(usize, String, Transport), BTreeMap<String, Ramp<'_>>> = BTreeMap::new();
    for o in run.outcomes.iter().filter(|o| o.kind == Kind::Constrained) {
        let Some(profile) = &o.link else { continue };
        let entry = best.entry((profile_order(profile), profile.clone(), o.transport)).or_default();
        let (sustained_best, first_failure) = entry.entry(o.server.clone()).or_default();
        if sustained(o) {
            if sustained_best.is_none_or(|b| b.target_rate < o.target_rate) {
                *sustained_best = Some(o);
            }
        } else if first_failure.is_none_or(|f| f.target_rate > o.target_rate) {
            *first_failure = Some(o);
        }
    }
    if best.is_empty() {
        return;
    }
    let servers = servers(run);
    let _ = writeln!(
        md,
        "### Constrained link: highest rate of 1 KiB messages with p99 under 1 s (bytes on the wire per delivery \
         there, both directions; what stopped the next step)\n"
    );
    let _ = writeln!(md, "| link | transport | {} |", servers.join(" | "));
    let _ = writeln!(md, "|---|---|{}", "--:|".repeat(servers.len()));
    for ((_, profile, transport), by_server) in &best {
        let cells: Vec<String> = servers
            .iter()
            .map(|server| match by_server.get(server) {
                None => "–".to_owned(),
                Some((ok, stop)) => {
                    let rate = ok.map_or("none".to_owned(), |o| {
                        format!(
                            "{} msg/s ({:.0} B)",
                            o.target_rate,
                            o.bytes.down_per_delivery + o.bytes.up_per_delivery
                        )
                    });
                    let why = stop.map_or(" (the highest rate tried)".to_owned(), |o| {
                        format!("; {} msg/s: {}", o.target_rate, why_not(o))
                    });
                    format!("{rate}{why}")
                }
            })
            .collect();
        let _ = writeln!(md, "| {profile} | {} | {} |", transport.name(), cells.join(" | "));
    }
    md.push('\n');
}

fn why_not(o: &Outcome) -> String {
    if !o.clean() {
        format!("lost/dup/ooo {}", report::checks(o))
    } else if o.latency_us.p99 > CONSTRAINED_P99_US {
        format!("p99 {} ms", ms(o.latency_us.p99))
    } else {
        format!("publisher reached {:.1} msg/s", o.achieved_rate)
    }
}

/// The one table COMPARISON.md shows in its text: per link and transport, the p99 of
/// the steady fan-out and of the burst, and the p50 of a reconnect, for every server.
pub(crate) fn summary(run: &Run, json: &str) -> String {
    let servers = servers(run);
    let (fan_out, burst, resume) = (grid(run, Kind::FanOut), grid(run, Kind::Burst), grid(run, Kind::Resume));
    let mut md = String::new();
    let _ = writeln!(md, "<!-- Generated by pushwire-bench from {json}. Do not edit: rerun or use --report-from. -->");
    let _ = writeln!(
        md,
        "_Each cell: {} (`{json}`; all its tables are in the appendix). ms; ⚠ marks losses or errors._\n",
        servers.iter().map(|s| format!("**{s}**")).collect::<Vec<_>>().join(" · ")
    );
    let _ = writeln!(
        md,
        "| link | transport | steady fan-out p99 | burst of {}: p99 until the last is held | reconnect and resume p50 |",
        run.outcomes.iter().find(|o| o.kind == Kind::Burst).map_or(0, |o| o.published)
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|");
    let cells = |grid: &Grid<'_>, key: &(usize, String, Transport), value: &dyn Fn(&Outcome) -> u64| {
        servers
            .iter()
            .map(|server| {
                grid.get(key).and_then(|by| by.get(server)).map_or("–".to_owned(), |o| with_checks(o, ms(value(o))))
            })
            .collect::<Vec<_>>()
            .join(" · ")
    };
    for key in fan_out.keys() {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            key.1,
            key.2.name(),
            cells(&fan_out, key, &|o| o.latency_us.p99),
            cells(&burst, key, &|o| o.completion_us.as_ref().map_or(0, |c| c.p99)),
            cells(&resume, key, &|o| o.latency_us.p50),
        );
    }
    md
}

/// Writes `network.md` (every table), `network-summary.md` (the one in COMPARISON's
/// text) and the plots of a network run into `dir`.
pub(crate) fn write(run: &Run, dir: &Path, json: &str) -> std::io::Result<()> {
    std::fs::write(dir.join("network.md"), tables(run, json))?;
    std::fs::write(dir.join("network-summary.md"), summary(run, json))?;
    let plot = |result: Result<(), String>| result.map_err(std::io::Error::other);
    plot(rtt_plot(
        run,
        Kind::FanOut,
        &dir.join("network-fanout.svg"),
        "Steady fan-out: p99 latency vs round-trip time",
        |o| Some(o.latency_us.p99),
    ))?;
    plot(rtt_plot(
        run,
        Kind::Burst,
        &dir.join("network-burst.svg"),
        "Burst of messages: p99 time until the last one is held vs round-trip time",
        |o| o.completion_us.as_ref().map(|c| c.p99),
    ))?;
    Ok(())
}

/// The round trip of a profile with unlimited bandwidth, in ms; `None` for the
/// constrained ones, which a line against RTT would misread.
fn unlimited_rtt_ms(profile: &str) -> Option<f64> {
    let p = profiles().into_iter().find(|p| p.name == profile)?;
    (p.link.down.is_none() && p.link.up.is_none()).then_some(p.link.rtt.as_secs_f64() * 1000.0)
}

fn rtt_plot(
    run: &Run,
    kind: Kind,
    path: &Path,
    title: &str,
    value_us: impl Fn(&Outcome) -> Option<u64>,
) -> Result<(), String> {
    let mut series = report::Series::new();
    for o in run.outcomes.iter().filter(|o| o.kind == kind) {
        let (Some(rtt), Some(us)) = (o.link.as_deref().and_then(unlimited_rtt_ms), value_us(o)) else { continue };
        series.entry((o.server.clone(), o.transport)).or_default().push((rtt, us as f64 / 1000.0));
    }
    for data in series.values_mut() {
        data.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let x_max = series.values().flatten().map(|p| p.0).fold(1.0f64, f64::max) * 1.05;
    // Log scale: nchan's long-poll falls behind by orders of magnitude, which a linear
    // axis would flatten the others against.
    let y_max = series.values().flatten().map(|p| p.1).fold(1.0f64, f64::max) * 2.0;
    let y_min = series.values().flatten().map(|p| p.1).fold(f64::MAX, f64::min).clamp(0.01, 1.0) * 0.5;
    let root = SVGBackend::new(path, (900, 540)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..x_max, (y_min..y_max).log_scale())
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc("round-trip time of the link (ms)")
        .y_desc("ms (log scale)")
        .y_label_formatter(&|y| format!("{y}"))
        .draw()
        .map_err(|e| e.to_string())?;
    report::draw_lines(&mut chart, &series)?;
    root.present().map_err(|e| e.to_string())
}
