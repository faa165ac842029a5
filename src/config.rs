//! Every tunable, with its default and the reason for it. Each is a command-line flag
//! with an environment-variable twin (`pushwire --help` lists them).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use emulated_link::{Link, Rate};

mod parse;

use parse::{bus_url, history_size, link_duration, link_rate, on_off, publish_rate, seconds, seconds_or_zero};

/// Tornado's chat demo keeps 200 messages; so do we.
pub const DEFAULT_HISTORY: usize = 200;
/// Under the 30–60 s idle timeouts of common proxies and load balancers, so an idle
/// long-poll is answered (empty) before anything in between cuts it.
pub const DEFAULT_LONG_POLL_HOLD: Duration = Duration::from_secs(25);
/// Frequent enough to keep proxies with 30 s+ idle timeouts from closing the stream.
pub const DEFAULT_SSE_KEEPALIVE: Duration = Duration::from_secs(15);
/// Like the SSE keep-alive, and frequent enough to notice a dead peer within a minute.
pub const DEFAULT_WS_PING: Duration = Duration::from_secs(25);
/// A chat message, not a file upload.
pub const DEFAULT_MAX_BODY: usize = 64 * 1024;
/// Bytes queued per connection for a client that is not reading fast enough: 8
/// full-size messages (a message object carries its body twice), or thousands of
/// ordinary ones.
pub const DEFAULT_OUTBOUND_LIMIT: usize = 1024 * 1024;
/// How long bytes may wait for a client that takes none of them before it counts as a
/// slow consumer: long enough for a phone on a bad network to catch up on a burst.
pub const DEFAULT_SLOW_CONSUMER_TIMEOUT: Duration = Duration::from_secs(5);
/// Open subscriptions (streams, sockets, pending polls) the server accepts at once;
/// beyond it, 503 with `Retry-After`. Sized for the 10,000-per-transport benchmarks.
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 32_768;
/// A browser sends its request head in one go; 10 s is generous even on mobile.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head (request line and headers) accepted: a quarter of Tornado's
/// 64 KiB, the same as Node's. Every request of the page is under 1 KiB with its cookie,
/// so even a few large cookies of other apps on the same host fit.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;
/// Connections open at once, subscribed or not: the 32,768 subscriber slots with room
/// for page loads and publishers. Each connection still sending its head holds at most
/// about twice `--max-header-bytes` (hyper's read buffer doubles, then checks), so the
/// worst case is about 1.2 GiB of the benchmark machine's 24. The open-file limit may
/// bind first: pushwire raises its soft limit to the hard one.
pub const DEFAULT_MAX_CONNECTIONS: usize = 40_000;
/// Between two reads of a request body: nginx's `client_body_timeout` and Tornado's
/// `body_timeout` do the same. A form of a few KiB arrives in one read; 10 s is
/// generous even on mobile, and a body trickling in slower than that holds a
/// connection for nothing.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// Streams open at once on one HTTP/2 connection, as nginx's default: Chromium opens
/// at most this many on one connection (SSE streams and pending polls of every tab of
/// the origin) and queues the rest, a WebSocket opened after them included; more
/// would let one client hold more of the server than its share.
pub const DEFAULT_H2_MAX_STREAMS: u32 = 128;
/// tokio's own: 61 task polls between two looks for new I/O and timer events. Raising
/// it lets a fan-out burst finish before the requests that follow it are taken in,
/// which helps long-poll (its clients poll again at once) and costs the streaming
/// transports about as much (`bench/results/event-interval-2026-11-27`, measured by
/// `bench/experiments/event-interval/run`). So the default favours none of them; a deployment that
/// serves mostly long-poll can raise it.
pub const DEFAULT_EVENT_INTERVAL: u32 = 61;
/// Messages one connection may publish per second, sustained: a person types a few a
/// second at most, so chat never meets the limit and a flood is cut to this.
pub const DEFAULT_PUBLISH_RATE: f64 = 5.0;
/// Messages one connection may publish at once before the rate applies: the demo page's
/// "Publish burst" (20 by default) goes through whole.
pub const DEFAULT_PUBLISH_BURST: u32 = 20;
/// Over how long clients are told to come back after a graceful stop: spread over 5 s,
/// 10,000 clients return at 2,000 a second instead of all within one backoff step.
pub const DEFAULT_RESTART_SPREAD: Duration = Duration::from_secs(5);

/// What `--version` prints: the version and the optional features of this build, which
/// tools read before they start (pushwire-bench's scale-out needs `redis`).
const VERSION: &str = if cfg!(feature = "redis") {
    concat!(env!("CARGO_PKG_VERSION"), " (features: redis)")
} else {
    env!("CARGO_PKG_VERSION")
};

