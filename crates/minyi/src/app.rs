//! Wiring: builds backends and services from a [`Config`] and runs them until shutdown.
//!
//! Embedded mode puts every service in this process on embedded backends (SQLite file,
//! in-process bus, in-memory timers). Production mode runs the named services against
//! PostgreSQL, RabbitMQ and Redis; any number of processes may run each service.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use minyi_catalog::{Catalog, CatalogDir, Gazetteer, LiveCatalog};
use minyi_classification::api::ClassificationApi;
use minyi_classification::catalog_api::CatalogApi;
use minyi_classification::worker::{Worker, WorkerConfig};
use minyi_classification::{Router, RouterHandle};
use minyi_core::auth::{Role, TokenAuthority};
use minyi_core::bus::{AmqpBus, AmqpConfig, Bus, MemoryBus};
use minyi_core::clock::{Clock, SystemClock};
use minyi_core::grpc::auth_interceptor;
use minyi_core::petition::IntakeLimits;
use minyi_core::pii::Keyring;
use minyi_core::store::{
    CatalogStore, MemoryStore, OutboxHandoff, PgCatalogStore, PostgresStore, SqliteStore,
    TicketStore,
};
use minyi_core::timers::{MemoryTimers, RedisTimers, TimerStore};
use minyi_dispatch::arbitration::ArbitrationApi;
use minyi_dispatch::state::{MemoryRoutingState, RedisRoutingState, RoutingState};
use minyi_intake::relay::RelayConfig;
use minyi_intake::{IntakeApi, Relay};
use minyi_proto::arbitration::arbitration_service_server::ArbitrationServiceServer;
use minyi_proto::catalog::catalog_service_server::CatalogServiceServer;
use minyi_proto::classification::classification_service_server::ClassificationServiceServer;
use minyi_proto::dispatch::dispatch_service_server::DispatchServiceServer;
use minyi_proto::intake::intake_service_server::IntakeServiceServer;
use secrecy::ExposeSecret;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};

use crate::config::Config;
use crate::tls::ServerTls;

/// A service that `minyi serve` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Service {
    /// IntakeService over gRPC.
    Intake,
    /// Consumes received tickets, routes them; ClassificationService (Suggest) over gRPC.
    Classification,
    /// Consumes routed tickets, assigns them; DispatchService (handlers, dispatchers) and
    /// ArbitrationService over gRPC.
    Dispatch,
    /// SLA clocks as timers: warnings, breaches, escalation of tickets nobody accepted.
    Deadline,
    /// Read models from the bus; the supervisor page, JSON and CSV over HTTP, and
    /// SupervisorService over gRPC.
    Dashboard,
}

/// Which backends to build.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Everything in one process, data in `config.data_dir`.
    Embedded,
    /// The given services, on PostgreSQL, RabbitMQ and Redis.
    Production(Vec<Service>),
}

/// The ports, built once per process.
#[derive(Clone)]
pub struct Backends {
    pub store: Arc<dyn TicketStore>,
    pub bus: Arc<dyn Bus>,
    pub timers: Arc<dyn TimerStore>,
    pub routing_state: Arc<dyn RoutingState>,
    /// Catalog versions and training examples: the database in production (one catalog for
    /// every process), the catalog directory in embedded mode.
    pub catalog: Arc<dyn CatalogStore>,
    /// Between the store's hot writers and this process's relay (production, with
    /// `relay_handoff`): committed events go out at once instead of at the next claim.
    pub handoff: Option<Arc<OutboxHandoff>>,
}

/// Largest `CatalogService` message. A catalog file travels whole in one: the 3,469-item demo
/// is 3.1 MB of JSON, close to tonic's default limit of 4 MiB, and clarifications add notes.
pub const CATALOG_MESSAGE_LIMIT: usize = 64 * 1024 * 1024;

/// A built, not yet running, Minyi process.
pub struct App {
    config: Config,
    services: Vec<Service>,
    backends: Backends,
    keyring: Keyring,
    authority: TokenAuthority,
    clock: Arc<dyn Clock>,
    grpc: TcpListener,
    http: TcpListener,
    /// Plaintext, health service only (`health_addr`), for probes that cannot speak TLS.
    health: Option<TcpListener>,
    /// The listeners' certificate; `None` serves plaintext (loopback, or explicitly allowed).
    tls: Option<ServerTls>,
    /// The catalog, gazetteer and classifier in force (classification).
    router: Option<RouterHandle>,
    /// The active catalog version, kept current from the store for dispatch, Open311 and the
    /// dashboard (classification follows with its router).
    catalog: LiveCatalog,
}

