//! `pushwire-bench`: the load generator that compares the four push transports, on
//! pushwire and on reference servers (nchan, Tornado's chat demo), with numbers.
//!
//! One process holds the publisher and thousands of subscribers, so every message's
//! latency is measured on one clock. It starts the servers itself (or attaches to
//! running ones), runs a matrix of scenarios, and writes one JSON record per run plus
//! the Markdown tables and SVG plots generated from it.
//!
//! ```text
//! pushwire-bench --pushwire-bin target/release/pushwire --nchan-conf bench/nchan/nginx.conf --out DIR
//! pushwire-bench --report-from DIR/results.json      # regenerate tables and plots only (into DIR, or --out)
//! pushwire-bench --pushwire-bin target/release/pushwire --scale-out-only   # built with --features redis
//! ```
//!
//! `bench/run-matrix` is the one documented command around it. This file only parses
//! the command line and dispatches.
//!
//! # Modules
//! Each module imports only those listed above it (`main` all of them), so there are no
//! circular imports: the records depend on nothing, reports on records and formatting.
//! - `record`: the plain, serialisable records of a run (`Run`, `Outcome`, …); no imports;
//! - `date`: the run's date in UTC (the one calendar conversion);
//! - `format`: how milliseconds, counts and recurring cells are written, provenance;
//! - `plot`: the SVG plots' colours, chart frame, lines and bars;
//! - `progress`: the progress bar and the line each outcome prints;
//! - `tls`: the client's TLS settings (rustls, one ALPN protocol, any certificate);
//! - `wire`: counted connections (bytes on the wire, TLS records included) and bounded
//!   dialing;
//! - `payload`: the stamped message body (tag, sequence, send time);
//! - `http`: HTTP/1.1 or HTTP/2, cleartext or TLS, connections shared by subscribers,
//!   WebSocket by upgrade or extended CONNECT;
//! - `webtransport`: WebTransport sessions over HTTP/3 (QUIC), the certificate pinned by
//!   its hash, lines on one stream or a stream per message, bytes from QUIC's own count;
//! - `clients`: publisher and long-poll/SSE/WebSocket/WebTransport subscribers per
//!   server protocol;
//! - `servers`: starting servers, `/proc` sampling, machine facts;
//! - `scenario`: one measurement (a `Load` delivered, or idle connections) and its figures;
//! - the experiments, each with its own `run` and `report`:
//!   - `matrix`: the loopback matrix (`ramp`: the throughput ramp's criterion; `report`:
//!     `tables`, `protocols` (the HTTP settings compared), `headline`, `targets`,
//!     `before_after`, `plots`);
//!   - `network`: the network matrix over emulated links (`rounds`: reconnect and cold start);
//!   - `scale_out`: cross-instance delivery through Redis (`redis`: its redis-server);
//!   - `churn`: connections that come and go, and whether the server gets back to idle;
//! - `report`: which experiment's report a run record gets (`--report-from` and after a run);
//! - `session`: one measuring invocation: the experiments in turn, recorded as one run.

mod churn;
mod clients;
mod date;
mod format;
mod http;
mod matrix;
mod network;
mod payload;
mod plot;
mod progress;
mod record;
mod report;
mod scale_out;
mod scenario;
mod servers;
mod session;
mod tls;
mod webtransport;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use matrix::{Matrix, MatrixName};
use network::NetworkMatrix;
use record::{Http, Kind, Protocol, Transport};
use servers::{Launch, Server};
use session::{Plan, Session};

