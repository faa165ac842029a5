//! The link profiles of the network matrix, each either emulated (crate
//! `emulated-link`: bytes delayed and throttled inside the load generator, nothing
//! lost) or a packet one (crate `packet-link`: IP packets delayed, throttled and lost
//! between two network namespaces, so kernel TCP and QUIC retransmit for real).
//! `--link` says which kind a run measures; `--profiles` picks among that kind's.

use std::time::Duration;

use emulated_link::{Link, Rate};
use packet_link::Loss;

/// Which kind of link the network matrix runs over (`--link`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LinkKind {
    /// Byte streams delayed inside this process, on loopback; no loss.
    #[default]
    Emulated,
    /// Packets between two network namespaces of the run's own (needs root).
    Packet,
}

impl LinkKind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            LinkKind::Emulated => "emulated",
            LinkKind::Packet => "packet",
        }
    }
}

/// A named link, modelled on what people have.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Profile {
    pub name: &'static str,
    pub link: ProfileLink,
    /// Whether a run measures it without `--profiles`.
    pub standard: bool,
}

/// How a profile's link is made.
#[derive(Clone, Copy, Debug)]
pub(crate) enum ProfileLink {
    Emulated(Link),
    /// `twin`: the emulated profile of the same round trip that this one, losing
    /// nothing, must agree with; a packet run measures it too, over the packet link
    /// left clear, so that only the emulation differs.
    Packet {
        profile: packet_link::Profile,
        twin: Option<&'static str>,
    },
}

/// A Chrome DevTools throttling preset (devtools-frontend's `NetworkManager`), its
/// latency taken as the RTT.
struct Devtools {
    rtt: Duration,
    down_bytes_per_second: f64,
    up_bytes_per_second: f64,
}

/// "Fast 3G", now "Slow 4G": 1.6 Mibit/s × 0.9 down, 750 kibit/s × 0.9 up, 150 ms × 3.75
/// latency.
const FAST_3G: Devtools = Devtools {
    rtt: Duration::from_micros(562_500),
    down_bytes_per_second: 1.6 * 1024.0 * 1024.0 / 8.0 * 0.9,
    up_bytes_per_second: 750.0 * 1024.0 / 8.0 * 0.9,
};

/// "Slow 3G", now "3G": 500 kibit/s × 0.8 both ways, 400 ms × 5 latency.
const SLOW_3G: Devtools = Devtools {
    rtt: Duration::from_millis(2000),
    down_bytes_per_second: 500.0 * 1024.0 / 8.0 * 0.8,
    up_bytes_per_second: 500.0 * 1024.0 / 8.0 * 0.8,
};

impl Devtools {
    fn emulated(&self) -> Link {
        let rate = |bytes: f64| Rate::from_bits_per_second((bytes * 8.0).round() as u64);
        Link {
            rtt: self.rtt,
            jitter: Duration::ZERO,
            down: rate(self.down_bytes_per_second),
            up: rate(self.up_bytes_per_second),
        }
    }

    fn packet(&self, loss: Loss) -> packet_link::Profile {
        packet_link::Profile {
            down_rate: Some(self.down_bytes_per_second.round() as u64),
            up_rate: Some(self.up_bytes_per_second.round() as u64),
            ..packet_link::Profile::lossy(self.rtt, loss)
        }
    }
}

/// Gilbert–Elliott loss of 2 % on average in bursts of about 4 packets: a phone that
/// loses a few packets in a row as its radio fades, not one here and there.
const MOBILE_LOSS: Loss = Loss::Bursty { to_bad: 0.02 * 0.25 / 0.98, to_good: 0.25, loss_when_bad: 1.0 };

