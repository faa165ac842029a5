//! A network namespace of the link's own, with a thread that lives in it: sockets that
//! thread makes and processes it starts belong to the namespace.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::mpsc;
use std::thread::JoinHandle;

use nix::sched::{CloneFlags, unshare};

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
    /// goes (this value dropped, or its owner dead): `setpriv --pdeathsig` ties it to
    /// the namespace's thread, its parent.
    pub fn spawn(&self, program: impl Into<PathBuf>, args: Vec<String>) -> io::Result<Child> {
        let program = program.into();
        self.run(move || {
            Command::new("setpriv").arg("--pdeathsig").arg("KILL").arg("--").arg(program).args(args).spawn()
        })
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
