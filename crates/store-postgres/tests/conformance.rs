//! The shared storage story, told by PostgreSQL (opt-in: set `CARAVAN_TEST_PG`).

mod common;

#[tokio::test]
async fn postgres_passes_the_storage_conformance_suite() {
    let Some(url) = common::server_url("postgres_passes_the_storage_conformance_suite") else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        let store = common::store(&db.options, 8).await;
        caravan_store::conformance::run_all(&store).await;
        store.close().await;
    })
    .await;
}

#[tokio::test]
async fn connect_by_url_migrates_once_and_reconnects() {
    let Some(url) = common::server_url("connect_by_url_migrates_once_and_reconnects") else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        // Connect by URL, as the server binary does, twice: the second connect finds the schema migrated and must
        // neither fail nor migrate again.
        let url = db.url;
        let first = caravan_store_postgres::PgStore::connect(&url)
            .await
            .unwrap();
        first.close().await;
        let second = caravan_store_postgres::PgStore::connect(&url)
            .await
            .unwrap();
        let applied: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(second.pool())
            .await
            .unwrap();
        let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .count();
        assert_eq!(
            applied,
            i64::try_from(files).unwrap(),
            "each migration applied once"
        );
        assert_eq!(caravan_store::Store::backend(&second), "postgres");
        second.close().await;
    })
    .await;
}

#[tokio::test]
async fn a_bad_url_is_a_clear_error() {
    // Needs no server: the URL is refused before any connection is tried.
    let cases = [
        ("mysql://localhost/x", "must start with postgres://"),
        ("sqlite:caravan.db", "must start with postgres://"),
        ("postgres://localhost:notaport/x", "bad PostgreSQL URL"),
        ("postgres://[::1/x", "bad PostgreSQL URL"),
    ];
    for (url, expected) in cases {
        match caravan_store_postgres::PgStore::connect(url).await {
            Err(e) => assert!(
                e.to_string().contains(expected),
                "{url}: error {e:?} does not say {expected:?}"
            ),
            Ok(_) => panic!("{url}: connected"),
        }
    }
}
