//! The scale-out scenario: what it costs a delivery to cross instances through Redis.
//!
//! It starts its own `redis-server` (a free loopback port, a temporary directory, no
//! persistence: `--save '' --appendonly no`, since durability is not what is measured)
//! and two pushwire instances sharing the conversation through it (`--bus redis://…`),
//! plus one in-memory instance as the baseline, all from the same binary (built with
//! `--features redis`). Each [`Load`] runs twice:
//! - [`IN_MEMORY`]: publisher and subscribers on the in-memory instance;
//! - [`THROUGH_REDIS`]: publisher on instance A, subscribers on instance B, so every
//!   message goes A → Redis (`XADD`) → B's reader (`XREAD`) → B's fan-out. The
//!   subscribers resume from the primer's id handed out by A, which is also what makes
//!   cursors portable across instances.
//!
//! The two alternate load by load, so drift in the machine's load affects both alike.
//! Server CPU of the cross-instance setup is summed over A, B and redis-server. The
//! outcomes are [`Kind::ScaleOut`]; [`tables`] renders them as `scale-out.md`, which
//! `bench/update-comparison` pastes into COMPARISON.md.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

use crate::clients::{Protocol, Transport};
use crate::report::{self, Run};
use crate::scenario::{self, Bench, Kind, Load, Outcome};
use crate::servers::{Launch, SERVER_WORKERS, Server, ServerFacts};

/// The outcomes' server name for the baseline: one instance, in-memory bus.
pub(crate) const IN_MEMORY: &str = "pushwire-memory";
/// The outcomes' server name for publishing on one instance and receiving on another.
pub(crate) const THROUGH_REDIS: &str = "pushwire-redis";
/// How long redis-server gets to say it accepts connections.
const REDIS_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports to try: the free port found is taken by redis-server a moment later, and
/// another process may grab it in between (redis-server then exits at once).
const PORT_ATTEMPTS: usize = 3;

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

