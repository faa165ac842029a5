//! Chaos: dozens of clients spread over the three transports disconnect, reconnect
//! and switch transports at random (fixed seed) while messages are published. At the
//! end every client holds every message exactly once, in order, except where it got an
//! explicit gap notice because the history ring had truly moved past its cursor; the
//! gap's `missed` count accounts for exactly the messages it skipped.

mod common;

use std::time::Duration;

use common::{TestApp, spawn_app};
use pushwire::Config;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

const SEED: u64 = 0x7075_7368_7769_7265; // "pushwire"
const CLIENTS: u64 = 36;
const MESSAGES: u64 = 400;

/// What a client saw, in order.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Seen {
    Message(u64),
    Gap(u64),
}

/// Turns one delivery (message object or gap notice) into a [`Seen`].
fn seen(json: &Value) -> Seen {
    match json.get("seq") {
        Some(seq) => Seen::Message(seq.as_u64().expect("seq is a number")),
        None => Seen::Gap(json["missed"].as_u64().expect("an evicted cursor's gap counts what was missed")),
    }
}

/// One client: connects on a random transport from its cursor, reads a random number
/// of deliveries, vanishes, sometimes pauses (so the ring may move past it), repeats.
async fn client(app: &TestApp, genesis: String, seed: u64) -> Vec<Seen> {
    let mut rng = StdRng::seed_from_u64(seed);
    let browser = app.browser().await;
    let mut cursor = genesis;
    let mut log = Vec::new();
    let caught_up = |log: &Vec<Seen>| log.last() == Some(&Seen::Message(MESSAGES));
    // Bounded: each round reads at least one delivery and there are MESSAGES of them.
    for _ in 0..4 * MESSAGES {
        if caught_up(&log) {
            break;
        }
        let budget = rng.random_range(1..40);
        match rng.random_range(0..3) {
            0 => {
                let mut read = 0;
                while read < budget && !caught_up(&log) {
                    let answer = browser.poll(Some(&cursor)).await;
                    let deliveries =
                        answer.get("gap").into_iter().chain(answer["messages"].as_array().expect("messages"));
                    for json in deliveries {
                        if let Some(id) = json.get("id").or(json.get("cursor")).and_then(Value::as_str) {
                            cursor = id.to_owned();
                        }
                        log.push(seen(json));
                        read += 1;
                    }
                }
            }
            1 => {
                let mut socket = app.websocket(Some(&cursor)).await;
                for _ in 0..budget {
                    let json = socket.next_json().await;
                    if let Some(gap) = json.get("gap") {
                        cursor = gap["cursor"].as_str().expect("a gap names its resume cursor").to_owned();
                        log.push(seen(gap));
                    } else {
                        cursor = json["id"].as_str().unwrap().to_owned();
                        log.push(seen(&json));
                        if caught_up(&log) {
                            break;
                        }
                    }
                }
            }
            _ => {
                let mut stream = app.sse(None, Some(&cursor)).await;
                for _ in 0..budget {
                    let event = stream.next_event().await;
                    let json = event.json();
                    if event.event.as_deref() == Some("gap") {
                        // As an EventSource does: the gap's `id:` becomes Last-Event-ID.
                        cursor = event.id.clone().expect("a gap event has an id");
                        log.push(seen(&json));
                    } else {
                        cursor = json["id"].as_str().unwrap().to_owned();
                        log.push(seen(&json));
                        if caught_up(&log) {
                            break;
                        }
                    }
                }
            }
        }
        if rng.random_bool(0.2) {
            // The scenario: a client away for a while, long enough to fall behind the ring.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..250))).await;
        }
    }
    log
}

/// Checks a client's log: consecutive sequence numbers, gaps skipping exactly what
/// they say, ending at the last message.
fn check(client: u64, log: &[Seen]) {
    let mut next = 2; // seq 1 is the genesis message every client starts after
    for entry in log {
        match *entry {
            Seen::Message(seq) => {
                assert_eq!(seq, next, "client {client}: expected seq {next}, got {seq} (log {log:?})");
                next += 1;
            }
            Seen::Gap(missed) => next += missed,
        }
    }
    assert_eq!(next, MESSAGES + 1, "client {client} ended before the last message (log {log:?})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_churn_across_transports_get_everything_once_in_order_or_an_explicit_gap() {
    // A ring smaller than the conversation, so pauses can truly fall behind it.
    let app = spawn_app(Config { history: 16, ..Config::default() }).await;
    let publisher = app.browser().await;
    let genesis = publisher.publish("genesis").await["id"].as_str().unwrap().to_owned();

    let clients = (0..CLIENTS).map(|i| {
        let (app, genesis) = (&app, genesis.clone());
        async move { (i, client(app, genesis, SEED + i).await) }
    });
    let publishing = async {
        let mut rng = StdRng::seed_from_u64(SEED);
        for n in 2..=MESSAGES {
            publisher.publish(&format!("message {n}")).await;
            if rng.random_bool(0.3) {
                // Irregular pacing, so the clients' churn falls at different points of the stream.
                tokio::time::sleep(Duration::from_millis(rng.random_range(0..4))).await;
            }
        }
    };
    let (logs, ()) = common::within_long(
        "every client to reach the last message",
        futures::future::join(futures::future::join_all(clients), publishing),
    )
    .await;

    let mut gaps = 0;
    for (i, log) in &logs {
        check(*i, log);
        gaps += log.iter().filter(|e| matches!(e, Seen::Gap(_))).count();
    }
    println!("{CLIENTS} clients, {MESSAGES} messages, {gaps} explicit gaps");
}
