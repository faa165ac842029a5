//! The message bus: one ordered stream of chat messages with a bounded history.
//!
//! Transports only see [`Bus`] (publish, subscribe) and the [`Delivery`] values a
//! [`Subscription`] yields; the ring and the lock stay private here.
//!
//! # Ordering and resume policy
//! - Messages get dense sequence numbers in publish order; every subscriber receives
//!   them in that order, each at most once.
//! - [`Bus::subscribe`] takes the replay snapshot and joins the live feed under one
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
//! With the `redis` feature, `Bus::redis` builds the same bus around a Redis stream
//! shared by several instances (module `redis`): same ids, order and gap rules
//! everywhere, and [`PublishError::Unavailable`] when Redis cannot be reached.

mod cursor;
mod message;
#[cfg(feature = "redis")]
mod redis;
mod ring;

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex};

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

pub use cursor::{Cursor, Epoch, MalformedCursor};
pub use message::{Message, now_ms, websocket_text_frame};
#[cfg(feature = "redis")]
pub use redis::ConnectError;
use ring::{After, Ring};

/// A cheap-to-clone handle to one stream of messages.
///
/// # Examples
/// ```
/// use pushwire::bus::{Bus, Delivery};
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let bus = Bus::in_memory(200, 64 * 1024);
/// let hello = bus.publish("hello".to_owned()).await.unwrap();
///
/// // From a cursor: what follows it, then live messages.
/// let mut subscription = bus.subscribe(Some(&hello.id)).await;
/// bus.publish("world".to_owned()).await.unwrap();
/// match subscription.next().await {
///     Some(Delivery::Message(message)) => assert_eq!(message.body, "world"),
///     other => panic!("expected a message, got {other:?}"),
/// }
///
/// // A cursor the bus cannot place is a gap notice first, then the history.
/// let mut lost = bus.subscribe(Some("not-a-cursor")).await;
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
    /// Set when the bus is shared with other instances through Redis: publishes go
    /// there, and a reader task feeds `state` from it (see [`redis`]).
    #[cfg(feature = "redis")]
    redis: Option<redis::Link>,
    /// A std mutex, not tokio's: it is held for a few pointer moves and never across
    /// an `.await`. Publishing and subscribing both take it, which is what makes
    /// "snapshot then join the live feed" atomic.
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Fixed for an in-memory bus; a Redis-backed one adopts the shared stream's.
    epoch: Epoch,
    ring: Ring,
    next_seq: u64,
    /// Wakes live subscribers. Created with the ring's capacity (tokio rounds it up to
    /// a power of two): a receiver that lags further than the channel holds has also
    /// fallen out of the ring, which is a real gap.
    live: broadcast::Sender<Arc<Message>>,
}

/// Why a published body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// The body is empty or only white space.
    Empty,
    /// The body is longer than the limit, in bytes of UTF-8.
    TooLarge {
        /// The largest body accepted, in bytes.
        limit: usize,
    },
    /// The body contains a control character other than tab and newline.
    ControlCharacter,
    /// The shared message bus (Redis) cannot be reached; nothing was published.
    Unavailable,
}

impl fmt::Display for PublishError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublishError::Empty => f.write_str("message body is empty"),
            PublishError::TooLarge { limit } => write!(f, "message body exceeds {limit} bytes"),
            PublishError::ControlCharacter => f.write_str("message body contains a control character"),
            PublishError::Unavailable => f.write_str("the message bus (Redis) is unavailable; try again shortly"),
        }
    }
}

impl std::error::Error for PublishError {}

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
    /// The gap notice as a JSON object: `{"reason": "...", "missed": N|null, "cursor": "..."}`.
    pub fn to_json(&self) -> String {
        let missed = self.missed.map_or("null".to_owned(), |n| n.to_string());
        format!(r#"{{"reason":"{}","missed":{missed},"cursor":"{}"}}"#, self.reason.as_str(), self.resume)
    }
}

/// The cursor just before `message`: where a reader resumes to receive it next.
fn just_before(message: &Message) -> Cursor {
    Cursor { epoch: message.cursor.epoch, seq: message.cursor.seq - 1 }
}

/// What a subscription yields, in order.
#[derive(Debug, Clone)]
pub enum Delivery {
    /// The next message, shared by every subscriber (encoded once).
    Message(Arc<Message>),
    /// Messages were skipped; the following deliveries are all the bus still holds.
    Gap(Gap),
}

