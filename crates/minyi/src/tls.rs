//! TLS with rustls and ring: the listeners' certificate (gRPC and HTTP, both through
//! tokio-rustls), and the one way every Minyi client dials a gRPC endpoint.
//!
//! The server certificate and key are read at start and again whenever their files change
//! ([`ServerCert`], checked every `tls.reload_secs`): a certificate renewed in place (as
//! cert-manager does in a Kubernetes Secret) is presented from the next handshake on, without a
//! restart. The client CA of mutual TLS is read once.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::config::TlsConfig;

/// Longest a TLS handshake may take, on either side.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Makes ring the process's rustls provider (once; later calls do nothing), so that every
/// rustls user in the process (tonic, the HTTP listener, redis, lapin) agrees on it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Reads a PEM file named by a setting, the setting named in the error.
fn read(path: &Path, setting: &str) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {setting} {}", path.display()))
}

fn certificates(pem: &[u8], path: &Path) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{} is not PEM", path.display()))?;
    if certs.is_empty() {
        bail!("no certificate in {}", path.display());
    }
    Ok(certs)
}

/// The listeners' TLS: one certificate ([`ServerCert`]) for gRPC and HTTP; gRPC callers
/// present a client certificate when `tls.client_ca_file` is set.
#[derive(Clone)]
pub struct ServerTls {
    cert: Arc<ServerCert>,
    mutual: bool,
    grpc: Arc<rustls::ServerConfig>,
    http: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// `None` when the configuration asks for no TLS. A missing, unreadable or mismatched file
    /// is an error that names its setting, at start rather than at the first handshake.
    pub fn load(config: &TlsConfig) -> anyhow::Result<Option<ServerTls>> {
        if !config.enabled() {
            if config.client_ca_file.is_some() {
                bail!("tls.client_ca_file needs tls.cert_file and tls.key_file as well");
            }
            return Ok(None);
        }
        let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
            bail!(
                "TLS needs both tls.cert_file and tls.key_file (MINYI_TLS_CERT_FILE, MINYI_TLS_KEY_FILE)"
            );
        };
        install_crypto_provider();
        let cert = Arc::new(ServerCert::load(cert_file, key_file)?);
        let builder = || {
            rustls::ServerConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .context("TLS protocol versions")
        };
        let grpc = match &config.client_ca_file {
            Some(path) => {
                let pem = read(path, "tls.client_ca_file")?;
                let mut roots = rustls::RootCertStore::empty();
                for c in certificates(&pem, path).context("tls.client_ca_file")? {
                    roots
                        .add(c)
                        .with_context(|| format!("tls.client_ca_file {}", path.display()))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                        .build()
                        .with_context(|| format!("tls.client_ca_file {}", path.display()))?;
                builder()?.with_client_cert_verifier(verifier)
            }
            None => builder()?.with_no_client_auth(),
        };
        let mut grpc = grpc.with_cert_resolver(cert.clone());
        grpc.alpn_protocols = vec![b"h2".to_vec()];
        let mut http = builder()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(ServerTls {
            cert,
            mutual: config.client_ca_file.is_some(),
            grpc: Arc::new(grpc),
            http: Arc::new(http),
        }))
    }

    /// The server certificate in force, to reload (see [`ServerCert::watch`]).
    pub fn cert(&self) -> Arc<ServerCert> {
        self.cert.clone()
    }

    /// The gRPC listener's connections over TLS (client certificates required when
    /// `tls.client_ca_file` is set), for tonic's `serve_with_incoming`.
    pub fn grpc_incoming(
        &self,
        listener: TcpListener,
    ) -> io::Result<impl futures::Stream<Item = io::Result<TlsStream<TcpStream>>> + use<>> {
        use futures::StreamExt;
        let listener = TlsListener::new(listener, TlsAcceptor::from(self.grpc.clone()), "gRPC")?;
        Ok(
            tokio_stream_net::wrappers::ReceiverStream::new(listener.ready)
                .map(|(stream, _)| Ok(stream)),
        )
    }

    /// The HTTP listener over TLS (server authentication only: browsers, Open311 apps and
    /// Prometheus carry tokens or nothing, not client certificates).
    pub fn http_listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        TlsListener::new(listener, TlsAcceptor::from(self.http.clone()), "HTTP")
    }
}

/// The server's certificate chain and key, read again from their files when either changes.
/// A pair that fails to load (unreadable, not PEM, a key that does not go with the
/// certificate — say a renewal caught between writing the two files) is logged, and the one
/// in force stays until the files change again.
#[derive(Debug)]
pub struct ServerCert {
    cert_file: PathBuf,
    key_file: PathBuf,
    state: RwLock<Loaded>,
}

#[derive(Debug)]
struct Loaded {
    key: Arc<CertifiedKey>,
    /// The files' modification times and lengths when last read.
    stamp: Option<FileStamps>,
}

type FileStamps = [(SystemTime, u64); 2];