/// Latency, throughput and cost of long-poll, SSE, WebSocket and WebTransport, on pushwire
/// and nchan.
#[derive(Parser, Debug)]
#[command(name = "pushwire-bench", version)]
struct Args {
    /// Start this pushwire binary as a child on an ephemeral loopback port.
    #[arg(long)]
    pushwire_bin: Option<PathBuf>,
    /// Or measure a pushwire already running at this loopback address.
    #[arg(long, conflicts_with = "pushwire_bin")]
    pushwire_addr: Option<String>,
    /// Process id of the pushwire at --pushwire-addr, for CPU and memory.
    #[arg(long)]
    pushwire_pid: Option<u32>,
    /// Where the pushwire at --pushwire-addr serves HTTPS (its --tls-addr), for the TLS
    /// settings of --protocols.
    #[arg(long, requires = "pushwire_addr")]
    pushwire_tls_addr: Option<String>,
    /// Start nginx with this nchan configuration (bench/nchan/nginx.conf).
    #[arg(long)]
    nchan_conf: Option<PathBuf>,
    /// Where the nchan configuration listens, or where a running nchan is.
    #[arg(long, default_value = "127.0.0.1:18089")]
    nchan_addr: String,
    /// Where the nchan configuration serves HTTPS (HTTP/2 and HTTP/1.1), or where a
    /// running nchan does.
    #[arg(long, default_value = "127.0.0.1:18443")]
    nchan_tls_addr: String,
    /// Measure a running nchan at --nchan-addr instead of starting one.
    #[arg(long, conflicts_with = "nchan_conf")]
    nchan_running: bool,
    /// Master process id of the running nchan, for CPU and memory.
    #[arg(long)]
    nchan_pid: Option<u32>,
    /// Also measure Tornado's chat demo (long-poll only) running at this address.
    #[arg(long, conflicts_with = "tornado_demo")]
    tornado_addr: Option<String>,
    /// Or start Tornado's chat demo from this `demos/chat` folder of a tornado source
    /// distribution (`bench/tornado/setup` fetches one) on a free loopback port.
    #[arg(long)]
    tornado_demo: Option<PathBuf>,
    /// The Python that runs --tornado-demo, with tornado installed.
    #[arg(long, default_value = "python3")]
    tornado_python: PathBuf,
    /// Run the network matrix instead: every scenario over emulated links (see
    /// --profiles), into `bench/results/network-<date>` by default.
    #[arg(long, value_enum)]
    network: Option<MatrixName>,
    /// Run the churn check instead: this many subscriber connections per transport
    /// come and go (clean closes, resets, heads dropped half way) against the pushwire
    /// of --pushwire-bin or --pushwire-addr; writes churn.json and churn.md.
    #[arg(long)]
    churn: Option<u64>,
    /// Only these link profiles of the network matrix: loopback, rtt-20ms, rtt-100ms,
    /// rtt-300ms, fast-3g, slow-3g.
    #[arg(long, value_delimiter = ',', value_parser = parse_profile)]
    profiles: Vec<&'static str>,
    /// Which matrix of scenarios to run.
    #[arg(long, value_enum, default_value_t = MatrixName::Standard)]
    matrix: MatrixName,
    /// Only these transports: long-poll, sse, websocket, webtransport (all four by
    /// default), webtransport-unordered (each message on its own stream; only when named).
    #[arg(long, value_delimiter = ',', value_parser = parse_transport)]
    transports: Vec<Transport>,
    /// What the loopback matrix's HTTP goes over: `h1` (HTTP/1.1, cleartext), `h1-tls`
    /// (HTTP/1.1 over TLS), `h2-tls` (HTTP/2 over TLS, one subscriber per connection),
    /// `h2-tls:N` (HTTP/2 over TLS, N subscribers' streams per connection, at most the
    /// servers' concurrent-stream limit: 128 for pushwire's default and nginx's). The whole
    /// matrix runs over the first; fan-out, idle and round trips over each. pushwire
    /// then also serves HTTPS (`--tls-addr`); nchan always does (bench/nchan/nginx.conf).
    #[arg(long, value_delimiter = ',', default_value = "h1")]
    protocols: Vec<Http>,
    /// Only these scenarios (to rerun one table's rows), e.g. `--kinds fan-out`.
    #[arg(long, value_delimiter = ',', value_enum)]
    kinds: Vec<Kind>,
    /// Only the scenarios with this many subscribers (or idle connections).
    #[arg(long, value_delimiter = ',')]
    subscribers: Vec<usize>,
    /// Directory for results.json, tables.md and the SVG plots. With --report-from,
    /// where the regenerated tables and plots go (default: beside the JSON file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Stop starting new scenarios after this many minutes.
    #[arg(long, default_value_t = 20.0)]
    max_minutes: f64,
    /// Load-generator worker threads (default: one per core).
    #[arg(long)]
    client_threads: Option<usize>,
    /// Only regenerate tables.md and the plots from this results.json.
    #[arg(long)]
    report_from: Option<PathBuf>,
    /// With --report-from: also write `before-after.md`, pushwire's figures in this
    /// earlier run next to those of the --report-from run.
    #[arg(long, requires = "report_from")]
    before: Option<PathBuf>,
    /// After the matrix, measure cross-instance delivery through Redis against one
    /// in-memory instance: starts redis-server and pushwire instances from
    /// --pushwire-bin, which must be built with `--features redis`.
    #[arg(long, requires = "pushwire_bin")]
    scale_out: bool,
    /// Run only the scale-out scenario, not the matrix.
    #[arg(long, requires = "pushwire_bin")]
    scale_out_only: bool,
}

