//! Keeps the router in step with the catalog directory, without a restart: when an operator
//! activates another catalog version (`minyi catalog activate`), or an arbitration ruling adds
//! a training example (`rulings.jsonl`, written by the arbitration service), a new model is
//! trained in the background from the catalog's text plus every ruling, saved, and swapped in.
//! Routing goes on with the old router meanwhile; every routing records the model and catalog
//! versions it used.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use minyi_catalog::{Catalog, CatalogDir, Gazetteer, RULINGS_FILE};
use minyi_classifier::{Example, Model, TrainConfig};
use tokio::sync::watch;

use crate::model::catalog_examples;
use crate::router::{Router, RouterHandle};

pub struct CatalogWatch {
    pub handle: RouterHandle,
    pub catalog_dir: PathBuf,
    pub model_path: PathBuf,
    /// Synthetic training petitions per catalog item.
    pub per_item: usize,
    pub train: TrainConfig,
    /// Unit-level automatic dispatch (see [`Router::owner_threshold`]).
    pub by_unit: bool,
    /// How often the directory is checked.
    pub every: Duration,
}

/// What the router in force was built from.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    catalog_version: String,
    rulings_len: u64,
}

impl CatalogWatch {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let router = tokio::select! {
            r = self.handle.wait_ready() => r,
            _ = shutdown.wait_for(|s| *s) => return,
        };
        let rulings = self.catalog_dir.join(RULINGS_FILE);
        // Rulings recorded after the saved model was trained are not in it yet.
        let rulings_len = if modified(&rulings) > modified(&self.model_path) {
            0
        } else {
            file_len(&rulings)
        };
        let mut seen = Seen {
            catalog_version: router.catalog.version.clone(),
            rulings_len,
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let now = match self.look() {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the catalog directory; retrying");
                    continue;
                }
            };
            if now == seen {
                continue;
            }
            let (dir, model_path, per_item, train, version, by_unit) = (
                self.catalog_dir.clone(),
                self.model_path.clone(),
                self.per_item,
                self.train.clone(),
                now.catalog_version.clone(),
                self.by_unit,
            );
            let built = tokio::task::spawn_blocking(move || {
                build(&dir, &model_path, per_item, &train, &version, by_unit)
            })
            .await;
            match built {
                Ok(Ok((router, examples))) => {
                    tracing::info!(
                        catalog = %router.catalog.version,
                        model = %router.model.version(),
                        rulings = examples,
                        auto_threshold = router.model.auto_threshold(),
                        owner_threshold = router.owner_threshold,
                        "new router in force"
                    );
                    self.handle.swap(router);
                    seen = now;
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not build the new router; the old one stays")
                }
                Err(e) => tracing::error!(error = %e, "router build panicked; the old one stays"),
            }
        }
    }

    fn look(&self) -> Result<Seen, minyi_catalog::CatalogError> {
        let dir = CatalogDir::open(&self.catalog_dir)?;
        let catalog_version = dir.active_version()?.ok_or_else(|| {
            minyi_catalog::CatalogError::NoActiveVersion(self.catalog_dir.clone())
        })?;
        Ok(Seen {
            catalog_version,
            rulings_len: file_len(&self.catalog_dir.join(RULINGS_FILE)),
        })
    }
}

/// Trains a router for `version` with every ruling about its items. Returns it and the number
/// of rulings used.
fn build(
    dir: &Path,
    model_path: &Path,
    per_item: usize,
    train: &TrainConfig,
    version: &str,
    by_unit: bool,
) -> Result<(Router, usize), String> {
    let catalog = CatalogDir::open(dir)
        .and_then(|d| d.load(version))
        .map_err(|e| e.to_string())?;
    let history = rulings(&dir.join(RULINGS_FILE), &catalog);
    let examples = catalog_examples(&catalog, per_item, &history);
    let model = Model::train(&examples, train, None).map_err(|e| e.to_string())?;
    if let Err(e) = model.save(model_path) {
        tracing::warn!(error = %e, "could not save the new model; it is used, not kept");
    }
    let owner_threshold = by_unit
        .then(|| {
            crate::model::cached_owner_threshold(model_path, &model, &catalog, || examples, train)
        })
        .flatten();
    Ok((
        Router {
            catalog: Arc::new(catalog),
            gazetteer: Arc::new(Gazetteer::guangming()),
            model: Arc::new(model),
            owner_threshold,
        },
        history.len(),
    ))
}

/// The rulings (`{"text": …, "label": item code, …}` per line) whose item is in `catalog`.
/// Unreadable lines are skipped with a warning.
pub fn rulings(path: &Path, catalog: &Catalog) -> Vec<Example> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let known: std::collections::HashSet<&str> =
        catalog.items().iter().map(|i| i.code.as_str()).collect();
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        #[derive(serde::Deserialize)]
        struct Line {
            text: String,
            label: String,
        }
        match serde_json::from_str::<Line>(line) {
            Ok(l) if known.contains(l.label.as_str()) && !l.text.trim().is_empty() => {
                out.push(Example {
                    text: l.text,
                    label: l.label,
                })
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(line = n + 1, error = %e, "unreadable ruling skipped"),
        }
    }
    out
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}
