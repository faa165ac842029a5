//! Running the storm's trials, one after another, and turning each one's client logs
//! into a [`StormOutcome`].

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::client::{Checked, ClientLog, SLICE, Trial, check, client};
use super::{Bus, PUBLISH_EVERY, Schedule, Stop, StormPlan};
use crate::clients::{Endpoint, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::progress;
use crate::record::{Http, Protocol, StormOutcome, Transport};
use crate::scale_out::redis::Redis;
use crate::servers::{Restartable, process_sample};
use crate::wire::{Dialer, Traffic};

/// How long every client gets to receive its first message, before the stop.
const START_LIMIT: Duration = Duration::from_secs(60);
/// Steady delivery before the stop.
const STEADY: Duration = Duration::from_secs(1);
/// From the stop until the trial gives up on clients not back: beyond WebTransport's
/// idle timeout (a crashed QUIC server's clients notice nothing sooner).
const STORM_LIMIT: Duration = Duration::from_secs(60);
/// After the last client is back: messages keep flowing, then the last ones settle.
const AFTER: Duration = Duration::from_secs(2);
const SETTLE: Duration = Duration::from_secs(2);
/// A publish after the stop that waits longer than this counts as failed.
pub(super) const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);

/// Runs every trial of `plan` with pushwire from `binary` (built with `--features
/// redis` when the plan has the Redis bus).
pub(crate) async fn run(
    binary: &Path,
    plan: &StormPlan,
    progress: &ProgressBar,
    deadline: Instant,
) -> Result<Vec<StormOutcome>, String> {
    let redis = if plan.buses.contains(&Bus::Redis) { Some(Redis::start().await?) } else { None };
    let mut outcomes = Vec::new();
    'trials: for &bus in &plan.buses {
        let mut args = Vec::new();
        if let (Bus::Redis, Some(redis)) = (bus, &redis) {
            args.extend(["--bus".to_owned(), format!("redis://127.0.0.1:{}", redis.port)]);
        }
        for &stop in &plan.stops {
            for &transport in &plan.transports {
                for &schedule in plan.schedules.iter().filter(|s| s.fits(transport)) {
                    if Instant::now() >= deadline {
                        progress::line(progress, "time budget spent; skipping the rest of the storm".to_owned());
                        break 'trials;
                    }
                    let setup = Setup { bus, stop, transport, schedule, subscribers: plan.subscribers };
                    progress.set_message(setup.name());
                    let outcome = trial(binary, args.clone(), setup).await;
                    progress.inc(1);
                    progress::line(progress, summary(&outcome));
                    outcomes.push(outcome);
                }
            }
        }
    }
    if let Some(redis) = redis {
        redis.stop().await;
    }
    Ok(outcomes)
}

/// The number of trials `plan` runs.
pub(crate) fn trials(plan: &StormPlan) -> usize {
    let per_transport =
        |t: Transport| plan.schedules.iter().filter(|s| s.fits(t)).count() * plan.stops.len() * plan.buses.len();
    plan.transports.iter().map(|&t| per_transport(t)).sum()
}

#[derive(Clone, Copy)]
struct Setup {
    bus: Bus,
    stop: Stop,
    transport: Transport,
    schedule: Schedule,
    subscribers: usize,
}

impl Setup {
    fn name(&self) -> String {
        format!(
            "storm: {} bus, {}, {} × {}, {}",
            self.bus.name(),
            self.stop.name(),
            self.subscribers,
            self.transport.name(),
            self.schedule.name()
        )
    }

