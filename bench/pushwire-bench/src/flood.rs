//! The publish flood: can one client take the room? A witness publishes four small
//! messages a second to 1,000 subscribers, first alone, then while a flooder posts
//! 16 KiB messages as fast as the server answers, over four keep-alive connections from
//! an address of its own (127.0.0.2), ignoring every `Retry-After`. Measured in one run,
//! on pushwire with its per-client publish limit (its default) and without it
//! (`--publish-rate off`): the witness's delivery latency quiet and flooded, and what the
//! flood got through. `flood.json` and `flood.md`.

use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use indicatif::ProgressBar;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::clients::XSRF;
use crate::format::ms;
use crate::progress;
use crate::record::{Kind, Latency, Outcome, Protocol, Transport};
use crate::scenario::{self, Bench, Load};
use crate::servers::{Host, Launch, Restartable, Server};

/// The flooder's connections, its source address and its message size.
const FLOOD_CONNECTIONS: usize = 4;
const FLOOD_FROM: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const FLOOD_BYTES: usize = 16 * 1024;
/// The witness: under the default limit (5 a second), 10 s of it.
const WITNESS_RATE: f64 = 4.0;
const WITNESS_MESSAGES: u64 = 40;

/// One transport's witness, quiet and flooded, with the limit on or off.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct FloodOutcome {
    /// Whether pushwire ran with its per-client publish limit (its default).
    pub limited: bool,
    pub quiet: Outcome,
    pub flooded: Outcome,
    /// What the flooder sent while the witness was measured, what was accepted and
    /// what was refused (429), over how long.
    pub flood_sent: u64,
    pub flood_accepted: u64,
    pub flood_refused: u64,
    pub flood_s: f64,
}

/// Runs the flood on each transport, with the limit and without; writes `flood.json`
/// and `flood.md` into `out` and returns the JSON's path.
pub(crate) async fn run(
    binary: &Path,
    transports: &[Transport],
    subscribers: usize,
    out: &Path,
    progress: &ProgressBar,
    deadline: Instant,
) -> Result<PathBuf, String> {
    let mut outcomes = Vec::new();
    for limited in [true, false] {
        let args = if limited { Vec::new() } else { vec!["--publish-rate".to_owned(), "off".to_owned()] };
        let process = Restartable::start(binary.to_owned(), args).map_err(|e| format!("cannot start pushwire: {e}"))?;
        let launch = Launch::External { addr: process.addr, tls_addr: None, pid: process.pid() };
        let mut server = Server::start("pushwire", Protocol::Pushwire, launch, Host::Loopback)
            .map_err(|e| format!("pushwire does not answer: {e}"))?;
        for &transport in transports {
            if Instant::now() >= deadline {
                break;
            }
            let load = Load {
                kind: Kind::FanOut,
                transport,
                subscribers,
                rate: WITNESS_RATE,
                messages: WITNESS_MESSAGES,
                payload_bytes: 64,
            };
            let mut bench = Bench {
                server: &mut server,
                subscribe_on: None,
                also_measured: &[],
                progress,
                deadline,
                link: None,
                http: crate::record::Http::H1,
            };
            let quiet = scenario::deliver(&mut bench, &load).await;
            let flood = Flood::start(process.addr);
            let flooded = scenario::deliver(&mut bench, &load).await;
            let (sent, accepted, refused, seconds) = flood.stop().await;
            let outcome = FloodOutcome {
                limited,
                quiet,
                flooded,
                flood_sent: sent,
                flood_accepted: accepted,
                flood_refused: refused,
                flood_s: seconds,
            };
            progress.inc(1);
            progress::line(progress, row(&outcome));
            outcomes.push(outcome);
        }
    }
    let json = out.join("flood.json");
    std::fs::write(&json, serde_json::to_string_pretty(&outcomes).expect("serializes"))
        .map_err(|e| format!("{}: {e}", json.display()))?;
    let md = write(&outcomes, out, &json.display().to_string())?;
    println!("{md}");
    Ok(json)
}

/// Writes `flood.md` into `dir` from `outcomes` (read from `source`); returns it.
pub(crate) fn write(outcomes: &[FloodOutcome], dir: &Path, source: &str) -> Result<String, String> {
    let md = report(outcomes, source);
    std::fs::write(dir.join("flood.md"), &md).map_err(|e| e.to_string())?;
    Ok(md)
}

/// The flooder's tasks and tallies.
struct Flood {
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    tally: Arc<[AtomicU64; 3]>,
    begun: Instant,
}

