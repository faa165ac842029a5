//! The servers under test: started as child processes (pushwire, nginx with nchan) or
//! reached at a given address, and observed through `/proc`. Each has a cleartext
//! address and, when HTTPS is measured, a TLS one (pushwire's `--tls-addr` beside its
//! plain HTTP; nchan's `ssl http2` listener of bench/nchan/nginx.conf).
//!
//! CPU time is the sum of `/proc/<pid>/task/*/schedstat` run times (nanoseconds, so a
//! few thousand deliveries are measurable, unlike the 10 ms ticks of `/proc/<pid>/stat`)
//! over the server's processes: pushwire's one, or nginx's master and its workers.
//! Its split into user and kernel time comes from `utime` and `stime` of
//! `/proc/<pid>/stat`: clock ticks, so only a share (see [`ProcSample::user_share_since`]).
//! Kernel time includes the TCP stack's work on loopback, some of which the kernel runs
//! in whichever process is on the CPU, so part of it can be the load generator's.
//! Memory is VmRSS and, because nginx workers share pages, also PSS
//! (`/proc/<pid>/smaps_rollup`), which splits shared pages between the processes.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::record::{Http, Machine, Protocol, ServerFacts};

/// pushwire's tokio worker threads and nginx's worker processes: one per core of the
/// 2-core benchmark machine, so both servers get the same parallelism.
pub(crate) const SERVER_WORKERS: usize = 2;
/// nchan's message buffer (bench/nchan/nginx.conf) and pushwire's `--history`: equal,
/// so both servers can replay the same depth to a lagging subscriber.
pub(crate) const HISTORY: usize = 200;
/// pushwire's `--max-body`: room for the 16 KiB payload and its form encoding.
pub(crate) const MAX_BODY: usize = 64 * 1024;
/// How long a started server gets to accept connections.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(15);

/// How to get a server to talk to.
#[derive(Clone, Debug)]
pub(crate) enum Launch {
    /// Run this pushwire binary on an ephemeral loopback port; with `bus`
    /// (`redis://…`), sharing the conversation with other instances through Redis;
    /// with `tls`, serving HTTPS (HTTP/2 and HTTP/1.1) on a second ephemeral port.
    Pushwire { binary: PathBuf, bus: Option<String>, tls: bool },
    /// Run nginx with this nchan configuration, which listens on `addr` and, over TLS,
    /// on `tls_addr`. The configuration is copied into the run's temporary prefix,
    /// beside the certificate openssl makes there, which it names relatively.
    Nginx { conf: PathBuf, addr: SocketAddr, tls_addr: SocketAddr },
    /// Run Tornado's chat demo (the `demos/chat` folder of a tornado source
    /// distribution) with this Python through `bench/tornado/serve.py`, which binds it
    /// to `addr` on loopback.
    Tornado { python: PathBuf, demo: PathBuf, addr: SocketAddr },
    /// A server someone else runs; `pid` (if given) is read for CPU and memory.
    External { addr: SocketAddr, tls_addr: Option<SocketAddr>, pid: Option<u32> },
}

/// Where `bench/tornado/serve.py` is, from the load generator's crate.
const TORNADO_SERVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tornado/serve.py");

