//! A network on one machine: keys, a signed directory and seed data for several nodes, used by
//! `caravan demo --network`, `caravan net soak` and the federation tests. What an operator would do with
//! `caravan keys generate` and `caravan directory sign`, done in one step.

use crate::federation::FederationConfig;
use crate::{auth, demo};
use caravan_domain::*;
use caravan_federation::directory::{DirectoryBody, Level, Member};
use caravan_federation::envelope::MessageType;
use caravan_federation::keys::{Keyring, NodeKey};
use caravan_federation::NodeId;
use caravan_store::{Store, StoreError};
use chrono::{Duration, NaiveDate, Utc};
use std::path::{Path, PathBuf};

/// A node to put in the directory.
#[derive(Clone, Debug)]
pub struct NodeSpec {
    pub id: String,
    pub display_name: String,
    pub level: Level,
    pub country: String,
    pub base_url: String,
    /// Pins of the node's TLS keys (`tls_spki_sha256`), for mutual TLS; empty: none.
    pub tls_spki_sha256: Vec<String>,
}

/// The files of a network: each node's keyring, the directory, and the anchor that signed it.
pub struct NetworkFiles {
    pub anchor: NodeKey,
    pub directory: PathBuf,
    pub keyrings: Vec<PathBuf>,
}

/// Generate a key per node and an anchor key, and write the signed directory listing every node (allowed to
/// send every message type) to `dir/directory.json`, keyrings to `dir/<node>/keyring.json`. Existing keyrings
/// are kept, so a node restarted on the same folder keeps its identity.
pub fn create(dir: &Path, nodes: &[NodeSpec]) -> Result<NetworkFiles, String> {
    let now = Utc::now();
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut members = Vec::new();
    let mut keyrings = Vec::new();
    for n in nodes {
        let node_dir = dir.join(&n.id);
        std::fs::create_dir_all(&node_dir).map_err(|e| format!("{}: {e}", node_dir.display()))?;
        let path = node_dir.join("keyring.json");
        let ring = if path.exists() {
            Keyring::load(&path).map_err(|e| e.to_string())?
        } else {
            let ring = Keyring::generate(Some(n.id.clone()), now - Duration::minutes(1));
            ring.save(&path).map_err(|e| e.to_string())?;
            ring
        };
        members.push(Member {
            node_id: NodeId::new(n.id.as_str()).map_err(|e| e.to_string())?,
            display_name: n.display_name.clone(),
            level: n.level,
            country: n.country.clone(),
            base_url: n.base_url.clone(),
            keys: ring.directory_keys(),
            message_types: MessageType::ALL
                .iter()
                .map(|t| t.name().to_owned())
                .collect(),
            valid_from: now - Duration::minutes(1),
            valid_until: None,
            tls_spki_sha256: n.tls_spki_sha256.clone(),
        });
        keyrings.push(path);
    }
    let anchor = NodeKey::generate();
    let body = DirectoryBody {
        network: "caravan-local".into(),
        serial: now.timestamp().max(1) as u64,
        issued_at: now - Duration::seconds(1),
        expires_at: now + Duration::days(365),
        anchors: vec![anchor.kid().clone()],
        members,
    };
    let signed = body.sign(&[&anchor]).map_err(|e| e.to_string())?;
    let directory = dir.join("directory.json");
    std::fs::write(
        &directory,
        serde_json::to_vec_pretty(&signed).map_err(|e| e.to_string())?,
    )
    .map_err(|e| format!("{}: {e}", directory.display()))?;
    Ok(NetworkFiles {
        anchor,
        directory,
        keyrings,
    })
}

impl NetworkFiles {
    /// The federation settings of node `i` of [`create`]'s list.
    pub fn config(&self, i: usize, node_id: &str) -> Result<FederationConfig, String> {
        Ok(FederationConfig::new(
            NodeId::new(node_id).map_err(|e| e.to_string())?,
            self.keyrings
                .get(i)
                .cloned()
                .ok_or_else(|| format!("no node {i}"))?,
            self.directory.clone(),
            vec![self.anchor.verifying_key()],
        ))
    }
}

