//! One task per worker thread writes each message into every joined WebSocket and SSE
//! stream.
//!
//! Delivered by each subscriber's own task, a message to N subscribers wakes N tasks,
//! and each of them registers again with the bus's channel and reads the message from
//! it. Instead a *shard* (one task per tokio worker, so both cores write) follows the
//! bus and hands each message's pre-encoded bytes (`Message::websocket_frame`,
//! `Message::sse_event`) to the connections that joined it: a WebSocket's bytes go
//! straight into its socket, without waking its task at all; an SSE stream's bytes
//! wait in its [`Outbox`] for hyper, whose connection task is woken to take them (hyper
//! owns that socket). Several messages that are ready together go out as one write.
//!
//! A connection sends its history itself (it "catches up" from its own subscription),
//! then joins a shard. The shard lets go of it ([`Release`]) when
//! - `--outbound-limit` bytes already wait for it and more come (a slow reader): it
//!   drains what waits, then catches up from the bus where the client is and joins
//!   again, or is cut off as a slow consumer if it does not drain in time;
//! - it joined after the shard wrote a message it has not had: the same;
//! - the shard's own feed had a gap or ended: each connection then hears of it from its
//!   own cursor, or closes.
//!
//! Every byte for a connection goes through its [`Outbox`] under one lock, whole frames
//! or events at a time, and the outbox knows the cursor of the last message it took:
//! so writes never interleave, and a message reaches a client once and in order.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::{Context, Poll, Waker, ready};

use bytes::{Buf, Bytes, BytesMut};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;

use crate::AppState;
use crate::bus::{Cursor, Delivery, Gap, Message};
use crate::metrics::{Transport, TransportMetrics};

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
    arrivals: Mutex<Arrivals>,
    /// Woken when a connection joins or leaves.
    changed: Notify,
}

#[derive(Debug, Default)]
struct Arrivals {
    /// Connections that joined since the shard last looked.
    outboxes: Vec<Arc<Outbox>>,
    /// The shard has stopped (shutdown): who joins now is let go at once.
    closed: bool,
}

/// Why a shard let go of a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Release {
    /// The client is behind the shard: catch up from the bus, then join again.
    Behind,
    /// The bus's feed ended (a Redis stream restarted), or the server is shutting
    /// down: close the connection (an SSE stream ends here at shutdown).
    Ended,
}