impl Bus {
    /// An in-memory bus retaining the last `history` messages.
    pub fn in_memory(history: usize, max_body_bytes: usize) -> Self {
        let (live, _) = broadcast::channel(history);
        let state = State { epoch: Epoch::random(), ring: Ring::new(history), next_seq: 1, live };
        let shared = Shared {
            max_body_bytes,
            state: Mutex::new(state),
            #[cfg(feature = "redis")]
            redis: None,
        };
        Bus { shared: Arc::new(shared) }
    }

    /// Checks `body` against the message rules, appends it and wakes every subscriber.
    pub async fn publish(&self, body: String) -> Result<Arc<Message>, PublishError> {
        validate_body(&body, self.shared.max_body_bytes)?;
        #[cfg(feature = "redis")]
        if let Some(link) = &self.shared.redis {
            return self.publish_to_stream(link, body).await;
        }
        let mut state = self.lock();
        let cursor = Cursor { epoch: state.epoch, seq: state.next_seq };
        let message = Arc::new(Message::new(cursor, body, now_ms()));
        state.next_seq += 1;
        state.ring.push(message.clone());
        // An error only means nobody is subscribed right now; the ring keeps the message.
        let _ = state.live.send(message.clone());
        Ok(message)
    }

    /// Subscribes from `cursor` (the wire form of a message id): first everything after
    /// it, then live messages. `None` replays the whole retained history.
    pub async fn subscribe(&self, cursor: Option<&str>) -> Subscription {
        let subscription = self.subscribe_locally(cursor);
        #[cfg(feature = "redis")]
        if let Some(link) = &self.shared.redis {
            return self.reconcile(link, subscription, cursor).await;
        }
        subscription
    }

    /// [`Bus::subscribe`] as far as this process's ring can tell. Synchronous, so the
    /// lock is never held across an `.await`.
    fn subscribe_locally(&self, cursor: Option<&str>) -> Subscription {
        // Parsed before the lock is taken: every subscriber of every worker waits on it.
        let cursor = cursor.map(|text| text.parse::<Cursor>());
        let state = self.lock();
        let live = state.live.subscribe();
        let (gap, replay) = match cursor.map(|parsed| resolve(parsed, &state)) {
            None => (None, state.ring.all()),
            Some(Ok(seq)) => match state.ring.after(seq) {
                After::Held(newer) => (None, newer),
                After::Evicted { missed, retained } => {
                    let resume = just_before(&retained[0]);
                    (Some(Gap { reason: GapReason::Evicted, missed: Some(missed), resume }), retained)
                }
            },
            Some(Err(reason)) => {
                let retained = state.ring.all();
                let resume = retained
                    .first()
                    .map_or(Cursor { epoch: state.epoch, seq: state.next_seq - 1 }, |first| just_before(first));
                (Some(Gap { reason, missed: None, resume }), retained)
            }
        };
        let last_seq = replay.last().map_or(state.next_seq - 1, |m| m.cursor.seq);
        let state_epoch = state.epoch;
        drop(state);
        let mut pending: VecDeque<Delivery> = gap.map(Delivery::Gap).into_iter().collect();
        pending.extend(replay.into_iter().map(Delivery::Message));
        Subscription { bus: self.clone(), epoch: state_epoch, pending, live, last_seq }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding the lock would leave the ring consistent (every
        // mutation is a single push), so a poisoned lock is still usable.
        self.shared.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The sequence number a parsed cursor points at, or why it points nowhere here.
fn resolve(parsed: Result<Cursor, MalformedCursor>, state: &State) -> Result<u64, GapReason> {
    let cursor = parsed.map_err(|MalformedCursor| GapReason::Malformed)?;
    if cursor.epoch != state.epoch {
        Err(GapReason::UnknownEpoch)
    } else if cursor.seq >= state.next_seq {
        Err(GapReason::Ahead)
    } else {
        Ok(cursor.seq)
    }
}

/// The message rules: non-empty, at most `limit` bytes, no control characters but
/// tab, newline and carriage return. Any other Unicode (emoji, other planes) is fine.
fn validate_body(body: &str, limit: usize) -> Result<(), PublishError> {
    if body.trim().is_empty() {
        return Err(PublishError::Empty);
    }
    if body.len() > limit {
        return Err(PublishError::TooLarge { limit });
    }
    if body.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) {
        return Err(PublishError::ControlCharacter);
    }
    Ok(())
}

/// One reader's position in the stream: replayed messages first, then live ones.
/// Dropping it leaves the live feed at once.
#[derive(Debug)]
pub struct Subscription {
    bus: Bus,
    /// The epoch the live feed belongs to; a Redis-backed bus may move to a new one.
    epoch: Epoch,
    pending: VecDeque<Delivery>,
    live: broadcast::Receiver<Arc<Message>>,
    /// The sequence number of the last message handed out (or skipped by a gap).
    last_seq: u64,
}

impl Subscription {
    /// The next delivery, waiting for one if needed. `None` when the live feed has
    /// ended: never for an in-memory bus; for a Redis-backed one, after the shared
    /// stream restarted under a new epoch (see the module docs).
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            match self.live.recv().await {
                Ok(message) => {
                    if let Some(delivery) = self.accept(message) {
                        return Some(delivery);
                    }
                }
                Err(RecvError::Lagged(_)) => self.catch_up(),
                Err(RecvError::Closed) => return None,
            }
        }
    }

