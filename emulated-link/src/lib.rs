//! A network link emulated in user space, around one end of a TCP connection: what
//! the wrapped stream reads and writes crosses a link with a round-trip time, optional
//! jitter and an optional bandwidth cap per direction. pushwire applies it to every
//! connection it accepts (`--emulate-rtt`), the load generator to every connection it
//! opens, so both can show what a real network does to each transport.
//!
//! # The model
//! - **Delay**: every chunk of bytes arrives `rtt / 2` after it was sent, in each
//!   direction, in order.
//! - **Connection set-up**: a TCP connect costs one round trip before the first byte
//!   can be sent, so bytes from the client sent within one `rtt` of the connection's
//!   opening leave only then. (The wrapped socket itself connected over loopback.)
//! - **Jitter**: each chunk waits a further uniform random time in `0..=jitter`, but
//!   never overtakes the chunk before it: byte order is kept, as TCP keeps it.
//! - **Bandwidth**: each direction is a bottleneck that sends one byte after another at
//!   the rate, counting 52 bytes of TCP/IP headers for every 1,448 bytes of payload; what
//!   waits for it queues, and a full queue ([`QUEUE_LIMIT`]) stops reading from the
//!   sender, which is how a congested link pushes back on TCP.
//!
//! # What it does not model
//! Packet loss and retransmission; TCP's slow start and congestion window (a large
//! first answer arrives in one `rtt / 2` here, where a real long link needs more round
//! trips); delayed ACKs; header bytes of chunks smaller than a segment beyond the one
//! header counted per chunk.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};
use tokio::time::{Instant, sleep_until};

/// Bytes a direction holds in flight and queued before it stops reading from the
/// sender: a generous router buffer, so a link slower than its load shows up as
/// growing delay before it pushes back.
pub const QUEUE_LIMIT: usize = 1024 * 1024;
/// Bytes of the in-process pipe between the application and the link.
const PIPE_BYTES: usize = 64 * 1024;
/// What one read from a sender takes at most.
const CHUNK_BYTES: usize = 16 * 1024;
/// TCP/IP header bytes (IPv4 20, TCP 20, timestamps 12) per segment.
const HEADER_BYTES: usize = 52;
/// Payload bytes of a full segment at a 1,500-byte MTU, with timestamps.
const SEGMENT_BYTES: usize = 1448;

/// The emulated link's settings.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Link {
    /// Round-trip time: half of it each way, and one whole one to connect.
    pub rtt: Duration,
    /// The most a chunk may be delayed beyond `rtt / 2`, at random.
    pub jitter: Duration,
    /// Server → client bandwidth; `None` is unlimited.
    pub down: Option<Rate>,
    /// Client → server bandwidth; `None` is unlimited.
    pub up: Option<Rate>,
}

/// Which end of the connection a wrapped stream is: the client's bytes wait for the
/// connection set-up, the server's answers cannot come before a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// The stream is the client's end (the load generator's).
    Client,
    /// The stream is the server's end (an accepted connection).
    Server,
}

impl Link {
    /// A link with this round-trip time and nothing else.
    pub fn with_rtt(rtt: Duration) -> Self {
        Link { rtt, ..Link::default() }
    }

    /// Whether the link changes anything at all.
    pub fn is_emulated(&self) -> bool {
        *self != Link::default()
    }

    /// Wraps `stream`, one end of a connection opened just now, in the link. The
    /// application reads and writes the returned stream; two tasks move the bytes
    /// between it and `stream` on the link's schedule, and end with the connection.
    pub fn wrap<S>(self, stream: S, side: Side) -> DuplexStream
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let opened = Instant::now();
        let (application, link_end) = tokio::io::duplex(PIPE_BYTES);
        let (from_peer, to_peer) = tokio::io::split(stream);
        let (from_application, to_application) = tokio::io::split(link_end);
        // The client's bytes go up, the server's come down.
        let (outgoing, incoming) = match side {
            Side::Client => (self.direction(self.up, Some(opened)), self.direction(self.down, None)),
            Side::Server => (self.direction(self.down, None), self.direction(self.up, Some(opened))),
        };
        tokio::spawn(outgoing.carry(from_application, to_peer));
        tokio::spawn(incoming.carry(from_peer, to_application));
        application
    }

    fn direction(&self, rate: Option<Rate>, connecting_since: Option<Instant>) -> Direction {
        Direction {
            one_way: self.rtt / 2,
            jitter: self.jitter,
            rate,
            // Only the direction the client sends in waits for the handshake.
            sendable_from: connecting_since.map(|opened| opened + self.rtt),
        }
    }
}

/// For people: `300 ms RTT, jitter up to 20 ms, 1 Mbit/s down, 500 kbit/s up`.
impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms RTT", trim(self.rtt.as_secs_f64() * 1000.0))?;
        if !self.jitter.is_zero() {
            write!(f, ", jitter up to {} ms", trim(self.jitter.as_secs_f64() * 1000.0))?;
        }
        match (self.down, self.up) {
            (Some(down), Some(up)) if down == up => write!(f, ", {down} each way"),
            (down, up) => {
                if let Some(down) = down {
                    write!(f, ", {down} down")?;
                }
                if let Some(up) = up {
                    write!(f, ", {up} up")?;
                }
                Ok(())
            }
        }
    }
}

/// One direction of the link.
#[derive(Clone, Copy, Debug)]
struct Direction {
    one_way: Duration,
    jitter: Duration,
    rate: Option<Rate>,
    /// Nothing leaves before this (the end of the TCP handshake).
    sendable_from: Option<Instant>,
}