/// The three nodes of the demo network: a national center with the experts, and two hospitals in two other
/// countries whose clinicians refer to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DemoNode {
    /// `center-kz`: National Telemedicine Center (KZ), cardiology and pulmonology experts.
    Center,
    /// `kashgar-cn`: Kashgar Prefecture Hospital (CN), a referring clinician and patients.
    Kashgar,
    /// `samarkand-uz`: Samarkand District Hospital (UZ), a referring clinician and patients.
    Samarkand,
}

impl DemoNode {
    pub const ALL: [DemoNode; 3] = [DemoNode::Center, DemoNode::Kashgar, DemoNode::Samarkand];

    pub fn id(self) -> &'static str {
        match self {
            DemoNode::Center => "center-kz",
            DemoNode::Kashgar => "kashgar-cn",
            DemoNode::Samarkand => "samarkand-uz",
        }
    }

    pub fn spec(self, base_url: String) -> NodeSpec {
        let (name, level, country) = match self {
            DemoNode::Center => ("National Telemedicine Center", Level::NationalCenter, "KZ"),
            DemoNode::Kashgar => ("Kashgar Prefecture Hospital", Level::Hospital, "CN"),
            DemoNode::Samarkand => ("Samarkand District Hospital", Level::Hospital, "UZ"),
        };
        NodeSpec {
            id: self.id().into(),
            display_name: name.into(),
            level,
            country: country.into(),
            base_url,
            tls_spki_sha256: Vec::new(),
        }
    }

    /// The demo accounts of this node: (user name, what).
    pub fn logins(self) -> &'static [(&'static str, &'static str)] {
        match self {
            DemoNode::Center => &[
                ("admin", "node administrator"),
                ("coordinator", "coordinator"),
                ("cardio.nurlanov", "consultant, cardiology"),
                ("pulm.petrova", "consultant, pulmonology"),
                ("officer", "public-health officer"),
                (
                    "pharmacist",
                    "pharmacist: dispenses prescriptions sent here",
                ),
            ],
            DemoNode::Kashgar => &[
                ("admin", "node administrator"),
                ("coordinator", "coordinator"),
                ("dr.wang", "referring clinician"),
                ("officer", "public-health officer"),
                (
                    "pharmacist",
                    "pharmacist: dispenses prescriptions sent here",
                ),
            ],
            DemoNode::Samarkand => &[
                ("admin", "node administrator"),
                ("dr.karimova", "referring clinician"),
                ("officer", "public-health officer"),
                (
                    "pharmacist",
                    "pharmacist: dispenses prescriptions sent here",
                ),
            ],
        }
    }
}

fn always() -> WorkingHours {
    WorkingHours {
        days: vec![
            chrono::Weekday::Mon,
            chrono::Weekday::Tue,
            chrono::Weekday::Wed,
            chrono::Weekday::Thu,
            chrono::Weekday::Fri,
            chrono::Weekday::Sat,
            chrono::Weekday::Sun,
        ],
        start: chrono::NaiveTime::MIN,
        end: chrono::NaiveTime::from_hms_opt(23, 59, 59).unwrap_or_default(),
    }
}

