//! A fleet worker (`pushwire-bench --fleet-worker`): a share of the subscribers, in a
//! process of its own, run as the restart storm's clients, under the parent's orders
//! on stdin; it says how many are receiving, and at the end what they got, on stdout.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use hdrhistogram::Histogram;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::task::JoinSet;

use super::{Order, Said, WorkerReport};
use crate::clients::Endpoint;
use crate::record::{Http, Protocol};
use crate::scenario::latency;
use crate::storm::Schedule;
use crate::storm::client::{ClientLog, Trial, check, client};
use crate::wire::{Dialer, Traffic};

/// How often the worker says how many clients are receiving.
const TELL_EVERY: Duration = Duration::from_millis(200);
/// At the end, the clients get this long at most to receive what is on its way to
/// them: a message still in flight is late, not lost.
const DRAIN: Duration = Duration::from_secs(60);
/// Arrivals have stopped once none came for this long.
const QUIET: Duration = Duration::from_secs(2);
/// Loopback addresses the clients connect from (127.0.0.1 to 127.0.0.16), as the churn's.
const SOURCES: u8 = 16;

/// Runs the worker until the parent says stop (or goes away).
pub(crate) async fn work() -> Result<(), String> {
    let mut orders = BufReader::new(tokio::io::stdin()).lines();
    let first = orders.next_line().await.map_err(|e| e.to_string())?.ok_or("no orders")?;
    let Order::Start { addrs, transport, first, subscribers, primer, tag } =
        serde_json::from_str(&first).map_err(|e| format!("{first}: {e}"))?
    else {
        return Err(format!("the first order must be start: {first}"));
    };
    let endpoints = addrs
        .iter()
        .map(|&addr| Endpoint::new(Protocol::Pushwire, Dialer::new(addr).connecting_from(SOURCES), Http::H1))
        .collect();
    let trial = Arc::new(Trial::new(endpoints, transport, Schedule::Page, tag, primer, Arc::new(Traffic::default())));
    let mut clients = JoinSet::new();
    for index in first..first + subscribers {
        clients.spawn(client(trial.clone(), index));
    }
    let teller = tokio::spawn(tell(trial.clone()));
    let mut steady = None;
    while let Some(line) = orders.next_line().await.map_err(|e| e.to_string())? {
        match serde_json::from_str(&line).map_err(|e| format!("{line}: {e}"))? {
            Order::Published { seq, id } => {
                let mut ids = trial.ids.lock().unwrap_or_else(|p| p.into_inner());
                if ids.len() as u64 == seq {
                    ids.push(id);
                }
            }
            Order::Steady => {
                *trial.latency.lock().unwrap_or_else(|p| p.into_inner()) = latency::histogram();
            }
            Order::Rolling => {
                trial.stopped_at_ns.store(crate::payload::now_ns(), Ordering::Relaxed);
                let mut latency = trial.latency.lock().unwrap_or_else(|p| p.into_inner());
                steady = Some(std::mem::replace(&mut *latency, latency::histogram()));
            }
            Order::Stop => {
                drain(&trial).await;
                break;
            }
            Order::Start { .. } => return Err("started twice".into()),
        }
    }
    trial.done.cancel();
    teller.abort();
    let logs = clients.join_all().await;
    let latest = std::mem::replace(&mut *trial.latency.lock().unwrap_or_else(|p| p.into_inner()), latency::histogram());
    let (steady, rolling) = match steady {
        Some(steady) => (steady, latest),
        None => (latest, latency::histogram()),
    };
    let mut report = tally(&trial, &logs);
    (report.steady, report.rolling) = (pairs(&steady), pairs(&rolling));
    say(&Said::Report(report));
    Ok(())
}

/// Waits until no message has arrived for [`QUIET`], at most [`DRAIN`] (the publisher
/// has stopped).
async fn drain(trial: &Trial) {
    let began = tokio::time::Instant::now();
    let mut seen = trial.arrivals.load(Ordering::Relaxed);
    while began.elapsed() < DRAIN {
        tokio::time::sleep(QUIET).await;
        let now = trial.arrivals.load(Ordering::Relaxed);
        if now == seen {
            return;
        }
        seen = now;
    }
}

/// Says every [`TELL_EVERY`] how many clients have started and are receiving.
async fn tell(trial: Arc<Trial>) {
    let mut tick = tokio::time::interval(TELL_EVERY);
    loop {
        tick.tick().await;
        let started = trial.started.load(Ordering::Relaxed);
        let receiving = trial.receiving.load(Ordering::Relaxed);
        say(&Said::Clients { started, receiving });
    }
}

fn say(said: &Said) {
    println!("{}", serde_json::to_string(said).expect("serializes"));
}

/// A histogram as the `(value, count)` pairs it recorded.
fn pairs(histogram: &Histogram<u64>) -> Vec<(u64, u64)> {
    histogram.iter_recorded().map(|v| (v.value_iterated_to(), v.count_at_value())).collect()
}

/// Every accepted message checked at every client.
fn tally(trial: &Trial, logs: &[ClientLog]) -> WorkerReport {
    let ids = trial.ids.lock().unwrap_or_else(|p| p.into_inner());
    let mut report = WorkerReport {
        attempts: trial.all_attempts.load(Ordering::Relaxed),
        failed_attempts: trial.failed_attempts.load(Ordering::Relaxed),
        ..WorkerReport::default()
    };
    for log in logs {
        report.gap_clients += u64::from(!log.gaps.is_empty());
        let checked = check(log, &ids);
        report.duplicated += checked.duplicated;
        report.out_of_order += checked.out_of_order;
        // A client still away at the end would get the rest on its return: only what it
        // skipped before its last message is lost. A client receiving should hold all.
        let until = match (log.receiving_at_end, log.seqs.iter().max()) {
            (true, _) => ids.len(),
            (false, highest) => highest.map_or(0, |&seq| seq as usize + 1).min(ids.len()),
        };
        report.away += u64::from(!log.receiving_at_end);
        for ((id, seen), covered) in ids[..until].iter().zip(&checked.seen).zip(&checked.covered) {
            if id.is_some() && *seen == 0 {
                *if *covered { &mut report.covered_by_gap } else { &mut report.lost } += 1;
            }
        }
    }
    report
}
