//! Running the churn check: raw-HTTP clients that connect and go away in the three
//! ways, and the server's gauge and memory read around them. TCP transports only:
//! WebTransport's sessions (QUIC) going away are tested by the server's own tests.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;

use crate::clients::{Endpoint, Publisher};
use crate::payload::{Stamp, now_ns};
use crate::record::{ChurnOutcome, Http, Transport};
use crate::servers::{Server, metrics};
use crate::wire::{Dialer, Traffic};

/// Loopback source addresses the clients are spread over (127.0.0.1 to 127.0.0.16).
const SOURCES: u8 = 16;
/// Connections in flight at once.
const CONCURRENCY: usize = 128;
/// How long one client may take for its whole life before it counts as failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the gauge gets to return to 0 before the run says it did not.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// After the churn, memory is read again this much later (jemalloc returns freed pages
/// to the system after about 10 s).
const MEMORY_SETTLE: Duration = Duration::from_secs(12);
/// The XSRF token of the long-poll form, as cookie and field (double submit).
const XSRF: &str = "5e11c0de5e11c0de5e11c0de5e11c0de";

/// How a client goes away.
#[derive(Clone, Copy)]
enum Ending {
    Clean,
    Reset,
    MidRequest,
}

/// Churns `connections` subscribers per transport through `server`.
pub(crate) async fn run(server: &Server, transports: &[Transport], connections: u64) -> Vec<ChurnOutcome> {
    let mut outcomes = Vec::new();
    for &transport in transports.iter().filter(|transport| !transport.quic()) {
        outcomes.push(churn(server, transport, connections).await);
    }
    outcomes
}

async fn churn(server: &Server, transport: Transport, connections: u64) -> ChurnOutcome {
    let addr = server.addr;
    // A held long-poll needs a cursor with nothing after it: the newest message.
    let endpoint = Endpoint::new(server.facts.protocol, Dialer::new(addr), Http::H1);
    let cursor = match Publisher::connect(&endpoint, &Arc::new(Traffic::default())).await {
        Ok(mut publisher) => publisher.publish(&Stamp { tag: 0, seq: 0, sent_ns: now_ns() }.payload(64)).await.ok(),
        Err(_) => None,
    }
    .unwrap_or_default();
    let rss_fresh_kib = server.sample().map_or(0, |s| s.rss_kib);
    let warm_up = (connections / 100).max(1000).min(connections);
    clients(addr, transport, &cursor, warm_up).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before_kib = server.sample().map_or(0, |s| s.rss_kib);
    let started = Instant::now();
    let counts = clients(addr, transport, &cursor, connections).await;
    let duration_s = started.elapsed().as_secs_f64();
    let ended = Instant::now();
    let mut settled_ms = None;
    while ended.elapsed() < SETTLE_LIMIT {
        if subscribers(addr, transport).await == Some(0.0) {
            settled_ms = Some(ended.elapsed().as_secs_f64() * 1000.0);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let rss_after_kib = server.sample().map_or(0, |s| s.rss_kib);
    tokio::time::sleep(MEMORY_SETTLE).await;
    let rss_settled_kib = server.sample().map_or(0, |s| s.rss_kib);
    let count = |i: usize| counts[i].load(Ordering::Relaxed);
    ChurnOutcome {
        transport,
        connections,
        clean_closes: count(0),
        resets: count(1),
        mid_request_drops: count(2),
        errors: count(3),
        duration_s,
        settled_ms,
        rss_fresh_kib,
        rss_before_kib,
        rss_after_kib,
        rss_settled_kib,
    }
}

/// Runs `connections` clients, [`CONCURRENCY`] at a time, the endings in turn; returns
/// how many ended cleanly, by reset, half way through the head, and in error.
async fn clients(addr: SocketAddr, transport: Transport, cursor: &str, connections: u64) -> Arc<[AtomicU64; 4]> {
    let counts: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
    let permits = Arc::new(Semaphore::new(CONCURRENCY));
    let mut tasks = Vec::with_capacity(CONCURRENCY);
    for n in 0..connections {
        let permit = permits.clone().acquire_owned().await.expect("the semaphore is never closed");
        let (counts, cursor) = (counts.clone(), cursor.to_owned());
        let ending = [Ending::Clean, Ending::Reset, Ending::MidRequest][(n % 3) as usize];
        let source = Ipv4Addr::new(127, 0, 0, 1 + (n % u64::from(SOURCES)) as u8);
        tasks.push(tokio::spawn(async move {
            let result = tokio::time::timeout(CLIENT_TIMEOUT, client(addr, source, transport, &cursor, ending)).await;
            let slot = match (result, ending) {
                (Ok(Ok(())), Ending::Clean) => 0,
                (Ok(Ok(())), Ending::Reset) => 1,
                (Ok(Ok(())), Ending::MidRequest) => 2,
                _ => 3,
            };
            counts[slot].fetch_add(1, Ordering::Relaxed);
            drop(permit);
        }));
        if tasks.len() >= 4 * CONCURRENCY {
            for task in tasks.drain(..) {
                let _ = task.await;
            }
        }
    }
    for task in tasks {
        let _ = task.await;
    }
    counts
}

/// The request that makes a subscriber of `transport`.
fn request(transport: Transport, cursor: &str) -> String {
    match transport {
        Transport::Sse => format!("GET /a/message/events?cursor={cursor} HTTP/1.1\r\nHost: x\r\n\r\n"),
        Transport::WebSocket => format!(
            "GET /a/message/socket?cursor={cursor} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
        ),
        Transport::LongPoll => {
            let form = format!("_xsrf={XSRF}&cursor={cursor}");
            format!(
                "POST /a/message/updates HTTP/1.1\r\nHost: x\r\nCookie: _xsrf={XSRF}\r\n\
                 Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{form}",
                form.len()
            )
        }
        Transport::WebTransport | Transport::WebTransportUnordered => unreachable!("churn is TCP only"),
    }
}

/// One client's life: connect from `source`, ask, and go away as `ending` says.
async fn client(
    addr: SocketAddr,
    source: Ipv4Addr,
    transport: Transport,
    cursor: &str,
    ending: Ending,
) -> std::io::Result<()> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((source, 0)))?;
    let mut stream = socket.connect(addr).await?;
    let request = request(transport, cursor);
    if let Ending::MidRequest = ending {
        stream.write_all(&request.as_bytes()[..request.len() / 2]).await?;
        return Ok(()); // dropped with the head half sent
    }
    stream.write_all(request.as_bytes()).await?;
    // Subscribed: the stream's head (and first bytes), the upgrade; a long-poll is held
    // without an answer, so it counts once the server has had a moment to take it.
    match transport {
        Transport::LongPoll => tokio::time::sleep(Duration::from_millis(2)).await,
        _ => read_head(&mut stream).await?,
    }
    if let Ending::Reset = ending {
        stream.set_zero_linger()?;
    }
    drop(stream);
    Ok(())
}

async fn read_head(stream: &mut TcpStream) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut byte = [0; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut byte).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&byte[..n]);
    }
    Ok(())
}

/// The server's `pushwire_subscribers` gauge of `transport`, summed over its HTTP
/// versions (an older server has no `http` label).
async fn subscribers(addr: SocketAddr, transport: Transport) -> Option<f64> {
    let label = match transport {
        Transport::LongPoll => "long_poll",
        Transport::Sse => "sse",
        Transport::WebSocket => "websocket",
        Transport::WebTransport | Transport::WebTransportUnordered => "webtransport",
    };
    metrics::sum(addr, &format!("pushwire_subscribers{{transport=\"{label}\"")).await
}
