//! The shared storage story, told by SQLite.

#[tokio::test]
async fn sqlite_passes_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = caravan_store_sqlite::SqliteStore::open(&dir.path().join("caravan.sqlite"))
        .await
        .unwrap();
    caravan_store::conformance::run_all(&store).await;
}
