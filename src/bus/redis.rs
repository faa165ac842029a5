//! The Redis Streams backend (cargo feature `redis`): several pushwire instances share
//! one conversation, with the same ids in the same order everywhere.
//!
//! Transports do not know about it: a Redis-backed [`Bus`] is the in-memory bus (ring,
//! live broadcast, [`Subscription`]) whose ring is fed from a Redis stream instead of
//! by local publishes.
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
//! [`PUBLISH`] is a Lua script: it checks the epoch, reads the last entry's id and
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
//! - The reader reconnects with exponential backoff ([`RECONNECT_MIN`] to
//!   [`RECONNECT_MAX`]) and resumes `XREAD` after the last entry it holds, so messages
//!   published meanwhile through other instances reach subscribers without loss.
//! - Redis that comes back without the stream (no persistence, `FLUSHALL`) or with an
//!   older one (lost writes: the stream ends before an entry this instance has seen)
//!   would hand out ids that were already used. Instead a new epoch starts ([`SYNC`]):
//!   open subscriptions end (WebSocket close 1001, SSE end; clients reconnect) and
//!   their old cursors get an `unknown_epoch` gap followed by the new history. Run Redis
//!   with `appendonly yes` and `appendfsync always` to keep the conversation across
//!   Redis restarts.
//!
//! Sequence numbers pass through Lua numbers (doubles): exact up to 2^53 messages.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::streams::{StreamId, StreamRangeReply, StreamReadOptions, StreamReadReply};
use ::redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisError, RedisResult, Script};
use tokio::sync::broadcast;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::{Bus, Cursor, Delivery, Epoch, Gap, GapReason, Message, PublishError, Ring, Shared, Subscription, now_ms};

/// The key holding the shared epoch.
const EPOCH_KEY: &str = "pushwire:epoch";
/// The key of the message stream.
const STREAM_KEY: &str = "pushwire:stream";

/// Longest a publish waits for Redis before answering 503. Redis answers in well under
/// a millisecond when healthy; seconds mean it is gone or stuck, and a chat user would
/// rather see an error than a spinner.
pub(super) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(3);
/// Longest a subscribe waits for Redis to check or complete a cursor before settling
/// for what the local ring says.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);
/// How long one `XREAD` blocks. On return with nothing the reader checks that the
/// epoch is unchanged, which bounds how long a flushed-and-restarted stream goes
/// unnoticed on a connection that never dropped.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries per `XREAD`: a reader that fell behind catches up in batches this size.
const READ_BATCH: usize = 256;
/// First pause before reconnecting the reader; doubled after each failure.
pub(super) const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest pause between reconnection attempts: the catch-up delay after an outage.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);
/// A connection attempt to a live Redis on a LAN takes milliseconds.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Appends one message. KEYS: epoch, stream. ARGV: the epoch the caller follows,
/// MAXLEN, body, time. Returns `{seq, epoch}`, or `{0, current epoch or ""}` when the
/// caller's epoch is not the stream's (it then learns the current one and retries).
const PUBLISH: &str = r"
local epoch = redis.call('GET', KEYS[1])
if epoch ~= ARGV[1] then
  return {0, epoch or ''}
end
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local seq = 1
if newest[1] then
  seq = tonumber(string.match(newest[1][1], '^%d+')) + 1
end
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[2], string.format('%d-0', seq),
  'epoch', ARGV[1], 'body', ARGV[3], 'time', ARGV[4])
return {seq, epoch}
";

/// Returns the stream's epoch, starting a new one (`ARGV[1]`) when there is none or
/// when the stream is behind what the caller has seen (`ARGV[2]` its epoch, `ARGV[3]`
/// its last seq): Redis lost data, and continuing would reuse ids.
const SYNC: &str = r"
local epoch = redis.call('GET', KEYS[1])
local last = 0
local newest = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
if newest[1] then
  last = tonumber(string.match(newest[1][1], '^%d+'))
end
if (not epoch) or (epoch == ARGV[2] and last < tonumber(ARGV[3])) then
  redis.call('DEL', KEYS[2])
  redis.call('SET', KEYS[1], ARGV[1])
  return ARGV[1]
