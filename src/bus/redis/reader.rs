//! The reader task: follows the shared stream with a blocking `XREAD` on a connection
//! of its own and feeds what it reads to the local ring and live subscribers, through
//! the bus's append rule.

use std::sync::{Arc, Weak};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::streams::{StreamId, StreamReadOptions, StreamReadReply};
use ::redis::{AsyncCommands, AsyncConnectionConfig, Client, RedisResult};
use tokio_util::sync::CancellationToken;

use super::{CONNECT_TIMEOUT, PUBLISH_TIMEOUT, STREAM_KEY, decode, scripts, seq_id};
use crate::bus::state::StaleEpoch;
use crate::bus::{Bus, Message, Shared};

/// How long one `XREAD` blocks. On return with nothing the reader checks that the
/// epoch is unchanged, which bounds how long a flushed-and-restarted stream goes
/// unnoticed on a connection that never dropped.
const READ_BLOCK: Duration = Duration::from_secs(5);
/// Entries per `XREAD`: a reader that fell behind catches up in batches this size.
const READ_BATCH: usize = 256;
/// First pause before reconnecting the reader; doubled after each failure.
const RECONNECT_MIN: Duration = Duration::from_millis(100);
/// Longest pause between reconnection attempts: the catch-up delay after an outage.
pub(super) const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// Follows the stream until `stop` is cancelled or the bus is gone, reconnecting with
/// backoff whenever the connection fails.
pub(super) async fn follow(bus: Weak<Shared>, client: Client, stop: CancellationToken) {
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
        let last = bus.lock().position().seq;
        // Not holding the bus across the blocking read lets it be dropped meanwhile.
        drop(bus);
        let reply: Option<StreamReadReply> = connection.xread_options(&[STREAM_KEY], &[seq_id(last)], &options).await?;
        let Some(bus) = upgrade(weak) else { return Ok(()) };
        let applied = match reply {
            Some(reply) => apply(&bus, reply.keys.into_iter().flat_map(|key| key.ids).collect()),
            // Quiet for a whole block: make sure the stream was not restarted under us.
            None => Err(StaleEpoch),
        };
        if applied.is_err() {
            resync(&bus, &mut connection).await?;
        }
    }
}

/// Feeds entries read from the stream, oldest first, to the bus. Fails without
/// applying the rest when an entry is of another epoch: the stream was restarted.
pub(super) fn apply(bus: &Bus, entries: Vec<StreamId>) -> Result<(), StaleEpoch> {
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
    let mut state = bus.lock();
    messages.into_iter().try_for_each(|message| state.append(message))
}

/// Adopts the stream's current epoch (starting one if Redis lost it), restarting the
/// local state when it changed.
async fn resync(bus: &Bus, connection: &mut MultiplexedConnection) -> RedisResult<()> {
    let known = bus.lock().position();
    let epoch = scripts::sync_epoch(connection, Some(known.epoch), known.seq).await?;
    if epoch != known.epoch {
        tracing::warn!(old = %known.epoch, new = %epoch, "the Redis stream was restarted or lost; clients resume with a gap");
        bus.lock().restart(epoch);
    }
    Ok(())
}

fn upgrade(weak: &Weak<Shared>) -> Option<Bus> {
    weak.upgrade().map(|shared| Bus { shared })
}