impl Flood {
    fn start(addr: SocketAddr) -> Flood {
        let stop = CancellationToken::new();
        let tally = Arc::new([AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)]);
        let tasks = (0..FLOOD_CONNECTIONS).map(|_| tokio::spawn(flood(addr, stop.clone(), tally.clone()))).collect();
        Flood { stop, tasks, tally, begun: Instant::now() }
    }

    /// Stops it; `(sent, accepted, refused, seconds)`.
    async fn stop(self) -> (u64, u64, u64, f64) {
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let [sent, accepted, refused] = &*self.tally;
        let load = |n: &AtomicU64| n.load(Ordering::Relaxed);
        (load(sent), load(accepted), load(refused), self.begun.elapsed().as_secs_f64())
    }
}

/// One connection posting 16 KiB messages back to back until stopped, reconnecting
/// when the server closes it.
async fn flood(addr: SocketAddr, stop: CancellationToken, tally: Arc<[AtomicU64; 3]>) {
    let body = format!("_xsrf={XSRF}&body={}", "f".repeat(FLOOD_BYTES));
    let request = format!(
        "POST /a/message/new HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-www-form-urlencoded\r\n\
         Cookie: _xsrf={XSRF}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    while !stop.is_cancelled() {
        let Ok(mut stream) = connect(addr).await else { continue };
        loop {
            let answered = tokio::select! {
                () = stop.cancelled() => return,
                answered = exchange(&mut stream, request.as_bytes()) => answered,
            };
            tally[0].fetch_add(1, Ordering::Relaxed);
            match answered {
                Ok(200) => tally[1].fetch_add(1, Ordering::Relaxed),
                Ok(429) => tally[2].fetch_add(1, Ordering::Relaxed),
                Ok(_) => 0,
                Err(_) => break,
            };
        }
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((FLOOD_FROM, 0)))?;
    socket.connect(addr).await
}

/// Sends one request and reads its answer; returns the status.
async fn exchange(stream: &mut TcpStream, request: &[u8]) -> std::io::Result<u16> {
    stream.write_all(request).await?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1024];
    let end = loop {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&byte[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
    };
    let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
    let status = text.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize =
        text.lines().find_map(|line| line.strip_prefix("content-length:")?.trim().parse().ok()).unwrap_or(0);
    let mut rest = head.len() - end;
    while rest < length {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        rest += n;
    }
    Ok(status)
}

fn p50_p99(l: &Latency) -> String {
    format!("{} / {}", ms(l.p50), ms(l.p99))
}

fn row(o: &FloodOutcome) -> String {
    let per_s = |n: u64| n as f64 / o.flood_s.max(0.001);
    format!(
        "| {} | {} | {} | {} | {} | ×{:.1} | {:.0} / {:.0} / {:.0} | {} |",
        if o.limited { "on (5/s, burst 20, a token per KiB)" } else { "off" },
        o.quiet.transport.name(),
        o.quiet.subscribers,
        p50_p99(&o.quiet.latency_us),
        p50_p99(&o.flooded.latency_us),
        o.flooded.latency_us.p99 as f64 / (o.quiet.latency_us.p99.max(1)) as f64,
        per_s(o.flood_sent),
        per_s(o.flood_accepted),
        per_s(o.flood_refused),
        crate::format::checks(&o.flooded),
    )
}

fn report(outcomes: &[FloodOutcome], source: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Generated from `{source}`.\n\nA witness publishes {WITNESS_RATE} messages of 64 B a second \
         to the subscribers; then the same while a flooder posts {} KiB messages back to back over {FLOOD_CONNECTIONS} \
         connections from {FLOOD_FROM}, ignoring `Retry-After`. The witness's delivery latency (ms, publish to \
         arrival), quiet and flooded, and the flooded p99 over the quiet one; the flood's posts per second (sent / \
         accepted / refused with 429); the witness's checks while flooded.\n",
        FLOOD_BYTES / 1024
    );
    let _ = writeln!(
        md,
        "| publish limit | transport | subscribers | quiet p50 / p99 | flooded p50 / p99 | p99 flooded ÷ quiet | \
         flood per s: sent / accepted / refused | witness lost/dup/ooo |"
    );
    let _ = writeln!(md, "|---|---|--:|--:|--:|--:|--:|--:|");
    for o in outcomes {
        let _ = writeln!(md, "{}", row(o));
    }
    md
}
