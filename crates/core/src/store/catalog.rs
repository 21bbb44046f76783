//! The catalog store port: versions of the responsibility catalog, the active pointer, and the
//! training examples people's decisions produce. PostgreSQL holds them in production, so every
//! process and pod sees one catalog; the embedded mode keeps them in a catalog directory
//! ([`CatalogDir`]: `v{N}.json`, `active`, `rulings.jsonl`).

use std::io::Write;

use async_trait::async_trait;
use minyi_catalog::{
    Catalog, CatalogDir, CatalogError, Clarification, RULINGS_FILE, TrainingExample, read_stored,
    stored_form, version_number,
};
use sqlx::postgres::PgPool;
use sqlx::{Postgres, Row, Transaction};

/// Where catalog versions and training examples live.
#[async_trait]
pub trait CatalogStore: Send + Sync + 'static {
    /// For logs and errors: `catalog directory data/dev/catalog`, `the catalog database`.
    fn describe(&self) -> String;

    /// Stored versions, oldest first (`v1`, `v2`, …).
    async fn list_versions(&self) -> Result<Vec<String>, CatalogError>;

    /// Validates and stores a catalog as a new version; returns its label (`v{N}`). Does not
    /// activate it. Concurrent imports get different numbers.
    async fn import(&self, catalog: &Catalog) -> Result<String, CatalogError>;

    /// Makes a stored version (`v3` or `3`) the active one.
    async fn activate(&self, version: &str) -> Result<(), CatalogError>;

    /// The active version's label, if any.
    async fn active_version(&self) -> Result<Option<String>, CatalogError>;

    /// A stored version (`v3` or `3`), validated on load.
    async fn load(&self, version: &str) -> Result<Catalog, CatalogError>;

    /// The active catalog.
    async fn active(&self) -> Result<Catalog, CatalogError>;

    /// A stored version's item count and content hash ([`Catalog::content_hash`]), for
    /// listings; by default by loading it.
    async fn summary(&self, version: &str) -> Result<(usize, String), CatalogError> {
        let c = self.load(version).await?;
        Ok((c.len(), c.content_hash()))
    }

    /// Applies an arbitration clarification to the active catalog, stores the result as a new
    /// version and activates it; returns the new version.
    async fn clarify(&self, c: &Clarification) -> Result<String, CatalogError>;

    /// Imports and activates `catalog`, and records `examples` (`source: seed`), when the store
    /// holds no version at all (a new installation, or one moving its catalog directory into
    /// the database); returns the version it stored, or `None` when there were versions. All
    /// or nothing; of several processes starting at once, one seeds.
    async fn seed(
        &self,
        catalog: &Catalog,
        examples: &[TrainingExample],
    ) -> Result<Option<String>, CatalogError>;

    /// Appends a training example; `extra` (an object: source, ticket, ruling, …) is kept
    /// beside it. The caller masks personal data in `text`.
    async fn record_example(
        &self,
        text: &str,
        label: &str,
        extra: serde_json::Value,
    ) -> Result<(), CatalogError>;

    /// Every training example, oldest first.
    async fn examples(&self) -> Result<Vec<TrainingExample>, CatalogError>;

    /// A number that changes whenever an example is added (never when none is): a watcher
    /// compares it to decide whether to retrain.
    async fn examples_mark(&self) -> Result<u64, CatalogError>;
}

/// The embedded mode's store, and the command line's `--dir`: plain files, see [`CatalogDir`].
#[async_trait]
impl CatalogStore for CatalogDir {
    fn describe(&self) -> String {
        format!("catalog directory {}", self.path().display())
    }

    async fn list_versions(&self) -> Result<Vec<String>, CatalogError> {
        CatalogDir::list_versions(self)
    }

    async fn import(&self, catalog: &Catalog) -> Result<String, CatalogError> {
        CatalogDir::import(self, catalog)
    }

    async fn activate(&self, version: &str) -> Result<(), CatalogError> {
        CatalogDir::activate(self, version)
    }

    async fn active_version(&self) -> Result<Option<String>, CatalogError> {
        CatalogDir::active_version(self)
    }

    async fn load(&self, version: &str) -> Result<Catalog, CatalogError> {
        CatalogDir::load(self, version)
    }

    async fn active(&self) -> Result<Catalog, CatalogError> {
        CatalogDir::active(self)
    }

    async fn clarify(&self, c: &Clarification) -> Result<String, CatalogError> {
        CatalogDir::clarify(self, c)
    }