/// What an SSE body takes from its outbox.
#[derive(Debug)]
pub(super) enum Taken {
    /// Bytes a shard left there, in order.
    Chunk(Bytes),
    /// A shard let go.
    Released(Release),
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
        let mut arrivals = lock(&shards[index].arrivals);
        if arrivals.closed {
            drop(arrivals);
            return release(state, outbox, Release::Ended);
        }
        outbox.lock().shard = Some(index);
        arrivals.outboxes.push(outbox.clone());
        drop(arrivals);
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
    let limit = state.config.outbound_limit;
    let mut joined: Vec<Arc<Outbox>> = Vec::new();
    let mut subscription = state.bus.subscribe(None).await;
    loop {
        let delivery = tokio::select! {
            // Joins and leaves first: a connection that joined just before a message
            // gets it from here.
            biased;
            () = shard.changed.notified() => {
                // Arrivals first: one that joined and left since the last look goes
                // now, not at the next wake, and its socket closes with it.
                joined.append(&mut lock(&shard.arrivals).outboxes);
                joined.retain(|outbox| !outbox.left.load(Ordering::Acquire));
                continue;
            }
            delivery = subscription.next() => delivery,
            () = state.shutdown.cancelled() => {
                let mut arrivals = lock(&shard.arrivals);
                arrivals.closed = true;
                joined.append(&mut arrivals.outboxes);
                drop(arrivals);
                return release_all(&state, &mut joined, Release::Ended);
            }
        };
        match delivery {
            Some(Delivery::Message(first)) => {
                let (batch, gap) = Batch::gather(first, || subscription.try_next());
                joined.retain(|outbox| match outbox.offer(&batch, limit) {
                    Offer::Taken { messages, deferred } => {
                        let metrics = state.metrics.transport(outbox.transport);
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

/// Messages written together, in each wire form.
struct Batch {
    messages: Vec<Arc<Message>>,
    websocket: Joined,
    sse: Joined,
}

/// One wire form of a batch's messages, joined into one buffer.
struct Joined {
    bytes: Bytes,
    /// Where each message ends in `bytes`.
    ends: Vec<usize>,
}

impl Joined {
    fn of(messages: &[Arc<Message>], form: impl Fn(&Message) -> &Bytes) -> Self {
        if let [one] = messages {
            return Joined { bytes: form(one).clone(), ends: vec![form(one).len()] };
        }
        let mut bytes = BytesMut::new();
        let ends = messages.iter().map(|m| {
            bytes.extend_from_slice(form(m));
            bytes.len()
        });
        let ends = ends.collect();
        Joined { bytes: bytes.freeze(), ends }
    }

    /// The messages from index `first` on.
    fn from(&self, first: usize) -> Bytes {
        if first == 0 { self.bytes.clone() } else { self.bytes.slice(self.ends[first - 1]..) }
    }
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
        let websocket = Joined::of(&messages, |m| &m.websocket_frame);
        let sse = Joined::of(&messages, |m| &m.sse_event);
        (Batch { messages, websocket, sse }, gap)
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

/// What a connection is sent, on its way to the client, shared by the connection's
/// own code and a shard. Bytes that cannot go out at once wait here, in order.
#[derive(Debug)]
pub(super) struct Outbox {
    inner: Mutex<Inner>,
    /// Wakes the connection: bytes wait for it, or a shard let go.
    woken: Notify,
    /// Set when the connection leaves; shards drop it from their list.
    left: AtomicBool,
    /// For the delivery metrics.
    transport: Transport,
}

#[derive(Debug)]
struct Inner {
    to: Destination,
    waiting: VecDeque<Bytes>,
    waiting_bytes: usize,
    /// The cursor of the last message taken: where the client is once all is sent.
    position: Cursor,
    /// The shard this outbox has joined.
    shard: Option<usize>,
    /// Set by the shard that let go.
    released: Option<Release>,
}

/// Where an outbox's bytes go.
#[derive(Debug)]
enum Destination {
    /// An upgraded WebSocket's socket, written directly; what it does not take at once
    /// waits for the connection's task to drain it. The task reads from it through
    /// [`Socket`] too.
    WebSocket(TokioIo<Upgraded>),
    /// An SSE response body: the bytes wait until hyper asks the body for them.
    Sse,
}

impl Outbox {
    /// The outbox of an upgraded WebSocket whose client will be at `position` once what
    /// its task sends first (the history) is written.
    pub(super) fn websocket(io: TokioIo<Upgraded>, position: Cursor) -> Self {
        Self::new(Destination::WebSocket(io), position)
    }

    /// The outbox of an SSE stream, like [`Outbox::websocket`].
    pub(super) fn sse(position: Cursor) -> Self {
        Self::new(Destination::Sse, position)
    }

    fn new(to: Destination, position: Cursor) -> Self {
        let transport = match to {
            Destination::WebSocket(_) => Transport::WebSocket,
            Destination::Sse => Transport::Sse,
        };
        let inner = Inner { to, waiting: VecDeque::new(), waiting_bytes: 0, position, shard: None, released: None };
        Outbox { inner: Mutex::new(inner), woken: Notify::new(), left: AtomicBool::new(false), transport }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    /// Writes a message's (or a gap notice's) frame to a WebSocket, or keeps what the
    /// socket does not take now; the client is then at `position`.
    pub(super) fn send(&self, frame: Bytes, position: Cursor) -> io::Result<()> {
        let mut inner = self.lock();
        inner.write_or_keep(frame)?;
        inner.position = position;
        Ok(())
    }

    /// Notes that the connection sent the client everything up to `position` itself.
    pub(super) fn sent(&self, position: Cursor) {
        self.lock().position = position;
    }

    /// Bytes waiting to go out.
    pub(super) fn waiting(&self) -> usize {
        self.lock().waiting_bytes
    }

    /// What an SSE body sends next: everything waiting, as one chunk; once that is
    /// sent, why the shard let go, if it did.
    pub(super) fn take(&self) -> Option<Taken> {
        let mut inner = self.lock();
        inner.waiting_bytes = 0;
        let chunk = match inner.waiting.len() {
            0 => return inner.released.take().map(Taken::Released),
            1 => inner.waiting.pop_front()?,
            _ => {
                let mut chunk = BytesMut::new();
                inner.waiting.drain(..).for_each(|bytes| chunk.extend_from_slice(&bytes));
                chunk.freeze()
            }
        };
        Some(Taken::Chunk(chunk))
    }

    /// Where the client is: the last message taken.
    pub(super) fn position(&self) -> Cursor {
        self.lock().position
    }

    /// Writes everything waiting to a WebSocket, then resolves.
    pub(super) async fn drain(&self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = self.lock();
        let Inner { to: Destination::WebSocket(io), waiting, waiting_bytes, .. } = &mut *inner else {
            return Poll::Ready(Ok(())); // an SSE body's bytes are drained by hyper
        };
        while let Some(front) = waiting.front_mut() {
            let written = ready!(Pin::new(&mut *io).poll_write(cx, front))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *waiting_bytes -= written;
            if written == front.len() {
                waiting.pop_front();
            } else {
                front.advance(written);
            }
        }
        Pin::new(io).poll_flush(cx)
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
        let bytes = match inner.to {
            Destination::WebSocket(_) => batch.websocket.from(had),
            Destination::Sse => batch.sse.from(had),
        };
        // An empty queue takes any batch, as the connection's own sending does: the
        // bound is the limit plus one batch.
        if inner.waiting_bytes > 0 && inner.waiting_bytes + bytes.len() > limit {
            return Offer::Refused;
        }
        let was_waiting = inner.waiting_bytes > 0;
        match inner.to {
            Destination::WebSocket(_) => {
                if inner.write_or_keep(bytes).is_err() {
                    return Offer::Refused; // its task finds the socket failed
                }
            }
            Destination::Sse => inner.keep(bytes),
        }
        inner.position = messages[messages.len() - 1].cursor;
        let deferred = matches!(inner.to, Destination::WebSocket(_)) && inner.waiting_bytes > 0;
        // Only bytes the socket did not take need the task (a WebSocket's to drain them,
        // an SSE body's to hand them to hyper); if some waited already, it was woken.
        let wake = !was_waiting && inner.waiting_bytes > 0;
        drop(inner);
        if wake {
            self.woken.notify_one();
        }
        Offer::Taken { messages: messages.len() - had, deferred }
    }
}

impl Inner {
    /// Writes as much of `bytes` to the WebSocket as its socket takes without waiting,
    /// unless bytes already wait (they go first); keeps the rest.
    fn write_or_keep(&mut self, mut bytes: Bytes) -> io::Result<()> {
        if let (Destination::WebSocket(io), true) = (&mut self.to, self.waiting.is_empty()) {
            // No task waits on this socket's write readiness while nothing waits, so a
            // no-op waker takes nothing from anyone; a task that drains registers its own.
            let mut cx = Context::from_waker(Waker::noop());
            if let Poll::Ready(result) = Pin::new(io).poll_write(&mut cx, &bytes) {
                bytes.advance(result?);
            }
        }
        self.keep(bytes);
        Ok(())
    }

    fn keep(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.waiting_bytes += bytes.len();
            self.waiting.push_back(bytes);
        }
    }
}

/// A WebSocket's outbox as tungstenite's stream: reads come from the socket; writes
/// (pings, pongs, the close frame) go through the outbox, behind whatever waits there.
#[derive(Debug)]
pub(super) struct Socket(pub(super) Arc<Outbox>);

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.0.lock().to {
            Destination::WebSocket(io) => Pin::new(io).poll_read(cx, buf),
            Destination::Sse => Poll::Ready(Ok(())), // nothing to read: the end
        }
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
        match &mut self.0.lock().to {
            Destination::WebSocket(io) => Pin::new(io).poll_shutdown(cx),
            Destination::Sse => Poll::Ready(Ok(())),
        }
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

/// What a connection sends for a delivery of its own subscription (while it catches
/// up), in its transport's wire form, and where the client is once it has it.
pub(super) fn encode(
    delivery: Delivery,
    metrics: &TransportMetrics,
    message_form: impl Fn(&Message) -> &Bytes,
    gap_form: impl Fn(&Gap) -> Bytes,
) -> (Bytes, Cursor) {
    match delivery {
        Delivery::Message(message) => {
            metrics.delivered(message.created.elapsed());
            (message_form(&message).clone(), message.cursor)
        }
        Delivery::Gap(gap) => {
            metrics.gap(gap.reason);
            (gap_form(&gap), gap.resume)
        }
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