    fn outcome(&self) -> StormOutcome {
        StormOutcome {
            bus: self.bus.name().to_owned(),
            stop: self.stop.name().to_owned(),
            transport: self.transport,
            schedule: self.schedule.name().to_owned(),
            subscribers: self.subscribers as u64,
            down_ms: 0.0,
            up_ms: 0.0,
            back_50_ms: None,
            back_99_ms: None,
            back_all_ms: None,
            never_back: 0,
            noticed_99_ms: None,
            attempts: 0,
            failed_attempts: 0,
            peak_attempts_per_s: 0,
            server_cpu_peak_cores: 0.0,
            server_cpu_s: 0.0,
            server_rss_peak_kib: 0,
            first_data_p50_ms: None,
            first_data_p99_ms: None,
            published: 0,
            uncertain: 0,
            lost: 0,
            duplicated: 0,
            out_of_order: 0,
            covered_by_gap: 0,
            gap_clients: 0,
            receiving: Vec::new(),
            note: None,
        }
    }
}

/// One trial; a trial that cannot run says why in its `note`.
async fn trial(binary: &Path, args: Vec<String>, setup: Setup) -> StormOutcome {
    let mut outcome = setup.outcome();
    let server = match Restartable::start(binary.to_owned(), args) {
        Ok(server) => server,
        Err(e) => {
            outcome.note = Some(format!("pushwire did not start: {e}"));
            return outcome;
        }
    };
    let traffic = Arc::new(Traffic::default());
    let endpoint = Endpoint::new(Protocol::Pushwire, Dialer::new(server.addr), Http::H1);
    let mut publisher = match Publisher::connect(&endpoint, &traffic).await {
        Ok(publisher) => publisher,
        Err(e) => {
            outcome.note = Some(format!("no publisher: {e}"));
            return outcome;
        }
    };
    let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
    let primer = match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
        Ok(id) => id,
        Err(e) => {
            outcome.note = Some(format!("primer not published: {e}"));
            return outcome;
        }
    };
    let trial = Arc::new(Trial::new(vec![endpoint], setup.transport, setup.schedule, tag, primer, traffic));
    let mut clients = JoinSet::new();
    for index in 0..setup.subscribers {
        clients.spawn(client(trial.clone(), index));
    }
    let publishing = CancellationToken::new();
    let restarted_seq = Arc::new(AtomicU64::new(u64::MAX));
    let publisher = tokio::spawn(publish(publisher, trial.clone(), publishing.clone(), restarted_seq.clone()));

    let started = Instant::now();
    while trial.started.load(Ordering::Relaxed) < setup.subscribers && started.elapsed() < START_LIMIT {
        tokio::time::sleep(SLICE).await;
    }
    let started = trial.started.load(Ordering::Relaxed);
    if started < setup.subscribers {
        outcome.note = Some(format!("only {started} of {} clients received before the stop", setup.subscribers));
    }
    tokio::time::sleep(STEADY).await;

    // The stop, and the start again as soon as the old process is gone.
    let stopped = Instant::now();
    trial.stopped_at_ns.store(now_ns(), Ordering::Relaxed);
    let stop = setup.stop;
    let restarted = tokio::task::spawn_blocking(move || {
        let mut server = server;
        server.stop(stop.signal())?;
        let down = stopped.elapsed();
        server.start_again()?;
        Ok::<_, std::io::Error>((server, down, stopped.elapsed()))
    });
    let watch = tokio::spawn(watch(trial.clone(), setup.subscribers));
    let server = match restarted.await.expect("the restart does not panic") {
        Ok((server, down, up)) => {
            outcome.down_ms = ms(down);
            outcome.up_ms = ms(up);
            Some(server)
        }
        Err(e) => {
            outcome.note = Some(format!("pushwire did not start again: {e}"));
            None
        }
    };
    let pid = server.as_ref().and_then(Restartable::pid);
    let sampler = tokio::spawn(sample(pid, trial.done.clone()));
    let receiving = watch.await.expect("the watch does not panic");
    tokio::time::sleep(AFTER).await;
    publishing.cancel();
    drop(publisher.await.expect("the publisher does not panic"));
    tokio::time::sleep(SETTLE).await;
    trial.done.cancel();
    let (cpu_peak, cpu_s, rss_peak) = sampler.await.expect("the sampler does not panic");
    let logs: Vec<ClientLog> = clients.join_all().await;
    drop(server);

    outcome.receiving = receiving;
    outcome.server_cpu_peak_cores = cpu_peak;
    outcome.server_cpu_s = cpu_s;
    outcome.server_rss_peak_kib = rss_peak;
    tally(&mut outcome, &trial, &logs, restarted_seq.load(Ordering::Relaxed), setup.bus);
    outcome
}

