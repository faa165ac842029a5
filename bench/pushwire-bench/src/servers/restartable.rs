//! A pushwire of an experiment's own, with flags of its choosing, that can be stopped by
//! a signal and started again on the same port, as an operator's restart does (the
//! restart storm; the publish flood, which needs pushwire's own publish limit).

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::SERVER_WORKERS;

/// How long a process gets to say where it listens, and to exit after its signal (a
/// graceful stop drains for the longest delay it told, about 6 s).
const STARTUP: Duration = Duration::from_secs(15);
const EXIT: Duration = Duration::from_secs(20);

pub(crate) struct Restartable {
    binary: PathBuf,
    /// The flags after `--addr`.
    args: Vec<String>,
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl Restartable {
    /// Starts pushwire with `args` on a free loopback port, with the benchmark's
    /// worker threads.
    pub(crate) fn start(binary: PathBuf, args: Vec<String>) -> io::Result<Restartable> {
        let mut server = Restartable { binary, args, addr: SocketAddr::from(([127, 0, 0, 1], 0)), child: None };
        server.launch()?;
        Ok(server)
    }

    /// Starts the process at `self.addr` (port 0 the first time) and waits for its
    /// URL line. Its further output is read and dropped, so it never blocks on a full
    /// pipe.
    fn launch(&mut self) -> io::Result<()> {
        let mut child = Command::new(&self.binary)
            .args(["--addr", &self.addr.to_string()])
            .args(&self.args)
            .env("TOKIO_WORKER_THREADS", SERVER_WORKERS.to_string())
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let stdout = child.stdout.take().expect("stdout is piped");
        let (said, heard) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            if let Some(Ok(line)) = lines.next() {
                let _ = said.send(line);
            }
            lines.for_each(drop);
        });
        let line = heard.recv_timeout(STARTUP).map_err(|_| {
            let _ = child.kill();
            io::Error::other("pushwire did not say where it listens")
        })?;
        self.addr = line
            .split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next()?.parse().ok())
            .ok_or_else(|| io::Error::other(format!("pushwire did not say where it listens: {line:?}")))?;
        self.child = Some(child);
        Ok(())
    }

    /// Sends `signal` and waits until the process is gone.
    pub(crate) fn stop(&mut self, signal: Signal) -> io::Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        kill(Pid::from_raw(child.id() as i32), signal).map_err(io::Error::from)?;
        let begun = Instant::now();
        while child.try_wait()?.is_none() {
            if begun.elapsed() > EXIT {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Starts it again on the same port.
    pub(crate) fn start_again(&mut self) -> io::Result<()> {
        self.launch()
    }

    /// The running process's id.
    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

impl Drop for Restartable {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
