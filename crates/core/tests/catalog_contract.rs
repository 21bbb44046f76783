//! One contract for the catalog stores: PostgreSQL (production, shared by every process) and
//! the catalog directory (embedded mode, the command line's `--dir`) behave the same.

use std::sync::Arc;

use minyi_catalog::{
    Catalog, CatalogDir, CatalogError, Clarification, ClarificationChange, TrainingExample,
};
use minyi_core::store::{CatalogStore, PgCatalogStore};

fn smaller(c: &Catalog, keep: usize) -> Catalog {
    let (_, mut items, units) = c.clone().into_parts();
    items.truncate(keep);
    Catalog::new("smaller", items, units)
}

async fn contract(store: Arc<dyn CatalogStore>) {
    // Empty: no versions, nothing active, no examples.
    assert!(store.list_versions().await.unwrap().is_empty());
    assert_eq!(store.active_version().await.unwrap(), None);
    assert!(matches!(
        store.active().await,
        Err(CatalogError::NoActiveVersion(_) | CatalogError::NoActiveVersionIn(_))
    ));
    assert!(store.examples().await.unwrap().is_empty());
    assert_eq!(store.examples_mark().await.unwrap(), 0);

    // Seeding imports, activates and records the examples into an empty store only.
    let c = minyi_catalog::demo_slice();
    let seeded = TrainingExample {
        text: "垃圾站臭味".into(),
        label: "S-0".into(),
    };
    assert_eq!(
        store
            .seed(&c, std::slice::from_ref(&seeded))
            .await
            .unwrap()
            .as_deref(),
        Some("v1")
    );
    assert_eq!(
        store
            .seed(&smaller(&c, 3), std::slice::from_ref(&seeded))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        store.examples().await.unwrap(),
        std::slice::from_ref(&seeded)
    );
    let v1 = store.active().await.unwrap();
    assert_eq!((v1.version.as_str(), v1.len()), ("v1", c.len()));
    assert_eq!(v1.content_hash(), c.content_hash());

    // Import does not activate; activation by label or number; unknown versions named.
    let c2 = smaller(&c, 10);
    assert_eq!(store.import(&c2).await.unwrap(), "v2");
    assert_eq!(store.active_version().await.unwrap().as_deref(), Some("v1"));
    store.activate("2").await.unwrap();
    assert_eq!(store.active_version().await.unwrap().as_deref(), Some("v2"));
    assert_eq!(store.active().await.unwrap().len(), 10);
    assert_eq!(store.load("v1").await.unwrap().items(), c.items());
    assert_eq!(
        store.summary("v2").await.unwrap(),
        (10, c2.content_hash()),
        "count and hash without loading"
    );
    assert!(matches!(
        store.summary("v9").await,
        Err(CatalogError::UnknownVersion(_))
    ));
    for bad in ["v9", "bogus", "-1"] {
        assert!(
            matches!(
                store.activate(bad).await,
                Err(CatalogError::UnknownVersion(_))
            ),
            "{bad}"
        );
        assert!(
            matches!(store.load(bad).await, Err(CatalogError::UnknownVersion(_))),
            "{bad}"
        );
    }

    // An invalid catalog is refused with its problems and stores nothing.
    let (_, mut items, units) = c.clone().into_parts();
    items[3].co_units.push("DEP-NOWHERE".into());
    match store.import(&Catalog::new("bad", items, units)).await {
        Err(CatalogError::Invalid { problems }) => assert_eq!(
            problems[0].to_string(),
            "items[3]: co_units: unknown unit \"DEP-NOWHERE\""
        ),
        other => panic!("{other:?}"),
    }
    assert_eq!(store.list_versions().await.unwrap(), ["v1", "v2"]);

    // A clarification makes a new active version from the active one.
    let code = c2.items()[4].code.clone();
    let v3 = store
        .clarify(&Clarification {
            ruling: "KC-2026-0001".into(),
            change: ClarificationChange::Note {
                item: code.clone(),
                note: "小区内由属地街道牵头".into(),
            },
        })
        .await
        .unwrap();
    assert_eq!(v3, "v3");
    let active = store.active().await.unwrap();
    assert_eq!((active.version.as_str(), active.len()), ("v3", 10));
    assert!(
        active
            .get(&code)
            .unwrap()
            .notes
            .iter()
            .any(|n| n.contains("KC-2026-0001")),
        "{:?}",
        active.get(&code)
    );
    let unknown = Clarification {
        ruling: "KC-2026-0002".into(),
        change: ClarificationChange::Note {
            item: "NO-SUCH-ITEM".into(),
            note: "x".into(),
        },
    };
    assert!(matches!(
        store.clarify(&unknown).await,
        Err(CatalogError::UnknownItem(_))
    ));
    assert_eq!(store.list_versions().await.unwrap().len(), 3);

    // Concurrent imports get different numbers.
    let imports = (0..4).map(|k| {
        let store = store.clone();
        let c = smaller(&c, 5 + k);
        tokio::spawn(async move { store.import(&c).await.unwrap() })
    });
    let mut got: Vec<String> = futures::future::join_all(imports)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    got.sort();
    assert_eq!(got, ["v4", "v5", "v6", "v7"]);
    assert_eq!(store.active_version().await.unwrap().as_deref(), Some("v3"));

    // Examples come back in order; `extra` cannot replace the text or the label; the mark moves.
    store
        .record_example(
            "楼下烧烤店油烟",
            "A-1",
            serde_json::json!({"source": "ruling"}),
        )
        .await
        .unwrap();
    let mark = store.examples_mark().await.unwrap();
    assert!(mark > 0);
    store
        .record_example(
            "井盖缺失",
            "B-2",
            serde_json::json!({"text": "other", "label": "other", "ticket": "MY-1"}),
        )
        .await
        .unwrap();
    assert!(store.examples_mark().await.unwrap() > mark);
    let examples = store.examples().await.unwrap();
    let pairs: Vec<(&str, &str)> = examples
        .iter()
        .map(|e| (e.text.as_str(), e.label.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("垃圾站臭味", "S-0"),
            ("楼下烧烤店油烟", "A-1"),
            ("井盖缺失", "B-2")
        ]
    );
}

