//! The routing decision on a small slice of the demo catalog.

use std::sync::Arc;

use minyi_catalog::Gazetteer;
use minyi_catalog::model::Responsibility;
use minyi_classification::Router;
use minyi_classification::model::{OWNER_TOP_K, STREET_OWNER, catalog_examples, owner_confidence};
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
        owner_threshold: None,
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

#[test]
fn the_owner_confidence_sums_the_items_of_the_best_items_unit() {
    use minyi_classification::model::owner_of;
    use minyi_classifier::Prediction;
    let catalog = minyi_catalog::demo_slice();
    let functional: Vec<_> = catalog
        .items()
        .iter()
        .filter(|i| matches!(i.responsibility, Responsibility::Functional { .. }))
        .collect();
    let territorial: Vec<_> = catalog
        .items()
        .iter()
        .filter(|i| matches!(i.responsibility, Responsibility::Territorial))
        .collect();
    let p = |code: &str, confidence: f64| Prediction {
        label: code.to_owned(),
        confidence,
    };
    let predictions = [
        p(&territorial[0].code, 0.4),
        p(&functional[0].code, 0.3),
        p(&territorial[1].code, 0.2),
    ];
    let (owner, confidence) = owner_confidence(&catalog, &predictions).unwrap();
    assert_eq!(owner, STREET_OWNER);
    assert!((confidence - 0.6).abs() < 1e-12);
    let unit = owner_of(&catalog, &functional[0].code).unwrap();
    assert_ne!(unit, STREET_OWNER);
    assert_eq!(
        owner_confidence(&catalog, &predictions[1..]).unwrap().0,
        unit
    );
    assert!(owner_confidence(&catalog, &[]).is_none());
}

#[test]
fn an_uncertain_item_goes_to_its_unit_when_the_unit_is_sure() {
    let catalog = minyi_catalog::demo_slice();
    let examples = catalog_examples(&catalog, 20, &[]);
    let threshold =
        minyi_classification::model::owner_threshold(&catalog, &examples, &TrainConfig::default());
    let t = threshold.expect("an owner-level threshold for the small catalog");
    assert!(t > 0.0 && t <= 1.0, "{t}");

    // Off (no owner threshold): vague texts go to a dispatcher, as before.
    let mut router = small_router();
    let vague = [
        "麻烦尽快处理一下这个问题",
        "我要反映一个情况，一直没人管",
        "投诉",
    ];
    let place = router.locate("", "光明街道东周社区", None);
    for text in vague {
        let r = router.decide(text, "光明街道东周社区", None);
        assert_eq!(r.decision, NEEDS_DISPATCHER, "{r:?}");
        // What an agent is shown while typing says the same.
        let (shown, preview) = router.preview(text, &place, 5);
        assert_eq!(preview.decision, NEEDS_DISPATCHER);
        assert_eq!(shown, router.suggest(text, &place, 5));
    }
    // On, with a threshold every owner clears: the unit of the best item gets them.
    router.owner_threshold = Some(0.0);
    for text in vague {
        let r = router.decide(text, "光明街道东周社区", None);
        assert_eq!(r.decision, AUTO, "{r:?}");
        let (shown, preview) = router.preview(text, &place, 20);
        assert_eq!(
            (preview.decision.as_str(), preview.lead_unit.as_str()),
            (AUTO, r.lead_unit.as_str())
        );
        assert_eq!(shown, router.suggest(text, &place, 20));
        assert_eq!(shown.len(), 20);
        assert!(r.reason.starts_with("unit-level: "), "{}", r.reason);
        let top = &r.suggestions[0];
        assert_eq!(r.item_code, top.item_code);
        let item = router.catalog.get(&top.item_code).unwrap();
        match &item.responsibility {
            Responsibility::Functional { unit } => assert_eq!(&r.lead_unit, unit),
            Responsibility::Territorial => assert_eq!(r.lead_unit, r.street),
        }
        // The tightest limits among the unit's candidates: never looser than the best item's.
        assert!(r.complete_days >= 1 && r.complete_days <= item.limits.complete_days);
        assert!(r.accept_hours >= 1 && r.accept_hours <= item.limits.accept_hours);
    }
    // Without a place, a territorial unit is never guessed, however sure: a territorial item's
    // own phrasings (their unit is "the street of the place") go to a dispatcher without an
    // address, and to the street with one.
    let mut checked = 0;
    for item in router.catalog.items() {
        if !matches!(item.responsibility, Responsibility::Territorial) {
            continue;
        }
        let text = item.phrasings.join("，");
        let predictions = router.model.predict(&text, OWNER_TOP_K);
        let (owner, _) = owner_confidence(&router.catalog, &predictions).unwrap();
        if owner != STREET_OWNER {
            continue;
        }
        checked += 1;
        let r = router.decide(&text, "", None);
        assert_eq!(r.decision, NEEDS_DISPATCHER, "{r:?}");
        assert!(r.lead_unit.is_empty(), "{r:?}");
        let r = router.decide(&text, "光明街道东周社区", None);
        assert_eq!(r.decision, AUTO, "{r:?}");
        assert_eq!(r.lead_unit, r.street);
        assert!(!r.street.is_empty());
    }
    assert!(
        checked >= 6,
        "only {checked} territorial texts were read as territorial"
    );
}

#[test]
fn without_an_address_the_places_the_petition_names_locate_it_when_they_agree() {
    let router = small_router();
    let mut auto = 0;
    for item in router.catalog.items() {
        if !matches!(item.responsibility, Responsibility::Territorial) {
            continue;
        }
        // The same text, so the same predictions: as if the address had been given.
        let text = format!("{}（楼村湿地公园）", item.phrasings.join("，"));
        let by_address = router.decide(&text, "楼村湿地公园", None);
        let by_text = router.decide(&text, "", None);
        assert_eq!(
            (&by_text.decision, &by_text.lead_unit, &by_text.street),
            (
                &by_address.decision,
                &by_address.lead_unit,
                &by_address.street
            )
        );
        assert_eq!(by_text.street, "ST-XH");
        assert!(
            by_text
                .reason
                .ends_with("located by the petition text: 楼村湿地公园"),
            "{}",
            by_text.reason
        );
        auto += usize::from(by_text.decision == AUTO);
        // Places in two streets: no street, so no territorial dispatch.
        let two = format!("{text}，我住凤凰城");
        let r = router.decide(&two, "", None);
        assert!(r.street.is_empty(), "{r:?}");
        assert!(
            r.decision == NEEDS_DISPATCHER || r.item_code != item.code,
            "{r:?}"
        );
        // An address that names nothing known, with coordinates outside the district: the
        // text is not used.
        let r = router.decide(&text, "某某路", Some((30.0, 120.0)));
        assert!(r.street.is_empty(), "{r:?}");
        // An address that names nothing known, without coordinates: the text is.
        let r = router.decide(&text, "某某路", None);
        assert_eq!(r.street, "ST-XH");
    }
    assert!(
        auto >= 3,
        "only {auto} territorial items were routed by the text"
    );
}
