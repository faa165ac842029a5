//! The bounded history: the last `capacity` messages, oldest first.

use std::collections::VecDeque;
use std::sync::Arc;

use super::Message;

/// A ring of the most recent messages with dense sequence numbers, so finding the
/// messages after a sequence number is index arithmetic, never a scan.
#[derive(Debug)]
pub(super) struct Ring {
    messages: VecDeque<Arc<Message>>,
    capacity: usize,
}

/// What the ring holds after a given sequence number.
#[derive(Debug)]
pub(super) enum After {
    /// Everything after the position is still held (possibly nothing yet).
    Held(Vec<Arc<Message>>),
    /// `missed` messages after the position were evicted; the rest is everything retained.
    Evicted { missed: u64, retained: Vec<Arc<Message>> },
}

impl Ring {
    pub(super) fn new(capacity: usize) -> Self {
        assert!(capacity > 0, "history capacity must be at least 1");
        Ring { messages: VecDeque::with_capacity(capacity), capacity }
    }

    /// Appends the next message, evicting the oldest once full.
    pub(super) fn push(&mut self, message: Arc<Message>) {
        debug_assert!(self.last_seq().is_none_or(|last| message.cursor.seq == last + 1));
        if self.messages.len() == self.capacity {
            self.messages.pop_front();
        }
        self.messages.push_back(message);
    }

    pub(super) fn last_seq(&self) -> Option<u64> {
        self.messages.back().map(|m| m.cursor.seq)
    }

    /// Everything retained, oldest first.
    pub(super) fn all(&self) -> Vec<Arc<Message>> {
        self.messages.iter().cloned().collect()
    }

    /// The messages with a sequence number greater than `seq`.
    /// The caller guarantees `seq` is not ahead of the last published message.
    pub(super) fn after(&self, seq: u64) -> After {
        let Some(first) = self.messages.front().map(|m| m.cursor.seq) else {
            return After::Held(Vec::new());
        };
        if seq + 1 >= first {
            // Dense numbering: the message with seq `s` sits at index `s - first`.
            let start = (seq + 1 - first) as usize;
            After::Held(self.messages.iter().skip(start).cloned().collect())
        } else {
            After::Evicted { missed: first - (seq + 1), retained: self.all() }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::{Cursor, Epoch};

    fn ring_with(capacity: usize, seqs: std::ops::RangeInclusive<u64>) -> Ring {
        let epoch = Epoch::random();
        let mut ring = Ring::new(capacity);
        for seq in seqs {
            ring.push(Arc::new(Message::new(Cursor { epoch, seq }, format!("m{seq}"), 0)));
        }
        ring
    }

    fn seqs(messages: &[Arc<Message>]) -> Vec<u64> {
        messages.iter().map(|m| m.cursor.seq).collect()
    }

    #[test]
    fn after_a_held_position_returns_exactly_the_newer_messages() {
        let ring = ring_with(3, 1..=5); // holds 3, 4, 5
        let After::Held(newer) = ring.after(3) else { panic!("3 is held") };
        assert_eq!(seqs(&newer), [4, 5]);
        // The position just before the oldest retained message loses nothing either.
        let After::Held(newer) = ring.after(2) else { panic!("2 is the predecessor of 3") };
        assert_eq!(seqs(&newer), [3, 4, 5]);
        let After::Held(newer) = ring.after(5) else { panic!("5 is the last") };
        assert!(newer.is_empty());
    }

    #[test]
    fn after_an_evicted_position_counts_what_was_missed() {
        let ring = ring_with(3, 1..=5);
        let After::Evicted { missed, retained } = ring.after(0) else { panic!("1 and 2 were evicted") };
        assert_eq!(missed, 2);
        assert_eq!(seqs(&retained), [3, 4, 5]);
        let After::Evicted { missed, .. } = ring.after(1) else { panic!("2 was evicted") };
        assert_eq!(missed, 1);
    }

    #[test]
    fn pushing_past_capacity_evicts_the_oldest() {
        let ring = ring_with(2, 1..=3);
        assert_eq!(seqs(&ring.all()), [2, 3]);
        assert_eq!(ring.last_seq(), Some(3));
    }
}
