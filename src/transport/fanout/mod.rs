//! The fan-out: how every streaming connection (WebSocket, SSE) gets each new message,
//! and the one slow-consumer policy they all follow.
//!
//! Delivered by each subscriber's own task, a message to N subscribers wakes N tasks,
//! and each registers again with the bus's channel to read it. Instead a *shard* (one
//! task per tokio worker, so every core writes; `shard`) follows the bus and offers
//! each batch of messages that are ready together (`batch`) to the connections that
//! joined it, encoded once per transport. Each connection has an [`Outbox`]: the
//! shard hands the bytes to the transport's [`Sink`], which a WebSocket writes straight
//! into its socket (its task is not woken) and an SSE body leaves for hyper to take.
//!
//! A connection first sends what its own subscription holds (the history, or what it
//! missed; [`Outbox::catch_up`]), then joins a shard ([`Fanout::join`]). The shard
//! lets go of it ([`Release`]) when it is behind: it joined after the shard wrote a
//! message it has not had, or the shard's own feed had a gap. It then catches up
//! again from the bus where its client is, and joins again.
//!
//! # Slow consumers
//! The same rules hold for every streaming transport, enforced here and nowhere else:
//! - **Memory is bounded.** At most `--outbound-limit` bytes (plus one batch) wait in an
//!   outbox. A batch that would take it past that is not queued: the shard lets go
//!   ([`Release::Behind`]), and the connection catches up from the bus once its client
//!   has taken what waits. Nothing is lost while the history holds it.
//! - **A client that takes nothing is cut.** When bytes have waited in an outbox for
//!   `--slow-consumer-timeout` without the client taking any of them, the watchdog (one
//!   task, looking every quarter of that timeout) queues the transport's slow notice
//!   after them (WebSocket close 1013, SSE `event: slow`) and lets go with
//!   [`Release::Slow`]: the connection ends once the notice is out. If it has not
//!   ended [`SLOW_CONSUMER_GRACE`] later, its TCP connection is cut. The client
//!   resumes from its cursor and loses nothing the history still holds.
//!
//! # Lock order
//! A shard's `arrivals`, or the watchlist, before an outbox's lock; never the other
//! way round, and the bus's lock never under an outbox's. Each outbox lock is held for
//! a few pointer moves and a non-blocking write, never across an `.await`.

mod batch;
mod outbox;
mod shard;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, Weak};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use outbox::{Joined, Member};
pub(crate) use outbox::{Outbox, Sink, Taken};
use shard::Shard;

use crate::AppState;
use crate::bus::{Cursor, ResumeFrom, Subscription};
use crate::metrics::TransportMetrics;
use crate::server::Closer;

/// How long a slow consumer has to take its slow notice before its connection is cut.
pub(crate) const SLOW_CONSUMER_GRACE: Duration = Duration::from_secs(2);

/// The shards and the watchdog, started with the first connection.
#[derive(Default)]
pub(crate) struct Fanout {
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Round-robin over the shards.
    next: AtomicUsize,
    /// Every open outbox, joined or catching up, for the watchdog.
    watchlist: Arc<Watchlist>,
    watchdog: AtomicBool,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout").field("shards", &self.shards.get().map(Vec::len)).finish_non_exhaustive()
    }
}

/// Why a connection was let go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Release {
    /// The client is behind the shard: catch up from the bus, then join again.
    Behind,
    /// The bus's feed ended (a Redis stream restarted), or the server is shutting
    /// down: close the connection (an SSE stream ends here at shutdown).
    Ended,
    /// A slow consumer: its notice is queued last; close once it is out.
    Slow,
}

/// What became of a batch offered to an outbox.
pub(super) enum Offer {
    /// Written or queued: this many of the batch's last messages (the others it had);
    /// `deferred` when the sink did not take them all at once.
    Taken { messages: usize, deferred: bool },
    /// Not taken: the client is too far behind, or its socket failed.
    Refused,
    /// The connection has left, or was let go as a slow consumer.
    Gone,
}

impl Fanout {
    /// An outbox for a new connection whose client will be at `position` once what
    /// the outbox is first given (its catch-up) is sent, watched for slow consumers.
    pub(crate) fn open<S: Sink>(&self, state: &AppState, sink: S, position: Cursor, closer: Closer) -> Arc<Outbox<S>> {
        let outbox = Arc::new(Outbox::new(sink, position, closer));
        let weak: Weak<dyn Member> = Arc::downgrade(&outbox) as Weak<dyn Member>;
        lock(&self.watchlist).push(weak);
        if !self.watchdog.swap(true, Ordering::AcqRel) {
            state.tasks.spawn(watchdog(state.clone(), self.watchlist.clone()));
        }
        outbox
    }

