//! Three real nodes on 127.0.0.1 (a national center in KZ, hospitals in CN and UZ), each with its own SQLite
//! database, exchanging a cross-border consultation over signed HTTP: routing to a foreign expert from the
//! published catalogue, the consent-minimised packet, the report, messages and outcome flowing back, retention,
//! and the refusals of bad requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_federation::envelope::{Envelope, MessageType};
use caravan_federation::httpsig::RequestSigner;
use caravan_federation::keys::{Keyring, NodeKey};
use caravan_federation::NodeId;
use caravan_server::network::{self, DemoNode, LocalNode, Pace};
use caravan_server::NodeConfig;
use common::{Client, Node};
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;
use std::time::Duration;

struct Net {
    nodes: Vec<LocalNode>,
    dir: tempfile::TempDir,
}

impl Net {
    fn node(&self, n: DemoNode) -> &LocalNode {
        self.nodes.iter().find(|x| x.node == n).unwrap()
    }
    fn handle(&self, n: DemoNode) -> Node {
        Node {
            base: self.node(n).base.clone(),
            dir: tempfile::tempdir().unwrap(),
        }
    }
    async fn login(&self, n: DemoNode, user: &str) -> Client {
        Client::login(&self.handle(n), user).await
    }
}

async fn start() -> Net {
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let config = NodeConfig {
        secure_cookies: false,
        ..NodeConfig::default()
    };
    let nodes = network::start_demo(dir.path(), listeners, config, Pace::TEST, axum::Router::new)
        .await
        .unwrap();
    let net = Net { nodes, dir };
    for n in [DemoNode::Kashgar, DemoNode::Samarkand] {
        network::wait_for_catalogue(net.node(n), DemoNode::Center, Duration::from_secs(20))
            .await
            .unwrap();
    }
    net
}

/// Poll `path` with `client` until `pred` holds (at most 20 s).
async fn eventually(client: &Client, path: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (s, v) = client.get(path).await;
        if s == StatusCode::OK && pred(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting on {path}: last {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn patient_id(c: &Client, name: &str) -> String {
    let (s, v) = c.get(&format!("/api/v1/patients?name={name}")).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v[0]["id"].as_str().unwrap().to_owned()
}

/// Every key path of a JSON value (`a`, `a/b`, arrays looked through).
fn key_paths(v: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}/{k}")
                };
                out.insert(p.clone());
                key_paths(x, &p, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                key_paths(x, prefix, out);
            }
        }
        _ => {}
    }
}

