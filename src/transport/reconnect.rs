//! Telling clients when to come back, each at a time of its own, so that a crowd of
//! them does not return at once.
//!
//! | when | reason | delay |
//! |---|---|---|
//! | a graceful stop (SIGTERM, the shutdown token) | `server_restart` | per connection, uniform from 1 s to 1 s + `--restart-spread` (5 s) |
//! | every subscriber slot taken (`--max-subscribers`) | `over_capacity` | per refusal, uniform over 5 s ± 50 % |
//!
//! Each transport says it in its own file, with the notice `{"reason":…,"delay_ms":…}`:
//! WebSocket a frame `{"reconnect":…}`, then close 1012 ("service restart") or 1013
//! ("try again later") with the delay in the reason; SSE `retry:` set to the delay and
//! `event: reconnect`, then the end of the stream, so that a plain `EventSource` waits it
//! too; WebTransport a line `{"reconnect":…}`, then close 1012 or 1013; long-poll, at a
//! stop, a field `"reconnect"` of the answer, and at capacity 503 with `Retry-After`
//! (whole seconds, rounded up), which `fetch` can read. The browser APIs of the other
//! three hide the status of a refused request, so at capacity they are let in to be
//! told, and hold no slot meanwhile.
//!
//! Every SSE stream also opens with a `retry:` of its own, 1000 ms ± 50 % (`sse_retry`),
//! so that browsers reconnecting by themselves after a cut do not come back in lockstep.

use std::time::Duration;

use crate::config::Config;

/// The least delay after a stop: the time a restart takes, about; a client told less
/// would find nothing there and fall back on its own backoff.
const RESTART_MIN: Duration = Duration::from_secs(1);
/// The middle of the delays told at capacity: the same as before they had jitter, and
/// long enough for a storm to pass.
const OVER_CAPACITY: Duration = Duration::from_secs(5);
/// The middle of the SSE `retry:` times: what every stream said before they had jitter.
const SSE_RETRY: Duration = Duration::from_secs(1);

/// When a client should come back, and why.
#[derive(Clone, Copy, Debug)]
pub struct Reconnect {
    reason: Reason,
    /// How long from now.
    pub(crate) delay: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reason {
    ServerRestart,
    OverCapacity,
}

impl Reconnect {
    /// For a client of a server that is stopping gracefully.
    pub(crate) fn restart(config: &Config) -> Self {
        let delay = RESTART_MIN + rand::random_range(Duration::ZERO..=config.restart_spread);
        Reconnect { reason: Reason::ServerRestart, delay }
    }

    /// For a subscriber refused because every slot is taken.
    pub(crate) fn over_capacity() -> Self {
        Reconnect { reason: Reason::OverCapacity, delay: jitter(OVER_CAPACITY) }
    }

    /// The notice, `{"reason":"server_restart","delay_ms":2345}`.
    pub(crate) fn json(&self) -> String {
        format!(r#"{{"reason":"{}","delay_ms":{}}}"#, self.reason_label(), self.delay.as_millis())
    }

    /// The close code of a WebSocket or a WebTransport session told this: 1012 ("service
    /// restart") or 1013 ("try again later").
    pub(crate) fn close_code(&self) -> u16 {
        match self.reason {
            Reason::ServerRestart => 1012,
            Reason::OverCapacity => 1013,
        }
    }

    /// The reason of that close, for people: `server restarting: reconnect in 2.3 s`.
    pub(crate) fn sentence(&self) -> String {
        let why = match self.reason {
            Reason::ServerRestart => "server restarting",
            Reason::OverCapacity => "server at capacity",
        };
        format!("{why}: reconnect in {:.1} s", self.delay.as_secs_f64())
    }

    /// The delay as `Retry-After` says it: whole seconds, rounded up.
    pub(crate) fn retry_after_secs(&self) -> u64 {
        self.delay.as_secs() + u64::from(self.delay.subsec_nanos() > 0)
    }

    fn reason_label(&self) -> &'static str {
        match self.reason {
            Reason::ServerRestart => "server_restart",
            Reason::OverCapacity => "over_capacity",
        }
    }
}

/// The `retry:` of a new SSE stream.
pub(crate) fn sse_retry() -> Duration {
    jitter(SSE_RETRY)
}

/// A time drawn uniformly from half of `middle` to one and a half times it.
fn jitter(middle: Duration) -> Duration {
    rand::random_range(middle / 2..=middle * 3 / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_delays_spread_over_the_window_and_no_further() {
        let config = Config { restart_spread: Duration::from_secs(4), ..Config::default() };
        let delays: Vec<Duration> = (0..1000).map(|_| Reconnect::restart(&config).delay).collect();
        assert!(delays.iter().all(|d| (RESTART_MIN..=RESTART_MIN + config.restart_spread).contains(d)));
        // Spread out: every second of the window is used, none by more than a third.
        for second in 1..5 {
            let within = delays.iter().filter(|d| d.as_secs() == second).count();
            assert!((100..333).contains(&within), "{within} in second {second}");
        }
        let lockstep = Config { restart_spread: Duration::ZERO, ..Config::default() };
        assert_eq!(Reconnect::restart(&lockstep).delay, RESTART_MIN);
    }

    #[test]
    fn a_notice_says_why_and_when() {
        let notice = Reconnect { reason: Reason::ServerRestart, delay: Duration::from_millis(2345) };
        assert_eq!(notice.json(), r#"{"reason":"server_restart","delay_ms":2345}"#);
        assert_eq!(notice.sentence(), "server restarting: reconnect in 2.3 s");
        assert_eq!((notice.close_code(), notice.retry_after_secs()), (1012, 3));
        let refusal = Reconnect::over_capacity();
        assert!((2500..=7500).contains(&refusal.delay.as_millis()), "{refusal:?}");
        assert_eq!(refusal.close_code(), 1013);
        assert!((3..=8).contains(&refusal.retry_after_secs()));
    }

    #[test]
    fn sse_retry_times_differ_around_a_second() {
        let times: std::collections::HashSet<Duration> = (0..100).map(|_| sse_retry()).collect();
        assert!(times.len() > 50, "{} different times out of 100", times.len());
        assert!(times.iter().all(|t| (500..=1500).contains(&t.as_millis())));
    }
}
