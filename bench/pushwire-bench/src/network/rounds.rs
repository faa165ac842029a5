//! The reconnect-and-resume and cold-start drivers of the network matrix: one
//! subscriber, round after round, each timed from the publish or the connect to the
//! message's arrival.

use std::sync::Arc;

use hdrhistogram::Histogram;

use super::DELIVERY_TIMEOUT;
use crate::clients::{Feed, Item, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::record::{Kind, Outcome, Transport};
use crate::scenario::{Bench, Load, empty_outcome};
use crate::wire::Traffic;

/// What the reconnect and cold-start drivers record per round.
struct Rounds {
    outcome: Outcome,
    histogram: Histogram<u64>,
}

impl Rounds {
    fn new(bench: &Bench<'_>, kind: Kind, transport: Transport, rounds: usize) -> Rounds {
        let load = Load { kind, transport, subscribers: 1, rate: 0.0, messages: rounds as u64, payload_bytes: 64 };
        let mut outcome = empty_outcome(&bench.server.facts.name, &load);
        outcome.link = bench.profile();
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

    fn finish(mut self, bench: &Bench<'_>) -> Outcome {
        self.outcome.latency_us = bench.latency(&self.histogram);
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
                    Item::Message(_) | Item::Foreign | Item::Reconnect(_) => {}
                }
            }
        }
    });
    waited.await.unwrap_or_else(|_| Err(format!("message {seq} did not arrive within {DELIVERY_TIMEOUT:?}")))
}

/// Reconnect and resume: live on the transport, then cut, publish, reconnect after
/// the browser's delay from the last id held, and time from the publish to its arrival.
pub(crate) async fn resume(bench: &Bench<'_>, transport: Transport, rounds: usize) -> Outcome {
    let mut result = Rounds::new(bench, Kind::Resume, transport, rounds);
    let traffic = Arc::new(Traffic::default());
    let endpoint = bench.subscriber_endpoint();
    let mut publisher = match Publisher::connect(&bench.publisher_endpoint(Kind::Resume), &traffic).await {
        Ok(publisher) => publisher,
        Err(e) => return with_error(bench, result, format!("publisher cannot connect: {e}")),
    };
    let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
    let stamp = |seq| Stamp { tag, seq, sent_ns: now_ns() }.payload(64);
    let mut cursor = match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
        Ok(id) => id,
        Err(e) => return with_error(bench, result, format!("primer not published: {e}")),
    };
    for round in 0..rounds as u64 {
        let (live, after_cut) = (2 * round, 2 * round + 1);
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(bench, result, format!("subscriber cannot connect: {e}")),
        };
        // Live first: a message through the open connection.
        let published = publisher.publish(&stamp(live)).await;
        match published {
            Ok(id) => cursor = id,
            Err(e) => return with_error(bench, result, format!("publish: {e}")),
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
            Err(e) => return with_error(bench, result, format!("publish: {e}")),
        };
        tokio::time::sleep(delay).await;
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(bench, result, format!("subscriber cannot reconnect: {e}")),
        };
        match await_message(&mut feed, tag, after_cut, &mut result.outcome).await {
            Ok(arrived) => result.record(arrived.saturating_sub(sent_ns) / 1000),
            Err(e) => result.fail(e),
        }
        cursor = id;
    }
    result.outcome.published = 2 * rounds as u64;
    result.finish(bench)
}

/// Cold start: a message is waiting; time from the start of a new subscriber's
/// connect (from the cursor before it) until the message arrives.
pub(crate) async fn cold_start(bench: &Bench<'_>, transport: Transport, rounds: usize) -> Outcome {
    let mut result = Rounds::new(bench, Kind::ColdStart, transport, rounds);
    let traffic = Arc::new(Traffic::default());
    let endpoint = bench.subscriber_endpoint();
    let mut publisher = match Publisher::connect(&bench.publisher_endpoint(Kind::ColdStart), &traffic).await {
        Ok(publisher) => publisher,
        Err(e) => return with_error(bench, result, format!("publisher cannot connect: {e}")),
    };
    let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
    for round in 0..rounds as u64 {
        let cursor = match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
            Ok(id) => id,
            Err(e) => return with_error(bench, result, format!("primer not published: {e}")),
        };
        if let Err(e) = publisher.publish(&Stamp { tag, seq: round, sent_ns: now_ns() }.payload(64)).await {
            return with_error(bench, result, format!("publish: {e}"));
        }
        let started_ns = now_ns();
        let mut feed = match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
            Ok(feed) => feed,
            Err(e) => return with_error(bench, result, format!("subscriber cannot connect: {e}")),
        };
        match await_message(&mut feed, tag, round, &mut result.outcome).await {
            Ok(arrived) => result.record(arrived.saturating_sub(started_ns) / 1000),
            Err(e) => result.fail(e),
        }
    }
    result.outcome.published = rounds as u64;
    result.finish(bench)
}

fn with_error(bench: &Bench<'_>, mut result: Rounds, error: String) -> Outcome {
    result.outcome.subscriber_errors += 1;
    result.outcome.note = Some(error);
    result.finish(bench)
}
