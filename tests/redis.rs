//! Scale-out through Redis Streams, against a real `redis-server`: several in-process
//! instances share one conversation over every transport, resume each other's cursors
//! and survive Redis restarts and instance shutdowns.
//!
//! Each test starts its own `redis-server` on a free loopback port with its own data
//! directory, and kills it when the test ends. `scripts/test` installs the Debian
//! package when it is missing.
#![cfg(feature = "redis")]

mod common;

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use common::{Browser, TestApp, bodies, ids, spawn_app_with, within};
use pushwire::bus::{Bus, Delivery, ResumeFrom};
use pushwire::{AppState, Config};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A `redis-server` of one test: its own port and data directory.
struct RedisServer {
    port: u16,
    dir: PathBuf,
    durable: bool,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server keeping nothing on disk, as a cache-like deployment would.
    async fn start() -> Self {
        Self::start_with(false).await
    }

    /// Starts a server that writes every change to its append-only file before
    /// answering, so a restart keeps the stream.
    async fn start_durable() -> Self {
        Self::start_with(true).await
    }

    async fn start_with(durable: bool) -> Self {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("pushwire-redis-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the Redis data directory");
        let mut server = RedisServer { port, dir, durable, child: None };
        server.launch().await;
        server
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Runs `redis-server` and returns once it accepts connections (it says so on
    /// stdout), so nothing needs to poll for it.
    async fn launch(&mut self) {
        let mut command = Command::new("redis-server");
        command.args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", ""]);
        command.arg("--dir").arg(&self.dir);
        if self.durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server (scripts/test installs it)");
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        within("redis-server to accept connections", async {
            loop {
                match lines.next_line().await.expect("read redis-server's output") {
                    Some(line) if line.contains("Ready to accept connections") => break,
                    Some(_) => {}
                    None => panic!("redis-server exited while starting on port {}", self.port),
                }
            }
        })
        .await;
        // Keep draining its output so a full pipe never blocks the server.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        self.child = Some(child);
    }

    /// Kills the server abruptly (no save on the way down) and waits until it is gone.
    async fn kill(&mut self) {
        let mut child = self.child.take().expect("the server is running");
        child.start_kill().expect("kill redis-server");
        within("redis-server to exit", child.wait()).await.expect("wait for redis-server");
    }

    /// Starts the server again on the same port and data directory.
    async fn restart(&mut self) {
        self.launch().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A loopback port nothing listens on right now.
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("a bound listener has an address").port()
}

/// A pushwire instance on its own port, sharing the stream at `redis`.
async fn instance(redis: &RedisServer) -> TestApp {
    let config = Config { long_poll_hold: Duration::from_secs(5), ..Config::default() };
    let bus = Bus::redis(&redis.url(), config.history, config.max_body).await.expect("connect to the test Redis");
    spawn_app_with(AppState::with_bus(config, bus)).await
}

/// Publishes through `POST /a/message/new` and returns the raw response.
async fn try_publish(browser: &Browser, body: &str) -> reqwest::Response {
    browser.post("/a/message/new", &[("body", body), ("_xsrf", &browser.xsrf)]).await
}

/// The `seq` of each message object.
fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["seq"].as_u64().expect("seq is a number")).collect()
}

#[tokio::test]
async fn messages_posted_on_each_instance_reach_every_transport_on_every_instance_once_in_one_order() {
    let redis = RedisServer::start().await;
    let apps = [instance(&redis).await, instance(&redis).await, instance(&redis).await];
    let mut browsers = Vec::new();
    let mut sockets = Vec::new();
    let mut streams = Vec::new();
    for app in &apps {
        browsers.push(app.browser().await);
        sockets.push(app.websocket(None).await);
        streams.push(app.sse(None, None).await);
    }
    const COUNT: usize = 12;
    // Long-pollers poll as the page does, from no cursor, while the messages arrive.
    let mut pollers = Vec::new();
    let mut publishers = Vec::new();
    for app in &apps {
        let browser = app.browser().await;
        pollers.push(tokio::spawn(async move { browser.poll_messages(None, COUNT).await }));
        publishers.push(app.websocket(None).await);
    }

    let mut sent = Vec::new();
    for i in 0..COUNT {
        // Round-robin over the instances; every third message goes in-band over a WebSocket.
        let body = format!("message {i}");
        let n = i % apps.len();
        if i % 3 == 2 {
            publishers[n].publish(&body).await;
            // Wait for the echo, so the next publish is ordered after this one.
            for _ in 0..=COUNT {
                if publishers[n].next_message().await["body"] == body.as_str() {
                    break;
                }
            }
        } else {
            browsers[n].publish(&body).await;
        }
        sent.push(body);
    }

    let mut received: Vec<(String, Vec<Value>)> = Vec::new();
    for (n, socket) in sockets.iter_mut().enumerate() {
        received.push((format!("WebSocket on instance {n}"), socket.next_messages(COUNT).await));
    }
    for (n, stream) in streams.iter_mut().enumerate() {
        let messages = stream.next_messages(COUNT).await;
        received.push((format!("SSE on instance {n}"), messages));
    }
    for (n, poller) in pollers.into_iter().enumerate() {
        let messages = within("the long-pollers", poller).await.expect("a long-poller panicked");
        received.push((format!("long-poll on instance {n}"), messages));
    }

    let (_, first) = &received[0];
    let expected_ids = ids(first);
    assert_eq!(seqs(first), (1..=COUNT as u64).collect::<Vec<_>>(), "dense sequence numbers from 1");
    for (who, messages) in &received {
        assert_eq!(bodies(messages), sent, "{who}: every message once, in publish order");
        assert_eq!(ids(messages), expected_ids, "{who}: the same ids as everyone else");
        assert_eq!(messages, first, "{who}: byte-identical message objects");
    }

    // Exactly once: the next thing each streaming subscriber gets is the next message.
    let last = browsers[0].publish("sentinel").await;
    for socket in &mut sockets {
        assert_eq!(socket.next_message().await["id"], last["id"]);
    }
    for stream in &mut streams {
        assert_eq!(stream.next_message().await["id"], last["id"]);
    }
}

#[tokio::test]
async fn a_cursor_from_one_instance_resumes_on_another_on_every_transport() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let (on_a, on_b) = (a.browser().await, b.browser().await);
    let seen = on_a.publish("seen on A").await;
    let cursor = seen["id"].as_str().unwrap().to_owned();
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(on_a.publish(&format!("missed {i}")).await);
    }

    let polled = on_b.poll_messages(Some(&cursor), missed.len()).await;
    assert_eq!(ids(&polled), ids(&missed), "long-poll on B from A's cursor");

    let mut socket = b.websocket(Some(&cursor)).await;
    let mut stream = b.sse(None, Some(&cursor)).await;
    for expected in &missed {
        assert_eq!(socket.next_message().await["id"], expected["id"], "WebSocket on B from A's cursor");
        assert_eq!(stream.next_message().await["id"], expected["id"], "SSE on B from A's Last-Event-ID");
    }
}

