//! TLS for the node (`docs/federation.md` §7): HTTPS with the node's certificate, and optional mutual TLS
//! between the nodes of a network.
//!
//! Trust model. A node's TLS key is vouched for by the signed directory: each member may list the pins of its
//! TLS keys (`tls_spki_sha256`, base64url SHA-256 of the certificate's `SubjectPublicKeyInfo`), signed by the
//! anchors like its Ed25519 keys, so a network needs no PKI of its own and self-signed certificates are fine.
//! A CA bundle (`--federation-ca`) may be added for networks that already run one.
//!
//! - Server: with `--federation-mtls` the node asks every TLS client for a certificate. A certificate that is
//!   presented must be pinned by a current member or chain to the CA bundle, else the handshake fails (logged
//!   with the key's pin and the peer address). A client without a certificate still completes the handshake, so
//!   browsers reach the web UI, but the federation inbox refuses its requests before the receiver runs
//!   (`tls_client_certificate_required`), and refuses a request signed by one node over a TLS connection
//!   authenticated as another (`tls_peer_mismatch`).
//! - Client: outgoing federation requests present the node's certificate. A peer's server certificate is
//!   accepted when its key is pinned by the member at that host; a member that publishes pins is accepted only
//!   with one of them; other hosts are checked against the CA bundle and the system's roots.
//!
//! rustls with the *ring* provider (already compiled for reqwest), certificates minted with rcgen.

use crate::federation::Federation;
use axum::extract::connect_info::Connected;
use axum::serve::IncomingStream;
use caravan_federation::directory::{tls_spki_pin, Directory, Member, SharedDirectory};
use caravan_federation::problem::Problem;
use chrono::Utc;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Why the TLS setup could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Rustls(#[from] rustls::Error),
    #[error("certificate generation: {0}")]
    Generate(String),
}

/// The node's TLS identity and peer policy (`caravan serve --tls-cert --tls-key [--federation-mtls]
/// [--federation-ca]`).
pub struct NodeTls {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    pin: String,
    require_peer_cert: bool,
    ca: Option<Arc<RootCertStore>>,
}

impl std::fmt::Debug for NodeTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("NodeTls")
            .field("spki_sha256", &self.pin)
            .field("require_peer_cert", &self.require_peer_cert)
            .field("ca_roots", &self.ca.as_ref().map(|c| c.len()))
            .finish()
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn pem_certs(bytes: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.display().to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    Ok(certs)
}

