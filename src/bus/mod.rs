//! The message bus: one ordered stream of chat messages with a bounded history.
//!
//! Transports only see [`Bus`] (publish, subscribe) and the [`Delivery`] values a
//! [`Subscription`] yields; the ring and the lock stay private here, and the rules that
//! change them live in one place (`state`), which every backend calls. The bus holds
//! messages, not wire formats: a transport encodes a message through its own
//! [`WireForm`], cached on the message.
//!
//! # Ordering and resume policy
//! - Messages get dense sequence numbers in publish order; every subscriber receives
//!   them in that order, each at most once.
//! - [`Bus::subscribe_from`] takes the replay snapshot and joins the live feed under one
//!   lock, so there is neither a gap nor an overlap between replayed and live messages.
//! - Resuming from a cursor the bus no longer holds yields a [`Delivery::Gap`] first,
//!   then the whole retained history: the reader learns it missed something instead of
//!   silently skipping (what Tornado and nchan do). The same happens when a subscriber
//!   falls so far behind that the ring moved past it ([`GapReason::Evicted`]).
//! - A subscriber that falls behind the live feed but not past the ring loses nothing:
//!   it catches up from the ring (the live channel's `Lagged` is recovered, never
//!   surfaced).
//!
//! # Capacity and lag
//! The history ring holds exactly `history` messages: the one published `history`
//! messages ago is the oldest a cursor can resume after without a gap. Live messages
//! reach subscribers through a `tokio::sync::broadcast` channel created with the same
//! capacity, which tokio rounds up to the next power of two (200 becomes 256). A
//! subscriber that falls behind the channel gets `Lagged` from it; the subscription
//! then refills itself from the ring: if the ring still holds everything after its
//! last message, it loses nothing; if not, it yields a [`Delivery::Gap`] with
//! [`GapReason::Evicted`] and the exact count missed, then the whole retained
//! history. Since the channel holds at least as much as the ring, a subscriber never
//! lags the channel while the ring still holds all it needs but the channel does not.
//!
//! # The end of a subscription
//! [`Subscription::next`] returns `None` when the live feed it follows has ended:
//! - in memory, never: the feed lives as long as the bus, and a subscription holds
//!   the bus;
//! - through Redis, when the shared stream was restarted under a new epoch (Redis was
//!   flushed or lost its data): the subscription is drained first. The transports then
//!   end the connection, and the client's reconnect from its old cursor is told
//!   [`GapReason::UnknownEpoch`].
//!
//! The backend is chosen when the bus is built: in memory ([`Bus::in_memory`]), or with
//! the `redis` feature, `Bus::redis`, which builds the same bus around a Redis stream
//! shared by several instances (module `redis`): same ids, order and gap rules
//! everywhere, and [`PublishError::Unavailable`] when Redis cannot be reached.

mod cursor;
mod message;
#[cfg(feature = "redis")]
mod redis;
mod ring;
mod state;
mod subscription;

use std::sync::{Arc, Mutex, MutexGuard};

pub use cursor::{Cursor, Epoch, MalformedCursor, ResumeFrom};
pub use message::{Message, PublishError, WireForm, now_ms};
#[cfg(feature = "redis")]
pub use redis::ConnectError;
use state::State;
pub use subscription::Subscription;

/// A cheap-to-clone handle to one stream of messages.
///
/// # Examples
/// ```
/// use pushwire::bus::{Bus, Delivery, ResumeFrom};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = Bus::in_memory(200, 64 * 1024);
/// let hello = bus.publish("hello".to_owned()).await.unwrap();
///
/// // From a cursor: what follows it, then live messages.
/// let mut subscription = bus.subscribe_from(ResumeFrom::Cursor(hello.cursor)).await;
/// bus.publish("world".to_owned()).await.unwrap();
/// match subscription.next().await {
///     Some(Delivery::Message(message)) => assert_eq!(message.body, "world"),
///     other => panic!("expected a message, got {other:?}"),
/// }
///
/// // A cursor the bus cannot place is a gap notice first, then the history.
/// let mut lost = bus.subscribe_from(ResumeFrom::Malformed).await;
/// assert!(matches!(lost.try_next(), Some(Delivery::Gap(_))));
/// assert!(matches!(lost.try_next(), Some(Delivery::Message(m)) if m.body == "hello"));
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct Bus {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    max_body_bytes: usize,
    backend: Backend,
    /// A std mutex, not tokio's: it is held for a few pointer moves and never across
    /// an `.await`. Publishing and subscribing both take it, which is what makes
    /// "snapshot then join the live feed" atomic.
    state: Mutex<State>,
}

