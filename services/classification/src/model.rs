//! Building the classifier for a catalog: load a saved model that covers the catalog, or train
//! one from the catalog's own text (synthetic history from its phrasings and keywords) plus any
//! real dispatch history, and save it.

use std::path::Path;

use minyi_catalog::Catalog;
use minyi_classifier::{Example, Model, Prediction, TrainConfig};

/// How many of the best items the unit-level confidence sums over.
pub const OWNER_TOP_K: usize = 10;

pub use minyi_catalog::STREET_OWNER;

/// Who handles an item: a functional item's unit, or [`STREET_OWNER`].
pub fn owner_of<'a>(catalog: &'a Catalog, code: &str) -> Option<&'a str> {
    catalog.get(code).map(|item| item.owner_key())
}

/// [`Catalog::owner_confidence`] of the model's predictions, best first.
pub fn owner_confidence<'a>(
    catalog: &'a Catalog,
    predictions: &[Prediction],
) -> Option<(&'a str, f64)> {
    catalog.owner_confidence(predictions.iter().map(|p| (p.label.as_str(), p.confidence)))
}

/// The unit-level auto-dispatch threshold for `catalog`: a model trained with `config` on half
/// of `examples` (stratified) predicts the other half, and the threshold is the lowest owner
/// confidence at which the owner is right with `config`'s target precision and margin. `None`
/// when no threshold reaches it (or there are too few examples to split).
pub fn owner_threshold(
    catalog: &Catalog,
    examples: &[Example],
    config: &TrainConfig,
) -> Option<f64> {
    let labels: Vec<&str> = examples.iter().map(|e| e.label.as_str()).collect();
    let folds = minyi_classifier::stratified_folds(&labels, 2, config.seed);
    let (train, test): (Vec<_>, Vec<_>) = examples.iter().zip(&folds).partition(|(_, f)| **f == 0);
    let train: Vec<Example> = train.into_iter().map(|(e, _)| e.clone()).collect();
    if train.is_empty() || test.is_empty() {
        return None;
    }
    let model = Model::train(&train, config, None).ok()?;
    let items: Vec<(f64, bool)> = test
        .iter()
        .filter_map(|(e, _)| {
            let predictions = model.predict(&e.text, OWNER_TOP_K);
            let (owner, confidence) = owner_confidence(catalog, &predictions)?;
            Some((confidence, owner_of(catalog, &e.label) == Some(owner)))
        })
        .collect();
    minyi_classifier::metrics::select_threshold(
        &items,
        config.target_precision,
        config.precision_margin_z,
    )
}

/// What a unit-level threshold was chosen for.
#[derive(Debug, serde::Serialize, serde::Deserialize, PartialEq)]
struct OwnerThresholdKey {
    model_version: String,
    catalog_version: String,
    target_precision: f64,
    precision_margin_z: f64,
    owner_top_k: usize,
}

/// The unit-level threshold chosen for one model, kept in a file beside the model so that a
/// restart that loads the model does not train again to choose it.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SavedOwnerThreshold {
    #[serde(flatten)]
    key: OwnerThresholdKey,
    owner_threshold: Option<f64>,
}

/// Where [`cached_owner_threshold`] keeps the threshold of the model at `model_path`.
pub fn owner_threshold_path(model_path: &Path) -> std::path::PathBuf {
    let mut name = model_path.file_name().unwrap_or_default().to_os_string();
    name.push(".unit.json");
    model_path.with_file_name(name)
}

/// [`owner_threshold`] for `model`, read from beside `model_path` when it was chosen for this
/// model and catalog version with the same target and margin; otherwise chosen from
/// `examples()` (the examples `model` was trained on) and saved there. A file that cannot be
/// read or written only costs the computation.
pub fn cached_owner_threshold(
    model_path: &Path,
    model: &Model,
    catalog: &Catalog,
    examples: impl FnOnce() -> Vec<Example>,
    config: &TrainConfig,
) -> Option<f64> {
    let path = owner_threshold_path(model_path);
    let key = OwnerThresholdKey {
        model_version: model.version().to_owned(),
        catalog_version: catalog.version.clone(),
        target_precision: config.target_precision,
        precision_margin_z: config.precision_margin_z,
        owner_top_k: OWNER_TOP_K,
    };
    let saved = std::fs::read(&path)
        .ok()
        .and_then(|bytes| serde_json::from_slice::<SavedOwnerThreshold>(&bytes).ok());
    if let Some(saved) = saved
        && saved.key == key
    {
        return saved.owner_threshold;
    }
    let chosen = SavedOwnerThreshold {
        owner_threshold: owner_threshold(catalog, &examples(), config),
        key,
    };
    if let Err(e) = save_json(&path, &chosen) {
        tracing::warn!(error = %e, path = %path.display(), "could not save the unit-level threshold");
    }
    chosen.owner_threshold
}

/// Writes `value` as JSON to `path` through a temporary file and a rename: readers see the old
/// file or the new one, never half of one.
pub(crate) fn save_json(path: &Path, value: &impl serde::Serialize) -> std::io::Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(std::io::Error::other)?;
    let tmp = path.with_extension("tmp-minyi");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, path)
}

