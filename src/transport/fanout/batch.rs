//! Messages that are ready together, written as one: a shard gathers them once and
//! every connection takes the part it has not had, in its transport's wire form.

use std::cell::RefCell;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use crate::bus::{Cursor, Delivery, Message, WireForm};

/// Messages that are ready together are joined into one write up to about this size.
pub(super) const BATCH_BYTES: usize = 64 * 1024;

/// Consecutive messages, oldest first, and their wire forms joined once per form.
pub(crate) struct Batch {
    messages: Vec<Arc<Message>>,
    /// Each form asked for so far, by the form's address: `(form, bytes, where each
    /// message ends in them)`. A batch lives within one turn of one shard task.
    joined: RefCell<Vec<(usize, Bytes, Vec<usize>)>>,
}

impl Batch {
    /// `first` and the messages ready behind it, up to [`BATCH_BYTES`]; also says
    /// whether a gap came next (the batch stops before it).
    pub(super) fn gather(first: Arc<Message>, mut ready: impl FnMut() -> Option<Delivery>) -> (Batch, bool) {
        let mut size = first.json.len();
        let mut messages = vec![first];
        let mut gap = false;
        while size < BATCH_BYTES {
            match ready() {
                Some(Delivery::Message(message)) => {
                    size += message.json.len();
                    messages.push(message);
                }
                Some(Delivery::Gap(_)) => {
                    gap = true;
                    break;
                }
                None => break,
            }
        }
        (Batch { messages, joined: RefCell::default() }, gap)
    }

    pub(super) fn messages(&self) -> &[Arc<Message>] {
        &self.messages
    }

    /// The messages from index `first` on, in `form`, as one buffer.
    pub(super) fn encoded_from(&self, form: &'static WireForm, first: usize) -> Bytes {
        if let [one] = &self.messages[..] {
            return one.wire(form).clone();
        }
        let key = form as *const WireForm as usize;
        let mut joined = self.joined.borrow_mut();
        let index = joined.iter().position(|(k, ..)| *k == key).unwrap_or_else(|| {
            let mut bytes = BytesMut::new();
            let ends = self.messages.iter().map(|m| {
                bytes.extend_from_slice(m.wire(form));
                bytes.len()
            });
            let ends = ends.collect();
            joined.push((key, bytes.freeze(), ends));
            joined.len() - 1
        });
        let (_, bytes, ends) = &joined[index];
        if first == 0 { bytes.clone() } else { bytes.slice(ends[first - 1]..) }
    }
}

/// The index of the first of `messages` (consecutive, oldest first) that a client at
/// `position` has not had; `messages.len()` if it had them all. `None` if it needs a
/// message before them: it is behind.
pub(super) fn first_unsent(messages: &[Arc<Message>], position: Cursor) -> Option<usize> {
    let first = messages.first()?.cursor;
    if first.epoch != position.epoch || first.seq > position.seq + 1 {
        return None;
    }
    Some(messages.len().min((position.seq + 1 - first.seq) as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Epoch;

    fn messages(epoch: Epoch, seqs: std::ops::RangeInclusive<u64>) -> Vec<Arc<Message>> {
        seqs.map(|seq| Arc::new(Message::new(Cursor { epoch, seq }, format!("m{seq}"), 0))).collect()
    }

    #[test]
    fn a_client_gets_the_messages_after_its_position_or_is_behind() {
        let epoch = Epoch::random();
        let batch = messages(epoch, 5..=7);
        let at = |seq| Cursor { epoch, seq };
        assert_eq!(first_unsent(&batch, at(4)), Some(0), "right before the batch: all of it");
        assert_eq!(first_unsent(&batch, at(5)), Some(1), "joined ahead of the shard: the rest");
        assert_eq!(first_unsent(&batch, at(7)), Some(3), "had them all");
        assert_eq!(first_unsent(&batch, at(9)), Some(3), "ahead of the whole batch");
        assert_eq!(first_unsent(&batch, at(3)), None, "message 4 was written before it joined");
        assert_eq!(first_unsent(&batch, Cursor { epoch: Epoch::random(), seq: 4 }), None, "another epoch");
    }

    #[test]
    fn a_batch_joins_each_form_once_and_slices_it_per_client() {
        static BODY: WireForm = WireForm::new(|m| Bytes::from(m.body.clone()));
        let mut ready = messages(Epoch::random(), 2..=3).into_iter().map(Delivery::Message);
        let first = messages(Epoch::random(), 1..=1).remove(0);
        let (batch, gap) = Batch::gather(first, || ready.next());
        assert!(!gap);
        assert_eq!(batch.encoded_from(&BODY, 0), "m1m2m3");
        assert_eq!(batch.encoded_from(&BODY, 2), "m3");
        assert_eq!(batch.joined.borrow().len(), 1);
    }
}