/// Seed one node of the demo network (unless it already holds institutions). Passwords are
/// [`demo::DEMO_PASSWORD`].
pub async fn seed(store: &dyn Store, node: DemoNode) -> Result<bool, StoreError> {
    if !store.list_institutions().await?.is_empty() {
        return Ok(false);
    }
    let (name, level, country, tz) = match node {
        DemoNode::Center => (
            "National Telemedicine Center",
            InstitutionLevel::NationalCenter,
            "KZ",
            "Asia/Almaty",
        ),
        DemoNode::Kashgar => (
            "Kashgar Prefecture Hospital",
            InstitutionLevel::Hospital,
            "CN",
            "Asia/Urumqi",
        ),
        DemoNode::Samarkand => (
            "Samarkand District Hospital",
            InstitutionLevel::Hospital,
            "UZ",
            "Asia/Samarkand",
        ),
    };
    let inst = Institution {
        id: InstitutionId::new(),
        name: name.into(),
        level,
        country: country
            .parse()
            .map_err(|e: ParseError| StoreError::Corrupt(e.to_string()))?,
        parent: None,
        timezone: tz.into(),
    };
    store.insert_institution(&inst, vec![]).await?;
    let hash =
        auth::hash_password(demo::DEMO_PASSWORD).map_err(|e| StoreError::Database(e.message))?;
    let user = |username: &str,
                display: &str,
                role: Role,
                profile: Option<PractitionerProfile>,
                locale: &str| User {
        id: UserId::new(),
        username: username.into(),
        display_name: display.into(),
        institution_id: inst.id,
        role,
        patient_id: None,
        profile,
        locale: locale.into(),
        active: true,
    };
    let expert = |spec: &str, langs: &[&str]| {
        Some(PractitionerProfile {
            specialties: vec![spec.into()],
            languages: langs.iter().map(|s| s.to_string()).collect(),
            timezone: tz.into(),
            hours: always(),
            capacity: 20,
        })
    };
    let mut users = vec![
        user("admin", "Node Administrator", Role::Admin, None, "en"),
        // Each node's pharmacy dispenses what is prescribed there or sent there for dispensing.
        user("pharmacist", "Node Pharmacy", Role::Pharmacist, None, "en"),
    ];
    let mut patients = Vec::new();
    match node {
        DemoNode::Center => {
            users.push(user(
                "coordinator",
                "Dana Seitkali",
                Role::Coordinator,
                None,
                "ru",
            ));
            users.push(user(
                "cardio.nurlanov",
                "Dr Timur Nurlanov",
                Role::Consultant,
                expert("cardiology", &["ru", "kk", "en", "zh"]),
                "ru",
            ));
            users.push(user(
                "pulm.petrova",
                "Dr Elena Petrova",
                Role::Consultant,
                expert("pulmonology", &["ru", "en", "uz"]),
                "ru",
            ));
        }
        DemoNode::Kashgar => {
            users.push(user(
                "coordinator",
                "Li Na",
                Role::Coordinator,
                None,
                "zh-CN",
            ));
            users.push(user(
                "dr.wang",
                "Dr Wang Fang",
                Role::Referrer,
                expert("internal_medicine", &["zh", "en"]),
                "zh-CN",
            ));
            patients.push((
                "Mehmet",
                "Tursun",
                (1966, 3, 14),
                Sex::Male,
                "CN-6531-0001",
                true,
                false,
            ));
            patients.push((
                "Ayshe",
                "Ablimit",
                (1981, 9, 2),
                Sex::Female,
                "CN-6531-0002",
                false,
                false,
            ));
        }
        DemoNode::Samarkand => {
            users.push(user(
                "dr.karimova",
                "Dr Nodira Karimova",
                Role::Referrer,
                expert("internal_medicine", &["uz", "ru"]),
                "ru",
            ));
            patients.push((
                "Bobur",
                "Rakhimov",
                (1958, 1, 23),
                Sex::Male,
                "UZ-1703-0001",
                true,
                true,
            ));
        }
    }
    for u in &users {
        store.insert_user(u, Some(&hash), vec![]).await?;
    }
    let recorder = users.last().map(|u| u.id).unwrap_or_else(UserId::new);
    for (given, family, (y, m, d), sex, national, cross, identity) in patients {
        let p = Patient {
            id: PatientId::new(),
            institution_id: inst.id,
            given_name: given.into(),
            family_name: family.into(),
            birth_date: NaiveDate::from_ymd_opt(y, m, d)
                .ok_or_else(|| StoreError::Corrupt("bad demo date".into()))?,
            sex,
            national_id: Some(national.into()),
            languages: vec![],
        };
        store.insert_patient(&p, vec![]).await?;
        for (scope, granted) in [
            (ConsentScope::Consultation, true),
            (ConsentScope::CrossBorder, cross),
            (ConsentScope::ShareIdentity, identity),
        ] {
            store
                .insert_consent(
                    &Consent {
                        id: ConsentId::new(),
                        patient_id: p.id,
                        scope,
                        granted,
                        recorded_by: recorder,
                        recorded_at: Utc::now(),
                        note: "recorded at registration (demo)".into(),
                    },
                    vec![],
                )
                .await?;
        }
    }
    // e-Prescription: the shipped starter formulary and check tables.
    crate::rx::seed_starter(store).await?;
    Ok(true)
}

