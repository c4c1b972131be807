//! DICOMweb: STOW-RS, QIDO-RS and WADO-RS through the router (always), and black-box with the
//! `dicomweb-client` Python package (opt-in: CARAVAN_TEST_DICOMWEB=1; CARAVAN_PYTHON names the
//! interpreter, default python3).
// Helpers outside #[test] functions are test code too.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use imaging::dicomweb::{router, DicomWebState, Principal};
use imaging::{AccessAction, AccessEvent, AccessObserver, Archive};
use std::sync::{Arc, Mutex};
use tower::ServiceExt;

fn multipart(parts: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "b0undary-42";
    let mut body = Vec::new();
    for (ct, data) in parts {
        body.extend_from_slice(format!("--{boundary}\r\nContent-Type: {ct}\r\n\r\n").as_bytes());
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (
        format!("multipart/related; type=\"application/dicom\"; boundary={boundary}"),
        body,
    )
}

async fn call(app: &axum::Router, req: Request<Body>) -> (StatusCode, String, Vec<u8>) {
    let resp = app.clone().oneshot(req).await.expect("response");
    let status = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().expect("ascii").to_string())
        .unwrap_or_default();
    let body = resp
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    (status, ct, body)
}

fn get(uri: &str) -> Request<Body> {
    Request::get(uri).body(Body::empty()).expect("request")
}

#[derive(Default)]
struct Seen(Mutex<Vec<(AccessAction, String)>>);
impl AccessObserver for Seen {
    fn on_access(&self, e: &AccessEvent<'_>) {
        self.0
            .lock()
            .expect("lock")
            .push((e.action, e.principal.to_string()));
    }
}

async fn loaded() -> (axum::Router, Arc<Seen>) {
    let seen = Arc::new(Seen::default());
    let archive = Archive::in_memory()
        .await
        .expect("archive")
        .with_observer(seen.clone());
    let app = router(DicomWebState::new(archive));
    let corpus = common::corpus();
    let parts: Vec<(&str, &[u8])> = corpus
        .iter()
        .map(|b| ("application/dicom", b.as_slice()))
        .collect();
    let (ct, body) = multipart(&parts);
    let mut req = Request::post("/studies")
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("request");
    req.extensions_mut().insert(Principal("dr-ada".into()));
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("json");
    assert_eq!(
        json["00081199"]["Value"].as_array().expect("stored").len(),
        5
    );
    (app, seen)
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).expect("json")
}

#[tokio::test]
async fn stow_reports_failures_precisely() {
    let (app, seen) = loaded().await;
    assert!(seen
        .0
        .lock()
        .expect("lock")
        .iter()
        .all(|(a, p)| *a == AccessAction::Store && p == "dr-ada"));
    let good = common::instance(
        common::CT_SMALL,
        &common::Spec {
            study_uid: "1.2.5",
            series_uid: "1.2.5.1",
            sop_uid: "1.2.5.1.1",
            ..Default::default()
        },
    );
    let truncated = &good[..good.len() - 500];
    let (ct, body) = multipart(&[
        ("application/dicom", &good),
        ("application/dicom", truncated),
        ("text/plain", b"hi"),
    ]);
    let req = Request::post("/studies")
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("req");
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let v = json(&body);
    assert_eq!(v["00081199"]["Value"].as_array().expect("ok").len(), 1);
    let failed = v["00081198"]["Value"].as_array().expect("failed");
    assert_eq!(failed.len(), 2);
    assert_eq!(failed[0]["00081197"]["Value"][0], 0xC000);
    assert!(failed[0]["00000902"]["Value"][0]
        .as_str()
        .expect("comment")
        .contains("not a DICOM instance"));
    assert_eq!(failed[1]["00081197"]["Value"][0], 0xC122);

    // Storing into the wrong study is refused; a non-multipart request is a 400.
    let (ct, body) = multipart(&[("application/dicom", &good)]);
    let req = Request::post("/studies/1.2.999")
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("req");
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(String::from_utf8_lossy(&body).contains("not to the study 1.2.999"));
    let req = Request::post("/studies")
        .header("content-type", "application/dicom")
        .body(Body::from(good.clone()))
        .expect("req");
    assert_eq!(call(&app, req).await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn stow_refuses_a_hostile_length_with_a_409_and_keeps_what_is_stored() {
    let (app, _) = loaded().await;
    // A new instance 32 bytes longer than a valid one, one header of which declares 2 GB.
    let good = common::instance(
        common::CT_SMALL,
        &common::Spec {
            study_uid: "1.2.6",
            series_uid: "1.2.6.1",
            sop_uid: "1.2.6.1.1",
            ..Default::default()
        },
    );
    let hostile = common::with_hostile_length(&good);
    let (ct, body) = multipart(&[("application/dicom", &hostile)]);
    let req = Request::post("/studies")
        .header("content-type", ct)
        .body(Body::from(body))
        .expect("req");
    let (status, _, body) = call(&app, req).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let v = json(&body);
    let failed = v["00081198"]["Value"].as_array().expect("failed");
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["00081197"]["Value"][0], 0xC000);
    let comment = failed[0]["00000902"]["Value"][0].as_str().expect("comment");
    assert!(
        comment.contains(common::HOSTILE_REASON)
            && comment.contains("declares 2147483648 bytes but only 0 remain"),
        "{comment}"
    );
    // Nothing stored was lost, nothing was added, and an instance still reads back whole.
    let (_, _, body) = call(&app, get("/studies")).await;
    assert_eq!(json(&body).as_array().expect("studies").len(), 3);
    let (_, _, body) = call(&app, get("/studies/1.2.6/instances")).await;
    assert!(body.is_empty() || json(&body).as_array().is_none_or(|a| a.is_empty()));
    let (status, _, body) = call(&app, get("/studies/1.2.826.0.1.1")).await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.len() > 39_000);
}

