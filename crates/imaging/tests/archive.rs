//! The archive: storing, idempotency, rejection of bad input, and the C-FIND/QIDO matching rules
//! as a table of queries and expected matches.
// Helpers outside #[test] functions are test code too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use imaging::{
    AccessAction, AccessEvent, AccessObserver, Archive, Error, Level, Query, StoreOutcome,
};

#[derive(Default)]
struct Recorder(Mutex<Vec<(AccessAction, Option<String>, String)>>);

impl AccessObserver for Recorder {
    fn on_access(&self, e: &AccessEvent<'_>) {
        self.0.lock().expect("lock").push((
            e.action,
            e.study_uid.map(str::to_string),
            e.principal.to_string(),
        ));
    }
}

async fn loaded() -> Archive {
    let archive = Archive::in_memory().await.expect("archive");
    for bytes in common::corpus() {
        let outcome = archive
            .store(Bytes::from(bytes), "test")
            .await
            .expect("store");
        assert!(matches!(outcome, StoreOutcome::Stored(_)));
    }
    archive
}

#[tokio::test]
async fn store_is_idempotent_and_observed() {
    let recorder = Arc::new(Recorder::default());
    let archive = Archive::in_memory()
        .await
        .expect("archive")
        .with_observer(recorder.clone());
    let corpus = common::corpus();
    let first = archive
        .store(Bytes::from(corpus[0].clone()), "alice")
        .await
        .expect("store");
    assert!(matches!(first, StoreOutcome::Stored(_)));
    let again = archive
        .store(Bytes::from(corpus[0].clone()), "alice")
        .await
        .expect("store");
    assert!(matches!(again, StoreOutcome::AlreadyStored(_)));
    assert_eq!(archive.count_instances().await.expect("count"), 1);
    let record = again.record().clone();
    let bytes = archive
        .read(&record, AccessAction::Retrieve, "bob")
        .await
        .expect("read");
    assert_eq!(&bytes[..], &corpus[0][..]);
    let events = recorder.0.lock().expect("lock").clone();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0],
        (
            AccessAction::Store,
            Some("1.2.826.0.1.1".into()),
            "alice".into()
        )
    );
    assert_eq!(
        events[2],
        (
            AccessAction::Retrieve,
            Some("1.2.826.0.1.1".into()),
            "bob".into()
        )
    );
}

#[tokio::test]
async fn malformed_instances_are_rejected_precisely_and_lose_nothing() {
    let archive = loaded().await;
    let good = common::corpus()[0].clone();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty", vec![], "preamble"),
        (
            "not dicom",
            b"hello world, this is not a DICOM file at all".repeat(10),
            "DICM",
        ),
        (
            "truncated in the header",
            good[..300].to_vec(),
            "not a DICOM instance",
        ),
        (
            "truncated pixel data",
            good[..good.len() - 1000].to_vec(),
            "not a DICOM instance",
        ),
        (
            // Small, but one of its elements declares 2 GB inside a sequence item of defined length.
            "a hostile declared length",
            common::with_hostile_length(&good),
            common::HOSTILE_REASON,
        ),
        (
            // The transfer syntax UID given a long-form VR and a 4 GB length: dicom-object's meta reader
            // would reserve it for a "UID".
            "a hostile length in the file meta group",
            {
                let mut b = vec![0u8; 128];
                b.extend_from_slice(b"DICM");
                b.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0, 16, 0, 0, 0]);
                b.extend_from_slice(&[0x02, 0x00, 0x10, 0x00, b'U', b'N', 0, 0]);
                b.extend_from_slice(&0xFFFF_FF00u32.to_le_bytes());
                b.extend_from_slice(b"1.2\0");
                b
            },
            "file meta element (0002,0010) at byte 28 declares 4294967040 bytes but only 4 remain",
        ),
        (
            "missing study UID",
            common::instance(
                common::CT_SMALL,
                &common::Spec {
                    study_uid: "",
                    series_uid: "1.2.3",
                    sop_uid: "1.2.3.4",
                    ..Default::default()
                },
            ),
            "StudyInstanceUID",
        ),
        (
            "path traversal in a UID",
            common::instance(
                common::CT_SMALL,
                &common::Spec {
                    study_uid: "../../etc",
                    series_uid: "1.2.3",
                    sop_uid: "1.2.3.4",
                    ..Default::default()
                },
            ),
            "invalid UID",
        ),
        (
            "same SOP instance in another series",
            common::instance(
                common::CT_SMALL,
                &common::Spec {
                    study_uid: "1.2.826.0.1.1",
                    series_uid: "1.2.9",
                    sop_uid: "1.2.826.0.1.1.1.1",
                    ..Default::default()
                },
            ),
            "already stored in series",
        ),
    ];
    for (name, bytes, expected) in cases {
        match archive.store(Bytes::from(bytes), "test").await {
            Err(Error::Rejected(reason)) => {
                let text = reason.to_string();
                assert!(text.contains(expected), "{name}: {text}");
            }
            other => panic!("{name}: expected a rejection, got {other:?}"),
        }
    }
    assert_eq!(archive.count_instances().await.expect("count"), 5);
    // Everything stored before is still readable.
    for r in archive
        .instances("1.2.826.0.1.1", None, None)
        .await
        .expect("list")
    {
        archive
            .read(&r, AccessAction::Retrieve, "t")
            .await
            .expect("bytes still there");
    }
}

