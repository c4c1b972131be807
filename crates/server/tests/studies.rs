//! DICOM studies in consultations across two real nodes: a study uploaded on the case page (a zip) at Kashgar
//! travels with the case to the national center, de-identified (the patient did not consent to sharing their
//! identity), as a chunked transfer that a proxy in front of Kashgar interrupts (a truncated chunk, then dropped
//! connections) and that resumes where it stopped once the network is back. Also: the case-scoped viewer, its
//! scoping, and the ECG view of an attachment.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_server::network::{self, DemoNode, LocalNode, Pace};
use caravan_server::NodeConfig;
use common::{Client, Node};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn fixture(path: &str) -> Vec<u8> {
    std::fs::read(format!("{}/../{path}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

/// An HTTP/1.1 proxy in front of a node that can interrupt study transfers: it passes `allow` transfer
/// requests, truncates the next response halfway, then drops transfer requests until released.
struct Proxy {
    upstream: String,
    allow: usize,
    released: AtomicBool,
    transfer_requests: AtomicUsize,
    interrupted: AtomicUsize,
    /// `Range` headers of the transfer requests answered in full.
    served: Mutex<Vec<String>>,
}

impl Proxy {
    async fn start(upstream: String, allow: usize) -> (Arc<Proxy>, String) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let p = Arc::new(Proxy {
            upstream,
            allow,
            released: AtomicBool::new(false),
            transfer_requests: AtomicUsize::new(0),
            interrupted: AtomicUsize::new(0),
            served: Mutex::new(Vec::new()),
        });
        let q = p.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let q = q.clone();
                tokio::spawn(async move {
                    let _ = q.connection(sock).await;
                });
            }
        });
        (p, addr)
    }

    async fn connection(&self, mut client: TcpStream) -> std::io::Result<()> {
        let mut buf = Vec::new();
        // One request per connection (it is forwarded with `Connection: close`).
        {
            // The head, then Content-Length bytes of body.
            let head_end = loop {
                if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break i + 4;
                }
                let mut chunk = [0u8; 8192];
                let n = client.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            };
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buf.len() < head_end + len {
                let mut chunk = [0u8; 8192];
                let n = client.read(&mut chunk).await?;
                if n == 0 {
                    return Ok(());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let request: Vec<u8> = buf.drain(..head_end + len).collect();
            let is_transfer = head.contains("/federation/v1/transfers/");
            let range = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("range")
                        .then(|| v.trim().to_string())
                })
                .unwrap_or_default();
            let mut action = 0; // 0 pass, 1 truncate, 2 drop
            if is_transfer && !self.released.load(Ordering::SeqCst) {
                let n = self.transfer_requests.fetch_add(1, Ordering::SeqCst);
                if n == self.allow {
                    action = 1;
                } else if n > self.allow {
                    action = 2;
                }
            }
            if action == 2 {
                self.interrupted.fetch_add(1, Ordering::SeqCst);
                return Ok(());
            }
            // Forward with `Connection: close`, read the whole response.
            let text = String::from_utf8_lossy(&request[..head_end]).to_string();
            let mut lines: Vec<&str> = text
                .split("\r\n")
                .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
                .filter(|l| !l.is_empty())
                .collect();
            lines.push("Connection: close");
            let mut out = lines.join("\r\n").into_bytes();
            out.extend_from_slice(b"\r\n\r\n");
            out.extend_from_slice(&request[head_end..]);
            let mut up = TcpStream::connect(&self.upstream).await?;
            up.write_all(&out).await?;
            let mut response = Vec::new();
            up.read_to_end(&mut response).await?;
            if action == 1 {
                self.interrupted.fetch_add(1, Ordering::SeqCst);
                client.write_all(&response[..response.len() / 2]).await?;
                return Ok(());
            }
            if is_transfer && response.starts_with(b"HTTP/1.1 206") {
                self.served.lock().unwrap().push(range);
            }
            client.write_all(&response).await?;
            // The upstream answered `Connection: close`; so does this connection.
        }
        Ok(())
    }
}

