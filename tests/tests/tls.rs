//! TLS, with certificates generated here: gRPC and HTTP served over TLS to clients that trust
//! the CA and to no one else, mutual TLS, the plaintext health-only listener, the refusal to
//! serve plaintext beyond loopback, the CLIs' `https://` endpoints, and the backends
//! (PostgreSQL, RabbitMQ, Redis) reached over TLS.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use minyi::app::{App, Mode, Service};
use minyi::config::{Config, TlsConfig};
use minyi::tls::ClientTls;
use minyi_core::auth::Role;
use minyi_proto::common::{Caller, Location};
use minyi_proto::intake::intake_service_client::IntakeServiceClient;
use minyi_proto::intake::{GetTicketRequest, SubmitPetitionRequest};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use support::{Bearer, TestApp, spawn_with};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// A certificate authority of the test's own, writing PEM files into a temporary directory.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertifiedIssuer<'static, KeyPair>,
}

impl Pki {
    fn new(name: &str) -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).unwrap();
        Pki { dir, ca }
    }

    fn ca_file(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// A leaf certificate and its key, as `{name}.crt` and `{name}.key`.
    fn issue(
        &self,
        name: &str,
        sans: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> (PathBuf, PathBuf) {
        let params =
            CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        self.sign(name, usage, params)
    }

    fn sign(
        &self,
        name: &str,
        usage: ExtendedKeyUsagePurpose,
        mut params: CertificateParams,
    ) -> (PathBuf, PathBuf) {
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let issuer: &Issuer<'_, KeyPair> = &self.ca;
        let cert = params.signed_by(&key, issuer).unwrap();
        let (cert_file, key_file) = (
            self.dir.path().join(format!("{name}.crt")),
            self.dir.path().join(format!("{name}.key")),
        );
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }

    fn server(&self) -> (PathBuf, PathBuf) {
        self.issue(
            "server",
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    /// A server certificate that expires at the start of a day (year, month, day).
    fn server_until(&self, (y, m, d): (i32, u8, u8)) -> (PathBuf, PathBuf) {
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        params.not_after = rcgen::date_time_ymd(y, m, d);
        self.sign("server", ExtendedKeyUsagePurpose::ServerAuth, params)
    }

    fn client(&self, name: &str) -> ClientTls {
        let (cert, key) = self.issue(name, &[], ExtendedKeyUsagePurpose::ClientAuth);
        ClientTls {
            ca_file: None,
            cert_file: Some(cert),
            key_file: Some(key),
        }
    }
}

fn trusting(ca_file: &Path) -> ClientTls {
    ClientTls {
        ca_file: Some(ca_file.to_owned()),
        ..ClientTls::default()
    }
}

/// The whole embedded cluster (no backends needed) with the given listener TLS and a
/// plaintext health listener; `minyi serve` runs the same server code.
async fn spawn_tls(tls: TlsConfig) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    support::small_catalog(&catalog_dir);
    let config = Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        health_addr: Some("127.0.0.1:0".parse().unwrap()),
        data_dir: dir.path().to_owned(),
        catalog_dir: Some(catalog_dir),
        classifier_examples_per_item: 20,
        tls,
        ..Config::default()
    };
    spawn_with(config, Mode::Embedded, Some(dir)).await
}

fn server_tls(pki: &Pki) -> TlsConfig {
    let (cert, key) = pki.server();
    TlsConfig {
        cert_file: Some(cert),
        key_file: Some(key),
        ..TlsConfig::default()
    }
}

/// The overall health status as `uri` answers it, or the error (connect or call) as text.
async fn health(uri: &str, tls: &ClientTls) -> Result<ServingStatus, String> {
    let channel = minyi::tls::connect(uri, tls)
        .await
        .map_err(|e| format!("{e:#}"))?;
    let r = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|s| format!("{s:?}"))?;
    Ok(r.into_inner().status())
}

fn petition(key: &str) -> SubmitPetitionRequest {
    SubmitPetitionRequest {
        channel: 1,
        text: "小区门口垃圾堆积三天无人清理".into(),
        caller: Some(Caller {
            anonymous: true,
            ..Caller::default()
        }),
        location: Some(Location {
            address: "光明街道东周社区".into(),
            point: None,
        }),
        idempotency_key: key.into(),
        ..SubmitPetitionRequest::default()
    }
}

