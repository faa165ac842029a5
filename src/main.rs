//! The `pushwire` binary: settings, logging, bind, serve, and a clean exit on Ctrl-C
//! or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pushwire::{AppState, Config, run};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// How long open connections get to close after a shutdown signal before we exit anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    let listener = match TcpListener::bind(config.addr).await {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("pushwire: cannot listen on {}: {error}", config.addr);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().expect("a bound listener has an address");
    let state = AppState::new(config);
    println!("pushwire is running: open http://{addr}/ (Ctrl-C to stop)");

    let shutdown = state.shutdown.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutting down");
        shutdown.cancel();
    });
    let grace = {
        let shutdown = state.shutdown.clone();
        async move {
            shutdown.cancelled().await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        }
    };
    tokio::select! {
        result = run(listener, state) => match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("pushwire: {error}");
                ExitCode::FAILURE
            }
        },
        () = grace => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; exiting anyway");
            ExitCode::SUCCESS
        }
    }
}

/// Resolves on Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        tokio::signal::ctrl_c().await.expect("install the Ctrl-C handler");
    };
    #[cfg(unix)]
    let terminate = async {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler")
            .recv()
            .await;
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        _ = terminate => {}
    }
}
