//! Where the servers this tool starts run: on loopback, or on the packet link's server
//! side (a network namespace of the run's own, at [`packet_link::SERVER`]), where the
//! load generator reaches them only across the link.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;

use packet_link::PacketLink;

/// A place for servers.
#[derive(Clone, Debug, Default)]
pub(crate) enum Host {
    #[default]
    Loopback,
    /// The packet link's server side.
    ServerSide(Arc<PacketLink>),
}

impl Host {
    /// The address servers listen on there.
    pub(crate) fn ip(&self) -> IpAddr {
        match self {
            Host::Loopback => Ipv4Addr::LOCALHOST.into(),
            Host::ServerSide(_) => packet_link::SERVER.into(),
        }
    }

    /// A free port there, for a server that cannot be told to pick one itself.
    pub(crate) fn free_port(&self) -> io::Result<SocketAddr> {
        let ip = self.ip();
        let bind = move || std::net::TcpListener::bind((ip, 0))?.local_addr();
        match self {
            Host::Loopback => bind(),
            Host::ServerSide(link) => link.server().run(bind),
        }
    }

    /// Starts `program` there as `configure` sets it up. On the server side it runs in
    /// the link's namespace, under `unshare` in a PID namespace of its own, and it and
    /// every process it starts are killed with the link, should this process die first
    /// ([`packet_link::Namespace::spawn_with`]); the child returned is `unshare`, whose
    /// descendants `/proc` sampling reads.
    pub(super) fn spawn(
        &self,
        program: impl Into<PathBuf>,
        configure: impl FnOnce(&mut Command) + Send + 'static,
    ) -> io::Result<Child> {
        match self {
            Host::Loopback => {
                let mut command = Command::new(program.into());
                configure(&mut command);
                command.spawn()
            }
            Host::ServerSide(link) => link.server().spawn_with(program, configure),
        }
    }

    /// How the run's record names the place, after a server's command.
    pub(super) fn describe(&self) -> &'static str {
        match self {
            Host::Loopback => "",
            Host::ServerSide(_) => " (in the packet link's server namespace)",
        }
    }
}
