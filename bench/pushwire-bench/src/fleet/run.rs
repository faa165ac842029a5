//! Running the fleet's steps: the instances, the workers, the publisher and the rolling
//! restart, and each step's figures as a [`FleetOutcome`].

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use indicatif::ProgressBar;
use nix::sys::signal::Signal;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::{FleetPlan, Order, PUBLISH_EVERY, Said, WorkerReport};
use crate::clients::{Endpoint, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::progress;
use crate::record::{FleetOutcome, Http, Protocol, Restart};
use crate::scale_out::redis::Redis;
use crate::scenario::latency;
use crate::servers::{Restartable, process_sample};
use crate::wire::{Dialer, Traffic};

/// How long every client gets to receive its first message.
const START_LIMIT: Duration = Duration::from_secs(300);
/// How long the clients of a restarted instance get to be receiving again.
const BACK_LIMIT: Duration = Duration::from_secs(90);
/// A publish that waits longer than this counts as failed (and the next instance is
/// tried, with the next seq: the first may have been taken).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// After the last publish, for the last deliveries to arrive.
const SETTLE: Duration = Duration::from_secs(3);

/// Runs every step of `plan` with pushwire from `binary` (built with `--features
/// redis`) and this tool's own executable as the workers.
pub(crate) async fn run(
    binary: &Path,
    plan: &FleetPlan,
    progress: &ProgressBar,
    deadline: Instant,
) -> Result<Vec<FleetOutcome>, String> {
    let redis = Redis::start().await?;
    let mut outcomes = Vec::new();
    let last = plan.instances.len().saturating_sub(1);
    for (step, &instances) in plan.instances.iter().enumerate() {
        if Instant::now() >= deadline {
            progress::line(progress, "time budget spent; skipping the rest of the fleet".to_owned());
            break;
        }
        let subscribers = plan.subscribers_on(instances);
        progress.set_message(format!("fleet: {instances} instances, {subscribers} × {}", plan.transport.name()));
        let outcome = match Step::start(binary, &redis, plan, instances, subscribers).await {
            Ok(step_run) => step_run.measure(plan.steady, step == last).await,
            Err(note) => FleetOutcome::failed(instances, subscribers, plan.transport, note),
        };
        progress.inc(1);
        progress::line(progress, outcome.summary());
        outcomes.push(outcome);
    }
    redis.stop().await;
    Ok(outcomes)
}

/// One step under way: its instances, workers and publisher.
struct Step {
    outcome: FleetOutcome,
    servers: Vec<Restartable>,
    workers: Vec<Worker>,
    publishers: Vec<Publisher>,
    /// The instances' resident memory before any client came, KiB.
    fresh_rss_kib: Vec<u64>,
    redis_pid: Option<u32>,
    tag: u32,
    /// The next message's seq.
    seq: u64,
    /// The publisher's pace.
    tick: tokio::time::Interval,
}

/// A worker process and the latest it said.
struct Worker {
    child: Child,
    orders: ChildStdin,
    subscribers: usize,
    said: Arc<Mutex<Heard>>,
}

#[derive(Default)]
struct Heard {
    started: usize,
    receiving: usize,
    report: Option<WorkerReport>,
}

impl Step {
    async fn start(
        binary: &Path,
        redis: &Redis,
        plan: &FleetPlan,
        instances: usize,
        subscribers: usize,
    ) -> Result<Step, String> {
        let mut outcome = FleetOutcome::failed(instances, subscribers, plan.transport, String::new());
        outcome.note = None;
        let bus = format!("redis://127.0.0.1:{}", redis.port);
        let servers = (0..instances)
            .map(|_| Restartable::start(binary.to_owned(), vec!["--bus".into(), bus.clone()]))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("pushwire did not start: {e}"))?;
        let fresh_rss_kib = servers.iter().map(|s| s.pid().and_then(process_sample).map_or(0, |p| p.rss_kib)).collect();
        let traffic = Arc::new(Traffic::default());
        let mut publishers = Vec::new();
        for server in &servers {
            let endpoint = Endpoint::new(Protocol::Pushwire, Dialer::new(server.addr), Http::H1);
            publishers.push(Publisher::connect(&endpoint, &traffic).await.map_err(|e| format!("no publisher: {e}"))?);
        }
        let primer = publishers[0]
            .publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64))
            .await
            .map_err(|e| format!("primer not published: {e}"))?;
        let tag = uuid::Uuid::new_v4().as_u128() as u32 | 1;
        let addrs: Vec<_> = servers.iter().map(|s| s.addr).collect();
        let mut workers = Vec::new();
        for first in (0..subscribers).step_by(plan.per_worker.max(1)) {
            let share = plan.per_worker.min(subscribers - first);
            let order = Order::Start {
                addrs: addrs.clone(),
                transport: plan.transport,
                first,
                subscribers: share,
                primer: primer.clone(),
                tag,
            };
            workers.push(Worker::spawn(&order, share).await?);
        }
        let tick = tokio::time::interval(PUBLISH_EVERY);
        Ok(Step { outcome, servers, workers, publishers, fresh_rss_kib, redis_pid: redis.pid(), tag, seq: 0, tick })
    }

    /// Waits for every client, measures the steady fan-out, and on the last step the
    /// rolling restart; then checks every message at every client.
    async fn measure(mut self, steady: Duration, rolling: bool) -> FleetOutcome {
        // A client has started once it has a message: the publisher goes on meanwhile.
        let began = Instant::now();
        let total = self.outcome.subscribers;
        while self.started().await < total && began.elapsed() < START_LIMIT {
            self.publish(1).await;
        }
        self.outcome.connected = self.started().await as u64;
        self.outcome.connect_s = began.elapsed().as_secs_f64();
        if (self.outcome.connected as usize) < total {
            self.outcome.note = Some(format!("only {} of {total} clients received", self.outcome.connected));
        }

        // Steady fan-out: each process's CPU over the window, the messages in it.
        self.tell_all(&Order::Steady).await;
        let pids = self.pids();
        let before: Vec<_> = pids.iter().map(|&pid| pid.and_then(process_sample)).collect();
        let published_before = self.seq;
        let window = Instant::now();
        self.publish((steady.as_secs_f64() / PUBLISH_EVERY.as_secs_f64()).ceil() as u64).await;
        let seconds = window.elapsed().as_secs_f64();
        let after: Vec<_> = pids.iter().map(|&pid| pid.and_then(process_sample)).collect();
        let cores = |i: usize| match (&before[i], &after[i]) {
            (Some(b), Some(a)) => a.cpu_ns.saturating_sub(b.cpu_ns) as f64 / 1e9 / seconds,
            _ => 0.0,
        };
        let instances = self.servers.len();
        self.outcome.instance_cores = (0..instances).map(cores).collect();
        self.outcome.redis_cores = cores(instances);
        self.outcome.load_cores = (instances + 1..pids.len()).map(cores).sum();
        let deliveries = (self.seq - published_before) as f64 * total as f64;
        let instance_cpu_s: f64 = self.outcome.instance_cores.iter().sum::<f64>() * seconds;
        self.outcome.cpu_us_per_delivery = (deliveries > 0.0).then(|| instance_cpu_s * 1e6 / deliveries);
        let rss: Vec<u64> = after.iter().take(instances).map(|s| s.as_ref().map_or(0, |s| s.rss_kib)).collect();
        let grown: u64 = rss.iter().zip(&self.fresh_rss_kib).map(|(now, fresh)| now.saturating_sub(*fresh)).sum();
        self.outcome.rss_per_connection_bytes = (total > 0).then(|| grown as f64 * 1024.0 / total as f64);

        if rolling {
            self.roll().await;
        }
        tokio::time::sleep(SETTLE).await;
        self.finish().await
    }

    /// Restarts the instances one by one, each once every client is receiving again,
    /// while the publisher goes on.
    async fn roll(&mut self) {
        self.tell_all(&Order::Rolling).await;
        let mut publisher = PublishLoop {
            publishers: std::mem::take(&mut self.publishers),
            seq: self.seq,
            tag: self.tag,
            uncertain: 0,
        };
        let publishing = CancellationToken::new();
        let (ids, mut heard) = mpsc::unbounded_channel();
        let said: Vec<_> = self.workers.iter().map(|w| w.said.clone()).collect();
        let total = self.outcome.subscribers;
        let (servers, restarts) = (&mut self.servers, &mut self.outcome.rolling);
        let mut orders: Vec<_> = self.workers.iter_mut().map(|w| &mut w.orders).collect();
        // The workers hear every id as it comes.
        let forward = async {
            while let Some(order) = heard.recv().await {
                for stdin in orders.iter_mut() {
                    let _ = write_order(stdin, &order).await;
                }
            }
        };
        let restarting = async {
            for (index, server) in servers.iter_mut().enumerate() {
                restarts.push(restart(index, server, &said, total).await);
            }
            publishing.cancel();
        };
        let publish = async {
            publisher.until(publishing.clone(), ids).await;
        };
        tokio::join!(forward, restarting, publish);
        self.seq = publisher.seq;
        self.outcome.uncertain += publisher.uncertain;
        self.publishers = publisher.publishers;
    }

    /// Publishes `count` messages on the step's [`PUBLISH_EVERY`] ticks, telling the
    /// workers each id.
    async fn publish(&mut self, count: u64) {
        let mut publisher = PublishLoop {
            publishers: std::mem::take(&mut self.publishers),
            seq: self.seq,
            tag: self.tag,
            uncertain: 0,
        };
        for _ in 0..count {
            self.tick.tick().await;
            for order in publisher.publish().await {
                self.tell_all(&order).await;
            }
        }
        self.seq = publisher.seq;
        self.outcome.uncertain += publisher.uncertain;
        self.publishers = publisher.publishers;
    }

    async fn tell_all(&mut self, order: &Order) {
        for worker in &mut self.workers {
            let _ = write_order(&mut worker.orders, order).await;
        }
    }

    /// Clients that have received, over all workers.
    async fn started(&self) -> usize {
        let mut started = 0;
        for worker in &self.workers {
            started += worker.said.lock().await.started;
        }
        started
    }

    /// The instances', redis-server's and the workers' process ids, in that order.
    fn pids(&self) -> Vec<Option<u32>> {
        let mut pids: Vec<Option<u32>> = self.servers.iter().map(Restartable::pid).collect();
        pids.push(self.redis_pid);
        pids.extend(self.workers.iter().map(|w| w.child.id()));
        pids
    }

    /// Stops the workers and adds up what they report.
    async fn finish(mut self) -> FleetOutcome {
        self.tell_all(&Order::Stop).await;
        let (mut steady, mut rolling) = (latency::histogram(), latency::histogram());
        let mut outcome = self.outcome;
        outcome.published = self.seq;
        for worker in self.workers {
            let Worker { mut child, said, subscribers, orders } = worker;
            drop(orders);
            // A worker first lets what is on its way arrive (up to a minute).
            let _ = tokio::time::timeout(Duration::from_secs(150), child.wait()).await;
            let Some(report) = said.lock().await.report.take() else {
                outcome.note = Some(format!("a worker of {subscribers} clients did not report"));
                continue;
            };
            add(&mut steady, &report.steady);
            add(&mut rolling, &report.rolling);
            outcome.lost += report.lost;
            outcome.duplicated += report.duplicated;
            outcome.out_of_order += report.out_of_order;
            outcome.gap_clients += report.gap_clients;
            outcome.covered_by_gap += report.covered_by_gap;
            outcome.away += report.away;
            outcome.attempts += report.attempts;
            outcome.failed_attempts += report.failed_attempts;
        }
        outcome.latency_us = latency::latency(&steady);
        outcome.rolling_latency_us = (!rolling.is_empty()).then(|| latency::latency(&rolling));
        outcome
    }
}

