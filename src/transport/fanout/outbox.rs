//! A connection's outbox: every byte a streaming connection sends goes through it, in
//! order, whole frames or events at a time; and the [`Sink`] each streaming transport
//! implements in its own module, which says how those bytes leave.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::batch::{Batch, first_unsent};
use super::{Offer, Release, lock};
use crate::bus::{Cursor, Delivery, Gap, Subscription, WireForm};
use crate::metrics::{Transport, TransportMetrics};
use crate::server::Closer;

/// How a streaming transport's bytes leave the server: implemented once per transport
/// (`websocket`, `sse`), in that transport's module.
pub(crate) trait Sink: Send + 'static {
    /// The transport, for the metrics.
    const TRANSPORT: Transport;
    /// Whether [`Sink::poll_write`] writes (a socket), or the bytes wait to be taken
    /// (an SSE body): only a write that did not finish counts as deferred.
    const WRITES: bool;
    /// How a message is written on this transport's wire.
    fn form() -> &'static WireForm;
    /// How a gap notice is written.
    fn gap(gap: &Gap) -> Bytes;
    /// The last words to a slow consumer, queued after what waits for it.
    fn slow_notice() -> Bytes;
    /// Writes some of `bytes` to the client. A transport whose bytes are taken rather
    /// than written (an SSE body: hyper asks for them) never writes: `Pending`.
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>>;
    /// Flushes what was written.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>>;
}

/// What a connection is sent, shared by the connection's own code, a shard and the
/// watchdog. Bytes that cannot go out at once wait here, in order.
pub(crate) struct Outbox<S> {
    inner: Mutex<Inner<S>>,
    /// Wakes the connection: bytes wait for it, or it was let go.
    woken: Notify,
    /// Set when the connection leaves; shards and the watchdog drop it.
    left: AtomicBool,
    /// Cuts the connection when even the slow notice is not taken.
    closer: Closer,
}

struct Inner<S> {
    sink: S,
    waiting: VecDeque<Bytes>,
    waiting_bytes: usize,
    /// Since when bytes have waited without the client taking any: the slow-consumer
    /// clock. `None` while nothing waits.
    stalled_since: Option<Instant>,
    /// The cursor of the last message taken: where the client is once all is sent.
    position: Cursor,
    /// The shard this outbox has joined.
    shard: Option<usize>,
    /// Why the connection was let go (by a shard or the watchdog), until it looks.
    released: Option<Release>,
    /// The slow notice was queued: nothing more is.
    slow: bool,
}

/// What a connection whose bytes are taken (SSE) takes next.
#[derive(Debug)]
pub(crate) enum Taken {
    /// Everything that waited, in order.
    Chunk(Bytes),
    /// Nothing waits, and the connection was let go.
    Released(Release),
}

impl<S: Sink> Outbox<S> {
    pub(super) fn new(sink: S, position: Cursor, closer: Closer) -> Self {
        let inner = Inner {
            sink,
            waiting: VecDeque::new(),
            waiting_bytes: 0,
            stalled_since: None,
            position,
            shard: None,
            released: None,
            slow: false,
        };
        Outbox { inner: Mutex::new(inner), woken: Notify::new(), left: AtomicBool::new(false), closer }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        lock(&self.inner)
    }

    /// Moves what `subscription` has ready into the outbox, in this transport's form,
    /// until `limit` bytes wait. True when the subscription has nothing more: the
    /// connection is caught up and joins a shard. (The bus's lock is taken between
    /// deliveries, never under this outbox's.)
    pub(crate) fn catch_up(&self, subscription: &mut Subscription, metrics: &TransportMetrics, limit: usize) -> bool {
        loop {
            if self.lock().is_full(limit) {
                return false;
            }
            let Some(delivery) = subscription.try_next() else { return true };
            let (bytes, position) = match delivery {
                Delivery::Message(message) => {
                    metrics.delivered(message.created.elapsed());
                    (message.wire(S::form()).clone(), message.cursor)
                }
                Delivery::Gap(gap) => {
                    metrics.gap(gap.reason);
                    (S::gap(&gap), gap.resume)
                }
            };
            let mut inner = self.lock();
            if inner.write_or_keep(bytes).is_err() {
                return true; // the socket failed; the connection's task finds out
            }
            inner.position = position;
        }
    }

