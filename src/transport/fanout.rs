//! One task per worker thread writes each message into every joined WebSocket.
//!
//! Delivered by its own connection task, a message to N WebSocket subscribers wakes N
//! tasks, each to copy the same frame into its socket. Instead a *shard* (one task
//! per tokio worker, so both cores write) follows the bus and writes each message's
//! pre-encoded frame (`Message::websocket_frame`) straight into the sockets of the
//! connections that joined it: one wake-up per shard for a message, not one per
//! subscriber. Several messages that are ready together go out as one write.
//!
//! A connection's task keeps everything else: it reads the client's frames, sends
//! pings and the close frame, and sends the history itself before it joins. A shard
//! lets go of a connection ([`Release`]) when
//! - its socket cannot take a frame now and `--outbound-limit` bytes already wait for
//!   it (a slow reader): the task drains what waits within the slow-consumer timeout,
//!   then catches up from the bus where the client is and joins again;
//! - the connection joined after the shard wrote a message it has not had: the same;
//! - the shard's own feed had a gap or ended: each connection then hears of it from
//!   its own cursor, or closes.
//!
//! Every byte for a socket goes through its [`Outbox`] under one lock, whole frames at
//! a time, and the outbox knows the cursor of the last message it took: so frames
//! never interleave, and a message reaches a client once and in order.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::AppState;
use crate::bus::{Cursor, Delivery, Message};
use crate::metrics::Transport;

/// Messages that are ready together are joined into one write up to this size.
const BATCH_BYTES: usize = 64 * 1024;

/// The shards, started with the first connection that joins.
#[derive(Debug, Default)]
pub(super) struct Fanout {
    shards: OnceLock<Vec<Arc<Shard>>>,
    /// Round-robin over the shards.
    next: AtomicUsize,
}

/// What one shard task shares with the connections.
#[derive(Debug, Default)]
struct Shard {
    /// Connections that joined since the shard last looked.
    arrivals: Mutex<Vec<Arc<Outbox>>>,
    /// Woken when a connection joins or leaves.
    changed: Notify,
}

/// Why a shard let go of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// The client is behind the shard: catch up from the bus, then join again.
    Behind,
    /// The bus's feed ended (a Redis stream restarted): close the connection.
    Ended,
}

impl Fanout {
    /// Hands `outbox` to a shard: from now on the shard writes new messages into it,
    /// starting after [`Outbox::position`], until it lets go or the connection leaves.
    pub(super) fn join(&self, state: &AppState, outbox: &Arc<Outbox>) {
        let shards = self.shards.get_or_init(|| {
            let workers = tokio::runtime::Handle::current().metrics().num_workers();
            (0..workers.max(1))
                .map(|_| {
                    let shard = Arc::new(Shard::default());
                    // Outside tokio's cooperative budget: under it, every socket after the
                    // 128th of a message would report "not ready", and its task would be
                    // woken to write after all. A turn's work is bounded by one batch.
                    state.tasks.spawn(tokio::task::unconstrained(follow(shard.clone(), state.clone())));
                    shard
                })
                .collect()
        });
        let index = self.next.fetch_add(1, Ordering::Relaxed) % shards.len();
        outbox.lock().shard = Some(index);
        lock(&shards[index].arrivals).push(outbox.clone());
        shards[index].changed.notify_one();
    }

    /// Takes `outbox` out of its shard, if it is in one: nothing more is written into it.
    pub(super) fn leave(&self, outbox: &Outbox) {
        outbox.left.store(true, Ordering::Release);
        let shard = outbox.lock().shard.take();
        if let (Some(index), Some(shards)) = (shard, self.shards.get()) {
            // The shard forgets it at once, so the socket closes with the connection.
            shards[index].changed.notify_one();
        }
    }
}