#[tokio::test]
async fn a_cursor_just_handed_out_elsewhere_waits_for_what_follows_instead_of_a_gap() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    for round in 0..3 {
        // Cut the readers off: B's is away for its reconnection backoff (100 ms), so the
        // message A publishes now is ahead of B's ring when B gets its id as a cursor.
        disconnect_readers(&redis).await;
        let published = a.state.bus.publish(format!("round {round}")).await.expect("publish on A");
        let mut subscription = b.state.bus.subscribe_from(ResumeFrom::Cursor(published.cursor)).await;
        assert!(subscription.try_next().is_none(), "round {round}: no gap and nothing to replay");
        let next = a.state.bus.publish(format!("after round {round}")).await.expect("publish on A");
        match within("the next message on B", subscription.next()).await {
            Some(Delivery::Message(message)) => assert_eq!(message.id, next.id, "round {round}"),
            other => panic!("round {round}: expected the next message, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_cursor_older_than_the_local_history_is_completed_from_the_stream() {
    let redis = RedisServer::start().await;
    let long = Config { history: 50, ..Config::default() };
    let a = spawn_app_with(AppState::with_bus(long, Bus::redis(&redis.url(), 50, 1024).await.unwrap())).await;
    let short = Config { history: 4, ..Config::default() };
    let b = spawn_app_with(AppState::with_bus(short, Bus::redis(&redis.url(), 4, 1024).await.unwrap())).await;
    let on_a = a.browser().await;
    let mut published = Vec::new();
    for i in 0..12 {
        published.push(on_a.publish(&format!("m{i}")).await);
    }
    // B keeps 4 messages, the stream (capped by A's publishes) 50: B fills in the rest.
    let cursor = published[1]["id"].as_str().unwrap();
    let polled = b.browser().await.poll_messages(Some(cursor), 10).await;
    assert_eq!(ids(&polled), ids(&published[2..]));
}

/// Kills the connections blocked in `XREAD`: every instance's stream reader.
async fn disconnect_readers(redis: &RedisServer) {
    let client = redis::Client::open(redis.url()).expect("a Redis URL");
    let mut connection = within("a Redis connection", client.get_multiplexed_async_connection()).await.unwrap();
    let clients: String = redis::cmd("CLIENT").arg("LIST").query_async(&mut connection).await.unwrap();
    let readers: Vec<&str> = clients
        .lines()
        .filter(|line| line.contains("cmd=xread"))
        .filter_map(|line| line.split(' ').find_map(|field| field.strip_prefix("id=")))
        .collect();
    assert!(!readers.is_empty(), "no reader is blocked in XREAD: {clients}");
    for id in readers {
        let _: () = redis::cmd("CLIENT").arg("KILL").arg("ID").arg(id).query_async(&mut connection).await.unwrap();
    }
}

#[tokio::test]
async fn a_redis_restart_refuses_publishes_with_503_then_subscribers_catch_up_without_loss() {
    let mut redis = RedisServer::start_durable().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let (on_a, on_b) = (a.browser().await, b.browser().await);
    let mut socket = b.websocket(None).await;
    let mut stream = b.sse(None, None).await;
    let before = on_a.publish("before the outage").await;
    assert_eq!(socket.next_message().await["id"], before["id"]);
    assert_eq!(stream.next_message().await["id"], before["id"]);

    redis.kill().await;
    let refused = try_publish(&on_a, "during the outage").await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = within("the 503 body", refused.text()).await.unwrap();
    assert!(text.contains("unavailable"), "the 503 says why: {text}");
    let mut publisher = a.websocket(None).await;
    assert_eq!(publisher.next_message().await["id"], before["id"]);
    publisher.publish("during the outage, in-band").await;
    assert_eq!(publisher.close_frame().await.0, 1013, "WebSocket publish refused with try-again-later");

    redis.restart().await;
    let mut after = Vec::new();
    for i in 0..3 {
        after.push(on_a.publish(&format!("after the outage {i}")).await);
    }
    // B's reader was cut off too: it reconnects and brings everything after `before`.
    for expected in &after {
        assert_eq!(socket.next_message().await["id"], expected["id"], "WebSocket on B");
        assert_eq!(stream.next_message().await["id"], expected["id"], "SSE on B");
    }
    let polled = on_b.poll_messages(before["id"].as_str(), after.len()).await;
    assert_eq!(ids(&polled), ids(&after), "long-poll on B");
    assert_eq!(seqs(&polled), [2, 3, 4], "nothing refused took a sequence number");
}

#[tokio::test]
async fn redis_losing_its_data_starts_a_new_epoch_and_old_cursors_get_a_gap() {
    let mut redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let on_a = a.browser().await;
    let old = on_a.publish("before the data loss").await;
    let mut socket = b.websocket(None).await;
    assert_eq!(socket.next_message().await["id"], old["id"]);

    redis.kill().await;
    redis.restart().await; // nothing on disk: the stream and its epoch are gone
    let new = on_a.publish("after the data loss").await;
    assert_ne!(&new["id"].as_str().unwrap()[..16], &old["id"].as_str().unwrap()[..16], "a new epoch");
    assert_eq!(new["seq"], 1);

    // B's open socket belonged to the old epoch: it is closed so the client reconnects.
    assert_eq!(socket.close_frame().await.0, 1001);
    let on_b = b.browser().await;
    let answer = on_b.poll(old["id"].as_str()).await;
    assert_eq!(answer["gap"]["reason"], "unknown_epoch", "{answer}");
    let mut messages = answer["messages"].as_array().unwrap().clone();
    if messages.is_empty() {
        // The gap was ready before B's reader had re-read the new stream.
        messages = on_b.poll_messages(None, 1).await;
    }
    assert_eq!(ids(&messages), [new["id"].as_str().unwrap()], "{answer}");
}

#[tokio::test]
async fn clients_of_an_instance_that_goes_away_resume_on_another_without_loss() {
    let redis = RedisServer::start().await;
    let (a, b) = (instance(&redis).await, instance(&redis).await);
    let on_b = b.browser().await;
    let mut socket = a.websocket(None).await;
    let mut stream = a.sse(None, None).await;
    let first = on_b.publish("first").await;
    assert_eq!(socket.next_message().await["id"], first["id"]);
    let last_seen = stream.next_message().await["id"].as_str().unwrap().to_owned();

    a.shutdown().await.expect("instance A stops cleanly");
    assert_eq!(socket.reconnect_then_close().await.1, 1012, "WebSocket told the server is restarting");
    stream.reconnect_then_end().await;
    let mut missed = Vec::new();
    for i in 0..3 {
        missed.push(on_b.publish(&format!("while moving {i}")).await);
    }

    // The clients come back through the load balancer and land on B, with their cursors.
    let cursor = first["id"].as_str().unwrap();
    let mut socket = b.websocket(Some(cursor)).await;
    let mut stream = b.sse(None, Some(&last_seen)).await;
    let polled = on_b.poll_messages(Some(cursor), missed.len()).await;
    assert_eq!(ids(&polled), ids(&missed), "long-poll on B");
    for expected in &missed {
        assert_eq!(socket.next_message().await["id"], expected["id"], "WebSocket on B");
        assert_eq!(stream.next_message().await["id"], expected["id"], "SSE on B");
    }
}

#[tokio::test]
async fn starting_without_a_reachable_redis_fails_with_a_clear_error() {
    let url = format!("redis://127.0.0.1:{}", free_port());
    let error = within("the connection attempt", Bus::redis(&url, 10, 1024)).await.expect_err("nothing listens there");
    let message = error.to_string();
    assert!(message.starts_with(&format!("cannot use Redis at {url}")), "{message}");
}
