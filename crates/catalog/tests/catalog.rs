//! Catalog model, demo data, import/export and validation.

use std::collections::HashSet;

use minyi_catalog::format::{self, ReadOptions, from_csv, to_csv};
use minyi_catalog::{
    Catalog, CatalogError, DEMO_ITEM_COUNT, Format, Grade, Location, Problem, Responsibility,
    UnitDirectory, UnitKind, demo_history, diff,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURES}/{name}")).expect("fixture")
}

fn problems(r: Result<Catalog, CatalogError>) -> Vec<Problem> {
    match r {
        Err(CatalogError::Invalid { problems }) => problems,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn has(problems: &[Problem], loc: &str, field: &str, needle: &str) -> bool {
    problems
        .iter()
        .any(|p| p.location.to_string() == loc && p.field == field && p.message.contains(needle))
}

#[test]
fn demo_has_exactly_3469_unique_codes_and_validates() {
    let c = Catalog::demo();
    assert_eq!(c.len(), DEMO_ITEM_COUNT);
    assert_eq!(c.len(), 3469);
    let codes: HashSet<&str> = c.items().iter().map(|i| i.code.as_str()).collect();
    assert_eq!(codes.len(), 3469);
    let names: HashSet<&str> = c.items().iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names.len(), 3469, "item names are distinguishable");
    assert_eq!(c.validate(), Vec::<Problem>::new());
    for it in c.items() {
        assert!((2..=4).contains(&it.phrasings.len()), "{}", it.code);
        assert!(!it.keywords.is_empty());
        assert!(!it.description.is_empty());
        assert!(c.get(&it.code).is_some());
    }
}

#[test]
fn demo_every_referenced_unit_exists() {
    let c = Catalog::demo();
    let units = c.units();
    for it in c.items() {
        if let Responsibility::Functional { unit } = &it.responsibility {
            let u = units.get(unit).expect("responsible unit exists");
            assert!(matches!(u.kind, UnitKind::Department | UnitKind::Utility));
        }
        for cu in &it.co_units {
            assert!(units.contains(cu), "{} co-unit {cu}", it.code);
        }
    }
    for u in units.units() {
        if let Some(p) = &u.parent {
            assert!(units.contains(p));
        }
    }
}

#[test]
fn demo_directory_has_six_streets_with_communities_and_grids() {
    let d = UnitDirectory::guangming();
    let streets: Vec<_> = d.of_kind(UnitKind::Street).collect();
    assert_eq!(streets.len(), 6);
    for s in streets {
        let cms: Vec<_> = d.children(&s.code).collect();
        assert!(!cms.is_empty(), "{}", s.name);
        for cm in cms {
            let grids = d.children(&cm.code).count();
            assert!((2..=4).contains(&grids), "{}", cm.name);
        }
    }
    assert_eq!(d.get("ST-GM").map(|u| u.name.as_str()), Some("光明街道"));
    assert_eq!(
        d.street_of("GR-GOM-SHANGCUN-2").map(|u| u.code.as_str()),
        Some("ST-GOM")
    );
    assert!(d.street_of("DEP-ZJ").is_none());
}

#[test]
fn demo_grades_limits_and_owners_are_sensible() {
    let c = Catalog::demo();
    let mut territorial = 0;
    for it in c.items() {
        match it.grade {
            Grade::Urgent => {
                assert_eq!(it.limits.accept_hours, 1);
                assert_eq!(it.limits.complete_days, 1);
            }
            Grade::Normal => assert!((3..=15).contains(&it.limits.complete_days)),
        }
        if it.responsibility == Responsibility::Territorial {
            territorial += 1;
        }
    }
    assert!(territorial > 200);
    assert!(c.items().iter().any(|i| i.grade == Grade::Urgent));
    let by_name = |n: &str| c.items().iter().find(|i| i.name == n).cloned();
    let stall = by_name("流动摊贩举报").expect("占道经营 item");
    assert_eq!(stall.responsibility, Responsibility::Territorial);
    let wage = by_name("电子厂拖欠工资").expect("labour item");
    assert_eq!(wage.responsibility, Responsibility::functional("DEP-RS"));
    assert_eq!(wage.limits.complete_days, 15);
    let gas = by_name("居民管道燃气燃气泄漏").expect("gas item");
    assert_eq!(gas.grade, Grade::Urgent);
    assert_eq!(gas.responsibility, Responsibility::functional("UT-RQ"));
}

#[test]
fn demo_is_deterministic_and_hash_is_stable() {
    let a = Catalog::demo();
    let b = Catalog::demo();
    assert_eq!(a, b);
    assert_eq!(a.content_hash(), b.content_hash());
    assert_eq!(a.content_hash().len(), 64);
    let mut c = b.clone();
    c.version = "other".into();
    assert_eq!(a.content_hash(), c.content_hash(), "version is not content");
}

#[test]
fn csv_roundtrip_is_equal() {
    let c = Catalog::demo();
    let text = to_csv(&c).expect("csv");
    assert!(text.starts_with("code,path,name,description,keywords,phrasings,responsibility,unit,co_units,grade,accept_hours,respond_hours,complete_days,notes\n"));
    let back = from_csv(&text, c.units(), &c.version).expect("parse");
    assert_eq!(back, c);
}

#[test]
fn json_and_yaml_roundtrip_are_equal() {
    let c = Catalog::demo();
    for fmt in [Format::Json, Format::Yaml] {
        let text = format::write(&c, fmt).expect("write");
        let empty = UnitDirectory::default();
        let back = format::read(
            &text,
            fmt,
            &ReadOptions {
                units: &empty,
                version: "x",
            },
            None,
        )
        .expect("read");
        assert_eq!(back, c, "{fmt:?}");
    }
    let strict: Catalog =
        serde_json::from_str(&format::write(&c, Format::Json).expect("json")).expect("serde");
    assert_eq!(strict, c);
}

#[test]
fn csv_validation_names_line_and_field_of_every_problem() {
    let units = UnitDirectory::guangming();
    let ps = problems(from_csv(&fixture("bad.csv"), &units, "bad"));
    for p in &ps {
        assert!(matches!(p.location, Location::Line(_)), "{p}");
    }
    assert!(has(
        &ps,
        "line 3",
        "code",
        "duplicate code \"CG-01-001\" (first at line 2)"
    ));
    assert!(has(&ps, "line 4", "unit", "unknown unit \"DEP-XX\""));
    assert!(has(&ps, "line 4", "co_units", "unknown unit \"DEP-YY\""));
    assert!(has(&ps, "line 5", "accept_hours", "missing"));
    assert!(has(&ps, "line 5", "complete_days", "must be positive"));
    assert!(has(&ps, "line 6", "path", "exactly 3 non-empty levels"));
    assert!(has(&ps, "line 7", "name", "empty"));
    assert!(has(&ps, "line 8", "grade", "invalid grade \"超急\""));
    assert!(
        !ps.iter().any(|p| p.location == Location::Line(2)),
        "{ps:?}"
    );
    assert_eq!(ps.len(), 8, "{ps:#?}");
    assert_eq!(
        ps[0].to_string(),
        "line 3: code: duplicate code \"CG-01-001\" (first at line 2)"
    );
    // Saved with Windows line endings (as Excel does), the same lines are named.
    let crlf = fixture("bad.csv")
        .replace("\r\n", "\n")
        .replace('\n', "\r\n");
    let crlf_ps = problems(from_csv(&crlf, &units, "bad"));
    let text = |ps: &[Problem]| ps.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(text(&crlf_ps), text(&ps));
}

#[test]
fn json_validation_names_item_index_line_and_field() {
    let units = UnitDirectory::guangming();
    let ps = problems(format::read(
        &fixture("bad.json"),
        Format::Json,
        &ReadOptions {
            units: &units,
            version: "bad",
        },
        None,
    ));
    let at = |index: usize| {
        ps.iter()
            .filter(|p| matches!(p.location, Location::Item { index: i, .. } if i == index))
            .map(|p| p.field.as_str())
            .collect::<Vec<_>>()
    };
    assert!(at(0).is_empty());
    assert_eq!(at(1), ["code", "responsibility.unit", "co_units"]);
    let third = at(2);
    for f in [
        "grade",
        "limits.complete_days",
        "path",
        "name",
        "limits.accept_hours",
    ] {
        assert!(third.contains(&f), "{f} in {third:?}");
    }
    assert!(has(
        &ps,
        "line 16: items[1]",
        "code",
        "duplicate code \"JT-01-001\" (first at line 4: items[0])"
    ));
    assert!(has(&ps, "line 27: items[2]", "grade", "sometimes"));
}

#[test]
fn yaml_validation_names_item_index_and_field() {
    let units = UnitDirectory::guangming();
    let ps = problems(format::read(
        &fixture("bad.yaml"),
        Format::Yaml,
        &ReadOptions {
            units: &units,
            version: "bad",
        },
        None,
    ));
    let shown: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        shown,
        [
            "items[1]: grade: invalid grade \"很急\" (expected urgent or normal)",
            "items[1]: path: expected exactly 3 non-empty levels (major|minor|item), got \"社区治理|邻里纠纷\"",
            "items[1]: responsibility.unit: unknown unit \"ST-NOWHERE\"",
            "items[1]: limits.complete_days: must be positive, got 0",
        ]
    );
}