struct Net {
    nodes: Vec<LocalNode>,
    _dir: tempfile::TempDir,
}

impl Net {
    fn node(&self, n: DemoNode) -> &LocalNode {
        self.nodes.iter().find(|x| x.node == n).unwrap()
    }
    async fn login(&self, n: DemoNode, user: &str) -> Client {
        let node = Node {
            base: self.node(n).base.clone(),
            dir: tempfile::tempdir().unwrap(),
        };
        Client::login(&node, user).await
    }
}

/// The demo network with Kashgar published behind `proxy`, every node with its DICOM archive.
async fn start(allow: usize) -> (Net, Arc<Proxy>) {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    let mut bases = Vec::new();
    let mut proxy = None;
    for n in DemoNode::ALL {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap().to_string();
        if n == DemoNode::Kashgar {
            let (p, url) = Proxy::start(addr, allow).await;
            bases.push(url);
            proxy = Some(p);
        } else {
            bases.push(format!("http://{addr}"));
        }
        listeners.push(l);
    }
    let config = NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    };
    let nodes = network::start_demo_published(
        dir.path(),
        listeners,
        bases,
        config,
        Pace::TEST,
        axum::Router::new,
    )
    .await
    .unwrap();
    for n in &nodes {
        let archive = imaging::Archive::open_folder(&dir.path().join(n.node.id()).join("dicom"))
            .await
            .unwrap();
        n.state.attach_imaging(archive);
    }
    let net = Net { nodes, _dir: dir };
    network::wait_for_catalogue(
        net.node(DemoNode::Kashgar),
        DemoNode::Center,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    (net, proxy.unwrap())
}

async fn until<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn page(c: &Client, path: &str) -> (StatusCode, String) {
    let r = c
        .http
        .get(format!("{}{path}", c.base))
        .send()
        .await
        .unwrap();
    (r.status(), r.text().await.unwrap())
}

/// The first part of a multipart/related body.
fn first_part(body: &[u8]) -> Vec<u8> {
    let start = body.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    // The single part ends where the closing delimiter starts.
    let end = body.windows(4).rposition(|w| w == b"\r\n--").unwrap();
    body[start..end].to_vec()
}