    /// Queues `bytes` that are not a message (a control frame) behind what waits, and
    /// wakes the connection if they are the first to wait.
    pub(crate) fn send(&self, bytes: Bytes) -> io::Result<()> {
        let mut inner = self.lock();
        let was_waiting = inner.waiting_bytes > 0;
        inner.write_or_keep(bytes)?;
        let waiting = inner.waiting_bytes > 0;
        drop(inner);
        if !was_waiting && waiting {
            self.woken.notify_one();
        }
        Ok(())
    }

    /// Everything waiting, as one chunk; once nothing waits, why the connection was let
    /// go, if it was.
    pub(crate) fn take(&self) -> Option<Taken> {
        let mut inner = self.lock();
        let chunk = match inner.waiting.len() {
            0 => return inner.released.take().map(Taken::Released),
            1 => inner.waiting.pop_front()?,
            _ => {
                let mut chunk = BytesMut::with_capacity(inner.waiting_bytes);
                inner.waiting.drain(..).for_each(|bytes| chunk.extend_from_slice(&bytes));
                chunk.freeze()
            }
        };
        inner.waiting_bytes = 0;
        inner.stalled_since = None;
        Some(Taken::Chunk(chunk))
    }

    /// Bytes waiting to go out.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().waiting_bytes
    }

    /// Where the client is: the last message taken.
    pub(crate) fn position(&self) -> Cursor {
        self.lock().position
    }

    /// Why the connection was let go, once: `None` while joined (or never joined).
    pub(crate) fn take_release(&self) -> Option<Release> {
        self.lock().released.take()
    }

    /// Resolves when bytes were queued for the connection or it was let go.
    pub(crate) async fn woken(&self) {
        self.woken.notified().await;
    }

    /// Writes everything waiting through the sink, then resolves.
    pub(crate) async fn drain(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        let Inner { sink, waiting, waiting_bytes, stalled_since, .. } = &mut *inner;
        while let Some(front) = waiting.front_mut() {
            let written = std::task::ready!(sink.poll_write(cx, front))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *waiting_bytes -= written;
            *stalled_since = (*waiting_bytes > 0).then(Instant::now);
            if written == front.len() {
                waiting.pop_front();
            } else {
                front.advance(written);
            }
        }
        sink.poll_flush(cx)
    }

    /// Runs `f` on the sink, under the outbox's lock (a WebSocket reads through it).
    pub(crate) fn with_sink<R>(&self, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self.lock().sink)
    }

    /// Marks the connection gone: shards and the watchdog forget it.
    pub(super) fn mark_left(&self) {
        self.left.store(true, Ordering::Release);
    }

    pub(super) fn has_left(&self) -> bool {
        self.left.load(Ordering::Acquire)
    }
}

impl<S> Inner<S> {
    /// No more may be queued now: `limit` bytes wait, or the slow notice does.
    fn is_full(&self, limit: usize) -> bool {
        self.waiting_bytes >= limit || self.slow
    }

    fn keep(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            if self.waiting.is_empty() {
                self.stalled_since = Some(Instant::now());
            }
            self.waiting_bytes += bytes.len();
            self.waiting.push_back(bytes);
        }
    }
}

impl<S: Sink> Inner<S> {
    /// Writes as much of `bytes` as the sink takes without waiting, unless bytes
    /// already wait (they go first); keeps the rest.
    fn write_or_keep(&mut self, mut bytes: Bytes) -> io::Result<()> {
        if self.waiting.is_empty() {
            // No task waits on this sink's write readiness while nothing waits, so a
            // no-op waker takes nothing from anyone; a task that drains registers its own.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(result) = self.sink.poll_write(&mut cx, &bytes) {
                bytes.advance(result?);
            }
        }
        self.keep(bytes);
        Ok(())
    }
}

