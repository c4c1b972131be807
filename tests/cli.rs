//! Black-box tests of the real `caravan` binary: token creation, audit verification and tampering, and a node
//! killed with SIGKILL in the middle of a burst of writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_caravan");

struct Running {
    child: Child,
    base: String,
    /// The DICOM SCP's address, when started with `--dicom-listen`.
    dicom: Option<String>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `caravan <mode> --listen 127.0.0.1:0 --data DIR` and wait for its URL.
fn start(mode: &str, data: &Path) -> Running {
    start_with(mode, data, &[])
}

fn start_with(mode: &str, data: &Path, extra: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args([mode, "--listen", "127.0.0.1:0", "--data"])
        .arg(data)
        .arg("--insecure-cookies")
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start caravan");
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut dicom = None;
    let base = loop {
        let line = lines
            .next()
            .expect("caravan exited before listening")
            .unwrap();
        if let Some(rest) = line.strip_prefix("DICOM SCP CARAVAN listening on ") {
            dicom = Some(rest.trim().to_owned());
        }
        if let Some(rest) = line.strip_prefix("Caravan node listening on ") {
            break rest.trim_end_matches('/').to_owned();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, base, dicom }
}

fn caravan(args: &[&str], data: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .arg("--data")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[tokio::test]
async fn token_create_and_audit_verify_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let node = start("demo", dir.path());
    let out = caravan(
        &["token", "create", "--user", "coordinator", "--name", "ci"],
        dir.path(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(token.len() >= 40);
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/me", node.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.unwrap();
    assert_eq!(me["user"]["username"], "coordinator");
    // A list: one audit event naming the cases it returned, indexed under each of their patients.
    let r = reqwest::Client::new()
        .get(format!("{}/api/v1/consultations", node.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let out = caravan(&["token", "create", "--user", "nobody"], dir.path());
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nobody"));
    drop(node);

    let out = caravan(&["audit", "verify"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("intact"));

    // Hide a list from a patient's access log by re-pointing its index row: found, though no record changed.
    let url = format!("sqlite://{}", dir.path().join("caravan.sqlite").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let (patient, seq): (String, i64) =
        sqlx::query_as("SELECT patient_id, seq FROM audit_subjects ORDER BY seq DESC LIMIT 1")
            .fetch_one(&pool)
            .await
            .unwrap();
    let repoint = |from: &str, to: &str| {
        sqlx::query("UPDATE audit_subjects SET patient_id = ?1 WHERE patient_id = ?2 AND seq = ?3")
            .bind(to.to_owned())
            .bind(from.to_owned())
            .bind(seq)
    };
    let elsewhere = "00000000-0000-0000-0000-000000000000";
    repoint(&patient, elsewhere).execute(&pool).await.unwrap();
    let out = caravan(&["audit", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("event {seq}")) && err.contains("access log"),
        "{err}"
    );
    repoint(elsewhere, &patient).execute(&pool).await.unwrap();
    let out = caravan(&["audit", "verify"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Tamper with one event behind the node's back.
    sqlx::query("UPDATE audit_events SET actor_name = 'nobody' WHERE seq = 7")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let out = caravan(&["audit", "verify"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("event 7"), "{err}");
}

#[tokio::test]
async fn sigkill_during_a_burst_of_writes_leaves_a_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    let node = start("demo", dir.path());
    let out = caravan(&["token", "create", "--user", "dr.aliyev"], dir.path());
    let token = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    let http = reqwest::Client::new();
    // Eight writers create patients, consent and consultations as fast as they can.
    let mut writers = vec![];
    for w in 0..8 {
        let (http, base, token) = (http.clone(), node.base.clone(), token.clone());
        writers.push(tokio::spawn(async move {
            let mut done = 0u32;
            for i in 0..10_000 {
                let p = http
                    .post(format!("{base}/api/v1/patients"))
                    .bearer_auth(&token)
                    .json(&json!({ "given_name": format!("W{w}"), "family_name": format!("N{i}"), "birth_date": "1980-01-01", "sex": "other" }))
                    .send()
                    .await;
                let Ok(p) = p else { break };
                let Ok(p) = p.json::<Value>().await else { break };
                let pid = p["id"].as_str().unwrap_or_default().to_owned();
                let _ = http.post(format!("{base}/api/v1/patients/{pid}/consents")).bearer_auth(&token).json(&json!({ "scope": "consultation", "granted": true })).send().await;
                let r = http
                    .post(format!("{base}/api/v1/consultations"))
                    .bearer_auth(&token)
                    .json(&json!({ "patient_id": pid, "question": "burst", "specialty": "cardiology", "urgency": "routine", "submit": true }))
                    .send()
                    .await;
                if r.is_err() {
                    break;
                }
                done += 1;
            }
            done
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let pid = node.child.id();
    // SIGKILL: no chance to flush or shut down.
    let status = Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut total = 0;
    for w in writers {
        total += w.await.unwrap();
    }
    assert!(total > 0, "the burst wrote something before the kill");
    drop(node);

    // The audit chain is intact and every stored row has the audit event of its creation (same transaction).
    let out = caravan(&["audit", "verify"], dir.path());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = format!("sqlite://{}", dir.path().join("caravan.sqlite").display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    for (table, etype) in [
        ("patients", "patient"),
        ("consents", "consent"),
        ("consultations", "consultation"),
    ] {
        let orphans: i64 = sqlx::query_scalar(&format!(
            "SELECT COUNT(*) FROM {table} t WHERE NOT EXISTS (SELECT 1 FROM audit_events a WHERE a.entity_type = '{etype}' AND a.entity_id = t.id AND a.action = 'create')"
        ))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(orphans, 0, "{table} rows without their audit event");
    }
    let integrity: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(integrity, "ok");
    pool.close().await;

    // The node restarts on the same data and serves.
    let node = start("serve", dir.path());
    let r = http
        .get(format!("{}/api/v1/consultations?mine=true", node.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let list: Value = r.json().await.unwrap();
    assert!(list.as_array().unwrap().len() >= 5);
}

/// The node's DICOM side: DICOMweb at /dicomweb behind the node's sign-in (clinical roles only), the DIMSE SCP with
/// `--dicom-listen`, one archive behind both, and every access in the node's audit chain.
#[tokio::test]
async fn dicom_scp_and_dicomweb_behind_the_node_sign_in() {
    let dir = tempfile::tempdir().unwrap();
    let node = start_with("demo", dir.path(), &["--dicom-listen", "127.0.0.1:0"]);
    let scp = node.dicom.clone().expect("the SCP address is printed");
    let token = |user: &str| {
        let out = caravan(&["token", "create", "--user", user], dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    };
    let (clinician, admin) = (token("radio.zhang"), token("admin"));
    let http = reqwest::Client::new();
    let studies = format!("{}/dicomweb/studies", node.base);
    assert_eq!(http.get(&studies).send().await.unwrap().status(), 401);
    let r = http.get(&studies).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(r.status(), 403, "an administrator sees no images");

    // C-ECHO and C-STORE over DIMSE, then find the study over DICOMweb as a clinician.
    assert_eq!(
        imaging::dimse::scu::echo(&scp, "TESTSCU", "CARAVAN")
            .await
            .unwrap(),
        0
    );
    let ct = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/CT_small.dcm"
    ))
    .unwrap();
    let statuses = imaging::dimse::scu::store_files(&scp, "TESTSCU", "CARAVAN", &[ct])
        .await
        .unwrap();
    assert_eq!(statuses, vec![0]);
    let r = http
        .get(&studies)
        .bearer_auth(&clinician)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let found: Value = r.json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1, "{found}");
    let study = found[0]["0020000D"]["Value"][0]
        .as_str()
        .unwrap()
        .to_owned();

    // Both accesses are in the node's audit chain, and the chain still verifies.
    let mut seen = false;
    let mut last = vec![];
    for _ in 0..50 {
        let out = caravan(&["audit", "verify"], dir.path());
        assert!(out.status.success());
        let db = dir.path().join("caravan.sqlite");
        let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}?mode=ro", db.display()))
            .await
            .unwrap();
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT actor_name, detail || ' ' || entity_id FROM audit_events WHERE entity_type = 'dicom-study'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        pool.close().await;
        let store = format!("store {study}");
        let query = format!("query {study}");
        if rows
            .iter()
            .any(|(who, what)| who == "dicom:TESTSCU" && *what == store)
            && rows
                .iter()
                .any(|(who, what)| who.contains("Zhang") && *what == query)
        {
            seen = true;
            break;
        }
        last = rows;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(seen, "the store and the query are audited: {last:?}");
}

/// Issue 3's soak as a black box: three node processes, envelopes around the ring, a receiver SIGKILLed and
/// restarted; the tool exits non-zero on any loss or duplicate.
#[test]
fn federation_soak_across_a_killed_receiver_loses_nothing() {
    let out = std::process::Command::new(BIN)
        .args([
            "net",
            "soak",
            "--nodes",
            "3",
            "--messages",
            "300",
            "--kill-receiver",
        ])
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(line["sent"], 300);
    assert_eq!(line["delivered"], 300);
    assert_eq!(line["lost"], 0);
    assert_eq!(line["duplicated"], 0);
    assert_eq!(line["receiver_killed"], true);
}

/// `caravan tls generate` mints a node certificate and prints its directory pin; `caravan tls pin` agrees; the
/// node serves HTTPS with it (`--tls-cert`, `--tls-key`) and no longer speaks plain HTTP on that port.
#[tokio::test]
async fn tls_generate_pin_and_serve_https() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("node.crt");
    let key = dir.path().join("node.key");
    let generate = |force: bool| {
        let mut c = Command::new(BIN);
        c.args([
            "tls",
            "generate",
            "--node-id",
            "node-1",
            "--san",
            "127.0.0.1",
        ])
        .arg("--cert")
        .arg(&cert)
        .arg("--key")
        .arg(&key);
        if force {
            c.arg("--force");
        }
        c.output().unwrap()
    };
    let out = generate(false);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let pin = text
        .lines()
        .find_map(|l| l.strip_prefix("tls_spki_sha256: "))
        .unwrap()
        .trim()
        .to_owned();
    assert_eq!(pin.len(), 43, "{text}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // Not overwritten by accident.
    let again = generate(false);
    assert_eq!(again.status.code(), Some(2));
    let out = Command::new(BIN)
        .args(["tls", "pin"])
        .arg(&cert)
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout).unwrap().starts_with(&pin));

    let node = start_with(
        "serve",
        dir.path(),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    assert!(node.base.starts_with("https://127.0.0.1:"), "{}", node.base);
    let pem = std::fs::read(&cert).unwrap();
    let https = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .build()
        .unwrap();
    let r = https
        .get(format!("{}/healthz", node.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let plain = reqwest::Client::new()
        .get(format!(
            "{}/healthz",
            node.base.replace("https://", "http://")
        ))
        .send()
        .await;
    assert!(plain.is_err(), "plain HTTP answered: {plain:?}");

    // Mutual TLS needs something to trust peers by: a federation directory or a CA bundle.
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(dir.path().join("other"))
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .arg("--federation-mtls")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--federation-mtls needs"),
        "{out:?}"
    );
}
