//! The redis-server of one scale-out run: its own port and temporary directory, no
//! persistence (`--save '' --appendonly no`), since durability is not what is measured.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long redis-server gets to say it accepts connections.
const REDIS_STARTUP_TIMEOUT: Duration = Duration::from_secs(15);
/// Ports to try: the free port found is taken by redis-server a moment later, and
/// another process may grab it in between (redis-server then exits at once).
const PORT_ATTEMPTS: usize = 3;

/// The redis-server of one run, with its own port and directory.
pub(crate) struct Redis {
    child: Child,
    /// Kept open so redis-server's log lines after start-up have somewhere to go.
    _stdout: BufReader<ChildStdout>,
    pub port: u16,
    dir: PathBuf,
    pub version: String,
}

impl Redis {
    /// Starts redis-server on a free loopback port and returns once it says it
    /// accepts connections.
    pub(crate) async fn start() -> Result<Redis, String> {
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

    pub(crate) fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    pub(crate) async fn stop(mut self) {
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