    /// Hands `outbox` to a shard: from now on the shard writes new messages into it,
    /// starting after its position, until it lets go or the connection leaves.
    pub(crate) fn join<S: Sink>(&self, state: &AppState, outbox: &Arc<Outbox<S>>) {
        let shards = self.shards.get_or_init(|| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            (0..workers.max(1))
                .map(|_| {
                    let shard = Arc::new(Shard::default());
                    // Outside tokio's cooperative budget: under it, every socket after the
                    // 128th of a message would report "not ready", and its task would be
                    // woken to write after all. A turn's work is bounded by one batch.
                    state.tasks.spawn(tokio::task::unconstrained(shard::follow(shard.clone(), state.clone())));
                    shard
                })
                .collect()
        });
        let index = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        let joined: Joined = outbox.clone();
        let mut arrivals = lock(&shards[index].arrivals);
        if arrivals.closed {
            drop(arrivals);
            return shard::release(state, &joined, Release::Ended);
        }
        joined.joined(index);
        arrivals.outboxes.push(joined);
        drop(arrivals);
        shards[index].changed.notify_one();
    }

    /// Moves what `catching_up` still holds into `outbox`; once it holds nothing more,
    /// the connection joins a shard, which writes everything published from then on.
    pub(crate) fn keep_up<S: Sink>(
        &self,
        state: &AppState,
        outbox: &Arc<Outbox<S>>,
        catching_up: &mut Option<Subscription>,
        metrics: &TransportMetrics,
    ) {
        if let Some(subscription) = catching_up.as_mut()
            && outbox.catch_up(subscription, metrics, state.config.outbound_limit)
        {
            *catching_up = None;
            self.join(state, outbox);
        }
    }

    /// What woke a connection that writes its own socket: `None` to carry on (let go
    /// as behind, `catching_up` is now a subscription from where its client is), or the
    /// release that ends it.
    pub(crate) async fn woken<S: Sink>(
        state: &AppState,
        outbox: &Outbox<S>,
        catching_up: &mut Option<Subscription>,
    ) -> Option<Release> {
        match outbox.take_release() {
            Some(Release::Behind) => {
                let from = ResumeFrom::Cursor(outbox.position());
                *catching_up = Some(state.bus.subscribe_from(from).await);
                None
            }
            ending => ending,
        }
    }

    /// The connection is gone: nothing more is written into its outbox.
    pub(crate) fn leave<S: Sink>(&self, outbox: &Outbox<S>) {
        if let (Some(index), Some(shards)) = (Member::leave(outbox), self.shards.get()) {
            // The shard forgets it at once, so the socket closes with the connection.
            shards[index].changed.notify_one();
        }
    }
}

/// Every open outbox, for the watchdog; an entry goes when its connection has.
type Watchlist = Mutex<Vec<Weak<dyn Member>>>;

/// Looks over every open outbox four times per slow-consumer timeout until shutdown
/// (so a stall is caught between 1 and 1.25 timeouts), applying the slow-consumer
/// rule of the module docs.
async fn watchdog(state: AppState, watchlist: Arc<Watchlist>) {
    let timeout = state.config.slow_consumer_timeout;
    loop {
        tokio::select! {
            () = sleep(timeout / 4) => {}
            () = state.shutdown.cancelled() => return,
        }
        let now = Instant::now();
        let mut slow = Vec::new();
        lock(&watchlist).retain(|weak| {
            let Some(outbox) = weak.upgrade().filter(|outbox| !outbox.has_left()) else { return false };
            if let Some(closer) = outbox.stalled(now, timeout) {
                state.metrics.transport(outbox.transport()).slow_disconnect();
                slow.push((weak.clone(), closer));
            }
            true
        });
        for (weak, closer) in slow {
            let shutdown = state.shutdown.clone();
            state.tasks.spawn(async move {
                tokio::select! {
                    () = sleep(SLOW_CONSUMER_GRACE) => {}
                    () = shutdown.cancelled() => return,
                }
                if weak.upgrade().is_some_and(|outbox| !outbox.has_left()) {
                    closer.close();
                }
            });
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