/// The directory pin of a certificate's key: base64url SHA-256 of its DER `SubjectPublicKeyInfo`.
pub fn spki_pin(cert: &CertificateDer<'_>) -> Result<String, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    Ok(tls_spki_pin(parsed.subject_public_key_info().as_ref()))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl NodeTls {
    /// Load the certificate chain and key (PEM files) and the optional CA bundle.
    pub fn load(
        cert: &Path,
        key: &Path,
        require_peer_cert: bool,
        ca_bundle: Option<&Path>,
    ) -> Result<NodeTls, TlsError> {
        let ca = match ca_bundle {
            Some(p) => Some((read(p)?, p.to_path_buf())),
            None => None,
        };
        NodeTls::from_pem(
            &read(cert)?,
            cert,
            &read(key)?,
            key,
            require_peer_cert,
            ca.as_ref().map(|(b, p)| (b.as_slice(), p.as_path())),
        )
    }

    /// As [`NodeTls::load`], from PEM bytes (the paths only name them in errors).
    pub fn from_pem(
        cert_pem: &[u8],
        cert_path: &Path,
        key_pem: &[u8],
        key_path: &Path,
        require_peer_cert: bool,
        ca: Option<(&[u8], &Path)>,
    ) -> Result<NodeTls, TlsError> {
        let chain = pem_certs(cert_pem, cert_path)?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| TlsError::Pem {
            path: key_path.display().to_string(),
            reason: e.to_string(),
        })?;
        let pin = spki_pin(&chain[0])?;
        // The key must be usable by the provider and belong to the certificate.
        let signing = provider()
            .key_provider
            .load_private_key(key.clone_key())
            .map_err(|e| TlsError::Pem {
                path: key_path.display().to_string(),
                reason: e.to_string(),
            })?;
        if let Some(spki) = signing.public_key() {
            if tls_spki_pin(spki.as_ref()) != pin {
                return Err(TlsError::Config(format!(
                    "{} is not the key of {}",
                    key_path.display(),
                    cert_path.display()
                )));
            }
        }
        let ca = match ca {
            Some((bytes, path)) => {
                let mut roots = RootCertStore::empty();
                for c in pem_certs(bytes, path)? {
                    roots.add(c).map_err(|e| TlsError::Pem {
                        path: path.display().to_string(),
                        reason: e.to_string(),
                    })?;
                }
                Some(Arc::new(roots))
            }
            None => None,
        };
        Ok(NodeTls {
            chain,
            key,
            pin,
            require_peer_cert,
            ca,
        })
    }

    /// The pin of this node's TLS key, to publish in the directory.
    pub fn spki_pin(&self) -> &str {
        &self.pin
    }

    /// Whether federation peers must present a trusted client certificate.
    pub fn requires_peer_cert(&self) -> bool {
        self.require_peer_cert
    }

    /// The server side: this node's certificate, and with mutual TLS the peer verifier over the directory
    /// (read at each handshake, so a refreshed directory takes effect for new connections).
    pub fn server_config(
        &self,
        directory: Option<SharedDirectory>,
    ) -> Result<rustls::ServerConfig, TlsError> {
        let provider = provider();
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = if self.require_peer_cert {
            let ca = match &self.ca {
                Some(roots) => Some(
                    WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                        .allow_unauthenticated()
                        .build()
                        .map_err(|e| TlsError::Config(format!("CA bundle: {e}")))?,
                ),
                None => None,
            };
            if directory.is_none() && ca.is_none() {
                return Err(TlsError::Config(
                    "--federation-mtls needs federation (--node-id: peers are pinned in the directory) or \
                     --federation-ca"
                        .into(),
                ));
            }
            builder.with_client_cert_verifier(Arc::new(PeerVerifier {
                directory,
                ca,
                algs: provider.signature_verification_algorithms,
            }))
        } else {
            builder.with_no_client_auth()
        };
        let mut config = builder.with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

/// Decides on the certificates TLS clients present (mutual TLS on).
#[derive(Debug)]
struct PeerVerifier {
    directory: Option<SharedDirectory>,
    ca: Option<Arc<dyn ClientCertVerifier>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for PeerVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // Browsers and API clients without a certificate reach the UI and API; the federation inbox refuses them.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        match &self.ca {
            Some(ca) => ca.root_hint_subjects(),
            None => &[],
        }
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let pin = spki_pin(end_entity)?;
        if let Some(dir) = &self.directory {
            if let Some(m) = dir.get().member_by_tls_pin(&pin, Utc::now()) {
                tracing::debug!(peer = %m.node_id, spki_sha256 = %pin, "TLS client certificate pinned by the directory");
                return Ok(ClientCertVerified::assertion());
            }
        }
        if let Some(ca) = &self.ca {
            return match ca.verify_client_cert(end_entity, intermediates, now) {
                Ok(v) => Ok(v),
                Err(e) => {
                    tracing::warn!(spki_sha256 = %pin, error = %e, "TLS client certificate refused: not pinned in the directory and not valid under the CA bundle");
                    Err(e)
                }
            };
        }
        tracing::warn!(spki_sha256 = %pin, "TLS client certificate refused: its key is not pinned by any current member of the directory");
        Err(rustls::Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The host of a member's `base_url` (IPv6 without brackets), lower case.
fn member_host(m: &Member) -> Option<String> {
    let url = url::Url::parse(&m.base_url).ok()?;
    let host = url.host_str()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase(),
    )
}

fn server_name_text(name: &ServerName<'_>) -> String {
    match name {
        ServerName::DnsName(d) => d.as_ref().trim_end_matches('.').to_ascii_lowercase(),
        ServerName::IpAddress(ip) => std::net::IpAddr::from(*ip).to_string(),
        _ => String::new(),
    }
}

/// Decides on the server certificates of the peers this node sends to.
#[derive(Debug)]
struct PeerServerVerifier {
    directory: SharedDirectory,
    /// The CA bundle and the system's roots, for hosts whose members publish no pin.
    fallback: Option<Arc<WebPkiServerVerifier>>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PeerServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let pin = spki_pin(end_entity)?;
        let host = server_name_text(server_name);
        let dir = self.directory.get();
        let at_host: Vec<&Member> = dir
            .members()
            .iter()
            .filter(|m| m.valid_at(Utc::now()) && member_host(m).as_deref() == Some(host.as_str()))
            .collect();
        let pinned = at_host.iter().any(|m| !m.tls_spki_sha256.is_empty());
        if pinned {
            // A member that publishes pins is reached only over one of its pinned keys, whatever a CA says.
            if at_host.iter().any(|m| m.pins_tls_key(&pin)) {
                return Ok(ServerCertVerified::assertion());
            }
            tracing::warn!(host = %host, spki_sha256 = %pin, "peer TLS certificate refused: its key is not among the pins the directory lists for that host");
            return Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            ));
        }
        match &self.fallback {
            Some(v) => {
                v.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// The HTTP client of the delivery engine: the node's certificate as client identity (if it has one), peers'
/// server certificates checked against the directory's pins, else the CA bundle and the system's roots.
pub fn federation_client(
    tls: Option<&NodeTls>,
    directory: SharedDirectory,
) -> Result<reqwest::Client, TlsError> {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(tls, directory)?)
        .timeout(Duration::from_secs(30))
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| TlsError::Config(format!("HTTP client: {e}")))
}

