//! What a link does to packets: each direction alike but for its bandwidth.

use std::time::Duration;

/// A link's settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Profile {
    /// One way: a round trip is twice this.
    pub delay: Duration,
    /// The most a packet waits beyond `delay`, at random (uniform).
    pub jitter: Duration,
    /// Whether jitter may let a packet overtake the one before (real paths seldom do).
    pub reorder: bool,
    /// Which packets are lost.
    pub loss: Loss,
    /// Bytes per second server → client (IP packets, headers included); `None` is
    /// unlimited.
    pub down_rate: Option<u64>,
    /// Bytes per second client → server.
    pub up_rate: Option<u64>,
    /// Bytes that may wait for the direction's rate before the next packet is dropped.
    pub queue_bytes: usize,
}

impl Profile {
    /// No delay, no loss, no cap: the namespaces joined as if by a wire.
    pub const CLEAR: Profile = Profile {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        reorder: false,
        loss: Loss::None,
        down_rate: None,
        up_rate: None,
        queue_bytes: 256 * 1024,
    };

    /// `rtt` round trip (half each way) with `loss`, nothing else.
    pub fn lossy(rtt: Duration, loss: Loss) -> Profile {
        Profile { delay: rtt / 2, loss, ..Profile::CLEAR }
    }
}

/// Which packets are lost.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// None.
    None,
    /// Each packet with this probability, independently.
    Random(f64),
    /// Gilbert–Elliott: in the good state nothing is lost, in the bad state each packet
    /// with `loss_when_bad`; before each packet the state changes with `to_bad` (from
    /// good) or `to_good` (from bad). The mean loss is
    /// `loss_when_bad * to_bad / (to_bad + to_good)`, in bursts of about `1 / to_good`
    /// packets.
    Bursty {
        /// Chance per packet of going from good to bad.
        to_bad: f64,
        /// Chance per packet of going from bad to good.
        to_good: f64,
        /// Chance of losing a packet in the bad state.
        loss_when_bad: f64,
    },
}

impl Loss {
    /// The long-run share of packets lost.
    pub fn mean(self) -> f64 {
        match self {
            Loss::None => 0.0,
            Loss::Random(p) => p,
            Loss::Bursty { to_bad, to_good, loss_when_bad } => loss_when_bad * to_bad / (to_bad + to_good),
        }
    }
}