end
return epoch
";

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
            .set_max_delay(RECONNECT_MAX);
        let mut commands = ConnectionManager::new_with_config(client.clone(), config).await.map_err(fail)?;
        let epoch = sync_epoch(&mut commands, None, 0).await.map_err(fail)?;

        let mut bus = Bus::in_memory(history, max_body_bytes);
        let stop = CancellationToken::new();
        let link = Link { commands: commands.clone(), history, stop: stop.clone() };
        let shared = Arc::get_mut(&mut bus.shared).expect("a bus nobody else holds yet");
        shared.redis = Some(link);
        bus.restart(epoch);
        let retained: StreamRangeReply = commands.xrange_all(STREAM_KEY).await.map_err(fail)?;
        // A mismatch here means another instance restarted the stream in between; the
        // reader notices and resynchronises.
        let _ = bus.apply(retained.ids);

        tokio::spawn(follow(Arc::downgrade(&bus.shared), client, stop));
        Ok(bus)
    }

    /// Publishes through the stream; see the module documentation.
    pub(super) async fn publish_to_stream(&self, link: &Link, body: String) -> Result<Arc<Message>, PublishError> {
        match timeout(PUBLISH_TIMEOUT, self.append(link, body)).await {
            Ok(Ok(message)) => Ok(message),
            Ok(Err(error)) => Err(unavailable(&error)),
            Err(_elapsed) => Err(unavailable(&format!("no answer within {PUBLISH_TIMEOUT:?}"))),
        }
    }

    /// Runs [`PUBLISH`] until Redis has given the message a sequence number.
    async fn append(&self, link: &Link, body: String) -> RedisResult<Arc<Message>> {
        let time = now_ms();
        let mut connection = link.commands.clone();
        let (mut epoch, last_seq) = self.position();
        let mut reconnected = false;
        // A round may learn that the stream moved to a new epoch (or has none after a
        // Redis restart), or find the connection broken once (the manager reconnects);
        // the next round publishes. Three rounds cover both.
        for _ in 0..3 {
            let script = Script::new(PUBLISH);
            let mut invocation = script.key(EPOCH_KEY);
            invocation.key(STREAM_KEY).arg(epoch_text(epoch)).arg(link.history).arg(&body).arg(time);
            let (seq, current) = match invocation.invoke_async::<(u64, String)>(&mut connection).await {
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
            epoch = match parse_epoch(&current) {
                Some(current) => current,
                None => sync_epoch(&mut connection, Some(epoch), last_seq).await?,
            };
        }
        Err(RedisError::from((::redis::ErrorKind::Client, "the stream's epoch kept changing")))
    }

    /// Corrects what the local ring alone concluded about `cursor` (see "Resuming on
    /// another instance" above). If Redis cannot be asked, the local answer stands.
    pub(super) async fn reconcile(
        &self,
        link: &Link,
        mut subscription: Subscription,
        cursor: Option<&str>,
    ) -> Subscription {
        let Some(cursor) = cursor.and_then(|text| text.parse::<Cursor>().ok()) else {
            return subscription;
        };
        let mut connection = link.commands.clone();
        match subscription.pending.front() {
            Some(Delivery::Gap(Gap { reason: GapReason::Ahead, .. })) => {
                let newest = timeout(QUERY_TIMEOUT, newest_seq(&mut connection, cursor.epoch)).await;
                if let Ok(Ok(Some(newest))) = newest
                    && cursor.seq <= newest
                {
                    // The live feed joined before this instance's reader reached the
                    // cursor; `accept` skips everything up to it.
                    subscription.pending.clear();
                    subscription.last_seq = cursor.seq;
                }
            }
            Some(&Delivery::Gap(Gap { reason: GapReason::Evicted, missed: Some(missed), .. })) => {
                let (from, to) = (cursor.seq + 1, cursor.seq + missed);
                let range = connection.xrange::<_, _, _, StreamRangeReply>(STREAM_KEY, seq_id(from), seq_id(to));
                let older: Vec<Arc<Message>> = match timeout(QUERY_TIMEOUT, range).await {
                    Ok(Ok(reply)) => {
                        reply.ids.iter().filter_map(decode).filter(|m| m.cursor.epoch == cursor.epoch).collect()
                    }
                    _ => Vec::new(),
                };
                if let Some(first) = older.first() {
                    let still_missed = first.cursor.seq - from;
                    let resume = Cursor { epoch: cursor.epoch, seq: first.cursor.seq - 1 };
                    subscription.pending.pop_front();
                    for message in older.into_iter().rev() {
                        subscription.pending.push_front(Delivery::Message(message));
                    }
                    if still_missed > 0 {
                        let gap = Gap { reason: GapReason::Evicted, missed: Some(still_missed), resume };
                        subscription.pending.push_front(Delivery::Gap(gap));
                    }
                }
            }
            _ => {}
        }
        subscription
    }

    /// The epoch this instance follows and the last sequence number it holds.
    fn position(&self) -> (Epoch, u64) {
        let state = self.lock();
        (state.epoch, state.next_seq - 1)
    }

    /// Switches to a new epoch with an empty ring. Replacing the live sender ends every
    /// open subscription once it has drained what it was sent: their cursors belong to
    /// the old epoch, so their clients reconnect and are told of the gap.
    fn restart(&self, epoch: Epoch) {
        let history = self.shared.redis.as_ref().map_or(1, |link| link.history);
        let mut state = self.lock();
        state.epoch = epoch;
        state.ring = Ring::new(history);
        state.next_seq = 1;
        state.live = broadcast::channel(history).0;
    }

    /// Feeds entries read from the stream, oldest first, to the ring and live
    /// subscribers. Entries already held are skipped. Fails without applying the rest
    /// when an entry is of another epoch: the stream was restarted.
    fn apply(&self, entries: Vec<StreamId>) -> Result<(), StaleEpoch> {
        // Encoding happens here, outside the lock.
        let messages: Vec<Arc<Message>> = entries
            .iter()
            .filter_map(|entry| {
                let message = decode(entry);
                if message.is_none() {
                    tracing::warn!(id = %entry.id, "skipping a stream entry pushwire did not write");
                }
                message
            })
            .collect();
        let history = self.shared.redis.as_ref().map_or(1, |link| link.history);
        let mut state = self.lock();
        for message in messages {
            let seq = message.cursor.seq;
            if message.cursor.epoch != state.epoch {
                return Err(StaleEpoch);
            }
            if seq < state.next_seq {
                continue;
            }
            if seq > state.next_seq {
                // Trimmed before this reader saw them. The ring must stay dense, so it
                // restarts here; subscribers see the jump as an `evicted` gap.
                state.ring = Ring::new(history);
            }
            state.next_seq = seq + 1;
            state.ring.push(message.clone());
            // An error only means nobody is subscribed right now.
            let _ = state.live.send(message);
        }
        Ok(())
    }
}