#[tokio::test]
async fn qido_table() {
    let (app, _) = loaded().await;
    // (uri, expected number of results)
    let table = [
        ("/studies", 3),
        ("/studies?PatientName=Doe*", 2),
        ("/studies?PatientName=doe%5Ejohn", 1),
        ("/studies?StudyDate=20200101-20211231", 2),
        ("/studies?00100020=P002", 1),
        ("/studies?ModalitiesInStudy=MR", 2),
        ("/studies?limit=2", 2),
        ("/studies?limit=2&offset=2", 1),
        ("/studies/1.2.826.0.1.1/series", 2),
        ("/studies/1.2.826.0.1.1/series?Modality=MR", 1),
        ("/series?Modality=CT", 2),
        ("/studies/1.2.826.0.1.1/instances", 3),
        ("/studies/1.2.826.0.1.1/series/1.2.826.0.1.1.1/instances", 2),
        ("/instances?SOPClassUID=1.2.840.10008.5.1.4.1.1.2", 3),
        ("/studies?PatientName=Nobody", 0),
    ];
    for (uri, expected) in table {
        let (status, ct, body) = call(&app, get(uri)).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(ct, "application/dicom+json", "{uri}");
        assert_eq!(
            json(&body).as_array().expect("array").len(),
            expected,
            "{uri}"
        );
    }
    let (_, _, body) = call(
        &app,
        get("/studies?StudyInstanceUID=1.2.826.0.1.1&includefield=StudyDescription"),
    )
    .await;
    let study = &json(&body)[0];
    assert_eq!(study["00080061"]["Value"], serde_json::json!(["CT", "MR"]));
    assert_eq!(study["00201208"]["Value"][0], "3");
    assert_eq!(study["00100010"]["Value"][0]["Alphabetic"], "Doe^John");
    for bad in [
        "/studies?NoSuchKey=1",
        "/studies?limit=-1",
        "/studies?StudyInstanceUID=1.*",
    ] {
        assert_eq!(
            call(&app, get(bad)).await.0,
            StatusCode::BAD_REQUEST,
            "{bad}"
        );
    }
}