    /// Examples are appended after the version is active (files have no transaction: a crash
    /// between the two loses them).
    async fn seed(
        &self,
        catalog: &Catalog,
        examples: &[TrainingExample],
    ) -> Result<Option<String>, CatalogError> {
        if !CatalogDir::list_versions(self)?.is_empty() {
            return Ok(None);
        }
        let v = CatalogDir::import(self, catalog)?;
        CatalogDir::activate(self, &v)?;
        for e in examples {
            self.record_example(&e.text, &e.label, seeded()).await?;
        }
        Ok(Some(v))
    }

    async fn record_example(
        &self,
        text: &str,
        label: &str,
        extra: serde_json::Value,
    ) -> Result<(), CatalogError> {
        let line = example_json(text, label, extra);
        let path = self.path().join(RULINGS_FILE);
        let io = |e| CatalogError::Io {
            path: path.clone(),
            source: e,
        };
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io)?;
        f.write_all(format!("{line}\n").as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)
    }

    /// Lines that are not an example (`{"text": …, "label": …}`) are skipped with a warning.
    async fn examples(&self) -> Result<Vec<TrainingExample>, CatalogError> {
        let path = self.path().join(RULINGS_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(CatalogError::Io { path, source: e }),
        };
        let mut out = Vec::new();
        for (n, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<TrainingExample>(line) {
                Ok(ex) => out.push(ex),
                Err(e) => tracing::warn!(
                    file = %path.display(), line = n + 1, error = %e,
                    "unreadable training example skipped"
                ),
            }
        }
        Ok(out)
    }

    /// The examples file's length.
    async fn examples_mark(&self) -> Result<u64, CatalogError> {
        Ok(std::fs::metadata(self.path().join(RULINGS_FILE)).map_or(0, |m| m.len()))
    }
}

/// What a seeded example is recorded with.
fn seeded() -> serde_json::Value {
    serde_json::json!({ "source": "seed" })
}

/// `{"text", "label", …extra}`: one example as the directory store writes it.
fn example_json(text: &str, label: &str, extra: serde_json::Value) -> serde_json::Value {
    let mut line = serde_json::json!({ "text": text, "label": label });
    if let (Some(obj), serde_json::Value::Object(more)) = (line.as_object_mut(), extra) {
        for (k, v) in more {
            obj.entry(k).or_insert(v);
        }
    }
    line
}

/// The catalog on PostgreSQL (tables `catalog_versions`, `catalog_active`,
/// `training_examples`; created by the ticket store's migrations).
#[derive(Debug, Clone)]
pub struct PgCatalogStore {
    pool: PgPool,
}

fn backend(e: sqlx::Error) -> CatalogError {
    CatalogError::Backend(e.to_string())
}

impl PgCatalogStore {
    /// On a pool whose database is migrated ([`super::PostgresStore::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// Connects and migrates (tests; services share the ticket store's pool).
    pub async fn connect(url: &str) -> Result<Self, CatalogError> {
        let store = Self::open(url).await?;
        super::PostgresStore::migrate(&store.pool)
            .await
            .map_err(|e| CatalogError::Backend(e.to_string()))?;
        Ok(store)
    }

    /// Connects to a database the services have migrated, changing no schema (the command
    /// line: an operator's newer binary must not migrate production ahead of a rollout).
    pub async fn connect_existing(url: &str) -> Result<Self, CatalogError> {
        let store = Self::open(url).await?;
        let ready: bool = sqlx::query_scalar(
            "SELECT to_regclass('catalog_versions') IS NOT NULL \
             AND to_regclass('training_examples') IS NOT NULL",
        )
        .fetch_one(&store.pool)
        .await
        .map_err(backend)?;
        if !ready {
            return Err(CatalogError::Backend(
                "the database has no catalog tables yet: migrate it first \
                 (`minyi serve classification --migrate-only`, or start a service)"
                    .into(),
            ));
        }
        Ok(store)
    }

    async fn open(url: &str) -> Result<Self, CatalogError> {
        use sqlx::Connection;
        let options: sqlx::postgres::PgConnectOptions = url
            .parse()
            .map_err(|e| CatalogError::Backend(format!("database URL: {e}")))?;
        // One connection first: its error says why (refused, no such database, …) where the
        // pool's would only say that it timed out.
        sqlx::PgConnection::connect_with(&options)
            .await
            .map_err(|e| CatalogError::Backend(format!("cannot connect to the database: {e}")))?
            .close()
            .await
            .map_err(backend)?;
        let pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(std::time::Duration::from_secs(10))
            .connect_with(options)
            .await
            .map_err(backend)?;
        Ok(Self { pool })
    }

    /// Begins a transaction that holds the write lock on the versions: numbering, activation
    /// and clarification run one at a time; readers are not blocked.
    async fn writing(&self) -> Result<Transaction<'_, Postgres>, CatalogError> {
        let mut tx = self.pool.begin().await.map_err(backend)?;
        sqlx::query("LOCK TABLE catalog_versions IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(backend)?;
        Ok(tx)
    }