/// A shard's task: follows the bus until shutdown and writes every message into the
/// outboxes that joined it.
async fn follow(shard: Arc<Shard>, state: AppState) {
    let metrics = state.metrics.transport(Transport::WebSocket);
    let limit = state.config.outbound_limit;
    let mut joined: Vec<Arc<Outbox>> = Vec::new();
    let mut subscription = state.bus.subscribe(None).await;
    loop {
        let delivery = tokio::select! {
            // Joins and leaves first: a connection that joined just before a message
            // gets it from here.
            biased;
            () = shard.changed.notified() => {
                joined.retain(|outbox| !outbox.left.load(Ordering::Acquire));
                joined.append(&mut lock(&shard.arrivals));
                continue;
            }
            delivery = subscription.next() => delivery,
            () = state.shutdown.cancelled() => return,
        };
        match delivery {
            Some(Delivery::Message(first)) => {
                let (batch, gap) = Batch::gather(first, || subscription.try_next());
                joined.retain(|outbox| match outbox.offer(&batch, limit) {
                    Offer::Taken { messages, deferred } => {
                        for message in &batch.messages[batch.messages.len() - messages..] {
                            metrics.delivered(message.created.elapsed());
                        }
                        if deferred {
                            state.metrics.fanout_deferred();
                        }
                        true
                    }
                    Offer::Refused => {
                        release(&state, outbox, Release::Behind);
                        false
                    }
                    Offer::Gone => false,
                });
                if gap {
                    release_all(&state, &mut joined, Release::Behind);
                }
            }
            // The shard fell behind the history: each connection learns its own gap.
            Some(Delivery::Gap(_)) => release_all(&state, &mut joined, Release::Behind),
            None => {
                release_all(&state, &mut joined, Release::Ended);
                subscription = state.bus.subscribe(None).await;
            }
        }
    }
}

fn release_all(state: &AppState, joined: &mut Vec<Arc<Outbox>>, why: Release) {
    for outbox in joined.drain(..) {
        release(state, &outbox, why);
    }
}

fn release(state: &AppState, outbox: &Outbox, why: Release) {
    state.metrics.fanout_released();
    let mut inner = outbox.lock();
    inner.shard = None;
    inner.released = Some(why);
    drop(inner);
    outbox.woken.notify_one();
}

/// Messages written together, and their frames joined into one buffer.
struct Batch {
    messages: Vec<Arc<Message>>,
    frames: Bytes,
    /// Where each message's frame ends in `frames`.
    ends: Vec<usize>,
}

impl Batch {
    /// `first` and the messages ready behind it, up to [`BATCH_BYTES`]; also says
    /// whether a gap came next (the batch stops before it).
    fn gather(first: Arc<Message>, mut ready: impl FnMut() -> Option<Delivery>) -> (Batch, bool) {
        let mut size = first.websocket_frame.len();
        let mut messages = vec![first];
        let mut gap = false;
        while size < BATCH_BYTES {
            match ready() {
                Some(Delivery::Message(message)) => {
                    size += message.websocket_frame.len();
                    messages.push(message);
                }
                Some(Delivery::Gap(_)) => {
                    gap = true;
                    break;
                }
                None => break,
            }
        }
        let (frames, ends) = match &messages[..] {
            [one] => (one.websocket_frame.clone(), vec![one.websocket_frame.len()]),
            several => {
                let mut frames = BytesMut::with_capacity(size);
                let ends = several
                    .iter()
                    .map(|m| {
                        frames.extend_from_slice(&m.websocket_frame);
                        frames.len()
                    })
                    .collect();
                (frames.freeze(), ends)
            }
        };
        (Batch { messages, frames, ends }, gap)
    }
}

/// What became of a batch offered to an outbox.
enum Offer {
    /// Written or queued: this many of the batch's last messages (the others it had);
    /// `deferred` when the socket did not take them all at once.
    Taken { messages: usize, deferred: bool },
    /// Not taken: the client is too far behind, or its socket failed.
    Refused,
    /// The connection has left.
    Gone,
}

/// An upgraded WebSocket's socket, shared by its connection task (which reads and
/// sends control frames through tungstenite over [`Socket`]) and a shard (which
/// writes messages). Bytes the socket cannot take at once wait here, in order.
#[derive(Debug)]
pub(super) struct Outbox {
    inner: Mutex<Inner>,
    /// Wakes the connection task: bytes wait to be drained, or a shard let go.
    woken: Notify,
    /// Set when the connection leaves; shards drop it from their list.
    left: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    io: TokioIo<Upgraded>,
    waiting: VecDeque<Bytes>,
    waiting_bytes: usize,
    /// The cursor of the last message taken: where the client is once all is sent.
    position: Cursor,
    /// The shard this outbox has joined.
    shard: Option<usize>,
    /// Set by the shard that let go.
    released: Option<Release>,
}

impl Outbox {
    /// The outbox of a connection whose client will be at `position` once what its
    /// task sends first (the history) is written.
    pub(super) fn new(io: TokioIo<Upgraded>, position: Cursor) -> Self {
        let inner = Inner { io, waiting: VecDeque::new(), waiting_bytes: 0, position, shard: None, released: None };
        Outbox { inner: Mutex::new(inner), woken: Notify::new(), left: AtomicBool::new(false) }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Writes a message's (or a gap notice's) frame, or keeps what the socket does not
    /// take now; the client is then at `position`.
    pub(super) fn send(&self, frame: Bytes, position: Cursor) -> io::Result<()> {
        let mut inner = self.lock();
        inner.write_or_keep(frame)?;
        inner.position = position;
        Ok(())
    }

