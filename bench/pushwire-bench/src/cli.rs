//! The command line: every flag, its default and what it is for. [`crate::main`] reads
//! it and dispatches.

use std::path::PathBuf;

use clap::Parser;

use crate::matrix::MatrixName;
use crate::network::{self, LinkKind};
use crate::record::{Http, Kind, Transport};
use crate::storm::{Bus, Schedule, Stop};

/// Latency, throughput and cost of long-poll, SSE, WebSocket and WebTransport, on pushwire
/// and nchan.
#[derive(Parser, Debug)]
#[command(name = "pushwire-bench", version)]
pub(crate) struct Args {
    /// Start this pushwire binary as a child on an ephemeral loopback port (with --link
    /// packet, on the link's server side).
    #[arg(long)]
    pub(crate) pushwire_bin: Option<PathBuf>,
    /// Or measure a pushwire already running at this loopback address.
    #[arg(long, conflicts_with = "pushwire_bin")]
    pub(crate) pushwire_addr: Option<String>,
    /// Process id of the pushwire at --pushwire-addr, for CPU and memory.
    #[arg(long)]
    pub(crate) pushwire_pid: Option<u32>,
    /// Where the pushwire at --pushwire-addr serves HTTPS (its --tls-addr), for the TLS
    /// settings of --protocols.
    #[arg(long, requires = "pushwire_addr")]
    pub(crate) pushwire_tls_addr: Option<String>,
    /// Start nginx with this nchan configuration (bench/nchan/nginx.conf).
    #[arg(long)]
    pub(crate) nchan_conf: Option<PathBuf>,
    /// Where the nchan configuration listens, or where a running nchan is.
    #[arg(long, default_value = "127.0.0.1:18089")]
    pub(crate) nchan_addr: String,
    /// Where the nchan configuration serves HTTPS (HTTP/2 and HTTP/1.1), or where a
    /// running nchan does.
    #[arg(long, default_value = "127.0.0.1:18443")]
    pub(crate) nchan_tls_addr: String,
    /// Measure a running nchan at --nchan-addr instead of starting one.
    #[arg(long, conflicts_with = "nchan_conf")]
    pub(crate) nchan_running: bool,
    /// Master process id of the running nchan, for CPU and memory.
    #[arg(long)]
    pub(crate) nchan_pid: Option<u32>,
    /// Also measure Tornado's chat demo (long-poll only) running at this address.
    #[arg(long, conflicts_with = "tornado_demo")]
    pub(crate) tornado_addr: Option<String>,
    /// Or start Tornado's chat demo from this `demos/chat` folder of a tornado source
    /// distribution (`bench/tornado/setup` fetches one) on a free loopback port (with
    /// --link packet, on the link's server side: its `serve.py` must take `--address`).
    #[arg(long)]
    pub(crate) tornado_demo: Option<PathBuf>,
    /// The Python that runs --tornado-demo, with tornado installed.
    #[arg(long, default_value = "python3")]
    pub(crate) tornado_python: PathBuf,
    /// Run the network matrix instead: every scenario behind each link profile (see
    /// --link, --profiles), into `bench/results/network-<date>` (emulated) or
    /// `bench/results/loss-<date>` (packet) by default.
    #[arg(long, value_enum)]
    pub(crate) network: Option<MatrixName>,
    /// The network matrix's links: `emulated` (byte streams delayed in this process,
    /// servers on loopback, no loss) or `packet` (IP packets delayed and lost between
    /// two network namespaces the run makes and removes, servers in one, this process
    /// in the other; WebTransport too, ordered and unordered). `packet` needs root and
    /// /dev/net/tun.
    #[arg(long, value_enum, default_value_t = LinkKind::Emulated)]
    pub(crate) link: LinkKind,
    /// Run the churn check instead: this many subscriber connections per transport
    /// come and go (clean closes, resets, heads dropped half way) against the pushwire
    /// of --pushwire-bin or --pushwire-addr; writes churn.json and churn.md.
    #[arg(long)]
    pub(crate) churn: Option<u64>,
    /// Run the restart storm instead: this many subscribers per trial, each trial one
    /// bus, one way of stopping the server, one transport and one reconnection schedule
    /// (see --storm-buses, --storm-stops, --storm-schedules, --transports); starts its own
    /// pushwire from --pushwire-bin (built with `--features redis` for the Redis bus) and
    /// redis-server; writes storm.json, storm.md and the plots.
    #[arg(long, requires = "pushwire_bin")]
    pub(crate) storm: Option<usize>,
    /// Run the publish flood instead: a witness publishing to this many subscribers per
    /// transport, alone and while one client floods, on pushwire with its per-client
    /// publish limit and without; writes flood.json and flood.md.
    #[arg(long, requires = "pushwire_bin")]
    pub(crate) flood: Option<usize>,
    /// Run the fleet instead: this many subscribers of one transport (--transports;
    /// WebSocket by default) over the most of --fleet-instances pushwire instances
    /// sharing one conversation through a redis-server of the run's own, the clients in
    /// worker processes of this tool; a step per number of instances, the last one
    /// restarted instance by instance. Needs --pushwire-bin built with `--features
    /// redis`; writes fleet.json and fleet.md.
    #[arg(long, requires = "pushwire_bin")]
    pub(crate) fleet: Option<usize>,
    /// The fleet's steps: numbers of instances, each holding the same share.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4,6")]
    pub(crate) fleet_instances: Vec<usize>,
    /// The fleet's steady fan-out per step, in seconds.
    #[arg(long, default_value_t = 60)]
    pub(crate) fleet_steady: u64,
    /// The most subscribers one fleet worker process holds (under its open-file limit).
    #[arg(long, default_value_t = crate::fleet::PER_WORKER)]
    pub(crate) fleet_per_worker: usize,
    /// Be one of a fleet run's worker processes (its parent starts them).
    #[arg(long, hide = true)]
    pub(crate) fleet_worker: bool,
    /// The storm's buses: memory, redis.
    #[arg(long, value_delimiter = ',', default_value = "memory,redis", value_parser = Bus::parse)]
    pub(crate) storm_buses: Vec<Bus>,
    /// How the storm stops the server: kill (SIGKILL), term (SIGTERM, a graceful stop).
    #[arg(long, value_delimiter = ',', default_value = "kill,term", value_parser = Stop::parse)]
    pub(crate) storm_stops: Vec<Stop>,
    /// The clients' reconnection schedules: fixed, full-jitter, page, eventsource (SSE
    /// only).
    #[arg(long, value_delimiter = ',', default_value = "fixed,full-jitter,page,eventsource", value_parser = Schedule::parse)]
    pub(crate) storm_schedules: Vec<Schedule>,
    /// Only these link profiles of the network matrix, of the kind --link names (a
    /// wrong name lists them). Over the packet link, a profile without loss comes with
    /// its emulated twin of the same round trip, for the agreement check.
    #[arg(long, value_delimiter = ',', value_parser = parse_profile)]
    pub(crate) profiles: Vec<&'static str>,
    /// Which matrix of scenarios to run.
    #[arg(long, value_enum, default_value_t = MatrixName::Standard)]
    pub(crate) matrix: MatrixName,
    /// Only these transports: long-poll, sse, websocket, webtransport (all four by
    /// default), webtransport-unordered (each message on its own stream; only when named).
    #[arg(long, value_delimiter = ',', value_parser = parse_transport)]
    pub(crate) transports: Vec<Transport>,
    /// What the loopback matrix's HTTP goes over: `h1` (HTTP/1.1, cleartext), `h1-tls`
    /// (HTTP/1.1 over TLS), `h2-tls` (HTTP/2 over TLS, one subscriber per connection),
    /// `h2-tls:N` (HTTP/2 over TLS, N subscribers' streams per connection, at most the
    /// servers' concurrent-stream limit: 128 for pushwire's default and nginx's). The whole
    /// matrix runs over the first; fan-out, idle and round trips over each. pushwire
    /// then also serves HTTPS (`--tls-addr`); nchan always does (bench/nchan/nginx.conf).
    #[arg(long, value_delimiter = ',', default_value = "h1")]
    pub(crate) protocols: Vec<Http>,
    /// Only these scenarios (to rerun one table's rows), e.g. `--kinds fan-out`.
    #[arg(long, value_delimiter = ',', value_enum)]
    pub(crate) kinds: Vec<Kind>,
    /// Only the scenarios with this many subscribers (or idle connections).
    #[arg(long, value_delimiter = ',')]
    pub(crate) subscribers: Vec<usize>,
    /// Directory for results.json, tables.md and the SVG plots. With --report-from,
    /// where the regenerated tables and plots go (default: beside the JSON file).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    /// Stop starting new scenarios after this many minutes.
    #[arg(long, default_value_t = 20.0)]
    pub(crate) max_minutes: f64,
    /// Load-generator worker threads (default: one per core).
    #[arg(long)]
    pub(crate) client_threads: Option<usize>,
    /// Only regenerate tables.md and the plots from this results.json.
    #[arg(long)]
    pub(crate) report_from: Option<PathBuf>,
    /// With --report-from: also write `before-after.md`, pushwire's figures in this
    /// earlier run next to those of the --report-from run.
    #[arg(long, requires = "report_from")]
    pub(crate) before: Option<PathBuf>,
    /// After the matrix, measure cross-instance delivery through Redis against one
    /// in-memory instance: starts redis-server and pushwire instances from
    /// --pushwire-bin, which must be built with `--features redis`.
    #[arg(long, requires = "pushwire_bin")]
    pub(crate) scale_out: bool,
    /// Run only the scale-out scenario, not the matrix.
    #[arg(long, requires = "pushwire_bin")]
    pub(crate) scale_out_only: bool,
}

fn parse_profile(text: &str) -> Result<&'static str, String> {
    let names: Vec<&'static str> = network::profiles::profiles().iter().map(|p| p.name).collect();
    names.iter().copied().find(|name| *name == text).ok_or_else(|| format!("{text}: one of {}", names.join(", ")))
}

fn parse_transport(text: &str) -> Result<Transport, String> {
    let names = || Transport::EVERY.map(Transport::name).join(", ");
    Transport::EVERY.into_iter().find(|t| t.name() == text).ok_or_else(|| format!("{text}: one of {}", names()))
}