/// A node of a local network, running in this process.
pub struct LocalNode {
    pub node: DemoNode,
    pub base: String,
    pub state: crate::AppState,
}

/// Timing of a local network: the demo's (human pace) or the tests' (fast polling and retries).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    pub poll: std::time::Duration,
    pub first_retry: std::time::Duration,
    /// Chunk size of study transfers (small in tests, so a study spans several chunks).
    pub study_chunk_bytes: u64,
}

impl Pace {
    pub const DEMO: Pace = Pace {
        poll: std::time::Duration::from_secs(1),
        first_retry: std::time::Duration::from_secs(1),
        study_chunk_bytes: crate::study_transfer::DEFAULT_CHUNK_BYTES,
    };
    pub const TEST: Pace = Pace {
        poll: std::time::Duration::from_millis(50),
        first_retry: std::time::Duration::from_millis(50),
        study_chunk_bytes: 4096,
    };
}

/// Start the three nodes of the demo network on `listeners` (one each, in [`DemoNode::ALL`] order), each with
/// its own SQLite file and blob folder under `dir/<node id>/`, seeded, federated, serving `extra` routes too.
pub async fn start_demo(
    dir: &Path,
    listeners: Vec<tokio::net::TcpListener>,
    config: crate::NodeConfig,
    pace: Pace,
    extra: fn() -> axum::Router<crate::AppState>,
) -> Result<Vec<LocalNode>, String> {
    start_demo_with(dir, listeners, config, pace, extra, false).await
}

/// [`start_demo`], over HTTPS with mutual TLS when `tls`: each node gets a fresh self-signed certificate
/// (`dir/<node id>/tls.crt`, `tls.key`) whose key the directory pins, and requires pinned peers.
pub async fn start_demo_with(
    dir: &Path,
    listeners: Vec<tokio::net::TcpListener>,
    config: crate::NodeConfig,
    pace: Pace,
    extra: fn() -> axum::Router<crate::AppState>,
    tls: bool,
) -> Result<Vec<LocalNode>, String> {
    if listeners.len() != DemoNode::ALL.len() {
        return Err("the demo network needs three listeners".into());
    }
    let mut bases = Vec::new();
    let mut identities = Vec::new();
    for (l, node) in listeners.iter().zip(DemoNode::ALL) {
        let addr = l.local_addr().map_err(|e| e.to_string())?;
        bases.push(format!("{}://{addr}", if tls { "https" } else { "http" }));
        if tls {
            let minted = crate::tls::mint_self_signed(node.id(), &[addr.ip().to_string()], 365)
                .map_err(|e| e.to_string())?;
            let node_dir = dir.join(node.id());
            std::fs::create_dir_all(&node_dir)
                .map_err(|e| format!("{}: {e}", node_dir.display()))?;
            let (cert, key) = (node_dir.join("tls.crt"), node_dir.join("tls.key"));
            std::fs::write(&cert, &minted.cert_pem)
                .map_err(|e| format!("{}: {e}", cert.display()))?;
            caravan_federation::keys::write_private_file(&key, minted.key_pem.as_bytes())
                .map_err(|e| e.to_string())?;
            identities.push(Some(std::sync::Arc::new(
                crate::tls::NodeTls::load(&cert, &key, true, None).map_err(|e| e.to_string())?,
            )));
        } else {
            identities.push(None);
        }
    }
    start_nodes(dir, listeners, bases, identities, config, pace, extra).await
}

