//! The fleet: more subscribers than one process can hold (about 19,900 each, under the
//! open-file limit of 20,000), spread over several pushwire instances that share one
//! conversation through a redis-server of the run's own.
//!
//! One step is one number of instances, each holding the same share of the subscribers
//! (`--fleet` over the most instances), so the steps draw the curve from one instance
//! to all of them:
//! - the subscribers are clients of one transport in worker processes of this tool
//!   (`--fleet-worker`, each under its own open-file limit), each client on the
//!   instance its index picks; a publisher posts [`PUBLISH_EVERY`] on the first;
//! - once every client has a message, a steady minute of fan-out is measured (the
//!   plan's `steady`): latency from
//!   publish to arrival at every client, each instance's CPU and memory, Redis's CPU,
//!   the workers' CPU;
//! - on the last step, the instances are then restarted one by one (`SIGTERM`, a
//!   graceful stop that tells each client when to come back, and a start on the same
//!   port), each once every client is receiving again. A client whose connection ends
//!   comes back on pushwire's page schedule to an instance picked at random, as a
//!   load balancer would send it, from the last message it holds. The others take a
//!   restarted instance's share meanwhile: with `n` instances each must have room for
//!   `n / (n - 1)` of its own (under 20,000 connections), or the restart overflows them;
//! - at the end every accepted message is checked at every client: none lost, none
//!   twice, none out of order.
//!
//! [`run`] runs the steps, [`worker`] is a worker process, [`report`] writes
//! `fleet.md`.

pub(crate) mod report;
pub(crate) mod run;
pub(crate) mod worker;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::Transport;

/// The publisher's pace: one message a second, each reaching every subscriber.
const PUBLISH_EVERY: Duration = Duration::from_secs(1);
/// The most subscribers one worker process holds by default: under its open-file
/// limit, with room for the files a process has anyway.
pub(crate) const PER_WORKER: usize = 18_000;

/// What a fleet run measures.
#[derive(Clone, Debug)]
pub(crate) struct FleetPlan {
    /// Subscribers on the most instances; a step with fewer has as many per instance.
    pub subscribers: usize,
    /// The numbers of instances, one step each; the last is restarted one by one.
    pub instances: Vec<usize>,
    pub transport: Transport,
    /// Fan-out measured once every client has a message.
    pub steady: Duration,
    /// The most subscribers in one worker process.
    pub per_worker: usize,
}

impl FleetPlan {
    /// The subscribers of the step with `instances` instances.
    fn subscribers_on(&self, instances: usize) -> usize {
        let most = self.instances.iter().copied().max().unwrap_or(1);
        self.subscribers * instances / most
    }
}

/// What the parent tells a worker, one JSON object per line on its stdin.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Order {
    /// The first line: who the worker's clients are.
    Start {
        addrs: Vec<std::net::SocketAddr>,
        transport: Transport,
        /// The index of the worker's first client (its home instance is the index
        /// modulo the instances).
        first: usize,
        subscribers: usize,
        primer: String,
        tag: u32,
    },
    /// A message the publisher got accepted (its id), or whose answer was cut off.
    Published { seq: u64, id: Option<String> },
    /// From now on, arrivals count as the steady fan-out's (those before, as clients
    /// start and catch up on history, do not count at all).
    Steady,
    /// From now on, arrivals count as during the rolling restart.
    Rolling,
    /// Stop the clients and report.
    Stop,
}

/// What a worker says, one JSON object per line on its stdout.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Said {
    /// Every 200 ms: clients that have received at all, and those receiving now
    /// (a connection open with data on it).
    Clients { started: usize, receiving: usize },
    /// At the end.
    Report(WorkerReport),
}

/// One worker's count at the end.
#[derive(Debug, Default, Serialize, Deserialize)]
struct WorkerReport {
    /// Latency (µs, publish to arrival) as `(value, count)` pairs, before and during the
    /// rolling restart: histograms merge, percentiles do not.
    steady: Vec<(u64, u64)>,
    rolling: Vec<(u64, u64)>,
    lost: u64,
    duplicated: u64,
    out_of_order: u64,
    gap_clients: u64,
    /// Messages a client missed where a gap notice told it so (the history no longer
    /// held them): not lost silently.
    covered_by_gap: u64,
    /// Clients not receiving when the run ended (reconnecting).
    away: u64,
    attempts: u64,
    failed_attempts: u64,
}
