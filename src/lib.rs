//! pushwire: one chat, pushed to browsers over HTTP long-polling, WebSocket and
//! Server-Sent Events, so the three can be compared on equal terms.
//!
//! # Layout
//! - [`bus`]: the ordered message stream with its bounded history and cursors; the
//!   only shared state.
//! - [`transport`]: one module per transport, each a thin adapter over the bus, plus
//!   publishing and the page.
//! - [`config`]: every tunable and its default.
//! - `static/`: the browser client, compiled into the binary.
//!
//! The binary, the tests and the benchmarks all build the server with [`app`] and
//! [`run`], so they exercise the same code.

pub mod bus;
pub mod config;
pub mod transport;

use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use bus::Bus;
pub use config::Config;

/// What every handler can reach: the bus, the settings and the shutdown signal.
#[derive(Clone, Debug)]
pub struct AppState {
    pub bus: Bus,
    pub config: Arc<Config>,
    /// Cancelled at shutdown. Long-lived handlers (held polls, SSE streams, WebSocket
    /// tasks) select on it: axum's graceful shutdown does not end them by itself.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// State with an in-memory bus sized by `config`.
    pub fn new(config: Config) -> Self {
        let bus = Bus::in_memory(config.history, config.max_body);
        AppState { bus, config: Arc::new(config), shutdown: CancellationToken::new() }
    }
}

/// The whole HTTP application.
pub fn app(state: AppState) -> Router {
    transport::routes(state.config.max_body).with_state(state)
}

/// Serves `listener` until `state.shutdown` is cancelled, then lets open requests
/// finish: held polls are answered, streams and sockets close.
pub async fn run(listener: TcpListener, state: AppState) -> std::io::Result<()> {
    let shutdown = state.shutdown.clone();
    axum::serve(listener, app(state)).with_graceful_shutdown(shutdown.cancelled_owned()).await
}
