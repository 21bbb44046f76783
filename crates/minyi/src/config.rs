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
    /// Embedded mode: where the SQLite database, generated secrets and dev credentials live.
    pub data_dir: PathBuf,
    /// PostgreSQL URL (`MINYI_DATABASE_URL`); production mode.
    pub database_url: Option<String>,
    pub database_max_connections: u32,
    /// RabbitMQ URL (`MINYI_AMQP_URL`); production mode.
    pub amqp_url: Option<String>,
    /// Prefix of every exchange and queue name.
    pub amqp_prefix: String,
    /// Delete queues idle this long, in seconds (`MINYI_AMQP_QUEUE_EXPIRES_SECS`). For tests and
    /// throwaway prefixes only: unset in production, where queues must outlive any outage.
    pub amqp_queue_expires_secs: Option<u64>,
    /// Redis URL (`MINYI_REDIS_URL`); production mode.
    pub redis_url: Option<String>,
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
    /// `text` (default) or `json` logs.
    pub log_format: String,
    /// OTLP/gRPC collector for traces, e.g. `http://otel-collector:4317`
    /// (`MINYI_OTLP_ENDPOINT`, else the standard `OTEL_EXPORTER_OTLP_ENDPOINT`). Unset: no
    /// trace export (the default, and in embedded mode).
    pub otlp_endpoint: Option<String>,
    /// Versioned catalog directory (`minyi catalog import --dir`); defaults to
    /// `{data_dir}/catalog`. The 3,469-item demo catalog is imported when it is empty.
    pub catalog_dir: Option<PathBuf>,
    /// Saved classifier; defaults to `{data_dir}/classifier.model`. Trained from the catalog
    /// when missing or older than the catalog.
    pub model_path: Option<PathBuf>,
    /// Synthetic training petitions per catalog item when training from the catalog.
    pub classifier_examples_per_item: usize,
    /// How often classification checks the catalog directory for a newly activated version
    /// or new arbitration rulings, and retrains without a restart, in seconds.
    pub catalog_poll_secs: u64,
    /// Days within which a similar petition at the same community is a duplicate.
    pub duplicate_window_days: i64,
    /// Text similarity (0-1) from which a petition is linked as a duplicate.
    pub duplicate_threshold: f64,
    /// Fractions of a time limit at which the unit is warned.
    pub sla_warning_fractions: Vec<f64>,
    /// How often the routing state and the SLA timers are checked for loss (Redis flushed)
    /// and rebuilt from PostgreSQL, in seconds.
    pub reconcile_secs: u64,
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
            data_dir: PathBuf::from("data/dev"),
            database_url: None,
            database_max_connections: 16,
            amqp_url: None,
            amqp_prefix: "minyi".into(),
            amqp_queue_expires_secs: None,
            redis_url: None,
            redis_prefix: "minyi".into(),
            encryption_key_id: "k1".into(),
            encryption_key: None,
            retired_keys: None,
            jwt_secret: None,
            max_text_chars: 20_000,
            open311_jurisdiction: minyi_intake::open311::DEFAULT_JURISDICTION.to_owned(),
            relay_enabled: true,
            log_format: "text".into(),
            otlp_endpoint: None,
            catalog_dir: None,
            model_path: None,
            classifier_examples_per_item: 4,
            catalog_poll_secs: 10,
            duplicate_window_days: 3,
            duplicate_threshold: 0.6,
            sla_warning_fractions: vec![0.75, 0.9],
            reconcile_secs: 30,
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
        let mut config: Config = f
            .merge(Env::prefixed("MINYI_").ignore(&["CONFIG", "TOKEN", "ENDPOINT"]))
            .extract()
            .map_err(Box::new)?;
        if config.otlp_endpoint.is_none() {
            config.otlp_endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT")
                .ok()
                .filter(|e| !e.trim().is_empty());
        }
        Ok(config)
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

fn toml_like(v: &serde_json::Value) -> String {
    let mut out = String::new();
    if let serde_json::Value::Object(map) = v {
        for (k, v) in map {
            match v {
                serde_json::Value::Null => out.push_str(&format!("# {k} = (unset)\n")),
                other => out.push_str(&format!("{k} = {other}\n")),
            }
        }
    }
    out
}
