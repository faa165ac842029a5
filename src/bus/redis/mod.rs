//! The Redis Streams backend (cargo feature `redis`): several pushwire instances share
//! one conversation, with the same ids in the same order everywhere.
//!
//! Transports do not know about it: a Redis-backed [`Bus`] is the in-memory bus (ring,
//! live broadcast, [`Subscription`]) whose ring is fed from a Redis stream instead of
//! by local publishes. It changes that state only through the bus's own rules (module
//! `state`: append, restart) and a subscription's (`wait_past`, `fill_opening_gap`).
//! This file holds the connection, publishing and resuming; `reader` follows the
//! stream; `scripts` holds the Lua that keeps sequence numbers dense.
//!
//! # Data in Redis
//! - `pushwire:epoch`: the epoch of the shared stream, 16 hex digits. The first instance
//!   to start sets it; every other one adopts it, so all give out the same cursors.
//! - `pushwire:stream`: the messages, capped to `--history` entries (`XADD … MAXLEN`).
//!   Entry `<seq>-0` (the stream id *is* the sequence number) has the fields `epoch`,
//!   `body` and `time` (milliseconds), everything [`Message::new`] needs, so every
//!   instance builds byte-identical message objects.
//!
//! A message id is `{epoch}-{seq}` as in memory, and `seq` maps one to one to the
//! stream id `seq-0`: a cursor from any instance is a position in the shared stream.
//!
//! # Publishing and ordering
//! `scripts::PUBLISH` is a Lua script: it checks the epoch, reads the last entry's id and
//! `XADD`s the next one. Redis runs scripts one at a time, so sequence numbers are dense
//! and their order is the one order of the conversation. A publish does not touch the
//! local ring: the message comes back through this instance's reader like everyone
//! else's, which is what keeps all instances in the same order.
//!
//! # Reading
//! Each instance runs one reader task that follows the stream with a blocking `XREAD`
//! on a connection of its own (a blocking command would stall the multiplexed
//! connection that publishes share), and pushes entries into the local ring and
//! broadcast. Subscribers never talk to Redis: two connections per instance, whatever
//! the number of clients.
//!
//! # Resuming on another instance
//! - A cursor ahead of this instance's reader (published elsewhere a moment ago) would
//!   be [`GapReason::Ahead`] in memory. Here the stream's last entry is checked: if the
//!   cursor is within it, the subscription simply waits for the reader to get there.
//! - A cursor older than the local ring is completed from the stream when the stream
//!   holds more (another instance may run with a longer `--history`); what neither
//!   holds is an [`GapReason::Evicted`] gap, as in memory.
//! - Entries trimmed before the reader got to them (it fell more than `--history`
//!   behind) restart the ring at the next entry; subscribers get an `evicted` gap.
//!
//! # Faults
//! - Redis unreachable, or not answering within [`PUBLISH_TIMEOUT`]: publishing fails
//!   with [`PublishError::Unavailable`] (HTTP 503, WebSocket close 1013). Nothing is
//!   dropped silently: a publish either got a sequence number from Redis or failed.
//! - The reader reconnects with exponential backoff (`RECONNECT_MIN` to
//!   `RECONNECT_MAX`) and resumes `XREAD` after the last entry it holds, so messages
//!   published meanwhile through other instances reach subscribers without loss.
//! - Redis that comes back without the stream (no persistence, `FLUSHALL`) or with an
//!   older one (lost writes: the stream ends before an entry this instance has seen)
//!   would hand out ids that were already used. Instead a new epoch starts (`scripts::SYNC`):
//!   open subscriptions end (WebSocket close 1001, SSE end; clients reconnect) and
//!   their old cursors get an `unknown_epoch` gap followed by the new history. Run Redis
//!   with `appendonly yes` and `appendfsync always` to keep the conversation across
//!   Redis restarts.
//!
//! Sequence numbers pass through Lua numbers (doubles): exact up to 2^53 messages.

mod reader;
mod scripts;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::streams::{StreamId, StreamRangeReply};
use ::redis::{AsyncCommands, Client, RedisError, RedisResult};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::{Backend, Bus, Cursor, Epoch, GapReason, Message, PublishError, ResumeFrom, Subscription, now_ms};