fn parse_profile(text: &str) -> Result<&'static str, String> {
    let names: Vec<&'static str> = network::profiles().iter().map(|p| p.name).collect();
    names.iter().copied().find(|name| *name == text).ok_or_else(|| format!("{text}: one of {}", names.join(", ")))
}

fn parse_transport(text: &str) -> Result<Transport, String> {
    let names = || Transport::EVERY.map(Transport::name).join(", ");
    Transport::EVERY.into_iter().find(|t| t.name() == text).ok_or_else(|| format!("{text}: one of {}", names()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(json) = &args.report_from {
        return match regenerate(json, args.before.as_deref(), args.out.as_deref()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushwire-bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    // Each subscriber is a descriptor; the soft limit is often 1024.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let threads = args.client_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    match runtime.block_on(measure(args, threads, nofile)) {
        Ok(path) => {
            println!("results: {}", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("pushwire-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn regenerate(json: &Path, before: Option<&Path>, out: Option<&Path>) -> Result<(), String> {
    let run = report::read(json)?;
    let dir = match out {
        Some(out) => {
            std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
            out
        }
        None => json.parent().unwrap_or(Path::new(".")),
    };
    report::write(&run, dir, &json.display().to_string()).map_err(|e| e.to_string())?;
    if let Some(before_json) = before {
        let md = matrix::report::before_after::before_after(
            &report::read(before_json)?,
            &before_json.display().to_string(),
            &run,
            &json.display().to_string(),
        );
        std::fs::write(dir.join("before-after.md"), md).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Only loopback targets: this tool floods what it points at.
fn loopback(text: &str) -> Result<SocketAddr, String> {
    let bare = ["http://", "https://", "ws://", "wss://"]
        .iter()
        .fold(text, |text, scheme| text.trim_start_matches(scheme))
        .trim_end_matches('/');
    let addr: SocketAddr = bare.parse().map_err(|_| format!("{text}: expected IP:PORT"))?;
    if addr.ip().is_loopback() { Ok(addr) } else { Err(format!("{text}: only loopback addresses are measured")) }
}

/// Starts the servers and runs what the arguments ask for: the churn check, or the
/// loopback or network matrix and the scale-out scenario.
async fn measure(args: Args, threads: usize, nofile: u64) -> Result<PathBuf, String> {
    if matches!(args.network, Some(MatrixName::Scale)) {
        return Err("--network is quick or standard; the scale curve is --matrix scale".to_owned());
    }
    let date = date::utc_now();
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("bench/results").join(default_out(&args, &date)));
    let session = Session::begin(date, out, args.max_minutes)?;
    let scale_out = args.scale_out || args.scale_out_only;
    // The scale-out scenario starts its own servers.
    let servers = if args.scale_out_only { Vec::new() } else { start_servers(&args)? };
    let transports = if args.transports.is_empty() { Transport::ALL.to_vec() } else { args.transports.clone() };
    if let Some(connections) = args.churn {
        let server = servers.iter().find(|s| s.facts.name == "pushwire").ok_or("--churn needs a pushwire server")?;
        return session.churn(server, &transports, connections).await;
    }
    if servers.is_empty() && !scale_out {
        return Err(
            "nothing to measure: give --pushwire-bin, --pushwire-addr, --nchan-conf, --tornado-demo or --tornado-addr"
                .into(),
        );
    }
    let matrix = Matrix::of(args.matrix);
    let mut steps = if args.scale_out_only || args.network.is_some() {
        Vec::new()
    } else {
        matrix::run::plan(&matrix, &transports, &args.protocols)
    };
    steps.retain(|step| step.chosen(&args.kinds, &args.subscribers));
    if (args.network.is_some() || args.scale_out_only) && args.protocols != [Http::H1] {
        return Err("--protocols is the loopback matrix's; the other experiments are HTTP/1.1 in cleartext".into());
    }
    let network = args.network.map(|name| {
        let profiles = network::profiles()
            .into_iter()
            .filter(|p| args.profiles.is_empty() || args.profiles.contains(&p.name))
            .collect();
        (NetworkMatrix::of(matches!(name, MatrixName::Quick)), profiles)
    });
    let scale_out = args
        .pushwire_bin
        .clone()
        .filter(|_| scale_out)
        .map(|binary| (binary, scale_out::loads(&matrix.scale_out, &transports)));
    let label = match args.network {
        Some(name) => format!("network {name:?}").to_lowercase(),
        None => {
            format!("{:?}{}", args.matrix, if args.scale_out_only { ", scale-out only" } else { "" }).to_lowercase()
        }
    };
    let plan = Plan {
        servers,
        steps,
        idle_hold: matrix.idle_hold,
        network,
        transports,
        https: args.protocols.clone(),
        scale_out,
        label,
        client_worker_threads: threads,
        client_nofile_limit: nofile,
    };
    session.measure(plan).await
}

/// The folder under `bench/results` a run goes to without `--out`: its date, with the
/// experiment's name before it.
fn default_out(args: &Args, date: &str) -> String {
    let day = &date[..10];
    if args.scale_out_only {
        format!("scale-out-{day}")
    } else if args.network.is_some() {
        format!("network-{day}")
    } else if args.churn.is_some() {
        format!("churn-{day}")
    } else if matches!(args.matrix, MatrixName::Scale) {
        format!("scale-{day}")
    } else {
        day.to_owned()
    }
}

/// The servers of the matrix, started or attached to as the arguments say.
fn start_servers(args: &Args) -> Result<Vec<Server>, String> {
    let mut servers = Vec::new();
    let start = |name: &str, protocol, launch| {
        Server::start(name, protocol, launch).map_err(|e| format!("cannot start {name}: {e}"))
    };
    // HTTPS only when a setting asks for it, so an HTTP/1.1 run starts pushwire as before.
    let tls = args.network.is_none() && args.protocols.iter().any(|http| http.tls());
    if let Some(binary) = &args.pushwire_bin {
        let launch = Launch::Pushwire { binary: binary.clone(), bus: None, tls };
        servers.push(start("pushwire", Protocol::Pushwire, launch)?);
    } else if let Some(addr) = &args.pushwire_addr {
        let tls_addr = args.pushwire_tls_addr.as_deref().map(loopback).transpose()?;
        let launch = Launch::External { addr: loopback(addr)?, tls_addr, pid: args.pushwire_pid };
        servers.push(start("pushwire", Protocol::Pushwire, launch)?);
    }
    let (nchan_addr, nchan_tls_addr) = (loopback(&args.nchan_addr)?, loopback(&args.nchan_tls_addr)?);
    if let Some(conf) = &args.nchan_conf {
        let launch = Launch::Nginx { conf: conf.clone(), addr: nchan_addr, tls_addr: nchan_tls_addr };
        servers.push(start("nchan", Protocol::Nchan, launch)?);
    } else if args.nchan_running {
        let launch =
            Launch::External { addr: nchan_addr, tls_addr: tls.then_some(nchan_tls_addr), pid: args.nchan_pid };
        servers.push(start("nchan", Protocol::Nchan, launch)?);
    }
    if let Some(addr) = &args.tornado_addr {
        let launch = Launch::External { addr: loopback(addr)?, tls_addr: None, pid: None };
        servers.push(start("tornado", Protocol::Tornado, launch)?);
    } else if let Some(demo) = &args.tornado_demo {
        let addr = servers::free_loopback_port().map_err(|e| format!("no free port for Tornado: {e}"))?;
        let launch = Launch::Tornado { python: args.tornado_python.clone(), demo: demo.clone(), addr };
        servers.push(start("tornado", Protocol::Tornado, launch)?);
    }
    Ok(servers)
}