/// An entry of another epoch turned up: the stream was restarted.
struct StaleEpoch;

/// The reader task: follows the stream until `stop` is cancelled or the bus is gone,
/// reconnecting with backoff whenever the connection fails.
async fn follow(bus: Weak<Shared>, client: Client, stop: CancellationToken) {
    let mut backoff = RECONNECT_MIN;
    let mut failing = false;
    loop {
        let outcome = tokio::select! {
            outcome = follow_connection(&bus, &client, &mut backoff, &mut failing) => outcome,
            () = stop.cancelled() => return,
        };
        match outcome {
            Ok(()) => return,
            Err(error) => {
                if !failing {
                    tracing::warn!(%error, "lost the Redis stream; reconnecting");
                    failing = true;
                }
                tracing::debug!(%error, ?backoff, "Redis reader reconnecting");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stop.cancelled() => return,
        }
        backoff = (backoff * 2).min(RECONNECT_MAX);
    }
}

/// Follows the stream on one connection until it fails (`Err`) or the bus is gone.
async fn follow_connection(
    weak: &Weak<Shared>,
    client: &Client,
    backoff: &mut Duration,
    failing: &mut bool,
) -> RedisResult<()> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(CONNECT_TIMEOUT))
        .set_response_timeout(Some(READ_BLOCK + PUBLISH_TIMEOUT));
    let mut connection = client.get_multiplexed_async_connection_with_config(&config).await?;
    let Some(bus) = upgrade(weak) else { return Ok(()) };
    resync(&bus, &mut connection).await?;
    drop(bus);
    if *failing {
        tracing::info!("Redis stream reachable again; catching up");
        *failing = false;
    }
    *backoff = RECONNECT_MIN;

    let options = StreamReadOptions::default().block(READ_BLOCK.as_millis() as usize).count(READ_BATCH);
    loop {
        let Some(bus) = upgrade(weak) else { return Ok(()) };
        let (_, last) = bus.position();
        // Not holding the bus across the blocking read lets it be dropped meanwhile.
        drop(bus);
        let reply: Option<StreamReadReply> = connection.xread_options(&[STREAM_KEY], &[seq_id(last)], &options).await?;
        let Some(bus) = upgrade(weak) else { return Ok(()) };
        let applied = match reply {
            Some(reply) => bus.apply(reply.keys.into_iter().flat_map(|key| key.ids).collect()),
            // Quiet for a whole block: make sure the stream was not restarted under us.
            None => Err(StaleEpoch),
        };
        if applied.is_err() {
            resync(&bus, &mut connection).await?;
        }
    }
}

