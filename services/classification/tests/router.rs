//! The routing decision on a small slice of the demo catalog.

use std::sync::Arc;

use minyi_catalog::Gazetteer;
use minyi_catalog::model::Responsibility;
use minyi_classification::Router;
use minyi_classification::model::catalog_examples;
use minyi_classification::router::{AUTO, NEEDS_DISPATCHER};
use minyi_classifier::{Model, TrainConfig};

/// 12 functional and 12 territorial items of the demo catalog, and a model trained on them.
fn small_router() -> Router {
    let catalog = minyi_catalog::demo_slice();
    let examples = catalog_examples(&catalog, 20, &[]);
    let model = Model::train(&examples, &TrainConfig::default(), None).unwrap();
    Router {
        catalog: Arc::new(catalog),
        gazetteer: Arc::new(Gazetteer::guangming()),
        model: Arc::new(model),
    }
}

#[test]
fn decisions() {
    let router = small_router();
    let catalog = router.catalog.clone();
    let mut auto = 0;
    let mut seen_functional_auto = false;
    for item in catalog.items() {
        let text = item.phrasings.join("，");
        // With a place that resolves: confident items are routed to their owner.
        let r = router.decide(&text, "光明街道东周社区", None);
        assert_eq!(r.suggestions.len().min(5), r.suggestions.len());
        assert!(!r.suggestions.is_empty());
        assert_eq!(r.catalog_version, "small");
        assert!(!r.model_version.is_empty());
        if r.decision == AUTO {
            auto += 1;
            assert_eq!(r.item_code, item.code, "auto-dispatched to the wrong item");
            match &item.responsibility {
                Responsibility::Functional { unit } => {
                    assert_eq!(&r.lead_unit, unit);
                    seen_functional_auto = true;
                }
                Responsibility::Territorial => assert_eq!(r.lead_unit, r.street),
            }
            assert!(!r.street.is_empty());
        } else {
            assert_eq!(r.decision, NEEDS_DISPATCHER);
            assert!(!r.reason.is_empty());
        }
        // Without any location, a territorial item never goes to a guessed street.
        if matches!(item.responsibility, Responsibility::Territorial) {
            let r = router.decide(&text, "", None);
            assert!(
                r.decision == NEEDS_DISPATCHER || r.item_code != item.code,
                "territorial item auto-dispatched without a location: {r:?}"
            );
            if r.item_code == item.code {
                assert!(r.lead_unit.is_empty());
            }
        }
    }
    assert!(
        auto >= 12,
        "only {auto} of 24 clear petitions were auto-dispatched"
    );
    assert!(seen_functional_auto);
}

#[test]
fn hostile_input_never_panics() {
    let router = small_router();
    let long = "噪".repeat(200_000);
    for text in [
        "",
        long.as_str(),
        "😀😀😀🚧",
        "鄰居裝修噪音擾民，請處理",
        "The street light outside my house is broken",
        "<script>alert(1)</script><b>油烟</b>",
        "\0\u{202e}",
    ] {
        let r = router.decide(text, "<img src=x>", Some((f64::NAN, 500.0)));
        assert!(r.decision == AUTO || r.decision == NEEDS_DISPATCHER);
    }
}
