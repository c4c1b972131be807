//! Privacy of the node's certificate verifier: every log event at every level is captured while certificates are
//! verified (API, page, photo upload) and issued, and none names the holder, their date of birth or the
//! certificate; verifying stores nothing (no audit event, no file). Its own test binary, because the capturing
//! subscriber is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]
mod common;
use common::*;
use reqwest::StatusCode;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Every file under `dir` with its size and modification time.
fn snapshot(dir: &Path) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = vec![];
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else {
                out.push((e.path(), m.len(), m.modified().unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn verifying_logs_and_stores_nothing_about_the_holder() {
    let captured = Captured::default();
    let writer = captured.clone();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish(),
    )
    .unwrap();

    let node = start().await;
    let clinician = Client::login(&node, "dr.aliyev").await;
    let officer = Client::login(&node, "officer").await;
    let admin = Client::login(&node, "admin").await;

    // A certificate issued now, for a holder whose name and birth date appear nowhere else.
    let (s, issued) = clinician
        .post(
            "/api/v1/certs/issue",
            json!({
                "kind": "vaccination",
                "person": { "family_name": "Zhanibekova", "given_name": "Saltanat", "dob": "1991-07-23" },
                "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2, "dt": "2026-01-10" },
            }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let hc1 = issued["text"].as_str().unwrap().to_owned();
    let (s, card) = clinician
        .post(
            "/api/v1/certs/issue",
            json!({ "kind": "shc", "person": { "family_name": "Zhanibekova", "given_name": "Saltanat", "dob": "1991-07-23" },
                    "immunization": { "cvx": "208", "date": "2026-01-10" } }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let shc = card["text"].as_str().unwrap().to_owned();
    assert!(
        captured.text().contains("health certificate issued"),
        "the capture works: issuing leaves one line without the holder"
    );

    let (_, chain) = admin.get("/api/v1/audit/verify").await;
    let events_before = chain["events"].as_u64().unwrap();
    let data_before = snapshot(&node.dir.path().join("certs"));

    // Verify: valid, with rules, the SHC, a photo of the QR code through the page, and broken input.
    let png = certs::qr::render_png(&hc1, 4).unwrap();
    for (c, body) in [
        (&officer, json!({ "text": hc1 })),
        (&officer, json!({ "text": hc1, "country": "DE" })),
        (&clinician, json!({ "text": shc })),
        (&officer, json!({ "text": &hc1[..hc1.len() - 5] })),
    ] {
        let (s, v) = c.post("/api/v1/certs/verify", body).await;
        assert_eq!(s, StatusCode::OK, "{v}");
    }
    let form = reqwest::multipart::Form::new()
        .text("csrf", officer.csrf.clone())
        .text("text", "")
        .part(
            "image",
            reqwest::multipart::Part::bytes(png)
                .file_name("qr.png")
                .mime_str("image/png")
                .unwrap(),
        );
    let r = officer
        .http
        .post(format!("{}/ui/certs/verify", node.base))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let html = r.text().await.unwrap();
    assert!(
        html.contains(r#"data-status="green""#),
        "the photo was read"
    );
    assert!(html.contains("Zhanibekova"));

    let logs = captured.text();
    for secret in [
        "Zhanibekova",
        "ZHANIBEKOVA",
        "Saltanat",
        "1991-07-23",
        &hc1[4..40],
        &shc[5..40],
        issued["id"].as_str().unwrap(),
        "EU/1/20/1528",
    ] {
        assert!(!logs.contains(secret), "the log names {secret:?}:\n{logs}");
    }
    // Nothing was stored by verifying: no audit event, no file.
    let (_, chain) = admin.get("/api/v1/audit/verify").await;
    assert_eq!(chain["events"].as_u64().unwrap(), events_before);
    assert_eq!(snapshot(&node.dir.path().join("certs")), data_before);
}

/// The node's certificate code has no network client at all; the `certs` crate's own test
/// (`crates/certs/tests/privacy_cli.rs`) checks the same of the library and that verification opens no socket.
#[test]
fn the_certificate_module_has_no_network_code() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/certs_web");
    let mut checked = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let src = std::fs::read_to_string(&path).unwrap();
        for needle in [
            "reqwest",
            "TcpStream",
            "UdpSocket",
            "ToSocketAddrs",
            "hyper::client",
            "fetch(",
            "XMLHttpRequest",
            "sendBeacon",
            "WebSocket",
        ] {
            assert!(!src.contains(needle), "{} uses {needle}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 5);
}
