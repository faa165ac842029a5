//! pushwire: one chat, pushed to browsers over HTTP long-polling, WebSocket and
//! Server-Sent Events, so the three can be compared on equal terms.
//!
//! # Layout
//! - [`bus`]: the ordered message stream with its bounded history and cursors; the
//!   only shared state. It holds messages, not wire formats.
//! - [`transport`]: one module per transport, each a thin adapter over the bus with
//!   its own encoding, plus publishing and the page; the streaming transports share
//!   the fan-out (one shard task per worker thread writes every new message, one
//!   watchdog applies the slow-consumer policy).
//! - [`config`]: every tunable and its default.
//! - [`metrics`]: the Prometheus metrics at `GET /metrics`.
//! - [`server`]: the accept loop (timeouts, `TCP_NODELAY`, HTTP/1.1 and HTTP/2,
//!   graceful shutdown); [`tls`]: HTTPS.
//! - `static/`: the browser client, compiled into the binary.
//!
//! The binary, the tests and the benchmarks all build the server with [`app`] and
//! [`run`], so they exercise the same code.

pub mod bus;
pub mod config;
pub mod metrics;
pub mod server;
pub mod tls;
pub mod transport;

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use bus::Bus;
pub use config::Config;
use metrics::Metrics;
use tls::Tls;

/// What every handler can reach: the bus, the settings and the shutdown signal. One
/// pointer to [`Shared`]: axum clones the state for every request, and a clone of the
/// fields themselves would touch a shared lock (the cancellation token's) each time.
#[derive(Clone, Debug)]
pub struct AppState(Arc<Shared>);

/// The fields of [`AppState`], reached through it (`state.bus`, `state.config`, …).
#[derive(Debug)]
pub struct Shared {
    /// The one message stream every transport reads from and publishes to.
    pub bus: Bus,
    /// The settings the server was started with.
    pub config: Config,
    /// The counters and histograms served at `GET /metrics`.
    pub metrics: Metrics,
    /// One slot per open subscription, `config.max_subscribers` in all.
    pub subscriber_slots: Arc<transport::SubscriberSlots>,
    /// How fast each client may publish (`--publish-rate`, `--publish-burst`).
    pub publish_limit: transport::PublishLimit,
    /// What hands every new message to the streaming connections (WebSocket, SSE,
    /// WebTransport); its tasks start with the first connection.
    pub(crate) fanout: transport::Fanout,
    /// Answers each held long-poll when its hold is over.
    pub(crate) held_polls: transport::long_poll::HoldSweep,
    /// Whether WebTransport is served, and where: set once its endpoint is bound (or
    /// could not be), read by the page.
    pub webtransport: std::sync::OnceLock<transport::webtransport::Availability>,
    /// The TCP ports the page is served on: a WebTransport session (on UDP) from a page
    /// on any of them is from this server's own origin.
    pub(crate) page_ports: std::sync::OnceLock<Vec<u16>>,
    /// Tasks that outlive their request (WebSocket connections, the fan-out's shards
    /// and watchdog); [`run`] waits for them before returning.
    pub tasks: TaskTracker,
    /// Cancelled at shutdown: axum's graceful shutdown does not end long-lived work by
    /// itself. Handlers (held polls, SSE streams, WebSocket tasks) wait on their own
    /// connection's end, a child of this token; the shards and the watchdog on it.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State with an in-memory bus sized by `config`.
    pub fn new(config: Config) -> Self {
        let bus = Bus::in_memory(config.history, config.max_body);
        Self::with_bus(config, bus)
    }