/// Where messages are ordered: chosen when the bus is built.
#[derive(Debug)]
enum Backend {
    /// In this process: a publish appends to the ring at once.
    Memory,
    /// In a Redis stream shared with other instances; a reader task feeds the ring.
    #[cfg(feature = "redis")]
    Redis(redis::Link),
}

impl Backend {
    /// Orders and appends a checked body.
    async fn publish(&self, bus: &Bus, body: String) -> Result<Arc<Message>, PublishError> {
        match self {
            Backend::Memory => Ok(bus.append_here(body)),
            #[cfg(feature = "redis")]
            Backend::Redis(link) => link.publish(bus, body).await,
        }
    }

    /// Corrects what this process's ring alone concluded for a new subscription (in
    /// memory there is nothing else to ask).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    async fn reconcile(&self, subscription: Subscription, from: ResumeFrom) -> Subscription {
        match self {
            Backend::Memory => subscription,
            #[cfg(feature = "redis")]
            Backend::Redis(link) => link.reconcile(subscription, from).await,
        }
    }
}

/// Why a subscriber is told it missed messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapReason {
    /// The cursor was valid here but the ring has moved past it.
    Evicted,
    /// The cursor belongs to another epoch: an earlier run, or another bus.
    UnknownEpoch,
    /// The cursor is not a cursor at all.
    Malformed,
    /// The cursor is of this epoch but ahead of anything published.
    Ahead,
}

impl GapReason {
    /// The reason's name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::Evicted => "evicted",
            GapReason::UnknownEpoch => "unknown_epoch",
            GapReason::Malformed => "malformed",
            GapReason::Ahead => "ahead",
        }
    }
}

/// Messages a subscriber will not receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// Why the messages are missing.
    pub reason: GapReason,
    /// How many messages were skipped, when known (only for [`GapReason::Evicted`]).
    pub missed: Option<u64>,
    /// Where to resume once the gap is acknowledged: just before the first message
    /// that follows it. A client that reconnects from here is not told the same gap
    /// twice (the SSE gap event carries it as its `id:` for that reason).
    pub resume: Cursor,
}

impl Gap {
    /// `missed` messages evicted just before `next`, the first one still held.
    fn evicted(missed: u64, next: &Message) -> Self {
        Gap { reason: GapReason::Evicted, missed: Some(missed), resume: next.cursor.before() }
    }

    /// The gap notice as a JSON object: `{"reason": "...", "missed": N|null, "cursor": "..."}`.
    pub fn to_json(&self) -> String {
        let missed = self.missed.map_or("null".to_owned(), |n| n.to_string());
        format!(r#"{{"reason":"{}","missed":{missed},"cursor":"{}"}}"#, self.reason.as_str(), self.resume)
    }
}

/// What a subscription yields, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The next message, shared by every subscriber (encoded once per transport).
    Message(Arc<Message>),
    /// Messages were skipped; the following deliveries are all the bus still holds.
    Gap(Gap),
}

impl Bus {
    /// An in-memory bus retaining the last `history` messages.
    pub fn in_memory(history: usize, max_body_bytes: usize) -> Self {
        Bus::with_backend(history, max_body_bytes, Backend::Memory)
    }

    fn with_backend(history: usize, max_body_bytes: usize, backend: Backend) -> Self {
        Bus { shared: Arc::new(Shared { max_body_bytes, backend, state: Mutex::new(State::new(history)) }) }
    }

    /// Checks `body` against the message rules, appends it and wakes every subscriber.
    pub async fn publish(&self, body: String) -> Result<Arc<Message>, PublishError> {
        message::validate_body(&body, self.shared.max_body_bytes)?;
        self.shared.backend.publish(self, body).await
    }

    /// Subscribes from `from`: first what the reader is owed (the history after its
    /// cursor, or a gap notice and the whole history), then live messages.
    pub async fn subscribe_from(&self, from: ResumeFrom) -> Subscription {
        let subscription = self.subscribe_here(from);
        self.shared.backend.reconcile(subscription, from).await
    }

    /// Appends a message to this process's ring (the in-memory backend's publish).
    fn append_here(&self, body: String) -> Arc<Message> {
        let mut state = self.lock();
        let message = Arc::new(Message::new(state.next_cursor(), body, now_ms()));
        // The message has this epoch's next cursor: appending cannot fail.
        state.append(message.clone()).expect("a message of the bus's own epoch");
        message
    }