/// The key holding the shared epoch.
const EPOCH_KEY: &str = "pushwire:epoch";
/// The key of the message stream.
const STREAM_KEY: &str = "pushwire:stream";

/// Longest a publish waits for Redis before answering 503. Redis answers in well under
/// a millisecond when healthy; seconds mean it is gone or stuck, and a chat user would
/// rather see an error than a spinner.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a subscribe waits for Redis to check or complete a cursor before settling
/// for what the local ring says.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// A connection attempt to a live Redis on a LAN takes milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// What a Redis-backed bus keeps besides the in-memory state.
#[derive(Debug)]
pub(super) struct Link {
    /// Publishes and queries; reconnects by itself. Cloning shares one connection.
    commands: ConnectionManager,
    history: usize,
    /// Cancelled when the bus is dropped, which ends the reader task.
    stop: CancellationToken,
}

impl Drop for Link {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Why a Redis-backed bus could not start.
#[derive(Debug)]
pub struct ConnectError {
    /// The server's URL, without credentials.
    server: String,
    source: RedisError,
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cannot use Redis at {}: {}", self.server, self.source)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl Bus {
    /// A bus shared with every other pushwire instance using the Redis server at `url`
    /// (`redis://HOST:PORT[/DB]`), retaining the last `history` messages.
    ///
    /// Connects, adopts (or starts) the shared epoch and loads the retained history
    /// before returning, so the bus is ready to serve; then a reader task follows the
    /// stream until the bus is dropped. Must be called within a tokio runtime.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), pushwire::bus::ConnectError> {
    /// let bus = pushwire::bus::Bus::redis("redis://127.0.0.1:6379", 200, 64 * 1024).await?;
    /// let message = bus.publish("hello from any instance".into()).await.expect("Redis is up");
    /// println!("{}", message.id);
    /// # Ok(()) }
    /// ```
    pub async fn redis(url: &str, history: usize, max_body_bytes: usize) -> Result<Bus, ConnectError> {
        let server = url.rsplit_once('@').map_or(url.to_owned(), |(_, host)| format!("redis://{host}"));
        let fail = |source| ConnectError { server: server.clone(), source };
        let client = Client::open(url).map_err(fail)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(PUBLISH_TIMEOUT))
            // Few, quick retries: while Redis is down, publishes should fail fast
            // (503) rather than wait out a long backoff.
            .set_number_of_retries(1)
            .set_max_delay(reader::RECONNECT_MAX);
        let mut commands = ConnectionManager::new_with_config(client.clone(), config).await.map_err(fail)?;
        let epoch = scripts::sync_epoch(&mut commands, None, 0).await.map_err(fail)?;

        let stop = CancellationToken::new();
        let link = Link { commands: commands.clone(), history, stop: stop.clone() };
        let bus = Bus::with_backend(history, max_body_bytes, Backend::Redis(link));
        bus.lock().restart(epoch);
        let retained: StreamRangeReply = commands.xrange_all(STREAM_KEY).await.map_err(fail)?;
        // A mismatch here means another instance restarted the stream in between; the
        // reader notices and resynchronises.
        let _ = reader::apply(&bus, retained.ids);

        tokio::spawn(reader::follow(Arc::downgrade(&bus.shared), client, stop));
        Ok(bus)
    }
}

