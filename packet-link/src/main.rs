//! Runs a program (a server) behind a packet-level link and says how to put a client
//! (a browser, curl) on the link's other side, so a reader can watch a transport live
//! with real loss:
//!
//! ```text
//! sudo target/release/packet-link --rtt 100ms --loss 2 -- target/release/pushwire --addr 10.99.0.1:8888
//! sudo nsenter --net=/proc/<pid>/fd/<fd> chromium \
//!     --unsafely-treat-insecure-origin-as-secure=http://10.99.0.1:8888 http://10.99.0.1:8888/
//! ```
//!
//! (The flag lets WebTransport run on a plain-HTTP page at an address that is not
//! loopback.) The program runs on the server side at 10.99.0.1, with this process's
//! standard streams; the first line this prints names the client side. When the program
//! ends, or this is stopped (Ctrl-C, SIGTERM: the program is killed), this prints what
//! the link did and exits; the program, the namespaces and the devices go with it, on a
//! crash too.

use std::io;
use std::process::{Child, ExitCode, ExitStatus};
use std::time::Duration;

use clap::Parser;
use nix::sys::signal::{SigSet, Signal};
use packet_link::{CLIENT, Loss, PacketLink, Profile, SERVER};

#[derive(Parser)]
#[command(about = "Runs a program behind a packet-level link (delay, jitter, loss), on its server side at 10.99.0.1")]
struct Args {
    /// The round trip (half each way), e.g. `100ms`.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    rtt: Duration,
    /// The most a packet waits beyond it, at random, without overtaking another.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Packets lost at random each way, in percent (0 to 100).
    #[arg(long, default_value_t = 0.0, value_parser = percent)]
    loss: f64,
    /// The program and its arguments.
    #[arg(required = true, last = true)]
    command: Vec<String>,
}

fn percent(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim_end_matches('%').parse().map_err(|_| format!("{text:?} is not a number"))?;
    if (0.0..=100.0).contains(&value) { Ok(value) } else { Err(format!("{value} is not between 0 and 100")) }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let loss = if args.loss == 0.0 { Loss::None } else { Loss::Random(args.loss / 100.0) };
    let profile = Profile { jitter: args.jitter, ..Profile::lossy(args.rtt, loss) };
    // Blocked before any thread starts, so every thread inherits the mask and the
    // signals wait for `run` (a child gets an empty mask from `Command`).
    let signals = SigSet::from_iter([Signal::SIGINT, Signal::SIGTERM, Signal::SIGCHLD]);
    if let Err(e) = signals.thread_block() {
        eprintln!("packet-link: cannot block signals: {e}");
        return ExitCode::FAILURE;
    }
    let link = match PacketLink::up(profile) {
        Ok(link) => link,
        Err(e) => {
            eprintln!("packet-link: {e}");
            return ExitCode::FAILURE;
        }
    };
    println!(
        "packet link: {} ms round trip, {} % loss; server side {SERVER}, client side {CLIENT}: nsenter --net={}",
        args.rtt.as_millis(),
        args.loss,
        link.client().path().display()
    );
    let (program, rest) = args.command.split_first().expect("clap requires a command");
    let status = link.server().spawn(program, rest.to_vec()).and_then(|child| run(child, signals));
    let (down, up) = link.counts();
    println!(
        "packet link: {} packets server → client ({} lost), {} client → server ({} lost)",
        down.packets, down.lost, up.packets, up.lost
    );
    match status {
        Ok(None) => ExitCode::SUCCESS,
        Ok(Some(status)) if status.success() => ExitCode::SUCCESS,
        Ok(Some(status)) => {
            eprintln!("packet-link: {program} ended: {status}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("packet-link: cannot run {program}: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Waits until `child` ends (its status) or this process is asked to stop (`None`: the
/// child is killed first).
fn run(mut child: Child, signals: SigSet) -> io::Result<Option<ExitStatus>> {
    loop {
        match signals.wait().map_err(io::Error::from)? {
            Signal::SIGCHLD => {
                if let Some(status) = child.try_wait()? {
                    return Ok(Some(status));
                }
            }
            _ => {
                child.kill()?;
                child.wait()?;
                return Ok(None);
            }
        }
    }
}