    /// State around a bus built elsewhere, such as one shared with other instances
    /// through Redis (`Bus::redis`, cargo feature `redis`).
    pub fn with_bus(config: Config, bus: Bus) -> Self {
        AppState(Arc::new(Shared {
            bus,
            subscriber_slots: transport::SubscriberSlots::new(config.max_subscribers),
            publish_limit: transport::PublishLimit::new(&config),
            fanout: transport::Fanout::default(),
            held_polls: transport::long_poll::HoldSweep::new(config.long_poll_hold),
            webtransport: std::sync::OnceLock::new(),
            page_ports: std::sync::OnceLock::new(),
            config,
            metrics: Metrics::default(),
            tasks: TaskTracker::new(),
            shutdown: CancellationToken::new(),
        }))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> transport::App {
    transport::App::new(state)
}

/// Serves `listener` until `state.shutdown` is cancelled, then lets open requests
/// finish: every client is told when to come back (each a time of its own), held polls
/// are answered, SSE streams end, WebSockets close with 1012.
///
/// # Examples
/// The server on an ephemeral loopback port, as the tests start it:
/// ```
/// use clap::Parser;
/// use pushwire::{AppState, Config};
///
/// # #[tokio::main]
/// # async fn main() -> std::io::Result<()> {
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let url = format!("http://{}/a/message/events", listener.local_addr()?);
/// let state = AppState::new(Config::parse_from(["pushwire"]));
/// let shutdown = state.shutdown.clone();
/// let server = tokio::spawn(pushwire::run(listener, state));
///
/// let stream = reqwest::get(&url).await.expect("the SSE endpoint answers");
/// assert_eq!(stream.headers()["content-type"], "text/event-stream");
/// shutdown.cancel(); // the stream ends, and so does `run`
/// drop(stream);
/// server.await.expect("the server task")?;
/// # Ok(())
/// # }
/// ```
pub async fn run(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    run_listeners(vec![Listener::plain(listener)], state).await
}

/// Where the server accepts connections: plain HTTP/1.1, HTTPS with HTTP/2, or
/// WebTransport over HTTP/3.
#[derive(Debug)]
pub enum Listener {
    /// TCP, with TLS if given.
    Tcp(TcpListener, Option<Tls>),
    /// UDP, for WebTransport sessions.
    WebTransport(transport::webtransport::Endpoint),
}

impl Listener {
    /// Plain HTTP/1.1.
    pub fn plain(tcp: TcpListener) -> Self {
        Listener::Tcp(tcp, None)
    }

    /// HTTPS with `tls`: HTTP/2 or HTTP/1.1, as the client's ALPN asks.
    pub fn tls(tcp: TcpListener, tls: Tls) -> Self {
        Listener::Tcp(tcp, Some(tls))
    }
}

/// [`run`] on several listeners at once, one application and one bus behind them all
/// (the same chat over HTTP/1.1 and HTTP/2 side by side).
pub async fn run_listeners(listeners: Vec<Listener>, state: AppState) -> std::io::Result<()> {
    let (shutdown, tasks) = (state.shutdown.clone(), state.tasks.clone());
    let limits = server::Limits {
        header_timeout: state.config.header_timeout,
        outbound: state.config.outbound_limit,
        link: state.config.link(),
        max_header_bytes: state.config.max_header_bytes,
        max_connections: state.config.max_connections,
        h2_max_streams: state.config.h2_max_streams,
    };
    let refused = {
        let state = state.clone();
        move |refusal: server::Refusal| state.metrics.rejected(refusal.reason())
    };
    let ports = listeners.iter().filter_map(|listener| match listener {
        Listener::Tcp(tcp, _) => tcp.local_addr().ok().map(|addr| addr.port()),
        Listener::WebTransport(_) => None,
    });
    let _ = state.page_ports.set(ports.collect());
    tasks.spawn(transport::publish_limit::sweep(state.clone()));
    let app = app(state.clone());
    let servers = listeners.into_iter().map(|listener| -> futures::future::BoxFuture<'_, std::io::Result<()>> {
        match listener {
            Listener::Tcp(tcp, tls) => {
                Box::pin(server::serve(tcp, app.clone(), limits, tls, shutdown.clone(), refused.clone()))
            }
            Listener::WebTransport(endpoint) => {
                let _ = state.webtransport.set(endpoint.availability().clone());
                let state = state.clone();
                Box::pin(async move {
                    transport::webtransport::serve(endpoint, state).await;
                    Ok(())
                })
            }
        }
    });
    let results = futures::future::join_all(servers).await;
    tasks.close();
    tasks.wait().await;
    results.into_iter().collect()
}
