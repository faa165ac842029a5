//! QUIC's loss count per session, for `/metrics`: QUIC retransmits inside the endpoint,
//! so unlike TCP's no kernel counter shows what it sent again.

use std::time::Duration;

use wtransport::Connection as Session;
use wtransport::quinn;

use crate::AppState;

/// How often a session adds QUIC's loss count to the metrics: a run reads it while the
/// sessions it measures are still open.
pub(super) const EVERY: Duration = Duration::from_secs(1);

/// The packets QUIC has declared lost on one session's connection, added to
/// `pushwire_quic_lost_packets` as they grow.
pub(super) struct LossCount {
    connection: quinn::Connection,
    counted: u64,
}

impl LossCount {
    pub(super) fn new(session: &Session) -> LossCount {
        LossCount { connection: session.quic_connection().clone(), counted: 0 }
    }

    pub(super) fn add(&mut self, state: &AppState) {
        let lost = self.connection.stats().path.lost_packets;
        state.metrics.quic_lost(lost - self.counted);
        self.counted = lost;
    }
}