/// Training examples for `catalog`: `per_item` synthetic petitions per item, plus `history`.
pub fn catalog_examples(catalog: &Catalog, per_item: usize, history: &[Example]) -> Vec<Example> {
    let mut out: Vec<Example> = minyi_catalog::demo_history(catalog, per_item, 7)
        .into_iter()
        .map(|(text, label)| Example { text, label })
        .collect();
    out.extend(history.iter().cloned());
    out
}

/// Loads the model at `path` if it knows every item of `catalog` and was trained for
/// `config`'s target precision and threshold margin; otherwise trains one and saves it there. Returns the model
/// and whether it was trained now.
pub fn load_or_train(
    path: &Path,
    catalog: &Catalog,
    per_item: usize,
    history: &[Example],
    config: &TrainConfig,
) -> Result<(Model, bool), minyi_classifier::ClassifyError> {
    if path.exists() {
        match Model::load(path) {
            Ok(m)
                if covers(&m, catalog)
                    && m.target_precision() == config.target_precision
                    && m.precision_margin_z() == config.precision_margin_z =>
            {
                return Ok((m, false));
            }
            Ok(m) if covers(&m, catalog) => tracing::info!(
                path = %path.display(),
                saved = m.target_precision(),
                wanted = config.target_precision,
                saved_margin_z = m.precision_margin_z(),
                wanted_margin_z = config.precision_margin_z,
                "saved model was trained for another auto-dispatch precision or margin; retraining"
            ),
            Ok(_) => {
                tracing::info!(path = %path.display(), "saved model predates the catalog; retraining")
            }
            Err(e) => {
                tracing::warn!(error = %e, path = %path.display(), "cannot load the saved model; retraining")
            }
        }
    }
    let examples = catalog_examples(catalog, per_item, history);
    tracing::info!(
        examples = examples.len(),
        history = history.len(),
        items = catalog.len(),
        "training the classifier for the catalog"
    );
    let model = Model::train(&examples, config, None)?;
    if let Some(dir) = path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    model.save(path)?;
    Ok((model, true))
}

fn covers(model: &Model, catalog: &Catalog) -> bool {
    let labels: std::collections::HashSet<&str> =
        model.labels().iter().map(String::as_str).collect();
    catalog
        .items()
        .iter()
        .all(|i| labels.contains(i.code.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unit_level_threshold_is_chosen_once_per_model_and_kept_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.model");
        let catalog = minyi_catalog::demo_slice();
        let config = TrainConfig {
            threshold_folds: 2,
            ..TrainConfig::default()
        };
        let examples = catalog_examples(&catalog, 10, &[]);
        let model = Model::train(&examples, &config, None).unwrap();
        let not_again = || -> Vec<Example> { panic!("the saved threshold should have served") };

        let first = cached_owner_threshold(&path, &model, &catalog, || examples.clone(), &config);
        assert!(
            first.is_some(),
            "the small catalog has a unit-level threshold"
        );
        assert_eq!(first, owner_threshold(&catalog, &examples, &config));
        assert!(owner_threshold_path(&path).exists());
        let again = cached_owner_threshold(&path, &model, &catalog, not_again, &config);
        assert_eq!(again, first, "read back, not chosen again");

        // Another target, another catalog version or a damaged file: chosen again (and saved).
        let mut chosen = 0;
        let mut count = || {
            chosen += 1;
            examples.clone()
        };
        let looser = TrainConfig {
            target_precision: 0.5,
            ..config.clone()
        };
        let t = cached_owner_threshold(&path, &model, &catalog, &mut count, &looser);
        assert!(
            t <= first,
            "a looser target never needs a higher threshold: {t:?} {first:?}"
        );
        let mut next = catalog.clone();
        next.version.push_str("-next");
        cached_owner_threshold(&path, &model, &next, &mut count, &config);
        std::fs::write(owner_threshold_path(&path), b"{not json").unwrap();
        assert_eq!(
            cached_owner_threshold(&path, &model, &next, &mut count, &config),
            first
        );
        assert_eq!(chosen, 3);
        cached_owner_threshold(&path, &model, &next, not_again, &config);
    }

    #[test]
    fn a_saved_model_is_reused_only_for_the_same_catalog_and_precision() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("classifier.model");
        let catalog = minyi_catalog::demo_slice();
        let config = |target_precision| TrainConfig {
            target_precision,
            threshold_folds: 2,
            ..TrainConfig::default()
        };
        let (_, trained) = load_or_train(&path, &catalog, 2, &[], &config(0.98)).unwrap();
        assert!(trained);
        let (m, trained) = load_or_train(&path, &catalog, 2, &[], &config(0.98)).unwrap();
        assert!(!trained, "same catalog and target: the saved model serves");
        assert_eq!(m.target_precision(), 0.98);
        let (m, trained) = load_or_train(&path, &catalog, 2, &[], &config(0.9)).unwrap();
        assert!(trained, "another target precision: retrained");
        assert_eq!(m.target_precision(), 0.9);
        let (_, trained) = load_or_train(&path, &catalog, 2, &[], &config(0.9)).unwrap();
        assert!(!trained);
        let no_margin = TrainConfig {
            precision_margin_z: 0.0,
            ..config(0.9)
        };
        let (m, trained) = load_or_train(&path, &catalog, 2, &[], &no_margin).unwrap();
        assert!(trained, "another threshold margin: retrained");
        assert_eq!(m.precision_margin_z(), 0.0);
    }
}
