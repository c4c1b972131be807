//! The shared storage story, told by SQLite.

#[tokio::test]
async fn sqlite_passes_the_storage_conformance_suite() {
    let dir = tempfile::tempdir().unwrap();
    let store = caravan_store_sqlite::SqliteStore::open(&dir.path().join("caravan.sqlite"))
        .await
        .unwrap();
    caravan_store::conformance::run_all(&store).await;
}

/// Two stores on one file, as when `caravan token create` runs beside a serving node: each appends to the audit
/// chain in turn, and the chain stays one linear, verifiable sequence (the writer reads the head under the lock).
#[tokio::test]
async fn two_processes_append_to_one_chain() {
    use caravan_domain::audit::{AuditAction, AuditEvent};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("caravan.sqlite");
    let a = caravan_store_sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    let b = caravan_store_sqlite::SqliteStore::open(&path)
        .await
        .unwrap();
    let event = |n: usize| AuditEvent {
        at: chrono::Utc::now(),
        actor_user: None,
        actor_name: "system".into(),
        actor_institution: None,
        actor_role: None,
        action: AuditAction::Create,
        entity_type: "probe".into(),
        entity_id: n.to_string(),
        patient_id: None,
        purpose: "test".into(),
        detail: String::new(),
        subjects: Vec::new(),
    };
    for n in 0..10 {
        let store: &dyn caravan_store::Store = if n % 2 == 0 { &a } else { &b };
        store
            .append_audit(vec![event(n), event(n + 100)])
            .await
            .unwrap();
    }
    assert_eq!(
        caravan_store::verify_audit_chain(&a)
            .await
            .unwrap()
            .unwrap(),
        20
    );
}
