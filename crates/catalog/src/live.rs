//! The catalog in force in a running process, replaced when another version is activated.

use std::sync::{Arc, RwLock};

use crate::model::Catalog;

/// The catalog a process works with, shared by its services: readers take the current
/// version (work in flight keeps the version it started with); a new one is swapped in whole.
#[derive(Debug, Clone)]
pub struct LiveCatalog(Arc<RwLock<Arc<Catalog>>>);

impl LiveCatalog {
    /// Starts with `catalog`.
    pub fn new(catalog: impl Into<Arc<Catalog>>) -> Self {
        LiveCatalog(Arc::new(RwLock::new(catalog.into())))
    }

    /// The version in force now.
    pub fn current(&self) -> Arc<Catalog> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `catalog` in force for every holder of this handle.
    pub fn replace(&self, catalog: impl Into<Arc<Catalog>>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = catalog.into();
    }
}

impl From<Catalog> for LiveCatalog {
    fn from(c: Catalog) -> Self {
        LiveCatalog::new(c)
    }
}

impl From<Arc<Catalog>> for LiveCatalog {
    fn from(c: Arc<Catalog>) -> Self {
        LiveCatalog::new(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_clone_sees_a_replacement_and_readers_keep_theirs() {
        let live = LiveCatalog::new(crate::demo_slice());
        let other = live.clone();
        let held = live.current();
        let mut next = crate::demo_slice();
        next.version = "v2".into();
        live.replace(next);
        assert_eq!(other.current().version, "v2");
        assert_eq!(held.version, crate::demo_slice().version);
    }
}