impl Worker {
    /// Starts a worker (this executable with `--fleet-worker`) with its first order.
    async fn spawn(order: &Order, subscribers: usize) -> Result<Worker, String> {
        let exe = std::env::current_exe().map_err(|e| e.to_string())?;
        let mut child = Command::new(exe)
            .arg("--fleet-worker")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start a worker: {e}"))?;
        let mut orders = child.stdin.take().expect("stdin is piped");
        write_order(&mut orders, order).await.map_err(|e| format!("cannot brief a worker: {e}"))?;
        let said = Arc::new(Mutex::new(Heard::default()));
        let mut lines = BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let heard = said.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                let mut heard = heard.lock().await;
                match serde_json::from_str(&line) {
                    Ok(Said::Clients { started, receiving }) => (heard.started, heard.receiving) = (started, receiving),
                    Ok(Said::Report(report)) => heard.report = Some(report),
                    Err(_) => {}
                }
            }
        });
        Ok(Worker { child, orders, subscribers, said })
    }
}

async fn write_order(stdin: &mut ChildStdin, order: &Order) -> std::io::Result<()> {
    let mut line = serde_json::to_string(order).expect("serializes");
    line.push('\n');
    stdin.write_all(line.as_bytes()).await
}

/// The publisher of a step: a connection to every instance, tried in turn.
struct PublishLoop {
    publishers: Vec<Publisher>,
    seq: u64,
    tag: u32,
    /// Publishes whose answer did not come within [`PUBLISH_TIMEOUT`].
    uncertain: u64,
}

