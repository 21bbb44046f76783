//! Unit-level automatic dispatch on the demo catalog: trains as the service does (4 synthetic
//! petitions per item, 2-fold internal CV, the owner threshold on a held-out half), then
//! decides `demo_history(per_item = 2, seed = 1234)` as the router would with a resolved place,
//! and prints one JSON line: how many petitions go out without a person at the item level and
//! at the unit level, and how often the unit they go to is right.
//!
//! `cargo run --release -p minyi-classification --example unit_bench`

use std::time::Instant;

use minyi_classification::model::{OWNER_TOP_K, catalog_examples, owner_confidence, owner_of};
use minyi_classifier::{Model, TrainConfig};

fn main() {
    let catalog = minyi_catalog::Catalog::demo();
    let config = TrainConfig {
        threshold_folds: 2,
        ..TrainConfig::default()
    };
    let examples = catalog_examples(&catalog, 4, &[]);
    let started = Instant::now();
    let model = Model::train(&examples, &config, None).expect("training failed");
    let train_seconds = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let owner_threshold =
        minyi_classification::model::owner_threshold(&catalog, &examples, &config);
    let owner_seconds = started.elapsed().as_secs_f64();

    let test = minyi_catalog::demo_history(&catalog, 2, 1234);
    let (mut item_auto, mut item_right, mut unit_auto, mut unit_right) = (0, 0, 0, 0);
    for (text, label) in &test {
        let predictions = model.predict(text, OWNER_TOP_K);
        let Some(top) = predictions.first() else {
            continue;
        };
        if model.is_auto(top) {
            item_auto += 1;
            item_right += usize::from(owner_of(&catalog, &top.label) == owner_of(&catalog, label));
        } else if let (Some(t), Some((owner, confidence))) =
            (owner_threshold, owner_confidence(&catalog, &predictions))
            && confidence >= t
        {
            unit_auto += 1;
            unit_right += usize::from(Some(owner) == owner_of(&catalog, label));
        }
    }
    let n = test.len() as f64;
    let share = |a: usize, b: usize| (b > 0).then(|| (a as f64 / b as f64 * 1e4).round() / 1e4);
    println!(
        "{}",
        serde_json::json!({
            "test_examples": test.len(),
            "train_seconds": (train_seconds * 100.0).round() / 100.0,
            "owner_threshold_seconds": (owner_seconds * 100.0).round() / 100.0,
            "auto_threshold": model.auto_threshold(),
            "owner_threshold": owner_threshold,
            "item_level_coverage": share(item_auto, test.len()),
            "item_level_unit_precision": share(item_right, item_auto),
            "unit_level_coverage": share(unit_auto, test.len()),
            "unit_level_unit_precision": share(unit_right, unit_auto),
            "total_coverage": ((item_auto + unit_auto) as f64 / n * 1e4).round() / 1e4,
            "total_unit_precision": share(item_right + unit_right, item_auto + unit_auto),
        })
    );
}
