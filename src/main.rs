//! The `pushwire` binary: settings, logging, bind, serve, and a clean exit on Ctrl-C
//! or SIGTERM.

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use pushwire::tls::Tls;
use pushwire::{AppState, Config, Listener, run_listeners};
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// jemalloc instead of the system allocator: each idle connection costs less resident
/// memory with it. hyper allocates and frees an 8 KiB read buffer per request, which
/// leaves glibc's heap fragmented; jemalloc's size classes pack such buffers. Measured
/// in `bench/results/allocator-2026-11-27` (the idle rows of `bench/run-matrix`). It
/// runs with its background thread (cargo feature `background_threads`), which hands
/// aged free pages back to the kernel; without it jemalloc purges only as a side effect
/// of allocating, so a server left idle after a burst of connections kept the burst's
/// pages.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// How long open connections get to close after a shutdown signal before we exit anyway.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let config = Config::parse();
    // Built by hand rather than by `#[tokio::main]` for the event interval (see `Config`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .event_interval(config.event_interval)
        .build()
        .expect("start the tokio runtime");
    runtime.block_on(serve(config))
}

/// Binds, serves until Ctrl-C or SIGTERM, and exits.
async fn serve(config: Config) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .init();

    raise_open_file_limit();
    let tls = match tls(&config) {
        Ok(tls) => tls,
        Err(message) => {
            eprintln!("pushwire: {message}");
            return ExitCode::FAILURE;
        }
    };
    // `--tls` serves HTTPS on `--addr`; `--tls-addr` serves it beside plain HTTP.
    // Not over an emulated link: it delays TCP only, and WebTransport would race ahead.
    let webtransport = (config.webtransport && !config.link().is_emulated()).then_some(tls.as_ref()).flatten();
    let mut addrs = vec![(config.addr, tls.as_ref().filter(|_| config.tls))];
    if let Some(addr) = config.tls_addr {
        addrs.push((addr, tls.as_ref()));
    }
    let mut listeners = Vec::new();
    let mut urls = Vec::new();
    for (addr, tls) in addrs {
        let tcp = match TcpListener::bind(addr).await {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("pushwire: cannot listen on {addr}: {error}");
                return ExitCode::FAILURE;
            }
        };
        let addr = tcp.local_addr().expect("a bound listener has an address");
        match tls {
            Some(tls) => {
                urls.push(format!("https://{addr}/"));
                listeners.push(Listener::tls(tcp, tls.clone()));
            }
            None => {
                urls.push(format!("http://{addr}/"));
                listeners.push(Listener::plain(tcp));
            }
        }
    }
    // WebTransport on UDP at the same port number as the (first) HTTP address.
    let mut unavailable = None;
    if let (Some(tls), Some(Listener::Tcp(tcp, _))) = (webtransport, listeners.first()) {
        let udp = tcp.local_addr().expect("a bound listener has an address");
        let idle = config.ws_ping * 2;
        match pushwire::transport::webtransport::Endpoint::bind(udp, tls, idle) {
            Ok(endpoint) => {
                urls.push(format!("WebTransport on UDP {udp}"));
                listeners.push(Listener::WebTransport(endpoint));
            }
            Err(reason) => {
                eprintln!("pushwire: WebTransport unavailable ({reason}); serving the other transports");
                unavailable = Some(reason);
            }
        }
    } else if !config.webtransport || config.link().is_emulated() {
        unavailable = Some(if config.link().is_emulated() {
            "the emulated link delays TCP only, and WebTransport runs over UDP".to_owned()
        } else {
            "turned off (--webtransport off)".to_owned()
        });
    }
    let state = match config.bus.clone() {
        None => AppState::new(config),
        Some(url) => match shared_bus(&url, &config).await {
            Ok(bus) => AppState::with_bus(config, bus),
            Err(message) => {
                eprintln!("pushwire: {message}");
                return ExitCode::FAILURE;
            }
        },
    };
    if let Some(reason) = unavailable {
        let _ = state.webtransport.set(pushwire::transport::webtransport::Availability::Unavailable(reason));
    }
    let (pages, others): (Vec<_>, Vec<_>) = urls.into_iter().partition(|url| url.contains("://"));
    println!("pushwire is running: open {} (Ctrl-C to stop)", pages.join(" or "));
    for other in others {
        println!("{other}");
    }
    if let Some(tls) = tls.as_ref().filter(|_| state.config.tls || state.config.tls_addr.is_some()) {
        println!("HTTPS certificate SHA-256 {}", tls.sha256());
        if let Some(spki) = tls.spki_sha256() {
            println!(
                "self-signed: browsers will warn; Chromium trusts it with --ignore-certificate-errors-spki-list={spki}"
            );
        }
    }

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
        result = run_listeners(listeners, state) => match result {
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

/// The certificate, if HTTPS or WebTransport is served: from `--tls-cert`/`--tls-key`,
/// or one made now.
fn tls(config: &Config) -> Result<Option<Tls>, String> {
    if !config.tls && config.tls_addr.is_none() && !config.webtransport {
        return Ok(None);
    }
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Tls::from_pem(cert, key),
        _ => Tls::self_signed(),
    };
    tls.map(Some).map_err(|error| error.to_string())
}

/// Connects the bus shared with other instances through Redis (`--bus`).
#[cfg(feature = "redis")]
async fn shared_bus(url: &str, config: &Config) -> Result<pushwire::bus::Bus, String> {
    pushwire::bus::Bus::redis(url, config.history, config.max_body).await.map_err(|error| error.to_string())
}

#[cfg(not(feature = "redis"))]
async fn shared_bus(_url: &str, _config: &Config) -> Result<pushwire::bus::Bus, String> {
    Err("--bus needs a build with Redis support: cargo build --release --features redis".to_owned())
}

/// Every connection is a file descriptor, and common soft limits (1,024) are far below
/// the thousands of subscribers pushwire is built for: raise it to the hard limit.
fn raise_open_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(error) => tracing::warn!(%error, "could not raise the open-file limit"),
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