async fn frame(c: &Client, base: &str) -> Vec<u8> {
    let r = c
        .http
        .get(format!("{}{base}/frames/1", c.base))
        .header(
            "accept",
            "multipart/related; type=\"application/octet-stream\"",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    first_part(&r.bytes().await.unwrap())
}

async fn metadata(c: &Client, case: &str, study: &str) -> Vec<Value> {
    let (s, v) = c
        .get(&format!(
            "/ui/consultations/{case}/dicomweb/studies/{study}/metadata"
        ))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v.as_array().unwrap().clone()
}

fn tag(v: &Value, t: &str) -> String {
    let x = &v[t]["Value"][0];
    match x {
        Value::String(s) => s.clone(),
        Value::Object(o) => o
            .get("Alphabetic")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_study_travels_with_the_case_deidentified_and_resumes_after_an_interruption() {
    let (net, proxy) = start(3).await;
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let expert = net.login(DemoNode::Center, "cardio.nurlanov").await;

    let (s, v) = wang.get("/api/v1/patients?name=Tursun").await;
    assert_eq!(s, StatusCode::OK);
    let pid = v[0]["id"].as_str().unwrap().to_owned();
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Cardiac MR: myocarditis?", "clinical_summary": "chest pain",
                    "specialty": "cardiology", "urgency": "urgent", "languages": ["en"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();

    // Bad uploads are refused with a reason, and link nothing.
    let upload = |bytes: Vec<u8>| {
        let form = reqwest::multipart::Form::new()
            .text("csrf", wang.csrf.clone())
            .text("share", "1")
            .part(
                "file",
                reqwest::multipart::Part::bytes(bytes).file_name("study.zip"),
            );
        wang.http
            .post(format!(
                "{}/ui/consultations/{cid}/studies/upload",
                wang.base
            ))
            .multipart(form)
            .send()
    };
    let r = upload(b"not dicom at all".to_vec()).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let mut truncated = fixture("imaging/tests/data/pixels/emri_small.dcm");
    truncated.truncate(400);
    let r = upload(truncated).await.unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // A zip of the study (and a README, skipped) uploaded on the case page: stored and linked.
    // The fixture, given the patient's identity as the hospital's PACS would have it.
    let original = {
        use dicom_dictionary_std::tags;
        let mut obj = dicom_object::open_file(format!(
            "{}/../imaging/tests/data/pixels/emri_small.dcm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let put = |obj: &mut dicom_object::DefaultDicomObject, tag, vr, v: &str| {
            obj.put(dicom_core::DataElement::new(
                tag,
                vr,
                dicom_core::PrimitiveValue::from(v),
            ));
        };
        put(
            &mut obj,
            tags::PATIENT_NAME,
            dicom_core::VR::PN,
            "Tursun^Mehmet",
        );
        put(
            &mut obj,
            tags::PATIENT_ID,
            dicom_core::VR::LO,
            "CN-6531-0001",
        );
        put(
            &mut obj,
            tags::PATIENT_BIRTH_DATE,
            dicom_core::VR::DA,
            "19660314",
        );
        put(
            &mut obj,
            tags::INSTITUTION_NAME,
            dicom_core::VR::LO,
            "Kashgar Prefecture Hospital",
        );
        let mut out = Vec::new();
        obj.write_all(&mut out).unwrap();
        out
    };
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    zip.start_file("README.txt", opts).unwrap();
    zip.write_all(b"exported by the PACS").unwrap();
    zip.start_file("IMG/0001.dcm", opts).unwrap();
    zip.write_all(&original).unwrap();
    let zipped = zip.finish().unwrap().into_inner();
    let r = upload(zipped).await.unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let (_, html) = page(&wang, &format!("/ui/consultations/{cid}")).await;
    let marker = format!("/ui/consultations/{cid}/studies/");
    let at = html.find(&marker).expect("the case page links the study");
    let home_uid: String = html[at + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let home_meta = metadata(&wang, &cid, &home_uid).await;
    assert_eq!(home_meta.len(), 1);
    let original_name = tag(&home_meta[0], "00100010");
    assert!(!original_name.is_empty());

    // The viewer page works without JavaScript: series with rendered thumbnails from the case's DICOMweb.
    let (s, viewer) = page(
        &wang,
        &format!("/ui/consultations/{cid}/studies/{home_uid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(viewer.contains("/rendered?quality=80") && viewer.contains("/static/viewer.js"));
    let series = tag(&home_meta[0], "0020000E");
    let sop = tag(&home_meta[0], "00080018");
    let thumb = format!("/ui/consultations/{cid}/dicomweb/studies/{home_uid}/series/{series}/instances/{sop}/rendered");
    let r = wang
        .http
        .get(format!("{}{thumb}", wang.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    // Read-only, and only the case's studies.
    let (s, _) = wang
        .send(
            reqwest::Method::POST,
            &format!("/ui/consultations/{cid}/dicomweb/studies/{home_uid}"),
            None,
        )
        .await;
    assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED);
    let (s, _) = wang
        .get(&format!(
            "/ui/consultations/{cid}/dicomweb/studies/1.2.3.4/metadata"
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Submit: routed to the center's cardiologist, the packet carries the study's manifest.
    let ev = format!("/api/v1/consultations/{cid}/events");
    let (s, c) = wang.post(&ev, json!({ "type": "submit" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "assigned", "{c}");
    let mirror = until("the mirror case", async || {
        let (_, v) = expert.get("/api/v1/consultations").await;
        v.as_array()?.first()?["consultation"]["id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let center = net.node(DemoNode::Center).state.clone();
    let cid_m: caravan_domain::ConsultationId = mirror.parse().unwrap();
    let pending = || async {
        center
            .store()
            .fed_pending_studies(10)
            .await
            .unwrap()
            .into_iter()
            .find(|s| s.consultation_id == cid_m)
    };
    // The transfer starts, three chunks pass, the fourth is cut halfway, the rest are dropped.
    let study = until("an interrupted transfer", async || {
        let s = pending().await?;
        (proxy.interrupted.load(Ordering::SeqCst) >= 3 && s.detail.starts_with("3/")).then_some(s)
    })
    .await;
    let manifest: Value = serde_json::from_str(study.transfer.as_deref().unwrap()).unwrap();
    let chunks = manifest["chunks"].as_array().unwrap().len();
    assert!(chunks > 4, "the study spans several chunks ({chunks})");
    assert_eq!(manifest["deidentified"], true);
    assert_ne!(study.study_uid, home_uid, "the study UID is remapped");
    let (_, html) = page(&expert, &format!("/ui/consultations/{mirror}")).await;
    assert!(
        html.contains(&format!("3/{chunks}")),
        "the case page shows the progress"
    );

    // The network is back: the transfer resumes at chunk 3 and completes; no chunk is fetched twice.
    proxy.released.store(true, Ordering::SeqCst);
    until("the study to arrive", async || {
        pending().await.is_none().then_some(())
    })
    .await;
    let linked = center
        .store()
        .list_case_studies(
            &caravan_domain::Actor::from(
                &center
                    .store()
                    .get_user(expert.id().parse().unwrap())
                    .await
                    .unwrap(),
            ),
            cid_m,
        )
        .await
        .unwrap();
    assert_eq!(linked.len(), 1);
    assert_eq!(
        linked[0].state,
        caravan_store::StudyState::Ready,
        "{:?}",
        linked[0].detail
    );
    let served = proxy.served.lock().unwrap().clone();
    let mut unique = served.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), chunks, "every chunk arrived: {served:?}");
    assert_eq!(
        served.len(),
        chunks,
        "no chunk was fetched twice: {served:?}"
    );

    // At the center: de-identified (PS3.15), the same pixels.
    let uid = &linked[0].study_uid;
    let meta = metadata(&expert, &mirror, uid).await;
    assert_eq!(meta.len(), 1);
    let (_, view) = expert.get(&format!("/api/v1/consultations/{mirror}")).await;
    let pseudonym = view["patient"]["family_name"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("p-"));
    assert_eq!(tag(&meta[0], "00100010"), pseudonym);
    assert_eq!(tag(&meta[0], "00100020"), pseudonym);
    assert_eq!(tag(&meta[0], "00120062"), "YES");
    assert_eq!(tag(&meta[0], "0020000D"), *uid);
    assert_ne!(tag(&meta[0], "00080018"), sop);
    let text = Value::Array(meta.clone()).to_string();
    for secret in ["Tursun", "CN-6531-0001", "19660314", "Kashgar Prefecture"] {
        assert!(!text.contains(secret), "{secret} crossed the border");
    }
    assert_eq!(original_name, "Tursun^Mehmet");
    let there = format!(
        "/ui/consultations/{mirror}/dicomweb/studies/{uid}/series/{}/instances/{}",
        tag(&meta[0], "0020000E"),
        tag(&meta[0], "00080018")
    );
    let here = format!(
        "/ui/consultations/{cid}/dicomweb/studies/{home_uid}/series/{series}/instances/{sop}"
    );
    assert_eq!(
        frame(&expert, &there).await,
        frame(&wang, &here).await,
        "pixels are unchanged"
    );

    let (s, html) = page(
        &expert,
        &format!("/ui/consultations/{mirror}/studies/{uid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(html.contains("series-item"));

    // Scoping: a colleague of the expert who is not on the case sees nothing; an administrator is refused.
    let petrova = net.login(DemoNode::Center, "pulm.petrova").await;
    let (s, _) = petrova
        .get(&format!(
            "/ui/consultations/{mirror}/dicomweb/studies/{uid}/metadata"
        ))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = page(
        &petrova,
        &format!("/ui/consultations/{mirror}/studies/{uid}"),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    // Audit: the export says de-identified in the home patient's log; the center recorded the arrival.
    let home = net.node(DemoNode::Kashgar).state.clone();
    let log = home
        .store()
        .audit_for_patient(pid.parse().unwrap(), 100)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|r| r.event.detail.contains("1 DICOM stud(ies) de-identified")),
        "{:?}",
        log.iter().map(|r| &r.event.detail).collect::<Vec<_>>()
    );
    let c = center.store().fed_consultation(cid_m).await.unwrap();
    let log = center
        .store()
        .audit_for_patient(c.patient_id, 100)
        .await
        .unwrap();
    assert!(log
        .iter()
        .any(|r| r.event.detail.starts_with("study received from kashgar-cn")));
    assert!(log.iter().any(|r| r.event.detail == "viewer"));

    // The center confirmed the study: Kashgar removed the bundle it kept for the transfer (audited).
    let transfer = manifest["id"].as_str().unwrap().to_owned();
    let bundle = format!("transfers/{}/{transfer}", DemoNode::Center.id());
    until("the confirmed bundle to be removed", async || {
        home.blobs()
            .size(&bundle)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    let audit = home.store().audit_page(0, 100_000).await.unwrap();
    assert!(audit.iter().any(|r| r.event.entity_type == "study-transfer"
        && r.event.entity_id == transfer
        && r.event
            .detail
            .starts_with("bundle removed: center-kz confirmed")));
    // A bundle no receiver confirmed stays for the packet's retention, then expires.
    let stale = format!(
        "transfers/{}/{}",
        DemoNode::Center.id(),
        uuid::Uuid::new_v4()
    );
    home.blobs()
        .put(&stale, bytes::Bytes::from_static(b"unfetched"))
        .await
        .unwrap();
    let now = chrono::Utc::now();
    caravan_server::federation::retention_sweep(&home, now)
        .await
        .unwrap();
    assert!(home.blobs().size(&stale).await.unwrap().is_some());
    caravan_server::federation::retention_sweep(&home, now + chrono::Duration::days(91))
        .await
        .unwrap();
    assert!(home.blobs().size(&stale).await.unwrap().is_none());

    // The archive's own DICOMweb at the center shows the received study, and its files are on disk.
    let archive = center.imaging().unwrap().archive().clone();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dicomweb = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        axum::serve(
            listener,
            imaging::dicomweb::router(imaging::dicomweb::DicomWebState::new(archive)),
        )
        .await
        .unwrap();
    });
    let http = reqwest::Client::new();
    let qido = |http: reqwest::Client, url: String| async move {
        let r = http.get(url).send().await.unwrap();
        let status = r.status();
        let body = r.text().await.unwrap_or_default();
        (status, body)
    };
    let (s, found) = qido(
        http.clone(),
        format!("{dicomweb}/studies?StudyInstanceUID={uid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(found.contains(uid.as_str()), "{found}");
    let (s, _) = qido(http.clone(), format!("{dicomweb}/studies/{uid}/metadata")).await;
    assert_eq!(s, StatusCode::OK);
    let on_disk = net
        ._dir
        .path()
        .join(DemoNode::Center.id())
        .join("dicom/objects")
        .join(uid);
    assert!(on_disk.is_dir(), "{}", on_disk.display());

    // The mirror case's retention ends: the study that came with it (linked to no other case, every instance
    // stored by the transfer) goes with it, from the index and from the disk; the home node keeps its own.
    let purged =
        caravan_server::federation::retention_sweep(&center, now + chrono::Duration::days(400))
            .await
            .unwrap();
    assert!(purged >= 1);
    assert!(center.store().fed_consultation(cid_m).await.is_err());
    let (s, found) = qido(
        http.clone(),
        format!("{dicomweb}/studies?StudyInstanceUID={uid}"),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    assert!(!found.contains(uid.as_str()), "{found}");
    let (s, _) = qido(http.clone(), format!("{dicomweb}/studies/{uid}/metadata")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(!on_disk.exists(), "the study's files are removed");
    assert!(center
        .imaging()
        .unwrap()
        .archive()
        .instances(uid, None, None)
        .await
        .unwrap()
        .is_empty());
    let audit = center.store().audit_page(0, 100_000).await.unwrap();
    assert!(
        audit.iter().any(|r| r.event.entity_type == "dicom-study"
            && r.event.entity_id == *uid
            && r.event.detail
                == "removed from the archive at the end of the retention (1 instance(s))"),
        "the removal is audited"
    );
    assert_eq!(metadata(&wang, &cid, &home_uid).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ecg_attachment_is_drawn_on_paper_with_its_measurements() {
    let node = common::start().await;
    let wang = Client::login(&node, "dr.aliyev").await;
    let (s, v) = wang.get("/api/v1/patients").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pid = v[0]["id"].as_str().unwrap().to_owned();
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Palpitations", "clinical_summary": "ECG attached",
                    "specialty": "cardiology", "urgency": "routine", "languages": ["ru"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap();
    let (s, att) = wang
        .upload(
            cid,
            "ecg.dcm",
            "application/dicom",
            fixture("ecg/tests/data/dicom/waveform_ecg.dcm"),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{att}");
    let aid = att["id"].as_str().unwrap();
    let (s, html) = page(&wang, &format!("/ui/consultations/{cid}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(
        html.contains(&format!("/ui/attachments/{aid}/ecg.svg")),
        "the case page shows the ECG"
    );
    let (s, html) = page(&wang, &format!("/ui/attachments/{aid}/ecg")).await;
    assert_eq!(s, StatusCode::OK, "{html}");
    assert!(html.contains("<svg") && html.contains("25 mm/s"));
    // dr.aliyev reads Russian.
    assert!(
        html.contains("ЧСС") && html.contains("QTc (Базетт)"),
        "measurements shown: {}",
        &html[html.find("ecg-measurements").unwrap_or(0)..]
    );
    let r = wang
        .http
        .get(format!("{}/ui/attachments/{aid}/ecg.svg", wang.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "image/svg+xml");
    // A PDF is not an ECG: a clear refusal, not a 500.
    let (s, pdf) = wang
        .upload(
            cid,
            "x.pdf",
            "application/pdf",
            b"%PDF-1.4\n%%EOF\n".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, _) = page(
        &wang,
        &format!("/ui/attachments/{}/ecg", pdf["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_study_many_fetch_ranges_long_arrives_instance_by_instance() {
    use dicom_dictionary_std::tags;
    // No interruption this time.
    let (net, proxy) = start(usize::MAX).await;
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let expert = net.login(DemoNode::Center, "cardio.nurlanov").await;
    let (_, v) = wang.get("/api/v1/patients?name=Tursun").await;
    let pid = v[0]["id"].as_str().unwrap().to_owned();
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Cardiac MR series", "specialty": "cardiology",
                    "urgency": "urgent", "languages": ["en"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();

    // Eight instances of one series with random pixels (the bundle does not compress): each spans many fetch
    // ranges of the test pace's 4 KiB chunks, and chunk boundaries fall inside instances.
    let mut seed = 3u64;
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let mut sizes = Vec::new();
    for i in 0..8u32 {
        let mut obj = dicom_object::open_file(format!(
            "{}/../imaging/tests/data/pixels/emri_small.dcm",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let len = obj
            .element(tags::PIXEL_DATA)
            .unwrap()
            .value()
            .to_bytes()
            .unwrap()
            .len();
        let pixels: Vec<u8> = (0..len)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                (seed >> 56) as u8
            })
            .collect();
        obj.put(dicom_core::DataElement::new(
            tags::PIXEL_DATA,
            dicom_core::VR::OW,
            dicom_core::PrimitiveValue::U8(pixels.into()),
        ));
        let uid = format!("2.25.98765432101234567890{i}");
        obj.put(dicom_core::DataElement::new(
            tags::SOP_INSTANCE_UID,
            dicom_core::VR::UI,
            dicom_core::PrimitiveValue::from(uid.as_str()),
        ));
        obj.put(dicom_core::DataElement::new(
            tags::INSTANCE_NUMBER,
            dicom_core::VR::IS,
            dicom_core::PrimitiveValue::from((i + 1).to_string()),
        ));
        obj.update_meta(|m| m.media_storage_sop_instance_uid = uid.clone());
        let mut out = Vec::new();
        obj.write_all(&mut out).unwrap();
        sizes.push(out.len());
        zip.start_file(
            format!("IMG/{i:04}.dcm"),
            zip::write::SimpleFileOptions::default(),
        )
        .unwrap();
        zip.write_all(&out).unwrap();
    }
    assert!(sizes.iter().all(|&s| s > 16 * 4096), "{sizes:?}");
    let form = reqwest::multipart::Form::new()
        .text("csrf", wang.csrf.clone())
        .text("share", "1")
        .part(
            "file",
            reqwest::multipart::Part::bytes(zip.finish().unwrap().into_inner())
                .file_name("series.zip"),
        );
    let r = wang
        .http
        .post(format!(
            "{}/ui/consultations/{cid}/studies/upload",
            wang.base
        ))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        StatusCode::SEE_OTHER,
        "{}",
        r.text().await.unwrap()
    );
    let (_, html) = page(&wang, &format!("/ui/consultations/{cid}")).await;
    let marker = format!("/ui/consultations/{cid}/studies/");
    let at = html.find(&marker).expect("the case page links the study");
    let home_uid: String = html[at + marker.len()..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let home_meta = metadata(&wang, &cid, &home_uid).await;
    assert_eq!(home_meta.len(), 8);

    let (s, c) = wang
        .post(
            &format!("/api/v1/consultations/{cid}/events"),
            json!({ "type": "submit" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let mirror = until("the mirror case", async || {
        let (_, v) = expert.get("/api/v1/consultations").await;
        v.as_array()?.first()?["consultation"]["id"]
            .as_str()
            .map(str::to_owned)
    })
    .await;
    let center = net.node(DemoNode::Center).state.clone();
    let cid_m: caravan_domain::ConsultationId = mirror.parse().unwrap();
    let actor = caravan_domain::Actor::from(
        &center
            .store()
            .get_user(expert.id().parse().unwrap())
            .await
            .unwrap(),
    );
    let linked = until("the study to arrive", async || {
        let l = center.store().list_case_studies(&actor, cid_m).await.ok()?;
        l.into_iter()
            .find(|s| s.state != caravan_store::StudyState::Pending)
    })
    .await;
    assert_eq!(
        linked.state,
        caravan_store::StudyState::Ready,
        "{:?}",
        linked.detail
    );
    assert_eq!(linked.instances, 8);
    // Many ranges, each fetched once.
    let served = proxy.served.lock().unwrap().clone();
    assert!(served.len() > 8 * 16, "{} ranges", served.len());
    let mut unique = served.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), served.len(), "no range was fetched twice");

    // Every instance arrived whole: the same pixels, frame by frame, matched by instance number.
    let meta = metadata(&expert, &mirror, &linked.study_uid).await;
    assert_eq!(meta.len(), 8);
    let frames = async |c: &Client, case: &str, study: &str, meta: &[Value]| {
        let mut out = std::collections::BTreeMap::new();
        for m in meta {
            let base = format!(
                "/ui/consultations/{case}/dicomweb/studies/{study}/series/{}/instances/{}",
                tag(m, "0020000E"),
                tag(m, "00080018")
            );
            out.insert(tag(m, "00200013"), frame(c, &base).await);
        }
        out
    };
    let there = frames(&expert, &mirror, &linked.study_uid, &meta).await;
    let here = frames(&wang, &cid, &home_uid, &home_meta).await;
    assert_eq!(there.len(), 8);
    assert!(there == here, "the pixels of every instance are unchanged");
}
