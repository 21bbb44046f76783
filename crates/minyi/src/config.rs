//! Configuration of every Minyi process: defaults → file (`--config`) → `MINYI_…` environment
//! variables. This is the only place that reads the environment.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// gRPC listen address (`MINYI_GRPC_ADDR`).
    pub grpc_addr: SocketAddr,
    /// HTTP listen address: health, metrics, dashboard (`MINYI_HTTP_ADDR`).
    pub http_addr: SocketAddr,
    /// A plaintext listener that serves only `grpc.health.v1.Health` (`MINYI_HEALTH_ADDR`), for
    /// probes that cannot speak TLS (the kubelet's gRPC probes). Unset: none.
    pub health_addr: Option<SocketAddr>,
    /// TLS of the gRPC and HTTP listeners (`MINYI_TLS_*`; the `[tls]` table in the file).
    pub tls: TlsConfig,
    /// Embedded mode: where the SQLite database, generated secrets and dev credentials live.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`MINYI_DATABASE_URL`); production mode.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// RabbitMQ URL (`MINYI_AMQP_URL`); production mode. `amqps://…:5671` for TLS.
    pub amqp_url: Option<String>,
    /// PEM CA bundle trusted for `amqps://` in addition to the system store
    /// (`MINYI_AMQP_CA_FILE`).
    pub amqp_ca_file: Option<PathBuf>,
    /// Prefix of every exchange and queue name.
    pub amqp_prefix: String,
    /// Delete queues idle this long, in seconds (`MINYI_AMQP_QUEUE_EXPIRES_SECS`). For tests and
    /// throwaway prefixes only: unset in production, where queues must outlive any outage.
    pub amqp_queue_expires_secs: Option<u64>,
    /// The most events one RabbitMQ message carries (`MINYI_AMQP_PACK`): a publish's
    /// consecutive events of one routing key travel together, since the broker's cost is per
    /// message. 1 sends each alone, as versions before packs did: set it while a rolling
    /// upgrade from such a version still runs their consumers.
    pub amqp_pack: usize,
    /// Redis URL (`MINYI_REDIS_URL`); production mode. `rediss://` for TLS.
    pub redis_url: Option<String>,
    /// PEM CA bundle trusted for `rediss://` instead of the system store
    /// (`MINYI_REDIS_CA_FILE`).
    pub redis_ca_file: Option<PathBuf>,
    pub redis_prefix: String,
    /// Active personal-data key id and key (base64, 32 bytes).
    pub encryption_key_id: String,
    #[serde(serialize_with = "redact")]
    pub encryption_key: Option<SecretString>,
    /// Retired keys still needed to read old data: `id:base64,id:base64`.
    #[serde(serialize_with = "redact")]
    pub retired_keys: Option<SecretString>,
    /// HS256 secret for bearer tokens.
    #[serde(serialize_with = "redact")]
    pub jwt_secret: Option<SecretString>,
    /// Longest petition text, in characters.
    pub max_text_chars: usize,
    /// The Open311 `jurisdiction_id` this deployment answers for (`MINYI_OPEN311_JURISDICTION`).
    pub open311_jurisdiction: String,
    /// Run the outbox relay in intake processes.
    pub relay_enabled: bool,
    /// Shortest time between two outbox claims of a busy relay, in milliseconds
    /// (`MINYI_RELAY_MIN_INTERVAL_MS`): the events of the commits in between go out together.
    /// An idle relay claims at once.
    pub relay_min_interval_ms: u64,
    /// Publish right after commit (`MINYI_RELAY_HANDOFF`, production only): intake's group
    /// insert, classification's and dispatch's batch commits lease their outbox rows to this
    /// process's relay and hand it the events, which it publishes at once instead of at its
    /// next claim.
    pub relay_handoff: bool,
    /// `text` (default) or `json` logs.
    pub log_format: String,
    /// OTLP/gRPC collector for traces, e.g. `http://otel-collector:4317`
    /// (`MINYI_OTLP_ENDPOINT`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`). Unset: no
    /// trace export (the default, and in embedded mode).
    pub otlp_endpoint: Option<String>,
    /// Versioned catalog directory (`minyi catalog import --dir`); defaults to
    /// `{data_dir}/catalog`. Embedded mode keeps its catalog and training examples there (the
    /// 3,469-item demo catalog is imported when it is empty); production keeps them in the
    /// database and reads this directory (active version and examples) only to seed an empty
    /// one.
    pub catalog_dir: Option<PathBuf>,
    /// Saved classifier; defaults to `{data_dir}/classifier.model`. Trained from the catalog
    /// when missing or older than the catalog.
    pub model_path: Option<PathBuf>,
    /// Synthetic training petitions per catalog item when training from the catalog.
    pub classifier_examples_per_item: usize,
    /// Precision the automatic dispatch must reach (`MINYI_AUTO_DISPATCH_PRECISION`, in
    /// (0, 1]): training picks the lowest confidence whose cross-validated precision reaches
    /// it with one standard error to spare; petitions below go to a human dispatcher with suggestions. A saved model trained
    /// for another target is retrained at start.
    pub auto_dispatch_precision: f64,
    /// The threshold's safety margin in standard errors (`MINYI_AUTO_DISPATCH_MARGIN_Z`, ≥ 0,
    /// default 1): the Wilson lower bound of the cross-validated precision must reach the
    /// target. `0` takes the measured precision as it is: more automatic dispatch, and on
    /// fresh petitions a precision about at the target rather than above it. With little
    /// training data (fewer than ~50 confident internal-CV predictions) no threshold clears
    /// the margin and every petition goes to a dispatcher. A saved model trained with another
    /// margin is retrained at start.
    pub auto_dispatch_margin_z: f64,
    /// Unit-level automatic dispatch (`MINYI_AUTO_DISPATCH_BY_UNIT`; unset: on in `minyi dev`,
    /// whose demo catalog has no dispatch history, off in `minyi serve`): when the catalog item is uncertain but the unit that handles the likely
    /// items is sure — its summed confidence reaches a threshold chosen in training for the
    /// same precision and margin — the petition goes to that unit with the best item as a
    /// guess the handler may correct, under the tightest time limits of the unit's candidate
    /// items.
    pub auto_dispatch_by_unit: Option<bool>,
    /// How often classification checks the catalog store for a newly activated version or new
    /// training examples, and retrains without a restart, in seconds.
    pub catalog_poll_secs: u64,
    /// Least time between two retrainings for new training examples, in seconds: examples
    /// recorded meanwhile are learnt together at the next one (each retraining takes a few
    /// seconds of every core). A newly activated catalog version is trained for at once.
    pub retrain_min_secs: u64,
    /// Days within which a similar petition at the same community is a duplicate.
    pub duplicate_window_days: i64,
    /// Text similarity (0-1) from which a petition is linked as a duplicate.
    pub duplicate_threshold: f64,
    /// Fractions of a time limit at which the unit is warned.
    pub sla_warning_fractions: Vec<f64>,
    /// How often the routing state and the SLA timers are checked for loss (Redis flushed)
    /// and rebuilt from PostgreSQL, in seconds.
    pub reconcile_secs: u64,
    /// Most events the dispatch consumer applies and commits together, and the deadline
    /// consumer re-plans together (`MINYI_DISPATCH_BATCH`); batches form from what has
    /// arrived. 1 handles each on its own.
    pub dispatch_batch: usize,
    /// Most received petitions the classification consumer decides and commits together
    /// (`MINYI_CLASSIFICATION_BATCH`); batches form from what has arrived. 1 commits each
    /// petition on its own.
    pub classification_batch: usize,
}

