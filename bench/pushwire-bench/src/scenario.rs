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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use emulated_link::Link;

use crate::clients::{Endpoint, Feed, Item, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::record::{Http, Kind, Latency, Memory, Outcome, Transport, WireBytes};
use crate::servers::{ProcSample, Server, machine_busy_ns, process_sample};
use crate::wire::{Dialer, Traffic};

/// Latency samples are recorded in microseconds up to this bound (larger saturate).
const MAX_LATENCY_US: u64 = 120_000_000;
/// Histogram shards: subscribers record into `index % SHARDS`, so thousands of tasks
/// rarely meet on one lock.
const SHARDS: usize = 32;
/// How long all subscribers together may take to connect.
const CONNECT_PHASE_TIMEOUT: Duration = Duration::from_secs(90);
/// After the last publish, how long to wait for deliveries still in flight.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The longest drain behind an emulated link.
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

/// The percentiles of a histogram of microseconds.
pub(crate) fn latency(histogram: &Histogram<u64>) -> Latency {
    Latency {
        samples: histogram.len(),
        p50: histogram.value_at_quantile(0.5),
        p90: histogram.value_at_quantile(0.9),
        p99: histogram.value_at_quantile(0.99),
        p999: histogram.value_at_quantile(0.999),
        max: histogram.max(),
        mean: histogram.mean(),
    }
}

/// What the subscriber tasks share.
struct Shared {
    tag: u32,
    closed_loop: bool,
    latency: Vec<Mutex<Histogram<u64>>>,
    /// Unordered transports: until each message could be shown in order.
    in_order: Option<Vec<Mutex<Histogram<u64>>>>,
    /// Distinct deliveries of this scenario's messages, all subscribers together.
    delivered: AtomicU64,
    /// `delivered` at which the waiting publisher is woken.
    target: AtomicU64,
    arrived: Notify,
    last_delivery_ns: AtomicU64,
    connected: AtomicUsize,
    connect_errors: AtomicUsize,
    ready: Notify,
    gaps: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    fn record_error(&self, error: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }
}

/// What one subscriber saw of the scenario's messages.
struct Tracker {
    messages: u64,
    seen: Vec<u64>,
    highest: Option<u64>,
    distinct: u64,
    duplicated: u64,
    out_of_order: u64,
    failed: bool,
    /// When the last of the messages arrived (all of them: `distinct == messages`).
    completed_ns: Option<u64>,
    /// Deliveries (responses, chunks, frames) that brought at least one new message.
    batches: u64,
    /// Unordered transports: messages that arrived ahead of an earlier one (seq → when
    /// sent), held as a page holds them until the earlier ones are in.
    held: Option<BTreeMap<u64, u64>>,
    /// The first seq not yet shown in order.
    next_in_order: u64,
}

impl Tracker {
    fn new(messages: u64) -> Tracker {
        Tracker {
            messages,
            seen: vec![0; messages.div_ceil(64) as usize],
            highest: None,
            distinct: 0,
            duplicated: 0,
            out_of_order: 0,
            failed: false,
            completed_ns: None,
            batches: 0,
            held: None,
            next_in_order: 0,
        }
    }

    /// Holds a new message sent at `sent_ns` until every earlier one is in; calls
    /// `shown(sent_ns)` for each message that this makes showable in order.
    fn show_in_order(&mut self, seq: u64, sent_ns: u64, mut shown: impl FnMut(u64)) {
        let Some(held) = self.held.as_mut() else { return };
        held.insert(seq, sent_ns);
        while let Some(sent_ns) = held.remove(&self.next_in_order) {
            shown(sent_ns);
            self.next_in_order += 1;
        }
    }

    /// Notes `seq`; true when it is new.
    fn see(&mut self, seq: u64) -> bool {
        if seq >= self.messages {
            return false;
        }
        let (word, bit) = ((seq / 64) as usize, 1u64 << (seq % 64));
        let slot = &mut self.seen[word];
        if *slot & bit != 0 {
            self.duplicated += 1;
            return false;
        }
        *slot |= bit;
        self.distinct += 1;
        if self.highest.is_some_and(|highest| seq < highest) {
            self.out_of_order += 1;
        }
        self.highest = self.highest.max(Some(seq));
        true
    }
}

/// Where the publisher's payloads go.
enum Sender {
    Http(Publisher),
    /// To subscriber 0's WebSocket, which sends them as frames.
    InBand(mpsc::Sender<String>),
}

/// The per-run context: the server, its address and the progress bar.
pub(crate) struct Bench<'a> {
    /// Where the publisher (and, without `subscribe_on`, the subscribers) connects.
    pub server: &'a mut Server,
    /// Scale-out: the instance the subscribers connect to, sharing `server`'s bus.
    pub subscribe_on: Option<&'a Server>,
    /// Scale-out: more server-side processes (redis-server) whose CPU counts too.
    pub also_measured: &'a [u32],
    pub progress: &'a ProgressBar,
    /// No new phase starts after this instant.
    pub deadline: Instant,
    /// Network matrix: the link every subscriber (and a round trip's publisher) is
    /// behind, with its profile's name.
    pub link: Option<(&'a str, Link)>,
    /// What the publisher's and subscribers' HTTP goes over; the servers must serve it
    /// ([`Server::addr_for`]).
    pub http: Http,
}

impl Bench<'_> {
    /// Where the publisher connects: on loopback, as a back end publishes, except for
    /// a round trip, which is a person's own message crossing their link.
    pub(crate) fn publisher_endpoint(&self, kind: Kind) -> Endpoint {
        let dialer = Dialer::new(self.addr(self.server));
        let own_message = matches!(kind, Kind::RoundTrip | Kind::RoundTripInBand);
        let dialer = match self.link {
            Some((_, link)) if own_message => dialer.with_link(link),
            _ => dialer,
        };
        Endpoint::new(self.server.facts.protocol, dialer, self.http)
    }

    /// Where the subscribers connect, behind the link if there is one.
    pub(crate) fn subscriber_endpoint(&self) -> Endpoint {
        let peer = self.subscribe_on.unwrap_or(&*self.server);
        let dialer = Dialer::new(self.addr(peer));
        let dialer = self.link.map_or(dialer.clone(), |(_, link)| dialer.with_link(link));
        Endpoint::new(peer.facts.protocol, dialer, self.http)
    }

    /// Where `server` serves [`Bench::http`].
    fn addr(&self, server: &Server) -> std::net::SocketAddr {
        // The matrix runs a step only on servers that serve its HTTP setting; the other
        // experiments use HTTP/1.1 in cleartext, which every server serves.
        server.addr_for(self.http).expect("the server serves the bench's HTTP setting")
    }

    /// CPU and memory of every server-side process together; `None` when one of them
    /// cannot be read, so a figure never silently leaves a process out.
    fn sample(&self) -> Option<ProcSample> {
        let mut sample = self.server.sample()?;
        if let Some(peer) = self.subscribe_on {
            sample.add(&peer.sample()?);
        }
        for &pid in self.also_measured {
            sample.add(&process_sample(pid)?);
        }
        Some(sample)
    }
}