/// Every profile, in the order runs measure them and tables list them. Emulated: round
/// trips of 0, 20, 50, 100 and 300 ms with unlimited bandwidth, and DevTools' Fast 3G
/// and Slow 3G; `rtt-50ms` only when named, as the twin of the packet link's 50 ms.
/// Packet: 50 and 100 ms round trips with 0, 1, 2 and 5 % random loss; a lossy mobile
/// link (100 ms, jitter up to 10 ms without reordering, bursty loss); DevTools' 3G
/// presets with 1 % random loss.
pub(crate) fn profiles() -> Vec<Profile> {
    let emulated = |name, link, standard| Profile { name, link: ProfileLink::Emulated(link), standard };
    let rtt = |ms| Link::with_rtt(Duration::from_millis(ms));
    let packet = |name, profile, twin| Profile { name, link: ProfileLink::Packet { profile, twin }, standard: true };
    let lossy = |ms, percent: f64| packet_link::Profile::lossy(Duration::from_millis(ms), loss(percent));
    vec![
        emulated("loopback", Link::default(), true),
        emulated("rtt-20ms", rtt(20), true),
        emulated("rtt-50ms", rtt(50), false),
        emulated("rtt-100ms", rtt(100), true),
        emulated("rtt-300ms", rtt(300), true),
        emulated("fast-3g", FAST_3G.emulated(), true),
        emulated("slow-3g", SLOW_3G.emulated(), true),
        packet("loss-0-rtt-50ms", lossy(50, 0.0), Some("rtt-50ms")),
        packet("loss-1-rtt-50ms", lossy(50, 1.0), None),
        packet("loss-2-rtt-50ms", lossy(50, 2.0), None),
        packet("loss-5-rtt-50ms", lossy(50, 5.0), None),
        packet("loss-0-rtt-100ms", lossy(100, 0.0), Some("rtt-100ms")),
        packet("loss-1-rtt-100ms", lossy(100, 1.0), None),
        packet("loss-2-rtt-100ms", lossy(100, 2.0), None),
        packet("loss-5-rtt-100ms", lossy(100, 5.0), None),
        packet(
            "lossy-mobile",
            packet_link::Profile {
                jitter: Duration::from_millis(10),
                ..packet_link::Profile::lossy(Duration::from_millis(100), MOBILE_LOSS)
            },
            None,
        ),
        packet("fast-3g-loss-1", FAST_3G.packet(loss(1.0)), None),
        packet("slow-3g-loss-1", SLOW_3G.packet(loss(1.0)), None),
    ]
}

fn loss(percent: f64) -> Loss {
    if percent == 0.0 { Loss::None } else { Loss::Random(percent / 100.0) }
}

/// The profile called `name`.
pub(crate) fn profile(name: &str) -> Option<Profile> {
    profiles().into_iter().find(|p| p.name == name)
}

/// The profiles a run over `kind` measures: those `chosen` (`--profiles`), or the
/// standard ones; over the packet link, with the emulated twins of its profiles that
/// have one. A profile of the other kind is refused.
pub(crate) fn chosen(kind: LinkKind, chosen: &[&str]) -> Result<Vec<Profile>, String> {
    let all = profiles();
    let wanted = |p: &&Profile| chosen.is_empty() || chosen.contains(&p.name);
    let twins: Vec<&str> = match kind {
        LinkKind::Emulated => Vec::new(),
        LinkKind::Packet => all.iter().filter(wanted).filter_map(twin).collect(),
    };
    let fits = |p: &Profile| match kind {
        LinkKind::Emulated => !p.is_packet(),
        LinkKind::Packet => p.is_packet() || twins.contains(&p.name),
    };
    if let Some(name) = chosen.iter().find(|name| !all.iter().any(|p| p.name == **name && fits(p))) {
        let names: Vec<&str> = all.iter().filter(|p| fits(p)).map(|p| p.name).collect();
        return Err(format!("--profiles {name}: over the {} link, one of {}", kind.name(), names.join(", ")));
    }
    Ok(all
        .iter()
        .filter(|p| fits(p))
        .filter(|p| twins.contains(&p.name) || if chosen.is_empty() { p.standard } else { chosen.contains(&p.name) })
        .copied()
        .collect())
}

fn twin(profile: &Profile) -> Option<&'static str> {
    match profile.link {
        ProfileLink::Packet { twin, .. } => twin,
        ProfileLink::Emulated(_) => None,
    }
}

impl Profile {
    pub(crate) fn is_packet(&self) -> bool {
        matches!(self.link, ProfileLink::Packet { .. })
    }

    /// The emulated link the subscribers' connections are wrapped in: none over the
    /// packet link's own profiles.
    pub(crate) fn emulated(&self) -> Link {
        match self.link {
            ProfileLink::Emulated(link) => link,
            ProfileLink::Packet { .. } => Link::default(),
        }
    }