async fn agent(app: &TestApp, uri: &str, tls: &ClientTls) -> support::Intake {
    let channel = minyi::tls::connect(uri, tls).await.unwrap();
    let header = format!("Bearer {}", app.token(Role::Agent))
        .parse()
        .unwrap();
    IntakeServiceClient::with_interceptor(channel, Bearer(Some(header)))
}

/// `GET path` over TLS trusting `ca_file`: the whole response, as text.
async fn https_get(addr: SocketAddr, ca_file: &Path, path: &str) -> std::io::Result<String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_file).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::IpAddress(addr.ip().into()), tcp)
        .await?;
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    Ok(read_all(&mut tls).await)
}

/// Everything the peer sends until it closes (or fails: what came before counts).
async fn read_all(stream: &mut (impl tokio::io::AsyncRead + Unpin)) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn grpc_and_http_are_served_over_tls_to_clients_that_trust_the_ca() {
    let pki = Pki::new("Minyi test CA");
    let app = spawn_tls(server_tls(&pki)).await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let trusted = trusting(&pki.ca_file());

    assert_eq!(health(&https, &trusted).await, Ok(ServingStatus::Serving));
    let mut agent = agent(&app, &https, &trusted).await;
    let r = agent
        .submit_petition(petition("tls-1"))
        .await
        .unwrap()
        .into_inner();
    assert!(r.created);
    let id = r.ticket.unwrap().id;
    let got = agent
        .get_ticket(GetTicketRequest { id: id.clone() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.id, id);

    // A plaintext client gets nothing from the TLS listener.
    let plain = health(&format!("http://{}", app.grpc), &ClientTls::default()).await;
    assert!(plain.is_err(), "plaintext gRPC was answered: {plain:?}");
    // Neither does a client that trusts only the system's CAs, nor one that trusts another CA.
    let system = health(&https, &ClientTls::default()).await;
    assert!(system.is_err(), "{system:?}");
    let other = Pki::new("Another CA");
    let e = health(&https, &trusting(&other.ca_file()))
        .await
        .unwrap_err();
    assert!(
        e.contains("certificate") || e.contains("UnknownIssuer"),
        "{e}"
    );
    // A CA file with an http:// endpoint is a mistake, not a silent plaintext call.
    let e = health(&format!("http://{}", app.grpc), &trusted)
        .await
        .unwrap_err();
    assert!(e.contains("https://"), "{e}");

    // HTTP (health, metrics, Open311, dashboard) over TLS too; plaintext HTTP gets no answer.
    let ok = https_get(app.http, &pki.ca_file(), "/healthz")
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let metrics = https_get(app.http, &pki.ca_file(), "/metrics")
        .await
        .unwrap();
    assert!(metrics.contains("minyi_rpc_requests_total"), "{metrics}");
    assert!(
        https_get(app.http, &other.ca_file(), "/healthz")
            .await
            .is_err()
    );
    let mut tcp = TcpStream::connect(app.http).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let plain = read_all(&mut tcp).await;
    assert!(!plain.contains("HTTP/1.1 200"), "{plain}");

    // The probes' listener: plaintext, health and nothing else.
    let health_uri = format!("http://{}", app.health.unwrap());
    assert_eq!(
        health(&health_uri, &ClientTls::default()).await,
        Ok(ServingStatus::Serving)
    );
    let channel = minyi::tls::connect(&health_uri, &ClientTls::default())
        .await
        .unwrap();
    let header = format!("Bearer {}", app.token(Role::Agent))
        .parse()
        .unwrap();
    let status = IntakeServiceClient::with_interceptor(channel, Bearer(Some(header)))
        .get_ticket(GetTicketRequest { id })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status:?}");
    app.stop().await;
}

#[tokio::test]
async fn a_self_signed_certificate_is_its_own_ca_file() {
    // As with cert-manager's self-signed issuer (k8s/overlays/dev): ca.crt is the certificate.
    let dir = tempfile::tempdir().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (cert_file, key_file) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let app = spawn_tls(TlsConfig {
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file),
        ..TlsConfig::default()
    })
    .await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    assert_eq!(
        health(&https, &trusting(&cert_file)).await,
        Ok(ServingStatus::Serving)
    );
    app.stop().await;
}

