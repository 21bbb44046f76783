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
