//! The versioned catalog directory and arbitration clarifications.

use minyi_catalog::{
    Catalog, CatalogDir, CatalogError, Clarification, ClarificationChange, Responsibility, diff,
};

fn small() -> Catalog {
    let demo = Catalog::demo();
    Catalog::new("small", demo.items()[..40].to_vec(), demo.units().clone())
}

#[test]
fn import_activate_and_list_versions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CatalogDir::open(tmp.path().join("catalog")).expect("open");
    assert_eq!(dir.list_versions().expect("list"), Vec::<String>::new());
    assert!(matches!(
        dir.active(),
        Err(CatalogError::NoActiveVersion(_))
    ));

    let c = small();
    let v1 = dir.import(&c).expect("import");
    assert_eq!(v1, "v1");
    assert_eq!(
        dir.active_version().expect("active"),
        None,
        "import does not activate"
    );
    dir.activate(&v1).expect("activate");

    let mut c2 = c.clone();
    let (_, mut items, units) = c2.clone().into_parts();
    items.truncate(30);
    c2 = Catalog::new("smaller", items, units);
    let v2 = dir.import(&c2).expect("import 2");
    assert_eq!(v2, "v2");
    assert_eq!(dir.list_versions().expect("list"), ["v1", "v2"]);
    assert_eq!(dir.active().expect("active").version, "v1");

    dir.activate("2").expect("activate by number");
    let active = dir.active().expect("active");
    assert_eq!(active.version, "v2");
    assert_eq!(active.len(), 30);
    assert_eq!(active.content_hash(), c2.content_hash());
    let loaded = dir.load("v1").expect("load v1");
    assert_eq!(loaded.items(), c.items());
    assert_eq!(diff(&loaded, &active).removed.len(), 10);

    assert!(matches!(
        dir.activate("v9"),
        Err(CatalogError::UnknownVersion(_))
    ));
    assert!(matches!(
        dir.load("bogus"),
        Err(CatalogError::UnknownVersion(_))
    ));
    // No temporary files are left behind.
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read_dir")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    assert!(names.iter().all(|n| !n.ends_with(".tmp")), "{names:?}");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("active")).expect("pointer"),
        "v2\n"
    );
}

#[test]
fn import_rejects_invalid_catalogs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CatalogDir::open(tmp.path()).expect("open");
    let (_, mut items, units) = small().into_parts();
    items[3].co_units.push("DEP-NOWHERE".into());
    let bad = Catalog::new("bad", items, units);
    match dir.import(&bad) {
        Err(CatalogError::Invalid { problems }) => {
            assert_eq!(problems.len(), 1);
            assert_eq!(
                problems[0].to_string(),
                "items[3]: co_units: unknown unit \"DEP-NOWHERE\""
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(dir.list_versions().expect("list").is_empty());
}

#[test]
fn clarification_produces_a_new_active_version() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = CatalogDir::open(tmp.path()).expect("open");
    let c = small();
    let v1 = dir.import(&c).expect("import");
    dir.activate(&v1).expect("activate");
    let code = c.items()[5].code.clone();

    let v2 = dir
        .clarify(&Clarification {
            ruling: "KC-2025-0114".into(),
            change: ClarificationChange::Reassign {
                item: code.clone(),
                responsibility: Responsibility::Territorial,
                co_units: Some(vec!["DEP-CG".into()]),
                note: "小区内设施由属地街道牵头，城管协办".into(),
            },
        })
        .expect("clarify");
    assert_eq!(v2, "v2");
    let active = dir.active().expect("active");
    assert_eq!(active.version, "v2");
    let it = active.get(&code).expect("item");
    assert_eq!(it.responsibility, Responsibility::Territorial);
    assert_eq!(it.co_units, ["DEP-CG"]);
    assert_eq!(
        it.notes,
        ["[KC-2025-0114] 小区内设施由属地街道牵头，城管协办"]
    );
    let d = diff(&dir.load("v1").expect("v1"), &active);
    assert_eq!(
        d.changed,
        [(
            code.clone(),
            vec![
                "responsibility".to_string(),
                "co_units".to_string(),
                "notes".to_string()
            ]
        )]
    );

    let mut new_item = c.items()[0].clone();
    new_item.code = "CG-99-001".into();
    new_item.name = "共享充电宝柜占道".into();
    let v3 = dir
        .clarify(&Clarification {
            ruling: "KC-2025-0115".into(),
            change: ClarificationChange::NewItem {
                item: Box::new(new_item.clone()),
            },
        })
        .expect("new item");
    assert_eq!(v3, "v3");
    assert_eq!(dir.active().expect("active").len(), c.len() + 1);

    // Failures leave the store alone.
    let dup = dir.clarify(&Clarification {
        ruling: "KC-2025-0116".into(),
        change: ClarificationChange::NewItem {
            item: Box::new(new_item),
        },
    });
    assert!(matches!(dup, Err(CatalogError::DuplicateItem(_))));
    let unknown_unit = dir.clarify(&Clarification {
        ruling: "KC-2025-0117".into(),
        change: ClarificationChange::Reassign {
            item: code,
            responsibility: Responsibility::functional("DEP-NOWHERE"),
            co_units: None,
            note: "x".into(),
        },
    });
    assert!(matches!(unknown_unit, Err(CatalogError::Invalid { .. })));
    let missing = dir.clarify(&Clarification {
        ruling: "KC-2025-0118".into(),
        change: ClarificationChange::Note {
            item: "XX-00-000".into(),
            note: "x".into(),
        },
    });
    assert!(matches!(missing, Err(CatalogError::UnknownItem(_))));
    assert_eq!(dir.list_versions().expect("list").len(), 3);
}
