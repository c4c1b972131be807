//! Mutual TLS between nodes: three real nodes on 127.0.0.1 serving HTTPS with self-signed certificates whose
//! keys are pinned in the signed directory, each requiring a pinned client certificate from its peers.
//! A cross-border case crosses; a node whose certificate is not pinned is refused at the handshake and its
//! envelope waits in its outbox until the directory pins its key; plain HTTP, certificate-less and
//! mismatched clients are refused before the receiver runs.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use caravan_federation::directory::{Directory, DirectoryBody, TrustPolicy};
use caravan_federation::envelope::{Envelope, MessageType};
use caravan_federation::httpsig::RequestSigner;
use caravan_federation::keys::{Keyring, NodeKey};
use caravan_federation::NodeId;
use caravan_server::federation::Federation;
use caravan_server::network::{self, DemoNode, LocalNode, NetworkFiles, NodeSpec};
use caravan_server::tls::{self, Minted, NodeTls};
use caravan_server::{AppState, Blobs, NodeConfig};
use common::Client;
use reqwest::StatusCode;
use serde_json::{json, Map, Value};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A certificate authority for the CA-bundle scenario.
struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name.to_owned());
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    /// A node certificate (server and client use) for these names, issued by this CA.
    fn issue(&self, node: &str, names: &[&str]) -> Minted {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, node.to_owned());
        params.extended_key_usages = vec![
            rcgen::ExtendedKeyUsagePurpose::ServerAuth,
            rcgen::ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        Minted {
            spki_pin: tls::spki_pin(cert.der()).unwrap(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

/// How the nodes trust each other.
enum Trust {
    /// Pins in the directory; the node given is listed with a pin that is not its key's.
    Pins { unpinned: Option<DemoNode> },
    /// No pins: certificates issued by this CA, which every node is given as `--federation-ca`.
    Ca(Box<Ca>),
}

struct TlsNet {
    nodes: Vec<LocalNode>,
    /// The certificate each node actually serves and presents, in [`DemoNode::ALL`] order.
    certs: Vec<Minted>,
    specs: Vec<NodeSpec>,
    files: NetworkFiles,
    dir: tempfile::TempDir,
}

impl TlsNet {
    fn index(&self, n: DemoNode) -> usize {
        DemoNode::ALL.iter().position(|x| *x == n).unwrap()
    }
    fn node(&self, n: DemoNode) -> &LocalNode {
        &self.nodes[self.index(n)]
    }
    fn fed(&self, n: DemoNode) -> &Federation {
        self.node(n).state.federation().unwrap()
    }
    /// A TLS identity for a test client, from minted PEM.
    fn identity(m: &Minted) -> NodeTls {
        NodeTls::from_pem(
            m.cert_pem.as_bytes(),
            Path::new("cert.pem"),
            m.key_pem.as_bytes(),
            Path::new("key.pem"),
            false,
            None,
        )
        .unwrap()
    }
    /// An HTTPS client that checks the nodes' certificates against the directory of `via` and presents
    /// `identity` (none: like a browser).
    fn client(&self, via: DemoNode, identity: Option<&Minted>) -> reqwest::ClientBuilder {
        let id = identity.map(TlsNet::identity);
        let config = tls::client_config(id.as_ref(), self.fed(via).shared_directory()).unwrap();
        reqwest::Client::builder().use_preconfigured_tls(config)
    }
    /// A client that trusts `ca` for the nodes' server certificates and presents `identity`.
    fn ca_client(ca: &Ca, identity: &Minted) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.cert.pem().as_bytes()).unwrap())
            .identity(
                reqwest::Identity::from_pem(
                    format!("{}{}", identity.cert_pem, identity.key_pem).as_bytes(),
                )
                .unwrap(),
            )
            .build()
            .unwrap()
    }
    async fn login(&self, n: DemoNode, user: &str) -> Client {
        let http = self
            .client(n, None)
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let base = self.node(n).base.clone();
        let r = http
            .post(format!("{base}/api/v1/session"))
            .json(&json!({ "username": user, "password": caravan_server::demo::DEMO_PASSWORD }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK, "login {user}");
        let v: Value = r.json().await.unwrap();
        Client {
            http,
            base,
            csrf: v["csrf_token"].as_str().unwrap().to_owned(),
            user: v["user"].clone(),
        }
    }
    fn key(&self, n: DemoNode) -> NodeKey {
        Keyring::load(&self.dir.path().join(n.id()).join("keyring.json"))
            .unwrap()
            .active()
            .clone()
    }
}

/// Three nodes over HTTPS with mutual TLS required. With pins, each serves a freshly minted self-signed
/// certificate and the directory pins each node's key (except `unpinned`'s, for which it pins another key); with
/// a CA, each serves a certificate of that CA for 127.0.0.1 and the directory pins nothing.
async fn start(trust: &Trust) -> TlsNet {
    // The refusals are logged (ids and pins only); `--nocapture` shows them.
    let _ = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let mut listeners = Vec::new();
    for _ in 0..3 {
        listeners.push(tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap());
    }
    let mut certs = Vec::new();
    let mut specs = Vec::new();
    for (node, l) in DemoNode::ALL.iter().zip(&listeners) {
        let mut spec = node.spec(format!("https://{}", l.local_addr().unwrap()));
        let cert = match trust {
            Trust::Pins { unpinned } => {
                let cert = tls::mint_self_signed(node.id(), &["127.0.0.1".into()], 30).unwrap();
                spec.tls_spki_sha256 = if *unpinned == Some(*node) {
                    vec![
                        tls::mint_self_signed(node.id(), &["127.0.0.1".into()], 30)
                            .unwrap()
                            .spki_pin,
                    ]
                } else {
                    vec![cert.spki_pin.clone()]
                };
                cert
            }
            Trust::Ca(ca) => ca.issue(node.id(), &["127.0.0.1"]),
        };
        certs.push(cert);
        specs.push(spec);
    }
    let files = network::create(dir.path(), &specs).unwrap();
    let ca_pem = match trust {
        Trust::Ca(ca) => Some(ca.cert.pem()),
        Trust::Pins { .. } => None,
    };
    let mut nodes = Vec::new();
    for (i, (listener, node)) in listeners.into_iter().zip(DemoNode::ALL).enumerate() {
        let node_dir = dir.path().join(node.id());
        let store = caravan_server::open_store(node_dir.join("caravan.sqlite").to_str().unwrap())
            .await
            .unwrap();
        network::seed(store.as_ref(), node).await.unwrap();
        let blobs = Blobs::open(node_dir.join("blobs").to_str().unwrap()).unwrap();
        let mut fc = files.config(i, node.id()).unwrap();
        fc.delivery.poll_interval = Duration::from_millis(50);
        fc.delivery.base_delay = Duration::from_millis(50);
        fc.delivery.max_delay = Duration::from_millis(500);
        let fed = Federation::load(fc).unwrap();
        let identity = NodeTls::from_pem(
            certs[i].cert_pem.as_bytes(),
            Path::new("tls.crt"),
            certs[i].key_pem.as_bytes(),
            Path::new("tls.key"),
            true,
            ca_pem.as_ref().map(|p| (p.as_bytes(), Path::new("ca.pem"))),
        )
        .unwrap();
        let config = NodeConfig {
            node_name: node.spec(String::new()).display_name,
            secure_cookies: false,
            tls: Some(Arc::new(identity)),
            ..NodeConfig::default()
        };
        let state = AppState::federated(store, blobs, config, Some(Arc::new(fed)));
        let s = state.clone();
        tokio::spawn(async move {
            caravan_server::serve_with(listener, s, axum::Router::new(), std::future::pending())
                .await
                .unwrap();
        });
        nodes.push(LocalNode {
            node,
            base: specs[i].base_url.clone(),
            state,
        });
    }
    TlsNet {
        nodes,
        certs,
        specs,
        files,
        dir,
    }
}

async fn outbox_row(node: &LocalNode, envelope: uuid::Uuid) -> Option<caravan_store::OutboxRow> {
    for state in ["pending", "delivered", "dead"] {
        let rows = node.state.store().fed_outbox(state, 1000).await.unwrap();
        if let Some(r) = rows.into_iter().find(|r| r.envelope_id == envelope) {
            return Some(r);
        }
    }
    None
}

async fn inbox_has(node: &LocalNode, envelope: uuid::Uuid) -> bool {
    node.state
        .store()
        .fed_inbox_contains(envelope)
        .await
        .unwrap()
}

/// The id of the newest ping `from` queued for `to`.
async fn ping(from: &LocalNode, to: DemoNode) -> uuid::Uuid {
    caravan_server::federation::enqueue_pings(&from.state, to.id(), 1)
        .await
        .unwrap();
    let rows = from
        .state
        .store()
        .fed_outbox("pending", 1000)
        .await
        .unwrap();
    let mut pings: Vec<_> = rows
        .into_iter()
        .filter(|r| r.message_type == "net.ping" && r.destination == to.id())
        .collect();
    if pings.is_empty() {
        // Already delivered.
        pings = from
            .state
            .store()
            .fed_outbox("delivered", 1000)
            .await
            .unwrap()
            .into_iter()
            .filter(|r| r.message_type == "net.ping" && r.destination == to.id())
            .collect();
    }
    pings.sort_by_key(|r| r.envelope_id);
    pings.last().unwrap().envelope_id
}

async fn until(what: &str, mut cond: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A signed `net.ping` envelope from `from` to `to`, and its request headers signed with `key`.
fn signed_ping(
    net: &TlsNet,
    from: DemoNode,
    to: DemoNode,
    key: &NodeKey,
) -> (String, Vec<u8>, http::HeaderMap) {
    let env = Envelope::new(
        NodeId::new(from.id()).unwrap(),
        NodeId::new(to.id()).unwrap(),
        MessageType::NetPing,
        Map::new(),
    )
    .sign(key)
    .unwrap();
    let url = format!("{}/federation/v1/inbox", net.node(to).base);
    let mut headers = http::HeaderMap::new();
    RequestSigner::new(key.clone())
        .sign(
            "POST",
            &url,
            &mut headers,
            env.bytes(),
            chrono::Utc::now().timestamp(),
        )
        .unwrap();
    headers.insert("content-type", "application/json".parse().unwrap());
    (url, env.bytes().to_vec(), headers)
}

async fn post(
    client: &reqwest::Client,
    (url, body, headers): (String, Vec<u8>, http::HeaderMap),
) -> Result<(StatusCode, Value), reqwest::Error> {
    let mut req = client.post(&url).body(body);
    for (k, v) in headers.iter() {
        req = req.header(k.as_str(), v.to_str().unwrap());
    }
    let r = req.send().await?;
    let s = r.status();
    Ok((s, r.json().await.unwrap_or(Value::Null)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_case_crosses_over_mutual_tls_and_strangers_are_refused() {
    let net = start(&Trust::Pins { unpinned: None }).await;
    // The catalogues crossed over mutual TLS: the hospitals know the center's experts.
    for n in [DemoNode::Kashgar, DemoNode::Samarkand] {
        network::wait_for_catalogue(net.node(n), DemoNode::Center, Duration::from_secs(20))
            .await
            .unwrap();
    }

    // A clinician's client has no certificate and still reaches the API over HTTPS; the case packet goes to
    // the center's expert over the nodes' mutual TLS.
    let wang = net.login(DemoNode::Kashgar, "dr.wang").await;
    let (s, v) = wang.get("/api/v1/patients?name=Tursun").await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let pid = v[0]["id"].as_str().unwrap().to_owned();
    let (s, case) = wang
        .post(
            "/api/v1/consultations",
            json!({ "patient_id": pid, "question": "Wide-complex tachycardia: VT or SVT?",
                    "clinical_summary": "58 y, palpitations.", "specialty": "cardiology",
                    "urgency": "urgent", "languages": ["zh", "en"] }),
        )
        .await;
    assert_eq!(s, StatusCode::CREATED, "{case}");
    let cid = case["id"].as_str().unwrap().to_owned();
    let (s, c) = wang
        .post(
            &format!("/api/v1/consultations/{cid}/events"),
            json!({ "type": "submit" }),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{c}");
    assert_eq!(c["state"], "assigned", "{c}");
    let center = net.node(DemoNode::Center);
    until("the case packet at the center", async || {
        center
            .state
            .store()
            .fed_inbox(100)
            .await
            .unwrap()
            .iter()
            .any(|e| e.message_type == "consult.packet" && e.sender == "kashgar-cn")
    })
    .await;
    let expert = net.login(DemoNode::Center, "cardio.nurlanov").await;
    let (s, list) = expert.get("/api/v1/consultations").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(
        list[0]["consultation"]["question"],
        "Wide-complex tachycardia: VT or SVT?"
    );

    let inbox_before = center.state.store().fed_counts().await.unwrap().inbox;
    let kashgar_key = net.key(DemoNode::Kashgar);

    // Plain HTTP to a node that serves TLS: no HTTP exchange at all.
    let plain = reqwest::Client::new();
    let http_url = center.base.replace("https://", "http://");
    let (_, body, headers) = signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key);
    let r = post(
        &plain,
        (format!("{http_url}/federation/v1/inbox"), body, headers),
    )
    .await;
    assert!(r.is_err(), "plain HTTP answered: {r:?}");

    // HTTPS without a client certificate: the health probe answers, the inbox refuses before the receiver.
    let certless = net.client(DemoNode::Kashgar, None).build().unwrap();
    let r = certless
        .get(format!("{}/healthz", center.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let (s, p) = post(
        &certless,
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, p["code"].as_str()),
        (
            StatusCode::FORBIDDEN,
            Some("tls_client_certificate_required")
        ),
        "{p}"
    );
    assert_eq!(p["retryable"], true);

    // A certificate whose key no member pins: refused at the handshake, even with a member's signing key.
    let stranger = tls::mint_self_signed("kashgar-cn", &["127.0.0.1".into()], 30).unwrap();
    let impostor = net
        .client(DemoNode::Kashgar, Some(&stranger))
        .build()
        .unwrap();
    let r = post(
        &impostor,
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await;
    assert!(r.is_err(), "unpinned client certificate accepted: {r:?}");

    // Samarkand's TLS key with Kashgar's signing key: the layers disagree on who is speaking.
    let samarkand_tls = net
        .client(
            DemoNode::Kashgar,
            Some(&net.certs[net.index(DemoNode::Samarkand)]),
        )
        .build()
        .unwrap();
    let (s, p) = post(
        &samarkand_tls,
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tls_peer_mismatch")),
        "{p}"
    );
    // None of the refused requests changed anything at the center.
    assert_eq!(
        center.state.store().fed_counts().await.unwrap().inbox,
        inbox_before
    );

    // Kashgar's own certificate and key: accepted.
    let kashgar_tls = net
        .client(
            DemoNode::Kashgar,
            Some(&net.certs[net.index(DemoNode::Kashgar)]),
        )
        .build()
        .unwrap();
    let (s, p) = post(
        &kashgar_tls,
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, p["status"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{p}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpinned_node_is_refused_and_its_envelope_waits_until_the_directory_pins_it() {
    let net = start(&Trust::Pins {
        unpinned: Some(DemoNode::Samarkand),
    })
    .await;
    let center = net.node(DemoNode::Center);
    let samarkand = net.node(DemoNode::Samarkand);

    // Pinned nodes talk to each other.
    let ok = ping(net.node(DemoNode::Kashgar), DemoNode::Center).await;
    until("a ping between pinned nodes", async || {
        inbox_has(center, ok).await
    })
    .await;

    // Samarkand presents a key the directory does not pin: every attempt fails at the handshake.
    let id = ping(samarkand, DemoNode::Center).await;
    until("failed attempts", async || {
        outbox_row(samarkand, id).await.unwrap().attempts >= 3
    })
    .await;
    let row = outbox_row(samarkand, id).await.unwrap();
    assert_eq!(row.state, "pending", "{row:?}");
    assert!(row.last_error.is_some(), "{row:?}");
    assert!(!inbox_has(center, id).await);

    // The network's operator publishes Samarkand's real pin in a new edition of the directory.
    let raw = std::fs::read(&net.files.directory).unwrap();
    let held = Directory::verify(
        &raw,
        &TrustPolicy::new(vec![net.files.anchor.verifying_key()]),
        chrono::Utc::now(),
        None,
    )
    .unwrap();
    let mut body: DirectoryBody = held.body().clone();
    body.serial += 1;
    let i = net.index(DemoNode::Samarkand);
    let m = body
        .members
        .iter_mut()
        .find(|m| m.node_id.as_str() == DemoNode::Samarkand.id())
        .unwrap();
    assert_ne!(m.tls_spki_sha256, vec![net.certs[i].spki_pin.clone()]);
    assert_eq!(m.base_url, net.specs[i].base_url);
    m.tls_spki_sha256 = vec![net.certs[i].spki_pin.clone()];
    let signed = body.sign(&[&net.files.anchor]).unwrap();
    std::fs::write(
        &net.files.directory,
        serde_json::to_vec_pretty(&signed).unwrap(),
    )
    .unwrap();
    for n in &net.nodes {
        assert!(n.state.federation().unwrap().refresh_directory().unwrap());
    }

    // The envelope that waited is delivered, once.
    until("the delayed envelope", async || inbox_has(center, id).await).await;
    until("the sender's acknowledgment", async || {
        outbox_row(samarkand, id).await.unwrap().state == "delivered"
    })
    .await;
    let inbox = center.state.store().fed_inbox(1000).await.unwrap();
    assert_eq!(inbox.iter().filter(|e| e.envelope_id == id).count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_a_ca_bundle_members_without_pins_need_a_certificate_of_the_ca_for_their_host() {
    let trust = Trust::Ca(Box::new(Ca::new("Caravan test network CA")));
    let net = start(&trust).await;
    let Trust::Ca(ca) = &trust else {
        unreachable!()
    };
    let center = net.node(DemoNode::Center);

    // Nodes with certificates of the CA deliver to each other (catalogues, then a ping).
    network::wait_for_catalogue(
        net.node(DemoNode::Kashgar),
        DemoNode::Center,
        Duration::from_secs(20),
    )
    .await
    .unwrap();
    let id = ping(net.node(DemoNode::Kashgar), DemoNode::Center).await;
    until("a ping over CA-issued certificates", async || {
        inbox_has(center, id).await
    })
    .await;

    let kashgar_key = net.key(DemoNode::Kashgar);
    // A self-signed certificate, though for the right host: not the CA's, refused at the handshake.
    let stranger = tls::mint_self_signed("kashgar-cn", &["127.0.0.1".into()], 30).unwrap();
    let r = post(
        &TlsNet::ca_client(ca, &stranger),
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await;
    assert!(
        r.is_err(),
        "a certificate of no trusted CA was accepted: {r:?}"
    );

    // A certificate of the CA, but for another host than the signing node's base_url: the layers disagree.
    let elsewhere = ca.issue("kashgar-cn", &["kashgar.example"]);
    let (s, p) = post(
        &TlsNet::ca_client(ca, &elsewhere),
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, p["code"].as_str()),
        (StatusCode::FORBIDDEN, Some("tls_peer_mismatch")),
        "{p}"
    );

    // The CA's certificate for the node's host: accepted.
    let (s, p) = post(
        &TlsNet::ca_client(ca, &net.certs[net.index(DemoNode::Kashgar)]),
        signed_ping(&net, DemoNode::Kashgar, DemoNode::Center, &kashgar_key),
    )
    .await
    .unwrap();
    assert_eq!(
        (s, p["status"].as_str()),
        (StatusCode::OK, Some("stored")),
        "{p}"
    );
}