#[tokio::test]
async fn directory_store_meets_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CatalogDir::open(tmp.path().join("catalog")).unwrap();
    contract(Arc::new(dir)).await;
}

#[tokio::test]
async fn postgres_store_meets_the_contract() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = PgCatalogStore::connect(&url).await.unwrap();
    contract(Arc::new(store)).await;
}

/// Two services on one database see one catalog: what one imports and activates, or learns, the
/// other reads (the per-pod catalog directories of earlier versions did not share this).
#[tokio::test]
async fn two_connections_share_one_catalog() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let (a, b) = (
        PgCatalogStore::connect(&url).await.unwrap(),
        PgCatalogStore::connect(&url).await.unwrap(),
    );
    let c = minyi_catalog::demo_slice();
    let (sa, sb) = tokio::join!(a.seed(&c, &[]), b.seed(&c, &[]));
    assert_eq!(
        [sa.unwrap(), sb.unwrap()].iter().flatten().count(),
        1,
        "exactly one seeds"
    );
    let v2 = a.import(&smaller(&c, 7)).await.unwrap();
    a.activate(&v2).await.unwrap();
    assert_eq!(b.active().await.unwrap().len(), 7);
    // A version stored before hashes were kept is hashed when listed.
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    sqlx::query("UPDATE catalog_versions SET sha256 = NULL WHERE n = 1")
        .execute(&pool)
        .await
        .unwrap();
    assert_eq!(b.summary("v1").await.unwrap(), (c.len(), c.content_hash()));
    a.record_example("路灯不亮", "X", serde_json::json!({}))
        .await
        .unwrap();
    assert_eq!(b.examples().await.unwrap().len(), 1);
}

/// `follow_active` puts a newly activated version in force in a running process's
/// [`minyi_catalog::LiveCatalog`], and stops on shutdown.
#[tokio::test]
async fn a_process_follows_the_active_version() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = CatalogDir::open(tmp.path()).unwrap();
    let c = minyi_catalog::demo_slice();
    let store: Arc<dyn CatalogStore> = Arc::new(dir);
    store.seed(&c, &[]).await.unwrap();
    let live = minyi_catalog::LiveCatalog::new(store.active().await.unwrap());
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let follower = tokio::spawn(minyi_core::store::follow_active(
        store.clone(),
        live.clone(),
        std::time::Duration::from_millis(20),
        stopped,
    ));
    let v2 = store.import(&smaller(&c, 6)).await.unwrap();
    store.activate(&v2).await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while live.current().version != v2 {
        assert!(
            std::time::Instant::now() < deadline,
            "v2 never came into force"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(live.current().len(), 6);
    stop.send(true).unwrap();
    tokio::time::timeout(std::time::Duration::from_secs(5), follower)
        .await
        .expect("stops on shutdown")
        .unwrap();
}
