//! The restart storm: a pushwire under thousands of subscribers stops and starts again,
//! and every client comes back at once, or at a time of its own, depending on its
//! reconnection schedule.
//!
//! One trial is one bus, one way of stopping, one transport and one schedule:
//! - a pushwire of its own on a loopback port, with the in-memory bus (the history goes
//!   with the process: a client coming back must be told of the gap) or on a
//!   redis-server of the run's own (the history survives: nothing may be lost);
//! - `subscribers` clients of the transport, spread over loopback source addresses, and
//!   a publisher posting a message every [`PUBLISH_EVERY`] throughout (within the
//!   server's default per-client limit: pushwire runs as a user runs it);
//! - once every client has a message, the server is stopped, by `SIGKILL` (a crash: no
//!   one is told) or `SIGTERM` (a graceful stop: every client is told when to come back,
//!   spread over the server's `--restart-spread`), and started again on the same port as
//!   soon as the old process is gone;
//! - each client reconnects on its [`Schedule`], from the last message it holds.
//!
//! Measured from the stop signal: when 50 %, 99 % and 100 % of the clients receive again,
//! connection attempts (all, failed, the most in a second), the new server's CPU and
//! memory over the storm, the time from a successful attempt to its first data, and at
//! the end every accepted message checked at every client: none lost (on the in-memory
//! bus, those before the stop may be missing only where a gap notice said so), none twice,
//! none out of order. [`run`] runs the trials; [`report`] writes `storm.md` and one plot
//! of clients receiving against time per bus, stop and transport.

pub(crate) mod client;
pub(crate) mod report;
pub(crate) mod run;

use std::time::Duration;

use crate::record::Transport;

/// The publisher's pace: under pushwire's default per-client publish limit (5 a
/// second), so the server runs with its defaults.
pub(crate) const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// How a client picks the wait before each reconnection attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Schedule {
    /// The same wait every time, no jitter, whatever the server says: a browser's
    /// `EventSource` without `retry:` (3 s in Chromium and WebKit), or Phoenix's fixed
    /// steps.
    Fixed,
    /// A random wait from 0 to a ceiling that doubles per failed attempt ("full
    /// jitter", centrifuge-js's), deaf to the server.
    FullJitter,
    /// pushwire's page (static/transports/base.js): full jitter, but a delay the server
    /// told wins.
    Page,
    /// A browser's own `EventSource` on pushwire: the stream's `retry:` (each stream's
    /// drawn by the server, 0.5 to 1.5 s; at a graceful stop, the delay told), no
    /// backoff. SSE only.
    EventSource,
}

/// [`Schedule::Fixed`]'s wait: Chromium's and WebKit's `EventSource` default.
const FIXED: Duration = Duration::from_secs(3);
/// Full jitter's first ceiling and its cap: the page's `BACKOFF_BASE_MS` and
/// `BACKOFF_CAP_MS`.
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_CAP: Duration = Duration::from_secs(10);

impl Schedule {
    pub(crate) const ALL: [Schedule; 4] =
        [Schedule::Fixed, Schedule::FullJitter, Schedule::Page, Schedule::EventSource];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Schedule::Fixed => "fixed",
            Schedule::FullJitter => "full-jitter",
            Schedule::Page => "page",
            Schedule::EventSource => "eventsource",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Schedule, String> {
        let names = Schedule::ALL.map(Schedule::name).join(", ");
        Schedule::ALL.into_iter().find(|s| s.name() == text).ok_or_else(|| format!("{text}: one of {names}"))
    }

    /// Whether a client of `transport` can follow it.
    pub(crate) fn fits(self, transport: Transport) -> bool {
        self != Schedule::EventSource || transport == Transport::Sse
    }

    /// The wait before the next attempt after `failures` attempts that failed since the
    /// last data, given what the server told (`told`) and the stream's `retry:`.
    fn wait(self, failures: u32, told: Option<Duration>, retry: Duration) -> Duration {
        let full_jitter = || {
            let ceiling = BACKOFF_BASE.saturating_mul(1 << failures.min(16)).min(BACKOFF_CAP);
            ceiling.mul_f64(fastrand::f64())
        };
        match self {
            Schedule::Fixed => FIXED,
            Schedule::FullJitter => full_jitter(),
            Schedule::Page => told.unwrap_or_else(full_jitter),
            Schedule::EventSource => told.unwrap_or(retry),
        }
    }
}

/// How the server is stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stop {
    /// `SIGKILL`: a crash; no client is told anything.
    Kill,
    /// `SIGTERM`: a graceful stop; every client is told when to come back.
    Term,
}

impl Stop {
    pub(crate) const ALL: [Stop; 2] = [Stop::Kill, Stop::Term];

    fn signal(self) -> nix::sys::signal::Signal {
        match self {
            Stop::Kill => nix::sys::signal::Signal::SIGKILL,
            Stop::Term => nix::sys::signal::Signal::SIGTERM,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Stop::Kill => "kill",
            Stop::Term => "term",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Stop, String> {
        Stop::ALL.into_iter().find(|s| s.name() == text).ok_or_else(|| format!("{text}: kill or term"))
    }
}

/// Where the conversation lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Bus {
    Memory,
    Redis,
}

impl Bus {
    pub(crate) const ALL: [Bus; 2] = [Bus::Memory, Bus::Redis];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Bus::Memory => "memory",
            Bus::Redis => "redis",
        }
    }

    pub(crate) fn parse(text: &str) -> Result<Bus, String> {
        Bus::ALL.into_iter().find(|b| b.name() == text).ok_or_else(|| format!("{text}: memory or redis"))
    }
}

/// What a storm run measures.
#[derive(Clone, Debug)]
pub(crate) struct StormPlan {
    pub subscribers: usize,
    pub transports: Vec<Transport>,
    pub schedules: Vec<Schedule>,
    pub stops: Vec<Stop>,
    pub buses: Vec<Bus>,
}
