//! The bus's state and its rules: the one place that appends to the ring, wakes live
//! subscribers and decides what a resuming reader is owed. The in-memory bus and the
//! Redis bus both go through these methods, under [`super::Bus`]'s lock.

use std::sync::Arc;

use tokio::sync::broadcast;

use super::ring::{After, Ring};
use super::{Cursor, Epoch, Gap, GapReason, Message, ResumeFrom};

#[derive(Debug)]
pub(super) struct State {
    /// Fixed for an in-memory bus; a Redis-backed one adopts the shared stream's.
    epoch: Epoch,
    ring: Ring,
    history: usize,
    next_seq: u64,
    /// Wakes live subscribers. Created with the ring's capacity (tokio rounds it up to
    /// a power of two): a receiver that lags further than the channel holds has also
    /// fallen out of the ring, which is a real gap.
    live: broadcast::Sender<Arc<Message>>,
}

/// What a reader resuming from a position is owed: a gap notice if it missed
/// something, then these messages, oldest first.
pub(super) struct Replay {
    pub(super) gap: Option<Gap>,
    pub(super) messages: Vec<Arc<Message>>,
}

/// A message of another epoch turned up: the stream was restarted.
#[derive(Debug)]
pub(super) struct StaleEpoch;

impl State {
    pub(super) fn new(history: usize) -> Self {
        State {
            epoch: Epoch::random(),
            ring: Ring::new(history),
            history,
            next_seq: 1,
            live: broadcast::channel(history).0,
        }
    }

    /// The epoch followed and the last message held (seq 0 before the first).
    pub(super) fn position(&self) -> Cursor {
        Cursor { epoch: self.epoch, seq: self.next_seq - 1 }
    }

    /// The cursor the next message appended here will have.
    pub(super) fn next_cursor(&self) -> Cursor {
        Cursor { epoch: self.epoch, seq: self.next_seq }
    }

    /// Appends `message` and wakes live subscribers. A message already held is
    /// skipped; one past the next expected (entries trimmed before a Redis reader saw
    /// them) restarts the ring there, so it stays dense, and subscribers see the jump
    /// as an `evicted` gap.
    pub(super) fn append(&mut self, message: Arc<Message>) -> Result<(), StaleEpoch> {
        let seq = message.cursor.seq;
        if message.cursor.epoch != self.epoch {
            return Err(StaleEpoch);
        }
        if seq < self.next_seq {
            return Ok(());
        }
        if seq > self.next_seq {
            self.ring = Ring::new(self.history);
        }
        self.next_seq = seq + 1;
        self.ring.push(message.clone());
        // An error only means nobody is subscribed right now; the ring keeps the message.
        let _ = self.live.send(message);
        Ok(())
    }

    /// Starts `epoch` with an empty ring. Replacing the live sender ends every open
    /// subscription once it has drained what it was sent: their cursors belong to the
    /// old epoch, so their clients reconnect and are told of the gap.
    #[cfg(feature = "redis")]
    pub(super) fn restart(&mut self, epoch: Epoch) {
        *self = State { epoch, ..State::new(self.history) };
    }

    /// Joins the live feed and takes what a reader resuming from `from` is owed, in one
    /// step under the caller's lock: replay and live neither overlap nor leave a hole.
    pub(super) fn subscribe(&self, from: ResumeFrom) -> (broadcast::Receiver<Arc<Message>>, Replay) {
        let live = self.live.subscribe();
        let replay = match from {
            ResumeFrom::Start => Replay { gap: None, messages: self.ring.all() },
            ResumeFrom::Cursor(cursor) => match self.place(cursor) {
                Ok(seq) => self.replay_after(seq),
                Err(reason) => self.everything_after_gap(reason),
            },
            ResumeFrom::Malformed => self.everything_after_gap(GapReason::Malformed),
        };
        (live, replay)
    }

    /// What follows `seq` of this epoch: everything after it, or an `evicted` gap with
    /// the exact count missed and everything retained.
    pub(super) fn replay_after(&self, seq: u64) -> Replay {
        match self.ring.after(seq) {
            After::Held(messages) => Replay { gap: None, messages },
            After::Evicted { missed, retained } => {
                Replay { gap: Some(Gap::evicted(missed, &retained[0])), messages: retained }
            }
        }
    }

    /// Whether a live message belongs to the epoch a subscription follows.
    pub(super) fn is_epoch(&self, epoch: Epoch) -> bool {
        self.epoch == epoch
    }

    /// A gap of unknown size, then the whole retained history.
    fn everything_after_gap(&self, reason: GapReason) -> Replay {
        let messages = self.ring.all();
        let resume = messages.first().map_or(self.position(), |first| first.cursor.before());
        Replay { gap: Some(Gap { reason, missed: None, resume }), messages }
    }

    /// The sequence number `cursor` points at here, or why it points nowhere.
    fn place(&self, cursor: Cursor) -> Result<u64, GapReason> {
        if cursor.epoch != self.epoch {
            Err(GapReason::UnknownEpoch)
        } else if cursor.seq >= self.next_seq {
            Err(GapReason::Ahead)
        } else {
            Ok(cursor.seq)
        }
    }
}