#[tokio::test]
async fn wrong_study_is_refused_for_stow_to_a_study() {
    let archive = Archive::in_memory().await.expect("archive");
    let bytes = Bytes::from(common::corpus()[0].clone());
    let err = archive
        .store_checked(bytes, Some("1.2.3.999"), "t")
        .await
        .expect_err("wrong study");
    assert!(
        err.to_string().contains("not to the study 1.2.3.999"),
        "{err}"
    );
}

fn q(level: Level, filters: &[(Tag, &str)]) -> Query {
    let mut query = Query::new(level);
    for (t, v) in filters {
        query = query.filter(*t, *v);
    }
    query
}

#[tokio::test]
async fn matching_rules_table() {
    let archive = loaded().await;
    use tags::*;
    // (description, query, expected unique keys in order)
    let table: Vec<(&str, Query, Vec<&str>)> = vec![
        (
            "all studies by date",
            q(Level::Study, &[]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1", "1.2.826.0.1.2"],
        ),
        (
            "single value PN",
            q(Level::Study, &[(PATIENT_NAME, "Doe^John")]),
            vec!["1.2.826.0.1.1"],
        ),
        (
            "PN is case-insensitive",
            q(Level::Study, &[(PATIENT_NAME, "doe^JOHN")]),
            vec!["1.2.826.0.1.1"],
        ),
        (
            "wildcard *",
            q(Level::Study, &[(PATIENT_NAME, "Doe*")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1"],
        ),
        (
            "wildcard ?",
            q(Level::Study, &[(PATIENT_NAME, "?mith^Ja?e")]),
            vec!["1.2.826.0.1.2"],
        ),
        (
            "universal *",
            q(Level::Study, &[(PATIENT_NAME, "*")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1", "1.2.826.0.1.2"],
        ),
        (
            "empty value is universal",
            q(Level::Study, &[(ACCESSION_NUMBER, "")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1", "1.2.826.0.1.2"],
        ),
        (
            "date range",
            q(Level::Study, &[(STUDY_DATE, "20200101-20201231")]),
            vec!["1.2.826.0.1.1"],
        ),
        (
            "open date range before",
            q(Level::Study, &[(STUDY_DATE, "-20200115")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1"],
        ),
        (
            "open date range after",
            q(Level::Study, &[(STUDY_DATE, "20200116-")]),
            vec!["1.2.826.0.1.2"],
        ),
        (
            "single date",
            q(Level::Study, &[(STUDY_DATE, "20191231")]),
            vec!["1.2.826.0.1.3"],
        ),
        (
            "time range",
            q(Level::Study, &[(STUDY_TIME, "1100-1300")]),
            vec!["1.2.826.0.1.3"],
        ),
        (
            "single time matches the minute",
            q(Level::Study, &[(STUDY_TIME, "0830")]),
            vec!["1.2.826.0.1.1"],
        ),
        (
            "UID list",
            q(
                Level::Study,
                &[(STUDY_INSTANCE_UID, "1.2.826.0.1.1\\1.2.826.0.1.2")],
            ),
            vec!["1.2.826.0.1.1", "1.2.826.0.1.2"],
        ),
        (
            "modalities in study",
            q(Level::Study, &[(MODALITIES_IN_STUDY, "MR")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1"],
        ),
        (
            "modalities list",
            q(Level::Study, &[(MODALITIES_IN_STUDY, "CT\\MR")]),
            vec!["1.2.826.0.1.3", "1.2.826.0.1.1", "1.2.826.0.1.2"],
        ),
        (
            "accession",
            q(Level::Study, &[(ACCESSION_NUMBER, "A2")]),
            vec!["1.2.826.0.1.2"],
        ),
        (
            "combined keys",
            q(
                Level::Study,
                &[(PATIENT_NAME, "Doe*"), (STUDY_DATE, "20200101-")],
            ),
            vec!["1.2.826.0.1.1"],
        ),
        (
            "no match",
            q(Level::Study, &[(PATIENT_NAME, "Nobody")]),
            vec![],
        ),
        (
            "patient level wildcard",
            q(Level::Patient, &[(PATIENT_ID, "P00*")]),
            vec!["P003", "P001", "P002"],
        ),
        (
            "patient by id",
            q(Level::Patient, &[(PATIENT_ID, "P002")]),
            vec!["P002"],
        ),
        (
            "series of a study",
            q(Level::Series, &[(STUDY_INSTANCE_UID, "1.2.826.0.1.1")]),
            vec!["1.2.826.0.1.1.1", "1.2.826.0.1.1.2"],
        ),
        (
            "series by modality",
            q(Level::Series, &[(MODALITY, "CT")]),
            vec!["1.2.826.0.1.1.1", "1.2.826.0.1.2.1"],
        ),
        (
            "series by patient (relational)",
            q(Level::Series, &[(PATIENT_ID, "P003")]),
            vec!["1.2.826.0.1.3.1"],
        ),
        (
            "images of a series",
            q(Level::Image, &[(SERIES_INSTANCE_UID, "1.2.826.0.1.1.1")]),
            vec!["1.2.826.0.1.1.1.1", "1.2.826.0.1.1.1.2"],
        ),
        (
            "image by number",
            q(
                Level::Image,
                &[
                    (SERIES_INSTANCE_UID, "1.2.826.0.1.1.1"),
                    (INSTANCE_NUMBER, "2"),
                ],
            ),
            vec!["1.2.826.0.1.1.1.2"],
        ),
        (
            "image by SOP class",
            q(
                Level::Image,
                &[(SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.1.4")],
            ),
            vec!["1.2.826.0.1.1.2.1", "1.2.826.0.1.3.1.1"],
        ),
    ];
    let mut passed = 0;
    for (name, query, expected) in &table {
        let key = match query.level {
            Level::Patient => PATIENT_ID,
            Level::Study => STUDY_INSTANCE_UID,
            Level::Series => SERIES_INSTANCE_UID,
            Level::Image => SOP_INSTANCE_UID,
        };
        let got: Vec<String> = archive
            .query(query, "t")
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .iter()
            .map(|m| {
                m.attributes
                    .element(key)
                    .expect("unique key returned")
                    .to_str()
                    .expect("text")
                    .trim_end_matches('\0')
                    .to_string()
            })
            .collect();
        assert_eq!(&got, expected, "{name}");
        passed += 1;
    }
    assert_eq!(passed, table.len());
}

#[tokio::test]
async fn computed_attributes_limit_and_offset() {
    let archive = loaded().await;
    let query = q(Level::Study, &[(tags::STUDY_INSTANCE_UID, "1.2.826.0.1.1")]);
    let m = archive.query(&query, "t").await.expect("query");
    let a = &m[0].attributes;
    let s = |t| {
        a.element(t)
            .expect("present")
            .to_str()
            .expect("str")
            .to_string()
    };
    assert_eq!(s(tags::MODALITIES_IN_STUDY), "CT\\MR");
    assert_eq!(s(tags::NUMBER_OF_STUDY_RELATED_SERIES), "2");
    assert_eq!(s(tags::NUMBER_OF_STUDY_RELATED_INSTANCES), "3");
    assert_eq!(s(tags::PATIENT_NAME), "Doe^John");
    let mut paged = Query::new(Level::Study);
    paged.limit = Some(1);
    paged.offset = 1;
    let m = archive.query(&paged, "t").await.expect("query");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].study_uid.as_deref(), Some("1.2.826.0.1.1"));
}

#[tokio::test]
async fn invalid_queries_are_refused() {
    let archive = loaded().await;
    let cases = [
        q(Level::Study, &[(tags::STUDY_INSTANCE_UID, "1.2.*")]),
        q(Level::Image, &[(tags::INSTANCE_NUMBER, "one")]),
        q(Level::Study, &[(tags::STUDY_DATE, "2020a-2021")]),
        q(Level::Study, &[(tags::SOP_INSTANCE_UID, "1.2")]),
        q(Level::Study, &[(tags::NUMBER_OF_STUDY_RELATED_SERIES, "2")]),
        q(Level::Study, &[(Tag(0x0009, 0x0010), "x")]),
    ];
    for query in cases {
        match archive.query(&query, "t").await {
            Err(Error::InvalidQuery(_)) => {}
            other => panic!("{query:?}: expected InvalidQuery, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn folder_archive_persists_across_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let archive = Archive::open_folder(dir.path()).await.expect("open");
        for bytes in common::corpus() {
            archive.store(Bytes::from(bytes), "t").await.expect("store");
        }
    }
    let archive = Archive::open_folder(dir.path()).await.expect("reopen");
    assert_eq!(archive.count_instances().await.expect("count"), 5);
    let r = archive
        .instance("1.2.826.0.1.2.1.1")
        .await
        .expect("db")
        .expect("present");
    let bytes = archive
        .read(&r, AccessAction::Retrieve, "t")
        .await
        .expect("read");
    assert_eq!(&bytes[..], &common::corpus()[3][..]);
}

/// A small deterministic mutation fuzzer: flipped, truncated and spliced bytes of real
/// instances must give a stored instance or a rejection, never a panic, and must not disturb
/// what is already stored.
#[tokio::test]
async fn mutated_instances_never_panic() {
    let archive = loaded().await;
    let corpus = common::corpus();
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = move || {
        // xorshift64*: reproducible without a random-number crate.
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let (mut stored, mut rejected) = (0, 0);
    for round in 0..400 {
        let mut bytes = corpus[round % corpus.len()].clone();
        let len = bytes.len();
        match next() % 3 {
            0 => {
                for _ in 0..(1 + next() % 8) {
                    let i = (next() as usize) % len;
                    bytes[i] ^= 1 << (next() % 8);
                }
            }
            1 => bytes.truncate((next() as usize) % len),
            _ => {
                let i = 132 + (next() as usize) % (len - 132);
                let j = 132 + (next() as usize) % (len - 132);
                let chunk: Vec<u8> = bytes[j..(j + 16).min(len)].to_vec();
                bytes.splice(i..i, chunk);
            }
        }
        let t = std::time::Instant::now();
        let stored_result = archive.store(Bytes::from(bytes.clone()), "fuzz").await;
        if t.elapsed().as_millis() > 300 {
            eprintln!("round {round}: store took {:?}", t.elapsed());
        }
        match stored_result {
            Ok(_) => stored += 1,
            Err(Error::Rejected(_)) => rejected += 1,
            Err(e) => panic!("round {round}: unexpected error kind {e}"),
        }
        // Rendering whatever parses must not panic either.
        let t = std::time::Instant::now();
        if let Ok(obj) = imaging::render::open(&bytes) {
            let _ = imaging::render::render_pixels(&obj, 0, None);
        }
        if t.elapsed().as_millis() > 300 {
            eprintln!("round {round}: render took {:?}", t.elapsed());
        }
    }
    eprintln!("mutation fuzz: {stored} stored or already stored, {rejected} rejected");
    assert_eq!(stored + rejected, 400);
    for r in archive
        .instances("1.2.826.0.1.1", None, None)
        .await
        .expect("list")
    {
        archive
            .read(&r, AccessAction::Retrieve, "t")
            .await
            .expect("original bytes still there");
    }
}

/// Many stores at once on a folder archive (group commit, direct object writes): every new
/// instance is stored and readable with its exact bytes, and concurrent copies of one instance
/// give exactly one `Stored` and one object file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_stores_are_grouped_and_each_committed() {
    let dir = tempfile::tempdir().expect("tmp");
    let archive = Archive::open_folder(dir.path()).await.expect("open");
    let mut inputs = Vec::new();
    for series in 0..3 {
        for i in 0..20 {
            let series_uid = format!("1.2.826.0.9.{series}");
            let sop_uid = format!("1.2.826.0.9.{series}.{i}");
            inputs.push(common::instance(
                common::CT_SMALL,
                &common::Spec {
                    patient_id: "P9",
                    study_uid: "1.2.826.0.9",
                    series_uid: &series_uid,
                    sop_uid: &sop_uid,
                    modality: "CT",
                    instance_number: i + 1,
                    ..Default::default()
                },
            ));
        }
    }
    let dup = inputs[0].clone();
    let mut tasks = Vec::new();
    for bytes in inputs.iter().cloned().chain(std::iter::repeat_n(dup, 5)) {
        let archive = archive.clone();
        tasks.push(tokio::spawn(async move {
            archive.store(Bytes::from(bytes), "t").await
        }));
    }
    let mut stored = 0;
    let mut already = 0;
    for t in tasks {
        match t.await.expect("join").expect("store") {
            StoreOutcome::Stored(_) => stored += 1,
            StoreOutcome::AlreadyStored(_) => already += 1,
        }
    }
    assert_eq!((stored, already), (60, 5));
    assert_eq!(archive.count_instances().await.expect("count"), 60);
    for (n, bytes) in inputs.iter().enumerate() {
        let sop = format!("1.2.826.0.9.{}.{}", n / 20, n % 20);
        let r = archive.instance(&sop).await.expect("db").expect("indexed");
        let read = archive
            .read(&r, AccessAction::Retrieve, "t")
            .await
            .expect("read");
        assert_eq!(&read[..], &bytes[..], "{sop}");
    }
    let series = dir.path().join("objects/1.2.826.0.9/1.2.826.0.9.0");
    let copies = std::fs::read_dir(&series)
        .expect("series folder")
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("1.2.826.0.9.0.0.")
        })
        .count();
    assert_eq!(copies, 1, "one object file for the instance sent six times");
    let levels = archive
        .query(&Query::new(Level::Series), "t")
        .await
        .expect("query");
    assert_eq!(levels.len(), 3);
}

/// A partial object left at an instance's key (a crash in the middle of its write, before it
/// was indexed) is replaced by the complete bytes when the instance is sent again.
#[tokio::test]
async fn leftover_partial_object_is_replaced_on_the_next_store() {
    let bytes = common::corpus()[0].clone();
    let first = tempfile::tempdir().expect("tmp");
    let key = Archive::open_folder(first.path())
        .await
        .expect("open")
        .store(Bytes::from(bytes.clone()), "t")
        .await
        .expect("store")
        .record()
        .object_key
        .clone();
    let dir = tempfile::tempdir().expect("tmp");
    let archive = Archive::open_folder(dir.path()).await.expect("open");
    let path = dir.path().join("objects").join(&key);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, &bytes[..100]).expect("partial file");
    let outcome = archive
        .store(Bytes::from(bytes.clone()), "t")
        .await
        .expect("store");
    assert!(matches!(outcome, StoreOutcome::Stored(_)));
    assert_eq!(outcome.record().object_key, key);
    let read = archive
        .read(outcome.record(), AccessAction::Retrieve, "t")
        .await
        .expect("read");
    assert_eq!(&read[..], &bytes[..]);
}

/// Deleting a study removes its index rows and its files, keeps everything else, is refused (changing
/// nothing) when limited to a source that did not store every instance, and leaves the archive able to store
/// the same instances again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_study_is_deleted_from_the_index_and_the_disk() {
    use imaging::StudyDeletion;
    let dir = tempfile::tempdir().expect("tmp");
    let recorder = Arc::new(Recorder::default());
    let archive = Archive::open_folder(dir.path())
        .await
        .expect("open")
        .with_observer(recorder.clone());
    let corpus = common::corpus();
    for bytes in &corpus[..3] {
        archive
            .store(Bytes::from(bytes.clone()), "federation:node-a")
            .await
            .expect("store");
    }
    for bytes in &corpus[3..] {
        archive
            .store(Bytes::from(bytes.clone()), "dicom:MODALITY")
            .await
            .expect("store");
    }
    let study = "1.2.826.0.1.1";
    let folder = dir.path().join("objects").join(study);
    assert_eq!(walk(&folder).len(), 3, "three files of the study on disk");
    let studies = |a: Archive| async move {
        let mut uids: Vec<String> = a
            .query(&q(Level::Study, &[]), "t")
            .await
            .expect("query")
            .into_iter()
            .filter_map(|m| m.study_uid)
            .collect();
        uids.sort();
        uids
    };
    let before = studies(archive.clone()).await;

    // Limited to a source that did not store it: nothing changes.
    assert_eq!(
        archive
            .delete_study(study, Some("federation:node-b"), "purge")
            .await
            .expect("delete"),
        StudyDeletion::Kept { other_instances: 3 }
    );
    assert_eq!(studies(archive.clone()).await, before);
    assert_eq!(walk(&folder).len(), 3);

    let size: u64 = archive
        .instances(study, None, None)
        .await
        .expect("records")
        .iter()
        .map(|r| r.size)
        .sum();
    assert_eq!(
        archive
            .delete_study(study, Some("federation:node-a"), "purge")
            .await
            .expect("delete"),
        StudyDeletion::Deleted {
            instances: 3,
            bytes: size,
            files_left: 0
        }
    );
    assert!(archive
        .instances(study, None, None)
        .await
        .expect("records")
        .is_empty());
    assert!(!folder.exists(), "the study's files and folders are gone");
    assert_eq!(
        studies(archive.clone()).await,
        vec!["1.2.826.0.1.2", "1.2.826.0.1.3"]
    );
    assert_eq!(archive.count_instances().await.expect("count"), 2);
    assert!(archive
        .query(&q(Level::Series, &[(tags::STUDY_INSTANCE_UID, study)]), "t")
        .await
        .expect("query")
        .is_empty());
    // The other studies are intact and readable.
    for uid in ["1.2.826.0.1.2", "1.2.826.0.1.3"] {
        for r in archive.instances(uid, None, None).await.expect("records") {
            archive
                .read(&r, AccessAction::Retrieve, "t")
                .await
                .expect("read");
        }
    }
    assert!(recorder.0.lock().expect("lock").iter().any(|(a, s, p)| {
        *a == AccessAction::Delete && s.as_deref() == Some(study) && p == "purge"
    }));
    assert_eq!(
        archive
            .delete_study(study, None, "purge")
            .await
            .expect("again"),
        StudyDeletion::NotFound
    );
    assert!(matches!(
        archive.delete_study("../etc", None, "purge").await,
        Err(Error::NotFound(_))
    ));

    // The same instances can be stored again (the writer forgot the deleted series), also across a reopen;
    // a delete without a source limit takes a study stored by several sources.
    for bytes in &corpus[..3] {
        let outcome = archive
            .store(Bytes::from(bytes.clone()), "dicom:MODALITY")
            .await
            .expect("store again");
        assert!(matches!(outcome, StoreOutcome::Stored(_)));
    }
    drop(archive);
    let archive = Archive::open_folder(dir.path()).await.expect("reopen");
    assert_eq!(archive.count_instances().await.expect("count"), 5);
    assert!(matches!(
        archive
            .delete_study("1.2.826.0.1.2", None, "admin")
            .await
            .expect("delete"),
        StudyDeletion::Deleted { instances: 1, .. }
    ));
    assert_eq!(archive.count_instances().await.expect("count"), 4);
}

/// Stores running while a study is deleted all commit, and none of them is lost or left without its file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stores_during_a_delete_are_kept_whole() {
    let dir = tempfile::tempdir().expect("tmp");
    let archive = Archive::open_folder(dir.path()).await.expect("open");
    let corpus = common::corpus();
    for bytes in &corpus[..3] {
        archive
            .store(Bytes::from(bytes.clone()), "a")
            .await
            .expect("store");
    }
    let mut tasks = Vec::new();
    for n in 0..20u32 {
        let a = archive.clone();
        let sop = format!("1.2.826.0.9.1.{n}");
        let bytes = common::instance(
            common::CT_SMALL,
            &common::Spec {
                patient_name: "Other^Patient",
                patient_id: "P9",
                study_uid: "1.2.826.0.9",
                series_uid: "1.2.826.0.9.1",
                modality: "CT",
                sop_uid: &sop,
                instance_number: n,
                ..Default::default()
            },
        );
        tasks.push(tokio::spawn(async move {
            a.store(Bytes::from(bytes), "b").await.expect("store")
        }));
    }
    archive
        .delete_study("1.2.826.0.1.1", None, "purge")
        .await
        .expect("delete");
    for t in tasks {
        t.await.expect("task");
    }
    let records = archive
        .instances("1.2.826.0.9", None, None)
        .await
        .expect("records");
    assert_eq!(records.len(), 20);
    for r in &records {
        archive
            .read(r, AccessAction::Retrieve, "t")
            .await
            .expect("every indexed instance has its bytes");
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