/// The bodies of the envelopes of `kind` a node received, parsed.
async fn received(node: &LocalNode, kind: &str) -> Vec<Value> {
    node.state
        .store()
        .fed_inbox(1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.message_type == kind)
        .filter_map(|e| e.envelope)
        .map(|b| serde_json::from_slice::<Value>(&b).unwrap()["body"].clone())
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cross_border_consultation_flows_between_three_nodes() {
    let net = start().await;
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let expert = net.login(DemoNode::Center, "cardio.nurlanov").await;

    // Kashgar has no cardiologist: routing proposes the center's, known from its published catalogue.
    let pid = patient_id(&wang, "Tursun").await;
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Wide-complex tachycardia: VT or SVT with aberrancy?",
                    "clinical_summary": "58 y, palpitations, ECG attached.", "specialty": "cardiology",
                    "urgency": "urgent", "languages": ["zh", "en"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n".to_vec();
    let (s, shared) = wang
        .upload(&cid, "ecg.pdf", "application/pdf", pdf.clone())
        .await;
    assert_eq!(s, StatusCode::CREATED, "{shared}");
    let (s, _) = wang
        .upload(
            &cid,
            "notes.txt",
            "text/plain",
            b"local notes, stay here".to_vec(),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let ev = format!("/api/v1/consultations/{cid}/events");
    let (s, c) = wang
        .post(
            &ev,
            json!({ "type": "share_attachments", "attachments": [shared["id"]] }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let (s, c) = wang.post(&ev, json!({ "type": "submit" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "assigned", "{c}");

    // The packet arrives at the center as a case assigned to the expert, pseudonymised.
    let list = eventually(&expert, "/api/v1/consultations", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let mirror = list[0]["consultation"]["id"].as_str().unwrap().to_owned();
    let (s, view) = expert.get(&format!("/api/v1/consultations/{mirror}")).await;
    assert_eq!(s, StatusCode::OK, "{view}");
    assert_eq!(view["consultation"]["state"], "assigned");
    assert_eq!(
        view["consultation"]["question"],
        "Wide-complex tachycardia: VT or SVT with aberrancy?"
    );
    let patient = &view["patient"];
    assert!(
        patient["family_name"].as_str().unwrap().starts_with("p-"),
        "{patient}"
    );
    assert_eq!(patient["given_name"], "");
    assert_eq!(patient["national_id"], Value::Null);
    assert_eq!(patient["birth_date"], "1966-01-01");
    let atts = view["attachments"].as_array().unwrap();
    assert_eq!(
        atts.len(),
        1,
        "only the selected attachment crosses: {atts:?}"
    );
    assert_eq!(
        expert.download(atts[0]["id"].as_str().unwrap()).await,
        (StatusCode::OK, pdf)
    );

    // Exactly these fields crossed, and no identifying ones.
    let packets = received(net.node(DemoNode::Center), "consult.packet").await;
    assert_eq!(packets.len(), 1);
    let mut keys = BTreeSet::new();
    key_paths(&packets[0], "", &mut keys);
    assert_eq!(
        keys,
        set(&[
            "case",
            "expert",
            "referrer",
            "referrer/id",
            "referrer/name",
            "referrer/specialties",
            "specialty",
            "urgency",
            "question",
            "clinical_summary",
            "languages",
            "due_at",
            "retention_days",
            "patient",
            "patient/pseudonym",
            "patient/sex",
            "patient/birth_year",
            "attachments",
            "attachments/filename",
            "attachments/content_type",
            "attachments/sha256",
            "attachments/data",
        ])
    );
    let text = packets[0].to_string();
    for secret in ["Tursun", "Mehmet", "CN-6531-0001", "1966-03-14"] {
        assert!(!text.contains(secret), "{secret} crossed the border");
    }

    // The expert talks, accepts and reports; each reaches the home node.
    let (s, m) = expert
        .post(
            &format!("/api/v1/consultations/{mirror}/messages"),
            json!({ "body": "Is there a prior ECG in sinus rhythm?" }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    let mev = format!("/api/v1/consultations/{mirror}/events");
    let (s, c) = expert.post(&mev, json!({ "type": "accept" })).await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let home = format!("/api/v1/consultations/{cid}");
    let v = eventually(&wang, &home, |v| {
        v["consultation"]["state"] == "in_progress" && !v["messages"].as_array().unwrap().is_empty()
    })
    .await;
    assert!(v["messages"][0]["author_name"]
        .as_str()
        .unwrap()
        .contains("(center-kz)"));
    let (s, _) = wang
        .post(
            &format!("/api/v1/consultations/{cid}/messages"),
            json!({ "body": "Yes, from 2024: narrow QRS.", "parent_id": v["messages"][0]["id"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let v = eventually(&expert, &format!("/api/v1/consultations/{mirror}"), |v| {
        v["messages"].as_array().unwrap().len() == 2
    })
    .await;
    assert_eq!(v["messages"][1]["parent_id"], v["messages"][0]["id"]);
    // MDT: the lead invites a colleague of the center; the home node's panel shows the invited expert.
    let colleague = net.login(DemoNode::Center, "pulm.petrova").await;
    let (s, c) = expert
        .post(&mev, json!({ "type": "invite", "member": colleague.id() }))
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    eventually(&wang, &home, |v| {
        v["consultation"]["panel"]
            .as_array()
            .is_some_and(|p| p.len() == 2)
    })
    .await;
    let (s, c) = expert
        .post(
            &mev,
            json!({ "type": "report", "findings": "VT morphology (AV dissociation).",
                    "impression": "Ventricular tachycardia.", "recommendations": "Amiodarone; refer for ablation." }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let v = eventually(&wang, &home, |v| v["consultation"]["state"] == "reported").await;
    assert_eq!(
        v["consultation"]["report"]["impression"],
        "Ventricular tachycardia."
    );

    // The referrer closes the loop; the expert's copy follows.
    assert_eq!(
        wang.post(&ev, json!({ "type": "acknowledge" })).await.0,
        StatusCode::OK
    );
    let (s, c) = wang
        .post(
            &ev,
            json!({ "type": "record_outcome", "status": "improved", "note": "Ablated." }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let v = eventually(&expert, &format!("/api/v1/consultations/{mirror}"), |v| {
        v["consultation"]["state"] == "closed"
    })
    .await;
    assert_eq!(v["consultation"]["outcome"]["status"], "improved");

    // Per message type, exactly which fields crossed (and the home node got no patient data back).
    let center = net.node(DemoNode::Center);
    let kashgar = net.node(DemoNode::Kashgar);
    let expect: &[(&LocalNode, &str, &[&str])] = &[
        (
            kashgar,
            "consult.status",
            &["case", "event", "by", "by/id", "by/name", "by/specialties"],
        ),
        (
            kashgar,
            "consult.report",
            &[
                "case",
                "event",
                "by",
                "by/id",
                "by/name",
                "by/specialties",
                "report",
                "report/findings",
                "report/impression",
                "report/recommendations",
            ],
        ),
        (
            kashgar,
            "consult.invite",
            &[
                "case",
                "event",
                "by",
                "by/id",
                "by/name",
                "by/specialties",
                "member",
                "member/id",
                "member/name",
                "member/specialties",
            ],
        ),
        (
            kashgar,
            "consult.message",
            &[
                "case",
                "id",
                "parent",
                "author",
                "author/id",
                "author/name",
                "author/specialties",
                "body",
                "created_at",
            ],
        ),
        (
            center,
            "consult.message",
            &[
                "case",
                "id",
                "parent",
                "author",
                "author/id",
                "author/name",
                "author/specialties",
                "body",
                "created_at",
            ],
        ),
        (center, "catalogue.update", &[]),
    ];
    for (node, kind, fields) in expect {
        let bodies = received(node, kind).await;
        assert!(!bodies.is_empty(), "{} got no {kind}", node.node.id());
        if fields.is_empty() {
            continue;
        }
        for b in bodies {
            let mut keys = BTreeSet::new();
            key_paths(&b, "", &mut keys);
            // Optional members (reason, outcome) appear only with their events.
            keys.retain(|k| !k.starts_with("reason") && !k.starts_with("outcome"));
            assert_eq!(keys, set(fields), "{kind} to {}", node.node.id());
        }
    }
    let statuses = received(center, "consult.status").await;
    let mut keys = BTreeSet::new();
    for b in &statuses {
        key_paths(b, "", &mut keys);
    }
    assert_eq!(
        keys,
        set(&[
            "case",
            "event",
            "by",
            "by/id",
            "by/name",
            "by/specialties",
            "outcome",
            "outcome/status",
            "outcome/note"
        ])
    );

    // The patient's access log at home shows the export and the foreign expert's actions.
    let log = eventually(&wang, &format!("/api/v1/patients/{pid}/access-log"), |v| {
        v.as_array().is_some_and(|a| a.len() > 3)
    })
    .await;
    let entries = log.to_string();
    assert!(entries.contains("case packet to center-kz"), "{entries}");
    assert!(
        entries.contains("Dr Timur Nurlanov (center-kz)"),
        "{entries}"
    );

    // Retention: after the period the sending country set, the center deletes the packet (audited) and keeps
    // no body of the envelopes that carried it; the home case is untouched.
    let purged = caravan_server::federation::retention_sweep(
        &center.state,
        chrono::Utc::now() + chrono::Duration::days(91),
    )
    .await
    .unwrap();
    assert_eq!(purged, 1);
    assert_eq!(
        expert
            .get(&format!("/api/v1/consultations/{mirror}"))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    let inbox = center.state.store().fed_inbox(1000).await.unwrap();
    assert!(inbox
        .iter()
        .filter(|e| e.message_type != "catalogue.update")
        .all(|e| e.envelope.is_none()));
    assert_eq!(wang.get(&home).await.0, StatusCode::OK);
    drop(net.dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn consent_limits_what_crosses_and_a_foreign_decline_reroutes() {
    let net = start().await;
    // No cross-border consent: the coordinator cannot give the case to a foreign expert, and nothing is sent.
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let coord = net.login(DemoNode::Kashgar, "coordinator").await;
    let pid = patient_id(&wang, "Ablimit").await;
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Murmur?", "specialty": "cardiology",
                    "urgency": "routine", "submit": true }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(
        case["state"], "submitted",
        "not routed abroad without consent"
    );
    let cid = case["id"].as_str().unwrap();
    let (s, cands) = coord
        .get(&format!("/api/v1/consultations/{cid}/candidates"))
        .await;
    assert_eq!(s, StatusCode::OK);
    let foreign = cands["consultants"][0]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = net
        .node(DemoNode::Kashgar)
        .state
        .store()
        .fed_counts()
        .await
        .unwrap();
    let (s, e) = coord
        .post(
            &format!("/api/v1/consultations/{cid}/events"),
            json!({ "type": "assign", "consultant": foreign }),
        )
        .await;
    assert_eq!(
        (s, e["error"].as_str()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            Some("error-consent-cross-border")
        ),
        "{e}"
    );
    let after = net
        .node(DemoNode::Kashgar)
        .state
        .store()
        .fed_counts()
        .await
        .unwrap();
    assert_eq!(before, after, "a refused assignment enqueues nothing");
    let (_, v) = wang.get(&format!("/api/v1/consultations/{cid}")).await;
    assert_eq!(v["consultation"]["state"], "submitted");

    // With share_identity the name and national id cross; the foreign expert declines and the case comes
    // back to routing at home (no other pulmonologist: it waits for a coordinator).
    let karimova = net.login(DemoNode::Samarkand, "dr.karimova").await;
    let pid = patient_id(&karimova, "Rakhimov").await;
    let (s, case) = karimova
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Cavitary lesion: TB?", "specialty": "pulmonology",
                    "urgency": "urgent", "submit": true }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    assert_eq!(case["state"], "assigned");
    let cid = case["id"].as_str().unwrap().to_owned();
    let petrova = net.login(DemoNode::Center, "pulm.petrova").await;
    let list = eventually(&petrova, "/api/v1/consultations", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let mirror = list[0]["consultation"]["id"].as_str().unwrap().to_owned();
    let (_, view) = petrova
        .get(&format!("/api/v1/consultations/{mirror}"))
        .await;
    assert_eq!(view["patient"]["given_name"], "Bobur");
    assert_eq!(view["patient"]["family_name"], "Rakhimov");
    assert_eq!(view["patient"]["national_id"], "UZ-1703-0001");
    let (s, c) = petrova
        .post(
            &format!("/api/v1/consultations/{mirror}/events"),
            json!({ "type": "decline", "reason": "on leave" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    let v = eventually(&karimova, &format!("/api/v1/consultations/{cid}"), |v| {
        v["consultation"]["state"] == "submitted"
    })
    .await;
    assert_eq!(
        v["consultation"]["declined_by"].as_array().unwrap().len(),
        1
    );
    // The mirror stayed where it was (the home node routes), and the center did not route it locally.
    let (_, m) = petrova
        .get(&format!("/api/v1/consultations/{mirror}"))
        .await;
    assert_ne!(m["consultation"]["state"], "assigned");
    // Nor may the center's coordinator route or cancel it: that would never reach its home node.
    let center_coord = net.login(DemoNode::Center, "coordinator").await;
    let cardio = net.login(DemoNode::Center, "cardio.nurlanov").await;
    for body in [
        json!({ "type": "assign", "consultant": cardio.id() }),
        json!({ "type": "cancel", "reason": "duplicate" }),
    ] {
        let (s, e) = center_coord
            .post(&format!("/api/v1/consultations/{mirror}/events"), body)
            .await;
        assert_eq!(
            (s, e["error"].as_str()),
            (StatusCode::CONFLICT, Some("error-owned-by-home-node")),
            "{e}"
        );
    }
}

/// Sign `body` as an envelope of `from` and post it to `to`'s inbox with a request signature by `key`.
async fn post_envelope(
    to: &LocalNode,
    from: &str,
    key: &NodeKey,
    kind: MessageType,
    body: Map<String, Value>,
) -> (StatusCode, Value) {
    let env = Envelope::new(
        NodeId::new(from).unwrap(),
        NodeId::new(to.node.id()).unwrap(),
        kind,
        body,
    )
    .sign(key)
    .unwrap();
    post_raw(to, key, env.bytes().to_vec()).await
}

/// The signature headers of a request to `url` with `body`, signed by `key` at `now`.
fn signed(key: &NodeKey, url: &str, body: &[u8], now: i64) -> http::HeaderMap {
    let mut headers = http::HeaderMap::new();
    RequestSigner::new(key.clone())
        .sign("POST", url, &mut headers, body, now)
        .unwrap();
    headers
}

async fn post_raw(to: &LocalNode, key: &NodeKey, bytes: Vec<u8>) -> (StatusCode, Value) {
    let url = format!("{}/federation/v1/inbox", to.base);
    let headers = signed(key, &url, &bytes, chrono::Utc::now().timestamp());
    let mut req = reqwest::Client::new().post(&url).body(bytes);
    for (k, v) in headers.iter() {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await.unwrap();
    let s = r.status();
    (s, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_requests_are_refused_and_change_nothing() {
    let net = start().await;
    let center = net.node(DemoNode::Center);
    let before = center.state.store().fed_counts().await.unwrap();
    let url = format!("{}/federation/v1/inbox", center.base);
    let http = reqwest::Client::new();

    // Unsigned.
    let r = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "unsigned");

    // A node that is not in the directory.
    let stranger = NodeKey::generate();
    let (s, p) = post_envelope(
        center,
        "intruder.example",
        &stranger,
        MessageType::NetPing,
        Map::new(),
    )
    .await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::UNAUTHORIZED, Some("unknown_key")),
        "{p}"
    );

    // A member's own key, replayed: the first copy is stored, the identical request again is refused.
    let ring = Keyring::load(&net.dir.path().join("kashgar-cn/keyring.json")).unwrap();
    let key = ring.active().clone();
    let env = Envelope::new(
        NodeId::new("kashgar-cn").unwrap(),
        NodeId::new("center-kz").unwrap(),
        MessageType::NetPing,
        Map::new(),
    )
    .sign(&key)
    .unwrap();
    let bytes = env.bytes().to_vec();
    let headers = signed(&key, &url, &bytes, chrono::Utc::now().timestamp());
    let send = |body: Vec<u8>| {
        let mut req = http.post(&url).body(body);
        for (k, v) in headers.iter() {
            req = req.header(k.as_str(), v.to_str().unwrap());
        }
        req.send()
    };
    assert_eq!(send(bytes.clone()).await.unwrap().status(), StatusCode::OK);
    let r = send(bytes.clone()).await.unwrap();
    assert_eq!(r.status(), StatusCode::CONFLICT);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "replayed");
    // Signed for another body: the digest does not match.
    let r = send(b"{\"v\":1}".to_vec()).await.unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["code"], "digest_mismatch");

    // Expired signature.
    let old = signed(&key, &url, &bytes, chrono::Utc::now().timestamp() - 3600);
    let mut req = http.post(&url).body(bytes.clone());
    for (k, v) in old.iter() {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.json::<Value>().await.unwrap()["code"],
        "signature_expired"
    );

    // Oversized.
    let (s, p) = post_raw(center, &key, vec![b' '; 9 * 1024 * 1024]).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::PAYLOAD_TOO_LARGE, Some("too_large"))
    );

    // Unknown type: the envelope's type is checked before anything is stored.
    let mut raw: Value = serde_json::from_slice(&bytes).unwrap();
    raw["type"] = json!("consult.teleport");
    let (s, p) = post_raw(center, &key, serde_json::to_vec(&raw).unwrap()).await;
    assert_eq!(s.as_u16() / 100, 4, "{p}");
    assert!(matches!(p["code"].as_str(), Some("unknown_type")), "{p}");

    // A packet naming a case for an expert who does not exist here is stored (it is authentic) but takes no
    // effect, and the sender is told to route again.
    let mut body = Map::new();
    body.insert("case".into(), json!("00000000-0000-0000-0000-000000000000"));
    let (s, p) = post_envelope(center, "kashgar-cn", &key, MessageType::ConsultPacket, body).await;
    assert_eq!(s, StatusCode::OK, "{p}");
    let inbox = center.state.store().fed_inbox(1000).await.unwrap();
    let packet = inbox
        .iter()
        .find(|e| e.message_type == "consult.packet")
        .unwrap();
    assert!(
        packet.outcome.starts_with("ignored: malformed body"),
        "{}",
        packet.outcome
    );

    let after = center.state.store().fed_counts().await.unwrap();
    assert_eq!(
        after.inbox,
        before.inbox + 2,
        "only the authentic ping and packet were stored"
    );
    // No consultation was created at the center by any of this.
    let coord = net.login(DemoNode::Center, "coordinator").await;
    let (_, list) = coord.get("/api/v1/consultations").await;
    assert_eq!(list.as_array().unwrap().len(), 0, "{list}");

    // A directory signed by another anchor is refused when a node starts.
    let files = network::create(
        &net.dir.path().join("other"),
        &[DemoNode::Center.spec("http://127.0.0.1:9".into())],
    )
    .unwrap();
    let mut cfg = files.config(0, "center-kz").unwrap();
    cfg.anchors = vec![NodeKey::generate().verifying_key()];
    let err = caravan_server::federation::Federation::load(cfg)
        .err()
        .unwrap();
    assert!(err.to_string().contains("directory"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_certificates_are_recognised_across_the_network() {
    let net = start().await;
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let pid = patient_id(&wang, "Tursun").await;
    let (s, issued) = wang
        .post(
            "/api/v1/certs/issue",
            json!({ "kind": "vaccination", "patient_id": pid,
                    "v": { "vp": "1119349007", "mp": "EU/1/20/1528", "ma": "ORG-100030215", "dn": 2, "sd": 2,
                           "dt": "2026-01-10" } }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{issued}");
    let hc1 = issued["text"].as_str().unwrap().to_owned();
    // At the center, the Chinese hospital's signing key is not yet known.
    let coord = net.login(DemoNode::Center, "coordinator").await;
    let (s, v) = coord
        .post("/api/v1/certs/verify", json!({ "text": hc1 }))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "red", "{v}");
    // Kashgar publishes its country's keys with its catalogue; the center imports them (CN only).
    caravan_server::federation::publish_catalogue(&net.node(DemoNode::Kashgar).state)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, v) = coord
            .post("/api/v1/certs/verify", json!({ "text": hc1 }))
            .await;
        if v["status"] != "red" {
            assert_eq!(v["holder"]["family_name"], "Tursun", "{v}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never recognised: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let updates = received(net.node(DemoNode::Center), "trust.update").await;
    assert!(updates.iter().all(|b| b["dsc"]
        .as_array()
        .unwrap()
        .iter()
        .all(|d| d["country"] == "CN")));
    // A member cannot vouch for another country's keys: a KZ key sent by Kashgar is ignored.
    let ring = Keyring::load(&net.dir.path().join("kashgar-cn/keyring.json")).unwrap();
    let mut body = Map::new();
    body.insert("country".into(), json!("KZ"));
    body.insert(
        "dsc".into(),
        json!([{ "country": "KZ", "rawData": "AAAA" }]),
    );
    let (s, _) = post_envelope(
        net.node(DemoNode::Center),
        "kashgar-cn",
        ring.active(),
        MessageType::TrustUpdate,
        body,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let inbox = net
        .node(DemoNode::Center)
        .state
        .store()
        .fed_inbox(1000)
        .await
        .unwrap();
    assert!(inbox.iter().any(|e| e.message_type == "trust.update"
        && e.outcome.contains("no signing key of the sender's country")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refused_envelopes_become_dead_letters_an_admin_can_retry() {
    let net = start().await;
    let kashgar = net.node(DemoNode::Kashgar);
    // An envelope addressed to Samarkand but sent to the center: refused for good (`not_for_me`).
    let ring = Keyring::load(&net.dir.path().join("kashgar-cn/keyring.json")).unwrap();
    let env = Envelope::new(
        NodeId::new("kashgar-cn").unwrap(),
        NodeId::new("samarkand-uz").unwrap(),
        MessageType::NetPing,
        Map::new(),
    )
    .sign(ring.active())
    .unwrap();
    let id = env.envelope.id;
    let row = caravan_store::Outgoing {
        envelope_id: id,
        destination: "center-kz".into(),
        message_type: "net.ping".into(),
        consultation_id: None,
        envelope: env.bytes().to_vec(),
        enqueued_at: chrono::Utc::now(),
    };
    caravan_server::federation::commit(
        &kashgar.state,
        vec![caravan_store::Change::Enqueue(row)],
        vec![],
    )
    .await
    .unwrap();
    let admin = net.login(DemoNode::Kashgar, "admin").await;
    let dead = eventually(&admin, "/api/v1/federation/outbox?state=dead", |v| {
        v.as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!(dead[0]["envelope_id"], id.to_string());
    assert!(
        dead[0]["last_error"]
            .as_str()
            .unwrap()
            .contains("not_for_me"),
        "{dead}"
    );
    // The admin page lists it with a retry button; the retry puts it back in line (and it dies again, since
    // the receiver still refuses it).
    let page = admin
        .http
        .get(format!("{}/ui/admin/federation", admin.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains(&id.to_string()), "dead letter not listed");
    assert!(page.contains("Retry"));
    let (s, v) = admin
        .post(&format!("/api/v1/federation/outbox/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let (s, v) = admin
        .post(
            &format!("/api/v1/federation/outbox/{}/retry", uuid::Uuid::nil()),
            json!({}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
    let (s, status) = admin.get("/api/v1/federation").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(status["node_id"], "kashgar-cn");
    assert_eq!(status["members"].as_array().unwrap().len(), 3);
    eventually(&admin, "/api/v1/federation/outbox?state=dead", |v| {
        v.as_array().is_some_and(|a| a.len() == 1)
    })
    .await;
    // Non-administrators see none of it.
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    assert_eq!(
        wang.get("/api/v1/federation").await.0,
        StatusCode::FORBIDDEN
    );
}

/// (ISO year, ISO week) of the Monday `k` weeks before this week's.
fn week_ago(k: i64) -> (i32, u32) {
    use chrono::Datelike;
    let today = chrono::Utc::now().date_naive();
    let monday = today - chrono::Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let w = (monday - chrono::Duration::weeks(k)).iso_week();
    (w.year(), w.week())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cross_border_outbreak_alert_is_delivered_and_acknowledged_back() {
    let net = start().await;
    let kz = net.login(DemoNode::Center, "officer").await;
    let cn = net.login(DemoNode::Kashgar, "officer").await;
    let uz = net.login(DemoNode::Samarkand, "officer").await;

    // Cholera in Almaty Region, which borders Kashgar and Ili (kashgar-cn): quiet weeks, then a spike; and a
    // few cases of the line list, which must stay home.
    let mut aggregates = Vec::new();
    for k in (1..=12).rev() {
        let (y, w) = week_ago(k);
        let count = if k == 1 { 30 } else { 1 + (k % 2) };
        aggregates.push(json!({ "disease": "A00", "region": "KZ-ALM", "iso_year": y, "iso_week": w, "count": count }));
    }
    let today = chrono::Utc::now().date_naive();
    let cases: Vec<Value> = (0..3)
        .map(|i| {
            json!({ "pseudonym": format!("kz-lab-{i}"), "disease": "A00", "region": "KZ-ALM",
                          "onset_date": (today - chrono::Duration::days(20 + i)).to_string(),
                          "report_date": today.to_string(), "age_band": "25-44", "sex": "female",
                          "outcome": "hospitalised", "lab_confirmed": true })
        })
        .collect();
    let (s, out) = kz
        .post(
            "/api/v1/surveillance/reports",
            json!({ "aggregates": aggregates, "cases": cases }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{out}");
    let alert = out["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["iso_week"].as_u64() == Some(u64::from(week_ago(1).1)))
        .cloned()
        .unwrap_or_else(|| panic!("no alert for the spike: {out}"));
    let id = alert["id"].as_str().unwrap().to_owned();

    // The outbox row was committed with the alert: the Kashgar node shows it to its officer.
    let foreign = eventually(&cn, "/api/v1/surveillance/alerts", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x["origin_id"] == id.as_str()))
    })
    .await;
    let f = foreign
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["origin_id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(f["origin_node"], "center-kz");
    assert_eq!(f["region"], "KZ-ALM");
    // Both Kashgar's regions border Almaty Region; the alert is filed under the first.
    assert_eq!(f["local_region"], "CN-XJ-IL");
    assert_eq!(f["observed"].as_f64(), Some(30.0));
    assert_eq!(f["status"], "open");
    // Samarkand does not border Almaty Region: nothing there.
    let (_, none) = uz.get("/api/v1/surveillance/alerts").await;
    assert!(!none.to_string().contains(&id));

    // Kashgar's officer discusses and acknowledges; the acknowledgement flows back to the center.
    let fid = f["id"].as_str().unwrap();
    let (s, _) = cn
        .post(
            &format!("/api/v1/surveillance/alerts/{fid}/notes"),
            json!({ "body": "Border clinics in Kashgar alerted." }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, acked) = cn
        .post(&format!("/api/v1/surveillance/alerts/{fid}/ack"), json!({}))
        .await;
    assert_eq!(s, StatusCode::OK, "{acked}");
    assert_eq!(acked["status"], "acknowledged");
    let back = eventually(&kz, &format!("/api/v1/surveillance/alerts/{id}"), |v| {
        v["notes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|x| x["kind"] == "ack"))
    })
    .await;
    let ack = back["notes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["kind"] == "ack")
        .unwrap();
    assert_eq!(ack["author_node"], "kashgar-cn");
    assert_eq!(ack["author_name"], "Aynur Memet");
    // The discussion stays where it was written.
    assert!(!back.to_string().contains("Border clinics"));
    let (s, page) = kz.get(&format!("/ui/surveillance/alerts/{id}")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(page.as_str().unwrap().contains("kashgar-cn"));

    // Per message type, exactly which fields crossed: aggregates and alerts, never a case.
    let center = net.node(DemoNode::Center);
    let kashgar = net.node(DemoNode::Kashgar);
    let expect: &[(&LocalNode, &str, &[&str])] = &[
        (
            kashgar,
            "surv.alert",
            &[
                "alert",
                "disease",
                "region",
                "region_name",
                "country",
                "neighbour_regions",
                "iso_year",
                "iso_week",
                "observed",
                "upperbound",
                "method",
                "recent",
                "recent/iso_year",
                "recent/iso_week",
                "recent/count",
            ],
        ),
        (
            kashgar,
            "surv.aggregate",
            &[
                "disease",
                "region",
                "region_name",
                "weeks",
                "weeks/iso_year",
                "weeks/iso_week",
                "weeks/count",
            ],
        ),
        (
            center,
            "surv.ack",
            &["alert", "by", "by/id", "by/name", "acknowledged_at"],
        ),
    ];
    for (node, kind, fields) in expect {
        let bodies = received(node, kind).await;
        assert!(!bodies.is_empty(), "{} got no {kind}", node.node.id());
        for b in bodies {
            let mut keys = BTreeSet::new();
            key_paths(&b, "", &mut keys);
            assert_eq!(keys, set(fields), "{kind} to {}", node.node.id());
            assert!(!b.to_string().contains("kz-lab-"), "a case crossed: {b}");
        }
    }
    let alerts = received(kashgar, "surv.alert").await;
    assert_eq!(
        alerts[0]["neighbour_regions"],
        json!(["CN-XJ-IL", "CN-XJ-KS"])
    );
    assert_eq!(alerts[0]["recent"].as_array().unwrap().len(), 12);

    // Both nodes audited it; the line list read at the center is in its chain.
    let (s, _) = kz.get("/api/v1/surveillance/cases?region=KZ-ALM").await;
    assert_eq!(s, StatusCode::OK);
    let log = center
        .state
        .store()
        .audit_for_entity("surveillance_case", "line-list", None, 10)
        .await
        .unwrap();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].event.action.as_str(), "read");
    let received_log = kashgar
        .state
        .store()
        .audit_for_entity("surveillance_alert", fid, None, 10)
        .await
        .unwrap();
    assert!(received_log
        .iter()
        .any(|r| r.event.detail.contains("from center-kz")));
    drop(net.dir);
}

/// A surveillance envelope from a node that does not border the region, or with a malformed body, is stored as
/// ignored (acknowledged, no effect); an acknowledgement of an alert that was never sent there changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn surveillance_envelopes_from_non_neighbours_have_no_effect() {
    let net = start().await;
    let kashgar = net.node(DemoNode::Kashgar);
    let center = net.node(DemoNode::Center);
    let uz_key = Keyring::load(&net.dir.path().join("samarkand-uz/keyring.json"))
        .unwrap()
        .active()
        .clone();
    let alert = json!({
        "alert": "x-1", "disease": "A00", "region": "UZ-SA", "region_name": "Samarkand Region", "country": "UZ",
        "neighbour_regions": ["CN-XJ-KS"], "iso_year": 2026, "iso_week": 10, "observed": 40.0,
        "upperbound": 4.0, "method": "ears-c2", "recent": []
    });
    // Samarkand is not a neighbour of any region of Kashgar's node.
    let (s, _) = post_envelope(
        kashgar,
        "samarkand-uz",
        &uz_key,
        MessageType::SurvAlert,
        alert.as_object().unwrap().clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Malformed: no disease.
    let mut bad = alert.as_object().unwrap().clone();
    bad.remove("disease");
    let (s, _) = post_envelope(
        kashgar,
        "samarkand-uz",
        &uz_key,
        MessageType::SurvAlert,
        bad,
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let inbox = kashgar.state.store().fed_inbox(100).await.unwrap();
    let outcomes: Vec<&str> = inbox
        .iter()
        .filter(|e| e.message_type == "surv.alert")
        .map(|e| e.outcome.as_str())
        .collect();
    assert_eq!(outcomes.len(), 2);
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains("no region here borders")),
        "{outcomes:?}"
    );
    assert!(
        outcomes
            .iter()
            .any(|o| o.contains("malformed body") && o.contains("disease")),
        "{outcomes:?}"
    );
    assert!(kashgar
        .state
        .store()
        .surv_alerts(10)
        .await
        .unwrap()
        .is_empty());

    // An acknowledgement of an alert id the center never sent to Samarkand.
    let (s, _) = post_envelope(
        center,
        "samarkand-uz",
        &uz_key,
        MessageType::SurvAck,
        json!({ "alert": "0190b3a2-0000-7000-8000-000000000000", "by": { "id": "u", "name": "X" },
                "acknowledged_at": "2026-01-01T00:00:00Z" })
        .as_object()
        .unwrap()
        .clone(),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    let inbox = center.state.store().fed_inbox(100).await.unwrap();
    let ack = inbox.iter().find(|e| e.message_type == "surv.ack").unwrap();
    assert_eq!(ack.outcome, "ignored: unknown alert");
    drop(net.dir);
}

/// A prescription written in Kashgar (CN) to be dispensed at the national center (KZ): it crosses as
/// `rx.prescription` with only what the pharmacy needs, is verifiable there with the keys it carries, and the
/// dispense comes back as `rx.dispense` and completes the prescription at home.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_prescription_is_dispensed_abroad_and_reported_back() {
    let net = start().await;
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let pharmacist = net.login(DemoNode::Center, "pharmacist").await;
    let pid = patient_id(&wang, "Tursun").await;
    let body = json!({ "patient_id": pid, "medication": "198440", "dose": "500", "times_per_day": 3,
                       "duration_days": 5, "destination": "center-kz" });
    // Without the patient's consents it does not leave.
    let (s, e) = wang.post("/api/v1/rx/prescriptions", body.clone()).await;
    assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY, "{e}");
    assert_eq!(e["error"], "error-consent-cross-border");
    for scope in ["cross_border", "share_identity"] {
        let (s, v) = wang
            .post(
                &format!("/api/v1/patients/{pid}/consents"),
                json!({ "scope": scope, "granted": true }),
            )
            .await;
        assert!(s.is_success(), "{v}");
    }
    let (s, rx) = wang.post("/api/v1/rx/prescriptions", body).await;
    assert_eq!(s, StatusCode::CREATED, "{rx}");
    let id = rx["id"].as_str().unwrap().to_owned();

    let got = eventually(&pharmacist, "/api/v1/rx/received", |v| {
        v.as_array()
            .is_some_and(|a| a.iter().any(|x| x["id"] == id.as_str()))
    })
    .await;
    let here = got
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["id"] == id.as_str())
        .unwrap();
    assert_eq!(here["origin_node"], "kashgar-cn");
    assert_eq!(here["patient_name"], "Mehmet Tursun");
    assert_eq!(here["patient_id"], Value::Null);
    assert_eq!(here["dosage"]["quantity"], 15);
    // The printed code verifies at the center with the keys the envelope carried.
    let bodies = received(net.node(DemoNode::Center), "rx.prescription").await;
    let keys = caravan_server::rx::sign::parse_keys(&bodies[0]["keys"].to_string()).unwrap();
    let payload = caravan_server::rx::sign::verify(
        here["token"].as_str().unwrap(),
        &keys,
        chrono::Utc::now(),
    )
    .unwrap();
    assert_eq!(payload.id, id);

    // Clinicians there neither list it nor dispense it: that is the pharmacy's.
    let clinician = net.login(DemoNode::Center, "cardio.nurlanov").await;
    assert_eq!(
        clinician.get("/api/v1/rx/received").await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        clinician
            .post(
                &format!("/api/v1/rx/prescriptions/{id}/dispense"),
                json!({ "performer": "Dr Nurlanov" }),
            )
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, d) = pharmacist
        .post(
            &format!("/api/v1/rx/prescriptions/{id}/dispense"),
            json!({ "performer": "Central pharmacy, Astana", "quantity": 15 }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{d}");
    let home = eventually(&wang, &format!("/api/v1/rx/prescriptions/{id}"), |v| {
        v["prescription"]["status"] == "completed"
    })
    .await;
    assert_eq!(home["dispenses"][0]["node"], "center-kz");
    assert_eq!(home["dispenses"][0]["quantity"], 15);

    // Per message type, exactly which fields crossed: no national id, no allergies, no warnings, no case.
    let expect: &[(&LocalNode, &str, &[&str])] = &[
        (
            net.node(DemoNode::Center),
            "rx.prescription",
            &[
                "id",
                "patient",
                "patient/name",
                "patient/birth_date",
                "medication",
                "medication/system",
                "medication/code",
                "medication/display",
                "medication/ingredient",
                "medication/strength",
                "medication/form",
                "dosage",
                "dosage/dose",
                "dosage/dose_unit",
                "dosage/route",
                "dosage/times_per_day",
                "dosage/duration_days",
                "dosage/quantity",
                "dosage/instructions",
                "prescriber",
                "prescriber/name",
                "prescriber/institution",
                "created_at",
                "token",
                "keys",
                "keys/keys",
                "keys/keys/kty",
                "keys/keys/crv",
                "keys/keys/alg",
                "keys/keys/use",
                "keys/keys/kid",
                "keys/keys/x",
            ],
        ),
        (
            net.node(DemoNode::Kashgar),
            "rx.dispense",
            &[
                "prescription",
                "id",
                "quantity",
                "performer",
                "dispensed_at",
            ],
        ),
    ];
    for (node, kind, fields) in expect {
        let bodies = received(node, kind).await;
        assert_eq!(bodies.len(), 1, "{kind} to {}", node.node.id());
        let mut keys = BTreeSet::new();
        key_paths(&bodies[0], "", &mut keys);
        assert_eq!(keys, set(fields), "{kind} to {}", node.node.id());
    }
}