/// pushwire's settings.
#[derive(Parser, Debug, Clone)]
#[command(name = "pushwire", version = VERSION, about = "One chat over long-poll, SSE, WebSocket and WebTransport")]
pub struct Config {
    /// Address to listen on (keep it on loopback unless you mean to expose the demo).
    #[arg(long, env = "PUSHWIRE_ADDR", default_value = "127.0.0.1:8888")]
    pub addr: SocketAddr,

    /// How many messages the history ring keeps for replay and resume.
    #[arg(long, env = "PUSHWIRE_HISTORY", default_value_t = DEFAULT_HISTORY, value_parser = history_size)]
    pub history: usize,

    /// Seconds an idle long-poll is held before it is answered with no messages (at
    /// most a twenty-fifth more, up to 1 s: one sweep answers every poll that is due).
    #[arg(long, env = "PUSHWIRE_LONG_POLL_HOLD", default_value = "25", value_parser = seconds)]
    pub long_poll_hold: Duration,

    /// Seconds between SSE keep-alive comments on an idle stream.
    #[arg(long, env = "PUSHWIRE_SSE_KEEPALIVE", default_value = "15", value_parser = seconds)]
    pub sse_keepalive: Duration,

    /// Seconds between WebSocket pings.
    #[arg(long, env = "PUSHWIRE_WS_PING", default_value = "25", value_parser = seconds)]
    pub ws_ping: Duration,

    /// Largest message body in bytes (UTF-8); larger posts get 413, larger frames 1009.
    #[arg(long, env = "PUSHWIRE_MAX_BODY", default_value_t = DEFAULT_MAX_BODY)]
    pub max_body: usize,

    /// Bytes that may wait in the server for a streaming client (plus one batch); past
    /// that it catches up from the history once it has read what waits.
    #[arg(long, env = "PUSHWIRE_OUTBOUND_LIMIT", default_value_t = DEFAULT_OUTBOUND_LIMIT)]
    pub outbound_limit: usize,

    /// Seconds bytes may wait for a client that takes none of them before it is
    /// disconnected as a slow consumer (WebSocket close 1013, SSE `event: slow`).
    #[arg(long, env = "PUSHWIRE_SLOW_CONSUMER_TIMEOUT", default_value = "5", value_parser = seconds)]
    pub slow_consumer_timeout: Duration,

    /// Open subscriptions (SSE streams, WebSockets, pending long-polls) allowed at once;
    /// more get 503 with `Retry-After`.
    #[arg(long, env = "PUSHWIRE_MAX_SUBSCRIBERS", default_value_t = DEFAULT_MAX_SUBSCRIBERS)]
    pub max_subscribers: usize,

    /// Seconds a client gets to send its request headers before the connection is dropped.
    #[arg(long, env = "PUSHWIRE_HEADER_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,