#[tokio::test]
async fn mutual_tls_refuses_grpc_clients_without_a_certificate_from_the_client_ca() {
    let pki = Pki::new("Minyi test CA");
    let clients = Pki::new("Minyi clients CA");
    let app = spawn_tls(TlsConfig {
        client_ca_file: Some(clients.ca_file()),
        ..server_tls(&pki)
    })
    .await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());

    let no_certificate = health(&https, &trusting(&pki.ca_file())).await;
    assert!(no_certificate.is_err(), "{no_certificate:?}");
    let with = |client: ClientTls| ClientTls {
        ca_file: Some(pki.ca_file()),
        ..client
    };
    let desk = with(clients.client("agent-desk-1"));
    assert_eq!(health(&https, &desk).await, Ok(ServingStatus::Serving));
    let r = agent(&app, &https, &desk)
        .await
        .submit_petition(petition("mtls-1"))
        .await
        .unwrap();
    assert!(r.into_inner().created);
    // A client certificate from another CA (here the server's own) is refused as well.
    let stranger = health(&https, &with(pki.client("stranger"))).await;
    assert!(stranger.is_err(), "{stranger:?}");
    // The HTTP listener keeps server-only TLS: browsers and Prometheus carry no certificate.
    let ok = https_get(app.http, &pki.ca_file(), "/healthz")
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    app.stop().await;
}

#[tokio::test]
async fn plaintext_beyond_loopback_is_refused_unless_explicitly_allowed() {
    let exposed = Config {
        grpc_addr: "0.0.0.0:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    };
    // `minyi serve`: refused before any backend is dialled (none is configured here).
    let e = match App::build(exposed.clone(), Mode::Production(vec![Service::Intake])).await {
        Ok(_) => panic!("a plaintext listener on 0.0.0.0 was accepted"),
        Err(e) => format!("{e:#}"),
    };
    assert!(e.contains("grpc_addr = 0.0.0.0:0"), "{e}");
    assert!(
        e.contains("tls.allow_plaintext") && e.contains("MINYI_TLS_ALLOW_PLAINTEXT"),
        "{e}"
    );
    assert!(e.contains("MINYI_TLS_CERT_FILE"), "{e}");

    // With the explicit opt-out it serves (embedded backends: no services needed).
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    support::small_catalog(&catalog_dir);
    let allowed = Config {
        data_dir: dir.path().to_owned(),
        catalog_dir: Some(catalog_dir),
        classifier_examples_per_item: 20,
        tls: TlsConfig {
            allow_plaintext: true,
            ..TlsConfig::default()
        },
        ..exposed
    };
    let app = spawn_with(allowed, Mode::Embedded, Some(dir)).await;
    let uri = format!("http://127.0.0.1:{}", app.grpc.port());
    assert_eq!(
        health(&uri, &ClientTls::default()).await,
        Ok(ServingStatus::Serving)
    );
    app.stop().await;
}

#[tokio::test]
async fn unusable_certificate_files_fail_the_start_naming_the_setting() {
    let pki = Pki::new("Minyi test CA");
    let (cert, _) = pki.server();
    let (_, other_key) = pki.issue("other", &["localhost"], ExtendedKeyUsagePurpose::ServerAuth);
    let build = |tls: TlsConfig| async move {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            data_dir: dir.path().to_owned(),
            tls,
            ..Config::default()
        };
        match App::build(config, Mode::Embedded).await {
            Ok(_) => panic!("built with unusable TLS files"),
            Err(e) => format!("{e:#}"),
        }
    };
    let mismatched = build(TlsConfig {
        cert_file: Some(cert.clone()),
        key_file: Some(other_key),
        ..TlsConfig::default()
    })
    .await;
    assert!(mismatched.contains("tls.key_file"), "{mismatched}");
    let missing = build(TlsConfig {
        cert_file: Some(pki.dir.path().join("nope.crt")),
        key_file: Some(pki.dir.path().join("server.key")),
        ..TlsConfig::default()
    })
    .await;
    assert!(missing.contains("tls.cert_file"), "{missing}");
    let half = build(TlsConfig {
        cert_file: Some(cert),
        ..TlsConfig::default()
    })
    .await;
    assert!(half.contains("tls.key_file"), "{half}");
}

