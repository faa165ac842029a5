//! The unordered sink (`?order=none`): each message on a unidirectional stream of its
//! own, so a lost packet delays only that message; the notices on the session's first
//! stream.
//!
//! The fan-out writes into [`Streams`] as into any sink; it hands each line to a
//! bounded channel, and the session's writer task ([`send_each_on_its_own`]) opens the
//! streams. The writer takes no line while [`MAX_STREAMS_IN_FLIGHT`] streams are
//! unacknowledged, so a client that takes nothing fills the channel, then the outbox:
//! the outbox's byte bound and the watchdog hold as for every streaming transport.

use std::io;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::sync::mpsc;
use tokio_util::sync::PollSender;
use tokio_util::task::AbortOnDropHandle;
use wtransport::{Connection as Session, SendStream};

use super::{LINE, SLOW_LINE, SessionSink, gap_line, json_lines};
use crate::AppState;
use crate::bus::{Gap, WireForm};
use crate::metrics::Transport;
use crate::transport::fanout::{Outbox, Sink};

/// Message streams a session may have unacknowledged at once, each holding its line
/// (a stream waiting for the client's stream credit counts): a burst goes out without
/// waiting for one lost packet, and at most this many lines wait outside the outbox.
const MAX_STREAMS_IN_FLIGHT: usize = 64;
/// Lines between the sink and the writer: a few, since what waits here is outside
/// the outbox's byte bound and the watchdog's view.
const LINES_QUEUED: usize = 16;

/// What the fan-out writes into: the writer's channel, a line per item.
pub(super) struct Streams {
    lines: PollSender<Bytes>,
    /// `None` once settled; aborted if the session's outbox goes first.
    writer: Option<AbortOnDropHandle<()>>,
}

impl Sink for Streams {
    json_lines!();

    /// Takes as many whole lines of `bytes` (the outbox holds whole lines) as the
    /// channel has room for.
    fn poll_write(&mut self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        let mut taken = 0;
        while taken < bytes.len() {
            match self.lines.poll_reserve(cx) {
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(_)) => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Poll::Pending if taken == 0 => return Poll::Pending,
                Poll::Pending => break,
            }
            let rest = &bytes[taken..];
            let line = rest.iter().position(|&b| b == b'\n').map_or(rest.len(), |end| end + 1);
            if self.lines.send_item(Bytes::copy_from_slice(&rest[..line])).is_err() {
                return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
            }
            taken += line;
        }
        Poll::Ready(Ok(taken))
    }

    fn poll_flush(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl SessionSink for Streams {
    const READY: &'static [u8] = b"{\"ready\":{\"http\":\"3\",\"order\":\"none\"}}\n";

    fn open(session: &Session, first: SendStream, state: &AppState) -> Self {
        let (sender, receiver) = mpsc::channel(LINES_QUEUED);
        // It ends with its session (settled, or aborted with the outbox), which ends at
        // shutdown: no shutdown signal of its own.
        let writer = state.tasks.spawn(send_each_on_its_own(session.clone(), first, receiver));
        Streams { lines: PollSender::new(sender), writer: Some(AbortOnDropHandle::new(writer)) }
    }

    async fn settle(outbox: &Outbox<Self>) {
        let writer = outbox.with_sink(|streams| {
            streams.lines.close();
            streams.writer.take()
        });
        if let Some(writer) = writer {
            let _ = writer.await;
        }
    }
}

/// The writer of an unordered session: each message line on a new stream, the notices
/// on `control`, until the sink closes the channel; then it waits for what is in
/// flight and finishes `control`. It returns early once the session is gone.
async fn send_each_on_its_own(session: Session, mut control: SendStream, mut lines: mpsc::Receiver<Bytes>) {
    let mut in_flight = FuturesUnordered::new();
    loop {
        tokio::select! {
            line = lines.recv(), if in_flight.len() < MAX_STREAMS_IN_FLIGHT => match line {
                Some(notice) if is_notice(&notice) => {
                    if control.write_all(&notice).await.is_err() {
                        return;
                    }
                }
                Some(message) => in_flight.push(send_alone(&session, message)),
                None => break,
            },
            Some(sent) = in_flight.next() => {
                if !sent {
                    return;
                }
            }
        }
    }
    while in_flight.next().await.is_some() {}
    let _ = control.finish().await;
}

/// Whether `line` is one of the lines this module's parent writes itself (ready, gap,
/// slow, reconnect) rather than a message object.
fn is_notice(line: &[u8]) -> bool {
    [&b"{\"ready\""[..], b"{\"gap\"", b"{\"slow\"", b"{\"reconnect\""].iter().any(|prefix| line.starts_with(prefix))
}

/// Sends `line` on a stream of its own and finishes it; resolves once the client has
/// acknowledged it, so the stream counts as in flight until then. False once the
/// session is gone; a client that stops one stream loses only that message.
async fn send_alone(session: &Session, line: Bytes) -> bool {
    let Ok(opening) = session.open_uni().await else { return false };
    let Ok(mut stream) = opening.await else { return false };
    if stream.write_all(&line).await.is_ok() {
        let _ = stream.finish().await;
    }
    true
}
