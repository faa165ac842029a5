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
//! pushwire-bench --pushwire-bin target/release/pushwire --storm 2000      # restart storms (bench/storm/run)
//! ```
//!
//! `bench/run-matrix` and `bench/network/run` are the documented commands around it.
//! This file only reads the command line (`cli`) and dispatches.
//!
//! # Modules
//! Each module imports only those listed above it (`main` all of them), so there are no
//! circular imports: the records depend on nothing, reports on records and formatting.
//! - `record`: the plain, serialisable records of a run (`Run`, `Outcome`, …; `http`:
//!   the HTTP setting); no imports;
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
//!   server protocol (`long_poll`, `sse`, `websocket`: one file per transport);
//! - `servers`: starting servers (on loopback or the packet link's server side), `/proc`
//!   sampling, machine facts;
//! - `scenario`: one measurement (a `Load` delivered, or idle connections) and its figures
//!   (`bench`, `subscriber`, `latency`, `idle`);
//! - the experiments, each with its own `run` and `report`:
//!   - `matrix`: the loopback matrix (`ramp`: the throughput ramp's criterion; `report`:
//!     `tables`, `protocols` (the HTTP settings compared), `headline`, `targets`,
//!     `before_after`, `plots`);
//!   - `network`: the network matrix over emulated or packet links (`profiles`: the links;
//!     `rounds`: reconnect and cold start; `report`: `tables`, `loss`, `agreement`,
//!     `plots`);
//!   - `scale_out`: cross-instance delivery through Redis (`redis`: its redis-server);
//!   - `churn`: connections that come and go, and whether the server gets back to idle;
//!   - `storm`: a server stopped and started again under thousands of clients, per
//!     reconnection schedule (`client`: one client);
//!   - `flood`: one client publishing as fast as it can, against a witness;
//! - `report`: which experiment's report a run record gets (`--report-from` and after a run);
//! - `session`: one measuring invocation: the experiments in turn, recorded as one run;
//! - `cli`: the command line's flags.

mod churn;
mod cli;
mod clients;
mod date;
mod fleet;
mod flood;
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
mod storm;
mod tls;
mod webtransport;
mod wire;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use packet_link::PacketLink;

