//! TLS with rustls and ring: the listeners' certificate (gRPC and HTTP, both through
//! tokio-rustls), and the one way every Minyi client dials a gRPC endpoint.
//!
//! The server certificate and key, and the client CA of mutual TLS, are read at start and again
//! whenever their files change (checked every `tls.reload_secs`, [`ServerTls::watch`]): a
//! certificate renewed in place (as cert-manager does in a Kubernetes Secret) is presented, and
//! a replaced client CA trusted, from the next handshake on, without a restart.

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
/// present a client certificate from the CA of `tls.client_ca_file` when it is set.
#[derive(Clone)]
pub struct ServerTls {
    cert: Arc<ServerCert>,
    /// The client CA file and what it held when last read.
    client_ca: Option<Arc<ClientCa>>,
    grpc: Acceptor,
    http: Acceptor,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// The client CA file of mutual TLS, with its stamp when last read.
#[derive(Debug)]
struct ClientCa {
    file: PathBuf,
    stamp: RwLock<Option<FileStamp>>,
}

/// The TLS acceptor a listener hands each new connection: the gRPC one is replaced when the
/// client CA changes (connections already made keep theirs).
#[derive(Clone)]
struct Acceptor(Arc<RwLock<TlsAcceptor>>);

impl Acceptor {
    fn new(config: rustls::ServerConfig) -> Acceptor {
        Acceptor(Arc::new(RwLock::new(TlsAcceptor::from(Arc::new(config)))))
    }

    fn current(&self) -> TlsAcceptor {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, config: rustls::ServerConfig) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = TlsAcceptor::from(Arc::new(config));
    }
}

fn server_config_builder()
-> anyhow::Result<rustls::ConfigBuilder<rustls::ServerConfig, rustls::WantsVerifier>> {
    rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")
}

