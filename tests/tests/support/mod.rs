//! Test harness: the production `App::build` with a randomized configuration.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use minyi::app::{App, Backends, Mode, Service};
use minyi::config::Config;
use minyi_core::auth::{Role, TokenAuthority};
use minyi_core::pii::Keyring;
use minyi_proto::classification::classification_service_client::ClassificationServiceClient;
use minyi_proto::dispatch::dispatch_service_client::DispatchServiceClient;
use minyi_proto::intake::intake_service_client::IntakeServiceClient;
use tokio::sync::oneshot;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;

pub type Intake = IntakeServiceClient<InterceptedService<Channel, Bearer>>;
pub type Suggest = ClassificationServiceClient<InterceptedService<Channel, Bearer>>;

/// The answer to `text` (top 5, no place) once `done` holds for it, waiting out the first
/// model's training (Unavailable until it is ready); panics after 60 s naming `what`.
#[allow(dead_code)]
pub async fn suggest_until(
    client: &mut Suggest,
    text: &str,
    what: &str,
    done: impl Fn(&minyi_proto::classification::SuggestResponse) -> bool,
) -> minyi_proto::classification::SuggestResponse {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let ask = minyi_proto::classification::SuggestRequest {
            text: text.into(),
            location: None,
            k: 5,
        };
        match client.suggest(ask).await {
            Ok(s) if done(s.get_ref()) => return s.into_inner(),
            Ok(_) => {}
            Err(e) if e.code() == tonic::Code::Unavailable => {}
            Err(e) => panic!("{e:?}"),
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: not within 60 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
pub type Dispatch = DispatchServiceClient<InterceptedService<Channel, Bearer>>;

/// Adds `authorization: Bearer …` (or nothing) to every request.
#[derive(Clone)]
pub struct Bearer(pub Option<tonic::metadata::MetadataValue<tonic::metadata::Ascii>>);

impl tonic::service::Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(h) = &self.0 {
            req.metadata_mut().insert("authorization", h.clone());
        }
        Ok(req)
    }
}

pub struct TestApp {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// The plaintext health-only listener, when `health_addr` was set.
    pub health: Option<SocketAddr>,
    pub authority: TokenAuthority,
    pub backends: Backends,
    pub config: Config,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    _dir: Option<tempfile::TempDir>,
}

/// Which backends a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Embedded,
    Production,
}

/// A configuration for real backends, isolated: own database, queue prefix and key prefix.
pub async fn production_config() -> Config {
    Config {
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(minyi_core::testing::fresh_database().await.unwrap()),
        amqp_url: Some(minyi_core::testing::amqp_url()),
        amqp_prefix: minyi_core::testing::random_name(),
        // Left-over test queues would pile up on the shared broker (hundreds of quorum queues
        // slow RabbitMQ to a halt, and its restart tests with it); idle ones go away on their own.
        amqp_queue_expires_secs: Some(120),
        redis_url: Some(minyi_core::testing::redis_url()),
        redis_prefix: format!("test-{}", minyi_core::testing::random_name()),
        encryption_key: Some(Keyring::generate_key().into()),
        jwt_secret: Some(Keyring::generate_key().into()),
        classifier_examples_per_item: 20,
        // Tests see rulings learnt within a poll.
        retrain_min_secs: 0,
        ..Config::default()
    }
}

/// A 24-item slice of the demo catalog (12 functional, 12 territorial items), stored as the
/// active version in `dir`: the classifier trains on it in about a second.
pub fn small_catalog(dir: &std::path::Path) -> minyi_catalog::Catalog {
    let catalog = minyi_catalog::demo_slice();
    let store = minyi_catalog::CatalogDir::open(dir).unwrap();
    let v = store.import(&catalog).unwrap();
    store.activate(&v).unwrap();
    store.active().unwrap()
}

