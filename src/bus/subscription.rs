//! One reader's position in the stream: its replay first, then the live feed.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::broadcast;
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::state::Replay;
use super::{Bus, Cursor, Delivery, Epoch, Gap, Message};

/// Replayed messages first, then live ones. Dropping it leaves the live feed at once.
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
    /// A subscription that will yield `replay`, then what `live` brings after it.
    /// `position` is where the bus stood when `live` joined.
    pub(super) fn new(bus: Bus, position: Cursor, live: broadcast::Receiver<Arc<Message>>, replay: Replay) -> Self {
        let last_seq = replay.messages.last().map_or(position.seq, |m| m.cursor.seq);
        let mut pending: VecDeque<Delivery> = replay.gap.map(Delivery::Gap).into_iter().collect();
        pending.extend(replay.messages.into_iter().map(Delivery::Message));
        Subscription { bus, epoch: position.epoch, pending, live, last_seq }
    }

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

    /// Where this subscription is: the cursor of the last message it will have
    /// yielded once its replay is through (or the newest message when it began).
    pub fn position(&self) -> Cursor {
        Cursor { epoch: self.epoch, seq: self.last_seq }
    }

    /// The gap this subscription opens with, if any.
    #[cfg(feature = "redis")]
    pub(super) fn opening_gap(&self) -> Option<Gap> {
        match self.pending.front() {
            Some(Delivery::Gap(gap)) => Some(*gap),
            _ => None,
        }
    }

    /// Drops the opening gap and replay, and waits for the live feed to pass `seq`
    /// instead: the cursor is real, published through another instance a moment ago.
    #[cfg(feature = "redis")]
    pub(super) fn wait_past(&mut self, seq: u64) {
        self.pending.clear();
        self.last_seq = seq;
    }

    /// Replaces the opening gap with `older` (consecutive, found elsewhere) and a
    /// smaller gap for what is still missing before them, if anything.
    #[cfg(feature = "redis")]
    pub(super) fn fill_opening_gap(&mut self, older: Vec<Arc<Message>>, after: Cursor) {
        let Some(first) = older.first() else { return };
        let still_missed = first.cursor.seq - (after.seq + 1);
        let gap = (still_missed > 0).then(|| Gap::evicted(still_missed, first));
        if matches!(self.pending.front(), Some(Delivery::Gap(_))) {
            self.pending.pop_front();
        }
        for message in older.into_iter().rev() {
            self.pending.push_front(Delivery::Message(message));
        }
        if let Some(gap) = gap {
            self.pending.push_front(Delivery::Gap(gap));
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
            let gap = Gap::evicted(skipped, &message);
            self.pending.push_back(Delivery::Message(message));
            return Some(Delivery::Gap(gap));
        }
        Some(Delivery::Message(message))
    }

    /// After the live channel dropped messages for this receiver, refills `pending`
    /// from the ring. Messages still in the channel are then skipped by `accept`.
    fn catch_up(&mut self) {
        let state = self.bus.lock();
        if !state.is_epoch(self.epoch) {
            // The bus restarted its stream; the live feed ends once drained.
            return;
        }
        let Replay { gap, messages } = state.replay_after(self.last_seq);
        drop(state);
        if let Some(last) = messages.last() {
            self.last_seq = last.cursor.seq;
        }
        self.pending.extend(gap.map(Delivery::Gap));
        self.pending.extend(messages.into_iter().map(Delivery::Message));
    }
}
