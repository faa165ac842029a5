//! One storm client: subscribes, and whenever its connection breaks comes back on its
//! schedule from the last message it holds, noting when it broke, when it received
//! again and every message it got.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use super::Schedule;
use super::run::PUBLISH_TIMEOUT;
use crate::clients::{Endpoint, Feed, Item};
use crate::payload::now_ns;
use crate::record::Transport;
use crate::scenario::latency;
use crate::wire::Traffic;

/// Connection attempts are counted per this slice of time from the stop.
pub(crate) const SLICE: Duration = Duration::from_millis(100);
/// The slices counted: the storm's time limit and some.
pub(crate) const SLICES: usize = 1200;
/// A connection attempt slower than this failed.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// What the clients of one trial share.
pub(crate) struct Trial {
    /// The instances a client may connect to: its first attempt goes to the one its
    /// index picks, and each attempt after a break to one at random, as a load
    /// balancer spreads them (the storm has one).
    pub endpoints: Vec<Endpoint>,
    pub transport: Transport,
    pub schedule: Schedule,
    /// This trial's messages carry it.
    pub tag: u32,
    /// The id of every message the publisher got accepted, by seq; `None` where its
    /// answer was cut off. A client resumes from the id of the last message it holds.
    pub ids: Mutex<Vec<Option<String>>>,
    /// Where clients start: the id of a message published before them.
    pub primer: String,
    /// When the stop signal went, on [`now_ns`]'s clock; 0 before.
    pub stopped_at_ns: AtomicU64,
    pub attempts: Vec<AtomicU64>,
    /// Every attempt since the stop, past the last slice too.
    pub all_attempts: AtomicU64,
    pub failed_attempts: AtomicU64,
    /// Clients that have received at least once, to start.
    pub started: AtomicUsize,
    /// Clients receiving again after the stop broke their connection.
    pub back: AtomicUsize,
    /// Clients receiving now: a connection open that has brought data.
    pub receiving: AtomicUsize,
    /// Messages of this trial received, by every client: still rising while some are
    /// on their way.
    pub arrivals: AtomicU64,
    pub traffic: Arc<Traffic>,
    /// From publish to arrival, µs, of every message of this trial a client received.
    pub latency: Mutex<Histogram<u64>>,
    pub done: CancellationToken,
}

impl Trial {
    /// A trial of `transport` clients on `schedule`, resuming from `primer`, on
    /// `endpoints`; nothing measured yet.
    pub(crate) fn new(
        endpoints: Vec<Endpoint>,
        transport: Transport,
        schedule: Schedule,
        tag: u32,
        primer: String,
        traffic: Arc<Traffic>,
    ) -> Trial {
        Trial {
            endpoints,
            transport,
            schedule,
            tag,
            ids: Mutex::new(Vec::new()),
            primer,
            stopped_at_ns: AtomicU64::new(0),
            attempts: (0..SLICES).map(|_| AtomicU64::new(0)).collect(),
            all_attempts: AtomicU64::new(0),
            failed_attempts: AtomicU64::new(0),
            started: AtomicUsize::new(0),
            back: AtomicUsize::new(0),
            receiving: AtomicUsize::new(0),
            arrivals: AtomicU64::new(0),
            traffic,
            latency: Mutex::new(latency::histogram()),
            done: CancellationToken::new(),
        }
    }

    /// The slice of the storm `at_ns` falls in, if the stop has come.
    fn slice(&self, at_ns: u64) -> Option<usize> {
        let stopped = self.stopped_at_ns.load(Ordering::Relaxed);
        (stopped != 0 && at_ns >= stopped).then(|| ((at_ns - stopped) / SLICE.as_nanos() as u64) as usize)
    }
}

/// What one client saw.
#[derive(Default)]
pub(crate) struct ClientLog {
    /// When its first connection after the stop broke, and when it next received.
    pub broke_at_ns: Option<u64>,
    pub back_at_ns: Option<u64>,
    /// From each successful attempt after the stop to its first data, in ns.
    pub first_data_ns: Vec<u64>,
    /// The seqs of this trial's messages, in the order they came.
    pub seqs: Vec<u64>,
    /// Where in `seqs` each gap notice came: what lies between the messages on either
    /// side of one, the server said it no longer holds.
    pub gaps: Vec<usize>,
    /// Whether its connection was open with data on it when the trial ended (not away,
    /// reconnecting).
    pub receiving_at_end: bool,
}