/// The gRPC listener's configuration: HTTP/2, `cert`, and client certificates from the CA
/// in `client_ca` required when there is one.
fn grpc_config(
    cert: &Arc<ServerCert>,
    client_ca: Option<&Path>,
) -> anyhow::Result<rustls::ServerConfig> {
    let builder = server_config_builder()?;
    let builder = match client_ca {
        Some(path) => {
            let pem = read(path, "tls.client_ca_file")?;
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(&pem, path).context("tls.client_ca_file")? {
                roots
                    .add(c)
                    .with_context(|| format!("tls.client_ca_file {}", path.display()))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .with_context(|| format!("tls.client_ca_file {}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(cert.clone());
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
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
        let client_ca = config.client_ca_file.as_ref().map(|file| {
            Arc::new(ClientCa {
                stamp: RwLock::new(stamp(file)),
                file: file.clone(),
            })
        });
        let grpc = grpc_config(&cert, config.client_ca_file.as_deref())?;
        let mut http = server_config_builder()?
            .with_no_client_auth()
            .with_cert_resolver(cert.clone());
        http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Some(ServerTls {
            cert,
            client_ca,
            grpc: Acceptor::new(grpc),
            http: Acceptor::new(http),
        }))
    }

    /// The server certificate in force.
    pub fn cert(&self) -> &ServerCert {
        &self.cert
    }

    /// Reads the client CA file again if it changed since it was last read, and trusts its
    /// CA from the next gRPC handshake on. A file that does not load (empty, not PEM) is
    /// logged and the CA in force stays. Returns whether another CA is now in force.
    pub fn reload_client_ca_if_changed(&self) -> bool {
        let Some(ca) = &self.client_ca else {
            return false;
        };
        let now = stamp(&ca.file);
        if now.is_none() || now == *ca.stamp.read().unwrap_or_else(|e| e.into_inner()) {
            return false;
        }
        *ca.stamp.write().unwrap_or_else(|e| e.into_inner()) = now;
        match grpc_config(&self.cert, Some(&ca.file)) {
            Ok(config) => {
                self.grpc.replace(config);
                tracing::info!(client_ca_file = %ca.file.display(), "TLS client CA reloaded");
                true
            }
            Err(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "TLS client CA file changed but does not load; the CA in force stays"
                );
                false
            }
        }
    }

    /// Checks the certificate, key and client CA files every `every` until `shutdown`.
    pub async fn watch(self, every: Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let tls = self.clone();
            // File reads and PEM parsing off the async workers.
            let _ = tokio::task::spawn_blocking(move || {
                tls.cert.reload_if_changed();
                tls.reload_client_ca_if_changed();
            })
            .await;
        }
    }

    /// The gRPC listener's connections over TLS (client certificates required when
    /// `tls.client_ca_file` is set), for tonic's `serve_with_incoming`.
    pub fn grpc_incoming(
        &self,
        listener: TcpListener,
    ) -> io::Result<impl futures::Stream<Item = io::Result<TlsStream<TcpStream>>> + use<>> {
        use futures::StreamExt;
        let listener = TlsListener::new(listener, self.grpc.clone(), "gRPC")?;
        Ok(
            tokio_stream_net::wrappers::ReceiverStream::new(listener.ready)
                .map(|(stream, _)| Ok(stream)),
        )
    }

    /// The HTTP listener over TLS (server authentication only: browsers, Open311 apps and
    /// Prometheus carry tokens or nothing, not client certificates).
    pub fn http_listener(&self, listener: TcpListener) -> io::Result<TlsListener> {
        TlsListener::new(listener, self.http.clone(), "HTTP")
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
    /// The leaf certificate's `notAfter`, in Unix seconds.
    not_after: i64,
    /// The files' modification times and lengths when last read.
    stamp: Option<[FileStamp; 2]>,
}

/// A file's modification time and length.
type FileStamp = (SystemTime, u64);

impl ServerCert {
    fn load(cert_file: &Path, key_file: &Path) -> anyhow::Result<ServerCert> {
        let stamp = stamps(cert_file, key_file);
        let (key, not_after) = load_pair(cert_file, key_file)?;
        Ok(ServerCert {
            cert_file: cert_file.to_owned(),
            key_file: key_file.to_owned(),
            state: RwLock::new(Loaded {
                key: Arc::new(key),
                not_after,
                stamp,
            }),
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
            Ok((key, not_after)) => {
                state.key = Arc::new(key);
                state.not_after = not_after;
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

    /// When the certificate in force expires (its leaf's `notAfter`), in Unix seconds.
    pub fn not_after(&self) -> i64 {
        self.state
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .not_after
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

fn stamp(file: &Path) -> Option<FileStamp> {
    let m = std::fs::metadata(file).ok()?;
    Some((m.modified().ok()?, m.len()))
}

fn stamps(cert_file: &Path, key_file: &Path) -> Option<[FileStamp; 2]> {
    Some([stamp(cert_file)?, stamp(key_file)?])
}

/// The certificate chain of `cert_file` with the key of `key_file`, checked to go together,
/// and when the leaf certificate expires (Unix seconds).
fn load_pair(cert_file: &Path, key_file: &Path) -> anyhow::Result<(CertifiedKey, i64)> {
    let cert_pem = read(cert_file, "tls.cert_file")?;
    let key_pem = read(key_file, "tls.key_file")?;
    let chain = certificates(&cert_pem, cert_file).context("tls.cert_file")?;
    let (_, leaf) = x509_parser::parse_x509_certificate(&chain[0]).map_err(|e| {
        anyhow::anyhow!(
            "tls.cert_file {}: not an X.509 certificate: {e}",
            cert_file.display()
        )
    })?;
    let not_after = leaf.validity().not_after.timestamp();
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .with_context(|| format!("tls.key_file {}: no PEM private key", key_file.display()))?;
    let key = CertifiedKey::from_der(chain, key, &provider()).with_context(|| {
        format!(
            "tls.key_file {} does not go with tls.cert_file {}",
            key_file.display(),
            cert_file.display()
        )
    })?;
    Ok((key, not_after))
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
    fn new(
        listener: TcpListener,
        acceptor: Acceptor,
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
    acceptor: Acceptor,
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
        let (acceptor, tx) = (acceptor.current(), tx.clone());
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
