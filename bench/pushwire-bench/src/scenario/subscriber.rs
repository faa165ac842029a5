//! One subscriber of a measurement: connect, then check every delivery (new or
//! repeated, in order or not) and record its latency into the shared histograms.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::latency::{SHARDS, shards};
use crate::clients::{Endpoint, Feed, Item};
use crate::payload::now_ns;
use crate::record::Transport;
use crate::wire::Traffic;

/// What the subscriber tasks share.
pub(super) struct Shared {
    pub tag: u32,
    pub closed_loop: bool,
    pub latency: Vec<Mutex<Histogram<u64>>>,
    /// Unordered transports: until each message could be shown in order.
    pub in_order: Option<Vec<Mutex<Histogram<u64>>>>,
    /// Distinct deliveries of this scenario's messages, all subscribers together.
    pub delivered: AtomicU64,
    /// `delivered` at which the waiting publisher is woken.
    target: AtomicU64,
    arrived: Notify,
    pub last_delivery_ns: AtomicU64,
    pub connected: AtomicUsize,
    pub connect_errors: AtomicUsize,
    pub ready: Notify,
    pub gaps: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    /// For a scenario of a new tag; `closed_loop` for round trips, `unordered` for a
    /// transport whose messages may overtake each other.
    pub(super) fn new(closed_loop: bool, unordered: bool) -> Shared {
        Shared {
            tag: uuid::Uuid::new_v4().as_u128() as u32 | 1,
            closed_loop,
            latency: shards(),
            in_order: unordered.then(shards),
            delivered: AtomicU64::new(0),
            target: AtomicU64::new(u64::MAX),
            arrived: Notify::new(),
            last_delivery_ns: AtomicU64::new(0),
            connected: AtomicUsize::new(0),
            connect_errors: AtomicUsize::new(0),
            ready: Notify::new(),
            gaps: AtomicU64::new(0),
            first_error: Mutex::new(None),
        }
    }

    pub(super) fn record_error(&self, error: String) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.get_or_insert(error);
    }
}

/// What one subscriber saw of the scenario's messages.
pub(super) struct Tracker {
    messages: u64,
    seen: Vec<u64>,
    highest: Option<u64>,
    pub distinct: u64,
    pub duplicated: u64,
    pub out_of_order: u64,
    pub failed: bool,
    /// Polls its long-poll feed sent again on a new connection.
    pub resent: u64,
    /// When the last of the messages arrived (all of them: `distinct == messages`).
    pub completed_ns: Option<u64>,
    /// Deliveries (responses, chunks, frames) that brought at least one new message.
    pub batches: u64,
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
            resent: 0,
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

/// Waits until `wanted` messages have been delivered in all, `timeout` passes, or
/// nothing has arrived for `stall`.
pub(super) async fn drain(shared: &Shared, wanted: u64, stall: Duration, timeout: Duration) {
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
pub(super) async fn wait_for(shared: &Shared, wanted: u64, timeout: Duration) {
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
pub(super) async fn subscribe(
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
                Item::Message(_) | Item::Foreign | Item::Reconnect(_) => {}
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
    tracker.resent = feed.resent();
    Some(tracker)
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