/// Runs client `index` until the trial is done.
pub(crate) async fn client(trial: Arc<Trial>, index: usize) -> ClientLog {
    let mut log = ClientLog::default();
    let mut cursor = trial.primer.clone();
    let mut endpoint = &trial.endpoints[index % trial.endpoints.len()];
    // Attempts that failed since the last data: the backoff's exponent.
    let (mut failures, mut told, mut retry) = (0u32, None, Duration::ZERO);
    let mut first_data = true;
    loop {
        let mut began = now_ns();
        attempt(&trial, began);
        let connected = tokio::select! {
            () = trial.done.cancelled() => return log,
            connected = tokio::time::timeout(
                ATTEMPT_TIMEOUT,
                Feed::connect(endpoint, trial.transport, &cursor, &trial.traffic, None),
            ) => connected,
        };
        let mut received = false;
        if let Ok(Ok(mut feed)) = connected {
            let (mut items, mut resent) = (Vec::new(), 0);
            // Made once per connection: made per message, registering and dropping it
            // showed in a client's profile at 100,000 subscribers.
            let done = trial.done.cancelled();
            tokio::pin!(done);
            loop {
                let next = tokio::select! {
                    () = &mut done => {
                        log.receiving_at_end = received;
                        return log;
                    }
                    next = feed.next(&mut items) => next,
                };
                if next.is_err() {
                    break;
                }
                if feed.resent() > resent {
                    // The long-poll went again on a new connection, the old one closed
                    // before answering (as a browser resends): a break and an attempt.
                    resent = feed.resent();
                    broke(&trial, &mut log);
                    began = now_ns();
                    attempt(&trial, began);
                    if std::mem::take(&mut received) {
                        trial.receiving.fetch_sub(1, Ordering::Relaxed);
                    }
                }
                for item in items.drain(..) {
                    let data = match item {
                        Item::Message(stamp) if stamp.tag == trial.tag => {
                            log.seqs.push(stamp.seq);
                            trial.arrivals.fetch_add(1, Ordering::Relaxed);
                            let latency_us = now_ns().saturating_sub(stamp.sent_ns) / 1000;
                            trial
                                .latency
                                .lock()
                                .unwrap_or_else(|p| p.into_inner())
                                .saturating_record(latency_us.max(1));
                            true
                        }
                        Item::Gap => {
                            log.gaps.push(log.seqs.len());
                            true
                        }
                        Item::Reconnect(delay) => {
                            told = Some(delay);
                            false
                        }
                        Item::Message(_) | Item::Foreign => false,
                    };
                    if data && !received {
                        received = true;
                        failures = 0;
                        trial.receiving.fetch_add(1, Ordering::Relaxed);
                        arrived(&trial, &mut log, began, &mut first_data);
                    }
                }
            }
            if received {
                trial.receiving.fetch_sub(1, Ordering::Relaxed);
            }
            retry = feed.reconnect_delay();
        }
        if !received {
            if trial.slice(now_ns()).is_some() {
                trial.failed_attempts.fetch_add(1, Ordering::Relaxed);
            }
            failures += 1;
        }
        broke(&trial, &mut log);
        endpoint = &trial.endpoints[fastrand::usize(..trial.endpoints.len())];
        let wait = trial.schedule.wait(failures, told.take(), retry);
        tokio::select! {
            () = trial.done.cancelled() => return log,
            () = tokio::time::sleep(wait) => {}
        }
        tokio::select! {
            () = trial.done.cancelled() => return log,
            resumed = resume_cursor(&trial, &log) => cursor = resumed.unwrap_or(cursor),
        }
    }
}

/// Counts a connection attempt begun at `at_ns` in its slice of the storm.
fn attempt(trial: &Trial, at_ns: u64) {
    let Some(slice) = trial.slice(at_ns) else { return };
    trial.all_attempts.fetch_add(1, Ordering::Relaxed);
    if let Some(count) = trial.attempts.get(slice) {
        count.fetch_add(1, Ordering::Relaxed);
    }
}

/// Notes that the client's connection broke, if it is the first break since the stop.
fn broke(trial: &Trial, log: &mut ClientLog) {
    if log.broke_at_ns.is_none() && trial.slice(now_ns()).is_some() && log.back_at_ns.is_none() {
        log.broke_at_ns = Some(now_ns());
    }
}

/// Notes the first data of a connection: the client's first ever, or its first after
/// the stop broke its connection.
fn arrived(trial: &Trial, log: &mut ClientLog, began: u64, first_data: &mut bool) {
    let now = now_ns();
    if std::mem::take(first_data) {
        trial.started.fetch_add(1, Ordering::Relaxed);
    }
    if trial.slice(began).is_some() {
        log.first_data_ns.push(now - began);
    }
    if log.broke_at_ns.is_some() && log.back_at_ns.is_none() {
        log.back_at_ns = Some(now);
        trial.back.fetch_add(1, Ordering::Relaxed);
    }
}

