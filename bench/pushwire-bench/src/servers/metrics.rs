//! Reading a pushwire server's own counters from its `/metrics` (Prometheus text).

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The sum of every series of `/metrics` whose line starts with `series` (a metric's
/// name, or its name and the first labels); `None` when the server answers none.
pub(crate) async fn sum(addr: SocketAddr, series: &str) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).await.ok()?;
    let values: Vec<f64> =
        text.lines().filter_map(|line| line.strip_prefix(series)?.rsplit_once(' ')?.1.trim().parse().ok()).collect();
    (!values.is_empty()).then(|| values.iter().sum())
}