/// What `/metrics` reads: the recorded RPC series, and gauges of the backends as this
/// process sees them (each read within 2 s, or left out).
#[derive(Clone)]
struct Scrape {
    metrics: minyi_core::metrics::Metrics,
    backends: Backends,
    /// This process runs the deadline service: report pending timers.
    timers: bool,
    /// This process runs the dashboard: report overdue tickets from its read model.
    dashboard: Option<minyi_dashboard::Dashboard>,
    started: std::time::SystemTime,
    /// The catalog in force (dispatch, intake, dashboard).
    catalog: LiveCatalog,
    /// Classification: the catalog and model its router uses.
    router: Option<RouterHandle>,
    /// The listeners' certificate, for its expiry.
    tls: Option<ServerTls>,
}

impl Scrape {
    async fn render(&self) -> ([(axum::http::HeaderName, &'static str); 1], String) {
        use minyi_core::metrics::{Exposition, render_counters};
        let mut out = Exposition::default();
        self.metrics.render(&mut out);
        render_counters(&mut out);
        out.gauge(
            "minyi_process_start_time_seconds",
            "When this process started (Unix seconds).",
            self.started
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        if let Some(tls) = &self.tls {
            out.gauge(
                "minyi_tls_certificate_expiry_timestamp_seconds",
                "When the TLS certificate this process serves expires (Unix seconds; follows a renewal).",
                tls.cert().not_after() as f64,
            );
        }
        if let Some(n) = within(self.backends.store.outbox_len()).await {
            out.gauge(
                "minyi_outbox_pending",
                "Events committed to the outbox and not yet published.",
                n as f64,
            );
        }
        let mut depths = Vec::new();
        let mut dead = Vec::new();
        for (queue, _) in minyi_core::bus::TOPOLOGY {
            if let Some(n) = within(self.backends.bus.queue_depth(queue)).await {
                depths.push((*queue, n));
            }
            if let Some(n) = within(self.backends.bus.dead_letter_depth(queue)).await {
                dead.push((*queue, n));
            }
        }
        out.header(
            "minyi_bus_queue_depth",
            "gauge",
            "Broker messages ready in a consumer queue (a pack of events counts once).",
        );
        for (queue, n) in depths {
            out.sample("minyi_bus_queue_depth", &[("queue", queue)], n as f64);
        }
        out.header(
            "minyi_bus_dead_letters",
            "gauge",
            "Messages in a consumer queue's dead-letter queue (each needs a look).",
        );
        for (queue, n) in dead {
            out.sample("minyi_bus_dead_letters", &[("queue", queue)], n as f64);
        }
        // Which catalog version (and model) this process works with: replicas that disagree
        // for longer than a poll interval point at a process that cannot read the store.
        let (version, model) = match &self.router {
            Some(handle) => match handle.current() {
                Some(r) => (
                    Some(r.catalog.version.clone()),
                    Some(r.model.version().to_owned()),
                ),
                None => (None, None),
            },
            None => (Some(self.catalog.current().version.clone()), None),
        };
        if let Some(v) = version {
            out.info(
                "minyi_catalog_version_info",
                "The catalog version in force in this process (classification: its model's).",
                "version",
                &v,
            );
        }
        if let Some(m) = model {
            out.info(
                "minyi_classifier_model_info",
                "The classifier model in force in this process.",
                "model",
                &m,
            );
        }
        if self.timers
            && let Some(n) = within(self.backends.timers.pending()).await
        {
            out.gauge(
                "minyi_timers_pending",
                "SLA timers scheduled and not yet fired.",
                n as f64,
            );
        }
        if let Some(d) = self.dashboard.as_ref().filter(|d| d.ready()) {
            let (overdue, at_risk) = d.overdue_and_at_risk_now();
            out.gauge(
                "minyi_tickets_overdue",
                "Open tickets past their acceptance, first-response or completion deadline now (dashboard processes).",
                overdue as f64,
            );
            out.gauge(
                "minyi_tickets_at_risk",
                "Open tickets that used at least 75% of a deadline's working time, not yet overdue (dashboard processes).",
                at_risk as f64,
            );
        }
        (
            [(
                axum::http::header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            out.into_string(),
        )
    }
}

/// A backend read for a scrape: its value, or nothing when it failed or took over 2 s.
async fn within<T, E>(f: impl Future<Output = Result<T, E>>) -> Option<T> {
    tokio::time::timeout(std::time::Duration::from_secs(2), f)
        .await
        .ok()?
        .ok()
}

/// Development secrets, generated on the first `minyi dev` and kept in the data directory.
#[derive(Debug, Serialize, serde::Deserialize)]
struct DevSecrets {
    encryption_key_id: String,
    encryption_key: String,
    jwt_secret: String,
}

/// Tokens for every role, written by `minyi dev` for newcomers and scripts.
#[derive(Debug, Serialize, serde::Deserialize)]
pub struct DevCredentials {
    pub endpoint: String,
    pub tokens: std::collections::BTreeMap<String, String>,
}

pub const CREDENTIALS_FILE: &str = "credentials.json";

/// The embedded mode's ticket store, in the data directory.
pub const EMBEDDED_DB: &str = "minyi.db";

/// Opens the embedded store (`minyi.db` in `data_dir`). Versions before it kept a journal
/// (`journal.jsonl`): into a new, empty database it is imported once and then renamed
/// `journal.jsonl.imported`, so no ticket, unpublished event or audit line is left behind.
pub async fn embedded_store(data_dir: &Path) -> anyhow::Result<SqliteStore> {
    let path = data_dir.join(EMBEDDED_DB);
    let store = SqliteStore::open(&path)
        .await
        .with_context(|| format!("opening the embedded database {}", path.display()))?;
    let journal = data_dir.join("journal.jsonl");
    if journal.exists() {
        if store.count_tickets().await? > 0 {
            tracing::warn!(
                journal = %journal.display(),
                "both an old journal and a non-empty database exist; the journal is left alone"
            );
            return Ok(store);
        }
        let old = MemoryStore::open(&journal).context("reading the old journal")?;
        let imported = store
            .import(old.snapshot())
            .await
            .context("importing the old journal")?;
        std::fs::rename(&journal, data_dir.join("journal.jsonl.imported"))
            .context("renaming the imported journal")?;
        tracing::info!(
            tickets = imported,
            "imported the journal of an earlier version"
        );
    }
    Ok(store)
}

impl App {
    pub async fn build(mut config: Config, mode: Mode) -> anyhow::Result<App> {
        let services = match &mode {
            Mode::Embedded => vec![
                Service::Intake,
                Service::Classification,
                Service::Dispatch,
                Service::Deadline,
                Service::Dashboard,
            ],
            Mode::Production(s) => s.clone(),
        };
        // Before anything is opened: never plaintext beyond loopback unless told so, and a bad
        // certificate file fails the start, naming its setting.
        config.check_plaintext().map_err(anyhow::Error::msg)?;
        crate::tls::install_crypto_provider();
        let tls = ServerTls::load(&config.tls)?;
        if matches!(mode, Mode::Embedded) {
            ensure_dev_secrets(&mut config)?;
        }
        let keyring = keyring(&config)?;
        let jwt = config
            .jwt_secret
            .as_ref()
            .context("jwt_secret is not set (MINYI_JWT_SECRET)")?;
        if jwt.expose_secret().len() < 32 {
            bail!("jwt_secret must be at least 32 characters");
        }
        let authority = TokenAuthority::new(jwt.expose_secret().as_bytes());
        let backends = match mode {
            Mode::Embedded => Backends {
                store: Arc::new(embedded_store(&config.data_dir).await?),
                bus: Arc::new(MemoryBus::default()),
                timers: Arc::new(MemoryTimers::default()),
                routing_state: Arc::new(MemoryRoutingState::default()),
                catalog: Arc::new(open_catalog_dir(&config)?),
                handoff: None,
            },
            Mode::Production(_) => production_backends(&config).await?,
        };
        minyi_core::bus::declare_topology(backends.bus.as_ref())
            .await
            .context("declaring the bus topology")?;
        let grpc = TcpListener::bind(config.grpc_addr)
            .await
            .with_context(|| format!("binding gRPC on {}", config.grpc_addr))?;
        let http = TcpListener::bind(config.http_addr)
            .await
            .with_context(|| format!("binding HTTP on {}", config.http_addr))?;
        let health = match config.health_addr {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the health listener on {addr}"))?,
            ),
            None => None,
        };
        let catalog = Arc::new(load_catalog(&config, backends.catalog.as_ref()).await?);
        let router = if services.contains(&Service::Classification) {
            // The mark before the examples: one recorded in between is learnt at the next poll.
            let store = backends.catalog.as_ref();
            let mark = store
                .examples_mark()
                .await
                .context("reading the training examples")?;
            let examples = store
                .examples()
                .await
                .context("reading the training examples")?;
            let history = minyi_classification::watch::usable(examples, &catalog);
            Some(start_router(&config, catalog.clone(), history, mark)?)
        } else {
            None
        };
        let app = App {
            catalog: catalog.into(),
            router,
            config,
            services,
            backends,
            keyring,
            authority,
            clock: Arc::new(SystemClock),
            grpc,
            http,
            health,
            tls,
        };
        Ok(app)
    }

    pub fn grpc_addr(&self) -> SocketAddr {
        self.grpc.local_addr().unwrap_or(self.config.grpc_addr)
    }

    pub fn http_addr(&self) -> SocketAddr {
        self.http.local_addr().unwrap_or(self.config.http_addr)
    }

    /// The plaintext health-only listener, when `health_addr` is set.
    pub fn health_addr(&self) -> Option<SocketAddr> {
        self.health.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Whether gRPC and HTTP are served over TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The catalog version in force now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.catalog.current()
    }

    pub fn backends(&self) -> &Backends {
        &self.backends
    }

    pub fn token_authority(&self) -> &TokenAuthority {
        &self.authority
    }

    /// Writes a token for every role into the data directory, returning its path.
    pub fn write_dev_credentials(&self) -> anyhow::Result<std::path::PathBuf> {
        let mut tokens = std::collections::BTreeMap::new();
        for role in Role::ALL {
            let unit = (role == Role::Handler).then_some("ST-GM");
            let token = self.authority.issue(
                &format!("dev-{role}"),
                role,
                unit,
                chrono::Duration::days(30),
            )?;
            tokens.insert(role.as_str().to_owned(), token);
        }
        let scheme = if self.tls() { "https" } else { "http" };
        let creds = DevCredentials {
            endpoint: format!("{scheme}://{}", self.grpc_addr()),
            tokens,
        };
        let path = self.config.data_dir.join(CREDENTIALS_FILE);
        write_private(&path, &serde_json::to_vec_pretty(&creds)?)?;
        Ok(path)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets in-flight RPCs finish and
    /// stops the workers after their current batch.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (stop_tx, stop_rx) = watch::channel(false);
        let outbox_written = Arc::new(Notify::new());
        let mut workers = Vec::new();

        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        let reflection = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(minyi_proto::FILE_DESCRIPTOR_SET)
            .build_v1()
            .context("building reflection")?;
        let metrics = minyi_core::metrics::Metrics::default();
        // TLS, when configured, is ours (`ServerTls::grpc_incoming`): the certificate can then
        // be reloaded without a restart.
        let router = tonic::transport::Server::builder()
            .layer(minyi_core::metrics::MetricsLayer::new(metrics.clone()))
            .add_service(health_service.clone())
            .add_service(reflection);
        let interceptor = auth_interceptor(self.authority.clone());
        let mut intake_grpc = None;
        let mut open311 = None;
        let mut router_grpc = None;
        let mut catalog_grpc = None;

        if self.services.contains(&Service::Intake) {
            let limits = IntakeLimits {
                max_text_chars: self.config.max_text_chars,
                ..IntakeLimits::default()
            };
            let api = IntakeApi::new(
                self.backends.store.clone(),
                self.keyring.clone(),
                limits,
                self.clock.clone(),
                outbox_written.clone(),
            );
            health_reporter
                .set_serving::<IntakeServiceServer<IntakeApi>>()
                .await;
            open311 = Some(minyi_intake::open311::router(
                minyi_intake::open311::Open311State::new(
                    api.clone(),
                    self.catalog.clone(),
                    self.authority.clone(),
                )
                .with_jurisdiction(self.config.open311_jurisdiction.clone())
                .with_clock(self.clock.clone()),
            ));
            intake_grpc = Some(IntakeServiceServer::with_interceptor(
                api,
                interceptor.clone(),
            ));
        }
        let router = router.add_optional_service(intake_grpc);

        if let Some(router) = &self.router {
            health_reporter
                .set_serving::<ClassificationServiceServer<ClassificationApi>>()
                .await;
            router_grpc = Some(ClassificationServiceServer::with_interceptor(
                ClassificationApi::new(router.clone()),
                interceptor.clone(),
            ));
            health_reporter
                .set_serving::<CatalogServiceServer<CatalogApi>>()
                .await;
            catalog_grpc = Some(tonic::service::interceptor::InterceptedService::new(
                CatalogServiceServer::new(CatalogApi::new(self.backends.catalog.clone()))
                    .max_decoding_message_size(CATALOG_MESSAGE_LIMIT)
                    .max_encoding_message_size(CATALOG_MESSAGE_LIMIT),
                interceptor.clone(),
            ));
            let worker = Worker {
                store: self.backends.store.clone(),
                bus: self.backends.bus.clone(),
                router: router.clone(),
                clock: self.clock.clone(),
                config: WorkerConfig {
                    duplicate_window: chrono::Duration::days(self.config.duplicate_window_days),
                    duplicate_threshold: self.config.duplicate_threshold,
                    max_batch: self.config.classification_batch.max(1),
                },
                outbox_written: outbox_written.clone(),
                shingles: Default::default(),
                pools: Default::default(),
            };
            workers.push(tokio::spawn(worker.run(stop_rx.clone())));
            let watch = minyi_classification::watch::CatalogWatch {
                handle: router.clone(),
                store: self.backends.catalog.clone(),
                live: self.catalog.clone(),
                model_path: self.config.model_path(),
                per_item: self.config.classifier_examples_per_item,
                train: train_config(&self.config),
                by_unit: self.config.auto_dispatch_by_unit == Some(true),
                every: std::time::Duration::from_secs(self.config.catalog_poll_secs.max(1)),
                retrain_min: std::time::Duration::from_secs(self.config.retrain_min_secs),
            };
            workers.push(tokio::spawn(watch.run(stop_rx.clone())));
        }
        let router = router
            .add_optional_service(router_grpc)
            .add_optional_service(catalog_grpc);

        let mut dispatch_grpc = None;
        let mut arbitration_grpc = None;
        let engine = minyi_dispatch::Engine {
            store: self.backends.store.clone(),
            catalog: self.catalog.clone(),
            deadlines: Arc::new(minyi_dispatch::deadlines::Deadlines::default()),
            rules: minyi_dispatch::machine::Rules::default(),
            clock: self.clock.clone(),
            outbox_written: outbox_written.clone(),
            inbox_written: Arc::new(Notify::new()),
            routing_state: self.backends.routing_state.clone(),
        };
        // With classification in this process its catalog watch keeps the catalog on the
        // active version; else this follower does.
        if self.router.is_none()
            && [Service::Dispatch, Service::Intake, Service::Dashboard]
                .iter()
                .any(|s| self.services.contains(s))
        {
            workers.push(tokio::spawn(minyi_core::store::follow_active(
                self.backends.catalog.clone(),
                self.catalog.clone(),
                std::time::Duration::from_secs(self.config.catalog_poll_secs.max(1)),
                stop_rx.clone(),
            )));
        }
        if self.services.contains(&Service::Dispatch) {
            health_reporter
                .set_serving::<DispatchServiceServer<minyi_dispatch::DispatchApi>>()
                .await;
            dispatch_grpc = Some(DispatchServiceServer::with_interceptor(
                minyi_dispatch::DispatchApi::new(
                    engine.clone(),
                    self.keyring.clone(),
                    stop_rx.clone(),
                )
                .with_catalog_store(self.backends.catalog.clone()),
                interceptor.clone(),
            ));
            health_reporter
                .set_serving::<ArbitrationServiceServer<ArbitrationApi>>()
                .await;
            arbitration_grpc = Some(ArbitrationServiceServer::with_interceptor(
                ArbitrationApi::new(
                    engine.clone(),
                    self.keyring.clone(),
                    Some(self.backends.catalog.clone()),
                ),
                interceptor.clone(),
            ));
            workers.push(tokio::spawn(minyi_dispatch::worker::reconcile(
                engine.clone(),
                std::time::Duration::from_secs(self.config.reconcile_secs),
                stop_rx.clone(),
            )));
            let worker = minyi_dispatch::worker::Worker {
                engine: engine.clone(),
                bus: self.backends.bus.clone(),
                max_batch: self.config.dispatch_batch.max(1),
            };
            workers.push(tokio::spawn(worker.run(stop_rx.clone())));
        }
        if self.services.contains(&Service::Deadline) {
            let deadlines = minyi_deadline::Deadlines {
                store: self.backends.store.clone(),
                timers: self.backends.timers.clone(),
                engine: engine.clone(),
                clock: self.clock.clone(),
                calendar: Arc::new(minyi_calendar::Calendar::china()),
                config: minyi_deadline::DeadlineConfig {
                    warning_fractions: self.config.sla_warning_fractions.clone(),
                    reconcile_every: std::time::Duration::from_secs(self.config.reconcile_secs),
                    ..minyi_deadline::DeadlineConfig::default()
                },
            };
            workers.push(tokio::spawn(
                deadlines.clone().run_reconciler(stop_rx.clone()),
            ));
            workers.push(tokio::spawn(deadlines.clone().run_consumer(
                self.backends.bus.clone(),
                self.config.dispatch_batch.max(1),
                stop_rx.clone(),
            )));
            workers.push(tokio::spawn(deadlines.run_timers(stop_rx.clone())));
        }
        let router = router
            .add_optional_service(dispatch_grpc)
            .add_optional_service(arbitration_grpc);
        // Every process relays the outbox: its own effects and, safely (leases, SKIP LOCKED),
        // anything another process left behind.
        if self.config.relay_enabled {
            let relay = Relay::new(
                self.backends.store.clone(),
                self.backends.bus.clone(),
                outbox_written.clone(),
                RelayConfig {
                    min_interval: std::time::Duration::from_millis(
                        self.config.relay_min_interval_ms,
                    ),
                    ..RelayConfig::default()
                },
            );
            let relay = match &self.backends.handoff {
                Some(h) => relay.with_handoff(h.clone()),
                None => relay,
            };
            workers.push(tokio::spawn(relay.run(stop_rx.clone())));
        }

        let mut scrape = Scrape {
            metrics,
            backends: self.backends.clone(),
            timers: self.services.contains(&Service::Deadline),
            dashboard: None,
            started: std::time::SystemTime::now(),
            catalog: self.catalog.clone(),
            router: self.router.clone(),
            tls: self.tls.clone(),
        };
        let mut http_app =
            axum::Router::new().route("/healthz", axum::routing::get(|| async { "ok" }));
        if let Some(open311) = open311 {
            http_app = http_app.merge(open311);
        }
        let router = if self.services.contains(&Service::Dashboard) {
            use minyi_proto::supervisor::supervisor_service_server::SupervisorServiceServer;
            let dashboard = minyi_dashboard::Dashboard::new(
                self.backends.store.clone(),
                self.catalog.clone(),
                self.clock.clone(),
                self.authority.clone(),
            );
            scrape.dashboard = Some(dashboard.clone());
            let consumer =
                minyi_dashboard::Consumer::new(dashboard.clone(), self.backends.bus.clone());
            workers.push(tokio::spawn(consumer.run(stop_rx.clone())));
            http_app = http_app.merge(minyi_dashboard::http::router(
                dashboard.clone(),
                stop_rx.clone(),
            ));
            health_reporter
                .set_serving::<SupervisorServiceServer<minyi_dashboard::SupervisorApi>>()
                .await;
            router.add_service(SupervisorServiceServer::with_interceptor(
                minyi_dashboard::SupervisorApi::new(dashboard, stop_rx.clone()),
                interceptor.clone(),
            ))
        } else {
            router
        };
        let http_app = http_app.route(
            "/metrics",
            axum::routing::get(move || {
                let scrape = scrape.clone();
                async move { scrape.render().await }
            }),
        );
        let mut http_stop = stop_rx.clone();
        let http_stopped = async move {
            let _ = http_stop.wait_for(|s| *s).await;
        };
        let http = match &self.tls {
            Some(tls) => tokio::spawn(
                axum::serve(tls.http_listener(self.http)?, http_app)
                    .with_graceful_shutdown(http_stopped)
                    .into_future(),
            ),
            None => tokio::spawn(
                axum::serve(self.http, http_app)
                    .with_graceful_shutdown(http_stopped)
                    .into_future(),
            ),
        };
        // Kubelet gRPC probes speak no TLS: the health service alone, in plaintext.
        let health = self.health.map(|listener| {
            let incoming = tokio_stream_net::wrappers::TcpListenerStream::new(listener);
            let mut health_stop = stop_rx.clone();
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(health_service)
                    .serve_with_incoming_shutdown(incoming, async move {
                        let _ = health_stop.wait_for(|s| *s).await;
                    }),
            )
        });

        let mut grpc_stop = stop_rx.clone();
        let grpc_stopped = async move {
            let _ = grpc_stop.wait_for(|s| *s).await;
        };
        let grpc = match &self.tls {
            Some(tls) => {
                workers.push(tokio::spawn(tls.clone().watch(
                    std::time::Duration::from_secs(self.config.tls.reload_secs.max(1)),
                    stop_rx.clone(),
                )));
                let incoming = tls.grpc_incoming(self.grpc)?;
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, grpc_stopped))
            }
            None => {
                tokio::spawn(router.serve_with_incoming_shutdown(no_delay(self.grpc), grpc_stopped))
            }
        };

        tracing::info!(
            grpc = %self.config.grpc_addr,
            http = %self.config.http_addr,
            health = ?self.config.health_addr,
            tls = self.tls.is_some(),
            mutual_tls = self.config.tls.client_ca_file.is_some(),
            services = ?self.services,
            "minyi is serving"
        );
        shutdown.await;
        tracing::info!("shutting down: draining RPCs, stopping workers");
        let _ = stop_tx.send(true);
        grpc.await.context("gRPC task")?.context("gRPC server")?;
        http.await.context("HTTP task")?.context("HTTP server")?;
        if let Some(health) = health {
            health
                .await
                .context("health task")?
                .context("health server")?;
        }
        for w in workers {
            let _ = w.await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// The accepted connections of `listener`, with `TCP_NODELAY` set (tonic sets it only on
/// listeners it binds itself). Without it a response written in several frames waits for the
/// client's delayed ACK: ~40 ms on a unary call.
fn no_delay(
    listener: tokio::net::TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use futures::StreamExt;
    tokio_stream_net::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(stream) = &accepted
            && let Err(e) = stream.set_nodelay(true)
        {
            tracing::debug!(error = %e, "TCP_NODELAY not set");
        }
        accepted
    })
}

/// The catalog directory (`catalog_dir`), created if needed.
fn open_catalog_dir(config: &Config) -> anyhow::Result<CatalogDir> {
    let dir = config.catalog_dir();
    CatalogDir::open(&dir)
        .with_context(|| format!("opening the catalog directory {}", dir.display()))
}

/// Loads the active catalog. A store without any version is seeded first: a database from the
/// catalog directory's active version and its training examples when it has one (how an
/// installation that kept its catalog in a directory moves it into the database), else with
/// the demo catalog.
async fn load_catalog(config: &Config, store: &dyn CatalogStore) -> anyhow::Result<Catalog> {
    if store.list_versions().await?.is_empty() {
        let local = open_catalog_dir(config)?;
        // (In embedded mode the store is that directory: empty, so the demo catalog.)
        let (seed, examples, from) = match local.active() {
            Ok(c) => (c, local.examples().await?, CatalogStore::describe(&local)),
            Err(_) => (Catalog::demo(), Vec::new(), "the demo catalog".to_owned()),
        };
        if let Some(v) = store.seed(&seed, &examples).await? {
            tracing::info!(store = %store.describe(), from = %from, version = %v, examples = examples.len(), "empty catalog store: seeded");
        }
    }
    store
        .active()
        .await
        .with_context(|| format!("no active catalog version in {}", store.describe()))
}

/// Loads or trains the classifier for `catalog` in the background: the handle fills when it
/// is ready. A model trained here learns from `history` too, the store's training examples up
/// to `examples_mark`.
fn start_router(
    config: &Config,
    catalog: Arc<Catalog>,
    history: Vec<minyi_classifier::Example>,
    examples_mark: u64,
) -> anyhow::Result<RouterHandle> {
    let model_path = config.model_path();
    let per_item = config.classifier_examples_per_item;
    let train = train_config(config);
    let by_unit = config.auto_dispatch_by_unit == Some(true);
    let handle = RouterHandle::pending();
    let filled = handle.clone();
    tokio::task::spawn_blocking(move || {
        let started = std::time::Instant::now();
        let built = minyi_classification::model::load_or_train(
            &model_path,
            &catalog,
            per_item,
            &history,
            &train,
        );
        match built {
            Ok((model, trained)) => {
                if trained {
                    minyi_classification::watch::note_trained_with(
                        &model_path,
                        &model,
                        examples_mark,
                    );
                }
                // Saved beside the model once chosen: a restart does not train again for it.
                let owner_threshold = by_unit
                    .then(|| {
                        minyi_classification::model::cached_owner_threshold(
                            &model_path,
                            &model,
                            &catalog,
                            || {
                                minyi_classification::model::catalog_examples(
                                    &catalog, per_item, &history,
                                )
                            },
                            &train,
                        )
                    })
                    .flatten();
                tracing::info!(
                    catalog = %catalog.version,
                    items = catalog.len(),
                    model = %model.version(),
                    trained,
                    owner_threshold,
                    seconds = started.elapsed().as_secs_f64(),
                    "classifier ready"
                );
                filled.swap(Router {
                    catalog,
                    gazetteer: Arc::new(Gazetteer::guangming()),
                    model: Arc::new(model),
                    owner_threshold,
                });
            }
            Err(e) => {
                tracing::error!(error = %e, "the classifier could not be built; tickets wait in their queue")
            }
        }
    });
    Ok(handle)
}

/// How the classifier is trained for a catalog (at start and after a catalog change).
fn train_config(config: &Config) -> minyi_classifier::TrainConfig {
    minyi_classifier::TrainConfig {
        target_precision: config.auto_dispatch_precision,
        precision_margin_z: config.auto_dispatch_margin_z,
        // Two folds suffice to calibrate on thousands of items and halve training time.
        threshold_folds: 2,
        ..minyi_classifier::TrainConfig::default()
    }
}

/// `minyi serve <service> --migrate-only`: applies the PostgreSQL migrations (under the
/// advisory lock every replica takes) and returns the schema version. Touches nothing else.
pub async fn migrate(config: &Config) -> anyhow::Result<i64> {
    let db = config
        .database_url
        .as_deref()
        .context("database_url is not set (MINYI_DATABASE_URL)")?;
    let store = PostgresStore::connect(db, 2)
        .await
        .context("migrating PostgreSQL")?;
    Ok(store.schema_version().await?)
}

async fn production_backends(config: &Config) -> anyhow::Result<Backends> {
    let db = config
        .database_url
        .as_deref()
        .context("database_url is not set (MINYI_DATABASE_URL)")?;
    let amqp = config
        .amqp_url
        .as_deref()
        .context("amqp_url is not set (MINYI_AMQP_URL)")?;
    let redis = config
        .redis_url
        .as_deref()
        .context("redis_url is not set (MINYI_REDIS_URL)")?;
    let handoff = (config.relay_enabled && config.relay_handoff)
        .then(|| Arc::new(OutboxHandoff::new(RelayConfig::default().lease)));
    let store =
        PostgresStore::connect_with_handoff(db, config.database_max_connections, handoff.clone())
            .await
            .context("connecting to PostgreSQL")?;
    let mut amqp_config = AmqpConfig::new(amqp, &config.amqp_prefix);
    amqp_config.pack_max = config.amqp_pack.max(1);
    amqp_config.queue_expires = config
        .amqp_queue_expires_secs
        .map(std::time::Duration::from_secs);
    if let Some(path) = &config.amqp_ca_file {
        let pem = std::fs::read_to_string(path)
            .with_context(|| format!("reading amqp_ca_file {}", path.display()))?;
        amqp_config.ca_pem = Some(pem);
    }
    let bus = AmqpBus::connect(amqp_config)
        .await
        .context("connecting to RabbitMQ")?;
    let redis = redis_client(redis, config.redis_ca_file.as_deref())?;
    let timers = RedisTimers::connect_client(redis.clone(), &config.redis_prefix)
        .await
        .context("connecting to Redis")?;
    let routing_state = RedisRoutingState::connect_client(redis, &config.redis_prefix)
        .await
        .context("connecting to Redis")?;
    let catalog = Arc::new(PgCatalogStore::new(store.pool().clone()));
    Ok(Backends {
        store: Arc::new(store),
        catalog,
        bus: Arc::new(bus),
        timers: Arc::new(timers),
        routing_state: Arc::new(routing_state),
        handoff,
    })
}

/// A Redis client: `rediss://` is TLS, verified against `ca_file` when given, else the system
/// store.
fn redis_client(url: &str, ca_file: Option<&Path>) -> anyhow::Result<redis::Client> {
    match ca_file {
        None => redis::Client::open(url).context("redis_url"),
        Some(path) => {
            let pem = std::fs::read(path)
                .with_context(|| format!("reading redis_ca_file {}", path.display()))?;
            let certificates = redis::TlsCertificates {
                client_tls: None,
                root_cert: Some(pem),
            };
            redis::Client::build_with_tls(url, certificates)
                .context("redis_url with redis_ca_file (a rediss:// URL)")
        }
    }
}

fn keyring(config: &Config) -> anyhow::Result<Keyring> {
    let active = config
        .encryption_key
        .as_ref()
        .context("encryption_key is not set (MINYI_ENCRYPTION_KEY, base64 of 32 bytes)")?;
    let retired = config.retired_key_pairs();
    let mut keys: Vec<(&str, &str)> =
        vec![(config.encryption_key_id.as_str(), active.expose_secret())];
    keys.extend(retired.iter().map(|(a, b)| (a.as_str(), b.as_str())));
    Ok(Keyring::new(&config.encryption_key_id, keys)?)
}

/// Embedded mode needs no setup: secrets are generated once and kept in the data directory.
fn ensure_dev_secrets(config: &mut Config) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let path = config.data_dir.join("dev-secrets.json");
    let secrets: DevSecrets = if path.exists() {
        serde_json::from_slice(&std::fs::read(&path)?)
            .with_context(|| format!("reading {}", path.display()))?
    } else {
        let s = DevSecrets {
            encryption_key_id: "dev1".into(),
            encryption_key: Keyring::generate_key(),
            jwt_secret: Keyring::generate_key(),
        };
        write_private(&path, &serde_json::to_vec_pretty(&s)?)?;
        s
    };
    if config.encryption_key.is_none() {
        config.encryption_key_id = secrets.encryption_key_id;
        config.encryption_key = Some(secrets.encryption_key.into());
    }
    if config.jwt_secret.is_none() {
        config.jwt_secret = Some(secrets.jwt_secret.into());
    }
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    }
    std::fs::rename(&tmp, path)?;
    Ok(())
}