impl Link {
    /// Publishes through the stream; see the module documentation.
    pub(super) async fn publish(&self, bus: &Bus, body: String) -> Result<Arc<Message>, PublishError> {
        match timeout(PUBLISH_TIMEOUT, self.append(bus, body)).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(error)) => Err(unavailable(&error)),
            Err(_elapsed) => Err(unavailable(&format!("no answer within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    /// Runs `scripts::PUBLISH` until Redis has given the message a sequence number.
    async fn append(&self, bus: &Bus, body: String) -> RedisResult<Arc<Message>> {
        let time = now_ms();
        let mut connection = self.commands.clone();
        let Cursor { mut epoch, seq: last_seq } = bus.lock().position();
        let mut reconnected = false;
        // A round may learn that the stream moved to a new epoch (or has none after a
        // Redis restart), or find the connection broken once (the manager reconnects);
        // the next round publishes. Three rounds cover both.
        for _ in 0..3 {
            let (seq, current) = match scripts::publish(&mut connection, epoch, self.history, &body, time).await {
                Ok(answer) => answer,
                // The first request after Redis came back finds the old connection dead.
                Err(error) if !reconnected && (error.is_io_error() || error.is_connection_dropped()) => {
                    reconnected = true;
                    continue;
                }
                Err(error) => return Err(error),
            };
            if seq > 0 {
                return Ok(Arc::new(Message::new(Cursor { epoch, seq }, body, time)));
            }
            epoch = match current.parse() {
                Ok(current) => current,
                Err(_) => scripts::sync_epoch(&mut connection, Some(epoch), last_seq).await?,
            };
        }
        Err(RedisError::from((::redis::ErrorKind::Client, "the stream's epoch kept changing")))
    }

    /// Corrects what the local ring alone concluded about `from` (see "Resuming on
    /// another instance" above). If Redis cannot be asked, the local answer stands.
    pub(super) async fn reconcile(&self, mut subscription: Subscription, from: ResumeFrom) -> Subscription {
        let (ResumeFrom::Cursor(cursor), Some(gap)) = (from, subscription.opening_gap()) else {
            return subscription;
        };
        let mut connection = self.commands.clone();
        match (gap.reason, gap.missed) {
            (GapReason::Ahead, _) => {
                let newest = timeout(QUERY_TIMEOUT, newest_seq(&mut connection, cursor.epoch)).await;
                if let Ok(Ok(Some(newest))) = newest
                    && cursor.seq <= newest
                {
                    // The live feed joined before this instance's reader reached the
                    // cursor; the subscription skips everything up to it.
                    subscription.wait_past(cursor.seq);
                }
            }
            (GapReason::Evicted, Some(missed)) => {
                let (from, to) = (cursor.seq + 1, cursor.seq + missed);
                let range = connection.xrange::<_, _, _, StreamRangeReply>(STREAM_KEY, seq_id(from), seq_id(to));
                if let Ok(Ok(reply)) = timeout(QUERY_TIMEOUT, range).await {
                    let older = reply.ids.iter().filter_map(decode).filter(|m| m.cursor.epoch == cursor.epoch);
                    subscription.fill_opening_gap(older.collect(), cursor);
                }
            }
            _ => {}
        }
        subscription
    }
}

/// The sequence number of the stream's newest entry, if the stream is of `epoch`.
async fn newest_seq(connection: &mut ConnectionManager, epoch: Epoch) -> RedisResult<Option<u64>> {
    let (current, newest): (Option<String>, StreamRangeReply) =
        ::redis::pipe().get(EPOCH_KEY).xrevrange_count(STREAM_KEY, "+", "-", 1).query_async(connection).await?;
    if current.and_then(|text| text.parse().ok()) != Some(epoch) {
        return Ok(None);
    }
    Ok(newest.ids.first().and_then(|entry| entry_seq(&entry.id)))
}

/// The message a stream entry holds, or `None` if pushwire did not write it.
fn decode(entry: &StreamId) -> Option<Arc<Message>> {
    let seq = entry_seq(&entry.id)?;
    let epoch = entry.get::<String>("epoch")?.parse().ok()?;
    let body: String = entry.get("body")?;
    let time: u64 = entry.get("time")?;
    Some(Arc::new(Message::new(Cursor { epoch, seq }, body, time)))
}

/// `seq` of a stream id `seq-0`.
fn entry_seq(id: &str) -> Option<u64> {
    id.strip_suffix("-0")?.parse().ok()
}

/// The stream id of sequence number `seq`.
fn seq_id(seq: u64) -> String {
    format!("{seq}-0")
}

/// Logs why a publish failed and says so to the caller.
fn unavailable(error: &dyn fmt::Display) -> PublishError {
    tracing::warn!(%error, "publish failed: Redis unavailable");
    PublishError::Unavailable
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_round_trip() {
        assert_eq!(entry_seq(&seq_id(42)), Some(42));
        assert_eq!(entry_seq("1700000000000-3"), None);
    }
}
