//! Several replicas starting at once on a new database all migrate it and start.

use minyi_core::store::PostgresStore;

/// Four processes' stores connect to one fresh database at the same moment: every one succeeds.
/// (A process waiting in a blocking advisory-lock statement holds a snapshot that the index
/// built `CONCURRENTLY` by the migrating process waits for: a deadlock, one start failed.)
#[tokio::test]
async fn replicas_starting_together_all_migrate() {
    for _round in 0..3 {
        let url = minyi_core::testing::fresh_database().await.unwrap();
        let starts = (0..4).map(|_| {
            let url = url.clone();
            tokio::spawn(async move { PostgresStore::connect(&url, 2).await.map(|_| ()) })
        });
        for r in futures::future::join_all(starts).await {
            r.unwrap().expect("every replica starts");
        }
    }
}

/// An index whose concurrent build failed is INVALID and would stay so (the retried
/// `CREATE INDEX CONCURRENTLY IF NOT EXISTS` skips it): the next start rebuilds it.
#[tokio::test]
async fn an_index_a_failed_migration_left_invalid_is_rebuilt() {
    let url = minyi_core::testing::fresh_database().await.unwrap();
    let store = PostgresStore::connect(&url, 2).await.unwrap();
    let valid = || async {
        sqlx::query_scalar::<_, bool>(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
             WHERE c.relname = 'tickets_community_idx'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap()
    };
    assert!(valid().await);
    // As a build cancelled midway leaves it (the tests connect as a superuser).
    sqlx::query(
        "UPDATE pg_index SET indisvalid = false \
         WHERE indexrelid = 'tickets_community_idx'::regclass",
    )
    .execute(store.pool())
    .await
    .unwrap();
    assert!(!valid().await);
    PostgresStore::connect(&url, 2).await.unwrap();
    assert!(valid().await, "rebuilt at start");
}