/// The built binaries, next to each other in the target directory.
fn bin(name: &str) -> PathBuf {
    let bin = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
        .join("debug")
        .join(name);
    assert!(
        bin.exists(),
        "{} missing: `cargo build -p minyi --bins`",
        bin.display()
    );
    bin
}

fn command(name: &str) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(bin(name));
    for var in [
        "MINYI_CONFIG",
        "MINYI_ENDPOINT",
        "MINYI_TOKEN",
        "MINYI_CA_FILE",
        "MINYI_CLIENT_CERT",
        "MINYI_CLIENT_KEY",
        "MINYI_HANDLER_ENDPOINT",
        "MINYI_HANDLER_TOKEN",
        "MINYI_HANDLER_CONFIG",
        "MINYI_HANDLER_CA_FILE",
        "MINYI_HANDLER_CLIENT_CERT",
        "MINYI_HANDLER_CLIENT_KEY",
    ] {
        cmd.env_remove(var);
    }
    cmd.kill_on_drop(true);
    cmd
}

#[tokio::test]
async fn the_clis_dial_https_endpoints_with_a_ca_file_and_a_client_certificate() {
    let pki = Pki::new("Minyi test CA");
    let clients = Pki::new("Minyi clients CA");
    let app = spawn_tls(TlsConfig {
        client_ca_file: Some(clients.ca_file()),
        ..server_tls(&pki)
    })
    .await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let desk = clients.client("agent-desk-1");
    let (cert, key) = (desk.cert_file.unwrap(), desk.key_file.unwrap());
    let home = tempfile::tempdir().unwrap();

    let out = command("minyi")
        .args([
            "petition",
            "submit",
            "--text",
            "路灯坏了好几天",
            "--anonymous",
        ])
        .args(["--endpoint", &https, "--json"])
        .arg("--ca-file")
        .arg(pki.ca_file())
        .env("MINYI_CLIENT_CERT", &cert)
        .env("MINYI_CLIENT_KEY", &key)
        .env("MINYI_TOKEN", app.token(Role::Agent))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(created["created"], true, "{stdout}");

    // Without the CA file the certificate is not trusted, and the error says where it went.
    let out = command("minyi")
        .args(["petition", "list", "--endpoint", &https])
        .env("MINYI_TOKEN", app.token(Role::Agent))
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot reach Minyi at {https}")),
        "{stderr}"
    );

    // minyi-handler: the same options, from its own variables.
    let out = command("minyi-handler")
        .args(["inbox", "--json", "--endpoint", &https])
        .env("HOME", home.path())
        .env("MINYI_HANDLER_TOKEN", app.token(Role::Handler))
        .env("MINYI_HANDLER_CA_FILE", pki.ca_file())
        .env("MINYI_HANDLER_CLIENT_CERT", &cert)
        .env("MINYI_HANDLER_CLIENT_KEY", &key)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the client certificate, mutual TLS refuses the handler.
    let out = command("minyi-handler")
        .args(["inbox", "--endpoint", &https])
        .env("HOME", home.path())
        .env("MINYI_HANDLER_TOKEN", app.token(Role::Handler))
        .env("MINYI_HANDLER_CA_FILE", pki.ca_file())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    app.stop().await;
}

/// A TLS front for a plaintext backend on 127.0.0.1 (as a TLS-enabled broker would be), with a
/// server certificate from `pki`; counts the TLS sessions it carried.
async fn tls_front(pki: &Pki, upstream: String) -> (u16, Arc<AtomicUsize>) {
    let (cert, key) = pki.server();
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        CertificateDer::pem_file_iter(&cert)
            .unwrap()
            .map(Result::unwrap)
            .collect(),
        PrivateKeyDer::from_pem_file(&key).unwrap(),
    )
    .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let sessions = Arc::new(AtomicUsize::new(0));
    let counted = sessions.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, upstream, counted) =
                (acceptor.clone(), upstream.clone(), counted.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                counted.fetch_add(1, Ordering::SeqCst);
                if let Ok(mut up) = TcpStream::connect(&upstream).await {
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut up).await;
                }
            });
        }
    });
    (port, sessions)
}