#[test]
fn unit_problems_are_reported() {
    let text = r#"{"version":"u","units":[
        {"code":"ST-A","name":"甲街道","kind":"street"},
        {"code":"ST-A","name":"重复","kind":"street"},
        {"code":"CM-X","name":"乙社区","kind":"community","parent":"ST-NONE"},
        {"code":"GR-X","name":"网格","kind":"grid","parent":"ST-A"},
        {"code":"X","name":"x","kind":"planet"}
    ],"items":[]}"#;
    let ps = problems(format::from_json(text));
    let shown: Vec<String> = ps.iter().map(|p| p.to_string()).collect();
    assert!(
        shown.iter().any(|s| s.starts_with("units[4]: unit:")),
        "{shown:?}"
    );
    assert!(
        shown.contains(
            &"units[1]: code: duplicate unit code \"ST-A\" (first at units[0])".to_string()
        )
    );
    assert!(shown.contains(&"units[2]: parent: unknown unit \"ST-NONE\"".to_string()));
    assert!(
        shown
            .iter()
            .any(|s| s.starts_with("units[3]: parent: a grid must belong to a community"))
    );
}

#[test]
fn malformed_files_are_parse_errors_with_one_line_messages() {
    let units = UnitDirectory::guangming();
    let err = format::read(
        "{\"items\": [",
        Format::Json,
        &ReadOptions {
            units: &units,
            version: "x",
        },
        None,
    )
    .expect_err("syntax error");
    assert!(matches!(err, CatalogError::Parse { .. }));
    assert!(!err.to_string().contains('\n'));
    let err = from_csv("code,name\nA,B\n", &units, "x").expect_err("missing columns");
    let ps = problems(Err(err));
    assert!(ps.iter().all(|p| p.location == Location::Line(1)));
    assert!(ps.iter().any(|p| p.field == "grade"));
}

