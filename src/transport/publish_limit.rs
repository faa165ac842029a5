//! One client cannot take the room: every publish (a POST, a WebSocket frame, a
//! WebTransport stream) takes from two token buckets, governor's GCRA: its
//! connection's (`--publish-rate` sustained, `--publish-burst` at once) and its
//! address's, [`PER_ADDRESS`] times larger. A refused publish is told how long to wait.
//!
//! - A message takes one token per [`TOKEN_BYTES`] of its body started (at most the
//!   whole burst): what a publisher costs every subscriber is bytes, and a limit that
//!   counted messages let one client fill every stream with 16 KiB messages at the
//!   full message rate. Chat lines take one token each.
//! - The connection's bucket is checked first, and a refusal takes nothing from a
//!   bucket, so a connection that floods is refused by its own bucket without draining
//!   the one its address shares with others.
//! - The address is the TCP or QUIC peer: pushwire reads no proxy header, so behind a
//!   reverse proxy every client has the proxy's address and shares its bucket (raise the
//!   limit there, or turn it `off`). An IPv6 peer is keyed by its /64, the block one
//!   host is usually given, so that it cannot step around the limit address by address.
//! - Memory: one entry per connection and address that published lately. Every
//!   `SWEEP` those whose bucket is full again, indistinguishable from a new one, are
//!   dropped and the maps shrunk (`sweep`).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};

use crate::AppState;
use crate::config::Config;

/// How many connections' worth one address may publish: a few people behind one NAT,
/// or one person's tabs, each publishing at the full rate.
pub const PER_ADDRESS: u32 = 4;
/// The body bytes one token pays for.
pub const TOKEN_BYTES: usize = 1024;
/// How often buckets that are full again are forgotten: at most the publishers of the
/// last few seconds are remembered.
const SWEEP: Duration = Duration::from_secs(10);

/// The buckets of every recent publisher, on clock `C` (the tests' is a fake one); no
/// limit when `--publish-rate off`.
#[derive(Debug)]
pub struct PublishLimit<C: Clock = DefaultClock>(Option<Buckets<C>>);

#[derive(Debug)]
struct Buckets<C: Clock> {
    /// What one connection may take at once: the most one message takes.
    burst: NonZeroU32,
    by_connection: Limiter<SocketAddr, C>,
    by_address: Limiter<IpAddr, C>,
    clock: C,
}

/// One bucket per key, in a map behind a mutex.
type Limiter<K, C> = RateLimiter<K, DefaultKeyedStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// A publish refused for now: the client may publish again after `wait`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimited {
    /// How long until the client's bucket holds a message again.
    pub wait: Duration,
}

impl RateLimited {
    /// The wait in whole seconds, rounded up, as `Retry-After` says it: at least 1.
    pub fn retry_after_secs(&self) -> u64 {
        (self.wait.as_secs() + u64::from(self.wait.subsec_nanos() > 0)).max(1)
    }

    /// What the client is told, on every path.
    pub fn message(&self) -> String {
        format!("publishing too fast: retry in {} s", self.retry_after_secs())
    }

    /// The refusal in-band (a WebSocket frame, a WebTransport answer): the refusal object
    /// of a publish stream with the wait, `{"error":{"reason":"rate_limited","message":…,
    /// "retry_after":1}}`.
    pub(crate) fn json(&self) -> String {
        let refusal = serde_json::json!({
            "error": { "reason": "rate_limited", "message": self.message(), "retry_after": self.retry_after_secs() }
        });
        refusal.to_string()
    }
}

impl PublishLimit {
    /// The limit `config` sets: `--publish-rate` and `--publish-burst` per connection.
    pub fn new(config: &Config) -> Self {
        Self::with_clock(config, DefaultClock::default())
    }
}