/// [`start_demo`] with the base URLs the directory publishes given apart from the listeners: a node reached
/// through a reverse proxy publishes the proxy's URL.
pub async fn start_demo_published(
    dir: &Path,
    listeners: Vec<tokio::net::TcpListener>,
    bases: Vec<String>,
    config: crate::NodeConfig,
    pace: Pace,
    extra: fn() -> axum::Router<crate::AppState>,
) -> Result<Vec<LocalNode>, String> {
    let identities = vec![None; bases.len()];
    start_nodes(dir, listeners, bases, identities, config, pace, extra).await
}

async fn start_nodes(
    dir: &Path,
    listeners: Vec<tokio::net::TcpListener>,
    bases: Vec<String>,
    identities: Vec<Option<std::sync::Arc<crate::tls::NodeTls>>>,
    config: crate::NodeConfig,
    pace: Pace,
    extra: fn() -> axum::Router<crate::AppState>,
) -> Result<Vec<LocalNode>, String> {
    if listeners.len() != DemoNode::ALL.len()
        || bases.len() != DemoNode::ALL.len()
        || identities.len() != DemoNode::ALL.len()
    {
        return Err("the demo network needs three listeners".into());
    }
    let specs: Vec<NodeSpec> = DemoNode::ALL
        .iter()
        .zip(&bases)
        .zip(&identities)
        .map(|((n, b), id)| NodeSpec {
            tls_spki_sha256: id.iter().map(|t| t.spki_pin().to_owned()).collect(),
            ..n.spec(b.clone())
        })
        .collect();
    let files = create(dir, &specs)?;
    let mut nodes = Vec::new();
    for (i, (listener, node)) in listeners.into_iter().zip(DemoNode::ALL).enumerate() {
        let node_dir = dir.join(node.id());
        let store =
            crate::open_store(&node_dir.join("caravan.sqlite").display().to_string()).await?;
        seed(store.as_ref(), node)
            .await
            .map_err(|e| e.to_string())?;
        crate::surveil::demo::seed_network_node(store.as_ref(), node)
            .await
            .map_err(|e| e.to_string())?;
        let blobs = crate::Blobs::open(&node_dir.join("blobs").display().to_string())?;
        let mut fc = files.config(i, node.id())?;
        fc.delivery.poll_interval = pace.poll;
        fc.delivery.base_delay = pace.first_retry;
        fc.delivery.max_delay = pace.first_retry * 30;
        fc.study_chunk_bytes = pace.study_chunk_bytes;
        fc.study_fetch_every = pace.poll.max(std::time::Duration::from_millis(200));
        let fed = crate::federation::Federation::load(fc).map_err(|e| e.to_string())?;
        let mut cfg = config.clone();
        cfg.node_name = node.spec(String::new()).display_name;
        // Each node issues health certificates with its own keys; peers recognise them via `trust.update`.
        cfg.certs_dir = Some(node_dir.join("certs"));
        cfg.tls = identities[i].clone();
        let state = crate::AppState::federated(store, blobs, cfg, Some(std::sync::Arc::new(fed)));
        let s = state.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::serve_with(listener, s, extra(), std::future::pending()).await {
                tracing::error!(error = %e, "demo network node stopped");
            }
        });
        nodes.push(LocalNode {
            node,
            base: bases[i].clone(),
            state,
        });
    }
    Ok(nodes)
}