#[tokio::test]
async fn wado_instances_metadata_frames_rendered() {
    let (app, seen) = loaded().await;
    let corpus = common::corpus();
    let base = "/studies/1.2.826.0.1.1/series/1.2.826.0.1.1.1/instances/1.2.826.0.1.1.1.1";
    let (status, ct, body) = call(&app, get(base)).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        ct.starts_with("multipart/related; type=\"application/dicom\""),
        "{ct}"
    );
    let boundary = ct.split("boundary=").nth(1).expect("boundary");
    assert!(
        body.windows(corpus[0].len())
            .any(|w| w == corpus[0].as_slice()),
        "instance bytes intact"
    );
    assert!(body.ends_with(format!("--{boundary}--\r\n").as_bytes()));

    let (_, ct, body) = call(&app, get("/studies/1.2.826.0.1.1")).await;
    let boundary = format!("--{}\r\n", ct.split("boundary=").nth(1).expect("boundary"));
    let parts = body
        .windows(boundary.len())
        .filter(|w| *w == boundary.as_bytes())
        .count();
    assert_eq!(parts, 3, "three instances in the study");

    let (status, _, body) = call(&app, get(&format!("{base}/metadata"))).await;
    assert_eq!(status, StatusCode::OK);
    let meta = &json(&body)[0];
    assert_eq!(meta["00100010"]["Value"][0]["Alphabetic"], "Doe^John");
    assert_eq!(meta["00280010"]["Value"][0], 128);
    assert!(meta["7FE00010"]["BulkDataURI"]
        .as_str()
        .expect("uri")
        .ends_with("/frames/1"));
    let (_, _, body) = call(&app, get("/studies/1.2.826.0.1.1/metadata")).await;
    assert_eq!(json(&body).as_array().expect("arr").len(), 3);

    let (status, ct, body) = call(&app, get(&format!("{base}/frames/1"))).await;
    assert_eq!(status, StatusCode::OK);
    assert!(ct.contains("application/octet-stream"));
    assert!(body.len() > 128 * 128 * 2);
    assert_eq!(
        call(&app, get(&format!("{base}/frames/2"))).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        call(&app, get(&format!("{base}/frames/0"))).await.0,
        StatusCode::BAD_REQUEST
    );

    let req = Request::get(format!("{base}/rendered?window=40,400"))
        .header("accept", "image/png")
        .body(Body::empty())
        .expect("req");
    let (status, ct, png) = call(&app, req).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/png"));
    assert_eq!(&png[1..4], b"PNG");
    let (status, ct, jpeg) = call(&app, get(&format!("{base}/frames/1/rendered"))).await;
    assert_eq!((status, ct.as_str()), (StatusCode::OK, "image/jpeg"));
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    assert_eq!(
        call(&app, get(&format!("{base}/rendered?window=abc")))
            .await
            .0,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        call(&app, get("/studies/9.9.9")).await.0,
        StatusCode::NOT_FOUND
    );
    let actions: Vec<AccessAction> = seen
        .0
        .lock()
        .expect("lock")
        .iter()
        .map(|(a, _)| *a)
        .collect();
    assert!(actions.contains(&AccessAction::Metadata));
    assert!(actions.contains(&AccessAction::Pixels));
    assert!(actions.contains(&AccessAction::Retrieve));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dicomweb_client_black_box() {
    if std::env::var("CARAVAN_TEST_DICOMWEB").ok().as_deref() != Some("1") {
        eprintln!("skipped: set CARAVAN_TEST_DICOMWEB=1 (pip install dicomweb-client pydicom) to run the Python dicomweb-client against the router");
        return;
    }
    let archive = Archive::in_memory().await.expect("archive");
    let app = axum::Router::new().nest("/dicomweb", router(DicomWebState::new(archive.clone())));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let work = tempfile::tempdir().expect("tmp");
    for (i, bytes) in common::corpus().iter().enumerate() {
        std::fs::write(work.path().join(format!("{i}.dcm")), bytes).expect("write");
    }
    let python = std::env::var("CARAVAN_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = format!(
        "{}/tests/dicomweb_client_check.py",
        env!("CARGO_MANIFEST_DIR")
    );
    let url = format!("http://127.0.0.1:{port}/dicomweb");
    let dir = work.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .arg(script)
            .arg(url)
            .arg(dir)
            .output()
    })
    .await
    .expect("join")
    .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    eprintln!("{stdout}");
    assert!(
        output.status.success(),
        "dicomweb-client check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("checks passed"));
    assert_eq!(archive.count_instances().await.expect("count"), 5);
}
