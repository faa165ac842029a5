//! Churn without leaks, the seed's own concern at scale: many subscriber connections
//! per transport open and go away, a third each closed cleanly (FIN after the response
//! began), reset (RST), or dropped half way through the request head. Afterwards the
//! server's subscriber gauge must be back at 0 within a second, and its resident
//! memory near where it started. "Started" is after a warm-up of 1 % of the clients (at
//! least 1,000): a fresh process's first connections grow its allocator's caches once,
//! which is not a leak; the fresh figure is reported too.
//!
//! The clients speak raw HTTP on plain sockets (the closes are the point), bound to
//! 16 loopback source addresses in turn: a clean close leaves the client's side in
//! TIME_WAIT for a minute, and one source address has only ~28,000 ports.

//!
//! [`run`] churns the connections and records [`crate::record::ChurnOutcome`]s;
//! [`report`] writes `churn.md` from them.

pub(crate) mod report;
pub(crate) mod run;
