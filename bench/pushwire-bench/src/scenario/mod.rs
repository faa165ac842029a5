//! Running one measurement: connect subscribers, publish at a rate, check every
//! delivery, and read the server's CPU, memory and the bytes on the wire around it.
//!
//! Every scenario of the matrix is one [`Load`] run by [`deliver`], except idle cost
//! ([`idle`]). A run goes:
//! 1. publish a primer message and take its id as the subscribers' resume cursor, so
//!    they receive exactly what follows it (nothing replayed from earlier scenarios);
//! 2. connect the subscribers (bounded concurrency, bounded time) and let them settle;
//! 3. publish `messages` payloads at `rate` on one keep-alive connection, one request
//!    at a time so the server sees them in order (closed loop for round trips: the next
//!    goes out when the previous one has arrived), for at most [`PUBLISH_OVERRUN`]
//!    times the planned time;
//! 4. wait until every subscriber has every message, or the drain timeout (a ramp step:
//!    or until nothing has arrived for [`RAMP_DRAIN_STALL`]);
//! 5. disconnect and count lost, duplicated and out-of-order messages per subscriber.
//!
//! The context of a measurement is a [`Bench`] (`bench`); each subscriber a task of
//! `subscriber`; the latency histograms are `latency`'s; idle cost is `idle`'s.

mod bench;
mod idle;
pub(crate) mod latency;
mod subscriber;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::clients::Publisher;
use crate::payload::{Stamp, now_ns};
use crate::record::{Http, Kind, Latency, Outcome, Transport, WireBytes};
use crate::servers::{ProcSample, machine_busy_ns, process_sample};
use crate::wire::Traffic;

pub(crate) use bench::{Behind, Bench};
pub(crate) use idle::idle;
use latency::{MAX_LATENCY_US, latency, merged};
use subscriber::{Shared, drain, subscribe, wait_for};

/// How long all subscribers together may take to connect.
const CONNECT_PHASE_TIMEOUT: Duration = Duration::from_secs(90);
/// After the last publish, how long to wait for deliveries still in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest drain behind a link.
const MAX_LINK_DRAIN: Duration = Duration::from_secs(180);
/// A round trip slower than this counts its message as lost and moves on.
const ROUND_TRIP_TIMEOUT: Duration = Duration::from_secs(20);
/// An open-loop publisher stops after this multiple of its planned time (plus a
/// second): by then it has reached less than half its rate, which fails a ramp step
/// anyway, and publishing the rest would only lengthen the run.
const PUBLISH_OVERRUN: f64 = 2.0;
/// A ramp step's drain ends early when no delivery arrives for this long: its
/// subscribers have lost messages (lagged past the history), so waiting out
/// [`DRAIN_TIMEOUT`] would add nothing but time.
const RAMP_DRAIN_STALL: Duration = Duration::from_secs(3);

/// The shape of one measurement.
#[derive(Clone, Debug)]
pub(crate) struct Load {
    pub kind: Kind,
    pub transport: Transport,
    pub subscribers: usize,
    /// Messages per second (ignored by round trips, which are closed-loop).
    pub rate: f64,
    pub messages: u64,
    pub payload_bytes: usize,
}

/// Where the publisher's payloads go.
enum Sender {
    Http(Publisher),
    /// To subscriber 0's WebSocket, which sends them as frames.
    InBand(mpsc::Sender<String>),
}