/// How the fan-out's shards and its watchdog see a connection, whatever its transport.
pub(super) trait Member: Send + Sync {
    /// A shard's write: the messages of `batch` after this client's position, unless
    /// bytes already wait and these would take them past `limit`.
    fn offer(&self, batch: &Batch, limit: usize) -> Offer;
    /// Lets go of the connection and wakes it to find out why.
    fn release(&self, why: Release);
    /// Notes the shard the connection joined.
    fn joined(&self, shard: usize);
    /// Leaves its shard, if any: which one.
    fn leave(&self) -> Option<usize>;
    fn has_left(&self) -> bool;
    fn transport(&self) -> Transport;
    /// If no byte was taken for `timeout` while some waited: queues the slow notice,
    /// lets go with [`Release::Slow`] and returns what cuts the connection if even
    /// that is not taken.
    fn stalled(&self, now: Instant, timeout: Duration) -> Option<Closer>;
}

impl<S: Sink> Member for Outbox<S> {
    fn offer(&self, batch: &Batch, limit: usize) -> Offer {
        let mut inner = self.lock();
        // Looked at under the lock that `leave` takes: once the connection has left,
        // nothing more is written after its close frame.
        if self.has_left() || inner.slow {
            return Offer::Gone;
        }
        let messages = batch.messages();
        let Some(had) = first_unsent(messages, inner.position) else {
            return Offer::Refused; // it missed a message this shard wrote before it joined
        };
        if had == messages.len() {
            return Offer::Taken { messages: 0, deferred: false };
        }
        let bytes = batch.encoded_from(S::form(), had);
        // An empty queue takes any batch, as the connection's own sending does: the
        // bound is the limit plus one batch.
        if inner.waiting_bytes > 0 && inner.waiting_bytes + bytes.len() > limit {
            return Offer::Refused;
        }
        let was_waiting = inner.waiting_bytes > 0;
        if inner.write_or_keep(bytes).is_err() {
            return Offer::Refused; // its task finds the socket failed
        }
        inner.position = messages[messages.len() - 1].cursor;
        let waiting = inner.waiting_bytes > 0;
        drop(inner);
        // Only bytes the sink did not take need the connection's task; if some waited
        // already, it was woken then.
        if !was_waiting && waiting {
            self.woken.notify_one();
        }
        Offer::Taken { messages: messages.len() - had, deferred: waiting && S::WRITES }
    }

    fn release(&self, why: Release) {
        let mut inner = self.lock();
        inner.shard = None;
        if inner.released != Some(Release::Slow) {
            inner.released = Some(why);
        }
        drop(inner);
        self.woken.notify_one();
    }

    fn joined(&self, shard: usize) {
        self.lock().shard = Some(shard);
    }

    fn leave(&self) -> Option<usize> {
        let mut inner = self.lock();
        self.mark_left();
        inner.shard.take()
    }

    fn has_left(&self) -> bool {
        Outbox::has_left(self)
    }

    fn transport(&self) -> Transport {
        S::TRANSPORT
    }

    fn stalled(&self, now: Instant, timeout: Duration) -> Option<Closer> {
        let mut inner = self.lock();
        let since = inner.stalled_since?;
        if inner.slow || now.saturating_duration_since(since) < timeout {
            return None;
        }
        inner.slow = true;
        inner.keep(S::slow_notice());
        inner.shard = None;
        inner.released = Some(Release::Slow);
        drop(inner);
        self.woken.notify_one();
        Some(self.closer.clone())
    }
}

/// A connection's outbox as the fan-out holds it.
pub(super) type Joined = Arc<dyn Member>;
