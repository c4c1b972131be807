//! The DIMSE SCP against dicom-ul's client (always) and against dcmtk's echoscu, storescu,
//! findscu and movescu with storescp as the move destination (opt-in: CARAVAN_TEST_DCMTK=1;
//! CARAVAN_DCMTK_BIN names the folder of the dcmtk programs, default /usr/bin).
// Helpers outside #[test] functions are test code too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use imaging::dimse::scu;
use imaging::{Archive, Scp, ScpConfig, ScpHandle};

async fn start(config: ScpConfig) -> (Archive, ScpHandle, String) {
    let archive = Archive::in_memory().await.expect("archive");
    let scp = Scp::bind(
        "127.0.0.1:0".parse().expect("addr"),
        archive.clone(),
        config,
    )
    .await
    .expect("bind");
    let addr = scp.local_addr().to_string();
    (archive, scp, addr)
}

fn identifier(level: &str, keys: &[(dicom_core::Tag, VR, &str)]) -> InMemDicomObject {
    let mut obj = InMemDicomObject::new_empty();
    obj.put(DataElement::new(
        tags::QUERY_RETRIEVE_LEVEL,
        VR::CS,
        PrimitiveValue::from(level),
    ));
    for (tag, vr, value) in keys {
        let v = if value.is_empty() {
            PrimitiveValue::Empty
        } else {
            PrimitiveValue::from(value.to_string())
        };
        obj.put(DataElement::new(*tag, *vr, v));
    }
    obj
}