/// Runs one publish-and-deliver measurement.
pub(crate) async fn deliver(bench: &mut Bench<'_>, load: &Load) -> Outcome {
    let endpoint = bench.publisher_endpoint(load.kind);
    let subscriber_endpoint = bench.subscriber_endpoint();
    let name = bench.server.facts.name.clone();
    let mut outcome = empty_outcome(&name, load);
    outcome.link = bench.profile();
    outcome.http = bench.http;
    let publish_traffic = Arc::new(Traffic::default());
    let subscriber_traffic = Arc::new(Traffic::default());

    // 1. The primer, whose id is where every subscriber starts.
    let mut publisher = match Publisher::connect(&endpoint, &publish_traffic).await {
        Ok(publisher) => publisher,
        Err(e) => return failed(outcome, format!("publisher cannot connect: {e}")),
    };
    let primer = Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(load.payload_bytes);
    let cursor = match publisher.publish(&primer).await {
        Ok(id) => id,
        Err(e) => return failed(outcome, format!("primer not published: {e}")),
    };

    // 2. Subscribers.
    let closed_loop = matches!(load.kind, Kind::RoundTrip | Kind::RoundTripInBand);
    let shared = Arc::new(Shared::new(closed_loop, !load.transport.ordered()));
    let stop = CancellationToken::new();
    let (inband_tx, mut inband_rx) = match load.kind {
        Kind::RoundTripInBand => {
            let (tx, rx) = mpsc::channel(1);
            (Some(tx), Some(rx))
        }
        _ => (None, None),
    };
    let mut tasks = Vec::with_capacity(load.subscribers);
    for index in 0..load.subscribers {
        let (endpoint, cursor, traffic) = (subscriber_endpoint.clone(), cursor.clone(), subscriber_traffic.clone());
        let (shared, stop, inband) = (shared.clone(), stop.clone(), if index == 0 { inband_rx.take() } else { None });
        let (transport, messages) = (load.transport, load.messages);
        tasks.push(tokio::spawn(async move {
            subscribe(endpoint, transport, cursor, traffic, inband, shared, index, messages, stop).await
        }));
    }
    let setup_started = subscriber_traffic.snapshot();
    let connect_deadline = Instant::now() + CONNECT_PHASE_TIMEOUT;
    loop {
        let notified = shared.ready.notified();
        let done = shared.connected.load(Ordering::SeqCst) + shared.connect_errors.load(Ordering::SeqCst);
        bench.progress.set_message(format!("{name} {}: connecting {done}/{}", describe(load), load.subscribers));
        if done == load.subscribers || Instant::now() >= connect_deadline {
            break;
        }
        let _ = tokio::time::timeout(Duration::from_millis(200), notified).await;
    }
    let connected = shared.connected.load(Ordering::SeqCst);
    outcome.connected = connected;
    outcome.connect_errors = (load.subscribers - connected) as u64;
    // Long-poll requests are written after their connection opens; give them (and the
    // servers' subscribe calls) time to land, so early messages are not measured
    // against a subscriber still on its way in. Resume cursors make it lossless anyway.
    tokio::time::sleep(Duration::from_millis(250) + Duration::from_micros(50) * load.subscribers as u32).await;
    let (setup_read, setup_written) = subscriber_traffic.snapshot();
    outcome.bytes.setup_per_connection =
        ((setup_read + setup_written) - (setup_started.0 + setup_started.1)) as f64 / connected.max(1) as f64;

    // 3. Publish.
    let mut sender = match inband_tx {
        Some(tx) => Sender::InBand(tx),
        None => Sender::Http(publisher),
    };
    let server_before = bench.sample();
    let busy_before = machine_busy_ns();
    let self_before = process_sample(std::process::id());
    let publish_before = publish_traffic.snapshot();
    let subscribers_before = subscriber_traffic.snapshot();
    let started = Instant::now();
    let started_ns = now_ns();
    let publish_until = (!shared.closed_loop).then(|| {
        started + Duration::from_secs_f64(load.messages as f64 / load.rate * PUBLISH_OVERRUN) + Duration::from_secs(1)
    });
    let mut published = 0u64;
    for seq in 0..load.messages {
        if Instant::now() >= bench.deadline {
            shared.record_error("time budget exhausted while publishing".into());
            break;
        }
        // Not an error: the achieved rate shows the publisher fell behind.
        if publish_until.is_some_and(|until| Instant::now() >= until) {
            break;
        }
        if !shared.closed_loop {
            tokio::time::sleep_until((started + Duration::from_secs_f64(seq as f64 / load.rate)).into()).await;
        }
        let payload = Stamp { tag: shared.tag, seq, sent_ns: now_ns() }.payload(load.payload_bytes);
        let sent = match &mut sender {
            Sender::Http(publisher) => publisher.publish(&payload).await.map(drop).map_err(|e| e.to_string()),
            Sender::InBand(tx) => tx.send(payload).await.map_err(|_| "the in-band socket is gone".to_owned()),
        };
        match sent {
            Ok(()) => published += 1,
            Err(e) => {
                outcome.publish_errors += 1;
                shared.record_error(format!("publish: {e}"));
            }
        }
        if shared.closed_loop {
            wait_for(&shared, published * connected as u64, ROUND_TRIP_TIMEOUT).await;
        }
        if seq % 64 == 0 {
            bench.progress.set_message(format!("{name} {}: published {seq}/{}", describe(load), load.messages));
        }
    }
    let publish_elapsed = started.elapsed();

    // 4. Drain. Behind a link, a transport may need a round trip per message (nchan's
    // long-poll answers one at a time), so the wait grows with the round trip.
    let expected = published * connected as u64;
    let drain_timeout = match bench.link {
        Some(behind) => (DRAIN_TIMEOUT + behind.rtt * published as u32).min(MAX_LINK_DRAIN),
        None => DRAIN_TIMEOUT,
    };
    let stall = if load.kind == Kind::Throughput { RAMP_DRAIN_STALL } else { drain_timeout };
    drain(&shared, expected, stall, drain_timeout).await;
    let delivered = shared.delivered.load(Ordering::SeqCst);
    let last_ns = shared.last_delivery_ns.load(Ordering::SeqCst);
    let window = if delivered >= expected && last_ns > started_ns {
        Duration::from_nanos(last_ns - started_ns)
    } else {
        started.elapsed()
    };
    let server_after = bench.sample();
    let busy_after = machine_busy_ns();
    let self_after = process_sample(std::process::id());
    let publish_after = publish_traffic.snapshot();
    let subscribers_after = subscriber_traffic.snapshot();

    // 5. Disconnect and count.
    stop.cancel();
    drop(sender);
    let histogram = merged(&shared.latency);
    outcome.in_order_us = shared.in_order.as_deref().map(|shards| bench.latency(&merged(shards)));
    let mut completion = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
    let (mut batches, mut trackers) = (0, 0);
    for task in tasks {
        // A panicking subscriber task is a bug in this tool; let it surface.
        if let Some(tracker) = task.await.expect("subscriber task") {
            outcome.lost += published.saturating_sub(tracker.distinct);
            outcome.duplicated += tracker.duplicated;
            outcome.out_of_order += tracker.out_of_order;
            outcome.subscriber_errors += u64::from(tracker.failed);
            outcome.resent += tracker.resent;
            if let Some(done) = tracker.completed_ns {
                completion.saturating_record((done.saturating_sub(started_ns) / 1000).max(1));
            }
            batches += tracker.batches;
            trackers += 1;
        }
    }
    if load.kind == Kind::Burst {
        outcome.completion_us = Some(latency(&completion));
        outcome.batches_per_subscriber = Some(batches as f64 / f64::from(trackers.max(1)));
    }
    outcome.published = published;
    outcome.achieved_rate = published as f64 / publish_elapsed.as_secs_f64().max(1e-9);
    outcome.latency_us = bench.latency(&histogram);
    outcome.expected = expected;
    outcome.delivered = delivered;
    outcome.gaps = shared.gaps.load(Ordering::SeqCst);
    outcome.duration_s = window.as_secs_f64();
    outcome.delivered_per_s = delivered as f64 / window.as_secs_f64().max(1e-9);
    if let (Some(before), Some(after)) = (server_before, server_after) {
        let cpu_ns = after.cpu_ns.saturating_sub(before.cpu_ns);
        outcome.server_cpu_ms = Some(cpu_ns as f64 / 1e6);
        outcome.server_cpu_us_per_1000_deliveries =
            (delivered > 0).then(|| cpu_ns as f64 / 1e3 / delivered as f64 * 1e3);
        if let (Some(per_1000), Some(user_share)) =
            (outcome.server_cpu_us_per_1000_deliveries, after.user_share_since(&before))
        {
            outcome.server_cpu_user_us_per_1000_deliveries = Some(per_1000 * user_share);
            outcome.server_cpu_system_us_per_1000_deliveries = Some(per_1000 * (1.0 - user_share));
        }
        outcome.other_load =
            other_load((busy_before, busy_after), cpu_ns, (self_before, self_after), started.elapsed().max(window));
    }
    if let (Some(before), Some(after)) = (self_before, self_after) {
        outcome.load_generator_cpu_ms = Some(after.cpu_ns.saturating_sub(before.cpu_ns) as f64 / 1e6);
    }
    let deliveries = delivered.max(1) as f64;
    let messages = published.max(1) as f64;
    outcome.bytes.down_per_delivery = (subscribers_after.0 - subscribers_before.0) as f64 / deliveries;
    outcome.bytes.up_per_delivery = (subscribers_after.1 - subscribers_before.1) as f64 / deliveries;
    outcome.bytes.publish_up_per_message = (publish_after.1 - publish_before.1) as f64 / messages;
    outcome.bytes.publish_down_per_message = (publish_after.0 - publish_before.0) as f64 / messages;
    outcome.note = shared.first_error.lock().unwrap_or_else(|p| p.into_inner()).take();
    outcome
}

