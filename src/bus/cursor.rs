//! Cursors: where a reader stands in one bus's stream.
//!
//! A cursor is the id of the last message a reader has seen. Its wire form is
//! `{epoch:016x}-{seq}`: the epoch is drawn at random when a bus starts, so a cursor
//! kept from an earlier run (or from another bus) is recognised as foreign instead of
//! being misread as a position here. The form uses only `[0-9a-f-]`, so `"m" + id` is a
//! valid HTML id and CSS selector (Tornado's client looks messages up with `$("#m" + id)`).

use std::fmt;
use std::str::FromStr;

/// Identifies one run of one bus. Random, so two runs practically never share one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh epoch for a bus starting now.
    pub fn random() -> Self {
        Self(uuid::Uuid::new_v4().as_u64_pair().0)
    }
}

/// A position in the stream of one epoch: `seq` counts messages from 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The run (or shared stream) the position belongs to.
    pub epoch: Epoch,
    /// The sequence number of the message at this position; 0 is before the first.
    pub seq: u64,
}

/// Why a cursor string could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MalformedCursor;

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.epoch.0, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = MalformedCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (epoch, seq) = s.split_once('-').ok_or(MalformedCursor)?;
        // The integer parsers check the digits themselves, but accept a leading `+`.
        if epoch.len() != 16 || epoch.starts_with('+') || seq.starts_with('+') {
            return Err(MalformedCursor);
        }
        let epoch = u64::from_str_radix(epoch, 16).map_err(|_| MalformedCursor)?;
        let seq = seq.parse().map_err(|_| MalformedCursor)?;
        Ok(Cursor { epoch: Epoch(epoch), seq })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_its_wire_form() {
        let cursor = Cursor { epoch: Epoch::random(), seq: 42 };
        let text = cursor.to_string();
        assert_eq!(text.parse::<Cursor>(), Ok(cursor));
        assert!(text.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'));
    }

    #[test]
    fn malformed_cursors_are_rejected() {
        for bad in [
            "",
            "42",
            "zz-1",
            "0123456789abcdef-",
            "0123456789abcdef-x",
            "0123456789abcdef--1",
            "0123456789abcdef-99999999999999999999999",
            "+123456789abcdef-1",
            "0123456789abcdef-+1",
            "0123456789abcdef- 1",
        ] {
            assert_eq!(bad.parse::<Cursor>(), Err(MalformedCursor), "{bad:?}");
        }
    }
}