impl PublishLoop {
    /// Publishes the next message on the instance its seq picks, or on the next ones
    /// if that fails (each attempt with a seq of its own: a failed one may have got in);
    /// the orders that tell the workers what was accepted.
    async fn publish(&mut self) -> Vec<Order> {
        let mut orders = Vec::new();
        for attempt in 0..self.publishers.len() {
            let seq = self.seq;
            self.seq += 1;
            let index = (seq as usize + attempt) % self.publishers.len();
            let payload = Stamp { tag: self.tag, seq, sent_ns: now_ns() }.payload(64);
            let published = tokio::time::timeout(PUBLISH_TIMEOUT, self.publishers[index].publish(&payload)).await;
            let id = published.ok().and_then(Result::ok);
            let accepted = id.is_some();
            self.uncertain += u64::from(!accepted);
            orders.push(Order::Published { seq, id });
            if accepted {
                break;
            }
        }
        orders
    }

    /// Publishes every [`PUBLISH_EVERY`] until `stop`, sending each order to `ids`.
    async fn until(&mut self, stop: CancellationToken, ids: mpsc::UnboundedSender<Order>) {
        let mut tick = tokio::time::interval(PUBLISH_EVERY);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            for order in self.publish().await {
                let _ = ids.send(order);
            }
        }
    }
}