    /// [`Bus::subscribe_from`] as far as this process's ring can tell. Synchronous, so
    /// the lock is never held across an `.await`.
    fn subscribe_here(&self, from: ResumeFrom) -> Subscription {
        let state = self.lock();
        let (live, replay) = state.subscribe(from);
        let position = state.position();
        drop(state);
        Subscription::new(self.clone(), position, live, replay)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock would leave the ring consistent (every
        // mutation is a single push), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bus(history: usize) -> Bus {
        Bus::in_memory(history, 1024)
    }

    fn seq_of(delivery: Option<Delivery>) -> u64 {
        match delivery {
            Some(Delivery::Message(m)) => m.cursor.seq,
            other => panic!("expected a message, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn subscribing_from_a_cursor_replays_the_rest_then_goes_live() {
        let bus = bus(10);
        let first = bus.publish("one".into()).await.unwrap();
        bus.publish("two".into()).await.unwrap();
        let mut sub = bus.subscribe_from(ResumeFrom::Cursor(first.cursor)).await;
        assert_eq!(seq_of(sub.next().await), 2);
        assert!(sub.try_next().is_none());
        bus.publish("three".into()).await.unwrap();
        assert_eq!(seq_of(sub.next().await), 3);
    }

    #[tokio::test]
    async fn without_a_cursor_the_whole_history_is_replayed() {
        let bus = bus(2);
        for body in ["a", "b", "c"] {
            bus.publish(body.into()).await.unwrap();
        }
        let mut sub = bus.subscribe_from(ResumeFrom::Start).await;
        assert_eq!(seq_of(sub.try_next()), 2);
        assert_eq!(seq_of(sub.try_next()), 3);
        assert!(sub.try_next().is_none());
    }

    #[tokio::test]
    async fn foreign_malformed_and_evicted_cursors_yield_a_gap_then_the_history() {
        let bus = bus(2);
        let first = bus.publish("a".into()).await.unwrap();
        for body in ["b", "c", "d"] {
            bus.publish(body.into()).await.unwrap();
        }
        let other_run = Bus::in_memory(2, 1024).publish("x".into()).await.unwrap();
        let cases = [
            (ResumeFrom::Cursor(first.cursor), (GapReason::Evicted, Some(1))),
            (ResumeFrom::Cursor(other_run.cursor), (GapReason::UnknownEpoch, None)),
            (ResumeFrom::Malformed, (GapReason::Malformed, None)),
        ];
        for (cursor, expected) in cases {
            let mut sub = bus.subscribe_from(cursor).await;
            let cursor = format!("{cursor:?}");
            match sub.try_next() {
                Some(Delivery::Gap(gap)) => assert_eq!((gap.reason, gap.missed), expected, "{cursor}"),
                other => panic!("expected a gap for {cursor}, got {other:?}"),
            }
            assert_eq!(seq_of(sub.try_next()), 3);
            assert_eq!(seq_of(sub.try_next()), 4);
        }
    }

    #[tokio::test]
    async fn a_lagging_subscriber_catches_up_from_the_ring_without_loss() {
        let bus = bus(4);
        let mut sub = bus.subscribe_from(ResumeFrom::Start).await;
        // Overflow the live channel (capacity 4) but not the ring's reach: 4 messages
        // are retained, the subscriber has seen none of 1..=4 yet, so 1..=4 are held.
        for i in 0..4 {
            bus.publish(format!("m{i}")).await.unwrap();
        }
        assert_eq!(seq_of(sub.try_next()), 1);
        for i in 4..7 {
            bus.publish(format!("m{i}")).await.unwrap();
        }
        // The channel lagged (7 sent, capacity 4); the ring holds 4..=7 and the
        // subscriber is at 1, so 2 and 3 are truly gone.
        match sub.try_next() {
            Some(Delivery::Gap(gap)) => {
                assert_eq!((gap.reason, gap.missed), (GapReason::Evicted, Some(2)));
                // Resuming from the gap's cursor continues at the first retained message.
                assert_eq!(gap.resume.seq, 3);
            }
            other => panic!("expected a gap, got {other:?}"),
        }
        let rest: Vec<u64> = std::iter::from_fn(|| sub.try_next()).map(|d| seq_of(Some(d))).collect();
        assert_eq!(rest, [4, 5, 6, 7]);
    }

    #[tokio::test]
    async fn a_subscriber_lagging_within_the_ring_loses_nothing() {
        let bus = bus(8);
        let mut sub = bus.subscribe_from(ResumeFrom::Start).await;
        bus.publish("first".into()).await.unwrap();
        assert_eq!(seq_of(sub.try_next()), 1);
        // 8 more: the channel (capacity 8) keeps up exactly; 9 would lag it.
        for i in 0..8 {
            bus.publish(format!("m{i}")).await.unwrap();
        }
        let rest: Vec<u64> = std::iter::from_fn(|| sub.try_next()).map(|d| seq_of(Some(d))).collect();
        assert_eq!(rest, (2..=9).collect::<Vec<_>>());
    }
}