/// A free loopback port, for a server that cannot be told to pick one itself.
pub(crate) fn free_loopback_port() -> io::Result<SocketAddr> {
    std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// One server under test.
pub(crate) struct Server {
    pub facts: ServerFacts,
    pub addr: SocketAddr,
    /// Where it serves HTTPS, if it does.
    pub tls_addr: Option<SocketAddr>,
    launch: Launch,
    running: Option<Running>,
}

enum Running {
    Child { child: Child, _stdout: Option<std::process::ChildStdout> },
    Nginx { child: Child, prefix: PathBuf },
}

impl Server {
    /// Starts (or attaches to) a server and waits until it accepts connections.
    pub(crate) fn start(name: &str, protocol: Protocol, launch: Launch) -> io::Result<Server> {
        let facts = ServerFacts {
            name: name.to_owned(),
            protocol,
            version: version_of(&launch),
            workers: match launch {
                Launch::Pushwire { .. } => format!("{SERVER_WORKERS} tokio worker threads (TOKIO_WORKER_THREADS)"),
                Launch::Nginx { .. } => format!("{SERVER_WORKERS} nginx worker processes (worker_processes)"),
                Launch::Tornado { .. } => "1 Python process (Tornado's IOLoop)".to_owned(),
                Launch::External { .. } => "unknown (external server)".to_owned(),
            },
            command: command_of(&launch),
        };
        let addr = match &launch {
            Launch::Nginx { addr, .. } | Launch::External { addr, .. } | Launch::Tornado { addr, .. } => *addr,
            Launch::Pushwire { .. } => SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let tls_addr = match &launch {
            Launch::Nginx { tls_addr, .. } => Some(*tls_addr),
            Launch::External { tls_addr, .. } => *tls_addr,
            Launch::Pushwire { .. } | Launch::Tornado { .. } => None,
        };
        let mut server = Server { facts, addr, tls_addr, launch, running: None };
        server.launch_process()?;
        Ok(server)
    }

    /// Where a client with `http` connects, if this server serves it.
    pub(crate) fn addr_for(&self, http: Http) -> Option<SocketAddr> {
        if http.tls() { self.tls_addr } else { Some(self.addr) }
    }

    /// Whether [`Server::restart`] gives a fresh process (not for external servers).
    pub(crate) fn restartable(&self) -> bool {
        !matches!(self.launch, Launch::External { .. })
    }

    /// Stops and starts the server again, so a memory measurement starts clean.
    pub(crate) fn restart(&mut self) -> io::Result<()> {
        self.stop();
        self.launch_process()
    }

    fn launch_process(&mut self) -> io::Result<()> {
        match &self.launch {
            Launch::Pushwire { binary, bus, tls } => {
                let mut child = Command::new(binary)
                    .args(pushwire_args(bus.as_deref(), *tls))
                    .env("TOKIO_WORKER_THREADS", SERVER_WORKERS.to_string())
                    .env("RUST_LOG", "warn")
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()?;
                let stdout = child.stdout.take().expect("stdout is piped");
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                reader.read_line(&mut line)?;
                // `open http://127.0.0.1:PORT/`, then ` or https://127.0.0.1:PORT/` with TLS.
                let url =
                    |scheme: &str| -> Option<SocketAddr> { line.split(scheme).nth(1)?.split('/').next()?.parse().ok() };
                self.addr = url("http://")
                    .ok_or_else(|| io::Error::other(format!("pushwire did not say where it listens: {line:?}")))?;
                if *tls {
                    self.tls_addr = Some(url("https://").ok_or_else(|| {
                        io::Error::other(format!("pushwire did not say where it serves HTTPS: {line:?}"))
                    })?);
                }
                self.running = Some(Running::Child { child, _stdout: Some(reader.into_inner()) });
            }
            Launch::Nginx { conf, addr, tls_addr } => {
                for addr in [addr, tls_addr] {
                    if std::net::TcpStream::connect(addr).is_ok() {
                        return Err(io::Error::other(format!("{addr} is busy: is another nginx running?")));
                    }
                }
                let prefix = std::env::temp_dir().join(format!("pushwire-bench-nchan-{}", std::process::id()));
                std::fs::create_dir_all(prefix.join("tmp"))?;
                let conf = nginx_prefix(conf, &prefix)?;
                let child = Command::new("nginx")
                    .arg("-p")
                    .arg(&prefix)
                    .arg("-c")
                    .arg(&conf)
                    .arg("-e")
                    .arg(prefix.join("error.log"))
                    .args(["-g", "daemon off;"])
                    .stdin(Stdio::null())
                    .spawn()?;
                self.running = Some(Running::Nginx { child, prefix });
                wait_until_listening(*addr)?;
                wait_until_listening(*tls_addr)?;
            }
            Launch::Tornado { python, demo, addr } => {
                let child = Command::new(python)
                    .arg(TORNADO_SERVE)
                    .arg(demo)
                    .arg(format!("--port={}", addr.port()))
                    .args(["--debug=false", "--logging=warning"])
                    .stdin(Stdio::null())
                    .spawn()?;
                self.running = Some(Running::Child { child, _stdout: None });
                wait_until_listening(*addr)?;
            }
            Launch::External { addr, tls_addr, .. } => {
                wait_until_listening(*addr)?;
                if let Some(tls_addr) = tls_addr {
                    wait_until_listening(*tls_addr)?;
                }
            }
        }
        Ok(())
    }

    /// Stops a server this tool started; external servers are left alone.
    pub(crate) fn stop(&mut self) {
        match self.running.take() {
            Some(Running::Child { mut child, .. }) => {
                // The benchmark keeps nothing in the server worth a graceful exit.
                let _ = child.kill();
                let _ = child.wait();
            }
            Some(Running::Nginx { mut child, prefix }) => {
                // `-s stop` signals the master through its pid file; the master then
                // stops its workers, which a plain kill of the master would orphan.
                let stopped = Command::new("nginx")
                    .arg("-p")
                    .arg(&prefix)
                    .arg("-c")
                    .arg(prefix.join(NGINX_CONF))
                    .args(["-g", "daemon off;", "-s", "stop"])
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if !stopped {
                    let _ = child.kill();
                }
                let _ = child.wait();
                let _ = std::fs::remove_dir_all(prefix);
            }
            None => {}
        }
    }

    /// The server's processes: pushwire's own, or nginx's master and workers.
    fn pids(&self) -> Vec<u32> {
        let root = match (&self.running, &self.launch) {
            (Some(Running::Child { child, .. } | Running::Nginx { child, .. }), _) => child.id(),
            (None, Launch::External { pid: Some(pid), .. }) => *pid,
            _ => return Vec::new(),
        };
        let mut pids = vec![root];
        let children = std::fs::read_to_string(format!("/proc/{root}/task/{root}/children")).unwrap_or_default();
        pids.extend(children.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()));
        pids
    }

    /// CPU time and memory of the server now, if its processes can be read.
    pub(crate) fn sample(&self) -> Option<ProcSample> {
        let pids = self.pids();
        if pids.is_empty() {
            return None;
        }
        let mut sample = ProcSample::default();
        for pid in pids {
            sample.add(&process_sample(pid)?);
        }
        Some(sample)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The flags the benchmark starts pushwire with.
fn pushwire_args(bus: Option<&str>, tls: bool) -> Vec<String> {
    let mut args: Vec<String> =
        ["--addr", "127.0.0.1:0", "--history", &HISTORY.to_string(), "--max-body", &MAX_BODY.to_string()]
            .map(str::to_owned)
            .to_vec();
    if tls {
        // HTTPS beside plain HTTP, so one process serves every HTTP setting of a run.
        args.extend(["--tls-addr".to_owned(), "127.0.0.1:0".to_owned()]);
    }
    if let Some(bus) = bus {
        args.extend(["--bus".to_owned(), bus.to_owned()]);
    }
    args
}

/// The name of nginx's configuration in its prefix.
const NGINX_CONF: &str = "nginx.conf";

/// Prepares nginx's temporary `prefix`: a copy of `conf`, and beside it the self-signed
/// certificate (`tls.crt`, `tls.key`) its TLS listener names. nginx resolves a relative
/// certificate path against the directory of the configuration it was given, hence
/// the copy: the key is made for this run only and never leaves the temporary prefix.
/// An ECDSA P-256 key, as pushwire's self-signed certificate has. Returns the copy.
fn nginx_prefix(conf: &Path, prefix: &Path) -> io::Result<PathBuf> {
    let copy = prefix.join(NGINX_CONF);
    std::fs::copy(conf, &copy)?;
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "13"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"])
        .arg("-keyout")
        .arg(prefix.join("tls.key"))
        .arg("-out")
        .arg(prefix.join("tls.crt"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::other(format!("openssl, which makes nchan's certificate: {e}")))?;
    if !made.success() {
        return Err(io::Error::other(format!("openssl could not make nchan's certificate: {made}")));
    }
    Ok(copy)
}

fn command_of(launch: &Launch) -> String {
    match launch {
        Launch::Pushwire { binary, bus, tls } => format!(
            "TOKIO_WORKER_THREADS={SERVER_WORKERS} {} {}",
            binary.display(),
            pushwire_args(bus.as_deref(), *tls).join(" ")
        ),
        Launch::Nginx { conf, .. } => format!(
            "nginx -p <temp dir> -c <temp dir>/{NGINX_CONF} -g 'daemon off;' (a copy of {}, beside a certificate \
             openssl made there)",
            conf.display()
        ),
        Launch::Tornado { python, demo, .. } => {
            format!("{} bench/tornado/serve.py {} --port=<free port> --debug=false", python.display(), demo.display())
        }
        Launch::External { addr, .. } => format!("external server at {addr}"),
    }
}

fn version_of(launch: &Launch) -> String {
    let output = match launch {
        Launch::Pushwire { binary, .. } => Command::new(binary).arg("--version").output(),
        Launch::Nginx { .. } => {
            let nginx = Command::new("nginx").arg("-v").output();
            let nchan = Command::new("dpkg-query").args(["-W", "-f", "${Version}", "libnginx-mod-nchan"]).output();
            return match (nginx, nchan) {
                (Ok(nginx), Ok(nchan)) => format!(
                    "{} + libnginx-mod-nchan {}",
                    String::from_utf8_lossy(&nginx.stderr).trim().trim_start_matches("nginx version: "),
                    String::from_utf8_lossy(&nchan.stdout).trim()
                ),
                _ => "unknown".to_owned(),
            };
        }
        Launch::Tornado { python, demo, .. } => {
            let tornado = Command::new(python).args(["-c", "import tornado; print(tornado.version)"]).output();
            let demo_of = demo.parent().and_then(Path::parent).and_then(Path::file_name);
            return format!(
                "tornado {}, chat demo of {}",
                tornado.map_or("unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
                demo_of.map_or("unknown".into(), |name| name.to_string_lossy())
            );
        }
        Launch::External { .. } => return "unknown".to_owned(),
    };
    output.map_or("unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
}

fn wait_until_listening(addr: SocketAddr) -> io::Result<()> {
    let started = Instant::now();
    while started.elapsed() < STARTUP_TIMEOUT {
        if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::new(io::ErrorKind::TimedOut, format!("nothing listens on {addr}")))
}

/// Fewest clock ticks (10 ms each) of user plus kernel time between two samples for
/// their user/kernel split to be given: each tick count is off by less than one, so at
/// 20 the user share is within 5 percentage points.
const MIN_SPLIT_TICKS: u64 = 20;

/// CPU and memory of one or more processes at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ProcSample {
    /// Run time of all threads, in nanoseconds.
    pub cpu_ns: u64,
    /// User and kernel time (`utime`, `stime`) in clock ticks.
    pub user_ticks: u64,
    pub system_ticks: u64,
    pub rss_kib: u64,
    pub pss_kib: u64,
}

impl ProcSample {
    pub(crate) fn add(&mut self, other: &ProcSample) {
        self.cpu_ns += other.cpu_ns;
        self.user_ticks += other.user_ticks;
        self.system_ticks += other.system_ticks;
        self.rss_kib += other.rss_kib;
        self.pss_kib += other.pss_kib;
    }

    /// The share of the CPU time since `before` spent in user space, or `None` when
    /// too few ticks passed to tell ([`MIN_SPLIT_TICKS`]). The kernel splits its
    /// precise run time into `utime` and `stime` by the same ratio, so applying this
    /// share to the `cpu_ns` difference is what the kernel itself reports.
    pub(crate) fn user_share_since(&self, before: &ProcSample) -> Option<f64> {
        let user = self.user_ticks.saturating_sub(before.user_ticks);
        let system = self.system_ticks.saturating_sub(before.system_ticks);
        (user + system >= MIN_SPLIT_TICKS).then(|| user as f64 / (user + system) as f64)
    }
}

/// CPU run time of all threads of `pid`, its user and kernel ticks, VmRSS and PSS.
pub(crate) fn process_sample(pid: u32) -> Option<ProcSample> {
    let mut cpu_ns = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let schedstat = std::fs::read_to_string(task.path().join("schedstat")).unwrap_or_default();
        cpu_ns += schedstat.split_whitespace().next().and_then(|ns| ns.parse::<u64>().ok()).unwrap_or(0);
    }
    let (user_ticks, system_ticks) =
        user_and_system_ticks(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss_kib = kib_field(&status, "VmRSS:").unwrap_or(0);
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let pss_kib = kib_field(&rollup, "Pss:").unwrap_or(rss_kib);
    Some(ProcSample { cpu_ns, user_ticks, system_ticks, rss_kib, pss_kib })
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/<pid>/stat` line: all threads of
/// the process, exited ones included. The command name (field 2) may hold spaces and
/// parentheses, so fields are counted after its last `)`.
fn user_and_system_ticks(stat: &str) -> Option<(u64, u64)> {
    let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace().skip(11);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
}

fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Busy CPU time of the whole machine so far (all cores), from `/proc/stat`.
pub(crate) fn machine_busy_ns() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = stat.lines().next()?.split_whitespace().skip(1).filter_map(|f| f.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal ...; idle and iowait are not busy.
    let busy: u64 = fields.iter().take(8).enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    // USER_HZ is 100 on Linux.
    Some(busy * 10_000_000)
}

/// The machine this runs on, from `/proc` and `rustc --version`.
pub(crate) fn describe_machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find_map(|line| line.strip_prefix("model name")?.split_once(':').map(|(_, v)| v.trim().to_owned()))
        .unwrap_or_else(|| "unknown".to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    Machine {
        cpu_model,
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        memory_mib: kib_field(&meminfo, "MemTotal:").unwrap_or(0) / 1024,
        rustc: Command::new("rustc")
            .arg("--version")
            .output()
            .map_or("unknown".to_owned(), |o| String::from_utf8_lossy(&o.stdout).trim().to_owned()),
        load_average_before: load_average(),
        load_average_after: String::new(),
    }
}

pub(crate) fn load_average() -> String {
    read_trimmed("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

fn read_trimmed(path: impl AsRef<Path>) -> String {
    std::fs::read_to_string(path).map_or("unknown".to_owned(), |s| s.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_and_system_ticks_are_read_after_the_command_name() {
        let stat = "4242 (nginx: worker) S 1 4242 4242 0 -1 4194624 96 0 0 0 731 2648 0 0 20 0 1 0 64887";
        assert_eq!(user_and_system_ticks(stat), Some((731, 2648)));
    }

    #[test]
    fn the_user_share_needs_enough_ticks() {
        let before = ProcSample { user_ticks: 100, system_ticks: 300, ..ProcSample::default() };
        let few = ProcSample { user_ticks: 105, system_ticks: 310, ..before };
        assert_eq!(few.user_share_since(&before), None);
        let enough = ProcSample { user_ticks: 110, system_ticks: 330, ..before };
        assert_eq!(enough.user_share_since(&before), Some(0.25));
    }
}
