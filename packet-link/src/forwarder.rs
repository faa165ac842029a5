//! The forwarder: per direction, one thread reads packets from one device and decides
//! their fate (lost, dropped at a full queue, or when to leave), another writes each to
//! the other device at its time.

use std::collections::BinaryHeap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tun_rs::{InterruptEvent, SyncDevice};

use crate::profile::{Loss, Profile};

/// Which way packets go.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Direction {
    /// Server → client.
    Down,
    /// Client → server.
    Up,
}

/// What one direction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Packets that arrived at the link.
    pub packets: u64,
    /// Their bytes (IP headers included).
    pub bytes: u64,
    /// Lost by the loss model.
    pub lost: u64,
    /// Dropped because the bandwidth's queue was full.
    pub queue_drops: u64,
}

#[derive(Default)]
struct Counters {
    packets: AtomicU64,
    bytes: AtomicU64,
    lost: AtomicU64,
    queue_drops: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> Counts {
        Counts {
            packets: self.packets.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            queue_drops: self.queue_drops.load(Ordering::Relaxed),
        }
    }
}

/// The profile both directions read, their counters, and the stop flag.
pub(crate) struct Shaping {
    profile: Mutex<Profile>,
    counters: [Counters; 2],
    stopped: AtomicBool,
}

impl Shaping {
    pub(crate) fn new(profile: Profile) -> Shaping {
        Shaping { profile: Mutex::new(profile), counters: Default::default(), stopped: AtomicBool::new(false) }
    }

    pub(crate) fn profile(&self) -> Profile {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn set(&self, profile: Profile) {
        *self.profile.lock().unwrap_or_else(|p| p.into_inner()) = profile;
    }

    pub(crate) fn counts(&self) -> (Counts, Counts) {
        (self.counters[0].snapshot(), self.counters[1].snapshot())
    }

    pub(crate) fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
    }
}

/// A packet waiting for its time; the heap's top is the earliest (then the first in).
struct Waiting {
    leaves: Instant,
    order: u64,
    packet: Vec<u8>,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.leaves, self.order) == (other.leaves, other.order)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.leaves, other.order).cmp(&(self.leaves, self.order))
    }
}

/// Packets in flight in one direction, and the sender's wake-up.
struct Flight {
    waiting: Mutex<BinaryHeap<Waiting>>,
    changed: Condvar,
}

/// One direction's state as its reader decides each packet's fate.
struct Fate {
    direction: Direction,
    rng: fastrand::Rng,
    /// Gilbert–Elliott's state.
    bad: bool,
    /// When the bottleneck is free to send the next packet.
    free_at: Instant,
    /// When the last packet was set to leave (none overtakes it without `reorder`).
    last_leaves: Instant,
    order: u64,
}

impl Fate {
    /// When `bytes` leave under `profile`, or `Err(true)` if lost, `Err(false)` if the
    /// queue is full.
    fn decide(&mut self, profile: &Profile, bytes: usize, now: Instant) -> Result<Instant, bool> {
        if self.lost(profile.loss) {
            return Err(true);
        }
        let mut leaves = now;
        let rate = match self.direction {
            Direction::Down => profile.down_rate,
            Direction::Up => profile.up_rate,
        };
        if let Some(rate) = rate {
            let start = self.free_at.max(now);
            let queued = start.duration_since(now).as_secs_f64() * rate as f64;
            if queued > profile.queue_bytes as f64 {
                return Err(false);
            }
            self.free_at = start + Duration::from_secs_f64(bytes as f64 / rate as f64);
            leaves = self.free_at;
        }
        leaves += profile.delay;
        if !profile.jitter.is_zero() {
            leaves += profile.jitter.mul_f64(self.rng.f64());
        }
        if !profile.reorder {
            leaves = leaves.max(self.last_leaves);
        }
        self.last_leaves = leaves;
        Ok(leaves)
    }

    fn lost(&mut self, loss: Loss) -> bool {
        match loss {
            Loss::None => false,
            Loss::Random(p) => self.rng.f64() < p,
            Loss::Bursty { to_bad, to_good, loss_when_bad } => {
                let switch = if self.bad { to_good } else { to_bad };
                if self.rng.f64() < switch {
                    self.bad = !self.bad;
                }
                self.bad && self.rng.f64() < loss_when_bad
            }
        }
    }
}

/// Starts `direction`'s reader and sender threads.
pub(crate) fn start(
    direction: Direction,
    from: Arc<SyncDevice>,
    to: Arc<SyncDevice>,
    shaping: Arc<Shaping>,
    stop: Arc<InterruptEvent>,
) -> io::Result<[JoinHandle<()>; 2]> {
    let flight = Arc::new(Flight { waiting: Mutex::new(BinaryHeap::new()), changed: Condvar::new() });
    let index = direction as usize;
    let reader = {
        let (flight, shaping) = (flight.clone(), shaping.clone());
        // Seeded, so a run's losses can be repeated.
        let now = Instant::now();
        let mut fate = Fate {
            direction,
            rng: fastrand::Rng::with_seed(index as u64 + 1),
            bad: false,
            free_at: now,
            last_leaves: now,
            order: 0,
        };
        std::thread::Builder::new().name(format!("packet-link {direction:?} reader")).spawn(move || {
            let mut buffer = vec![0; 65_536];
            while let Ok(read) = from.recv_intr(&mut buffer, &stop) {
                let counters = &shaping.counters[index];
                counters.packets.fetch_add(1, Ordering::Relaxed);
                counters.bytes.fetch_add(read as u64, Ordering::Relaxed);
                match fate.decide(&shaping.profile(), read, Instant::now()) {
                    Err(true) => drop(counters.lost.fetch_add(1, Ordering::Relaxed)),
                    Err(false) => drop(counters.queue_drops.fetch_add(1, Ordering::Relaxed)),
                    Ok(leaves) => {
                        fate.order += 1;
                        let packet = buffer[..read].to_vec();
                        flight.waiting.lock().unwrap_or_else(|p| p.into_inner()).push(Waiting {
                            leaves,
                            order: fate.order,
                            packet,
                        });
                        flight.changed.notify_one();
                    }
                }
            }
            shaping.stop();
            flight.changed.notify_one();
        })?
    };
    let sender = std::thread::Builder::new().name(format!("packet-link {direction:?} sender")).spawn(move || {
        let mut waiting = flight.waiting.lock().unwrap_or_else(|p| p.into_inner());
        while !shaping.stopped.load(Ordering::SeqCst) {
            let now = Instant::now();
            match waiting.peek().map(|next| next.leaves) {
                Some(leaves) if leaves <= now => {
                    let Waiting { packet, .. } = waiting.pop().expect("peeked");
                    drop(waiting);
                    // A packet the device refuses is lost, as on a real path.
                    let _ = to.send(&packet);
                    waiting = flight.waiting.lock().unwrap_or_else(|p| p.into_inner());
                }
                Some(leaves) => {
                    waiting = flight.changed.wait_timeout(waiting, leaves - now).unwrap_or_else(|p| p.into_inner()).0;
                }
                None => {
                    waiting = flight
                        .changed
                        .wait_timeout(waiting, Duration::from_millis(100))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
            }
        }
    })?;
    Ok([reader, sender])
}