/// The share of all cores busy with something other than the server and this tool.
fn other_load(
    busy: (Option<u64>, Option<u64>),
    server_cpu_ns: u64,
    this_tool: (Option<ProcSample>, Option<ProcSample>),
    elapsed: Duration,
) -> Option<f64> {
    let busy = busy.1?.saturating_sub(busy.0?);
    let tool = this_tool.1?.cpu_ns.saturating_sub(this_tool.0?.cpu_ns);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let other = busy.saturating_sub(server_cpu_ns + tool) as f64;
    Some(other / (elapsed.as_nanos() as f64 * cores))
}

/// An outcome with nothing measured yet.
pub(crate) fn empty_outcome(server: &str, load: &Load) -> Outcome {
    Outcome {
        server: server.to_owned(),
        kind: load.kind,
        transport: load.transport,
        http: Http::H1,
        subscribers: load.subscribers,
        connected: 0,
        payload_bytes: load.payload_bytes,
        target_rate: load.rate,
        published: 0,
        achieved_rate: 0.0,
        latency_us: Latency::default(),
        in_order_us: None,
        expected: 0,
        delivered: 0,
        lost: 0,
        duplicated: 0,
        out_of_order: 0,
        gaps: 0,
        publish_errors: 0,
        connect_errors: 0,
        subscriber_errors: 0,
        resent: 0,
        duration_s: 0.0,
        delivered_per_s: 0.0,
        server_cpu_ms: None,
        server_cpu_us_per_1000_deliveries: None,
        server_cpu_user_us_per_1000_deliveries: None,
        server_cpu_system_us_per_1000_deliveries: None,
        load_generator_cpu_ms: None,
        other_load: None,
        bytes: WireBytes::default(),
        memory: None,
        note: None,
        link: None,
        completion_us: None,
        batches_per_subscriber: None,
        packet_link: None,
    }
}

fn failed(mut outcome: Outcome, error: String) -> Outcome {
    outcome.publish_errors += 1;
    outcome.note = Some(error);
    outcome
}

pub(crate) fn describe(load: &Load) -> String {
    format!("{} {} {}×{}B", load.transport.name(), load.kind.name(), load.subscribers, load.payload_bytes)
}