    /// Where this subscription is: the cursor of the last message it will have
    /// yielded once its replay is through (or the newest message when it began).
    pub fn position(&self) -> Cursor {
        Cursor { epoch: self.epoch, seq: self.last_seq }
    }

    /// The next delivery if one is ready now, without waiting.
    pub fn try_next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.pending.pop_front() {
                return Some(delivery);
            }
            match self.live.try_recv() {
                Ok(message) => {
                    if let Some(delivery) = self.accept(message) {
                        return Some(delivery);
                    }
                }
                Err(TryRecvError::Lagged(_)) => self.catch_up(),
                Err(TryRecvError::Empty | TryRecvError::Closed) => return None,
            }
        }
    }

    /// Hands out a live message unless the replay already did.
    fn accept(&mut self, message: Arc<Message>) -> Option<Delivery> {
        if message.cursor.seq <= self.last_seq {
            return None;
        }
        let skipped = message.cursor.seq - self.last_seq - 1;
        self.last_seq = message.cursor.seq;
        if skipped > 0 {
            // Only a Redis-backed bus skips: entries trimmed before its reader saw them.
            let resume = just_before(&message);
            self.pending.push_back(Delivery::Message(message));
            return Some(Delivery::Gap(Gap { reason: GapReason::Evicted, missed: Some(skipped), resume }));
        }
        Some(Delivery::Message(message))
    }

    /// After the live channel dropped messages for this receiver, refills `pending`
    /// from the ring. Messages still in the channel are then skipped by `accept`.
    fn catch_up(&mut self) {
        let state = self.bus.lock();
        if state.epoch != self.epoch {
            // The bus restarted its stream; the live feed ends once drained.
            return;
        }
        let (gap, messages) = match state.ring.after(self.last_seq) {
            After::Held(newer) => (None, newer),
            After::Evicted { missed, retained } => {
                let resume = just_before(&retained[0]);
                (Some(Gap { reason: GapReason::Evicted, missed: Some(missed), resume }), retained)
            }
        };
        drop(state);
        if let Some(last) = messages.last() {
            self.last_seq = last.cursor.seq;
        }
        self.pending.extend(gap.map(Delivery::Gap));
        self.pending.extend(messages.into_iter().map(Delivery::Message));
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
        let mut sub = bus.subscribe(Some(&first.id)).await;
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
        let mut sub = bus.subscribe(None).await;
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
            (first.id.clone(), (GapReason::Evicted, Some(1))),
            (other_run.id.clone(), (GapReason::UnknownEpoch, None)),
            ("not-a-cursor".to_owned(), (GapReason::Malformed, None)),
        ];
        for (cursor, expected) in cases {
            let mut sub = bus.subscribe(Some(&cursor)).await;
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
        let mut sub = bus.subscribe(None).await;
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
        let mut sub = bus.subscribe(None).await;
        bus.publish("first".into()).await.unwrap();
        assert_eq!(seq_of(sub.try_next()), 1);
        // 8 more: the channel (capacity 8) keeps up exactly; 9 would lag it.
        for i in 0..8 {
            bus.publish(format!("m{i}")).await.unwrap();
        }
        let rest: Vec<u64> = std::iter::from_fn(|| sub.try_next()).map(|d| seq_of(Some(d))).collect();
        assert_eq!(rest, (2..=9).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn message_rules_refuse_empty_oversized_and_control_characters() {
        let bus = Bus::in_memory(4, 8);
        assert_eq!(bus.publish("  \n\t".into()).await.unwrap_err(), PublishError::Empty);
        assert_eq!(bus.publish("123456789".into()).await.unwrap_err(), PublishError::TooLarge { limit: 8 });
        assert_eq!(bus.publish("a\u{7}b".into()).await.unwrap_err(), PublishError::ControlCharacter);
        assert!(bus.publish("tab\there".into()).await.is_ok());
        assert!(bus.publish("🦀 ok".into()).await.is_ok());
    }
}
