//! Cursors: where a reader stands in one bus's stream.
//!
//! A cursor is the id of the last message a reader has seen. Its wire form is
//! `{epoch:016x}-{seq}`: the epoch is drawn at random when a bus starts, so a cursor
//! kept from an earlier run (or from another bus) is recognised as foreign instead of
//! being misread as a position here. The form uses only `[0-9a-f-]`, so `"m" + id` is a
//! valid HTML id and CSS selector (Tornado's client looks messages up with `$("#m" + id)`).
//!
//! [`ResumeFrom`] is what a client asks to resume from, read once at the edge (a form
//! field, `?cursor=`, `Last-Event-ID`) by every transport alike.

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

/// 16 lower-case hex digits, as in a cursor.
impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Epoch {
    type Err = MalformedCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 16 {
            return Err(MalformedCursor);
        }
        digits::<16>(s).map(Epoch)
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

impl Cursor {
    /// The cursor just before this one: where a reader resumes to receive this message next.
    pub fn before(self) -> Cursor {
        Cursor { epoch: self.epoch, seq: self.seq.saturating_sub(1) }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.epoch, self.seq)
    }
}

impl FromStr for Cursor {
    type Err = MalformedCursor;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (epoch, seq) = s.split_at_checked(16).ok_or(MalformedCursor)?;
        let seq = seq.strip_prefix('-').ok_or(MalformedCursor)?;
        Ok(Cursor { epoch: epoch.parse()?, seq: digits::<10>(seq)? })
    }
}

/// A number written in `RADIX` (10 or 16) with at least one digit and nothing else:
/// read here rather than by `u64::from_str_radix`, which also takes a sign and is
/// slower, on the path of every poll.
fn digits<const RADIX: u32>(text: &str) -> Result<u64, MalformedCursor> {
    if text.is_empty() {
        return Err(MalformedCursor);
    }
    text.bytes().try_fold(0u64, |number, byte| {
        let digit = char::from(byte).to_digit(RADIX).ok_or(MalformedCursor)?;
        number.checked_mul(RADIX.into()).and_then(|n| n.checked_add(digit.into())).ok_or(MalformedCursor)
    })
}

/// Where a subscriber asks to start: what every transport reads from its request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResumeFrom {
    /// No cursor (absent or empty): the whole retained history, then live messages.
    Start,
    /// After this message.
    Cursor(Cursor),
    /// Something that is not a cursor, or not text at all: a `malformed` gap notice,
    /// then the whole retained history.
    Malformed,
}

impl ResumeFrom {
    /// Reads a cursor as a request carries it: `None` when absent, `Err` when its bytes
    /// are not text (a `Last-Event-ID` beyond ASCII, escapes that are not UTF-8).
    pub fn parse<E>(text: Result<Option<&str>, E>) -> Self {
        match text {
            Ok(None) => ResumeFrom::Start,
            Ok(Some("")) => ResumeFrom::Start,
            Ok(Some(text)) => text.parse().map_or(ResumeFrom::Malformed, ResumeFrom::Cursor),
            Err(_) => ResumeFrom::Malformed,
        }
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
    fn epochs_round_trip_and_resume_points_are_read_once() {
        let epoch = Epoch::random();
        assert_eq!(epoch.to_string().len(), 16);
        assert_eq!(epoch.to_string().parse::<Epoch>(), Ok(epoch));
        assert_eq!("not-an-epoch".parse::<Epoch>(), Err(MalformedCursor));
        let cursor = Cursor { epoch, seq: 7 };
        let text = cursor.to_string();
        assert_eq!(ResumeFrom::parse::<()>(Ok(Some(&text))), ResumeFrom::Cursor(cursor));
        assert_eq!(ResumeFrom::parse::<()>(Ok(None)), ResumeFrom::Start);
        assert_eq!(ResumeFrom::parse::<()>(Ok(Some(""))), ResumeFrom::Start);
        assert_eq!(ResumeFrom::parse::<()>(Ok(Some("x"))), ResumeFrom::Malformed);
        assert_eq!(ResumeFrom::parse(Err(())), ResumeFrom::Malformed);
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