impl ServerCert {
    fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<ServerCert> {
        let stamp = stamps(cert_file, key_file);
        let key = Arc::new(load_pair(cert_file, key_file)?);
        Ok(ServerCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            state: RwLock::new(Loaded { key, stamp }),
        })
    }

    /// Reads the files again if they changed since they were last read. Returns whether a new
    /// certificate is now in force.
    pub fn reload_if_changed(&self) -> bool {
        let stamp = stamps(&self.cert_file, &self.key_file);
        if stamp.is_none() || stamp == self.state.read().unwrap_or_else(|e| e.into_inner()).stamp {
            return false;
        }
        let loaded = load_pair(&self.cert_file, &self.key_file);
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.stamp = stamp;
        match loaded {
            Ok(key) => {
                state.key = Arc::new(key);
                tracing::info!(cert_file = %self.cert_file.display(), "TLS certificate reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "TLS certificate files changed but do not load; the certificate in force stays"
                );
                false
            }
        }
    }

    /// Checks the files every `every` until `shutdown`.
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let cert = self.clone();
            // File reads and PEM parsing off the async workers.
            let _ = tokio::task::spawn_blocking(move || cert.reload_if_changed()).await;
        }
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.state
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .key
                .clone(),
        )
    }
}

fn stamps(cert_file: &Path, key_file: &Path) -> Option<FileStamps> {
    let one = |p: &Path| {
        let m = std::fs::metadata(p).ok()?;
        Some((m.modified().ok()?, m.len()))
    };
    Some([one(cert_file)?, one(key_file)?])
}

/// The certificate chain of `cert_file` with the key of `key_file`, checked to go together.
fn load_pair(cert_file: &Path, key_file: &Path) -> anyhow::Result<CertifiedKey> {
    let cert_pem = read(cert_file, "tls.cert_file")?;
    let key_pem = read(key_file, "tls.key_file")?;
    let chain = certificates(&cert_pem, cert_file).context("tls.cert_file")?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("tls.key_file {}: no PEM private key", key_file.display()))?;
    CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!(
            "tls.key_file {} does not go with tls.cert_file {}",
            key_file.display(),
            cert_file.display()
        )
    })
}

/// A TCP listener whose connections come out TLS-wrapped. Handshakes run in tasks of their own,
/// so a slow or silent client holds up no one; each is bounded by [`HANDSHAKE_TIMEOUT`], and
/// failed ones are dropped. Dropping the listener stops accepting.
pub struct TlsListener {
    local: SocketAddr,
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
}

impl TlsListener {
    /// `what` names the listener in logs ("gRPC", "HTTP").
    pub fn new(
        listener: TcpListener,
        acceptor: TlsAcceptor,
        what: &'static str,
    ) -> io::Result<TlsListener> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, acceptor, tx, what));
        Ok(TlsListener { local, ready })
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
    what: &'static str,
) {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = tx.closed() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, listener = what, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        let (acceptor, tx) = (acceptor.clone(), tx.clone());
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => {
                    tracing::debug!(%peer, error = %e, listener = what, "TLS handshake failed")
                }
                Err(_) => tracing::debug!(%peer, listener = what, "TLS handshake timed out"),
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(connection) => connection,
            // The accept loop only ends once this receiver is gone: unreachable, but never
            // hand out a connection that does not exist.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

/// What a client needs for an `https://` endpoint besides the URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTls {
    /// PEM CA bundle trusted instead of the system store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for a server that requires mutual TLS.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
}

impl ClientTls {
    fn is_empty(&self) -> bool {
        self.ca_file.is_none() && self.cert_file.is_none() && self.key_file.is_none()
    }
}

/// A gRPC endpoint: `http://` in plaintext, `https://` over TLS verified against `ca_file` or
/// else the system store. TLS settings with an `http://` URL are an error rather than silently
/// unused.
pub fn endpoint(uri: &str, tls: &ClientTls) -> anyhow::Result<Endpoint> {
    let endpoint =
        Endpoint::from_shared(uri.to_owned()).with_context(|| format!("invalid endpoint {uri}"))?;
    if endpoint.uri().scheme_str() != Some("https") {
        if !tls.is_empty() {
            bail!("{uri} is plaintext: a CA file or client certificate needs an https:// endpoint");
        }
        return Ok(endpoint);
    }
    install_crypto_provider();
    let config = ClientTlsConfig::new().timeout(HANDSHAKE_TIMEOUT);
    let config = match &tls.ca_file {
        Some(path) => config.ca_certificate(Certificate::from_pem(read(path, "the CA file")?)),
        None => config.with_native_roots(),
    };
    let config = match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => config.identity(Identity::from_pem(
            read(cert, "the client certificate")?,
            read(key, "the client key")?,
        )),
        (None, None) => config,
        _ => bail!("a client certificate needs both the certificate and the key file"),
    };
    endpoint
        .tls_config(config)
        .with_context(|| format!("TLS settings for {uri}"))
}

/// Connects to a gRPC endpoint (see [`endpoint`]).
pub async fn connect(uri: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    endpoint(uri, tls)?
        .connect()
        .await
        .with_context(|| format!("cannot reach Minyi at {uri}"))
}