impl Direction {
    /// When a chunk of `len` bytes read at `now` arrives, given when the link is free
    /// to send again and when the chunk before it arrives (both updated).
    fn schedule(&self, len: usize, now: Instant, free_at: &mut Instant, last_arrival: &mut Instant) -> Instant {
        let mut sent = self.sendable_from.map_or(now, |from| now.max(from));
        if let Some(rate) = self.rate {
            let on_wire = len + len.div_ceil(SEGMENT_BYTES) * HEADER_BYTES;
            sent = sent.max(*free_at) + rate.time_to_send(on_wire);
            *free_at = sent;
        }
        let jitter = if self.jitter.is_zero() { Duration::ZERO } else { self.jitter.mul_f64(fastrand::f64()) };
        let arrival = (sent + self.one_way + jitter).max(*last_arrival);
        *last_arrival = arrival;
        arrival
    }

    /// Moves bytes from `source` to `sink` on the link's schedule until `source` ends
    /// (then `sink` is shut down once what was in flight has arrived) or either fails.
    async fn carry(self, mut source: impl AsyncRead + Unpin, mut sink: impl AsyncWrite + Unpin) {
        let mut in_flight: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
        let mut queued = 0;
        let mut source_open = true;
        let (mut free_at, mut last_arrival) = (Instant::now(), Instant::now());
        let mut buffer = vec![0; CHUNK_BYTES];
        loop {
            let next_arrival = in_flight.front().map(|(at, _)| *at);
            if !source_open && next_arrival.is_none() {
                let _ = sink.shutdown().await;
                return;
            }
            tokio::select! {
                // Arrivals first: a chunk that is due is not held back by reading.
                biased;
                () = sleep_until(next_arrival.unwrap_or_else(Instant::now)), if next_arrival.is_some() => {
                    let (_, chunk) = in_flight.pop_front().expect("a chunk is due");
                    queued -= chunk.len();
                    if sink.write_all(&chunk).await.is_err() || sink.flush().await.is_err() {
                        return;
                    }
                }
                read = source.read(&mut buffer), if source_open && queued < QUEUE_LIMIT => match read {
                    Ok(0) => source_open = false,
                    Ok(len) => {
                        let now = Instant::now();
                        // On a limited link a segment arrives as soon as it is through,
                        // not when the whole read is.
                        let piece = if self.rate.is_some() { SEGMENT_BYTES } else { CHUNK_BYTES };
                        for chunk in buffer[..len].chunks(piece) {
                            let arrival = self.schedule(chunk.len(), now, &mut free_at, &mut last_arrival);
                            in_flight.push_back((arrival, chunk.to_vec()));
                        }
                        queued += len;
                    }
                    // A reset: the connection is gone for both sides at once.
                    Err(_) => return,
                },
            }
        }
    }
}

/// A bandwidth, in bits per second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    bits_per_second: u64,
}

impl Rate {
    /// `bits_per_second`, which must not be 0.
    pub fn from_bits_per_second(bits_per_second: u64) -> Option<Self> {
        (bits_per_second > 0).then_some(Rate { bits_per_second })
    }

    /// Bits per second.
    pub fn bits_per_second(self) -> u64 {
        self.bits_per_second
    }

    fn time_to_send(self, bytes: usize) -> Duration {
        Duration::from_secs_f64(bytes as f64 * 8.0 / self.bits_per_second as f64)
    }
}

/// Why a rate or a duration could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ParseError {}

/// `tc`'s units: `bit`, `kbit`, `mbit`, `gbit` (powers of 1,000), e.g. `1mbit`, `400kbit`,
/// `1.5mbit`.
impl FromStr for Rate {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let refuse = || ParseError(format!("{text:?} is not a rate: write it like 1mbit, 400kbit or 2gbit"));
        let lower = text.trim().to_ascii_lowercase();
        let split = lower.find(|c: char| !(c.is_ascii_digit() || c == '.')).ok_or_else(refuse)?;
        let (number, unit) = lower.split_at(split);
        let scale = match unit {
            "bit" => 1.0,
            "kbit" => 1e3,
            "mbit" => 1e6,
            "gbit" => 1e9,
            _ => return Err(refuse()),
        };
        let value: f64 = number.parse().map_err(|_| refuse())?;
        let bits = (value * scale).round();
        if !bits.is_finite() || bits < 1.0 || bits > u64::MAX as f64 {
            return Err(refuse());
        }
        Ok(Rate { bits_per_second: bits as u64 })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bits = self.bits_per_second as f64;
        match bits {
            b if b >= 1e9 => write!(f, "{} Gbit/s", trim(b / 1e9)),
            b if b >= 1e6 => write!(f, "{} Mbit/s", trim(b / 1e6)),
            b if b >= 1e3 => write!(f, "{} kbit/s", trim(b / 1e3)),
            b => write!(f, "{b} bit/s"),
        }
    }
}

/// A number with at most two decimals and no trailing zeros.
fn trim(value: f64) -> String {
    let text = format!("{value:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A duration such as `100ms`, `1.5s` or `0` (humantime's forms, and plain 0).
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    if text.trim() == "0" {
        return Ok(Duration::ZERO);
    }
    humantime::parse_duration(text.trim())
        .map_err(|error| ParseError(format!("{text:?} is not a duration ({error}): write it like 100ms or 1.5s")))
}

#[cfg(test)]
mod tests;
