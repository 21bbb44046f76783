//! Keeps the router in step with the catalog store, without a restart: when an operator
//! activates another catalog version (`minyi catalog activate`, `CatalogService.Activate`), or
//! people's decisions add training examples (arbitration rulings, dispatchers'
//! reclassifications, recorded by the dispatch service), a new model is trained in the
//! background from the catalog's text plus every example, saved, and swapped in. Routing goes
//! on with the old router meanwhile; every routing records the model and catalog versions it
//! used. In production the store is the database, so every classification replica follows the
//! same catalog and learns from every dispatch replica's decisions.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use minyi_catalog::{Catalog, Gazetteer, LiveCatalog, TrainingExample};
use minyi_classifier::{Example, Model, TrainConfig};
use minyi_core::store::{CatalogStore, put_in_force};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::model::catalog_examples;
use crate::router::{Router, RouterHandle};

pub struct CatalogWatch {
    pub handle: RouterHandle,
    pub store: Arc<dyn CatalogStore>,
    /// The process's catalog in force, which this watch keeps on the active version (dispatch,
    /// intake and the dashboard in the same process read it): one poller of the store per
    /// process, in place of [`minyi_core::store::follow_active`].
    pub live: LiveCatalog,
    pub model_path: PathBuf,
    /// Synthetic training petitions per catalog item.
    pub per_item: usize,
    pub train: TrainConfig,
    /// Unit-level automatic dispatch (see [`Router::owner_threshold`]).
    pub by_unit: bool,
    /// How often the store is checked.
    pub every: Duration,
    /// Least time between two retrainings for new examples (another catalog version is
    /// trained for at once).
    pub retrain_min: Duration,
}

/// A router being trained in the background, with the number of examples it learnt.
type Training = tokio::task::JoinHandle<Result<(Router, usize), String>>;

/// What a router is built from: a catalog version and the examples up to a mark.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    catalog_version: String,
    /// [`CatalogStore::examples_mark`] when its examples were read.
    examples_mark: u64,
}

/// Beside the saved model (`{model}.examples.json`): the examples it was trained with, so a
/// restart does not retrain for examples it already has.
#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct TrainedWith {
    model_version: String,
    examples_mark: u64,
}

/// Where [`TrainedWith`] is kept for the model at `model_path`.
pub fn trained_with_path(model_path: &Path) -> PathBuf {
    let mut name = model_path.file_name().unwrap_or_default().to_os_string();
    name.push(".examples.json");
    model_path.with_file_name(name)
}

/// Notes beside the saved model that it was trained with the examples up to `examples_mark`
/// ([`CatalogStore::examples_mark`]). A file that cannot be written costs one retraining.
pub fn note_trained_with(model_path: &Path, model: &Model, examples_mark: u64) {
    let with = TrainedWith {
        model_version: model.version().to_owned(),
        examples_mark,
    };
    if let Err(e) = crate::model::save_json(&trained_with_path(model_path), &with) {
        tracing::warn!(error = %e, "could not note the model's examples; a restart retrains once");
    }
}

/// The examples mark `model` was trained with, when the file beside it says so; else 0.
fn trained_mark(model_path: &Path, model: &Model) -> u64 {
    std::fs::read(trained_with_path(model_path))
        .ok()
        .and_then(|b| serde_json::from_slice::<TrainedWith>(&b).ok())
        .filter(|t| t.model_version == model.version())
        .map_or(0, |t| t.examples_mark)
}