#[tokio::test]
async fn a_service_reaches_postgresql_rabbitmq_and_redis_over_tls() {
    let pki = Pki::new("Minyi backends CA");
    // amqp://user:pass@host:port/vhost → amqps://user:pass@127.0.0.1:<front>/vhost
    let amqp = minyi_core::testing::amqp_url();
    let (auth, rest) = amqp
        .strip_prefix("amqp://")
        .and_then(|r| r.split_once('@'))
        .unwrap();
    let (hostport, vhost) = rest.split_once('/').unwrap();
    let (amqp_port, amqp_sessions) = tls_front(&pki, hostport.to_owned()).await;
    let amqps = format!("amqps://{auth}@127.0.0.1:{amqp_port}/{vhost}");
    let redis = minyi_core::testing::redis_url();
    let (hostport, db) = redis
        .strip_prefix("redis://")
        .and_then(|r| r.split_once('/'))
        .unwrap();
    let (redis_port, redis_sessions) = tls_front(&pki, hostport.to_owned()).await;
    let rediss = format!("rediss://127.0.0.1:{redis_port}/{db}");

    // Not trusting the CA, neither client gets through.
    let untrusted = minyi_core::bus::AmqpBus::connect(minyi_core::bus::AmqpConfig::new(
        &amqps,
        &minyi_core::testing::random_name(),
    ))
    .await;
    assert!(untrusted.is_err(), "amqps without the CA connected");
    let untrusted = redis::Client::open(rediss.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await;
    assert!(untrusted.is_err(), "rediss without the CA connected");

    // PostgreSQL: TLS from the URL (Debian's server has ssl on, with its snakeoil certificate).
    let database_url = minyi_core::testing::fresh_database()
        .await
        .unwrap()
        .replace("sslmode=disable", "sslmode=require");
    assert!(database_url.contains("sslmode=require"), "{database_url}");
    let mut pg = <sqlx::PgConnection as sqlx::Connection>::connect(&database_url)
        .await
        .unwrap();
    let ssl: bool = sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        .fetch_one(&mut pg)
        .await
        .unwrap();
    assert!(ssl, "sslmode=require did not use TLS");

    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    support::small_catalog(&catalog_dir);
    let config = Config {
        database_url: Some(database_url),
        amqp_url: Some(amqps),
        amqp_ca_file: Some(pki.ca_file()),
        redis_url: Some(rediss),
        redis_ca_file: Some(pki.ca_file()),
        catalog_dir: Some(catalog_dir),
        model_path: Some(dir.path().join("model.bin")),
        tls: server_tls(&pki),
        ..support::production_config().await
    };
    let app = spawn_with(config, Mode::Production(vec![Service::Intake]), Some(dir)).await;
    assert!(amqp_sessions.load(Ordering::SeqCst) > 0);
    assert!(redis_sessions.load(Ordering::SeqCst) > 0);
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let r = agent(&app, &https, &trusting(&pki.ca_file()))
        .await
        .submit_petition(petition("backends-tls-1"))
        .await
        .unwrap();
    assert!(r.into_inner().created);
    // The relay publishes the ticket's event to RabbitMQ through the TLS front.
    let store = support::store(&app);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while store.outbox_len().await.unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox was not relayed over amqps"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.stop().await;
}

/// `minyi health`, the container image's HEALTHCHECK: the configured plaintext health port
/// answers, `https://` answers with the CA and not without it, a closed port fails.
#[tokio::test]
async fn minyi_health_asks_the_health_port_or_https_with_the_ca() {
    let pki = Pki::new("Minyi test CA");
    let app = spawn_tls(server_tls(&pki)).await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let health_port = app.health.expect("a health listener").to_string();

    let out = command("minyi")
        .arg("health")
        .env("MINYI_HEALTH_ADDR", &health_port)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("serving"));

    let out = command("minyi")
        .args(["health", "--endpoint", &https, "--ca-file"])
        .arg(pki.ca_file())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = command("minyi")
        .args(["health", "--endpoint", &https])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success(), "no CA, yet it trusted the test CA");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let out = command("minyi")
        .args(["health", "--endpoint", &format!("http://127.0.0.1:{port}")])
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot reach"));
    app.stop().await;
}

