//! A network link at the packet level: two network namespaces of this process's own
//! (a server side and a client side), each with one TUN device, joined by a forwarder
//! that delays, drops and throttles every IP packet crossing between them. Kernel TCP
//! and QUIC then lose packets and retransmit for real, which `emulated-link` (bytes
//! delayed inside one process) cannot show: head-of-line blocking, and how each
//! transport lives with it.
//!
//! # The model, per direction
//! - **Delay**: each packet leaves `delay` after it came in (one way), plus a uniform
//!   random `0..=jitter`; it never overtakes the one before unless `reorder` is set.
//! - **Loss**: none, random (each packet independently), or bursty (Gilbert–Elliott: a
//!   good state that loses nothing and a bad one that loses most, with the chances of
//!   switching between them per packet).
//! - **Bandwidth**: a bottleneck that sends one packet after another at the direction's
//!   rate (`down_rate`, `up_rate`), with a queue of at most `queue_bytes` behind it; a
//!   packet that finds it full is dropped (tail drop), as a router drops.
//! - **MTU** 1,500 on both devices: the segments are the size a real path carries, not
//!   loopback's 64 KiB, so one loss costs what it costs on the Internet.
//!
//! # Nothing left behind
//! The namespaces have no name (`ip netns` does not list them): each exists while this
//! value holds its file descriptor or a process started in it runs, and each device
//! while the forwarder holds it. Processes started in a namespace get a parent-death
//! signal and run in a PID namespace of their own, so a crash or Ctrl-C of the owner
//! takes them and everything they started, the devices and the namespaces with it. A thread that joined a namespace ([`Namespace::enter`]: a
//! program that moves its own work to the client side) holds it until that thread
//! ends. Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN) and
//! `/dev/net/tun`; [`PacketLink::up`] says plainly which is missing.
//!
//! The `packet-link` program (`src/main.rs`) puts a command (the demo's server) on the
//! server side for a person to watch with a browser on the other.

mod forwarder;
mod namespace;
mod profile;

use std::io;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::thread::JoinHandle;

pub use forwarder::Counts;
pub use namespace::Namespace;
pub use profile::{Loss, Profile};

use forwarder::{Direction, Shaping};

/// The server side's address, on its TUN device.
pub const SERVER: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 1);
/// The client side's address.
pub const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 99, 0, 2);
/// Both devices' MTU: Ethernet's, as on a real path.
pub const MTU: u16 = 1500;

/// The two namespaces, their devices and the forwarder between them; all of it goes
/// when this is dropped.
pub struct PacketLink {
    server: Namespace,
    client: Namespace,
    shaping: Arc<Shaping>,
    threads: Vec<JoinHandle<()>>,
    stop: Arc<tun_rs::InterruptEvent>,
}

impl std::fmt::Debug for PacketLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacketLink").field("profile", &self.shaping.profile()).finish_non_exhaustive()
    }
}

impl PacketLink {
    /// Makes the namespaces and devices and starts forwarding with `profile`.
    pub fn up(profile: Profile) -> io::Result<PacketLink> {
        preconditions()?;
        let (server, server_device) = Namespace::create(|| device(SERVER, CLIENT))?;
        let (client, client_device) = Namespace::create(|| device(CLIENT, SERVER))?;
        let (server_device, client_device) = (Arc::new(server_device), Arc::new(client_device));
        let shaping = Arc::new(Shaping::new(profile));
        let stop = Arc::new(tun_rs::InterruptEvent::new()?);
        let mut threads = Vec::new();
        for (direction, from, to) in [
            (Direction::Down, server_device.clone(), client_device.clone()),
            (Direction::Up, client_device, server_device),
        ] {
            threads.extend(forwarder::start(direction, from, to, shaping.clone(), stop.clone())?);
        }
        Ok(PacketLink { server, client, shaping, threads, stop })
    }

    /// The server side: where servers run, at [`SERVER`].
    pub fn server(&self) -> &Namespace {
        &self.server
    }

    /// The client side: where clients run, at [`CLIENT`].
    pub fn client(&self) -> &Namespace {
        &self.client
    }

    /// Applies `profile` to packets from now on (those in flight keep their times).
    pub fn set_profile(&self, profile: Profile) {
        self.shaping.set(profile);
    }

    /// The profile in force.
    pub fn profile(&self) -> Profile {
        self.shaping.profile()
    }

    /// What the forwarder did so far: server → client, client → server.
    pub fn counts(&self) -> (Counts, Counts) {
        self.shaping.counts()
    }
}

impl Drop for PacketLink {
    fn drop(&mut self) {
        // An event that cannot be raised leaves the readers blocked until the devices
        // go with the process; nothing outlives it either way.
        let _ = self.stop.trigger();
        self.shaping.stop();
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// Root and TUN, or why not.
fn preconditions() -> io::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the packet link needs root: it makes two network namespaces and a TUN device in each",
        ));
    }
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map(drop)
        .map_err(|e| io::Error::new(e.kind(), format!("the packet link needs /dev/net/tun (TUN devices): {e}")))
}

/// A point-to-point TUN device at `address` towards `peer`, up, in the calling
/// thread's namespace, with that namespace's loopback up too. IPv4 only: IPv6 would
/// send its own router and listener chatter across the link.
fn device(address: Ipv4Addr, peer: Ipv4Addr) -> io::Result<tun_rs::SyncDevice> {
    namespace::loopback_up()?;
    for scope in ["all", "default"] {
        std::fs::write(format!("/proc/sys/net/ipv6/conf/{scope}/disable_ipv6"), "1")?;
    }
    tun_rs::DeviceBuilder::new().name("link0").ipv4(address, 32, Some(peer)).mtu(MTU).build_sync()
}