use cli::Args;
use fleet::FleetPlan;
use matrix::{Matrix, MatrixName};
use network::{LinkKind, NetworkMatrix, NetworkRun};
use record::{Http, Protocol, Transport};
use servers::{Host, Launch, Server};
use session::{Plan, Session};
use storm::StormPlan;

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
    let packet_link = match packet_link_up(&args) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("pushwire-bench: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Each subscriber is a descriptor; the soft limit is often 1024.
    let nofile = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let threads = args.client_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .expect("build the tokio runtime");
    if args.fleet_worker {
        return match runtime.block_on(fleet::worker::work()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("pushwire-bench --fleet-worker: {e}");
                ExitCode::FAILURE
            }
        };
    }
    match runtime.block_on(measure(args, threads, nofile, packet_link)) {
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

/// `--link packet`: the link, with this thread on its client side, and so every thread
/// it starts from now on (the runtime's): every socket the load generator makes is
/// there, except those it makes on the server side on purpose (a back end's publisher).
fn packet_link_up(args: &Args) -> Result<Option<Arc<PacketLink>>, String> {
    if args.link != LinkKind::Packet {
        return Ok(None);
    }
    if args.network.is_none() {
        return Err("--link is the network matrix's: give --network quick or standard too".into());
    }
    let external = args.pushwire_addr.is_some() || args.nchan_running || args.tornado_addr.is_some();
    if external || args.scale_out || args.scale_out_only || args.churn.is_some() {
        return Err("--link packet starts its servers on the link's server side: give --pushwire-bin, --nchan-conf \
                    or --tornado-demo, without running servers, scale-out or churn"
            .into());
    }
    let link = PacketLink::up(packet_link::Profile::CLEAR).map_err(|e| format!("--link packet: {e}"))?;
    link.client().enter().map_err(|e| format!("--link packet: cannot join the link's client side: {e}"))?;
    Ok(Some(Arc::new(link)))
}

fn regenerate(json: &Path, before: Option<&Path>, out: Option<&Path>) -> Result<(), String> {
    let dir = match out {
        Some(out) => {
            std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
            out
        }
        None => json.parent().unwrap_or(Path::new(".")),
    };
    // The experiments with a JSON of their own; the rest are runs of `report`.
    let source = json.display().to_string();
    let read = || std::fs::read_to_string(json).map_err(|e| format!("{source}: {e}"));
    match json.file_name().and_then(|name| name.to_str()) {
        Some("storm.json") => {
            let record: Recorded<record::StormOutcome> = parse(&read()?, &source)?;
            return storm::report::write(&record.outcomes, dir, &source, &record.command).map(drop);
        }
        Some("fleet.json") => {
            let record: Recorded<record::FleetOutcome> = parse(&read()?, &source)?;
            return fleet::report::write(&record.outcomes, dir, &source, &record.command).map(drop);
        }
        Some("flood.json") => {
            let outcomes: Vec<flood::FloodOutcome> = parse(&read()?, &source)?;
            return flood::write(&outcomes, dir, &source).map(drop);
        }
        _ => {}
    }
    let run = report::read(json)?;
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

/// What `--report-from` reads of an experiment's JSON: the command that ran it and its
/// outcomes.
#[derive(serde::Deserialize)]
struct Recorded<T> {
    command: String,
    outcomes: Vec<T>,
}

fn parse<T: serde::de::DeserializeOwned>(text: &str, source: &str) -> Result<T, String> {
    serde_json::from_str(text).map_err(|e| format!("{source}: {e}"))
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
async fn measure(
    args: Args,
    threads: usize,
    nofile: u64,
    packet_link: Option<Arc<PacketLink>>,
) -> Result<PathBuf, String> {
    if matches!(args.network, Some(MatrixName::Scale)) {
        return Err("--network is quick or standard; the scale curve is --matrix scale".to_owned());
    }
    let profiles = args.network.map(|_| network::profiles::chosen(args.link, &args.profiles)).transpose()?;
    if let (true, Some(binary)) = (args.scale_out || args.scale_out_only, &args.pushwire_bin) {
        scale_out::run::check_binary(binary)?;
    }
    let date = date::utc_now();
    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("bench/results").join(default_out(&args, &date)));
    let session = Session::begin(date, out, args.max_minutes)?;
    if let (Some(subscribers), Some(binary)) = (args.storm, &args.pushwire_bin) {
        let transports = if args.transports.is_empty() { Transport::ALL.to_vec() } else { args.transports.clone() };
        let plan = StormPlan {
            subscribers,
            transports,
            schedules: args.storm_schedules.clone(),
            stops: args.storm_stops.clone(),
            buses: args.storm_buses.clone(),
        };
        return session.storm(binary, &plan).await;
    }
    if let (Some(subscribers), Some(binary)) = (args.fleet, &args.pushwire_bin) {
        let transport = match args.transports[..] {
            [] => Transport::WebSocket,
            [transport] => transport,
            _ => return Err("--fleet measures one transport".to_owned()),
        };
        let steady = std::time::Duration::from_secs(args.fleet_steady);
        let per_worker = args.fleet_per_worker;
        let plan = FleetPlan { subscribers, instances: args.fleet_instances.clone(), transport, steady, per_worker };
        return session.fleet(binary, &plan).await;
    }
    if let (Some(subscribers), Some(binary)) = (args.flood, &args.pushwire_bin) {
        let transports = if args.transports.is_empty() { Transport::ALL.to_vec() } else { args.transports.clone() };
        return session.flood(binary, &transports, subscribers).await;
    }
    let scale_out = args.scale_out || args.scale_out_only;
    let host = packet_link.clone().map_or(Host::Loopback, Host::ServerSide);
    // The scale-out scenario starts its own servers.
    let servers = if args.scale_out_only { Vec::new() } else { start_servers(&args, &host)? };
    let transports = match (args.transports.is_empty(), &packet_link) {
        (false, _) => args.transports.clone(),
        // The packet link carries QUIC: WebTransport both ways is what loss tells apart.
        (true, Some(_)) => Transport::EVERY.to_vec(),
        (true, None) => Transport::ALL.to_vec(),
    };
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
    let network = args.network.zip(profiles).map(|(name, profiles)| NetworkRun {
        matrix: NetworkMatrix::of(matches!(name, MatrixName::Quick)),
        profiles,
        packet_link,
    });
    let scale_out = args
        .pushwire_bin
        .clone()
        .filter(|_| scale_out)
        .map(|binary| (binary, scale_out::loads(&matrix.scale_out, &transports)));
    let label = match args.network {
        Some(name) if args.link == LinkKind::Packet => format!("network {name:?}, packet link").to_lowercase(),
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
    } else if args.network.is_some() && args.link == LinkKind::Packet {
        format!("loss-{day}")
    } else if args.network.is_some() {
        format!("network-{day}")
    } else if args.churn.is_some() {
        format!("churn-{day}")
    } else if args.storm.is_some() {
        format!("storm-{day}")
    } else if args.flood.is_some() {
        format!("flood-{day}")
    } else if args.fleet.is_some() {
        format!("fleet-{day}")
    } else if matches!(args.matrix, MatrixName::Scale) {
        format!("scale-{day}")
    } else {
        day.to_owned()
    }
}

/// The servers of the matrix, started on `host` or attached to as the arguments say.
fn start_servers(args: &Args, host: &Host) -> Result<Vec<Server>, String> {
    let mut servers = Vec::new();
    let start = |name: &str, protocol, launch| {
        Server::start(name, protocol, launch, host.clone()).map_err(|e| format!("cannot start {name}: {e}"))
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
    // The configuration's ports, on the host's address.
    let on_host = |addr: SocketAddr| SocketAddr::new(host.ip(), addr.port());
    let (nchan_addr, nchan_tls_addr) = (on_host(loopback(&args.nchan_addr)?), on_host(loopback(&args.nchan_tls_addr)?));
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
        let addr = host.free_port().map_err(|e| format!("no free port for Tornado: {e}"))?;
        let launch = Launch::Tornado { python: args.tornado_python.clone(), demo: demo.clone(), addr };
        servers.push(start("tornado", Protocol::Tornado, launch)?);
    }
    Ok(servers)
}
