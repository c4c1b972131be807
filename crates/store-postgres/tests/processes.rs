//! Several node processes share one database: the audit chain stays one linear chain across them. The test
//! re-runs its own test binary as child processes (each with its own connection pool, as separate node
//! processes would have) that append to the same database as the parent. Opt-in: set `CARAVAN_TEST_PG`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_domain::*;
use caravan_store::Store;
use chrono::Utc;

/// Set in a child process: the URL of the database to append to, and which child it is.
const CHILD_DB: &str = "CARAVAN_PG_CHILD_DB";
const CHILD_NO: &str = "CARAVAN_PG_CHILD_NO";
const CHILDREN: usize = 3;
const BATCHES: usize = 60;

fn event(entity_id: String) -> AuditEvent {
    AuditEvent {
        at: Utc::now(),
        actor_user: Some(UserId::new()),
        actor_name: "Node process".into(),
        actor_institution: None,
        actor_role: Some(Role::Coordinator),
        action: AuditAction::Search,
        entity_type: "consultation".into(),
        entity_id,
        patient_id: None,
        purpose: "test".into(),
        detail: String::new(),
        subjects: Vec::new(),
    }
}

async fn append_batches(store: &dyn Store, who: &str) {
    for i in 0..BATCHES {
        let events = (0..=(i % 2))
            .map(|k| event(format!("{who}-{i}-{k}")))
            .collect();
        store.append_audit(events).await.unwrap();
    }
}

/// Events written per writer by [`append_batches`]: batches alternate between one and two events.
fn events_per_writer() -> usize {
    (0..BATCHES).map(|i| 1 + i % 2).sum()
}

/// The child's body. In an ordinary run (no `CARAVAN_PG_CHILD_DB`) it does nothing.
#[tokio::test]
async fn child_writer() {
    let Ok(url) = std::env::var(CHILD_DB) else {
        return;
    };
    let who = std::env::var(CHILD_NO).unwrap_or_default();
    let store = caravan_store_postgres::PgStore::connect(&url)
        .await
        .unwrap();
    append_batches(&store, &format!("child{who}")).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_processes_append_to_one_chain() {
    let Some(url) = common::server_url("several_processes_append_to_one_chain") else {
        return;
    };
    common::with_fresh_database(&url, |db| async move {
        let parent = common::store(&db.options, 2).await;
        let child_url = db.url.clone();
        let exe = std::env::current_exe().unwrap();
        let children: Vec<_> = (0..CHILDREN)
            .map(|n| {
                std::process::Command::new(&exe)
                    .args(["child_writer", "--exact", "--test-threads=1", "--nocapture"])
                    .env(CHILD_DB, &child_url)
                    .env(CHILD_NO, n.to_string())
                    .env_remove(common::ENV)
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("cannot start a child writer process")
            })
            .collect();
        // The parent writes at the same time as its children.
        append_batches(&parent, "parent").await;
        let statuses = tokio::task::spawn_blocking(move || {
            children
                .into_iter()
                .map(|mut c| c.wait().unwrap())
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        for s in statuses {
            assert!(s.success(), "a child writer failed: {s}");
        }
        let expected = (CHILDREN + 1) * events_per_writer();
        let verified = caravan_store::verify_audit_chain(&parent)
            .await
            .unwrap()
            .expect("the chain written by several processes must verify");
        assert_eq!(verified as usize, expected);
        // Every writer's events are all there.
        for who in (0..CHILDREN)
            .map(|n| format!("child{n}"))
            .chain(["parent".into()])
        {
            let last = format!("{who}-{}-{}", BATCHES - 1, (BATCHES - 1) % 2);
            assert_eq!(
                parent
                    .audit_for_entity("consultation", &last, None, 5)
                    .await
                    .unwrap()
                    .len(),
                1,
                "{who}'s last event"
            );
        }
        parent.close().await;
    })
    .await;
}