impl<C: Clock + Clone> PublishLimit<C> {
    /// The limit `config` sets, on `clock`.
    fn with_clock(config: &Config, clock: C) -> Self {
        if config.publish_rate.is_infinite() {
            return PublishLimit(None);
        }
        let burst = NonZeroU32::new(config.publish_burst).unwrap_or(NonZeroU32::MIN);
        let interval = Duration::from_secs_f64(1.0 / config.publish_rate);
        let quota = |share: u32| {
            // The flag's range (at most a million a second) keeps the interval above zero.
            let quota = Quota::with_period(interval / share).expect("a publish interval above zero");
            quota.allow_burst(burst.saturating_mul(NonZeroU32::new(share).unwrap_or(NonZeroU32::MIN)))
        };
        PublishLimit(Some(Buckets {
            burst,
            by_connection: RateLimiter::new(quota(1), DefaultKeyedStateStore::default(), clock.clone()),
            by_address: RateLimiter::new(quota(PER_ADDRESS), DefaultKeyedStateStore::default(), clock.clone()),
            clock,
        }))
    }

    /// Takes a message of `body` from the buckets of `peer` (its connection, then its
    /// address), or says how long it must wait.
    pub fn check(&self, peer: SocketAddr, body: &str) -> Result<(), RateLimited> {
        let Some(buckets) = &self.0 else { return Ok(()) };
        let tokens = u32::try_from(body.len().div_ceil(TOKEN_BYTES)).unwrap_or(u32::MAX).clamp(1, buckets.burst.get());
        let tokens = NonZeroU32::new(tokens).unwrap_or(NonZeroU32::MIN);
        let refused = |not_until: governor::NotUntil<C::Instant>| RateLimited {
            wait: not_until.wait_time_from(buckets.clock.now()),
        };
        // `tokens` is at most the burst, which every bucket holds: never insufficient.
        let take = |result: Result<Result<(), governor::NotUntil<C::Instant>>, governor::InsufficientCapacity>| {
            result.unwrap_or(Ok(())).map_err(refused)
        };
        take(buckets.by_connection.check_key_n(&peer, tokens))?;
        take(buckets.by_address.check_key_n(&address_key(peer.ip()), tokens))
    }

    /// Forgets the buckets that are full again, and gives back the memory they held.
    fn forget_idle(&self) {
        if let Some(buckets) = &self.0 {
            buckets.by_connection.retain_recent();
            buckets.by_connection.shrink_to_fit();
            buckets.by_address.retain_recent();
            buckets.by_address.shrink_to_fit();
        }
    }
}

/// Forgets idle buckets every [`SWEEP`] until shutdown.
pub(crate) async fn sweep(state: AppState) {
    if state.publish_limit.0.is_none() {
        return;
    }
    loop {
        tokio::select! {
            () = tokio::time::sleep(SWEEP) => state.publish_limit.forget_idle(),
            () = state.shutdown.cancelled() => return,
        }
    }
}

