//! Running the scale-out scenario: each load on the in-memory baseline, then across
//! two instances through Redis.

use std::path::Path;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;

use super::redis::Redis;
use super::{IN_MEMORY, THROUGH_REDIS};
use crate::progress::announce;
use crate::record::{Http, Outcome, Protocol, ServerFacts};
use crate::scenario::{self, Bench, Load};
use crate::servers::{Host, Launch, SERVER_WORKERS, Server};

/// Starts redis-server and the three pushwire instances from `binary`, runs every load
/// on the baseline and across instances, and stops them all. Returns the setups'
/// facts and the outcomes; `announce` sees each outcome as it is measured.
pub(crate) async fn run(
    binary: &Path,
    loads: &[Load],
    progress: &ProgressBar,
    deadline: Instant,
) -> Result<(Vec<ServerFacts>, Vec<Outcome>), String> {
    progress.set_message("scale-out: starting redis-server and pushwire instances");
    let redis = Redis::start().await?;
    let bus = Some(format!("redis://127.0.0.1:{}", redis.port));
    let start = |name: &str, bus: Option<String>| {
        let launch = Launch::Pushwire { binary: binary.to_owned(), bus, tls: false };
        Server::start(name, Protocol::Pushwire, launch, Host::Loopback).map_err(|e| match bus_hint(name) {
            Some(hint) => format!("cannot start {name}: {e} ({hint})"),
            None => format!("cannot start {name}: {e}"),
        })
    };
    let mut memory = start(IN_MEMORY, None)?;
    let mut publish_on = start(THROUGH_REDIS, bus.clone())?;
    let subscribe_on = start(&format!("{THROUGH_REDIS}-b"), bus)?;
    let redis_pid = redis.pid().ok_or("redis-server has no process id: did it exit?")?;
    publish_on.facts.version = format!("{} + redis-server {}", publish_on.facts.version, redis.version);
    publish_on.facts.workers = format!(
        "2 instances × {SERVER_WORKERS} tokio worker threads (TOKIO_WORKER_THREADS) + redis-server (one main thread)"
    );
    publish_on.facts.command = format!(
        "redis-server --port {} --bind 127.0.0.1 --dir <temp dir> --save '' --appendonly no; 2 × {}",
        redis.port, publish_on.facts.command
    );

    let mut outcomes = Vec::with_capacity(loads.len() * 2);
    for load in loads {
        if Instant::now() >= deadline {
            progress.println("time budget spent; skipping the rest of the scale-out scenario");
            break;
        }
        let mut baseline = Bench {
            server: &mut memory,
            subscribe_on: None,
            also_measured: &[],
            progress,
            deadline,
            link: None,
            http: Http::H1,
        };
        let outcome = scenario::deliver(&mut baseline, load).await;
        progress.inc(1);
        announce(progress, &outcome);
        outcomes.push(outcome);
        // As between matrix scenarios: the last one's connections close first.
        tokio::time::sleep(Duration::from_millis(300)).await;

        let also_measured = [redis_pid];
        let mut across = Bench {
            server: &mut publish_on,
            subscribe_on: Some(&subscribe_on),
            also_measured: &also_measured,
            progress,
            deadline,
            link: None,
            http: Http::H1,
        };
        let outcome = scenario::deliver(&mut across, load).await;
        progress.inc(1);
        announce(progress, &outcome);
        outcomes.push(outcome);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let facts = vec![memory.facts.clone(), publish_on.facts.clone()];
    drop((memory, publish_on, subscribe_on));
    redis.stop().await;
    Ok((facts, outcomes))
}

/// Refuses a pushwire without the Redis bus before anything runs (rather than after
/// the matrix that precedes the scale-out): its `--version` names its features.
pub(crate) fn check_binary(binary: &Path) -> Result<(), String> {
    let output = std::process::Command::new(binary)
        .arg("--version")
        .output()
        .map_err(|e| format!("--pushwire-bin {}: {e}", binary.display()))?;
    let version = String::from_utf8_lossy(&output.stdout);
    if version.contains("redis") {
        return Ok(());
    }
    Err(format!(
        "the scale-out needs a pushwire built with --features redis (bench/run-matrix builds one); {} is `{}`",
        binary.display(),
        version.trim()
    ))
}

/// Why an instance sharing a bus may not start: the binary lacks the feature.
fn bus_hint(name: &str) -> Option<&'static str> {
    name.starts_with(THROUGH_REDIS).then_some("is --pushwire-bin built with --features redis?")
}
