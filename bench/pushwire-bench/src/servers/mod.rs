//! The servers under test: started as child processes (pushwire, nginx with nchan) or
//! reached at a given address, and observed through `/proc`. Each has a cleartext
//! address and, when HTTPS is measured, a TLS one (pushwire's `--tls-addr` beside its
//! plain HTTP; nchan's `ssl http2` listener of bench/nchan/nginx.conf).
//!
//! CPU time is the sum of `/proc/<pid>/task/*/schedstat` run times (nanoseconds, so a
//! few thousand deliveries are measurable, unlike the 10 ms ticks of `/proc/<pid>/stat`)
//! over the server's processes: the one started and its descendants (pushwire's one,
//! or nginx's master and its workers).
//! Its split into user and kernel time comes from `utime` and `stime` of
//! `/proc/<pid>/stat`: clock ticks, so only a share (see [`ProcSample::user_share_since`]).
//! Kernel time includes the TCP stack's work on loopback, some of which the kernel runs
//! in whichever process is on the CPU, so part of it can be the load generator's.
//! Memory is VmRSS and, because nginx workers share pages, also PSS
//! (`/proc/<pid>/smaps_rollup`), which splits shared pages between the processes
//! (`machine`, with the machine's facts).
//!
//! A started server runs on a [`Host`]: loopback, or the packet link's server side,
//! listening on its address there (nchan's configuration copied with its `listen`
//! addresses changed to it).

mod host;
mod machine;
pub(crate) mod metrics;
mod restartable;

use std::io::{self, BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::record::{Http, Protocol, ServerFacts};

pub(crate) use host::Host;
pub(crate) use machine::{ProcSample, describe_machine, load_average, machine_busy_ns, process_sample};
pub(crate) use restartable::Restartable;

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
    /// Run this pushwire binary on an ephemeral port of its host; with `bus`
    /// (`redis://…`), sharing the conversation with other instances through Redis;
    /// with `tls`, serving HTTPS (HTTP/2 and HTTP/1.1) on a second ephemeral port.
    Pushwire { binary: PathBuf, bus: Option<String>, tls: bool },
    /// Run nginx with this nchan configuration, which listens on `addr` and, over TLS,
    /// on `tls_addr`. The configuration is copied into the run's temporary prefix,
    /// beside the certificate openssl makes there, which it names relatively.
    Nginx { conf: PathBuf, addr: SocketAddr, tls_addr: SocketAddr },
    /// Run Tornado's chat demo (the `demos/chat` folder of a tornado source
    /// distribution) with this Python through `bench/tornado/serve.py`, which binds it
    /// to `addr`.
    Tornado { python: PathBuf, demo: PathBuf, addr: SocketAddr },
    /// A server someone else runs; `pid` (if given) is read for CPU and memory.
    External { addr: SocketAddr, tls_addr: Option<SocketAddr>, pid: Option<u32> },
}

/// Where `bench/tornado/serve.py` is, from the load generator's crate.
const TORNADO_SERVE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tornado/serve.py");

/// One server under test.
pub(crate) struct Server {
    pub facts: ServerFacts,
    pub addr: SocketAddr,
    /// Where it serves HTTPS, if it does.
    pub tls_addr: Option<SocketAddr>,
    launch: Launch,
    host: Host,
    running: Option<Running>,
}

enum Running {
    Child { child: Child, _stdout: Option<std::process::ChildStdout> },
    Nginx { child: Child, prefix: PathBuf },
}