    /// What the packet link does meanwhile: nothing under an emulated profile.
    pub(crate) fn packet(&self) -> packet_link::Profile {
        match self.link {
            ProfileLink::Emulated(_) => packet_link::Profile::CLEAR,
            ProfileLink::Packet { profile, .. } => profile,
        }
    }

    /// The round trip without queueing or jitter.
    pub(crate) fn rtt(&self) -> Duration {
        match self.link {
            ProfileLink::Emulated(link) => link.rtt,
            ProfileLink::Packet { profile, .. } => profile.delay * 2,
        }
    }

    /// Whether the bandwidth is limited either way (the constrained-link ramp runs
    /// there).
    pub(crate) fn limited(&self) -> bool {
        match self.link {
            ProfileLink::Emulated(link) => link.down.is_some() || link.up.is_some(),
            ProfileLink::Packet { profile, .. } => profile.down_rate.is_some() || profile.up_rate.is_some(),
        }
    }

    /// The emulated profile this one must agree with, if any.
    pub(crate) fn twin(&self) -> Option<&'static str> {
        twin(self)
    }

    /// For people: `100 ms RTT, jitter up to 10 ms, bursty loss (2 % in bursts of 4
    /// packets)`.
    pub(crate) fn describe(&self) -> String {
        let profile = match self.link {
            ProfileLink::Emulated(link) if link.is_emulated() => return link.to_string(),
            ProfileLink::Emulated(_) => return "none".to_owned(),
            ProfileLink::Packet { profile, .. } => profile,
        };
        // The same words as the emulated link's, from the same fields.
        let rate = |bytes: Option<u64>| bytes.and_then(|b| Rate::from_bits_per_second(b * 8));
        let mut text =
            Link { rtt: self.rtt(), jitter: profile.jitter, down: rate(profile.down_rate), up: rate(profile.up_rate) }
                .to_string();
        match profile.loss {
            Loss::None => text.push_str(", no loss"),
            Loss::Random(share) => text.push_str(&format!(", {} % random loss", (share * 1000.0).round() / 10.0)),
            Loss::Bursty { to_good, .. } => text.push_str(&format!(
                ", bursty loss ({:.0} % in bursts of {:.0} packets)",
                profile.loss.mean() * 100.0,
                1.0 / to_good
            )),
        }
        if profile.down_rate.is_some() {
            text.push_str(&format!(", {} KiB queue", profile.queue_bytes / 1024));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packet_run_measures_the_emulated_twins_of_its_profiles() {
        let names = |profiles: Vec<Profile>| profiles.iter().map(|p| p.name).collect::<Vec<_>>();
        let packet = names(chosen(LinkKind::Packet, &[]).unwrap());
        assert!(packet.contains(&"rtt-50ms") && packet.contains(&"lossy-mobile") && !packet.contains(&"loopback"));
        assert_eq!(names(chosen(LinkKind::Packet, &["loss-2-rtt-50ms"]).unwrap()), ["loss-2-rtt-50ms"]);
        assert_eq!(names(chosen(LinkKind::Packet, &["loss-0-rtt-50ms"]).unwrap()), ["rtt-50ms", "loss-0-rtt-50ms"]);
        assert!(chosen(LinkKind::Packet, &["slow-3g"]).is_err());
    }

    #[test]
    fn the_emulated_standard_set_is_unchanged() {
        let names: Vec<_> = chosen(LinkKind::Emulated, &[]).unwrap().iter().map(|p| p.name).collect();
        assert_eq!(names, ["loopback", "rtt-20ms", "rtt-100ms", "rtt-300ms", "fast-3g", "slow-3g"]);
        assert!(chosen(LinkKind::Emulated, &["loss-1-rtt-50ms"]).is_err());
    }

    #[test]
    fn the_mobile_profile_loses_two_percent_in_bursts_of_four() {
        let mobile = profile("lossy-mobile").unwrap();
        assert!((mobile.packet().loss.mean() - 0.02).abs() < 1e-9);
        assert_eq!(mobile.describe(), "100 ms RTT, jitter up to 10 ms, bursty loss (2 % in bursts of 4 packets)");
    }
}