/// The rustls side of [`federation_client`], for callers that build their own HTTP client.
pub fn client_config(
    tls: Option<&NodeTls>,
    directory: SharedDirectory,
) -> Result<rustls::ClientConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    if let Some(ca) = tls.and_then(|t| t.ca.as_ref()) {
        roots.roots.extend(ca.roots.iter().cloned());
    }
    let native = rustls_native_certs::load_native_certs();
    // Unreadable system roots are not fatal: pinned peers need none.
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            added,
            "some system root certificates could not be loaded"
        );
    }
    let fallback = if roots.is_empty() {
        None
    } else {
        Some(
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .map_err(|e| TlsError::Config(format!("root certificates: {e}")))?,
        )
    };
    let verifier = Arc::new(PeerServerVerifier {
        directory,
        fallback,
        algs: provider.signature_verification_algorithms,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match tls {
        Some(t) => builder.with_client_auth_cert(t.chain.clone(), t.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

// ------------------------------------------------------------------------------------------------------------
// Serving over TLS

/// What a request knows about its connection when the node serves TLS: the peer's address and the certificate
/// it presented (already accepted by the handshake), if any.
#[derive(Clone, Debug)]
pub struct TlsConnInfo {
    pub remote: SocketAddr,
    pub peer_certificate: Option<CertificateDer<'static>>,
}

/// A TCP listener that hands axum only connections whose TLS handshake succeeded. Handshakes run in their own
/// tasks (10 s at most), so a slow or silent client does not hold up the others.
pub struct TlsListener {
    rx: tokio::sync::mpsc::Receiver<(tokio_rustls::server::TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub fn new(
        listener: TcpListener,
        config: rustls::ServerConfig,
    ) -> std::io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (tx, rx) = tokio::sync::mpsc::channel(128);
        let task = tokio::spawn(async move {
            loop {
                let (tcp, remote) = match listener.accept().await {
                    Ok(x) => x,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = tcp.set_nodelay(true);
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
                    {
                        Ok(Ok(stream)) => {
                            let _ = tx.send((stream, remote)).await;
                        }
                        Ok(Err(e)) => {
                            tracing::warn!(peer = %remote, error = %e, "TLS handshake refused")
                        }
                        Err(_) => tracing::warn!(peer = %remote, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { rx, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = tokio_rustls::server::TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.rx.recv().await {
            Some(x) => x,
            // The accept task ended (it only does when aborted): nothing more will come.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

impl Connected<IncomingStream<'_, TlsListener>> for TlsConnInfo {
    fn connect_info(stream: IncomingStream<'_, TlsListener>) -> Self {
        let (_, conn) = stream.io().get_ref();
        TlsConnInfo {
            remote: *stream.remote_addr(),
            peer_certificate: conn
                .peer_certificates()
                .and_then(|c| c.first())
                .map(|c| c.clone().into_owned()),
        }
    }
}

// ------------------------------------------------------------------------------------------------------------
// The inbox gate

/// With mutual TLS required, the check made on a federation request before the receiver sees it: a client
/// certificate was presented, and it belongs to the node whose key signed the request (its pin is in that
/// member's entry; for a member without pins, a CA-issued certificate valid for the host of its `base_url`).
/// `None`: let the request through (a request whose signature cannot be read is refused by the receiver).
pub fn inbox_gate(
    fed: &Federation,
    conn: Option<&TlsConnInfo>,
    headers: &axum::http::HeaderMap,
) -> Option<Problem> {
    let Some(cert) = conn.and_then(|c| c.peer_certificate.as_ref()) else {
        tracing::warn!(
            peer = ?conn.map(|c| c.remote),
            "federation request refused: no TLS client certificate (mutual TLS is required)"
        );
        return Some(Problem::new(
            "tls_client_certificate_required",
            403,
            true,
            "TLS client certificate required",
            Some("this node requires mutual TLS from federation peers".into()),
        ));
    };
    let remote = conn.map(|c| c.remote);
    let pin = match spki_pin(cert) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(peer = ?remote, error = %e, "federation request refused: unreadable TLS client certificate");
            return Some(mismatch("the TLS client certificate cannot be read".into()));
        }
    };
    let Ok((params, _)) =
        caravan_federation::httpsig::parse_signature(headers, caravan_federation::httpsig::LABEL)
    else {
        return None;
    };
    let kid = caravan_federation::keys::Kid::from_string(params.keyid()?);
    let dir: Arc<Directory> = fed.directory();
    let Ok((signer, _)) = dir.key_by_kid(&kid, Utc::now()) else {
        // Unknown or unusable key: the receiver refuses it with the precise code.
        return None;
    };
    let bound = if signer.tls_spki_sha256.is_empty() {
        // No pins: the handshake accepted the certificate under the CA bundle; it must name the signer's host.
        let name = member_host(signer).and_then(|h| ServerName::try_from(h).ok());
        match (ParsedCertificate::try_from(cert), name) {
            (Ok(parsed), Some(name)) => rustls::client::verify_server_name(&parsed, &name).is_ok(),
            _ => false,
        }
    } else {
        signer.pins_tls_key(&pin)
    };
    if bound {
        return None;
    }
    tracing::warn!(peer = ?remote, signer = %signer.node_id, spki_sha256 = %pin, "federation request refused: signed by one node over a TLS connection authenticated as another");
    Some(mismatch(format!(
        "the TLS client certificate is not one of {}'s",
        signer.node_id
    )))
}

fn mismatch(detail: String) -> Problem {
    Problem::new(
        "tls_peer_mismatch",
        403,
        true,
        "TLS client certificate does not belong to the signing node",
        Some(detail),
    )
}

// ------------------------------------------------------------------------------------------------------------
// Certificates for nodes: `caravan tls ...`

/// A freshly minted self-signed certificate and its key, PEM.
pub struct Minted {
    pub cert_pem: String,
    pub key_pem: String,
    pub spki_pin: String,
}

/// Mint a self-signed certificate (ECDSA P-256, server and client use) for a node: `names` are its DNS names
/// and IP addresses (subject alternative names); valid from yesterday for `days`.
pub fn mint_self_signed(node_id: &str, names: &[String], days: u32) -> Result<Minted, TlsError> {
    use chrono::Datelike;
    use rcgen::{
        CertificateParams, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose,
        PKCS_ECDSA_P256_SHA256,
    };
    let bad = |e: rcgen::Error| TlsError::Generate(e.to_string());
    if names.is_empty() {
        return Err(TlsError::Config(
            "give at least one --san (the host name or IP address in the node's base_url)".into(),
        ));
    }
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = CertificateParams::new(names.to_vec()).map_err(bad)?;
    params
        .distinguished_name
        .push(DnType::CommonName, node_id.to_owned());
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Caravan node");
    let ymd =
        |d: chrono::DateTime<Utc>| rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8);
    let now = Utc::now();
    params.not_before = ymd(now - chrono::Duration::days(1));
    params.not_after = ymd(now + chrono::Duration::days(i64::from(days.max(1))));
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    let cert = params.self_signed(&key).map_err(bad)?;
    let spki_pin = spki_pin(cert.der())?;
    Ok(Minted {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
        spki_pin,
    })
}

/// `caravan tls ...`: TLS certificates for nodes.
#[derive(Debug, clap::Subcommand)]
pub enum TlsCommand {
    /// Mint a self-signed certificate and key for a node and print the pin to put in its directory entry
    /// (`tls_spki_sha256`).
    Generate {
        /// The node id (the certificate's common name).
        #[arg(long)]
        node_id: String,
        /// A DNS name or IP address of the node (the host of its base_url). Repeatable.
        #[arg(long = "san", required = true)]
        sans: Vec<String>,
        /// Certificate file to write (PEM).
        #[arg(long)]
        cert: PathBuf,
        /// Private key file to write (PEM, PKCS#8, mode 0600).
        #[arg(long)]
        key: PathBuf,
        /// Validity in days.
        #[arg(long, default_value_t = 825)]
        days: u32,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
    },
    /// Print the directory pin (`tls_spki_sha256`) of the first certificate of each PEM file.
    Pin {
        /// Certificate files (PEM).
        #[arg(required = true)]
        certs: Vec<PathBuf>,
    },
}

/// Runs `caravan tls ...`.
pub fn run(cmd: TlsCommand) -> std::process::ExitCode {
    use std::process::ExitCode;
    let fail = |e: &dyn std::fmt::Display| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    };
    match cmd {
        TlsCommand::Generate {
            node_id,
            sans,
            cert,
            key,
            days,
            force,
        } => {
            if !force && (cert.exists() || key.exists()) {
                return fail(&format!(
                    "{} or {} exists (use --force to replace)",
                    cert.display(),
                    key.display()
                ));
            }
            let minted = match mint_self_signed(&node_id, &sans, days) {
                Ok(m) => m,
                Err(e) => return fail(&e),
            };
            if let Err(e) = std::fs::write(&cert, &minted.cert_pem) {
                return fail(&format!("{}: {e}", cert.display()));
            }
            if let Err(e) =
                caravan_federation::keys::write_private_file(&key, minted.key_pem.as_bytes())
            {
                return fail(&e);
            }
            println!("certificate:     {}", cert.display());
            println!("key:             {}", key.display());
            println!("tls_spki_sha256: {}", minted.spki_pin);
            println!(
                "Add the pin to {node_id}'s directory entry: \"tls_spki_sha256\": [\"{}\"]",
                minted.spki_pin
            );
            ExitCode::SUCCESS
        }
        TlsCommand::Pin { certs } => {
            for path in certs {
                let pin = read(&path)
                    .and_then(|b| pem_certs(&b, &path))
                    .and_then(|c| Ok(spki_pin(&c[0])?));
                match pin {
                    Ok(p) => println!("{p}  {}", path.display()),
                    Err(e) => return fail(&e),
                }
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn minted_certificates_load_and_pin_their_key() {
        let m = mint_self_signed(
            "hospital-a.fr",
            &["a.example".into(), "127.0.0.1".into()],
            30,
        )
        .unwrap();
        let tls = NodeTls::from_pem(
            m.cert_pem.as_bytes(),
            Path::new("a.pem"),
            m.key_pem.as_bytes(),
            Path::new("a.key"),
            true,
            None,
        )
        .unwrap();
        assert_eq!(tls.spki_pin(), m.spki_pin);
        assert_eq!(m.spki_pin.len(), 43);
        // Another node's key does not go with this certificate.
        let other = mint_self_signed("b", &["b.example".into()], 30).unwrap();
        let err = NodeTls::from_pem(
            m.cert_pem.as_bytes(),
            Path::new("a.pem"),
            other.key_pem.as_bytes(),
            Path::new("b.key"),
            false,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("is not the key of"), "{err}");
        // Garbage is named.
        let err = NodeTls::from_pem(
            b"not pem",
            Path::new("x.pem"),
            m.key_pem.as_bytes(),
            Path::new("a.key"),
            false,
            None,
        )
        .unwrap_err();
        assert!(err.to_string().starts_with("x.pem"), "{err}");
        // Mutual TLS without a directory or a CA has nothing to trust.
        assert!(tls.server_config(None).is_err());
        assert!(mint_self_signed("c", &[], 30).is_err());
    }
}