/// Adopts the stream's current epoch (starting one if Redis lost it), restarting the
/// local state when it changed.
async fn resync(bus: &Bus, connection: &mut MultiplexedConnection) -> RedisResult<()> {
    let (known, last) = bus.position();
    let epoch = sync_epoch(connection, Some(known), last).await?;
    if epoch != known {
        tracing::warn!(
            old = epoch_text(known),
            new = epoch_text(epoch),
            "the Redis stream was restarted or lost; clients resume with a gap"
        );
        bus.restart(epoch);
    }
    Ok(())
}

/// Runs [`SYNC`]: the stream's epoch, a new one if Redis lost the stream.
async fn sync_epoch<C>(connection: &mut C, known: Option<Epoch>, last_seq: u64) -> RedisResult<Epoch>
where
    C: ::redis::aio::ConnectionLike + Send,
{
    let script = Script::new(SYNC);
    let mut invocation = script.key(EPOCH_KEY);
    invocation.key(STREAM_KEY).arg(epoch_text(Epoch::random())).arg(known.map_or(String::new(), epoch_text));
    let text: String = invocation.arg(last_seq).invoke_async(connection).await?;
    parse_epoch(&text).ok_or_else(|| {
        RedisError::from((::redis::ErrorKind::Parse, "not a pushwire epoch", format!("{EPOCH_KEY} holds {text:?}")))
    })
}

/// The sequence number of the stream's newest entry, if the stream is of `epoch`.
async fn newest_seq(connection: &mut ConnectionManager, epoch: Epoch) -> RedisResult<Option<u64>> {
    let (current, newest): (Option<String>, StreamRangeReply) =
        ::redis::pipe().get(EPOCH_KEY).xrevrange_count(STREAM_KEY, "+", "-", 1).query_async(connection).await?;
    if current.as_deref().and_then(parse_epoch) != Some(epoch) {
        return Ok(None);
    }
    Ok(newest.ids.first().and_then(|entry| entry_seq(&entry.id)))
}

/// The message a stream entry holds, or `None` if pushwire did not write it.
fn decode(entry: &StreamId) -> Option<Arc<Message>> {
    let seq = entry_seq(&entry.id)?;
    let epoch = parse_epoch(&entry.get::<String>("epoch")?)?;
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

/// An epoch in its cursor form, 16 hex digits.
fn epoch_text(epoch: Epoch) -> String {
    let cursor = Cursor { epoch, seq: 0 }.to_string();
    cursor[..16].to_owned()
}

fn parse_epoch(text: &str) -> Option<Epoch> {
    format!("{text}-0").parse::<Cursor>().ok().map(|cursor| cursor.epoch)
}

fn upgrade(weak: &Weak<Shared>) -> Option<Bus> {
    weak.upgrade().map(|shared| Bus { shared })
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
    fn epochs_and_stream_ids_round_trip() {
        let epoch = Epoch::random();
        assert_eq!(epoch_text(epoch).len(), 16);
        assert_eq!(parse_epoch(&epoch_text(epoch)), Some(epoch));
        assert_eq!(parse_epoch("not-an-epoch"), None);
        assert_eq!(entry_seq(&seq_id(42)), Some(42));
        assert_eq!(entry_seq("1700000000000-3"), None);
    }
}