/// TLS of the listeners. With `cert_file` and `key_file` set, gRPC and HTTP are served over
/// TLS only; without them, a listener beyond loopback needs `allow_plaintext`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first (`MINYI_TLS_CERT_FILE`; `tls.crt` of a
    /// `kubernetes.io/tls` Secret).
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file` (`MINYI_TLS_KEY_FILE`).
    pub key_file: Option<PathBuf>,
    /// PEM CA bundle: gRPC callers must present a certificate it signed (mutual TLS;
    /// `MINYI_TLS_CLIENT_CA_FILE`). The HTTP listener keeps server-only TLS (browsers,
    /// Open311 apps, Prometheus).
    pub client_ca_file: Option<PathBuf>,
    /// Serve plaintext on a non-loopback address anyway (`MINYI_TLS_ALLOW_PLAINTEXT`): only on
    /// a private network, or behind a proxy that terminates TLS.
    pub allow_plaintext: bool,
    /// How often `cert_file`, `key_file` and `client_ca_file` are checked for a change, which
    /// new connections then get without a restart, in seconds (`MINYI_TLS_RELOAD_SECS`).
    pub reload_secs: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            cert_file: None,
            key_file: None,
            client_ca_file: None,
            allow_plaintext: false,
            reload_secs: 30,
        }
    }
}

impl TlsConfig {
    /// Whether the listeners serve TLS.
    pub fn enabled(&self) -> bool {
        self.cert_file.is_some() || self.key_file.is_some()
    }
}

fn redact<S: serde::Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(_) => s.serialize_str("<redacted>"),
        None => s.serialize_none(),
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            grpc_addr: SocketAddr::from(([127, 0, 0, 1], 50051)),
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            health_addr: None,
            tls: TlsConfig::default(),
            data_dir: PathBuf::from("data/dev"),
            database_url: None,
            database_max_connections: 16,
            amqp_url: None,
            amqp_ca_file: None,
            amqp_prefix: "minyi".into(),
            amqp_queue_expires_secs: None,
            amqp_pack: 32,
            redis_url: None,
            redis_ca_file: None,
            redis_prefix: "minyi".into(),
            encryption_key_id: "k1".into(),
            encryption_key: None,
            retired_keys: None,
            jwt_secret: None,
            max_text_chars: 20_000,
            open311_jurisdiction: minyi_intake::open311::DEFAULT_JURISDICTION.to_owned(),
            relay_enabled: true,
            relay_min_interval_ms: 20,
            relay_handoff: true,
            log_format: "text".into(),
            otlp_endpoint: None,
            catalog_dir: None,
            model_path: None,
            classifier_examples_per_item: 4,
            auto_dispatch_precision: 0.98,
            auto_dispatch_margin_z: 1.0,
            auto_dispatch_by_unit: None,
            catalog_poll_secs: 10,
            retrain_min_secs: 60,
            duplicate_window_days: 3,
            duplicate_threshold: 0.6,
            sla_warning_fractions: vec![0.75, 0.9],
            reconcile_secs: 30,
            dispatch_batch: 256,
            classification_batch: 256,
        }
    }
}

impl Config {
    /// Defaults, then the file (if any), then `MINYI_*` variables.
    pub fn load(file: Option<&Path>) -> Result<Config, Box<figment::Error>> {
        let mut f = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            f = f.merge(Toml::file_exact(path));
        } else if let Ok(path) = std::env::var("MINYI_CONFIG") {
            f = f.merge(Toml::file_exact(path));
        }
        let mut config: Config = f.merge(env()).extract().map_err(Box::new)?;
        let p = config.auto_dispatch_precision;
        if !(p > 0.0 && p <= 1.0) {
            return Err(Box::new(figment::Error::from(format!(
                "auto_dispatch_precision (MINYI_AUTO_DISPATCH_PRECISION) must be in (0, 1], \
                 got {p}"
            ))));
        }
        let z = config.auto_dispatch_margin_z;
        if !(z >= 0.0 && z.is_finite()) {
            return Err(Box::new(figment::Error::from(format!(
                "auto_dispatch_margin_z (MINYI_AUTO_DISPATCH_MARGIN_Z) must be a finite number \
                 ≥ 0, got {z}"
            ))));
        }
        if config.otlp_endpoint.is_none() {
            config.otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty());
        }
        Ok(config)
    }

    /// Where a service would serve plaintext beyond loopback without being told it may: the
    /// error names the settings. Loopback (`minyi dev`, tests) never needs TLS.
    pub fn check_plaintext(&self) -> Result<(), String> {
        if self.tls.enabled() || self.tls.allow_plaintext {
            return Ok(());
        }
        let exposed: Vec<String> = [("grpc_addr", self.grpc_addr), ("http_addr", self.http_addr)]
            .into_iter()
            .filter(|(_, a)| !a.ip().is_loopback())
            .map(|(k, a)| format!("{k} = {a}"))
            .collect();
        if exposed.is_empty() {
            return Ok(());
        }
        Err(format!(
            "refusing to serve plaintext beyond loopback ({}): set tls.cert_file and tls.key_file \
             (MINYI_TLS_CERT_FILE, MINYI_TLS_KEY_FILE), or tls.allow_plaintext = true \
             (MINYI_TLS_ALLOW_PLAINTEXT=true) on a private network or behind a TLS-terminating proxy",
            exposed.join(", ")
        ))
    }

    /// The TOML of the effective configuration, secrets redacted.
    pub fn dump(&self) -> String {
        toml_like(&serde_json::to_value(self).unwrap_or_default())
    }

    pub fn catalog_dir(&self) -> PathBuf {
        self.catalog_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("catalog"))
    }

    pub fn model_path(&self) -> PathBuf {
        self.model_path
            .clone()
            .unwrap_or_else(|| self.data_dir.join("classifier.model"))
    }

    pub fn retired_key_pairs(&self) -> Vec<(String, String)> {
        self.retired_keys
            .as_ref()
            .map(|s| {
                s.expose_secret()
                    .split(',')
                    .filter_map(|p| p.split_once(':'))
                    .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// `MINYI_*` variables. Keys are the variable names without `MINYI_`, in lower case;
/// `MINYI_TLS_X` is `x` of the `[tls]` table. The client commands' variables are not settings.
fn env() -> Env {
    Env::prefixed("MINYI_")
        .ignore(&[
            "CONFIG",
            "TOKEN",
            "ENDPOINT",
            "CA_FILE",
            "CLIENT_CERT",
            "CLIENT_KEY",
        ])
        // Keys keep the variables' case here; they are lowered after the mapping.
        .map(
            |key| match key.as_str().to_ascii_lowercase().strip_prefix("tls_") {
                Some(rest) => format!("tls.{rest}").into(),
                None => key.into(),
            },
        )
}

fn toml_like(v: &serde_json::Value) -> String {
    let mut out = String::new();
    let mut tables = String::new();
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            match v {
                serde_json::Value::Null => out.push_str(&format!("# {k} = (unset)\n")),
                serde_json::Value::Object(_) => {
                    tables.push_str(&format!("\n[{k}]\n{}", toml_like(v)));
                }
                other => out.push_str(&format!("{k} = {other}\n")),
            }
        }
    }
    out + &tables
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `minyi catalog` without `--dir` works on the catalog the services use by default.
    #[test]
    fn the_command_line_default_catalog_is_the_services_default() {
        assert_eq!(
            Config::default().catalog_dir(),
            PathBuf::from(minyi_catalog::cli::DEFAULT_DIR)
        );
    }

    #[test]
    fn plaintext_beyond_loopback_is_refused_unless_allowed_or_tls() {
        let loopback = Config::default();
        assert_eq!(loopback.check_plaintext(), Ok(()));
        let exposed = Config {
            grpc_addr: "0.0.0.0:50051".parse().unwrap(),
            ..Config::default()
        };
        let e = exposed.check_plaintext().unwrap_err();
        assert!(e.contains("grpc_addr = 0.0.0.0:50051"), "{e}");
        assert!(!e.contains("http_addr"), "{e}");
        assert!(
            e.contains("MINYI_TLS_CERT_FILE") && e.contains("MINYI_TLS_ALLOW_PLAINTEXT"),
            "{e}"
        );
        let allowed = Config {
            tls: TlsConfig {
                allow_plaintext: true,
                ..TlsConfig::default()
            },
            ..exposed.clone()
        };
        assert_eq!(allowed.check_plaintext(), Ok(()));
        let tls = Config {
            tls: TlsConfig {
                cert_file: Some("c.pem".into()),
                key_file: Some("k.pem".into()),
                ..TlsConfig::default()
            },
            ..exposed
        };
        assert_eq!(tls.check_plaintext(), Ok(()));
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure returns figment's error
    fn auto_dispatch_precision_must_be_a_fraction() {
        figment::Jail::expect_with(|jail| {
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_precision,
                0.98
            );
            jail.set_env("MINYI_AUTO_DISPATCH_PRECISION", "0.9");
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_precision,
                0.9
            );
            for bad in ["0", "1.5", "-0.2"] {
                jail.set_env("MINYI_AUTO_DISPATCH_PRECISION", bad);
                let e = Config::load(None).unwrap_err().to_string();
                assert!(e.contains("auto_dispatch_precision"), "{e}");
            }
            jail.set_env("MINYI_AUTO_DISPATCH_PRECISION", "0.9");
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_margin_z,
                1.0
            );
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_by_unit,
                None
            );
            jail.set_env("MINYI_AUTO_DISPATCH_BY_UNIT", "true");
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_by_unit,
                Some(true)
            );
            jail.set_env("MINYI_AUTO_DISPATCH_MARGIN_Z", "0");
            assert_eq!(
                Config::load(None).map_err(|e| *e)?.auto_dispatch_margin_z,
                0.0
            );
            for bad in ["-1", "inf"] {
                jail.set_env("MINYI_AUTO_DISPATCH_MARGIN_Z", bad);
                let e = Config::load(None).unwrap_err().to_string();
                // Ours names the setting and its variable; figment's type error the variable.
                assert!(e.contains("AUTO_DISPATCH_MARGIN_Z"), "{e}");
            }
            Ok(())
        });
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail's closure returns figment's error
    fn tls_settings_come_from_the_tls_table_and_minyi_tls_variables() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "minyi.toml",
                "grpc_addr = \"0.0.0.0:1\"\n[tls]\ncert_file = \"/file/tls.crt\"\nkey_file = \"/file/tls.key\"\n",
            )?;
            jail.set_env("MINYI_TLS_KEY_FILE", "/env/tls.key");
            jail.set_env("MINYI_TLS_ALLOW_PLAINTEXT", "true");
            jail.set_env("MINYI_HEALTH_ADDR", "0.0.0.0:8081");
            jail.set_env("MINYI_CA_FILE", "/client/only.pem");
            let c = Config::load(Some(Path::new("minyi.toml"))).map_err(|e| *e)?;
            assert_eq!(c.tls.cert_file, Some(PathBuf::from("/file/tls.crt")));
            assert_eq!(c.tls.key_file, Some(PathBuf::from("/env/tls.key")));
            assert!(c.tls.allow_plaintext);
            assert_eq!(c.tls.client_ca_file, None);
            assert_eq!(c.health_addr, Some("0.0.0.0:8081".parse().unwrap()));
            let dump = c.dump();
            let table = dump
                .split_once("\n[tls]\n")
                .map(|(_, t)| t)
                .unwrap_or_default();
            assert!(table.contains("cert_file = \"/file/tls.crt\""), "{dump}");
            assert!(dump.contains("allow_plaintext = true"), "{dump}");
            assert!(dump.contains("health_addr = \"0.0.0.0:8081\""), "{dump}");
            Ok(())
        });
    }
}