    async fn insert(
        tx: &mut Transaction<'_, Postgres>,
        catalog: &Catalog,
    ) -> Result<String, CatalogError> {
        let last: Option<i32> = sqlx::query_scalar("SELECT max(n) FROM catalog_versions")
            .fetch_one(&mut **tx)
            .await
            .map_err(backend)?;
        let n = last.unwrap_or(0) + 1;
        let (c, json) = stored_form(catalog, n as u32)?;
        sqlx::query(
            "INSERT INTO catalog_versions (n, body, items, sha256) VALUES ($1, $2, $3, $4)",
        )
        .bind(n)
        .bind(json)
        .bind(c.len() as i32)
        .bind(c.content_hash())
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(c.version)
    }

    async fn set_active(tx: &mut Transaction<'_, Postgres>, n: i32) -> Result<(), CatalogError> {
        sqlx::query(
            "INSERT INTO catalog_active (only_row, n) VALUES (true, $1) \
             ON CONFLICT (only_row) DO UPDATE SET n = $1, activated_at = now()",
        )
        .bind(n)
        .execute(&mut **tx)
        .await
        .map_err(backend)?;
        Ok(())
    }

    async fn load_in(
        exec: impl sqlx::PgExecutor<'_>,
        version: &str,
    ) -> Result<Catalog, CatalogError> {
        let n = version_number(version)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| CatalogError::UnknownVersion(version.into()))?;
        let body: Option<String> =
            sqlx::query_scalar("SELECT body FROM catalog_versions WHERE n = $1")
                .bind(n)
                .fetch_optional(exec)
                .await
                .map_err(backend)?;
        let body = body.ok_or_else(|| CatalogError::UnknownVersion(version.into()))?;
        read_stored(&body, n as u32)
    }

    /// One example; `extra` is kept when it is an object.
    async fn insert_example(
        exec: impl sqlx::PgExecutor<'_>,
        text: &str,
        label: &str,
        extra: serde_json::Value,
    ) -> Result<(), CatalogError> {
        let extra = match extra {
            serde_json::Value::Object(_) => extra,
            _ => serde_json::json!({}),
        };
        sqlx::query("INSERT INTO training_examples (text, label, extra) VALUES ($1, $2, $3)")
            .bind(text)
            .bind(label)
            .bind(extra)
            .execute(exec)
            .await
            .map_err(backend)?;
        Ok(())
    }

    fn no_active() -> CatalogError {
        CatalogError::NoActiveVersionIn("the catalog database".into())
    }
}

#[async_trait]
impl CatalogStore for PgCatalogStore {
    fn describe(&self) -> String {
        "the catalog database".into()
    }

    async fn list_versions(&self) -> Result<Vec<String>, CatalogError> {
        let ns: Vec<i32> = sqlx::query_scalar("SELECT n FROM catalog_versions ORDER BY n")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(ns.into_iter().map(|n| format!("v{n}")).collect())
    }

    async fn import(&self, catalog: &Catalog) -> Result<String, CatalogError> {
        // Validated before the lock is taken: a large invalid file holds nobody up.
        let problems = catalog.validate();
        if !problems.is_empty() {
            return Err(CatalogError::Invalid { problems });
        }
        let mut tx = self.writing().await?;
        let v = Self::insert(&mut tx, catalog).await?;
        tx.commit().await.map_err(backend)?;
        Ok(v)
    }