    /// Largest request head in bytes (request line and headers); larger heads get 431
    /// and the connection is closed.
    #[arg(long, env = "PUSHWIRE_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES,
          value_parser = RangedU64ValueParser::<usize>::new().range(1024..=1024 * 1024))]
    pub max_header_bytes: usize,

    /// Connections open at once; beyond it a new connection is closed at once (counted
    /// as `too_many_connections`), and those already open are not disturbed.
    #[arg(long, env = "PUSHWIRE_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,

    /// Seconds a request body may go without a byte before the request is answered 408
    /// and its connection closed.
    #[arg(long, env = "PUSHWIRE_BODY_TIMEOUT", default_value = "10", value_parser = seconds)]
    pub body_timeout: Duration,

    /// Messages per second one connection may publish, sustained (fractions allowed), and
    /// four times that per client address; `off` for no limit. A message counts once per
    /// KiB of body started (at most `--publish-burst` times). Beyond it a POST gets 429
    /// with `Retry-After`, a WebSocket or WebTransport publish a refusal in-band.
    #[arg(long, env = "PUSHWIRE_PUBLISH_RATE", default_value = "5", value_parser = publish_rate)]
    pub publish_rate: f64,

    /// Messages one connection may publish at once before `--publish-rate` applies (four
    /// times that per client address).
    #[arg(long, env = "PUSHWIRE_PUBLISH_BURST", default_value_t = DEFAULT_PUBLISH_BURST,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub publish_burst: u32,

    /// Seconds over which clients are told to come back after a graceful stop: each gets a
    /// delay of its own, from 1 s to 1 s plus this (0: all after 1 s, in lockstep).
    #[arg(long, env = "PUSHWIRE_RESTART_SPREAD", default_value = "5", value_parser = seconds_or_zero)]
    pub restart_spread: Duration,

    /// Serve HTTPS (HTTP/2 and HTTP/1.1, by ALPN) on `--addr` instead of plain HTTP.
    #[arg(long, env = "PUSHWIRE_TLS")]
    pub tls: bool,

    /// Also serve HTTPS here, beside plain HTTP on `--addr` (implies `--tls` there only),
    /// so one chat can be opened over HTTP/1.1 and HTTP/2 side by side.
    #[arg(long, env = "PUSHWIRE_TLS_ADDR")]
    pub tls_addr: Option<SocketAddr>,

    /// The certificate chain for HTTPS, PEM. Without it (and `--tls-key`), a
    /// self-signed certificate for 127.0.0.1, ::1 and localhost is made at start-up.
    #[arg(long, env = "PUSHWIRE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key of `--tls-cert`, PEM.
    #[arg(long, env = "PUSHWIRE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Serve WebTransport sessions over HTTP/3 on UDP, at the same port number as
    /// `--addr`: `on` or `off`.
    #[arg(long, env = "PUSHWIRE_WEBTRANSPORT", default_value = "on", value_parser = on_off,
          action = clap::ArgAction::Set)]
    pub webtransport: bool,

    /// Streams one HTTP/2 connection may have open at once (`SETTINGS_MAX_CONCURRENT_STREAMS`).
    #[arg(long, env = "PUSHWIRE_H2_MAX_STREAMS", default_value_t = DEFAULT_H2_MAX_STREAMS,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub h2_max_streams: u32,

    /// Task polls a busy worker thread runs between two looks for new I/O and timer
    /// events (tokio's `event_interval`). Read by the `pushwire` binary, which builds
    /// the runtime.
    #[arg(long, env = "PUSHWIRE_EVENT_INTERVAL", default_value_t = DEFAULT_EVENT_INTERVAL,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub event_interval: u32,

    /// Extra origins allowed to open WebSockets (e.g. `https://chat.example`); the
    /// server's own origin is always allowed. Comma-separated in the env var.
    #[arg(long = "allow-origin", env = "PUSHWIRE_ALLOW_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Vec<String>,

    /// Share the conversation with other instances through Redis Streams:
    /// `redis://HOST:PORT[/DB]` (needs a build with `--features redis`). Without it the
    /// bus lives in this process's memory.
    #[arg(long, env = "PUSHWIRE_BUS", value_parser = bus_url)]
    pub bus: Option<String>,

    /// Emulate a network with this round-trip time (e.g. `100ms`) on every connection
    /// the server accepts: half of it each way, and one whole one to connect. For the
    /// demo: off by default, and not for measuring the server's own cost.
    #[arg(long, env = "PUSHWIRE_EMULATE_RTT", default_value = "0", value_parser = link_duration)]
    pub emulate_rtt: Duration,

    /// With the emulated link: delay each chunk by a further random time up to this
    /// (e.g. `20ms`), never reordering bytes.
    #[arg(long, env = "PUSHWIRE_EMULATE_JITTER", default_value = "0", value_parser = link_duration)]
    pub emulate_jitter: Duration,

    /// With the emulated link: cap each connection's bandwidth, both ways (e.g. `1mbit`,
    /// `400kbit`).
    #[arg(long, env = "PUSHWIRE_EMULATE_BANDWIDTH", value_parser = link_rate)]
    pub emulate_bandwidth: Option<Rate>,

    /// With the emulated link: cap the client → server direction at this instead (e.g.
    /// `500kbit`).
    #[arg(long, env = "PUSHWIRE_EMULATE_UPLOAD", value_parser = link_rate)]
    pub emulate_upload: Option<Rate>,
}