/// A certificate renewed in place (as cert-manager rewrites a Secret's files) is served from
/// the next connection on, on gRPC and HTTP, without a restart; files that do not go together
/// (a renewal caught between its two writes) leave the certificate in force.
#[tokio::test]
async fn a_renewed_certificate_is_served_without_a_restart() {
    let old_ca = Pki::new("Minyi test CA");
    let (cert_file, key_file) = old_ca.server();
    let app = spawn_tls(TlsConfig {
        cert_file: Some(cert_file.clone()),
        key_file: Some(key_file.clone()),
        reload_secs: 1,
        ..TlsConfig::default()
    })
    .await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let old = trusting(&old_ca.ca_file());
    let new_ca = Pki::new("Renewed CA");
    let (new_cert, new_key) = new_ca.server_until((2031, 5, 17));
    assert_eq!(health(&https, &old).await, Ok(ServingStatus::Serving));
    let expiry = |metrics: String| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("minyi_tls_certificate_expiry_timestamp_seconds "))
            .map(str::to_owned)
    };
    let metrics = https_get(app.http, &old_ca.ca_file(), "/metrics").await;
    // rcgen's default end of validity.
    let until = rcgen::date_time_ymd(4096, 1, 1)
        .unix_timestamp()
        .to_string();
    assert_eq!(expiry(metrics.unwrap()), Some(until));

    // Half a renewal: the new certificate beside the old key. Refused; the old one stays.
    std::fs::copy(&new_cert, &cert_file).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(health(&https, &old).await, Ok(ServingStatus::Serving));

    // The whole renewal: from the next connection on, the new certificate.
    std::fs::copy(&new_key, &key_file).unwrap();
    let renewed = trusting(&new_ca.ca_file());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while health(&https, &renewed).await != Ok(ServingStatus::Serving) {
        assert!(
            std::time::Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(
        health(&https, &old).await.is_err(),
        "still the old certificate"
    );
    let ok = https_get(app.http, &new_ca.ca_file(), "/healthz")
        .await
        .unwrap();
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert!(
        https_get(app.http, &old_ca.ca_file(), "/healthz")
            .await
            .is_err()
    );
    let metrics = https_get(app.http, &new_ca.ca_file(), "/metrics").await;
    let until = rcgen::date_time_ymd(2031, 5, 17)
        .unix_timestamp()
        .to_string();
    assert_eq!(expiry(metrics.unwrap()), Some(until));
    app.stop().await;
}

/// A replaced mutual-TLS client CA is trusted from the next connection on, without a restart;
/// a file caught half written keeps the CA in force.
#[tokio::test]
async fn a_replaced_client_ca_is_trusted_without_a_restart() {
    let pki = Pki::new("Minyi test CA");
    let old_clients = Pki::new("Minyi clients CA");
    let new_clients = Pki::new("Minyi clients CA 2");
    let dir = tempfile::tempdir().unwrap();
    let client_ca = dir.path().join("client-ca.crt");
    std::fs::copy(old_clients.ca_file(), &client_ca).unwrap();
    let app = spawn_tls(TlsConfig {
        client_ca_file: Some(client_ca.clone()),
        reload_secs: 1,
        ..server_tls(&pki)
    })
    .await;
    let https = format!("https://127.0.0.1:{}", app.grpc.port());
    let with = |client: ClientTls| ClientTls {
        ca_file: Some(pki.ca_file()),
        ..client
    };
    let old_desk = with(old_clients.client("desk-old"));
    let new_desk = with(new_clients.client("desk-new"));
    assert_eq!(health(&https, &old_desk).await, Ok(ServingStatus::Serving));
    assert!(health(&https, &new_desk).await.is_err());

    // Half a write: not a CA; the one in force stays.
    std::fs::write(&client_ca, "-----BEGIN CERTIFICATE-----\nMIIB").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(health(&https, &old_desk).await, Ok(ServingStatus::Serving));

    std::fs::copy(new_clients.ca_file(), &client_ca).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while health(&https, &new_desk).await != Ok(ServingStatus::Serving) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new client CA was never trusted"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let old = health(&https, &old_desk).await;
    assert!(old.is_err(), "the old client CA is still trusted: {old:?}");
    app.stop().await;
}