/// Publishes a message every [`PUBLISH_EVERY`] until `publishing` is cancelled; notes
/// each one's id (or `None` when its answer was cut off) and the first seq the new
/// server accepted after the stop.
async fn publish(
    mut publisher: Publisher,
    trial: Arc<Trial>,
    publishing: CancellationToken,
    restarted_seq: Arc<AtomicU64>,
) -> Publisher {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    let mut seq = 0u64;
    loop {
        tokio::select! {
            () = publishing.cancelled() => return publisher,
            _ = tick.tick() => {}
        }
        let after_stop = trial.stopped_at_ns.load(Ordering::Relaxed) != 0;
        let payload = Stamp { tag: trial.tag, seq, sent_ns: now_ns() }.payload(64);
        let id = tokio::time::timeout(PUBLISH_TIMEOUT, publisher.publish(&payload)).await.ok().and_then(Result::ok);
        if after_stop && id.is_some() {
            let _ = restarted_seq.compare_exchange(u64::MAX, seq, Ordering::Relaxed, Ordering::Relaxed);
        }
        trial.ids.lock().unwrap_or_else(|p| p.into_inner()).push(id);
        seq += 1;
    }
}

/// Counts clients back every slice from the stop until all are, or the storm's limit;
/// returns the counts.
async fn watch(trial: Arc<Trial>, subscribers: usize) -> Vec<u32> {
    let mut receiving = Vec::new();
    let mut tick = tokio::time::interval(SLICE);
    let begun = Instant::now();
    loop {
        tick.tick().await;
        let back = trial.back.load(Ordering::Relaxed);
        receiving.push(back as u32);
        if back >= subscribers || begun.elapsed() >= STORM_LIMIT {
            return receiving;
        }
    }
}

/// The new server's busiest slice (cores), CPU seconds and largest resident memory
/// (KiB) until `done`.
async fn sample(pid: Option<u32>, done: CancellationToken) -> (f64, f64, u64) {
    let Some(pid) = pid else { return (0.0, 0.0, 0) };
    let Some(first) = process_sample(pid) else { return (0.0, 0.0, 0) };
    let (mut last, mut peak, mut rss) = (first.cpu_ns, 0.0f64, first.rss_kib);
    let mut last_at = std::time::Instant::now();
    let mut tick = tokio::time::interval(SLICE);
    // A tick late on a busy machine covers more than a slice: CPU over the time it took.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = done.cancelled() => return (peak, (last - first.cpu_ns) as f64 / 1e9, rss),
            _ = tick.tick() => {}
        }
        let Some(now) = process_sample(pid) else { continue };
        let elapsed = std::mem::replace(&mut last_at, std::time::Instant::now()).elapsed();
        peak = peak.max((now.cpu_ns - last) as f64 / elapsed.as_nanos().max(1) as f64);
        rss = rss.max(now.rss_kib);
        last = now.cpu_ns;
    }
}

