//! How long a poll is held: one sweep for every waiting poll, not a timer per poll.
//!
//! A tokio timer per poll cost every exchange an insertion into the timer wheel and
//! its removal, and most polls are answered by a message long before their hold is
//! over. Here a poll waits on the bucket of the sweep tick at which its hold is over,
//! and one task wakes each bucket when its tick comes. So an idle poll is answered
//! after its hold time and at most one tick later: a twenty-fifth of the hold, kept
//! between 10 ms and 1 s (25 s, the default, is answered within 26 s).

use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, MissedTickBehavior};

use crate::AppState;

/// Buckets in the ring: a hold longer than this many ticks (only a hold beyond its
/// default, with a 1 s tick) wakes its poll once per lap, which then waits again.
const BUCKETS: usize = 64;

/// The deadlines of every held poll.
#[derive(Debug)]
pub struct HoldSweep {
    tick: Duration,
    buckets: [Notify; BUCKETS],
    /// When the sweep began (with the first poll): tick `n` is at `start + n × tick`.
    start: OnceLock<Instant>,
    /// The last tick swept: a poll whose tick is at most this is over. `u64::MAX`
    /// once the server is stopping, when every held poll is answered at once.
    swept: AtomicU64,
}

impl HoldSweep {
    /// The sweep for polls held `hold`.
    pub fn new(hold: Duration) -> Self {
        HoldSweep {
            tick: (hold / 25).clamp(Duration::from_millis(10), Duration::from_secs(1)),
            buckets: std::array::from_fn(|_| Notify::new()),
            start: OnceLock::new(),
            swept: AtomicU64::new(0),
        }
    }

    /// Resolves when a poll that begins now has been held its hold time (at most a
    /// tick more), or at once when the server is stopping.
    pub async fn over(&self, state: &AppState) {
        let start = *self.start.get_or_init(|| {
            let start = Instant::now();
            state.tasks.spawn(sweep(state.clone(), start));
            start
        });
        let held_until = Instant::now() + state.config.long_poll_hold - start;
        // The first tick at or after the end of the hold (nanoseconds fit in 64 bits
        // for five centuries).
        let due = (held_until.as_nanos() as u64).div_ceil(self.tick.as_nanos() as u64);
        let bucket = &self.buckets[due as usize % BUCKETS];
        loop {
            let mut woken = pin!(bucket.notified());
            // Listening before looking: a sweep after the first poll wakes this one,
            // and one before it is seen here.
            let swept_or_woken = poll_fn(|cx| match woken.as_mut().poll(cx) {
                Poll::Pending if self.swept.load(Ordering::Acquire) < due => Poll::Pending,
                _ => Poll::Ready(()),
            });
            swept_or_woken.await;
            if self.swept.load(Ordering::Acquire) >= due {
                return;
            }
            // Woken by an earlier lap of the ring: wait on the bucket again.
        }
    }
}

/// Wakes each tick's bucket as the tick comes, and every bucket when the server
/// stops.
async fn sweep(state: AppState, start: Instant) {
    let holds = &state.held_polls;
    let mut ticks = tokio::time::interval_at(start + holds.tick, holds.tick);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = state.shutdown.cancelled() => {
                holds.swept.store(u64::MAX, Ordering::Release);
                holds.buckets.iter().for_each(Notify::notify_waiters);
                return;
            }
        }
        // Every tick passed since the last sweep, should this one come late.
        let now = ((Instant::now() - start).as_nanos() / holds.tick.as_nanos()) as u64;
        let last = holds.swept.swap(now, Ordering::AcqRel);
        for tick in (last + 1..=now).take(BUCKETS) {
            holds.buckets[tick as usize % BUCKETS].notify_waiters();
        }
    }
}
