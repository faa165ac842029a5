//! The context of one measurement: the server, where the publisher and the subscribers
//! connect from, and what they are behind in the network matrix.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;

use emulated_link::Link;
use packet_link::PacketLink;

use super::latency::{distribution, latency};

use crate::clients::Endpoint;
use crate::record::{Http, Kind, Latency};
use crate::servers::{ProcSample, Server, process_sample};
use crate::wire::Dialer;

/// The per-run context: the server, its address and the progress bar.
pub(crate) struct Bench<'a> {
    /// Where the publisher (and, without `subscribe_on`, the subscribers) connects.
    pub server: &'a mut Server,
    /// Scale-out: the instance the subscribers connect to, sharing `server`'s bus.
    pub subscribe_on: Option<&'a Server>,
    /// Scale-out: more server-side processes (redis-server) whose CPU counts too.
    pub also_measured: &'a [u32],
    pub progress: &'a ProgressBar,
    /// No new phase starts after this instant.
    pub deadline: Instant,
    /// Network matrix: the link every subscriber (and a round trip's publisher) is
    /// behind.
    pub link: Option<Behind<'a>>,
    /// What the publisher's and subscribers' HTTP goes over; the servers must serve it
    /// ([`Server::addr_for`]).
    pub http: Http,
}

/// What the network matrix puts between the subscribers and the server.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Behind<'a> {
    /// The link profile's name, which each outcome records.
    pub profile: &'a str,
    /// The emulated link every subscriber's connection is wrapped in (none over the
    /// packet link's own profiles).
    pub emulated: Link,
    /// The profile's round trip: the drain waits longer the longer it is.
    pub rtt: Duration,
    /// `--link packet`: the link whose client side this process's threads are on.
    pub packet_link: Option<&'a Arc<PacketLink>>,
}

impl Bench<'_> {
    /// Where the publisher connects: beside the server, as a back end publishes (on
    /// loopback, or on the packet link's server side), except for a round trip, which
    /// is a person's own message crossing their link.
    pub(crate) fn publisher_endpoint(&self, kind: Kind) -> Endpoint {
        let dialer = Dialer::new(self.addr(self.server));
        let own_message = matches!(kind, Kind::RoundTrip | Kind::RoundTripInBand);
        let dialer = match self.link {
            Some(behind) if own_message => dialer.with_link(behind.emulated),
            Some(Behind { packet_link: Some(link), .. }) => dialer.on_server_side(link.clone()),
            _ => dialer,
        };
        Endpoint::new(self.server.facts.protocol, dialer, self.http)
    }

    /// Where the subscribers connect, behind the link if there is one.
    pub(crate) fn subscriber_endpoint(&self) -> Endpoint {
        let peer = self.subscribe_on.unwrap_or(&*self.server);
        let dialer = Dialer::new(self.addr(peer));
        let dialer = self.link.map_or(dialer.clone(), |behind| dialer.with_link(behind.emulated));
        Endpoint::new(peer.facts.protocol, dialer, self.http)
    }

    /// The profile's name for the outcome's `link`.
    pub(crate) fn profile(&self) -> Option<String> {
        self.link.map(|behind| behind.profile.to_owned())
    }

    /// The figures of a histogram of microseconds: over the packet link with the CDF
    /// and the stalls its reports show.
    pub(crate) fn latency(&self, histogram: &Histogram<u64>) -> Latency {
        match self.link {
            Some(Behind { packet_link: Some(_), .. }) => distribution(histogram),
            _ => latency(histogram),
        }
    }

    /// Where `server` serves [`Bench::http`].
    fn addr(&self, server: &Server) -> SocketAddr {
        // The matrix runs a step only on servers that serve its HTTP setting; the other
        // experiments use HTTP/1.1 in cleartext, which every server serves.
        server.addr_for(self.http).expect("the server serves the bench's HTTP setting")
    }

    /// CPU and memory of every server-side process together; `None` when one of them
    /// cannot be read, so a figure never silently leaves a process out.
    pub(super) fn sample(&self) -> Option<ProcSample> {
        let mut sample = self.server.sample()?;
        if let Some(peer) = self.subscribe_on {
            sample.add(&peer.sample()?);
        }
        for &pid in self.also_measured {
            sample.add(&process_sample(pid)?);
        }
        Some(sample)
    }
}