/// One process running `services` on its own real backends, its new database seeded with the
/// [`small_catalog`] from a directory of its own, catalog polls every second; `adjust` sets the
/// rest. Returns the app and the catalog.
#[allow(dead_code)]
pub async fn spawn_on_small_catalog(
    services: &[Service],
    adjust: impl FnOnce(&mut Config),
) -> (TestApp, minyi_catalog::Catalog) {
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    let catalog = small_catalog(&catalog_dir);
    let mut config = Config {
        catalog_dir: Some(catalog_dir),
        model_path: Some(dir.path().join("model.bin")),
        catalog_poll_secs: 1,
        ..production_config().await
    };
    adjust(&mut config);
    let app = spawn_with(config, Mode::Production(services.to_vec()), Some(dir)).await;
    (app, catalog)
}

/// `catalog` with one phrasing more, to import as another version: a model's version is a hash
/// of what it learnt plus the second it was trained, so an identical catalog could give the
/// same model version within a second.
#[allow(dead_code)]
pub fn with_one_more_phrasing(catalog: &minyi_catalog::Catalog) -> minyi_catalog::Catalog {
    let mut items = catalog.items().to_vec();
    items[0].phrasings.push("新版目录补充的一种说法".into());
    minyi_catalog::Catalog::new("changed", items, catalog.units().clone())
}

/// The newest training example in a production app's database, as one object: `text`,
/// `label` and what was recorded beside them (`source`, `ticket`, …).
#[allow(dead_code)]
pub async fn last_training_example(config: &Config) -> serde_json::Value {
    let pool = sqlx::PgPool::connect(config.database_url.as_deref().unwrap())
        .await
        .unwrap();
    let (text, label, mut example): (String, String, serde_json::Value) =
        sqlx::query_as("SELECT text, label, extra FROM training_examples ORDER BY id DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    example["text"] = text.into();
    example["label"] = label.into();
    example
}

/// Records three phrasings of `text` (`text（0）` …) filed under `item`, as arbitration
/// rulings are.
#[allow(dead_code)]
pub async fn record_rulings(store: &dyn minyi_core::store::CatalogStore, text: &str, item: &str) {
    for n in 0..3 {
        store
            .record_example(
                &format!("{text}（{n}）"),
                item,
                serde_json::json!({"source": "arbitration"}),
            )
            .await
            .unwrap();
    }
}

/// Services of a production-mode test app.
pub const INTAKE_AND_CLASSIFICATION: &[Service] = &[Service::Intake, Service::Classification];

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_services(backend, &[Service::Intake]).await
}

/// A test app; in production mode it runs `services`, embedded mode runs everything. Either
/// way the catalog is [`small_catalog`].
pub async fn spawn_services(backend: Backend, services: &[Service]) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    small_catalog(&catalog_dir);
    let (config, mode) = match backend {
        Backend::Production => (
            Config {
                catalog_dir: Some(catalog_dir),
                model_path: Some(dir.path().join("model.bin")),
                ..production_config().await
            },
            Mode::Production(services.to_vec()),
        ),
        Backend::Embedded => (
            Config {
                grpc_addr: "127.0.0.1:0".parse().unwrap(),
                http_addr: "127.0.0.1:0".parse().unwrap(),
                data_dir: dir.path().to_owned(),
                catalog_dir: Some(catalog_dir),
                classifier_examples_per_item: 20,
                ..Config::default()
            },
            Mode::Embedded,
        ),
    };
    spawn_with(config, mode, Some(dir)).await
}

pub async fn spawn_with(config: Config, mode: Mode, dir: Option<tempfile::TempDir>) -> TestApp {
    let app = App::build(config.clone(), mode).await.unwrap();
    let grpc = app.grpc_addr();
    let http = app.http_addr();
    let health = app.health_addr();
    let authority = app.token_authority().clone();
    let backends = app.backends().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));
    TestApp {
        grpc,
        http,
        health,
        authority,
        backends,
        config,
        stop: Some(stop),
        task: Some(task),
        _dir: dir,
    }
}

impl TestApp {
    pub fn token(&self, role: Role) -> String {
        let unit = (role == Role::Handler).then_some("ST-GM");
        self.authority
            .issue(
                &format!("test-{role}"),
                role,
                unit,
                chrono::Duration::hours(1),
            )
            .unwrap()
    }