impl Config {
    /// The network link emulated on every accepted connection ([`Link::is_emulated`]
    /// is false unless a `--emulate-…` flag is set).
    pub fn link(&self) -> Link {
        Link {
            rtt: self.emulate_rtt,
            jitter: self.emulate_jitter,
            down: self.emulate_bandwidth,
            up: self.emulate_upload.or(self.emulate_bandwidth),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 8888)),
            history: DEFAULT_HISTORY,
            long_poll_hold: DEFAULT_LONG_POLL_HOLD,
            sse_keepalive: DEFAULT_SSE_KEEPALIVE,
            ws_ping: DEFAULT_WS_PING,
            max_body: DEFAULT_MAX_BODY,
            outbound_limit: DEFAULT_OUTBOUND_LIMIT,
            slow_consumer_timeout: DEFAULT_SLOW_CONSUMER_TIMEOUT,
            max_subscribers: DEFAULT_MAX_SUBSCRIBERS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            publish_rate: DEFAULT_PUBLISH_RATE,
            publish_burst: DEFAULT_PUBLISH_BURST,
            restart_spread: DEFAULT_RESTART_SPREAD,
            tls: false,
            tls_addr: None,
            tls_cert: None,
            tls_key: None,
            h2_max_streams: DEFAULT_H2_MAX_STREAMS,
            webtransport: true,
            event_interval: DEFAULT_EVENT_INTERVAL,
            allowed_origins: Vec::new(),
            bus: None,
            emulate_rtt: Duration::ZERO,
            emulate_jitter: Duration::ZERO,
            emulate_bandwidth: None,
            emulate_upload: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_defaults_match_the_default_config() {
        let parsed = Config::try_parse_from(["pushwire"]).unwrap();
        let default = Config::default();
        assert_eq!(
            (parsed.history, parsed.long_poll_hold, parsed.sse_keepalive, parsed.ws_ping, parsed.max_body),
            (default.history, default.long_poll_hold, default.sse_keepalive, default.ws_ping, default.max_body)
        );
        assert_eq!(
            (parsed.outbound_limit, parsed.slow_consumer_timeout, parsed.max_subscribers, parsed.header_timeout),
            (default.outbound_limit, default.slow_consumer_timeout, default.max_subscribers, default.header_timeout)
        );
        assert_eq!(parsed.event_interval, default.event_interval);
        assert_eq!(
            (parsed.publish_rate, parsed.publish_burst, parsed.restart_spread),
            (default.publish_rate, default.publish_burst, default.restart_spread)
        );
        assert_eq!(
            (parsed.max_header_bytes, parsed.max_connections),
            (default.max_header_bytes, default.max_connections)
        );
    }

    #[test]
    fn the_publish_rate_is_positive_or_off() {
        let rate = |args: &[&str]| Config::try_parse_from([&["pushwire"], args].concat()).map(|c| c.publish_rate);
        assert_eq!(rate(&["--publish-rate", "0.5"]).unwrap(), 0.5);
        assert_eq!(rate(&["--publish-rate", "off"]).unwrap(), f64::INFINITY);
        for bad in ["0", "-1", "inf", "NaN", "fast"] {
            assert!(rate(&["--publish-rate", bad]).is_err(), "{bad}");
        }
        assert!(Config::try_parse_from(["pushwire", "--publish-burst", "0"]).is_err());
        let spread = Config::try_parse_from(["pushwire", "--restart-spread", "0"]).unwrap().restart_spread;
        assert_eq!(spread, Duration::ZERO);
    }

    #[test]
    fn webtransport_is_on_unless_turned_off_by_value() {
        assert!(Config::try_parse_from(["pushwire"]).unwrap().webtransport);
        assert!(!Config::try_parse_from(["pushwire", "--webtransport", "off"]).unwrap().webtransport);
        assert!(Config::try_parse_from(["pushwire", "--webtransport", "on"]).unwrap().webtransport);
        assert!(Config::try_parse_from(["pushwire", "--webtransport", "maybe"]).is_err());
    }

    #[test]
    fn event_interval_must_be_positive() {
        let parsed = Config::try_parse_from(["pushwire", "--event-interval", "1000"]).unwrap();
        assert_eq!(parsed.event_interval, 1000);
        for bad in ["0", "-1", "often"] {
            assert!(Config::try_parse_from(["pushwire", "--event-interval", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_emulated_link_is_off_unless_asked_for_and_its_flags_are_checked() {
        assert!(!Config::try_parse_from(["pushwire"]).unwrap().link().is_emulated());
        let parsed = Config::try_parse_from([
            "pushwire",
            "--emulate-rtt",
            "300ms",
            "--emulate-bandwidth",
            "1mbit",
            "--emulate-upload",
            "500kbit",
        ])
        .unwrap();
        let link = parsed.link();
        assert_eq!(link.rtt, Duration::from_millis(300));
        assert_eq!(link.down.map(Rate::bits_per_second), Some(1_000_000));
        assert_eq!(link.up.map(Rate::bits_per_second), Some(500_000));
        for (flag, bad) in [("--emulate-rtt", "300"), ("--emulate-rtt", "2h"), ("--emulate-bandwidth", "fast")] {
            assert!(Config::try_parse_from(["pushwire", flag, bad]).is_err(), "{flag} {bad}");
        }
    }

    #[test]
    fn only_redis_urls_select_a_shared_bus() {
        let parsed = Config::try_parse_from(["pushwire", "--bus", "redis://127.0.0.1:6379/2"]).unwrap();
        assert_eq!(parsed.bus.as_deref(), Some("redis://127.0.0.1:6379/2"));
        assert!(Config::try_parse_from(["pushwire", "--bus", "127.0.0.1:6379"]).is_err());
        assert!(Config::try_parse_from(["pushwire", "--bus", "redis://"]).is_err());
    }
}