/// Starts redis-server and the three pushwire instances from `binary`, runs every load
/// on the baseline and across instances, and stops them all. Returns the setups'
/// facts and the outcomes; `announce` sees each outcome as it is measured.
pub(crate) async fn run(
    binary: &Path,
    loads: &[Load],
    progress: &ProgressBar,
    deadline: Instant,
    announce: impl Fn(&Outcome),
) -> Result<(Vec<ServerFacts>, Vec<Outcome>), String> {
    progress.set_message("scale-out: starting redis-server and pushwire instances");
    let redis = Redis::start().await?;
    let bus = Some(format!("redis://127.0.0.1:{}", redis.port));
    let start = |name: &str, bus: Option<String>| {
        let launch = Launch::Pushwire { binary: binary.to_owned(), bus };
        Server::start(name, Protocol::Pushwire, launch).map_err(|e| match bus_hint(name) {
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
        let mut baseline =
            Bench { server: &mut memory, subscribe_on: None, also_measured: &[], progress, deadline, link: None };
        let outcome = scenario::deliver(&mut baseline, load).await;
        progress.inc(1);
        announce(&outcome);
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
        };
        let outcome = scenario::deliver(&mut across, load).await;
        progress.inc(1);
        announce(&outcome);
        outcomes.push(outcome);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let facts = vec![memory.facts.clone(), publish_on.facts.clone()];
    drop((memory, publish_on, subscribe_on));
    redis.stop().await;
    Ok((facts, outcomes))
}

/// Why an instance sharing a bus may not start: the binary lacks the feature.
fn bus_hint(name: &str) -> Option<&'static str> {
    name.starts_with(THROUGH_REDIS).then_some("is --pushwire-bin built with --features redis?")
}

/// The redis-server of one run, with its own port and directory.
struct Redis {
    child: Child,
    /// Kept open so redis-server's log lines after start-up have somewhere to go.
    _stdout: BufReader<ChildStdout>,
    port: u16,
    dir: PathBuf,
    version: String,
}

impl Redis {
    /// Starts redis-server on a free loopback port and returns once it says it
    /// accepts connections.
    async fn start() -> Result<Redis, String> {
        let dir = std::env::temp_dir().join(format!("pushwire-bench-redis-{}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let version = redis_version().await;
        let mut last_error = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|listener| listener.local_addr())
                .map_err(|e| format!("find a free loopback port: {e}"))?
                .port();
            let mut child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| format!("cannot run redis-server (apt-get install redis-server): {e}"))?;
            let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
            match tokio::time::timeout(REDIS_STARTUP_TIMEOUT, ready(&mut stdout)).await {
                Ok(Ok(())) => return Ok(Redis { child, _stdout: stdout, port, dir, version }),
                Ok(Err(e)) => last_error = e,
                Err(_) => last_error = format!("redis-server did not get ready within {REDIS_STARTUP_TIMEOUT:?}"),
            }
            let _ = child.kill().await;
        }
        let _ = std::fs::remove_dir_all(&dir);
        Err(format!("cannot start redis-server: {last_error}"))
    }

    fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    async fn stop(mut self) {
        // Nothing in it is kept: the stream lives for this run only.
        let _ = self.child.kill().await;
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        // `kill_on_drop` ends the process when `stop` was not reached (an error).
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Reads redis-server's log until it accepts connections, or it exits.
async fn ready(stdout: &mut BufReader<ChildStdout>) -> Result<(), String> {
    let mut last = String::new();
    let mut line = String::new();
    loop {
        line.clear();
        match stdout.read_line(&mut line).await {
            Ok(0) => return Err(format!("redis-server exited: {}", last.trim())),
            Ok(_) if line.contains("Ready to accept connections") => return Ok(()),
            Ok(_) => last.clone_from(&line),
            Err(e) => return Err(format!("read redis-server's output: {e}")),
        }
    }
}

/// `7.0.15` from `Redis server v=7.0.15 sha=…`.
async fn redis_version() -> String {
    let output = Command::new("redis-server").arg("--version").output().await;
    output
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.split_whitespace().find_map(|word| word.strip_prefix("v=").map(str::to_owned))
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// The scale-out fragment of the report (`scale-out.md`), or `None` when the run has
/// no scale-out outcomes: provenance, the figures of both setups, and their ratios.
pub(crate) fn tables(run: &Run, json: &str) -> Option<String> {
    let measured: Vec<&Outcome> = run.outcomes.iter().filter(|o| o.kind == Kind::ScaleOut).collect();
    if measured.is_empty() {
        return None;
    }
    let mut md = report::provenance(run, json, |o| o.kind == Kind::ScaleOut);
    let _ = writeln!(
        md,
        "Fan-out of 64-byte messages at a steady rate. **in-memory**: publisher and subscribers on one pushwire \
         with the in-memory bus. **Redis, A → B**: the publisher posts to instance A, the subscribers are on \
         instance B; both share the conversation through one redis-server (`--bus`), so each message crosses A → \
         Redis → B. Latencies in ms, publisher send → subscriber receive on one clock. `lost/dup/ooo` are checked \
         per subscriber (⚠ counts gaps and connection or publish errors). Server CPU is from /proc: the one \
         instance, or A + B + redis-server together. `other load` is the share of both cores busy with neither \
         the servers nor the load generator. The ratios divide the Redis row by the in-memory row; \
         `server CPU added per message` is the difference of server CPU per published message, the cost of the \
         Redis hop itself (A's `XADD`, both instances' readers, redis-server).\n"
    );
    let _ = writeln!(md, "### Scale-out: cross-instance through Redis vs in-memory\n");
    let _ = writeln!(
        md,
        "| setup | transport | subscribers | msg/s | p50 | p90 | p99 | p99.9 | max | delivered/s | lost/dup/ooo | \
         server CPU ms per 1,000 deliveries | other load |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    for o in &measured {
        let setup = if o.server == THROUGH_REDIS { "Redis, A → B" } else { "in-memory" };
        let _ = writeln!(
            md,
            "| {setup} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            o.transport.name(),
            report::connected(o),
            o.target_rate,
            report::ms(o.latency_us.p50),
            report::ms(o.latency_us.p90),
            report::ms(o.latency_us.p99),
            report::ms(o.latency_us.p999),
            report::ms(o.latency_us.max),
            o.delivered_per_s,
            report::checks(o),
            report::opt(o.server_cpu_us_per_1000_deliveries.map(|us| us / 1000.0), 2),
            report::opt(o.other_load.map(|l| l * 100.0), 0) + "%",
        );
    }
    md.push('\n');

    let _ = writeln!(md, "### Cross-instance ÷ in-memory (same run; above 1 means crossing Redis costs more)\n");
    let _ = writeln!(
        md,
        "| transport | subscribers | p50 | p90 | p99 | max | p50 added (ms) | delivered/s | server CPU per delivery | \
         server CPU added per message (ms) | both clean |"
    );
    let _ = writeln!(md, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
    let ratio = |a: f64, b: f64| if b > 0.0 { format!("{:.2}", a / b) } else { "–".to_owned() };
    for across in measured.iter().filter(|o| o.server == THROUGH_REDIS) {
        let Some(local) = measured
            .iter()
            .find(|o| o.server == IN_MEMORY && o.transport == across.transport && o.subscribers == across.subscribers)
        else {
            continue;
        };
        let cpu = match (across.server_cpu_us_per_1000_deliveries, local.server_cpu_us_per_1000_deliveries) {
            (Some(a), Some(b)) => ratio(a, b),
            _ => "–".to_owned(),
        };
        // The Redis hop's own cost (XADD on A, XREAD on both instances' readers) is per
        // message, whatever the number of subscribers; per delivery it thins out.
        let per_message = |o: &Outcome| Some(o.server_cpu_ms? / (o.published > 0).then_some(o.published as f64)?);
        let cpu_added = match (per_message(across), per_message(local)) {
            (Some(a), Some(b)) => format!("{:+.2}", a - b),
            _ => "–".to_owned(),
        };
        let (a, b) = (&across.latency_us, &local.latency_us);
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {:+.2} | {} | {cpu} | {cpu_added} | {} |",
            across.transport.name(),
            across.subscribers,
            ratio(a.p50 as f64, b.p50 as f64),
            ratio(a.p90 as f64, b.p90 as f64),
            ratio(a.p99 as f64, b.p99 as f64),
            ratio(a.max as f64, b.max as f64),
            (a.p50 as f64 - b.p50 as f64) / 1000.0,
            ratio(across.delivered_per_s, local.delivered_per_s),
            if across.clean() && local.clean() { "yes" } else { "**no**" },
        );
    }
    md.push('\n');
    let notes: Vec<String> = measured
        .iter()
        .filter_map(|o| {
            let note = o.note.as_ref()?;
            Some(format!("{} {} ×{}: {note}", o.server, o.transport.name(), o.subscribers))
        })
        .collect();
    if !notes.is_empty() {
        let _ = writeln!(md, "### Errors reported by the scale-out run\n");
        for note in notes {
            let _ = writeln!(md, "- {note}");
        }
        md.push('\n');
    }
    Some(md)
}