/// Runs one publish-and-deliver measurement.
pub(crate) async fn deliver(bench: &mut Bench<'_>, load: &Load) -> Outcome {
    let endpoint = bench.publisher_endpoint(load.kind);
    let subscriber_endpoint = bench.subscriber_endpoint();
    let name = bench.server.facts.name.clone();
    let mut outcome = empty_outcome(&name, load);
    outcome.link = bench.link.map(|(profile, _)| profile.to_owned());
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
    let shared = Arc::new(Shared {
        tag: uuid::Uuid::new_v4().as_u128() as u32 | 1,
        closed_loop: matches!(load.kind, Kind::RoundTrip | Kind::RoundTripInBand),
        latency: shards(),
        in_order: (load.transport == Transport::WebTransportUnordered).then(shards),
        delivered: AtomicU64::new(0),
        target: AtomicU64::new(u64::MAX),
        arrived: Notify::new(),
        last_delivery_ns: AtomicU64::new(0),
        connected: AtomicUsize::new(0),
        connect_errors: AtomicUsize::new(0),
        ready: Notify::new(),
        gaps: AtomicU64::new(0),
        first_error: Mutex::new(None),
    });
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
        Some((_, link)) => (DRAIN_TIMEOUT + link.rtt * published as u32).min(MAX_LINK_DRAIN),
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
    outcome.in_order_us = shared.in_order.as_deref().map(|shards| latency(&merged(shards)));
    let mut completion = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
    let (mut batches, mut trackers) = (0, 0);
    for task in tasks {
        // A panicking subscriber task is a bug in this tool; let it surface.
        if let Some(tracker) = task.await.expect("subscriber task") {
            outcome.lost += published.saturating_sub(tracker.distinct);
            outcome.duplicated += tracker.duplicated;
            outcome.out_of_order += tracker.out_of_order;
            outcome.subscriber_errors += u64::from(tracker.failed);
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
    outcome.latency_us = latency(&histogram);
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

/// A histogram per shard, so subscribers on different threads seldom share a lock.
fn shards() -> Vec<Mutex<Histogram<u64>>> {
    (0..SHARDS)
        .map(|_| Mutex::new(Histogram::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds")))
        .collect()
}

/// The shards' histograms as one.
fn merged(shards: &[Mutex<Histogram<u64>>]) -> Histogram<u64> {
    let mut histogram = Histogram::<u64>::new_with_bounds(1, MAX_LATENCY_US, 3).expect("valid histogram bounds");
    for shard in shards {
        let shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        histogram.add(&*shard).expect("shards share the histogram bounds");
    }
    histogram
}

/// Waits until `wanted` messages have been delivered in all, `timeout` passes, or
/// nothing has arrived for `stall`.
async fn drain(shared: &Shared, wanted: u64, stall: Duration, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let before = shared.delivered.load(Ordering::SeqCst);
        wait_for(shared, wanted, stall.min(deadline.saturating_duration_since(Instant::now()))).await;
        let now = shared.delivered.load(Ordering::SeqCst);
        if now >= wanted || now == before || Instant::now() >= deadline {
            return;
        }
    }
}

/// Waits until `wanted` messages have been delivered in all, or `timeout` passes.
async fn wait_for(shared: &Shared, wanted: u64, timeout: Duration) {
    shared.target.store(wanted, Ordering::SeqCst);
    let deadline = tokio::time::Instant::now() + timeout;
    // A delivery that reaches the target between the check and the wait leaves a
    // permit in `arrived` (notify_one), so the wait cannot miss it.
    while shared.delivered.load(Ordering::SeqCst) < wanted {
        if tokio::time::timeout_at(deadline, shared.arrived.notified()).await.is_err() {
            break;
        }
    }
}

/// One subscriber: connect, report ready, then check every delivery until `stop`.
/// `None` when it never connected.
#[allow(clippy::too_many_arguments)]
async fn subscribe(
    endpoint: Endpoint,
    transport: Transport,
    cursor: String,
    traffic: Arc<Traffic>,
    inband: Option<mpsc::Receiver<String>>,
    shared: Arc<Shared>,
    index: usize,
    messages: u64,
    stop: CancellationToken,
) -> Option<Tracker> {
    let connect = Feed::connect(&endpoint, transport, &cursor, &traffic, inband);
    let mut feed = match tokio::select! { feed = connect => feed, () = stop.cancelled() => return None } {
        Ok(feed) => feed,
        Err(e) => {
            shared.record_error(format!("subscriber connect: {e}"));
            shared.connect_errors.fetch_add(1, Ordering::SeqCst);
            shared.ready.notify_one();
            return None;
        }
    };
    shared.connected.fetch_add(1, Ordering::SeqCst);
    shared.ready.notify_one();
    let mut tracker = Tracker::new(messages);
    let in_order_shard = shared.in_order.as_ref().map(|shards| &shards[index % SHARDS]);
    if in_order_shard.is_some() {
        tracker.held = Some(BTreeMap::new());
    }
    let mut items = Vec::new();
    let shard = &shared.latency[index % SHARDS];
    loop {
        items.clear();
        tokio::select! {
            () = stop.cancelled() => break,
            result = feed.next(&mut items) => if let Err(e) = result {
                shared.record_error(format!("subscriber: {e}"));
                tracker.failed = true;
                break;
            },
        }
        let arrived_ns = now_ns();
        let distinct_before = tracker.distinct;
        for item in &items {
            match item {
                Item::Message(stamp) if stamp.tag == shared.tag => {
                    if tracker.see(stamp.seq) {
                        let latency_us = arrived_ns.saturating_sub(stamp.sent_ns) / 1000;
                        shard.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(latency_us.max(1));
                        if let Some(in_order) = in_order_shard {
                            tracker.show_in_order(stamp.seq, stamp.sent_ns, |sent_ns| {
                                let latency_us = arrived_ns.saturating_sub(sent_ns) / 1000;
                                in_order.lock().unwrap_or_else(|p| p.into_inner()).saturating_record(latency_us.max(1));
                            });
                        }
                        shared.last_delivery_ns.fetch_max(arrived_ns, Ordering::SeqCst);
                        let delivered = shared.delivered.fetch_add(1, Ordering::SeqCst) + 1;
                        if delivered >= shared.target.load(Ordering::SeqCst) {
                            shared.arrived.notify_one();
                        }
                    }
                }
                Item::Message(_) | Item::Foreign => {}
                Item::Gap => {
                    shared.gaps.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        if tracker.distinct > distinct_before {
            tracker.batches += 1;
            if tracker.distinct == tracker.messages {
                tracker.completed_ns = Some(arrived_ns);
            }
        }
    }
    Some(tracker)
}

/// Holds `subscribers` idle connections and measures what they cost the server.
pub(crate) async fn idle(bench: &mut Bench<'_>, transport: Transport, subscribers: usize, hold: Duration) -> Outcome {
    let load = Load { kind: Kind::Idle, transport, subscribers, rate: 0.0, messages: 0, payload_bytes: 64 };
    let name = bench.server.facts.name.clone();
    let mut outcome = empty_outcome(&name, &load);
    outcome.http = bench.http;
    if bench.server.restartable()
        && let Err(e) = bench.server.restart()
    {
        return failed(outcome, format!("restart before the idle measurement: {e}"));
    }
    let endpoint = bench.subscriber_endpoint();
    let traffic = Arc::new(Traffic::default());
    let cursor = match Publisher::connect(&endpoint, &traffic).await {
        Ok(mut publisher) => match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
            Ok(id) => id,
            Err(e) => return failed(outcome, format!("primer not published: {e}")),
        },
        Err(e) => return failed(outcome, format!("publisher cannot connect: {e}")),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Some(before) = bench.server.sample() else {
        return failed(outcome, "the server's /proc entries cannot be read".into());
    };

    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new((0usize, None::<String>)));
    let mut tasks = Vec::with_capacity(subscribers);
    let connect_deadline = Instant::now() + CONNECT_PHASE_TIMEOUT;
    for _ in 0..subscribers {
        let (endpoint, cursor, traffic, stop) = (endpoint.clone(), cursor.clone(), traffic.clone(), stop.clone());
        let (connected, failures) = (connected.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
                Ok(mut feed) => {
                    connected.fetch_add(1, Ordering::SeqCst);
                    let mut items = Vec::new();
                    // Idle: nothing is published, but long-polls re-poll after their
                    // hold time and streams receive keep-alives; all of it counts.
                    while !stop.is_cancelled() {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            result = feed.next(&mut items) => if result.is_err() { break },
                        }
                    }
                }
                Err(e) => {
                    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.0 += 1;
                    failures.1.get_or_insert(e.to_string());
                }
            }
        }));
    }
    loop {
        let done = connected.load(Ordering::SeqCst) + failures.lock().unwrap_or_else(|p| p.into_inner()).0;
        bench.progress.set_message(format!("{name} idle {}: connecting {done}/{subscribers}", transport.name()));
        if done == subscribers || Instant::now() >= connect_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the server finish its per-connection setup (upgrades, subscriptions).
    tokio::time::sleep(Duration::from_millis(500) + Duration::from_micros(100) * subscribers as u32).await;
    let loaded = bench.server.sample();
    bench.progress.set_message(format!("{name} idle {}: holding {hold:?}", transport.name()));
    tokio::time::sleep(hold).await;
    let held = bench.server.sample();
    stop.cancel();
    for task in tasks {
        task.await.expect("idle connection task");
    }
    let connected = connected.load(Ordering::SeqCst);
    let (errors, first_error) = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
    outcome.connected = connected;
    outcome.connect_errors = errors as u64;
    outcome.note = first_error;
    if let (Some(loaded), Some(held)) = (loaded, held) {
        outcome.memory = Some(memory(before, loaded, held, connected, hold));
    }
    outcome
}

fn memory(before: ProcSample, loaded: ProcSample, held: ProcSample, connected: usize, hold: Duration) -> Memory {
    let per_connection = |after: u64, before: u64| (after as f64 - before as f64) * 1024.0 / connected.max(1) as f64;
    Memory {
        rss_before_kib: before.rss_kib,
        rss_after_kib: loaded.rss_kib,
        rss_per_connection_bytes: per_connection(loaded.rss_kib, before.rss_kib),
        pss_per_connection_bytes: per_connection(loaded.pss_kib, before.pss_kib),
        idle_cpu_us_per_connection_s: held.cpu_ns.saturating_sub(loaded.cpu_ns) as f64
            / 1e3
            / connected.max(1) as f64
            / hold.as_secs_f64(),
        held_s: hold.as_secs_f64(),
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_counts_duplicates_and_disorder() {
        let mut tracker = Tracker::new(10);
        for seq in [0, 1, 3, 2, 3, 9] {
            tracker.see(seq);
        }
        assert_eq!((tracker.distinct, tracker.duplicated, tracker.out_of_order), (5, 1, 1));
        assert!(!tracker.see(10), "a sequence number never published is not counted");
    }
}
