//! HTTPS: the certificate (given, or self-signed at start-up) and the TLS settings
//! every HTTPS connection is accepted with, offering HTTP/2 and HTTP/1.1 by ALPN.
//!
//! The self-signed certificate names `127.0.0.1`, `::1` and `localhost`, uses an
//! ECDSA P-256 key and is valid for 13 days: browsers warn about it (it is signed by
//! nobody they trust), and its SHA-256 fingerprint, printed at start-up, is what a
//! browser can be told to trust (Chromium's `--ignore-certificate-errors-spki-list`
//! takes the key's hash, which [`Tls::spki_sha256`] gives).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use rcgen::PublicKeyData as _;
use ring::digest::{SHA256, digest};
use rustls::ServerConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// How long the self-signed certificate is valid: under the 14 days that browsers
/// accept for a certificate pinned by its hash (WebTransport's rule).
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);

/// The names the self-signed certificate is valid for: loopback only.
const SELF_SIGNED_NAMES: [&str; 3] = ["127.0.0.1", "::1", "localhost"];

/// The certificate and the acceptor built from it.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    certificate: CertificateDer<'static>,
    /// The chain and key as given, for the HTTP/3 (WebTransport) endpoint.
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    /// The base64 SHA-256 of the public key, for a certificate made here.
    spki_sha256: Option<String>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls").field("sha256", &self.sha256()).field("spki_sha256", &self.spki_sha256).finish()
    }
}

/// Why HTTPS could not be set up.
#[derive(Debug)]
pub struct TlsError(String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

impl Tls {
    /// From PEM files: a certificate chain and its private key.
    pub fn from_pem(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let fail = |what: &str, path: &Path, error: &dyn fmt::Display| {
            TlsError(format!("cannot read the {what} {}: {error}", path.display()))
        };
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|error| fail("certificate", cert, &error))?;
        if chain.is_empty() {
            return Err(TlsError(format!("no certificate in {}", cert.display())));
        }
        let key = PrivateKeyDer::from_pem_file(key).map_err(|error| fail("private key", key, &error))?;
        Tls::new(chain, key, None)
    }

    /// A fresh self-signed certificate for the loopback names.
    pub fn self_signed() -> Result<Self, TlsError> {
        let names = SELF_SIGNED_NAMES.map(String::from).to_vec();
        let mut params = rcgen::CertificateParams::new(names).map_err(|e| TlsError(e.to_string()))?;
        let now = time::OffsetDateTime::now_utc();
        // An hour back, for clocks that differ a little; 13 days in all.
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now - time::Duration::hours(1) + SELF_SIGNED_VALIDITY;
        let key = rcgen::KeyPair::generate().map_err(|e| TlsError(e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| TlsError(e.to_string()))?;
        let spki = base64::engine::general_purpose::STANDARD.encode(digest(&SHA256, &key.subject_public_key_info()));
        let key = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError(e.to_owned()))?;
        Tls::new(vec![cert.der().clone()], key, Some(spki))
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        spki_sha256: Option<String>,
    ) -> Result<Self, TlsError> {
        // The ring provider: aws-lc-rs would need cmake and a C toolchain to build, and
        // rustls deprecates ring's provider only for lacking post-quantum key exchange.
        #[allow(deprecated)]
        let provider = rustls::crypto::ring::default_provider();
        let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError(format!("the certificate and key do not go together: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = TlsAcceptor::from(Arc::new(config));
        Ok(Tls { acceptor, certificate: chain[0].clone(), chain, key: Arc::new(key), spki_sha256 })
    }

    /// The certificate served (the first of its chain).
    pub fn certificate(&self) -> &CertificateDer<'static> {
        &self.certificate
    }

    /// The acceptor for incoming connections.
    pub fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }

    /// The certificate chain and its private key.
    pub fn chain_and_key(&self) -> (&[CertificateDer<'static>], &PrivateKeyDer<'static>) {
        (&self.chain, &self.key)
    }

    /// The certificate's SHA-256 fingerprint, as browsers show it (`AB:CD:…`).
    pub fn sha256(&self) -> String {
        self.sha256_bytes().iter().map(|byte| format!("{byte:02X}")).collect::<Vec<_>>().join(":")
    }

    /// The certificate's SHA-256, as WebTransport's `serverCertificateHashes` takes it.
    pub fn sha256_bytes(&self) -> [u8; 32] {
        let mut hash = [0; 32];
        hash.copy_from_slice(digest(&SHA256, &self.certificate).as_ref());
        hash
    }

    /// For a certificate made here, the base64 SHA-256 of its public key: what
    /// Chromium's `--ignore-certificate-errors-spki-list` takes to trust it.
    pub fn spki_sha256(&self) -> Option<&str> {
        self.spki_sha256.as_deref()
    }
}
