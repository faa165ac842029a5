//! The benchmark message: who sent it, in which order, and when.
//!
//! Each payload starts `pwb:<tag>:<seq>:<sent_ns>:` and is padded with `x` to the
//! size under test. The tag tells this scenario's messages from earlier scenarios'
//! (replayed from history) and from anyone else's; `seq` lets every subscriber check
//! loss, duplication and order; `sent_ns` is read from the machine's monotonic clock,
//! which the subscribers read on arrival (in this process or in a fleet worker's).
//! The alphabet (`[0-9a-z:]`) passes through form encoding, JSON and SSE unchanged.

use nix::time::{ClockId, clock_gettime};

/// The decoded header of a benchmark payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub tag: u32,
    pub seq: u64,
    pub sent_ns: u64,
}

impl Stamp {
    /// The payload for this stamp, padded with `x` to `size` bytes (or longer, if the
    /// header alone is longer).
    pub(crate) fn payload(&self, size: usize) -> String {
        let mut text = format!("pwb:{:x}:{}:{}:", self.tag, self.seq, self.sent_ns);
        let padding = size.saturating_sub(text.len());
        text.extend(std::iter::repeat_n('x', padding));
        text
    }

    /// Reads the stamp back; `None` for anything that is not a benchmark payload.
    pub(crate) fn parse(text: &str) -> Option<Stamp> {
        let mut fields = text.strip_prefix("pwb:")?.splitn(4, ':');
        let tag = u32::from_str_radix(fields.next()?, 16).ok()?;
        let seq = fields.next()?.parse().ok()?;
        let sent_ns = fields.next()?.parse().ok()?;
        fields.next()?;
        Some(Stamp { tag, seq, sent_ns })
    }
}

/// Nanoseconds on the machine's monotonic clock, which stamps and arrivals share, in
/// this process and in the fleet's worker processes alike.
pub(crate) fn now_ns() -> u64 {
    let now = clock_gettime(ClockId::CLOCK_MONOTONIC).expect("Linux has a monotonic clock");
    now.tv_sec() as u64 * 1_000_000_000 + now.tv_nsec() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_has_the_asked_size_and_reads_back() {
        let stamp = Stamp { tag: 0xbeef, seq: 42, sent_ns: 123_456_789 };
        let text = stamp.payload(1024);
        assert_eq!(text.len(), 1024);
        assert_eq!(Stamp::parse(&text), Some(stamp));
        assert!(stamp.payload(8).len() > 8, "the header is never cut");
        assert_eq!(Stamp::parse(&stamp.payload(8)), Some(stamp));
    }

    #[test]
    fn other_text_is_not_a_stamp() {
        for text in ["hello", "pwb:zz:1:2:", "pwb:1:2:3", "pwb:1:x:3:"] {
            assert_eq!(Stamp::parse(text), None, "{text}");
        }
    }
}
