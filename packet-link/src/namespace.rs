//! A network namespace of the link's own, with a thread that lives in it: sockets that
//! thread makes and processes it starts belong to the namespace. Another thread can
//! join it for good ([`Namespace::enter`]), and with it every thread that one starts.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns, unshare};

/// How long [`armed`] waits for `setpriv` and `unshare` to hand over: a cold start
/// takes milliseconds.
const ARMING: Duration = Duration::from_secs(5);

/// Waits (at most [`ARMING`]) until the process `pid`, started as `setpriv`, has become
/// `unshare` and that has a child that is no longer `unshare`: both have set their
/// parent-death signals by then. Returns at once if it has ended (a program that exits
/// at once).
fn armed(pid: u32) {
    let comm = |pid: &str| std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    let ended = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        stat.rsplit_once(") ").is_none_or(|(_, rest)| rest.starts_with('Z'))
    };
    let started = Instant::now();
    while started.elapsed() < ARMING && !ended() {
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        let mut children = children.split_whitespace();
        let running = comm(&pid.to_string()).trim() == "unshare"
            && children.next().is_some_and(|child| !matches!(comm(child).trim(), "unshare" | ""));
        if running {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Work for the namespace's thread.
type Job = Box<dyn FnOnce() + Send>;

/// A network namespace that exists while this does (and while processes started in it
/// run).
pub struct Namespace {
    /// Holds the namespace; other processes can enter it through `/proc/<pid>/fd/<n>`.
    file: File,
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("path", &self.path()).finish()
    }
}

impl Namespace {
    /// A new namespace whose thread first runs `set_up` there.
    pub(crate) fn create<T: Send + 'static>(
        set_up: impl FnOnce() -> io::Result<T> + Send + 'static,
    ) -> io::Result<(Namespace, T)> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, made) = mpsc::channel();
        let thread = std::thread::Builder::new().name("packet-link namespace".into()).spawn(move || {
            let made = unshare(CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
                .and_then(|()| File::open("/proc/thread-self/ns/net"))
                .and_then(|file| Ok((file, set_up()?)));
            let failed = made.is_err();
            // The receiver waits for this answer; it is gone only if `create` is.
            let _ = ready.send(made);
            if !failed {
                for job in queue {
                    job();
                }
            }
        })?;
        let (file, value) = made.recv().map_err(|_| io::Error::other("the namespace's thread died"))??;
        Ok((Namespace { file, jobs: Some(jobs), thread: Some(thread) }, value))
    }

    /// Runs `f` in the namespace (on its thread) and returns what it returns: sockets
    /// made there belong to it.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let (answer, answered) = mpsc::channel();
        let job: Job = Box::new(move || {
            let _ = answer.send(f());
        });
        self.jobs.as_ref().expect("jobs until dropped").send(job).expect("the namespace's thread runs until dropped");
        answered.recv().expect("the namespace's thread answers every job")
    }

    /// Starts `program` with `args` in the namespace. It is killed when the namespace
    /// goes (this value dropped, or its owner dead), and with it every process it
    /// started (see [`Namespace::spawn_with`]).
    pub fn spawn(&self, program: impl Into<PathBuf>, args: Vec<String>) -> io::Result<Child> {
        self.spawn_with(program, move |command| {
            command.args(args);
        })
    }

    /// [`Namespace::spawn`] with the command's arguments, environment and standard
    /// streams set by `configure`.
    ///
    /// The returned child is `unshare`, whose one child is `program`, the first process
    /// of a PID namespace of its own: killing the returned child (or the namespace
    /// going: `setpriv --pdeathsig` ties it to the namespace's thread, its parent) kills
    /// `program`, and when that dies the kernel kills every process in its PID
    /// namespace. So a server's workers (nginx's) cannot outlive the link and keep its
    /// network namespace alive. Inside, `program` is process 1: a pid it writes down
    /// (nginx's pid file) means nothing outside.
    pub fn spawn_with(
        &self,
        program: impl Into<PathBuf>,
        configure: impl FnOnce(&mut Command) + Send + 'static,
    ) -> io::Result<Child> {
        let program = program.into();
        let child = self.run(move || {
            let mut command = Command::new("setpriv");
            command.args(["--pdeathsig", "KILL", "--", "unshare", "--pid", "--kill-child=KILL", "--"]).arg(program);
            configure(&mut command);
            command.spawn()
        })?;
        // Each of the two asks for its parent-death signal before it runs the next: had
        // the namespace's thread ended before then, none would come. So return only
        // once `program` runs, its guards set.
        armed(child.id());
        Ok(child)
    }

    /// Moves the calling thread into the namespace for good: the sockets it makes from
    /// now on, and the threads it starts (a runtime's workers), belong to it.
    pub fn enter(&self) -> io::Result<()> {
        setns(&self.file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    /// A path through which another process enters the namespace (`nsenter --net=…`),
    /// valid while this value lives.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/fd/{}", std::process::id(), self.file.as_raw_fd()))
    }

    /// Reads a file of `/proc/thread-self/net/` as the namespace sees it (`snmp`,
    /// `netstat`: its TCP counters).
    pub fn proc_net(&self, name: &str) -> io::Result<String> {
        let path = format!("/proc/thread-self/net/{name}");
        self.run(move || std::fs::read_to_string(path))
    }

    /// The namespace's TCP counter `name` of `/proc/net/snmp` (`RetransSegs`: segments
    /// its kernel retransmitted).
    pub fn tcp_counter(&self, name: &str) -> io::Result<u64> {
        let snmp = self.proc_net("snmp")?;
        tcp_counter(&snmp, name)
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no TCP counter {name} in /proc/net/snmp")))
    }
}

/// `name` of the two `Tcp:` lines of `snmp` (names, then values).
fn tcp_counter(snmp: &str, name: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let index = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(index)?.parse().ok()
}

impl Drop for Namespace {
    fn drop(&mut self) {
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Brings up the calling thread's namespace's loopback device.
pub(crate) fn loopback_up() -> io::Result<()> {
    let status = Command::new("ip").args(["link", "set", "lo", "up"]).status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other(format!("ip link set lo up: {status}"))) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_tcp_counter_is_read_by_its_name() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 2 64\nTcp: RtoAlgorithm OutSegs RetransSegs\nTcp: 1 900 17\n";
        assert_eq!(super::tcp_counter(snmp, "RetransSegs"), Some(17));
        assert_eq!(super::tcp_counter(snmp, "InErrs"), None);
    }
}