impl CatalogWatch {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let this = Arc::new(self);
        // What the router in force was built from, and when; `None` until the first router
        // is ready.
        let mut built: Option<(Seen, Instant)> = None;
        // A router being trained, and what for. The loop goes on polling meanwhile, so that the
        // process's catalog follows an activation during a long training.
        let mut training: Option<(Seen, Training)> = None;
        loop {
            // Wakes at the next poll, or as soon as a training ends.
            let finished = tokio::select! {
                _ = tokio::time::sleep(this.every) => None,
                done = async {
                    match training.as_mut() {
                        Some((_, task)) => Some(task.await),
                        None => std::future::pending().await,
                    }
                } => done,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            if let Some(done) = finished
                && let Some((target, _)) = training.take()
            {
                match done {
                    Ok(Ok((router, examples))) => {
                        tracing::info!(
                            catalog = %router.catalog.version,
                            model = %router.model.version(),
                            examples,
                            auto_threshold = router.model.auto_threshold(),
                            owner_threshold = router.owner_threshold,
                            "new router in force"
                        );
                        this.handle.swap(router);
                        built = Some((target, Instant::now()));
                    }
                    Ok(Err(e)) => {
                        tracing::error!(error = %e, "could not build the new router; the old one stays")
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "router build panicked; the old one stays")
                    }
                }
            }
            let now = match this.look().await {
                Ok(now) => now,
                Err(e) => {
                    tracing::warn!(store = %this.store.describe(), error = %e, "cannot read the catalog store; retrying");
                    continue;
                }
            };
            let Some(catalog) =
                put_in_force(this.store.as_ref(), &this.live, &now.catalog_version).await
            else {
                continue;
            };
            // The first model may still be training: the process follows the catalog
            // meanwhile, and the router catches up once it is ready.
            let Some(router) = this.handle.current() else {
                continue;
            };
            let (seen, at) = built.get_or_insert_with(|| {
                let seen = Seen {
                    catalog_version: router.catalog.version.clone(),
                    examples_mark: trained_mark(&this.model_path, &router.model),
                };
                (seen, Instant::now())
            });
            if training.is_some() || !due(&now, seen, at.elapsed(), this.retrain_min) {
                continue;
            }
            let watch = this.clone();
            let mark = now.examples_mark;
            training = Some((
                now,
                tokio::spawn(async move { watch.build(catalog, mark).await }),
            ));
        }
    }

    async fn look(&self) -> Result<Seen, minyi_catalog::CatalogError> {
        let catalog_version =
            self.store.active_version().await?.ok_or_else(|| {
                minyi_catalog::CatalogError::NoActiveVersionIn(self.store.describe())
            })?;
        Ok(Seen {
            catalog_version,
            examples_mark: self.store.examples_mark().await?,
        })
    }

    /// Trains a router for `catalog` with every example about its items.
    /// Returns it and the number of examples used.
    async fn build(
        &self,
        catalog: Arc<Catalog>,
        examples_mark: u64,
    ) -> Result<(Router, usize), String> {
        let history = usable(
            self.store.examples().await.map_err(|e| e.to_string())?,
            &catalog,
        );
        let (model_path, per_item, train, by_unit) = (
            self.model_path.clone(),
            self.per_item,
            self.train.clone(),
            self.by_unit,
        );
        tokio::task::spawn_blocking(move || {
            let n = history.len();
            build(
                &model_path,
                catalog,
                per_item,
                &train,
                &history,
                by_unit,
                examples_mark,
            )
            .map(|r| (r, n))
        })
        .await
        .map_err(|e| format!("router build panicked: {e}"))?
    }
}

/// Whether the router built from `built`, `since` ago, is to be rebuilt for `now`: at once
/// for another catalog version; for new examples once `min` has passed since the last build.
fn due(now: &Seen, built: &Seen, since: Duration, min: Duration) -> bool {
    now.catalog_version != built.catalog_version
        || (now.examples_mark != built.examples_mark && since >= min)
}

fn build(
    model_path: &Path,
    catalog: Arc<Catalog>,
    per_item: usize,
    train: &TrainConfig,
    history: &[Example],
    by_unit: bool,
    examples_mark: u64,
) -> Result<Router, String> {
    let examples = catalog_examples(&catalog, per_item, history);
    let model = Model::train(&examples, train, None).map_err(|e| e.to_string())?;
    match model.save(model_path) {
        Ok(()) => note_trained_with(model_path, &model, examples_mark),
        Err(e) => tracing::warn!(error = %e, "could not save the new model; it is used, not kept"),
    }
    let owner_threshold = by_unit
        .then(|| {
            crate::model::cached_owner_threshold(model_path, &model, &catalog, || examples, train)
        })
        .flatten();
    Ok(Router {
        catalog,
        gazetteer: Arc::new(Gazetteer::guangming()),
        model: Arc::new(model),
        owner_threshold,
    })
}

/// The examples whose item is in `catalog` and whose text is not blank.
pub fn usable(examples: Vec<TrainingExample>, catalog: &Catalog) -> Vec<Example> {
    examples
        .into_iter()
        .filter(|e| catalog.get(&e.label).is_some() && !e.text.trim().is_empty())
        .map(|e| Example {
            text: e.text,
            label: e.label,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_examples_wait_for_the_interval_and_a_new_catalog_does_not() {
        let seen = |v: &str, mark| Seen {
            catalog_version: v.into(),
            examples_mark: mark,
        };
        let min = Duration::from_secs(60);
        let (soon, later) = (Duration::from_secs(5), Duration::from_secs(61));
        let built = seen("v1", 3);
        assert!(!due(&seen("v1", 3), &built, later, min), "nothing new");
        assert!(
            !due(&seen("v1", 4), &built, soon, min),
            "examples, too soon"
        );
        assert!(
            due(&seen("v1", 4), &built, later, min),
            "examples, interval over"
        );
        assert!(due(&seen("v2", 3), &built, soon, min), "another version");
        assert!(
            due(&seen("v1", 4), &built, soon, Duration::ZERO),
            "no interval"
        );
    }
}