/// The id of the last message the client holds whose id the publisher knows. A message
/// can reach a subscriber before its publish is answered: until the publisher has
/// noted the answer (or its loss) for everything the client holds, resuming from an
/// older id would fetch a message twice.
async fn resume_cursor(trial: &Trial, log: &ClientLog) -> Option<String> {
    let highest = log.seqs.iter().max().copied();
    let noted = || {
        let ids = trial.ids.lock().unwrap_or_else(|p| p.into_inner());
        highest.is_none_or(|seq| (seq as usize) < ids.len())
    };
    let waiting = Instant::now();
    while !noted() && waiting.elapsed() < PUBLISH_TIMEOUT * 2 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let ids = trial.ids.lock().unwrap_or_else(|p| p.into_inner());
    log.seqs.iter().rev().find_map(|&seq| ids.get(seq as usize)?.clone())
}

/// One client's messages checked against the publisher's ids.
pub(crate) struct Checked {
    /// How many times the client got each seq.
    pub seen: Vec<u8>,
    /// Whether a gap notice covered each seq: it lies after the highest seq the client
    /// held when told, and before the first one that came after.
    pub covered: Vec<bool>,
    /// Messages the publisher got accepted that came twice, and those that came after a
    /// later one.
    pub duplicated: u64,
    pub out_of_order: u64,
}

/// Checks `log` against `ids` (by seq; `None` where the publish answer was cut off).
pub(crate) fn check(log: &ClientLog, ids: &[Option<String>]) -> Checked {
    let mut checked =
        Checked { seen: vec![0; ids.len()], covered: vec![false; ids.len()], duplicated: 0, out_of_order: 0 };
    for &at in &log.gaps {
        let Some(&after) = log.seqs.get(at) else { continue };
        let from = log.seqs[..at].iter().max().map_or(0, |&held| held + 1);
        for seq in from..after.min(ids.len() as u64) {
            checked.covered[seq as usize] = true;
        }
    }
    let mut highest = None;
    for &seq in &log.seqs {
        let Some(count) = checked.seen.get_mut(seq as usize) else { continue };
        *count = count.saturating_add(1);
        // A publish whose answer was cut off may have got in after the next one, which
        // is then its place in the order: only accepted messages are held to it.
        let accepted = ids[seq as usize].is_some();
        if *count > 1 {
            checked.duplicated += u64::from(accepted);
            continue;
        }
        if accepted {
            checked.out_of_order += u64::from(highest.is_some_and(|h| seq < h));
            highest = highest.max(Some(seq));
        }
    }
    checked
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<Option<String>> {
        (0..n).map(|seq| Some(format!("e-{seq}"))).collect()
    }

    #[test]
    fn a_gap_notice_covers_only_what_lies_between_the_messages_on_either_side_of_it() {
        // Held 0 and 1, told of a gap, then 5 and 6: 2, 3 and 4 were covered; 7 is not.
        let log = ClientLog { seqs: vec![0, 1, 5, 6], gaps: vec![2], ..ClientLog::default() };
        let checked = check(&log, &ids(8));
        assert_eq!(checked.covered, [false, false, true, true, true, false, false, false]);
        assert_eq!(checked.seen, [1, 1, 0, 0, 0, 1, 1, 0]);
    }

    #[test]
    fn a_gap_before_the_first_message_covers_from_the_start_and_one_at_the_end_covers_nothing() {
        let log = ClientLog { seqs: vec![3, 4], gaps: vec![0, 2], ..ClientLog::default() };
        let checked = check(&log, &ids(6));
        assert_eq!(checked.covered, [true, true, true, false, false, false]);
    }

    #[test]
    fn a_message_twice_or_after_a_later_one_is_counted() {
        let log = ClientLog { seqs: vec![0, 2, 1, 2], ..ClientLog::default() };
        let checked = check(&log, &ids(3));
        assert_eq!((checked.duplicated, checked.out_of_order), (1, 1));
    }

    #[test]
    fn a_publish_without_an_answer_may_come_after_the_next_one() {
        // 1's answer was cut off: it got in after 2, which is in order on the bus.
        let mut ids = ids(4);
        ids[1] = None;
        let log = ClientLog { seqs: vec![0, 2, 1, 3], ..ClientLog::default() };
        let checked = check(&log, &ids);
        assert_eq!((checked.duplicated, checked.out_of_order), (0, 0));
    }
}
