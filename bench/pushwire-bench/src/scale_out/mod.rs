//! The scale-out scenario: what it costs a delivery to cross instances through Redis.
//!
//! It starts its own `redis-server` (a free loopback port, a temporary directory, no
//! persistence: `--save '' --appendonly no`, since durability is not what is measured)
//! and two pushwire instances sharing the conversation through it (`--bus redis://…`),
//! plus one in-memory instance as the baseline, all from the same binary (built with
//! `--features redis`). Each load runs twice:
//! - [`IN_MEMORY`]: publisher and subscribers on the in-memory instance;
//! - [`THROUGH_REDIS`]: publisher on instance A, subscribers on instance B, so every
//!   message goes A → Redis (`XADD`) → B's reader (`XREAD`) → B's fan-out. The
//!   subscribers resume from the primer's id handed out by A, which is also what makes
//!   cursors portable across instances.
//!
//! The two alternate load by load, so drift in the machine's load affects both alike.
//! Server CPU of the cross-instance setup is summed over A, B and redis-server. The
//! outcomes are [`Kind::ScaleOut`]; [`report`] renders them as `scale-out.md`, which
//! `bench/update-comparison` pastes into COMPARISON.md.
//!
//! [`run`] measures it (with the redis-server of [`redis`]).

pub(crate) mod redis;
pub(crate) mod report;
pub(crate) mod run;

use crate::record::{Kind, Transport};
use crate::scenario::Load;

/// The outcomes' server name for the baseline: one instance, in-memory bus.
pub(crate) const IN_MEMORY: &str = "pushwire-memory";
/// The outcomes' server name for publishing on one instance and receiving on another.
pub(crate) const THROUGH_REDIS: &str = "pushwire-redis";

/// The scale-out loads: every `(subscribers, messages per second, messages)` on every
/// transport, 64-byte payloads as in fan-out.
pub(crate) fn loads(sizes: &[(usize, f64, u64)], transports: &[Transport]) -> Vec<Load> {
    let mut loads = Vec::new();
    for &(subscribers, rate, messages) in sizes {
        for &transport in transports {
            loads.push(Load { kind: Kind::ScaleOut, transport, subscribers, rate, messages, payload_bytes: 64 });
        }
    }
    loads
}