    async fn activate(&self, version: &str) -> Result<(), CatalogError> {
        let unknown = || CatalogError::UnknownVersion(version.to_string());
        let n = version_number(version)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(unknown)?;
        let mut tx = self.writing().await?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM catalog_versions WHERE n = $1)")
                .bind(n)
                .fetch_one(&mut *tx)
                .await
                .map_err(backend)?;
        if !exists {
            return Err(unknown());
        }
        Self::set_active(&mut tx, n).await?;
        tx.commit().await.map_err(backend)
    }

    async fn active_version(&self) -> Result<Option<String>, CatalogError> {
        let n: Option<i32> = sqlx::query_scalar("SELECT n FROM catalog_active")
            .fetch_optional(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n.map(|n| format!("v{n}")))
    }

    async fn load(&self, version: &str) -> Result<Catalog, CatalogError> {
        Self::load_in(&self.pool, version).await
    }

    async fn active(&self) -> Result<Catalog, CatalogError> {
        let row = sqlx::query(
            "SELECT v.n, v.body FROM catalog_active a JOIN catalog_versions v ON v.n = a.n",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(backend)?
        .ok_or_else(Self::no_active)?;
        let n: i32 = row.get("n");
        read_stored(row.get("body"), n as u32)
    }

    /// From the stored columns (versions stored before the hash column are loaded).
    async fn summary(&self, version: &str) -> Result<(usize, String), CatalogError> {
        let n = version_number(version)
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| CatalogError::UnknownVersion(version.into()))?;
        let row: Option<(i32, Option<String>)> =
            sqlx::query_as("SELECT items, sha256 FROM catalog_versions WHERE n = $1")
                .bind(n)
                .fetch_optional(&self.pool)
                .await
                .map_err(backend)?;
        match row {
            None => Err(CatalogError::UnknownVersion(version.into())),
            Some((items, Some(sha256))) => Ok((items as usize, sha256)),
            Some((_, None)) => {
                let c = self.load(version).await?;
                Ok((c.len(), c.content_hash()))
            }
        }
    }

    async fn clarify(&self, c: &Clarification) -> Result<String, CatalogError> {
        let mut tx = self.writing().await?;
        let n: i32 = sqlx::query_scalar("SELECT n FROM catalog_active")
            .fetch_optional(&mut *tx)
            .await
            .map_err(backend)?
            .ok_or_else(Self::no_active)?;
        let mut catalog = Self::load_in(&mut *tx, &format!("v{n}")).await?;
        catalog.apply(c)?;
        let v = Self::insert(&mut tx, &catalog).await?;
        let new = version_number(&v).unwrap_or_default() as i32;
        Self::set_active(&mut tx, new).await?;
        tx.commit().await.map_err(backend)?;
        Ok(v)
    }

    async fn seed(
        &self,
        catalog: &Catalog,
        examples: &[TrainingExample],
    ) -> Result<Option<String>, CatalogError> {
        let mut tx = self.writing().await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM catalog_versions)")
            .fetch_one(&mut *tx)
            .await
            .map_err(backend)?;
        if any {
            return Ok(None);
        }
        let v = Self::insert(&mut tx, catalog).await?;
        Self::set_active(&mut tx, 1).await?;
        for e in examples {
            Self::insert_example(&mut *tx, &e.text, &e.label, seeded()).await?;
        }
        tx.commit().await.map_err(backend)?;
        Ok(Some(v))
    }

    async fn record_example(
        &self,
        text: &str,
        label: &str,
        extra: serde_json::Value,
    ) -> Result<(), CatalogError> {
        Self::insert_example(&self.pool, text, label, extra).await
    }

    async fn examples(&self) -> Result<Vec<TrainingExample>, CatalogError> {
        let rows = sqlx::query("SELECT text, label FROM training_examples ORDER BY id")
            .fetch_all(&self.pool)
            .await
            .map_err(backend)?;
        Ok(rows
            .into_iter()
            .map(|r| TrainingExample {
                text: r.get("text"),
                label: r.get("label"),
            })
            .collect())
    }

    /// The number of examples: rows are never deleted, so it grows with every commit, whatever
    /// order concurrent inserts commit in (a largest id would not).
    async fn examples_mark(&self) -> Result<u64, CatalogError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM training_examples")
            .fetch_one(&self.pool)
            .await
            .map_err(backend)?;
        Ok(n as u64)
    }
}

/// Keeps `live` at the store's active version, checking every `every` until `shutdown`: how
/// dispatch and intake processes follow an activation (or an arbitration clarification) without
/// a restart. A process running classification does not start it: its catalog watch, which
/// also retrains, keeps the process's catalog in step (one poller per process).
pub async fn follow_active(
    store: std::sync::Arc<dyn CatalogStore>,
    live: minyi_catalog::LiveCatalog,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let active = match store.active_version().await {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(store = %store.describe(), error = %e, "cannot read the active catalog version; retrying");
                continue;
            }
        };
        put_in_force(store.as_ref(), &live, &active).await;
    }
}

/// Puts `version` in force in `live`, loading it from `store` when it is not the version in
/// force already, and returns it; `None` when it cannot be loaded (the old one stays, logged).
pub async fn put_in_force(
    store: &dyn CatalogStore,
    live: &minyi_catalog::LiveCatalog,
    version: &str,
) -> Option<std::sync::Arc<minyi_catalog::Catalog>> {
    let current = live.current();
    if current.version == version {
        return Some(current);
    }
    match store.load(version).await {
        Ok(c) => {
            tracing::info!(version = %c.version, items = c.len(), "catalog version in force");
            let c = std::sync::Arc::new(c);
            live.replace(c.clone());
            Some(c)
        }
        Err(e) => {
            tracing::warn!(version, error = %e, "cannot load the active catalog version; the old one stays");
            None
        }
    }
}
