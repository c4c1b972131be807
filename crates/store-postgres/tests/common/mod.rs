//! A fresh, uniquely named PostgreSQL database per test, dropped afterwards, so that runs (and tests within a
//! run) never see each other's data. Opt-in: the server is named by `CARAVAN_TEST_PG`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use caravan_store_postgres::PgStore;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use std::future::Future;
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

pub const ENV: &str = "CARAVAN_TEST_PG";

/// The server URL, or `None` after printing why the test is skipped.
pub fn server_url(test: &str) -> Option<String> {
    match std::env::var(ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            eprintln!(
                "skipping {test}: set {ENV} to a PostgreSQL URL (e.g. postgres://postgres@127.0.0.1:5432/postgres) \
                 to run the PostgreSQL storage tests"
            );
            None
        }
    }
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Create a fresh database on the server, hand `f` its connection options, then drop the database whether `f`
/// passed or panicked (the panic is re-raised after the drop).
pub async fn with_fresh_database<F, Fut>(url: &str, f: F)
where
    F: FnOnce(FreshDb) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let admin_opts =
        PgConnectOptions::from_str(url).expect("CARAVAN_TEST_PG is not a valid PostgreSQL URL");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let name = format!(
        "caravan_test_{}_{}_{}",
        std::process::id(),
        nanos,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let mut admin = PgConnection::connect_with(&admin_opts)
        .await
        .expect("cannot connect to the PostgreSQL server named by CARAVAN_TEST_PG");
    sqlx::query(&format!("CREATE DATABASE \"{name}\""))
        .execute(&mut admin)
        .await
        .expect("cannot create a test database");
    let fresh = FreshDb {
        options: admin_opts.clone().database(&name),
        url: url_with_database(url, &name),
    };
    let outcome = tokio::spawn(f(fresh)).await;
    // FORCE ends connections a panicking test left open.
    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
        .execute(&mut admin)
        .await
        .expect("cannot drop the test database");
    admin.close().await.ok();
    if let Err(e) = outcome {
        if e.is_panic() {
            std::panic::resume_unwind(e.into_panic());
        }
        panic!("test task failed: {e}");
    }
}

/// A fresh database: its connection options, and its URL as a node process would be given it (the server's URL
/// with the database name replaced, so credentials and parameters carry over).
pub struct FreshDb {
    pub options: PgConnectOptions,
    pub url: String,
}

fn url_with_database(base: &str, name: &str) -> String {
    let (main, query) = base
        .split_once('?')
        .map_or((base, None), |(m, q)| (m, Some(q)));
    let authority = main.find("://").map_or(0, |i| i + 3);
    let path = main[authority..]
        .find('/')
        .map_or(main.len(), |i| i + authority);
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    format!("{}/{name}{query}", &main[..path])
}

pub async fn store(opts: &PgConnectOptions, max_connections: u32) -> PgStore {
    PgStore::connect_with(opts.clone(), max_connections)
        .await
        .unwrap()
}