/// Fills in the outcome from what the clients saw.
fn tally(outcome: &mut StormOutcome, trial: &Trial, logs: &[ClientLog], restarted_seq: u64, bus: Bus) {
    let stopped = trial.stopped_at_ns.load(Ordering::Relaxed);
    let mut back: Vec<f64> =
        logs.iter().filter_map(|log| log.back_at_ns).map(|at| at.saturating_sub(stopped) as f64 / 1e6).collect();
    back.sort_by(f64::total_cmp);
    let n = logs.len();
    let at_share = |share: f64| {
        let needed = ((n as f64 * share).ceil() as usize).max(1);
        back.get(needed - 1).copied()
    };
    (outcome.back_50_ms, outcome.back_99_ms, outcome.back_all_ms) = (at_share(0.5), at_share(0.99), at_share(1.0));
    outcome.never_back = (n - back.len()) as u64;
    let mut noticed: Vec<f64> =
        logs.iter().filter_map(|log| log.broke_at_ns).map(|at| at.saturating_sub(stopped) as f64 / 1e6).collect();
    noticed.sort_by(f64::total_cmp);
    outcome.noticed_99_ms = noticed.get(((noticed.len() as f64 * 0.99).ceil() as usize).max(1) - 1).copied();
    let attempts: Vec<u64> = trial.attempts.iter().map(|a| a.load(Ordering::Relaxed)).collect();
    outcome.attempts = attempts.iter().sum();
    let per_second = (Duration::from_secs(1).as_nanos() / SLICE.as_nanos()) as usize;
    outcome.peak_attempts_per_s = attempts.windows(per_second).map(|w| w.iter().sum::<u64>()).max().unwrap_or(0);
    outcome.failed_attempts = trial.failed_attempts.load(Ordering::Relaxed);
    let mut first: Vec<f64> = logs.iter().flat_map(|log| &log.first_data_ns).map(|&ns| ns as f64 / 1e6).collect();
    first.sort_by(f64::total_cmp);
    let quantile =
        |q: f64| (!first.is_empty()).then(|| first[((first.len() as f64 * q) as usize).min(first.len() - 1)]);
    (outcome.first_data_p50_ms, outcome.first_data_p99_ms) = (quantile(0.5), quantile(0.99));

    let ids = trial.ids.lock().unwrap_or_else(|p| p.into_inner());
    outcome.published = ids.iter().filter(|id| id.is_some()).count() as u64;
    outcome.uncertain = ids.iter().filter(|id| id.is_none()).count() as u64;
    for log in logs {
        outcome.gap_clients += u64::from(!log.gaps.is_empty());
        let Checked { seen, covered, duplicated, out_of_order } = check(log, &ids);
        outcome.duplicated += duplicated;
        outcome.out_of_order += out_of_order;
        // A client never back is not expected to hold what came after its break.
        let expected_until =
            if log.back_at_ns.is_some() { ids.len() } else { restarted_seq.min(ids.len() as u64) as usize };
        for (seq, id) in ids.iter().enumerate().take(expected_until) {
            if id.is_none() || seen[seq] > 0 {
                continue;
            }
            // The in-memory bus lost its history with the process: what came before the
            // restart may be missing, where a gap notice said so.
            if bus == Bus::Memory && covered[seq] && (seq as u64) < restarted_seq {
                outcome.covered_by_gap += 1;
            } else {
                outcome.lost += 1;
            }
        }
    }
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// The line a trial prints.
fn summary(o: &StormOutcome) -> String {
    let opt = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
    format!(
        "storm {} {} {:<12} {:<11} n={}: up {:.0} ms, back 50/99/100 % {} / {} / {} ms (never {}), attempts {} \
         (failed {}, peak {}/s), cpu peak {:.2} cores, lost/dup/ooo {}/{}/{}, gap {} clients ({} covered){}",
        o.bus,
        o.stop,
        o.transport.name(),
        o.schedule,
        o.subscribers,
        o.up_ms,
        opt(o.back_50_ms),
        opt(o.back_99_ms),
        opt(o.back_all_ms),
        o.never_back,
        o.attempts,
        o.failed_attempts,
        o.peak_attempts_per_s,
        o.server_cpu_peak_cores,
        o.lost,
        o.duplicated,
        o.out_of_order,
        o.gap_clients,
        o.covered_by_gap,
        o.note.as_deref().map_or(String::new(), |n| format!(" — {n}")),
    )
}