#[tokio::test]
async fn echo_store_find_move_with_dicom_ul_client() {
    let (archive, scp, addr) = start(ScpConfig::default()).await;
    assert_eq!(
        scu::echo(&addr, "TESTSCU", "CARAVAN").await.expect("echo"),
        0
    );

    let corpus = common::corpus();
    let statuses = scu::store_files(&addr, "TESTSCU", "CARAVAN", &corpus)
        .await
        .expect("store");
    assert_eq!(statuses, vec![0; 5]);
    // Storing again is idempotent: success, nothing duplicated.
    let statuses = scu::store_files(&addr, "TESTSCU", "CARAVAN", &corpus[..1])
        .await
        .expect("store");
    assert_eq!(statuses, vec![0]);
    assert_eq!(archive.count_instances().await.expect("count"), 5);

    let (found, status) = scu::find(
        &addr,
        "TESTSCU",
        "CARAVAN",
        &identifier(
            "STUDY",
            &[
                (tags::PATIENT_NAME, VR::PN, "Doe*"),
                (tags::STUDY_INSTANCE_UID, VR::UI, ""),
                (tags::MODALITIES_IN_STUDY, VR::CS, ""),
                (tags::NUMBER_OF_STUDY_RELATED_INSTANCES, VR::IS, ""),
            ],
        ),
    )
    .await
    .expect("find");
    assert_eq!(status, 0);
    assert_eq!(found.len(), 2);
    let uids: Vec<String> = found
        .iter()
        .map(|o| {
            o.element(tags::STUDY_INSTANCE_UID)
                .expect("uid")
                .to_str()
                .expect("s")
                .trim_end_matches('\0')
                .to_string()
        })
        .collect();
    assert_eq!(uids, vec!["1.2.826.0.1.3", "1.2.826.0.1.1"]);
    let n = found[1]
        .element(tags::NUMBER_OF_STUDY_RELATED_INSTANCES)
        .expect("n")
        .to_str()
        .expect("s")
        .to_string();
    assert_eq!(n.trim(), "3");

    // Patient root, patient level.
    let (patients, status) = scu::find(
        &addr,
        "TESTSCU",
        "CARAVAN",
        &identifier(
            "PATIENT",
            &[
                (tags::PATIENT_ID, VR::LO, "P00?"),
                (tags::PATIENT_NAME, VR::PN, ""),
            ],
        ),
    )
    .await
    .expect("find");
    assert_eq!((patients.len(), status), (3, 0));

    // A bad identifier gets a failure status, not a dropped association.
    let (_, status) = scu::find(
        &addr,
        "TESTSCU",
        "CARAVAN",
        &identifier("STUDY", &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.*")]),
    )
    .await
    .expect("find");
    assert_eq!(status, 0xA900);

    // C-MOVE to a second Caravan SCP.
    let (dest_archive, dest, dest_addr) = start(ScpConfig {
        ae_title: "DEST".into(),
        ..ScpConfig::default()
    })
    .await;
    scp.stop().await;
    let (source_archive, scp, addr) = start(ScpConfig {
        move_destinations: HashMap::from([("DEST".to_string(), dest_addr.clone())]),
        ..ScpConfig::default()
    })
    .await;
    for bytes in &corpus {
        source_archive
            .store(bytes.clone().into(), "t")
            .await
            .expect("store");
    }
    let outcome = scu::move_to(
        &addr,
        "TESTSCU",
        "CARAVAN",
        "DEST",
        &identifier(
            "STUDY",
            &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.1")],
        ),
    )
    .await
    .expect("move");
    assert_eq!(
        (outcome.status, outcome.completed, outcome.failed),
        (0, 3, 0)
    );
    assert_eq!(dest_archive.count_instances().await.expect("count"), 3);
    let unknown = scu::move_to(
        &addr,
        "TESTSCU",
        "CARAVAN",
        "NOWHERE",
        &identifier(
            "STUDY",
            &[(tags::STUDY_INSTANCE_UID, VR::UI, "1.2.826.0.1.1")],
        ),
    )
    .await
    .expect("move");
    assert_eq!(unknown.status, 0xA801);
    scp.stop().await;
    dest.stop().await;
}

#[tokio::test]
async fn malformed_c_store_gets_a_failure_status_and_loses_nothing() {
    let (archive, scp, addr) = start(ScpConfig::default()).await;
    let corpus = common::corpus();
    scu::store_files(&addr, "TESTSCU", "CARAVAN", &corpus[..1])
        .await
        .expect("store");
    // Send the data set of instance 2 cut short.
    let good = corpus[1].clone();
    let parsed = Archive::in_memory().await.expect("a");
    let rec = parsed
        .store(good.clone().into(), "t")
        .await
        .expect("s")
        .record()
        .clone();
    let mut session = scu::StoreSession::open(
        &addr,
        "TESTSCU",
        "CARAVAN",
        [(rec.sop_class_uid.as_str(), rec.transfer_syntax.as_str())].into_iter(),
    )
    .await
    .expect("open");
    let status = session
        .store_part10(&rec, &good[..good.len() - 2000], None)
        .await
        .expect("response");
    assert_eq!(status, 0xC000);
    // The association is still usable.
    let status = session
        .store_part10(&rec, &good, None)
        .await
        .expect("response");
    assert_eq!(status, 0);
    session.release().await;
    assert_eq!(archive.count_instances().await.expect("count"), 2);
    scp.stop().await;
}

#[tokio::test]
async fn hostile_c_store_gets_a_failure_status_and_loses_nothing() {
    let (archive, scp, addr) = start(ScpConfig::default()).await;
    let corpus = common::corpus();
    scu::store_files(&addr, "TESTSCU", "CARAVAN", &corpus[..1])
        .await
        .expect("store");
    let good = corpus[1].clone();
    let rec = Archive::in_memory()
        .await
        .expect("a")
        .store(good.clone().into(), "t")
        .await
        .expect("s")
        .record()
        .clone();
    // The data set of instance 2 with 32 more bytes, one of which headers declares 2 GB.
    let hostile = common::with_hostile_length(&good);
    let mut session = scu::StoreSession::open(
        &addr,
        "TESTSCU",
        "CARAVAN",
        [(rec.sop_class_uid.as_str(), rec.transfer_syntax.as_str())].into_iter(),
    )
    .await
    .expect("open");
    let status = session
        .store_part10(&rec, &hostile, None)
        .await
        .expect("response");
    assert_eq!(status, 0xC000, "Cannot understand");
    assert_eq!(archive.count_instances().await.expect("count"), 1);
    // The association is still usable and the first instance still readable.
    let status = session
        .store_part10(&rec, &good, None)
        .await
        .expect("response");
    assert_eq!(status, 0);
    session.release().await;
    assert_eq!(archive.count_instances().await.expect("count"), 2);
    for r in archive
        .instances("1.2.826.0.1.1", None, None)
        .await
        .expect("list")
    {
        archive
            .read(&r, imaging::AccessAction::Retrieve, "t")
            .await
            .expect("bytes still there");
    }
    scp.stop().await;
}

#[tokio::test]
async fn called_ae_title_can_be_enforced() {
    let (_archive, scp, addr) = start(ScpConfig {
        require_called_ae_title: true,
        ..ScpConfig::default()
    })
    .await;
    assert!(scu::echo(&addr, "TESTSCU", "WRONG").await.is_err());
    assert_eq!(
        scu::echo(&addr, "TESTSCU", "CARAVAN").await.expect("echo"),
        0
    );
    scp.stop().await;
}

fn dcmtk() -> Option<PathBuf> {
    if std::env::var("CARAVAN_TEST_DCMTK").ok().as_deref() != Some("1") {
        eprintln!("skipped: set CARAVAN_TEST_DCMTK=1 (and install dcmtk) to run against dcmtk");
        return None;
    }
    Some(PathBuf::from(
        std::env::var("CARAVAN_DCMTK_BIN").unwrap_or_else(|_| "/usr/bin".into()),
    ))
}

fn run(bin: &std::path::Path, program: &str, args: &[&str]) -> std::process::Output {
    let output = Command::new(bin.join(program))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        output.status.success(),
        "{program} {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dcmtk_peers() {
    let Some(bin) = dcmtk() else { return };
    let dest_port = free_port();
    let (archive, scp, addr) = start(ScpConfig {
        move_destinations: HashMap::from([("DEST".to_string(), format!("127.0.0.1:{dest_port}"))]),
        ..ScpConfig::default()
    })
    .await;
    let port = addr.rsplit(':').next().expect("port").to_string();
    let work = tempfile::tempdir().expect("tmp");
    let files = work.path().join("files");
    std::fs::create_dir_all(&files).expect("dir");
    for (i, bytes) in common::corpus().iter().enumerate() {
        std::fs::write(files.join(format!("{i}.dcm")), bytes).expect("write");
    }
    let files_s = files.to_string_lossy().to_string();
    let b = bin.clone();
    let p = port.clone();
    tokio::task::spawn_blocking(move || {
        run(&b, "echoscu", &["-aec", "CARAVAN", "127.0.0.1", &p]);
        run(
            &b,
            "storescu",
            &["-aec", "CARAVAN", "+sd", "+r", "127.0.0.1", &p, &files_s],
        );
    })
    .await
    .expect("join");
    assert_eq!(archive.count_instances().await.expect("count"), 5);

    // C-FIND table: (level and keys, expected number of responses).
    let finds: Vec<(Vec<&str>, usize)> = vec![
        (
            vec![
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "PatientName=Doe*",
                "-k",
                "StudyInstanceUID",
            ],
            2,
        ),
        (
            vec![
                "-S",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "StudyDate=20200101-20211231",
                "-k",
                "StudyInstanceUID",
            ],
            2,
        ),
        (
            vec![
                "-S",
                "-k",
                "QueryRetrieveLevel=SERIES",
                "-k",
                "StudyInstanceUID=1.2.826.0.1.1",
                "-k",
                "SeriesInstanceUID",
                "-k",
                "Modality",
            ],
            2,
        ),
        (
            vec![
                "-S",
                "-k",
                "QueryRetrieveLevel=IMAGE",
                "-k",
                "StudyInstanceUID=1.2.826.0.1.1",
                "-k",
                "SeriesInstanceUID=1.2.826.0.1.1.1",
                "-k",
                "SOPInstanceUID",
            ],
            2,
        ),
        (
            vec![
                "-P",
                "-k",
                "QueryRetrieveLevel=PATIENT",
                "-k",
                "PatientID=P00*",
                "-k",
                "PatientName",
            ],
            3,
        ),
    ];
    for (i, (keys, expected)) in finds.into_iter().enumerate() {
        let out_dir = work.path().join(format!("find{i}"));
        std::fs::create_dir_all(&out_dir).expect("dir");
        let out_s = out_dir.to_string_lossy().to_string();
        let mut args: Vec<String> = vec![
            "-aec".into(),
            "CARAVAN".into(),
            "-X".into(),
            "-od".into(),
            out_s,
        ];
        args.extend(keys.iter().map(|s| s.to_string()));
        args.push("127.0.0.1".into());
        args.push(port.clone());
        let b = bin.clone();
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            run(&b, "findscu", &refs);
        })
        .await
        .expect("join");
        let n = std::fs::read_dir(&out_dir).expect("dir").count();
        assert_eq!(n, expected, "findscu case {i}");
    }

    // C-MOVE into dcmtk's storescp.
    let received = work.path().join("received");
    std::fs::create_dir_all(&received).expect("dir");
    let mut storescp = Command::new(bin.join("storescp"))
        .args(["-aet", "DEST", "-od"])
        .arg(&received)
        .arg(dest_port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("storescp");
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", dest_port)).is_err() {
        assert!(start.elapsed().as_secs() < 10, "storescp did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let b = bin.clone();
    let p = port.clone();
    tokio::task::spawn_blocking(move || {
        run(
            &b,
            "movescu",
            &[
                "-S",
                "-aec",
                "CARAVAN",
                "-aem",
                "DEST",
                "-k",
                "QueryRetrieveLevel=STUDY",
                "-k",
                "StudyInstanceUID=1.2.826.0.1.1",
                "127.0.0.1",
                &p,
            ],
        );
    })
    .await
    .expect("join");
    let _ = storescp.kill();
    let _ = storescp.wait();
    let n = std::fs::read_dir(&received).expect("dir").count();
    assert_eq!(n, 3, "instances received by storescp");
    scp.stop().await;
}
