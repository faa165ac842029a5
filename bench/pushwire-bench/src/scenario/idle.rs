//! Idle cost: connections held open with nothing to deliver, and what they cost the
//! server in memory and CPU.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{Bench, CONNECT_PHASE_TIMEOUT, Load, empty_outcome, failed};
use crate::clients::{Feed, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::record::{Kind, Memory, Outcome, Transport};
use crate::servers::ProcSample;
use crate::wire::Traffic;

/// Holds `subscribers` idle connections and measures what they cost the server.
pub(crate) async fn idle(bench: &mut Bench<'_>, transport: Transport, subscribers: usize, hold: Duration) -> Outcome {
    let load = Load { kind: Kind::Idle, transport, subscribers, rate: 0.0, messages: 0, payload_bytes: 64 };
    let name = bench.server.facts.name.clone();
    let mut outcome = empty_outcome(&name, &load);
    outcome.http = bench.http;
    if bench.server.restartable()
        && let Err(e) = bench.server.restart()
    {
        return failed(outcome, format!("restart before the idle measurement: {e}"));
    }
    let endpoint = bench.subscriber_endpoint();
    let traffic = Arc::new(Traffic::default());
    let cursor = match Publisher::connect(&endpoint, &traffic).await {
        Ok(mut publisher) => match publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await {
            Ok(id) => id,
            Err(e) => return failed(outcome, format!("primer not published: {e}")),
        },
        Err(e) => return failed(outcome, format!("publisher cannot connect: {e}")),
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let Some(before) = bench.server.sample() else {
        return failed(outcome, "the server's /proc entries cannot be read".into());
    };

    let stop = CancellationToken::new();
    let connected = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new((0usize, None::<String>)));
    let mut tasks = Vec::with_capacity(subscribers);
    let connect_deadline = Instant::now() + CONNECT_PHASE_TIMEOUT;
    for _ in 0..subscribers {
        let (endpoint, cursor, traffic, stop) = (endpoint.clone(), cursor.clone(), traffic.clone(), stop.clone());
        let (connected, failures) = (connected.clone(), failures.clone());
        tasks.push(tokio::spawn(async move {
            match Feed::connect(&endpoint, transport, &cursor, &traffic, None).await {
                Ok(mut feed) => {
                    connected.fetch_add(1, Ordering::SeqCst);
                    let mut items = Vec::new();
                    // Idle: nothing is published, but long-polls re-poll after their
                    // hold time and streams receive keep-alives; all of it counts.
                    while !stop.is_cancelled() {
                        tokio::select! {
                            () = stop.cancelled() => break,
                            result = feed.next(&mut items) => if result.is_err() { break },
                        }
                    }
                }
                Err(e) => {
                    let mut failures = failures.lock().unwrap_or_else(|p| p.into_inner());
                    failures.0 += 1;
                    failures.1.get_or_insert(e.to_string());
                }
            }
        }));
    }
    loop {
        let done = connected.load(Ordering::SeqCst) + failures.lock().unwrap_or_else(|p| p.into_inner()).0;
        bench.progress.set_message(format!("{name} idle {}: connecting {done}/{subscribers}", transport.name()));
        if done == subscribers || Instant::now() >= connect_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Let the server finish its per-connection setup (upgrades, subscriptions).
    tokio::time::sleep(Duration::from_millis(500) + Duration::from_micros(100) * subscribers as u32).await;
    let loaded = bench.server.sample();
    bench.progress.set_message(format!("{name} idle {}: holding {hold:?}", transport.name()));
    tokio::time::sleep(hold).await;
    let held = bench.server.sample();
    stop.cancel();
    for task in tasks {
        task.await.expect("idle connection task");
    }
    let connected = connected.load(Ordering::SeqCst);
    let (errors, first_error) = std::mem::take(&mut *failures.lock().unwrap_or_else(|p| p.into_inner()));
    outcome.connected = connected;
    outcome.connect_errors = errors as u64;
    outcome.note = first_error;
    if let (Some(loaded), Some(held)) = (loaded, held) {
        outcome.memory = Some(memory(before, loaded, held, connected, hold));
    }
    outcome
}

fn memory(before: ProcSample, loaded: ProcSample, held: ProcSample, connected: usize, hold: Duration) -> Memory {
    let per_connection = |after: u64, before: u64| (after as f64 - before as f64) * 1024.0 / connected.max(1) as f64;
    Memory {
        rss_before_kib: before.rss_kib,
        rss_after_kib: loaded.rss_kib,
        rss_per_connection_bytes: per_connection(loaded.rss_kib, before.rss_kib),
        pss_per_connection_bytes: per_connection(loaded.pss_kib, before.pss_kib),
        idle_cpu_us_per_connection_s: held.cpu_ns.saturating_sub(loaded.cpu_ns) as f64
            / 1e3
            / connected.max(1) as f64
            / hold.as_secs_f64(),
        held_s: hold.as_secs_f64(),
    }
}