/// The bucket an address publishes from: IPv4 as it is (an IPv4-mapped IPv6 address
/// too), IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6((u128::from(v6) & !u128::from(u64::MAX)).into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limit(rate: f64, burst: u32) -> PublishLimit<FakeRelativeClock> {
        limit_on(rate, burst, FakeRelativeClock::default())
    }

    fn limit_on(rate: f64, burst: u32, clock: FakeRelativeClock) -> PublishLimit<FakeRelativeClock> {
        PublishLimit::with_clock(&Config { publish_rate: rate, publish_burst: burst, ..Config::default() }, clock)
    }

    fn peer(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    impl<C: Clock> PublishLimit<C> {
        /// Buckets remembered now, by connection and by address.
        fn remembered(&self) -> (usize, usize) {
            self.0.as_ref().map_or((0, 0), |buckets| (buckets.by_connection.len(), buckets.by_address.len()))
        }
    }

    #[test]
    fn a_connection_gets_its_burst_then_waits_for_the_rate() {
        let clock = FakeRelativeClock::default();
        let limit = limit_on(2.0, 3, clock.clone());
        for _ in 0..3 {
            limit.check(peer("192.0.2.1:1000"), "hi").unwrap();
        }
        let refused = limit.check(peer("192.0.2.1:1000"), "hi").unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(500));
        assert_eq!(refused.retry_after_secs(), 1);
        let json: serde_json::Value = serde_json::from_str(&refused.json()).unwrap();
        let message = "publishing too fast: retry in 1 s";
        assert_eq!(
            json,
            serde_json::json!({ "error": { "reason": "rate_limited", "message": message, "retry_after": 1 } })
        );
        // Another connection from the same address has a bucket of its own.
        limit.check(peer("192.0.2.1:1001"), "hi").unwrap();
        clock.advance(Duration::from_millis(499));
        assert_eq!(limit.check(peer("192.0.2.1:1000"), "hi").unwrap_err().wait, Duration::from_millis(1));
        clock.advance(Duration::from_millis(1));
        limit.check(peer("192.0.2.1:1000"), "hi").expect("one message more every half second");
    }

    #[test]
    fn retry_after_is_whole_seconds_rounded_up() {
        let secs = |millis| RateLimited { wait: Duration::from_millis(millis) }.retry_after_secs();
        assert_eq!((secs(0), secs(1), secs(1000), secs(1001), secs(4500)), (1, 1, 1, 2, 5));
    }

    #[test]
    fn an_address_gets_four_connections_worth_then_every_connection_of_it_waits() {
        let limit = limit(1.0, 2);
        for port in 0..PER_ADDRESS as u16 {
            for _ in 0..2 {
                limit.check(SocketAddr::new([198, 51, 100, 7].into(), port), "hi").unwrap();
            }
        }
        assert!(limit.check(peer("198.51.100.7:9999"), "hi").is_err(), "the address's bucket is empty");
        limit.check(peer("198.51.100.8:9999"), "hi").expect("another address is not held back");
        assert_eq!(limit.remembered(), (PER_ADDRESS as usize + 2, 2));
    }

    #[test]
    fn a_message_takes_a_token_per_kib_started_at_most_the_burst() {
        let clock = FakeRelativeClock::default();
        let limit = limit_on(10.0, 20, clock.clone());
        let (kib, just_over, huge) = ("x".repeat(TOKEN_BYTES), "x".repeat(TOKEN_BYTES + 1), "x".repeat(64 * 1024));
        // 1 + 2 tokens taken, 18 more asked: one over the burst of 20, a tenth of a second.
        limit.check(peer("192.0.2.1:1"), &kib).unwrap();
        limit.check(peer("192.0.2.1:1"), &just_over).unwrap();
        let refused = limit.check(peer("192.0.2.1:1"), &"x".repeat(18 * TOKEN_BYTES)).unwrap_err();
        assert_eq!(refused.wait, Duration::from_millis(100));
        // The largest body takes the whole burst, once it is full again.
        clock.advance(Duration::from_secs(2));
        limit.check(peer("192.0.2.1:1"), &huge).unwrap();
        assert!(limit.check(peer("192.0.2.1:1"), "hi").is_err());
    }

    #[test]
    fn a_refused_publish_takes_nothing() {
        let limit = limit(1.0, 1);
        limit.check(peer("192.0.2.1:1"), "hi").unwrap();
        for _ in 0..10 {
            assert!(limit.check(peer("192.0.2.1:1"), "hi").is_err());
        }
        // The address's bucket (4 deep) still has room for other connections.
        for port in 2..5 {
            limit.check(SocketAddr::new([192, 0, 2, 1].into(), port), "hi").unwrap();
        }
    }

    #[test]
    fn ipv6_hosts_are_keyed_by_their_64_and_mapped_ipv4_as_ipv4() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_eq!(address_key("::ffff:192.0.2.1".parse().unwrap()), "192.0.2.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn off_limits_nothing() {
        let limit = limit(f64::INFINITY, 1);
        for _ in 0..1000 {
            limit.check(peer("192.0.2.1:1"), "hi").unwrap();
        }
        assert_eq!(limit.remembered(), (0, 0));
    }

    #[test]
    fn buckets_full_again_are_forgotten() {
        let clock = FakeRelativeClock::default();
        let limit = limit_on(1.0, 2, clock.clone());
        limit.check(peer("192.0.2.1:1"), "hi").unwrap();
        limit.check(peer("192.0.2.2:1"), "hi").unwrap();
        assert_eq!(limit.remembered(), (2, 2));
        // The addresses' buckets (four times the rate) are full again; the connections'
        // are still filling.
        clock.advance(Duration::from_millis(1500));
        limit.forget_idle();
        assert_eq!(limit.remembered(), (2, 0));
        clock.advance(SWEEP);
        limit.forget_idle();
        assert_eq!(limit.remembered(), (0, 0));
    }
}
