//! A per-connection outbound queue, bounded in bytes.
//!
//! The streaming transports move frames from the subscription into an [`Outbox`] and
//! a separate writer drains its [`Inbox`] into the socket. The subscription side never
//! blocks on the socket itself, so it can tell a slow client from a busy one: when the
//! queue is at its byte limit, [`Outbox::send`] waits for the writer to make room, and
//! a client that leaves it full for the whole patience period (default 5 s) is a slow
//! consumer, which the transport disconnects with its documented reason. A replay of
//! the whole history to a client that reads is just backpressure, not slowness.
//! Server memory per client is bounded by the limit (default 1 MiB) plus one frame.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, timeout_at};

/// The sending half, owned by the task that reads the subscription.
#[derive(Debug)]
pub struct Outbox<T> {
    tx: mpsc::UnboundedSender<(T, usize)>,
    shared: Arc<Shared>,
    limit: usize,
}

/// The receiving half, owned by the writer.
#[derive(Debug)]
pub struct Inbox<T> {
    rx: mpsc::UnboundedReceiver<(T, usize)>,
    shared: Arc<Shared>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Bytes queued and not yet taken by the writer.
    queued: AtomicUsize,
    /// Signalled whenever the writer takes an item.
    room: Notify,
}

/// The queue stayed full for the whole patience period: the client is not reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Full;

/// A queue that holds at most `limit` bytes (a single larger item is still accepted
/// into an empty queue, so one big message cannot wedge a connection).
pub fn outbox<T>(limit: usize) -> (Outbox<T>, Inbox<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared::default());
    (Outbox { tx, shared: shared.clone(), limit }, Inbox { rx, shared })
}

impl<T> Outbox<T> {
    /// Queues `item` of `size` bytes, waiting up to `patience` for the writer to make
    /// room if the queue is at its limit.
    pub async fn send(&self, item: T, size: usize, patience: Duration) -> Result<(), Full> {
        let deadline = Instant::now() + patience;
        loop {
            // Register for the wake-up before checking, so a take in between is not missed.
            let room = self.shared.room.notified();
            if self.fits(size) {
                self.force(item, size);
                return Ok(());
            }
            if timeout_at(deadline, room).await.is_err() {
                return Err(Full);
            }
        }
    }

    fn fits(&self, size: usize) -> bool {
        let queued = self.shared.queued.load(Ordering::Acquire);
        queued == 0 || queued + size <= self.limit
    }

    /// Queues `item` regardless of the limit: for the one last notice before closing.
    pub fn force(&self, item: T, size: usize) {
        self.shared.queued.fetch_add(size, Ordering::AcqRel);
        if self.tx.send((item, size)).is_err() {
            // The writer is gone (client disconnected): nothing will drain this.
            self.shared.queued.fetch_sub(size, Ordering::AcqRel);
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
        let taken = self.rx.recv().await?;
        Some(self.take(taken))
    }

    /// The next item if one is queued now.
    pub fn try_recv(&mut self) -> Option<T> {
        let taken = self.rx.try_recv().ok()?;
        Some(self.take(taken))
    }

    fn take(&self, (item, size): (T, usize)) -> T {
        self.shared.queued.fetch_sub(size, Ordering::AcqRel);
        self.shared.room.notify_one();
        item
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_that_is_never_drained_refuses_after_the_patience_period() {
        let (outbox, _inbox) = outbox::<&str>(10);
        assert_eq!(outbox.send("a", 6, PATIENCE).await, Ok(()));
        assert_eq!(outbox.send("b", 4, PATIENCE).await, Ok(()));
        let start = Instant::now();
        assert_eq!(outbox.send("c", 1, PATIENCE).await, Err(Full));
        assert_eq!(start.elapsed(), PATIENCE);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_accepts_again_as_soon_as_the_writer_takes_an_item() {
        let (outbox, mut inbox) = outbox::<&str>(10);
        outbox.send("a", 6, PATIENCE).await.unwrap();
        outbox.send("b", 4, PATIENCE).await.unwrap();
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            inbox.recv().await
        });
        assert_eq!(outbox.send("c", 6, PATIENCE).await, Ok(()));
        assert_eq!(writer.await.unwrap(), Some("a"));
    }

    #[tokio::test(start_paused = true)]
    async fn one_oversized_item_fits_an_empty_queue() {
        let (outbox, mut inbox) = outbox::<&str>(10);
        assert_eq!(outbox.send("big", 50, PATIENCE).await, Ok(()));
        assert_eq!(outbox.send("next", 1, Duration::ZERO).await, Err(Full));
        assert_eq!(inbox.try_recv(), Some("big"));
    }
}