/// Restarts instance `index` gracefully and waits until all `total` clients are
/// receiving again.
async fn restart(index: usize, server: &mut Restartable, said: &[Arc<Mutex<Heard>>], total: usize) -> Restart {
    let stopped = Instant::now();
    // Blocking (it waits for the old process to drain and the new one to listen), but
    // the other tasks go on on the runtime's other threads.
    let restarted = tokio::task::block_in_place(|| server.stop(Signal::SIGTERM).and_then(|()| server.start_again()));
    let mut restart = Restart {
        instance: index,
        up_ms: stopped.elapsed().as_secs_f64() * 1000.0,
        back_all_ms: None,
        back_99_ms: None,
        receiving: Vec::new(),
        note: None,
    };
    if let Err(e) = restarted {
        restart.note = Some(format!("did not start again: {e}"));
        return restart;
    }
    let mut dipped = false;
    while stopped.elapsed() < BACK_LIMIT {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at_ms = stopped.elapsed().as_millis() as u64;
        let mut receiving = 0;
        for heard in said {
            receiving += heard.lock().await.receiving;
        }
        restart.receiving.push((at_ms, receiving as u32));
        let at_ms = at_ms as f64;
        dipped |= receiving < total;
        // Once the instance's clients have left and they are receiving again.
        if dipped && restart.back_99_ms.is_none() && receiving * 100 >= total * 99 {
            restart.back_99_ms = Some(at_ms);
        }
        if dipped && receiving >= total {
            restart.back_all_ms = Some(at_ms);
            break;
        }
    }
    restart
}

/// Records `(value, count)` pairs into `histogram`.
fn add(histogram: &mut Histogram<u64>, pairs: &[(u64, u64)]) {
    for &(value, count) in pairs {
        histogram.saturating_record_n(value, count);
    }
}