#[test]
fn diff_reports_added_removed_and_changed_fields() {
    let old = Catalog::demo();
    let (_, mut items, units) = old.clone().into_parts();
    let removed = items.remove(0);
    items[0].name.push_str("（修订）");
    items[0].limits.complete_days = 7;
    items[1].responsibility = Responsibility::Territorial;
    let mut added = items[2].clone();
    added.code = "ZZ-99-001".into();
    added.name = "新增事项".into();
    items.push(added);
    let new = Catalog::new("new", items, units);
    let d = diff(&old, &new);
    assert_eq!(d.added, ["ZZ-99-001"]);
    assert_eq!(d.removed, vec![removed.code.clone()]);
    assert_eq!(d.changed.len(), 2);
    assert_eq!(d.changed[0].1, ["name", "limits.complete_days"]);
    assert_eq!(d.changed[1].1, ["responsibility"]);
    let shown = d.to_string();
    assert!(shown.starts_with("1 added, 1 removed, 2 changed\n"));
    assert!(shown.contains("+ ZZ-99-001\n"));
    assert!(shown.contains(&format!("- {}\n", removed.code)));
    assert!(diff(&old, &old).is_empty());
}

#[test]
fn history_covers_every_item_with_varied_texts() {
    let c = Catalog::demo();
    let h = demo_history(&c, 3, 42);
    assert_eq!(h.len(), 3 * 3469);
    let labels: HashSet<&str> = h.iter().map(|(_, code)| code.as_str()).collect();
    assert_eq!(labels.len(), 3469);
    assert_ne!(h, demo_history(&c, 3, 43));
    // Many texts name a place the gazetteer knows, so location resolution can be tested too.
    let gaz = minyi_catalog::Gazetteer::guangming();
    let located = h
        .iter()
        .filter(|(t, _)| gaz.resolve_text(t).is_resolved())
        .count();
    assert!(located > h.len() / 3, "{located}");
}

#[test]
fn demo_is_fast() {
    let t = std::time::Instant::now();
    let c = Catalog::demo();
    let elapsed = t.elapsed();
    assert_eq!(c.len(), 3469);
    // The 200 ms budget is for release builds; debug builds get more slack.
    let budget = if cfg!(debug_assertions) { 3000 } else { 200 };
    assert!(elapsed.as_millis() < budget, "{elapsed:?}");
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// Any subset of demo items with edited text survives CSV and JSON roundtrips.
        #[test]
        fn roundtrip_edited_subsets(start in 0usize..3400, len in 0usize..60, name in "[a-z\u{4e00}-\u{4e20}, \"]{1,12}", days in 1u32..30) {
            let demo = Catalog::demo();
            let mut items: Vec<_> = demo.items()[start..(start + len).min(demo.len())].to_vec();
            for it in &mut items {
                it.name = name.trim().to_string();
                if it.name.is_empty() { it.name = "x".into(); }
                // Import trims surrounding whitespace, so only trimmed text roundtrips.
                it.description = format!("{name}\n第二行").trim().to_string();
                it.limits.complete_days = days;
            }
            let c = Catalog::new("p", items, demo.units().clone());
            let back = from_csv(&to_csv(&c).expect("csv"), c.units(), "p").expect("csv back");
            prop_assert_eq!(&back, &c);
            let back = format::from_json(&format::write(&c, Format::Json).expect("json")).expect("json back");
            prop_assert_eq!(&back, &c);
        }
    }
}
