//! The Lua scripts that keep the shared stream's sequence numbers dense and its epoch
//! honest. Redis runs a script at a time, so each is one atomic step.

use ::redis::aio::ConnectionLike;
use ::redis::{RedisError, RedisResult, Script};

use super::{EPOCH_KEY, STREAM_KEY};
use crate::bus::Epoch;

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

/// Runs [`PUBLISH`]: `(seq, epoch)` as the script returns them.
pub(super) async fn publish<C>(
    connection: &mut C,
    epoch: Epoch,
    history: usize,
    body: &str,
    time: u64,
) -> RedisResult<(u64, String)>
where
    C: ConnectionLike + Send,
{
    let script = Script::new(PUBLISH);
    let mut invocation = script.key(EPOCH_KEY);
    invocation.key(STREAM_KEY).arg(epoch.to_string()).arg(history).arg(body).arg(time);
    invocation.invoke_async(connection).await
}

/// Runs [`SYNC`]: the stream's epoch, a new one if Redis lost the stream.
pub(super) async fn sync_epoch<C>(connection: &mut C, known: Option<Epoch>, last_seq: u64) -> RedisResult<Epoch>
where
    C: ConnectionLike + Send,
{
    let script = Script::new(SYNC);
    let mut invocation = script.key(EPOCH_KEY);
    invocation.key(STREAM_KEY).arg(Epoch::random().to_string()).arg(known.map_or(String::new(), |e| e.to_string()));
    let text: String = invocation.arg(last_seq).invoke_async(connection).await?;
    text.parse().map_err(|_| {
        RedisError::from((::redis::ErrorKind::Parse, "not a pushwire epoch", format!("{EPOCH_KEY} holds {text:?}")))
    })
}