/// Wait until `node` has received the catalogue of `from` (its experts appear as stand-ins), up to `timeout`.
pub async fn wait_for_catalogue(
    node: &LocalNode,
    from: DemoNode,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let seen = node
            .state
            .store()
            .fed_remote_users(from.id())
            .await
            .map_err(|e| e.to_string())?;
        if !seen.is_empty() {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!(
                "{} did not receive the catalogue of {} in {timeout:?}",
                node.node.id(),
                from.id()
            ));
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn principal(node: &LocalNode, username: &str) -> Result<crate::auth::Principal, String> {
    let (user, _) = node
        .state
        .store()
        .get_user_credentials(username)
        .await
        .map_err(|e| format!("{username}: {e}"))?;
    Ok(crate::auth::Principal {
        user,
        via: crate::auth::Via::ApiToken,
    })
}

async fn patient(
    node: &LocalNode,
    p: &crate::auth::Principal,
    name: &str,
) -> Result<PatientId, String> {
    let filter = caravan_store::PatientFilter {
        name: Some(name.into()),
        ..Default::default()
    };
    let found = crate::consult::search_patients(&node.state, p, &filter)
        .await
        .map_err(|e| e.message)?;
    found
        .first()
        .map(|x| x.id)
        .ok_or_else(|| format!("no demo patient {name}"))
}

/// The demo's cross-border cases: Kashgar's cardiology case answered by the center's cardiologist (thread,
/// acceptance, report), and Samarkand's pulmonology case waiting for the center's pulmonologist.
pub async fn demo_cases(nodes: &[LocalNode]) -> Result<(), String> {
    let find = |n: DemoNode| {
        nodes
            .iter()
            .find(|x| x.node == n)
            .ok_or_else(|| format!("{} is not running", n.id()))
    };
    let (center, kashgar, samarkand) = (
        find(DemoNode::Center)?,
        find(DemoNode::Kashgar)?,
        find(DemoNode::Samarkand)?,
    );
    let err = |e: crate::error::AppError| e.message;
    let wang = principal(kashgar, "dr.wang").await?;
    let pid = patient(kashgar, &wang, "Tursun").await?;
    let case = crate::consult::create_consultation(
        &kashgar.state,
        &wang,
        crate::consult::NewConsultation {
            patient_id: pid,
            question: "Wide-complex tachycardia at 180/min: VT or SVT with aberrancy?".into(),
            clinical_summary: "Palpitations for 2 hours, BP 110/70, no known heart disease.".into(),
            specialty: "cardiology".into(),
            urgency: Urgency::Urgent,
            languages: vec!["zh".into(), "en".into()],
            submit: true,
        },
    )
    .await
    .map_err(err)?;
    if case.state != ConsultationState::Assigned {
        return Err("the demo case was not routed to the center".into());
    }
    let expert = principal(center, "cardio.nurlanov").await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    let mirror = loop {
        let list = crate::consult::list(
            &center.state,
            &expert,
            &caravan_store::ConsultationFilter::default(),
        )
        .await
        .map_err(err)?;
        if let Some(c) = list.first() {
            break c.consultation.id;
        }
        if tokio::time::Instant::now() > deadline {
            return Err("the case packet did not reach the center".into());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    use crate::consult::EventRequest as E;
    crate::consult::post_message(
        &center.state,
        &expert,
        mirror,
        None,
        "Thank you. AV dissociation is visible in lead II; please send a prior ECG if there is one.",
    )
    .await
    .map_err(err)?;
    crate::consult::apply(&center.state, &expert, mirror, E::Accept)
        .await
        .map_err(err)?;
    crate::consult::apply(
        &center.state,
        &expert,
        mirror,
        E::Report {
            findings: "Regular wide-complex tachycardia, 180/min, AV dissociation, capture beats."
                .into(),
            impression: "Ventricular tachycardia.".into(),
            recommendations:
                "Synchronised cardioversion if unstable; amiodarone; refer for ablation.".into(),
        },
    )
    .await
    .map_err(err)?;
    let karimova = principal(samarkand, "dr.karimova").await?;
    let pid = patient(samarkand, &karimova, "Rakhimov").await?;
    crate::consult::create_consultation(
        &samarkand.state,
        &karimova,
        crate::consult::NewConsultation {
            patient_id: pid,
            question: "Cavitary lesion in the right upper lobe: tuberculosis or abscess?".into(),
            clinical_summary: "Cough for 6 weeks, weight loss, night sweats.".into(),
            specialty: "pulmonology".into(),
            urgency: Urgency::Urgent,
            languages: vec!["uz".into(), "ru".into()],
            submit: true,
        },
    )
    .await
    .map_err(err)?;
    Ok(())
}