    /// Bytes waiting for the socket.
    pub(super) fn waiting(&self) -> usize {
        self.lock().waiting_bytes
    }

    /// Where the client is: the last message taken.
    pub(super) fn position(&self) -> Cursor {
        self.lock().position
    }

    /// Writes everything waiting, then resolves.
    pub(super) async fn drain(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        while let Some(front) = inner.waiting.front().cloned() {
            let written = ready!(Pin::new(&mut inner.io).poll_write(cx, &front))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            inner.waiting_bytes -= written;
            if written == front.len() {
                inner.waiting.pop_front();
            } else {
                inner.waiting[0] = front.slice(written..);
            }
        }
        Pin::new(&mut inner.io).poll_flush(cx)
    }

    /// Resolves when a shard queued bytes here or let go of this outbox.
    pub(super) async fn woken(&self) {
        self.woken.notified().await;
    }

    /// Why the shard let go, once: `None` while joined (or never joined).
    pub(super) fn take_release(&self) -> Option<Release> {
        self.lock().released.take()
    }

    /// A shard's write: the messages of `batch` after this client's position, unless
    /// bytes already wait and these would take them past `limit`.
    fn offer(&self, batch: &Batch, limit: usize) -> Offer {
        if self.left.load(Ordering::Acquire) {
            return Offer::Gone;
        }
        let mut inner = self.lock();
        let messages = &batch.messages;
        let Some(had) = first_unsent(messages, inner.position) else {
            return Offer::Refused; // it missed a message this shard wrote before it joined
        };
        if had == messages.len() {
            return Offer::Taken { messages: 0, deferred: false };
        }
        let frames = if had == 0 { batch.frames.clone() } else { batch.frames.slice(batch.ends[had - 1]..) };
        // An empty queue takes any batch, as the task's own sending does: the bound is
        // the limit plus one batch.
        if inner.waiting_bytes > 0 && inner.waiting_bytes + frames.len() > limit {
            return Offer::Refused;
        }
        let was_waiting = inner.waiting_bytes > 0;
        if inner.write_or_keep(frames).is_err() {
            return Offer::Refused; // its task finds the socket failed
        }
        inner.position = messages[messages.len() - 1].cursor;
        let deferred = inner.waiting_bytes > 0;
        if deferred && !was_waiting {
            self.woken.notify_one(); // the task drains it, within the slow-consumer timeout
        }
        Offer::Taken { messages: messages.len() - had, deferred }
    }
}

/// The index of the first of `messages` (consecutive, oldest first) that a client at
/// `position` has not had; `messages.len()` if it had them all. `None` if it needs a
/// message before them: it is behind.
fn first_unsent(messages: &[Arc<Message>], position: Cursor) -> Option<usize> {
    let first = messages.first()?.cursor;
    if first.epoch != position.epoch || first.seq > position.seq + 1 {
        return None;
    }
    Some(messages.len().min((position.seq + 1 - first.seq) as usize))
}

impl Inner {
    /// Writes as much of `bytes` as the socket takes without waiting, unless bytes
    /// already wait (they go first); keeps the rest.
    fn write_or_keep(&mut self, bytes: Bytes) -> io::Result<()> {
        let mut written = 0;
        if self.waiting.is_empty() {
            // No task waits on this socket's write readiness while nothing waits, so a
            // no-op waker takes nothing from anyone; a task that drains registers its own.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(result) = Pin::new(&mut self.io).poll_write(&mut cx, &bytes) {
                written = result?;
            }
        }
        if written < bytes.len() {
            self.waiting_bytes += bytes.len() - written;
            self.waiting.push_back(bytes.slice(written..));
        }
        Ok(())
    }
}

/// The outbox as tungstenite's stream: reads come from the socket; writes (pings,
/// pongs, the close frame) go through the outbox, behind whatever waits there.
#[derive(Debug)]
pub(super) struct Socket(pub(super) Arc<Outbox>);

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0.lock().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        // tungstenite hands over whole frames; taking all of each keeps them whole.
        self.0.lock().write_or_keep(Bytes::copy_from_slice(buf))?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.0.poll_drain(cx))?;
        Pin::new(&mut self.0.lock().io).poll_shutdown(cx)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data whole, so a poisoned lock is still usable.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
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
}
