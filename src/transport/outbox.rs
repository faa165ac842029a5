//! A per-connection outbound queue, bounded in bytes.
//!
//! The streaming transports move frames from the subscription into an [`Outbox`] and
//! a separate writer drains its [`Inbox`] into the socket. The subscription side never
//! waits on the socket, so it notices at once when a client stops reading: the queue
//! reaches its byte limit, `push` refuses, and the transport disconnects that client
//! with its documented slow-consumer reason. Server memory per client is therefore
//! bounded by the limit (default 1 MiB), whatever the client does.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// The sending half, owned by the task that reads the subscription.
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::UnboundedSender<(T, usize)>,
    queued: Arc<AtomicUsize>,
    limit: usize,
}

/// The receiving half, owned by the writer.
#[derive(Debug)]
pub struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    queued: Arc<AtomicUsize>,
}

/// The queue already holds `limit` bytes: the client is not keeping up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A queue that holds at most `limit` bytes (a single larger item is still accepted
/// into an empty queue, so one big message cannot wedge a connection).
pub fn outbox<T>(limit: usize) -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    (Outbox { tx, queued: queued.clone(), limit }, Inbox { rx, queued })
}

impl<T> Outbox<T> {
    /// Queues `item` of `size` bytes, unless that would pass the limit.
    pub fn push(&self, item: T, size: usize) -> Result<(), Full> {
        let queued = self.queued.load(Ordering::Acquire);
        if queued > 0 && queued + size > self.limit {
            return Err(Full);
        }
        self.force(item, size);
        Ok(())
    }

    /// Queues `item` regardless of the limit: for the one last notice before closing.
    pub fn force(&self, item: T, size: usize) {
        self.queued.fetch_add(size, Ordering::AcqRel);
        if self.tx.send((item, size)).is_err() {
            // The writer is gone (client disconnected): nothing will drain this.
            self.queued.fetch_sub(size, Ordering::AcqRel);
        }
    }

    /// Resolves when the writer has gone away.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }
}

impl<T> Inbox<T> {
    /// The next queued item; `None` once the outbox is dropped and the queue is empty.
    pub async fn recv(&mut self) -> Option<T> {
        let (item, size) = self.rx.recv().await?;
        self.queued.fetch_sub(size, Ordering::AcqRel);
        Some(item)
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let (item, size) = self.rx.try_recv().ok()?;
        self.queued.fetch_sub(size, Ordering::AcqRel);
        Some(item)
    }

    /// Throws away everything queued (the client will resume from its cursor).
    pub fn discard(&mut self) {
        while self.try_recv().is_some() {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_refuses_past_the_byte_limit_and_recovers_as_the_writer_drains() {
        let (outbox, mut inbox) = outbox::<&str>(10);
        assert_eq!(outbox.push("a", 6), Ok(()));
        assert_eq!(outbox.push("b", 4), Ok(()));
        assert_eq!(outbox.push("c", 1), Err(Full));
        assert_eq!(inbox.try_recv(), Some("a"));
        assert_eq!(outbox.push("c", 6), Ok(()));
    }

    #[test]
    fn one_oversized_item_fits_an_empty_queue() {
        let (outbox, mut inbox) = outbox::<&str>(10);
        assert_eq!(outbox.push("big", 50), Ok(()));
        assert_eq!(outbox.push("next", 1), Err(Full));
        assert_eq!(inbox.try_recv(), Some("big"));
    }
}
