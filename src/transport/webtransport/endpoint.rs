//! How the server offers WebTransport: the UDP endpoint it binds, the loop that accepts
//! its sessions, and `GET /a/message/webtransport/certificate`, which tells the page
//! whether it is served, where, and the certificate hash to pin.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use rustls::pki_types::PrivateKeyDer;
use serde::Serialize;
use tokio::time::timeout;
use tokio_util::task::TaskTracker;
use wtransport::endpoint::endpoint_side::Server;
use wtransport::tls::{Certificate, CertificateChain, PrivateKey};
use wtransport::{Identity, ServerConfig, VarInt};

use super::{CLOSE_GRACE, GOING_AWAY, session};
use crate::AppState;
use crate::tls::Tls;

/// Whether this server offers WebTransport, as the page asks.
#[derive(Clone, Debug)]
pub enum Availability {
    /// Serving on this UDP port.
    Serving {
        /// The UDP port.
        port: u16,
        /// For a self-signed certificate, its SHA-256: what a browser must be given
        /// as `serverCertificateHashes` to accept it.
        sha256: Option<[u8; 32]>,
    },
    /// Not serving, and why (`--webtransport off`, or the UDP port is taken).
    Unavailable(String),
}

/// The answer of `GET /a/message/webtransport/certificate`.
#[derive(Serialize)]
struct Offer {
    available: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    port: Option<u16>,
    /// Base64 of a self-signed certificate's SHA-256 (absent for one browsers trust).
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// What the page learns before it opens a session, for [`crate::transport::routes`] to merge.
pub fn routes() -> Router<AppState> {
    Router::new().route("/a/message/webtransport/certificate", get(certificate))
}

async fn certificate(State(state): State<AppState>) -> axum::response::Response {
    let offer = match state.webtransport.get() {
        Some(Availability::Serving { port, sha256 }) => Offer {
            available: true,
            port: Some(*port),
            sha256: sha256.map(|hash| base64::engine::general_purpose::STANDARD.encode(hash)),
            reason: None,
        },
        Some(Availability::Unavailable(reason)) => {
            Offer { available: false, port: None, sha256: None, reason: Some(reason.clone()) }
        }
        None => Offer { available: false, port: None, sha256: None, reason: Some("not started".to_owned()) },
    };
    // A struct of strings, numbers and booleans serializes.
    crate::transport::json_response(serde_json::to_vec(&offer).expect("the offer serializes"))
}

/// A bound WebTransport endpoint, ready to serve.
pub struct Endpoint {
    inner: wtransport::Endpoint<Server>,
    availability: Availability,
}

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Endpoint").field("availability", &self.availability).finish_non_exhaustive()
    }
}

impl Endpoint {
    /// Binds UDP `addr` for HTTP/3 with `tls`'s certificate; says why it cannot.
    pub fn bind(addr: SocketAddr, tls: &Tls, idle: Duration) -> Result<Self, String> {
        let (chain, key) = tls.chain_and_key();
        let PrivateKeyDer::Pkcs8(key) = key else {
            return Err("WebTransport needs a PKCS#8 private key (BEGIN PRIVATE KEY)".to_owned());
        };
        let certificates = chain.iter().map(|der| Certificate::from_der(der.to_vec()));
        let certificates = certificates.collect::<Result<Vec<_>, _>>().map_err(|e| e.to_string())?;
        let identity = Identity::new(
            CertificateChain::new(certificates),
            PrivateKey::from_der_pkcs8(key.secret_pkcs8_der().to_vec()),
        );
        let config = ServerConfig::builder()
            .with_bind_address(addr)
            .with_identity(identity)
            .keep_alive_interval(Some(idle / 3))
            .max_idle_timeout(Some(idle))
            .map_err(|e| e.to_string())?
            .build();
        let inner = wtransport::Endpoint::server(config).map_err(|e| format!("cannot use UDP {addr}: {e}"))?;
        let port = inner.local_addr().map_err(|e| e.to_string())?.port();
        let sha256 = tls.spki_sha256().is_some().then(|| tls.sha256_bytes());
        Ok(Endpoint { inner, availability: Availability::Serving { port, sha256 } })
    }

    /// What the page is told about this endpoint.
    pub fn availability(&self) -> &Availability {
        &self.availability
    }

    /// The UDP address it listens on.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// Accepts sessions until shutdown; each runs as a task of the server's.
pub async fn serve(endpoint: Endpoint, state: AppState) {
    let sessions = TaskTracker::new();
    loop {
        let incoming = tokio::select! {
            incoming = endpoint.inner.accept() => incoming,
            () = state.shutdown.cancelled() => break,
        };
        state.tasks.spawn(sessions.track_future(session(incoming, state.clone())));
    }
    // Closing the endpoint discards what a session has not sent yet, so sessions close
    // themselves first, each within its grace; twice that is over for all of them.
    // What is left (handshakes, answers to refused requests) is closed then.
    sessions.close();
    let _ = timeout(CLOSE_GRACE * 2, sessions.wait()).await;
    endpoint.inner.close(VarInt::from_u32(GOING_AWAY), b"server shutting down");
}
