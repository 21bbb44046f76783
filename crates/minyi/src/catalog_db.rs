//! `minyi catalog … --database-url`: the command line on the production catalog, the database
//! every service reads ([`PgCatalogStore`]), run to completion on a runtime of its own.

use minyi_catalog::cli::Versions;
use minyi_catalog::{Catalog, CatalogError};
use minyi_core::store::{CatalogStore, PgCatalogStore};

/// The database catalog behind the command line's blocking calls.
pub struct DatabaseVersions {
    runtime: tokio::runtime::Runtime,
    store: PgCatalogStore,
}

impl DatabaseVersions {
    /// Connects to a migrated database; changes no schema.
    pub fn open(url: &str) -> Result<Box<dyn Versions>, CatalogError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CatalogError::Backend(format!("cannot start the runtime: {e}")))?;
        let store = runtime.block_on(PgCatalogStore::connect_existing(url))?;
        Ok(Box::new(Self { runtime, store }))
    }
}

impl Versions for DatabaseVersions {
    fn describe(&self) -> String {
        self.store.describe()
    }
    fn list_versions(&self) -> Result<Vec<String>, CatalogError> {
        self.runtime.block_on(self.store.list_versions())
    }
    fn import(&self, catalog: &Catalog) -> Result<String, CatalogError> {
        self.runtime.block_on(self.store.import(catalog))
    }
    fn activate(&self, version: &str) -> Result<(), CatalogError> {
        self.runtime.block_on(self.store.activate(version))
    }
    fn active_version(&self) -> Result<Option<String>, CatalogError> {
        self.runtime.block_on(self.store.active_version())
    }
    fn load(&self, version: &str) -> Result<Catalog, CatalogError> {
        self.runtime.block_on(self.store.load(version))
    }
    fn active(&self) -> Result<Catalog, CatalogError> {
        self.runtime.block_on(self.store.active())
    }
    fn summary(&self, version: &str) -> Result<(usize, String), CatalogError> {
        self.runtime.block_on(self.store.summary(version))
    }
}
