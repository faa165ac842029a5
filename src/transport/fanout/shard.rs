//! A shard: one task per tokio worker that follows the bus and offers every batch of
//! messages to the connections that joined it.

use std::sync::Mutex;

use tokio::sync::Notify;

use super::batch::Batch;
use super::outbox::Joined;
use super::{Offer, Release, lock};
use crate::AppState;
use crate::bus::{Delivery, ResumeFrom};

/// What one shard task shares with the connections.
#[derive(Default)]
pub(super) struct Shard {
    /// Locked before any outbox, never after one (see the module docs).
    pub(super) arrivals: Mutex<Arrivals>,
    /// Woken when a connection joins or leaves.
    pub(super) changed: Notify,
}

#[derive(Default)]
pub(super) struct Arrivals {
    /// Connections that joined since the shard last looked.
    pub(super) outboxes: Vec<Joined>,
    /// The shard has stopped (shutdown): who joins now is let go at once.
    pub(super) closed: bool,
}

/// A shard's task: follows the bus until shutdown and writes every message into the
/// outboxes that joined it.
pub(super) async fn follow(shard: std::sync::Arc<Shard>, state: AppState) {
    let limit = state.config.outbound_limit;
    let mut joined: Vec<Joined> = Vec::new();
    let mut subscription = state.bus.subscribe_from(ResumeFrom::Start).await;
    loop {
        let delivery = tokio::select! {
            // Joins and leaves first: a connection that joined just before a message
            // gets it from here.
            biased;
            () = shard.changed.notified() => {
                // Arrivals first: one that joined and left since the last look goes
                // now, not at the next wake, and its socket closes with it.
                joined.append(&mut lock(&shard.arrivals).outboxes);
                joined.retain(|outbox| !outbox.has_left());
                continue;
            }
            delivery = subscription.next() => delivery,
            () = state.shutdown.cancelled() => {
                let mut arrivals = lock(&shard.arrivals);
                arrivals.closed = true;
                joined.append(&mut arrivals.outboxes);
                drop(arrivals);
                return release_all(&state, &mut joined, Release::Ended);
            }
        };
        match delivery {
            Some(Delivery::Message(first)) => {
                let (batch, gap) = Batch::gather(first, || subscription.try_next());
                offer(&state, &mut joined, &batch, limit);
                if gap {
                    release_all(&state, &mut joined, Release::Behind);
                }
            }
            // The shard fell behind the history: each connection learns its own gap.
            Some(Delivery::Gap(_)) => release_all(&state, &mut joined, Release::Behind),
            None => {
                release_all(&state, &mut joined, Release::Ended);
                subscription = state.bus.subscribe_from(ResumeFrom::Start).await;
            }
        }
    }
}

/// Offers `batch` to every joined connection; lets go of those that refuse it.
fn offer(state: &AppState, joined: &mut Vec<Joined>, batch: &Batch, limit: usize) {
    joined.retain(|outbox| match outbox.offer(batch, limit) {
        Offer::Taken { messages, deferred } => {
            let metrics = state.metrics.transport(outbox.transport());
            for message in &batch.messages()[batch.messages().len() - messages..] {
                metrics.delivered(message.created.elapsed());
            }
            if deferred {
                state.metrics.fanout_deferred();
            }
            true
        }
        Offer::Refused => {
            release(state, outbox, Release::Behind);
            false
        }
        Offer::Gone => false,
    });
}

pub(super) fn release_all(state: &AppState, joined: &mut Vec<Joined>, why: Release) {
    for outbox in joined.drain(..) {
        release(state, &outbox, why);
    }
}

pub(super) fn release(state: &AppState, outbox: &Joined, why: Release) {
    state.metrics.fanout_released();
    outbox.release(why);
}
