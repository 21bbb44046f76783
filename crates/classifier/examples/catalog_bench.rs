//! Large-label-set benchmark on the demo responsibility catalog: trains on
//! `demo_history(per_item = 4, seed = 7)` with the service's settings (2-fold internal CV) and
//! evaluates on `demo_history(per_item = 2, seed = 1234)`; prints one JSON line.
//!
//! Besides the item, it measures the responsible unit ("owner": a functional item's
//! department, or "the street of the address" for territorial items), the unit a petition is
//! dispatched to: how often the top item's owner is right, and how well the summed probability
//! of the top-10 items sharing that owner ranks (precision of its most confident 80 %).
//!
//! `cargo run --release -p minyi-classifier --example catalog_bench [-- '<TrainConfig JSON>']`

use std::time::Instant;

use minyi_classifier::{Example, Model, TrainConfig, metrics};

fn examples(history: Vec<(String, String)>) -> Vec<Example> {
    history
        .into_iter()
        .map(|(text, label)| Example { text, label })
        .collect()
}

fn main() {
    let config: TrainConfig = match std::env::args().nth(1) {
        Some(json) => serde_json::from_str(&json).expect("argument is not a TrainConfig JSON"),
        None => TrainConfig {
            threshold_folds: 2,
            ..TrainConfig::default()
        },
    };
    let catalog = minyi_catalog::Catalog::demo();
    let owner = |code: &str| catalog.get(code).map_or("", |i| i.owner_key());
    let train = examples(minyi_catalog::demo_history(&catalog, 4, 7));
    let test = examples(minyi_catalog::demo_history(&catalog, 2, 1234));

    let started = Instant::now();
    let model = Model::train(&train, &config, None).expect("training failed");
    let train_seconds = started.elapsed().as_secs_f64();

    let mut top1 = 0usize;
    let mut top5 = 0usize;
    let mut items: Vec<(f64, bool)> = Vec::with_capacity(test.len());
    let mut owners: Vec<(f64, bool)> = Vec::with_capacity(test.len());
    let mut micros: Vec<f64> = Vec::with_capacity(test.len());
    for e in &test {
        let t = Instant::now();
        let predictions = model.predict(&e.text, 5);
        micros.push(t.elapsed().as_secs_f64() * 1e6);
        // Not timed: the owner's confidence over the top 10.
        let top10 = model.predict(&e.text, 10);
        if let Some((o, confidence)) =
            catalog.owner_confidence(top10.iter().map(|p| (p.label.as_str(), p.confidence)))
        {
            owners.push((confidence, o == owner(&e.label)));
        }
        let right = predictions.first().is_some_and(|p| p.label == e.label);
        top1 += usize::from(right);
        top5 += usize::from(predictions.iter().any(|p| p.label == e.label));
        items.push((predictions.first().map_or(0.0, |p| p.confidence), right));
    }
    let auto = metrics::auto_dispatch(&items, model.auto_threshold());
    let n = test.len() as f64;
    let round = |x: f64| (x * 10_000.0).round() / 10_000.0;
    let line = serde_json::json!({
        "algorithm": format!("{:?}", model.algorithm()),
        "labels": model.labels().len(),
        "train_examples": train.len(),
        "test_examples": test.len(),
        "train_seconds": round(train_seconds),
        "internal_cv_accuracy": model.training_info().internal_cv_accuracy.map(round),
        "top1": round(top1 as f64 / n),
        "top5": round(top5 as f64 / n),
        "auto_threshold": model.auto_threshold().map(round),
        "auto_coverage": round(auto.coverage),
        "auto_precision": auto.precision.map(round),
        "calibration_error": metrics::expected_calibration_error(&items, 10).map(round),
        "mean_confidence": round(items.iter().map(|i| i.0).sum::<f64>() / n),
        "owner_top1": round(owners.iter().filter(|o| o.1).count() as f64 / n),
        "owner_precision_at_80_coverage": metrics::precision_at_coverage(&owners, 0.8).map(round),
        "p50_us": round(metrics::percentile(&micros, 50.0)),
        "p99_us": round(metrics::percentile(&micros, 99.0)),
    });
    println!("{line}");
}