    /// A token for `role`, a handler bound to `unit`.
    pub fn token_for(&self, role: Role, unit: Option<&str>) -> String {
        let sub = match unit {
            Some(u) => format!("test-{role}-{u}"),
            None => format!("test-{role}"),
        };
        self.authority
            .issue(&sub, role, unit, chrono::Duration::hours(1))
            .unwrap()
    }

    /// A DispatchService client acting as `role` (a handler of `unit`).
    pub async fn dispatch(&self, role: Role, unit: Option<&str>) -> Dispatch {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let header = format!("Bearer {}", self.token_for(role, unit))
            .parse()
            .unwrap();
        DispatchServiceClient::with_interceptor(channel, Bearer(Some(header)))
    }

    pub async fn intake(&self, role: Option<Role>) -> Intake {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let header: Option<tonic::metadata::MetadataValue<_>> =
            role.map(|r| format!("Bearer {}", self.token(r)).parse().unwrap());
        IntakeServiceClient::with_interceptor(channel, Bearer(header))
    }

    /// A ClassificationService client acting as an agent.
    #[allow(dead_code)]
    pub async fn suggest(&self) -> Suggest {
        let channel = Channel::from_shared(format!("http://{}", self.grpc))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let header = format!("Bearer {}", self.token(Role::Agent))
            .parse()
            .unwrap();
        ClassificationServiceClient::with_interceptor(channel, Bearer(Some(header)))
    }

    /// Graceful stop, as on SIGTERM.
    pub async fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap().unwrap();
        }
    }
}

pub fn store(app: &TestApp) -> Arc<dyn minyi_core::store::TicketStore> {
    app.backends.store.clone()
}

/// Intake, classification and dispatch as three separate apps (own connections, own
/// ports) on one isolated set of real backends.
pub struct Cluster {
    pub intake: TestApp,
    pub classification: TestApp,
    pub dispatch: TestApp,
}

pub async fn spawn_cluster() -> Cluster {
    let dir = tempfile::tempdir().unwrap();
    let catalog_dir = dir.path().join("catalog");
    small_catalog(&catalog_dir);
    let config = Config {
        catalog_dir: Some(catalog_dir),
        model_path: Some(dir.path().join("model.bin")),
        // Activations reach every process within a second.
        catalog_poll_secs: 1,
        ..production_config().await
    };
    let one = |s: Service| Mode::Production(vec![s]);
    Cluster {
        intake: spawn_with(config.clone(), one(Service::Intake), None).await,
        classification: spawn_with(config.clone(), one(Service::Classification), None).await,
        dispatch: spawn_with(config, one(Service::Dispatch), Some(dir)).await,
    }
}

impl Cluster {
    pub async fn stop(self) {
        self.intake.stop().await;
        self.classification.stop().await;
        self.dispatch.stop().await;
    }
}

/// Log output captured in memory: a `MakeWriter` for a test's tracing subscriber.
#[derive(Clone, Default)]
pub struct LogBuffer(pub Arc<std::sync::Mutex<Vec<u8>>>);

impl LogBuffer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Submits a petition the small catalog routes with confidence (a functional item's phrasings,
/// a known place) and waits until it is dispatched: the ticket id.
pub async fn submit_and_wait_dispatched(agent: &mut Intake) -> String {
    use minyi_catalog::model::Responsibility;
    use minyi_proto::common::Location;
    use minyi_proto::intake::{GetTicketRequest, SubmitPetitionRequest};
    let catalog = minyi_catalog::demo_slice();
    let item = catalog
        .items()
        .iter()
        .find(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .unwrap();
    let t = agent
        .submit_petition(SubmitPetitionRequest {
            channel: 1,
            text: item.phrasings.join("，"),
            location: Some(Location {
                address: "光明街道东周社区".into(),
                point: None,
            }),
            ..SubmitPetitionRequest::default()
        })
        .await
        .unwrap()
        .into_inner()
        .ticket
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let now = agent
            .get_ticket(GetTicketRequest { id: t.id.clone() })
            .await
            .unwrap()
            .into_inner();
        if now.status == minyi_core::petition::TicketStatus::Dispatched.to_proto() {
            return t.id;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never dispatched: {now:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