impl Server {
    /// Starts (or attaches to) a server on `host` and waits until it accepts
    /// connections.
    pub(crate) fn start(name: &str, protocol: Protocol, launch: Launch, host: Host) -> io::Result<Server> {
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
            command: command_of(&launch, &host),
        };
        let addr = match &launch {
            Launch::Nginx { addr, .. } | Launch::External { addr, .. } | Launch::Tornado { addr, .. } => *addr,
            Launch::Pushwire { .. } => SocketAddr::new(host.ip(), 0),
        };
        let tls_addr = match &launch {
            Launch::Nginx { tls_addr, .. } => Some(*tls_addr),
            Launch::External { tls_addr, .. } => *tls_addr,
            Launch::Pushwire { .. } | Launch::Tornado { .. } => None,
        };
        let mut server = Server { facts, addr, tls_addr, launch, host, running: None };
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
                let args = pushwire_args(bus.as_deref(), *tls, self.host.ip());
                let mut child = self.host.spawn(binary, move |command| {
                    command
                        .args(args)
                        .env("TOKIO_WORKER_THREADS", SERVER_WORKERS.to_string())
                        .env("RUST_LOG", "warn")
                        // One process publishes for every scenario, far faster than a person types.
                        .env("PUSHWIRE_PUBLISH_RATE", "off")
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit());
                })?;
                let stdout = child.stdout.take().expect("stdout is piped");
                let mut reader = BufReader::new(stdout);
                let mut line = String::new();
                reader.read_line(&mut line)?;
                // `open http://IP:PORT/`, then ` or https://IP:PORT/` with TLS.
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
                let conf = nginx_prefix(conf, &prefix, self.host.ip())?;
                let error_log = prefix.join("error.log");
                let child = self.host.spawn("nginx", {
                    let prefix = prefix.clone();
                    move |command| {
                        command.arg("-p").arg(prefix).arg("-c").arg(conf).arg("-e").arg(error_log);
                        command.args(["-g", "daemon off;"]).stdin(Stdio::null());
                    }
                })?;
                self.running = Some(Running::Nginx { child, prefix });
                wait_until_listening(*addr)?;
                wait_until_listening(*tls_addr)?;
            }
            Launch::Tornado { python, demo, addr } => {
                let args = tornado_args(demo, *addr);
                let child = self.host.spawn(python, move |command| {
                    command.arg(TORNADO_SERVE).args(args).stdin(Stdio::null());
                })?;
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
                // On the link's server side the master is process 1 of a PID namespace
                // whose processes all die with the child killed here, and its pid file
                // says 1, which out here is init: never signal that.
                let stopped = matches!(self.host, Host::Loopback)
                    && Command::new("nginx")
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
        // The process started and its descendants: nginx's workers under its master,
        // and on the link's server side everything under `unshare`.
        let mut pids = vec![root];
        let mut next = 0;
        while let Some(&pid) = pids.get(next) {
            let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
            pids.extend(children.split_whitespace().filter_map(|pid| pid.parse::<u32>().ok()));
            next += 1;
        }
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

/// The flags the benchmark starts pushwire with, listening on `ip`.
fn pushwire_args(bus: Option<&str>, tls: bool, ip: IpAddr) -> Vec<String> {
    let any_port = SocketAddr::new(ip, 0).to_string();
    let mut args: Vec<String> =
        ["--addr", &any_port, "--history", &HISTORY.to_string(), "--max-body", &MAX_BODY.to_string()]
            .map(str::to_owned)
            .to_vec();
    if tls {
        // HTTPS beside plain HTTP, so one process serves every HTTP setting of a run.
        args.extend(["--tls-addr".to_owned(), any_port]);
    }
    if let Some(bus) = bus {
        args.extend(["--bus".to_owned(), bus.to_owned()]);
    }
    args
}

/// The arguments of `bench/tornado/serve.py` for the demo at `demo` listening on
/// `addr`: its port, and its address when that is not loopback (serve.py's default).
fn tornado_args(demo: &Path, addr: SocketAddr) -> Vec<String> {
    let mut args = vec![demo.display().to_string(), format!("--port={}", addr.port())];
    if !addr.ip().is_loopback() {
        args.push(format!("--address={}", addr.ip()));
    }
    args.extend(["--debug=false", "--logging=warning"].map(str::to_owned));
    args
}

/// The name of nginx's configuration in its prefix.
const NGINX_CONF: &str = "nginx.conf";

/// Prepares nginx's temporary `prefix`: a copy of `conf` listening on `ip` instead of
/// 127.0.0.1, and beside it the self-signed certificate (`tls.crt`, `tls.key`) its TLS
/// listener names. nginx resolves a relative certificate path against the directory of
/// the configuration it was given, hence the copy: the key is made for this run only
/// and never leaves the temporary prefix. An ECDSA P-256 key, as pushwire's self-signed
/// certificate has. Returns the copy.
fn nginx_prefix(conf: &Path, prefix: &Path, ip: IpAddr) -> io::Result<PathBuf> {
    let copy = prefix.join(NGINX_CONF);
    let text = std::fs::read_to_string(conf)?;
    std::fs::write(&copy, text.replace("listen 127.0.0.1:", &format!("listen {ip}:")))?;
    certificate(prefix, "nchan's")?;
    Ok(copy)
}

/// Makes `tls.crt` and `tls.key` in `dir` with openssl: a self-signed ECDSA P-256
/// certificate for 127.0.0.1, ::1 and localhost, valid 13 days (as pushwire's own, so a
/// browser may pin it by hash for WebTransport). `whose` names it in errors.
fn certificate(dir: &Path, whose: &str) -> io::Result<(PathBuf, PathBuf)> {
    let (cert, key) = (dir.join("tls.crt"), dir.join("tls.key"));
    let made = Command::new("openssl")
        .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "13"])
        .args(["-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost"])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| io::Error::other(format!("openssl, which makes {whose} certificate: {e}")))?;
    if !made.success() {
        return Err(io::Error::other(format!("openssl could not make {whose} certificate: {made}")));
    }
    Ok((cert, key))
}

fn command_of(launch: &Launch, host: &Host) -> String {
    let command = match launch {
        Launch::Pushwire { binary, bus, tls } => format!(
            "TOKIO_WORKER_THREADS={SERVER_WORKERS} {} {}",
            binary.display(),
            pushwire_args(bus.as_deref(), *tls, host.ip()).join(" ")
        ),
        Launch::Nginx { conf, .. } => format!(
            "nginx -p <temp dir> -c <temp dir>/{NGINX_CONF} -g 'daemon off;' (a copy of {}, beside a certificate \
             openssl made there)",
            conf.display()
        ),
        Launch::Tornado { python, demo, addr } => {
            let address = if addr.ip().is_loopback() { String::new() } else { format!(" --address={}", addr.ip()) };
            format!(
                "{} bench/tornado/serve.py {} --port=<free port>{address} --debug=false",
                python.display(),
                demo.display()
            )
        }
        Launch::External { addr, .. } => return format!("external server at {addr}"),
    };
    command + host.describe()
}

/// What `launch` runs, by the server's own account (`pushwire --version`, nginx's and
/// nchan's package versions, Tornado's).
pub(crate) fn version_of(launch: &Launch) -> String {
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
