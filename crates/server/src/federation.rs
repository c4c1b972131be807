//! The node side of federation (`docs/federation.md` §9): this node's identity, the inbox route, the delivery
//! engine over the node's own outbox, and the translation between consultations and envelopes.
//!
//! Model: another node appears here as a local institution (its stand-in), and each of its people we deal with
//! as a stand-in user that cannot sign in (`fed_remote_users`). So routing ranks a foreign expert exactly like a
//! local one, a case assigned to a stand-in is a case sent abroad, and the report, messages and invitations that
//! come back are applied as that stand-in's actions, audited under their name and node.
//!
//! - Home node (owns the case): when a case is assigned to a stand-in, the **case packet** is built from what the
//!   patient's consent allows (refused without `cross_border`; a pseudonym, birth year and sex unless
//!   `share_identity`) plus the attachments the referrer selected, signed, and written to the outbox in the same
//!   transaction as the assignment and its audit events (including an `export` event in the patient's log).
//! - Expert node: a packet becomes a local mirror case (pseudonymous patient, stand-in referrer) assigned to the
//!   chosen expert; it is kept until the retention date the sending node set, then purged (audited).
//! - Both: every accepted envelope is stored in the inbox in the same transaction as its effect.

use crate::audit::{system_event, user_event};
use crate::error::{AppError, AppResult};
use crate::AppState;
use async_trait::async_trait;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use caravan_domain::*;
use caravan_federation::delivery::{
    DeliveryConfig, DeliveryEngine, HttpTransport, OutboxItem, OutboxStore, OutboxStoreError,
};
use caravan_federation::directory::{Directory, Level, SharedDirectory, TrustPolicy};
use caravan_federation::envelope::{Envelope, MessageType, SignedEnvelope};
use caravan_federation::httpsig::{MemoryReplayGuard, RequestSigner};
use caravan_federation::keys::{Keyring, NodeKey};
use caravan_federation::receiver::{
    InboxStore, InboxStoreError, Receiver, ReceiverConfig, StoreOutcome, INBOX_PATH,
};
use caravan_federation::NodeId;
use caravan_store::{
    Attachment, Change, ForeignCase, InboxRecord, Message, Outgoing, RemoteUser, StoreError,
};
use chrono::{DateTime, Datelike, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use uuid::Uuid;

/// How a node takes part in a network.
#[derive(Clone, Debug)]
pub struct FederationConfig {
    /// This node's id in the directory.
    pub node_id: NodeId,
    /// The keyring file (`caravan keys generate`).
    pub keyring: PathBuf,
    /// The signed directory file; re-read every `directory_every` (an operator or a cron job replaces it).
    pub directory: PathBuf,
    /// Pinned anchor public keys.
    pub anchors: Vec<ed25519_dalek::VerifyingKey>,
    /// Anchor signatures required.
    pub threshold: usize,
    /// How long an expert node may keep a packet this node sends (this country's rule).
    pub retention_days: u32,
    /// How often this node publishes its expert catalogue to the other members.
    pub catalogue_every: std::time::Duration,
    pub directory_every: std::time::Duration,
    /// How often expired packets are purged.
    pub retention_every: std::time::Duration,
    pub delivery: DeliveryConfig,
    /// Size of one chunk of a study transfer (`study_transfer`).
    pub study_chunk_bytes: u64,
    /// How often pending study transfers are looked at (resumed after an interruption).
    pub study_fetch_every: std::time::Duration,
}

impl FederationConfig {
    pub fn new(
        node_id: NodeId,
        keyring: PathBuf,
        directory: PathBuf,
        anchors: Vec<ed25519_dalek::VerifyingKey>,
    ) -> Self {
        Self {
            node_id,
            keyring,
            directory,
            anchors,
            threshold: 1,
            retention_days: 90,
            catalogue_every: std::time::Duration::from_secs(15 * 60),
            directory_every: std::time::Duration::from_secs(60),
            retention_every: std::time::Duration::from_secs(3600),
            delivery: DeliveryConfig::default(),
            study_chunk_bytes: crate::study_transfer::DEFAULT_CHUNK_BYTES,
            study_fetch_every: std::time::Duration::from_secs(2),
        }
    }
}

/// Why federation could not start.
#[derive(Debug, thiserror::Error)]
pub enum FederationError {
    #[error("keyring {path}: {source}")]
    Keyring {
        path: String,
        source: caravan_federation::keys::KeyError,
    },
    #[error("directory {path}: {reason}")]
    Directory { path: String, reason: String },
    #[error("this node ({0}) is not a member of the directory")]
    NotAMember(String),
    #[error("the directory does not list this node's active key")]
    KeyNotPublished,
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// This node's federation state.
pub struct Federation {
    cfg: FederationConfig,
    key: NodeKey,
    directory: SharedDirectory,
    policy: TrustPolicy,
    engine: OnceLock<DeliveryEngine>,
}

impl Federation {
    /// Load the keyring and the directory, and check that this node is a member with its active key listed.
    pub fn load(cfg: FederationConfig) -> Result<Federation, FederationError> {
        let keyring = Keyring::load(&cfg.keyring).map_err(|source| FederationError::Keyring {
            path: cfg.keyring.display().to_string(),
            source,
        })?;
        let key = keyring.active().clone();
        let mut policy = TrustPolicy::new(cfg.anchors.clone());
        policy.threshold = cfg.threshold.max(1);
        let raw = std::fs::read(&cfg.directory).map_err(|e| FederationError::Directory {
            path: cfg.directory.display().to_string(),
            reason: e.to_string(),
        })?;
        let dir = Directory::verify(&raw, &policy, Utc::now(), None).map_err(|e| {
            FederationError::Directory {
                path: cfg.directory.display().to_string(),
                reason: e.to_string(),
            }
        })?;
        let me = dir
            .member(&cfg.node_id)
            .map_err(|_| FederationError::NotAMember(cfg.node_id.to_string()))?;
        if !me.keys.iter().any(|k| &k.kid == key.kid()) {
            return Err(FederationError::KeyNotPublished);
        }
        Ok(Federation {
            cfg,
            key,
            directory: SharedDirectory::new(dir),
            policy,
            engine: OnceLock::new(),
        })
    }

    pub fn me(&self) -> &NodeId {
        &self.cfg.node_id
    }

    pub fn config(&self) -> &FederationConfig {
        &self.cfg
    }

    pub fn directory(&self) -> Arc<Directory> {
        self.directory.get()
    }

    /// The directory as held (refreshed in place), for verifiers that read it at each use.
    pub fn shared_directory(&self) -> SharedDirectory {
        self.directory.clone()
    }

    /// Re-read the directory file; `Ok(true)` when a newer edition was taken.
    pub fn refresh_directory(&self) -> Result<bool, String> {
        let raw = std::fs::read(&self.cfg.directory).map_err(|e| e.to_string())?;
        self.directory
            .refresh(&raw, &self.policy, Utc::now())
            .map_err(|e| e.to_string())
    }

    /// This node's `base_url` as the directory publishes it.
    pub fn base_url(&self) -> Option<String> {
        self.directory
            .get()
            .member(&self.cfg.node_id)
            .ok()
            .map(|m| m.base_url.clone())
    }

    /// Sign an envelope for `to` and wrap it as an outbox row.
    pub fn outgoing(
        &self,
        to: &str,
        kind: MessageType,
        body: Value,
        consultation: Option<ConsultationId>,
    ) -> AppResult<Outgoing> {
        let to_id = NodeId::new(to).map_err(AppError::internal)?;
        let Value::Object(body) = body else {
            return Err(AppError::internal("envelope body is not an object"));
        };
        let env = Envelope::new(self.cfg.node_id.clone(), to_id, kind, body);
        let (id, created) = (env.id, env.created);
        let signed = env.sign(&self.key).map_err(AppError::internal)?;
        Ok(Outgoing {
            envelope_id: id,
            destination: to.to_owned(),
            message_type: kind.name().to_owned(),
            consultation_id: consultation,
            envelope: signed.bytes().to_vec(),
            enqueued_at: created,
        })
    }

    /// A signer of this node's outgoing requests (RFC 9421), for fetches outside the delivery engine.
    pub(crate) fn signer(&self) -> RequestSigner {
        RequestSigner::new(self.key.clone())
    }

    /// Tell the delivery engine that rows for these destinations were committed.
    pub fn wake(&self, destinations: &[String]) {
        if let Some(engine) = self.engine.get() {
            for d in destinations {
                if let Ok(id) = NodeId::new(d.as_str()) {
                    engine.wake(&id);
                }
            }
        }
    }

    /// Delivery counters since start.
    pub fn delivered_since_start(&self) -> u64 {
        self.engine
            .get()
            .map(|e| {
                e.stats()
                    .delivered
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .unwrap_or(0)
    }
}

/// Commit a unit of work and wake the delivery workers of the rows it wrote.
pub async fn commit(st: &AppState, changes: Vec<Change>, audit: Vec<AuditEvent>) -> AppResult<()> {
    let dests: Vec<String> = changes
        .iter()
        .filter_map(|c| match c {
            Change::Enqueue(o) => Some(o.destination.clone()),
            _ => None,
        })
        .collect();
    st.store().apply(changes, audit).await?;
    if let Some(f) = st.federation() {
        f.wake(&dests);
    }
    Ok(())
}

// ------------------------------------------------------------------------------------------------------------
// Background work

/// Start the delivery engine, the catalogue publisher, the directory refresher and the retention purge.
pub fn start(st: &AppState) -> Result<Vec<tokio::task::JoinHandle<()>>, FederationError> {
    let Some(fed) = st.federation() else {
        return Ok(Vec::new());
    };
    let client = crate::tls::federation_client(st.config().tls.as_deref(), fed.directory.clone())
        .map_err(|e| FederationError::Client(e.to_string()))?;
    let transport = HttpTransport::with_client(
        client,
        RequestSigner::new(fed.key.clone()),
        fed.directory.clone(),
    );
    let engine = DeliveryEngine::start(
        Arc::new(NodeOutbox(st.clone())),
        Arc::new(transport),
        fed.cfg.delivery.clone(),
    );
    if fed.engine.set(engine).is_err() {
        tracing::warn!("federation already started");
        return Ok(Vec::new());
    }
    let mut tasks = Vec::new();
    let s = st.clone();
    let every = fed.cfg.catalogue_every;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        loop {
            tick.tick().await;
            if let Err(e) = publish_catalogue(&s).await {
                tracing::error!(error = %e.message, "publishing the expert catalogue failed");
            }
        }
    }));
    let s = st.clone();
    let every = fed.cfg.directory_every;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        tick.tick().await;
        loop {
            tick.tick().await;
            if let Some(f) = s.federation() {
                match f.refresh_directory() {
                    Ok(true) => {
                        tracing::info!(serial = f.directory().serial(), "directory refreshed")
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "directory refresh refused"),
                }
            }
        }
    }));
    tasks.push(crate::study_transfer::start_fetcher(st));
    let s = st.clone();
    let every = fed.cfg.retention_every;
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(every.max(std::time::Duration::from_millis(100)));
        loop {
            tick.tick().await;
            if let Err(e) = retention_sweep(&s, Utc::now()).await {
                tracing::error!(error = %e.message, "retention purge failed");
            }
        }
    }));
    Ok(tasks)
}

struct NodeOutbox(AppState);

fn boxed(e: StoreError) -> OutboxStoreError {
    Box::new(e)
}

#[async_trait]
impl OutboxStore for NodeOutbox {
    async fn destinations_with_pending(&self) -> Result<Vec<NodeId>, OutboxStoreError> {
        let list = self
            .0
            .store()
            .fed_destinations_with_pending()
            .await
            .map_err(boxed)?;
        Ok(list
            .into_iter()
            .filter_map(|d| NodeId::new(d).ok())
            .collect())
    }

    async fn next_pending(
        &self,
        destination: &NodeId,
    ) -> Result<Option<OutboxItem>, OutboxStoreError> {
        let row = self
            .0
            .store()
            .fed_next_pending(destination.as_str())
            .await
            .map_err(boxed)?;
        Ok(row.map(|r| OutboxItem {
            envelope_id: r.envelope_id,
            destination: destination.clone(),
            envelope: r.envelope.into(),
            attempts: r.attempts,
            enqueued_at: r.enqueued_at,
            next_attempt_at: r.next_attempt_at,
        }))
    }

    async fn mark_delivered(&self, id: Uuid, at: DateTime<Utc>) -> Result<(), OutboxStoreError> {
        self.0
            .store()
            .fed_mark_delivered(id, at)
            .await
            .map_err(boxed)
    }

    async fn record_failure(
        &self,
        id: Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), OutboxStoreError> {
        self.0
            .store()
            .fed_record_failure(id, attempts, next_attempt_at, error)
            .await
            .map_err(boxed)
    }

    async fn dead_letter(
        &self,
        id: Uuid,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<(), OutboxStoreError> {
        tracing::warn!(envelope_id = %id, reason, "envelope dead-lettered");
        let audit = vec![system_event(
            AuditAction::Update,
            "federation-envelope",
            id,
            None,
            "dead_letter",
        )];
        self.0
            .store()
            .fed_dead_letter(id, reason, at, audit)
            .await
            .map_err(boxed)
    }
}

// ------------------------------------------------------------------------------------------------------------
// Inbox

type NodeReceiver = Receiver<NodeInbox, MemoryReplayGuard>;

/// `POST /federation/v1/inbox`, when the node is federated.
pub fn routes(st: &AppState) -> Router<AppState> {
    let Some(fed) = st.federation() else {
        return Router::new();
    };
    let base = fed.base_url().unwrap_or_default();
    let receiver = Arc::new(Receiver::new(
        ReceiverConfig::new(fed.me().clone(), base),
        fed.directory.clone(),
        NodeInbox(st.clone()),
        MemoryReplayGuard::new(100_000),
    ));
    let mtls = st
        .config()
        .tls
        .as_ref()
        .is_some_and(|t| t.requires_peer_cert());
    let state = st.clone();
    Router::new().route(
        INBOX_PATH,
        post(
            move |ext: axum::http::Extensions, headers: HeaderMap, body: Bytes| {
                let receiver = receiver.clone();
                let state = state.clone();
                async move {
                    if mtls {
                        // Mutual TLS: the peer's certificate must be the signing node's (`tls::inbox_gate`).
                        let conn = ext
                            .get::<axum::extract::ConnectInfo<crate::tls::TlsConnInfo>>()
                            .map(|c| &c.0);
                        if let Some(p) = state
                            .federation()
                            .and_then(|f| crate::tls::inbox_gate(f, conn, &headers))
                        {
                            return problem_response(&p);
                        }
                    }
                    inbox(&receiver, Method::POST, headers, body).await
                }
            },
        ),
    )
}

fn problem_response(p: &caravan_federation::problem::Problem) -> Response {
    let status =
        axum::http::StatusCode::from_u16(p.status).unwrap_or(axum::http::StatusCode::FORBIDDEN);
    (
        status,
        [(
            axum::http::header::CONTENT_TYPE,
            caravan_federation::problem::CONTENT_TYPE,
        )],
        p.to_json(),
    )
        .into_response()
}

async fn inbox(
    receiver: &NodeReceiver,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let resp = receiver.handle(method.as_str(), &headers, &body).await;
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, body).into_response()
}

struct NodeInbox(AppState);

#[async_trait]
impl InboxStore for NodeInbox {
    async fn store(&self, env: &SignedEnvelope) -> Result<StoreOutcome, InboxStoreError> {
        let st = &self.0;
        if st.store().fed_inbox_contains(env.envelope.id).await? {
            return Ok(StoreOutcome::Duplicate);
        }
        // A local user may change the same case meanwhile: its version check makes one of the two retry.
        for _ in 0..5 {
            let effect = match effect_of(st, env).await {
                Ok(e) => e,
                Err(Refusal::Ignore(reason)) => Effect::ignored(reason),
                Err(Refusal::Transient(cause)) => return Err(cause.into()),
            };
            let record = InboxRecord {
                envelope_id: env.envelope.id,
                sender: env.envelope.from.to_string(),
                message_type: env.envelope.kind.name().to_owned(),
                consultation_id: effect.consultation,
                received_at: Utc::now(),
                envelope: env.bytes().to_vec(),
                sha256: hex::encode(Sha256::digest(env.bytes())),
                outcome: effect.outcome.clone(),
            };
            if effect.outcome != "applied" {
                tracing::warn!(envelope_id = %env.envelope.id, from = %env.envelope.from, kind = env.envelope.kind.name(), outcome = %effect.outcome, "envelope stored without effect");
            }
            let mut changes = vec![Change::Receive(record)];
            changes.extend(effect.changes);
            match commit(st, changes, effect.audit).await {
                Ok(()) => return Ok(StoreOutcome::Stored),
                Err(e) if e.code == "error-conflict" => continue,
                Err(e) if e.code == "error-duplicate" => {
                    if st.store().fed_inbox_contains(env.envelope.id).await? {
                        return Ok(StoreOutcome::Duplicate);
                    }
                    return Err(e.message.into());
                }
                Err(e) => return Err(e.message.into()),
            }
        }
        Err("the case kept changing while the envelope was applied".into())
    }
}

/// Why an accepted envelope has no effect.
enum Refusal {
    /// Valid on the wire but cannot take effect (unknown case, illegal transition...): stored and acknowledged
    /// with the reason (sending it again would not help), logged without content.
    Ignore(String),
    /// This node cannot apply it now (database, blob store): not stored, the sender retries.
    Transient(String),
}

impl From<AppError> for Refusal {
    fn from(e: AppError) -> Self {
        if e.status.is_server_error() {
            Refusal::Transient(e.message)
        } else {
            Refusal::Ignore(e.code.to_owned())
        }
    }
}

impl From<StoreError> for Refusal {
    fn from(e: StoreError) -> Self {
        Refusal::from(AppError::from(e))
    }
}

impl From<TransitionError> for Refusal {
    fn from(e: TransitionError) -> Self {
        Refusal::Ignore(e.code().to_owned())
    }
}

#[derive(Default)]
struct Effect {
    changes: Vec<Change>,
    audit: Vec<AuditEvent>,
    consultation: Option<ConsultationId>,
    outcome: String,
}

impl Effect {
    fn applied() -> Effect {
        Effect {
            outcome: "applied".into(),
            ..Effect::default()
        }
    }
    fn ignored(reason: String) -> Effect {
        Effect {
            outcome: format!("ignored: {reason}"),
            ..Effect::default()
        }
    }
}

async fn effect_of(st: &AppState, env: &SignedEnvelope) -> Result<Effect, Refusal> {
    let from = env.envelope.from.as_str();
    let body = Value::Object(env.envelope.body.clone());
    match env.envelope.kind {
        MessageType::NetPing => {
            let mut e = Effect::applied();
            e.changes.push(Change::Ping {
                envelope_id: env.envelope.id,
                sender: from.to_owned(),
            });
            Ok(e)
        }
        MessageType::CatalogueUpdate => receive_catalogue(st, from, parse(body)?).await,
        MessageType::TrustUpdate => receive_trust(st, from, body).await,
        MessageType::ConsultPacket => receive_packet(st, from, parse(body)?).await,
        MessageType::ConsultMessage => receive_message(st, from, parse(body)?).await,
        MessageType::ConsultStatus | MessageType::ConsultReport | MessageType::ConsultInvite => {
            receive_status(st, from, parse(body)?).await
        }
        MessageType::SurvAlert | MessageType::SurvAggregate | MessageType::SurvAck => {
            match crate::surveil::fed::receive(st, from, env.envelope.kind, body).await? {
                Ok((changes, audit)) => {
                    let mut e = Effect::applied();
                    e.changes = changes;
                    e.audit = audit;
                    Ok(e)
                }
                Err(reason) => Err(Refusal::Ignore(reason)),
            }
        }
        MessageType::RxPrescription => {
            rx_effect(crate::rx::receive_prescription(st, from, body).await?)
        }
        MessageType::RxDispense => rx_effect(crate::rx::receive_dispense(st, from, body).await?),
    }
}

fn rx_effect(r: crate::rx::Received) -> Result<Effect, Refusal> {
    let (changes, audit) = r.map_err(Refusal::Ignore)?;
    let mut e = Effect::applied();
    e.changes = changes;
    e.audit = audit;
    Ok(e)
}

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, Refusal> {
    serde_json::from_value(body).map_err(|e| {
        // serde's message names the field, never its value.
        Refusal::Ignore(format!("malformed body: {e}"))
    })
}

// ------------------------------------------------------------------------------------------------------------
// Wire bodies

/// A person named in an envelope: a practitioner, never a patient.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Person {
    id: String,
    name: String,
    #[serde(default)]
    specialties: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CatalogueBody {
    institution: CatalogueInstitution,
    experts: Vec<CatalogueExpert>,
}

#[derive(Debug, Serialize, Deserialize)]
struct CatalogueInstitution {
    name: String,
    timezone: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct CatalogueExpert {
    id: String,
    name: String,
    specialties: Vec<String>,
    languages: Vec<String>,
    timezone: String,
    hours: WorkingHours,
    /// Cases the expert can still take.
    capacity: u32,
}

/// `consult.packet`: exactly what crosses the border with a case (see [`packet_fields`]).
#[derive(Debug, Serialize, Deserialize)]
struct PacketBody {
    case: String,
    expert: String,
    referrer: Person,
    specialty: String,
    urgency: Urgency,
    question: String,
    clinical_summary: String,
    languages: Vec<String>,
    due_at: Option<DateTime<Utc>>,
    retention_days: u32,
    patient: PacketPatient,
    attachments: Vec<PacketAttachment>,
    /// DICOM studies selected for sharing, each fetched by the expert node as a resumable transfer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    studies: Vec<crate::study_transfer::StudyManifest>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PacketPatient {
    pseudonym: String,
    sex: Sex,
    birth_year: i32,
    /// Only with the patient's `share_identity` consent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    given_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    national_id: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct PacketAttachment {
    filename: String,
    content_type: String,
    sha256: String,
    /// Base64 (standard alphabet) of the content.
    data: String,
}

/// `consult.status`, `consult.report`, `consult.invite`: one event on a case, by a practitioner of the sender.
#[derive(Debug, Serialize, Deserialize)]
struct StatusBody {
    /// The case id on its home node.
    case: String,
    event: String,
    by: Person,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    report: Option<ReportBody>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    member: Option<Person>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    outcome: Option<OutcomeBody>,
}

#[derive(Debug, Serialize, Deserialize)]
struct ReportBody {
    findings: String,
    impression: String,
    recommendations: String,
}

#[derive(Debug, Serialize, Deserialize)]
struct OutcomeBody {
    status: String,
    note: String,
}

/// `consult.message`: one thread message.
#[derive(Debug, Serialize, Deserialize)]
struct MessageBody {
    case: String,
    id: MessageId,
    #[serde(default)]
    parent: Option<MessageId>,
    author: Person,
    body: String,
    created_at: DateTime<Utc>,
}

// ------------------------------------------------------------------------------------------------------------
// Stand-ins

/// Builds a unit of work, remembering the stand-ins it creates so it never creates one twice.
struct Unit<'a> {
    st: &'a AppState,
    node: String,
    changes: Vec<Change>,
    institution: Option<InstitutionId>,
    users: HashMap<String, UserId>,
}

impl<'a> Unit<'a> {
    fn new(st: &'a AppState, node: &str) -> Unit<'a> {
        Unit {
            st,
            node: node.to_owned(),
            changes: Vec::new(),
            institution: None,
            users: HashMap::new(),
        }
    }

    /// The local institution standing for the node (created from its directory entry on first contact).
    async fn institution(&mut self, timezone: Option<&str>) -> Result<InstitutionId, Refusal> {
        if let Some(i) = self.institution {
            return Ok(i);
        }
        if let Some(i) = self.st.store().fed_node_institution(&self.node).await? {
            self.institution = Some(i);
            return Ok(i);
        }
        let fed = self
            .st
            .federation()
            .ok_or_else(|| Refusal::Ignore("federation off".into()))?;
        let dir = fed.directory();
        let node = NodeId::new(self.node.as_str()).map_err(|e| Refusal::Ignore(e.to_string()))?;
        let m = dir
            .member(&node)
            .map_err(|_| Refusal::Ignore("sender not in directory".into()))?;
        let level = match m.level {
            Level::NationalCenter => InstitutionLevel::NationalCenter,
            Level::RegionalPlatform => InstitutionLevel::RegionalPlatform,
            Level::Hospital => InstitutionLevel::Hospital,
        };
        let inst = Institution {
            id: InstitutionId::new(),
            name: format!("{} ({})", m.display_name, m.node_id),
            level,
            country: CountryCode::try_from(m.country.clone())
                .map_err(|_| Refusal::Ignore("bad country".into()))?,
            parent: None,
            timezone: timezone.unwrap_or("UTC").to_owned(),
        };
        let id = inst.id;
        self.changes.push(Change::InsertInstitution(inst));
        self.changes.push(Change::LinkNode {
            node_id: self.node.clone(),
            institution_id: id,
        });
        self.institution = Some(id);
        Ok(id)
    }

    /// The stand-in for a person of the node: created, or updated when `profile` is given.
    async fn person(
        &mut self,
        p: &Person,
        role: Role,
        profile: Option<PractitionerProfile>,
    ) -> Result<UserId, Refusal> {
        if let Some(u) = self.users.get(&p.id) {
            return Ok(*u);
        }
        let inst = self.institution(None).await?;
        let existing = self
            .st
            .store()
            .fed_remote_users(&self.node)
            .await?
            .into_iter()
            .find(|r| r.remote_id == p.id);
        let name: String = p.name.chars().take(200).collect();
        let id = match existing {
            Some(r) => {
                if profile.is_some() {
                    let mut u = self.st.store().get_user(r.user_id).await?;
                    u.display_name = name;
                    u.profile = profile;
                    u.active = true;
                    self.changes.push(Change::UpsertUser(u));
                }
                r.user_id
            }
            None => {
                let id = UserId::new();
                let profile = profile.or_else(|| {
                    (role == Role::Consultant).then(|| PractitionerProfile {
                        specialties: p.specialties.clone(),
                        languages: Vec::new(),
                        timezone: "UTC".into(),
                        hours: WorkingHours::default(),
                        capacity: 0,
                    })
                });
                self.changes.push(Change::UpsertUser(User {
                    id,
                    username: format!("{}@{}", p.id, self.node),
                    display_name: name,
                    institution_id: inst,
                    role,
                    patient_id: None,
                    profile,
                    locale: "en".into(),
                    active: true,
                }));
                self.changes.push(Change::LinkRemoteUser(RemoteUser {
                    user_id: id,
                    node_id: self.node.clone(),
                    remote_id: p.id.clone(),
                }));
                id
            }
        };
        self.users.insert(p.id.clone(), id);
        Ok(id)
    }
}

/// The user a stand-in's action is audited as: its name and node (the stand-in may be created by the same unit
/// of work, so it is not read back from the store).
fn audit_identity(actor: &Actor, name: &str, node: &str) -> User {
    User {
        id: actor.user_id,
        username: String::new(),
        display_name: format!("{} ({node})", name.chars().take(200).collect::<String>()),
        institution_id: actor.institution_id,
        role: actor.role,
        patient_id: None,
        profile: None,
        locale: "en".into(),
        active: true,
    }
}

// ------------------------------------------------------------------------------------------------------------
// Catalogue

/// Send this node's expert catalogue to every other member allowed to receive consultations.
pub async fn publish_catalogue(st: &AppState) -> AppResult<usize> {
    let Some(fed) = st.federation() else {
        return Ok(0);
    };
    let dir = fed.directory();
    let me = fed.me().clone();
    let users = st.store().list_users(None).await?;
    let mut experts = Vec::new();
    let mut tz = "UTC".to_owned();
    for u in users {
        if u.role != Role::Consultant || !u.active {
            continue;
        }
        if st.store().fed_remote_user(u.id).await?.is_some() {
            continue; // a stand-in for someone abroad: not ours to publish
        }
        let Some(p) = u.profile else { continue };
        tz = p.timezone.clone();
        experts.push(CatalogueExpert {
            id: u.id.to_string(),
            name: u.display_name,
            specialties: p.specialties,
            languages: p.languages,
            timezone: p.timezone,
            hours: p.hours,
            capacity: p.capacity,
        });
    }
    let name = dir
        .member(&me)
        .map(|m| m.display_name.clone())
        .unwrap_or_else(|_| me.to_string());
    let body = serde_json::to_value(CatalogueBody {
        institution: CatalogueInstitution { name, timezone: tz },
        experts,
    })
    .map_err(AppError::internal)?;
    let trust = own_country_trust(st, &dir, &me).await;
    let mut changes = Vec::new();
    let now = Utc::now();
    for m in dir.members() {
        if m.node_id == me || !m.valid_at(now) {
            continue;
        }
        changes.push(Change::Enqueue(fed.outgoing(
            m.node_id.as_str(),
            MessageType::CatalogueUpdate,
            body.clone(),
            None,
        )?));
        if let Some(t) = &trust {
            changes.push(Change::Enqueue(fed.outgoing(
                m.node_id.as_str(),
                MessageType::TrustUpdate,
                t.clone(),
                None,
            )?));
        }
    }
    let n = changes.len();
    if n > 0 {
        commit(st, changes, Vec::new()).await?;
    }
    Ok(n)
}

async fn receive_catalogue(
    st: &AppState,
    from: &str,
    body: CatalogueBody,
) -> Result<Effect, Refusal> {
    let mut unit = Unit::new(st, from);
    unit.institution(Some(&body.institution.timezone)).await?;
    let mut listed = std::collections::HashSet::new();
    for e in body.experts.iter().take(5_000) {
        let specialties: Vec<String> = e
            .specialties
            .iter()
            .filter(|s| is_known_specialty(s))
            .cloned()
            .collect();
        if specialties.is_empty() {
            continue;
        }
        listed.insert(e.id.clone());
        let profile = PractitionerProfile {
            specialties: specialties.clone(),
            languages: e.languages.clone(),
            timezone: e.timezone.clone(),
            hours: e.hours.clone(),
            capacity: e.capacity.min(1_000),
        };
        let person = Person {
            id: e.id.clone(),
            name: e.name.clone(),
            specialties,
        };
        unit.person(&person, Role::Consultant, Some(profile))
            .await?;
    }
    // Experts no longer listed stop being proposed (their stand-ins stay for the cases they took part in).
    for r in st.store().fed_remote_users(from).await? {
        if listed.contains(&r.remote_id) {
            continue;
        }
        let mut u = st.store().get_user(r.user_id).await?;
        if u.role == Role::Consultant && u.active && u.profile.is_some() {
            u.active = false;
            unit.changes.push(Change::UpsertUser(u));
        }
    }
    let mut e = Effect::applied();
    e.changes = unit.changes;
    Ok(e)
}

/// The health-certificate signing keys this node trusts for its own country (the directory's), as a
/// `trust.update` body; `None` when the node has no certificate material or no key of its country.
async fn own_country_trust(st: &AppState, dir: &Directory, me: &NodeId) -> Option<Value> {
    let country = dir.member(me).ok()?.country.clone();
    let doc = st.certs().export().await.ok()?;
    let dsc: Vec<Value> = doc
        .get("dsc")?
        .as_array()?
        .iter()
        .filter(|e| e.get("country").and_then(Value::as_str) == Some(country.as_str()))
        .cloned()
        .collect();
    if dsc.is_empty() {
        return None;
    }
    Some(serde_json::json!({ "country": country, "dsc": dsc }))
}

/// Mutual recognition: import the signing keys a member publishes for its own country, and only those.
async fn receive_trust(st: &AppState, from: &str, body: Value) -> Result<Effect, Refusal> {
    let fed = st
        .federation()
        .ok_or_else(|| Refusal::Ignore("federation off".into()))?;
    let node = NodeId::new(from).map_err(|e| Refusal::Ignore(e.to_string()))?;
    let country = fed
        .directory()
        .member(&node)
        .map_err(|_| Refusal::Ignore("sender not in directory".into()))?
        .country
        .clone();
    let dsc: Vec<Value> = body
        .get("dsc")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|e| e.get("country").and_then(Value::as_str) == Some(country.as_str()))
        .cloned()
        .collect();
    if dsc.is_empty() {
        return Err(Refusal::Ignore(format!(
            "no signing key of the sender's country {country}"
        )));
    }
    let doc = serde_json::to_vec(&serde_json::json!({ "dsc": dsc, "shc": [] }))
        .map_err(|e| Refusal::Ignore(e.to_string()))?;
    // A file import, idempotent (keys are de-duplicated by content): a retry after a failed commit repeats it
    // harmlessly.
    let report = st
        .certs()
        .import_trust(doc, Some(country.clone()))
        .await
        .map_err(|e| Refusal::Ignore(e.code.to_owned()))?;
    let mut e = Effect::applied();
    e.audit.push(system_event(
        AuditAction::Update,
        "trust",
        &country,
        None,
        &format!(
            "signing keys of {country} from {from}: {} new",
            report.dsc.values().sum::<usize>()
        ),
    ));
    Ok(e)
}

// ------------------------------------------------------------------------------------------------------------
// Home node: the case goes abroad

/// The outbox rows (and audit) that a change of a case causes. Called with the case before and after the event,
/// inside the same unit of work as the change.
pub async fn after_event(
    st: &AppState,
    actor: &User,
    before: &Consultation,
    after: &Consultation,
    ev: &ConsultationEvent,
) -> AppResult<(Vec<Change>, Vec<AuditEvent>)> {
    let Some(fed) = st.federation() else {
        return Ok((Vec::new(), Vec::new()));
    };
    let mut changes = Vec::new();
    let mut audit = Vec::new();
    if let Some(fc) = st.store().fed_foreign_case(after.id).await? {
        // Expert side: the expert's answers go back to the case's home node.
        let by = person_of(actor);
        let body = match ev {
            ConsultationEvent::Accept => {
                Some((MessageType::ConsultStatus, expert_status(&fc, "accept", by)))
            }
            ConsultationEvent::Decline { reason } => Some((
                MessageType::ConsultStatus,
                StatusBody {
                    reason: Some(reason.clone()),
                    ..expert_status(&fc, "decline", by)
                },
            )),
            ConsultationEvent::Report {
                findings,
                impression,
                recommendations,
            } => Some((
                MessageType::ConsultReport,
                StatusBody {
                    report: Some(ReportBody {
                        findings: findings.clone(),
                        impression: impression.clone(),
                        recommendations: recommendations.clone(),
                    }),
                    ..expert_status(&fc, "report", by)
                },
            )),
            ConsultationEvent::Invite { member } => {
                let m = st.store().get_user(*member).await?;
                Some((
                    MessageType::ConsultInvite,
                    StatusBody {
                        member: Some(person_of(&m)),
                        ..expert_status(&fc, "invite", by)
                    },
                ))
            }
            _ => None,
        };
        if let Some((kind, body)) = body {
            let body = serde_json::to_value(body).map_err(AppError::internal)?;
            changes.push(Change::Enqueue(fed.outgoing(
                &fc.origin_node,
                kind,
                body,
                Some(after.id),
            )?));
        }
        return Ok((changes, audit));
    }
    // Home side: a case newly offered to a stand-in expert is sent as a packet.
    if let Some(expert) = after.assigned_to {
        if before.assigned_to != Some(expert) {
            if let Some(remote) = st.store().fed_remote_user(expert).await? {
                let (c, a) = packet(st, fed, actor, after, &remote).await?;
                changes.extend(c);
                audit.extend(a);
            }
        }
    }
    // The referrer's side of the loop goes to every node the case was shared with.
    let outgoing = match ev {
        ConsultationEvent::Acknowledge => Some(StatusBody {
            ..home_status(after, "acknowledge", person_of(actor))
        }),
        ConsultationEvent::RecordOutcome { status, note } => Some(StatusBody {
            outcome: Some(OutcomeBody {
                status: status.clone(),
                note: note.clone(),
            }),
            ..home_status(after, "record_outcome", person_of(actor))
        }),
        ConsultationEvent::Cancel { reason } => Some(StatusBody {
            reason: Some(reason.clone()),
            ..home_status(after, "cancel", person_of(actor))
        }),
        _ => None,
    };
    if let Some(body) = outgoing {
        let body = serde_json::to_value(body).map_err(AppError::internal)?;
        for node in participant_nodes(st, before).await? {
            changes.push(Change::Enqueue(fed.outgoing(
                &node,
                MessageType::ConsultStatus,
                body.clone(),
                Some(after.id),
            )?));
        }
    }
    Ok((changes, audit))
}

/// The nodes of the case's current foreign participants (the assigned expert, panel members): they get its
/// messages and the referrer's closing of the loop; a node whose expert declined gets nothing more.
async fn participant_nodes(st: &AppState, c: &Consultation) -> AppResult<Vec<String>> {
    let mut nodes = Vec::new();
    for u in c
        .assigned_to
        .iter()
        .chain(c.panel.iter().map(|m| &m.user_id))
    {
        if let Some(r) = st.store().fed_remote_user(*u).await? {
            if !nodes.contains(&r.node_id) {
                nodes.push(r.node_id);
            }
        }
    }
    Ok(nodes)
}

fn person_of(u: &User) -> Person {
    Person {
        id: u.id.to_string(),
        name: u.display_name.clone(),
        specialties: u
            .profile
            .as_ref()
            .map(|p| p.specialties.clone())
            .unwrap_or_default(),
    }
}

fn expert_status(fc: &ForeignCase, event: &str, by: Person) -> StatusBody {
    StatusBody {
        case: fc.origin_case.clone(),
        event: event.to_owned(),
        by,
        reason: None,
        report: None,
        member: None,
        outcome: None,
    }
}

fn home_status(c: &Consultation, event: &str, by: Person) -> StatusBody {
    StatusBody {
        case: c.id.to_string(),
        event: event.to_owned(),
        by,
        reason: None,
        report: None,
        member: None,
        outcome: None,
    }
}

/// Largest total of attachment bytes in one packet (the envelope limit is 8 MiB; base64 adds a third).
const MAX_PACKET_ATTACHMENT_BYTES: i64 = 5 * 1024 * 1024;

/// Build the case packet for `remote`'s node: only what the consent allows.
async fn packet(
    st: &AppState,
    fed: &Federation,
    actor: &User,
    c: &Consultation,
    remote: &RemoteUser,
) -> AppResult<(Vec<Change>, Vec<AuditEvent>)> {
    let system = Actor {
        user_id: c.referrer_id,
        institution_id: c.institution_id,
        role: Role::Referrer,
        patient_id: None,
    };
    let patient = st.store().get_patient(&system, c.patient_id).await?;
    let consents = st.store().consents(&system, c.patient_id).await?;
    if !consent_in_force(&consents, ConsentScope::CrossBorder) {
        return Err(AppError::unprocessable(
            "error-consent-cross-border",
            "the patient has not consented to their case leaving the country",
        ));
    }
    let identity = consent_in_force(&consents, ConsentScope::ShareIdentity);
    let referrer = st.store().get_user(c.referrer_id).await?;
    let mut attachments = Vec::new();
    let mut total = 0i64;
    if !c.shared_attachments.is_empty() {
        for a in st.store().list_attachments(&system, c.id).await? {
            if !c.shared_attachments.contains(&a.id) {
                continue;
            }
            total += a.size;
            if total > MAX_PACKET_ATTACHMENT_BYTES {
                return Err(AppError::unprocessable(
                    "error-packet-too-large",
                    "the attachments selected for sharing exceed 5 MiB together",
                ));
            }
            let bytes = st.blobs().get(&a.blob_key).await?;
            attachments.push(PacketAttachment {
                filename: a.filename,
                content_type: a.content_type,
                sha256: a.sha256,
                data: base64::engine::general_purpose::STANDARD.encode(&bytes),
            });
        }
    }
    let pseudonym = format!(
        "p-{}",
        &hex::encode(Sha256::digest(Uuid::new_v4().as_bytes()))[..10]
    );
    let studies =
        crate::study_transfer::prepare(st, fed, c, &remote.node_id, identity, &pseudonym).await?;
    let study_count = studies.len();
    let body = PacketBody {
        case: c.id.to_string(),
        expert: remote.remote_id.clone(),
        referrer: person_of(&referrer),
        specialty: c.specialty.clone(),
        urgency: c.urgency,
        question: c.question.clone(),
        clinical_summary: c.clinical_summary.clone(),
        languages: c.languages.clone(),
        due_at: c.due_at,
        retention_days: fed.cfg.retention_days,
        patient: PacketPatient {
            pseudonym,
            sex: patient.sex,
            birth_year: patient.birth_date.year(),
            given_name: identity.then(|| patient.given_name.clone()),
            family_name: identity.then(|| patient.family_name.clone()),
            national_id: if identity {
                patient.national_id.clone()
            } else {
                None
            },
        },
        attachments,
        studies,
    };
    let body = serde_json::to_value(body).map_err(AppError::internal)?;
    let out = fed.outgoing(
        &remote.node_id,
        MessageType::ConsultPacket,
        body,
        Some(c.id),
    )?;
    let detail = format!(
        "case packet to {} ({}{} attachment(s), {} DICOM stud(ies){})",
        remote.node_id,
        if identity {
            "identified, "
        } else {
            "pseudonymised, "
        },
        c.shared_attachments.len(),
        study_count,
        if identity || study_count == 0 {
            ""
        } else {
            " de-identified"
        }
    );
    let audit = vec![user_event(
        actor,
        AuditAction::Export,
        "consultation",
        c.id,
        Some(c.patient_id),
        &detail,
    )];
    let changes = vec![
        Change::MarkShared {
            consultation_id: c.id,
            node_id: remote.node_id.clone(),
            at: Utc::now(),
        },
        Change::Enqueue(out),
    ];
    Ok((changes, audit))
}

/// Whether a case may be offered to an expert of another node (the patient's cross-border consent).
pub async fn may_cross_border(st: &AppState, c: &Consultation) -> AppResult<bool> {
    let system = Actor {
        user_id: c.referrer_id,
        institution_id: c.institution_id,
        role: Role::Referrer,
        patient_id: None,
    };
    let consents = st.store().consents(&system, c.patient_id).await?;
    Ok(consent_in_force(&consents, ConsentScope::CrossBorder))
}

/// The outbox rows a new thread message causes: to the home node (mirror case) or to the nodes the case was
/// shared with (home case).
pub async fn after_message(st: &AppState, c: &Consultation, m: &Message) -> AppResult<Vec<Change>> {
    let Some(fed) = st.federation() else {
        return Ok(Vec::new());
    };
    let author = st.store().get_user(m.author_id).await?;
    let (case, nodes) = match st.store().fed_foreign_case(c.id).await? {
        Some(fc) => (fc.origin_case, vec![fc.origin_node]),
        None => (c.id.to_string(), participant_nodes(st, c).await?),
    };
    let body = serde_json::to_value(MessageBody {
        case,
        id: m.id,
        parent: m.parent_id,
        author: person_of(&author),
        body: m.body.clone(),
        created_at: m.created_at,
    })
    .map_err(AppError::internal)?;
    nodes
        .iter()
        .map(|n| {
            fed.outgoing(n, MessageType::ConsultMessage, body.clone(), Some(c.id))
                .map(Change::Enqueue)
        })
        .collect()
}

// ------------------------------------------------------------------------------------------------------------
// Expert node: a packet arrives

async fn receive_packet(st: &AppState, from: &str, p: PacketBody) -> Result<Effect, Refusal> {
    let now = Utc::now();
    let expert_id: UserId = p
        .expert
        .parse()
        .map_err(|_| Refusal::Ignore("unknown expert".into()))?;
    let expert = match st.store().get_user(expert_id).await {
        Ok(u) => u,
        Err(StoreError::NotFound(_)) => {
            return decline_back(st, from, &p, "the expert is not known here").await
        }
        Err(e) => return Err(e.into()),
    };
    if expert.role != Role::Consultant
        || !expert.active
        || st.store().fed_remote_user(expert.id).await?.is_some()
    {
        return decline_back(st, from, &p, "the expert is not available").await;
    }
    if !is_known_specialty(&p.specialty) {
        return decline_back(st, from, &p, "unknown specialty").await;
    }
    let mut unit = Unit::new(st, from);
    let inst = unit.institution(None).await?;
    let referrer = unit.person(&p.referrer, Role::Referrer, None).await?;
    // The case was offered here before (another expert, after a decline): re-offer the mirror.
    if let Some(fc) = st.store().fed_foreign_case_by_origin(from, &p.case).await? {
        let mut c = st.store().fed_consultation(fc.consultation_id).await?;
        // The mirror's own referrer stand-in offers it again (the home node acts through it).
        let ref_actor = Actor {
            user_id: c.referrer_id,
            institution_id: inst,
            role: Role::Referrer,
            patient_id: None,
        };
        let ref_user = audit_identity(&ref_actor, &p.referrer.name, from);
        let v = c.version;
        c.apply(
            &ref_actor,
            &ConsultationEvent::Assign {
                consultant: expert.id,
                automatic: true,
                team: None,
            },
            now,
            &st.config().sla,
        )?;
        c.due_at = p.due_at.or(c.due_at);
        let mut e = Effect::applied();
        e.consultation = Some(c.id);
        e.audit.push(user_event(
            &ref_user,
            AuditAction::Update,
            "consultation",
            c.id,
            Some(c.patient_id),
            "assign:remote",
        ));
        unit.changes.push(Change::UpdateConsultation {
            consultation: c,
            expected_version: v,
        });
        e.changes = unit.changes;
        return Ok(e);
    }
    let identified = p.patient.family_name.is_some();
    let patient = Patient {
        id: PatientId::new(),
        institution_id: inst,
        given_name: p
            .patient
            .given_name
            .clone()
            .unwrap_or_default()
            .chars()
            .take(200)
            .collect(),
        family_name: p
            .patient
            .family_name
            .clone()
            .unwrap_or_else(|| p.patient.pseudonym.clone())
            .chars()
            .take(200)
            .collect(),
        birth_date: NaiveDate::from_ymd_opt(p.patient.birth_year, 1, 1)
            .ok_or_else(|| Refusal::Ignore("bad birth year".into()))?,
        sex: p.patient.sex,
        national_id: p.patient.national_id.clone(),
        languages: p.languages.clone(),
    };
    let mut c = Consultation::draft(
        inst,
        referrer,
        patient.id,
        p.question.chars().take(4000).collect(),
        p.clinical_summary.chars().take(20_000).collect(),
        p.specialty.clone(),
        p.urgency,
        p.languages.clone(),
        now,
    );
    c.state = ConsultationState::Assigned;
    c.submitted_at = Some(now);
    c.due_at = p
        .due_at
        .or_else(|| Some(now + st.config().sla.duration(p.urgency)));
    c.assigned_to = Some(expert.id);
    let mut e = Effect::applied();
    e.consultation = Some(c.id);
    let retention = Duration::days(i64::from(p.retention_days.clamp(1, 3650)));
    let ref_user = audit_identity(
        &Actor {
            user_id: referrer,
            institution_id: inst,
            role: Role::Referrer,
            patient_id: None,
        },
        &p.referrer.name,
        from,
    );
    e.audit.push(user_event(
        &ref_user,
        AuditAction::Create,
        "consultation",
        c.id,
        Some(patient.id),
        if identified {
            "case packet received (identified)"
        } else {
            "case packet received (pseudonymised)"
        },
    ));
    unit.changes.push(Change::InsertPatient(patient));
    unit.changes.push(Change::InsertConsultation(c.clone()));
    unit.changes.push(Change::LinkForeignCase(ForeignCase {
        consultation_id: c.id,
        origin_node: from.to_owned(),
        origin_case: p.case.clone(),
        retention_until: now + retention,
    }));
    for a in &p.attachments {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(a.data.as_bytes())
            .map_err(|_| Refusal::Ignore("attachment is not base64".into()))?;
        if hex::encode(Sha256::digest(&bytes)) != a.sha256 {
            return Err(Refusal::Ignore("attachment digest mismatch".into()));
        }
        if !crate::consult::ALLOWED_TYPES.contains(&a.content_type.as_str()) {
            return Err(Refusal::Ignore("attachment type not allowed".into()));
        }
        let key = format!("federation/{}/{}", c.id, a.sha256);
        // Written before the commit: a crash in between leaves an unreferenced blob, never a dangling record.
        st.blobs()
            .put(&key, bytes.clone().into())
            .await
            .map_err(|e| Refusal::Ignore(e.code.to_owned()))?;
        unit.changes.push(Change::InsertAttachment(Attachment {
            id: AttachmentId::new(),
            consultation_id: c.id,
            filename: a.filename.chars().take(200).collect(),
            content_type: a.content_type.clone(),
            size: bytes.len() as i64,
            sha256: a.sha256.clone(),
            blob_key: key,
            uploaded_by: referrer,
            created_at: now,
        }));
    }
    for m in &p.studies {
        unit.changes.push(
            crate::study_transfer::incoming_link(c.id, referrer, from, m, now)
                .map_err(Refusal::Ignore)?,
        );
    }
    e.changes = unit.changes;
    Ok(e)
}

/// The packet names an expert who cannot take it: tell the home node (as a decline by nobody in particular), so
/// that it routes again.
async fn decline_back(
    st: &AppState,
    from: &str,
    p: &PacketBody,
    why: &str,
) -> Result<Effect, Refusal> {
    let fed = st
        .federation()
        .ok_or_else(|| Refusal::Ignore("federation off".into()))?;
    let body = StatusBody {
        reason: Some(why.to_owned()),
        ..StatusBody {
            case: p.case.clone(),
            event: "decline".into(),
            by: Person {
                id: p.expert.clone(),
                name: String::new(),
                specialties: Vec::new(),
            },
            reason: None,
            report: None,
            member: None,
            outcome: None,
        }
    };
    let body = serde_json::to_value(body).map_err(|e| Refusal::Ignore(e.to_string()))?;
    let out = fed
        .outgoing(from, MessageType::ConsultStatus, body, None)
        .map_err(Refusal::from)?;
    let mut e = Effect::ignored(why.to_owned());
    e.changes.push(Change::Enqueue(out));
    Ok(e)
}

// ------------------------------------------------------------------------------------------------------------
// Both sides: events and messages about a shared case

/// Find the local case an envelope is about: the home case (its id) if `from` takes part in it, or the mirror of
/// `from`'s case.
async fn case_for(
    st: &AppState,
    from: &str,
    case: &str,
) -> Result<(Consultation, Option<ForeignCase>), Refusal> {
    if let Some(fc) = st.store().fed_foreign_case_by_origin(from, case).await? {
        let c = load_any(st, fc.consultation_id).await?;
        return Ok((c, Some(fc)));
    }
    let id: ConsultationId = case
        .parse()
        .map_err(|_| Refusal::Ignore("unknown case".into()))?;
    if !st
        .store()
        .fed_shared_nodes(id)
        .await?
        .iter()
        .any(|n| n == from)
    {
        return Err(Refusal::Ignore("unknown case".into()));
    }
    Ok((load_any(st, id).await?, None))
}

/// A case by id (the node itself acts here, on behalf of the envelope's sender, whose right to act on this case
/// [`case_for`] checked).
async fn load_any(st: &AppState, id: ConsultationId) -> Result<Consultation, Refusal> {
    Ok(st.store().fed_consultation(id).await?)
}

async fn receive_status(st: &AppState, from: &str, b: StatusBody) -> Result<Effect, Refusal> {
    let (mut c, foreign) = case_for(st, from, &b.case).await?;
    let v = c.version;
    let before = c.clone();
    let now = Utc::now();
    let mut unit = Unit::new(st, from);
    let (ev, who) = if foreign.is_some() {
        // Expert side: the home node's referrer closes the loop.
        let ev = match b.event.as_str() {
            "acknowledge" => ConsultationEvent::Acknowledge,
            "record_outcome" => {
                let o = b
                    .outcome
                    .as_ref()
                    .ok_or_else(|| Refusal::Ignore("outcome missing".into()))?;
                ConsultationEvent::RecordOutcome {
                    status: o.status.clone(),
                    note: o.note.clone(),
                }
            }
            "cancel" => ConsultationEvent::Cancel {
                reason: b.reason.clone().unwrap_or_default(),
            },
            other => {
                return Err(Refusal::Ignore(format!(
                    "event {other} not accepted from the home node"
                )))
            }
        };
        (ev, c.referrer_id)
    } else {
        // Home side: the foreign expert answers.
        let by = unit.person(&b.by, Role::Consultant, None).await?;
        let ev = match b.event.as_str() {
            "accept" => ConsultationEvent::Accept,
            "decline" => ConsultationEvent::Decline {
                reason: b.reason.clone().unwrap_or_else(|| "declined".into()),
            },
            "report" => {
                let r = b
                    .report
                    .as_ref()
                    .ok_or_else(|| Refusal::Ignore("report missing".into()))?;
                ConsultationEvent::Report {
                    findings: r.findings.clone(),
                    impression: r.impression.clone(),
                    recommendations: r.recommendations.clone(),
                }
            }
            "invite" => {
                let m = b
                    .member
                    .as_ref()
                    .ok_or_else(|| Refusal::Ignore("member missing".into()))?;
                let member = unit.person(m, Role::Consultant, None).await?;
                ConsultationEvent::Invite { member }
            }
            other => {
                return Err(Refusal::Ignore(format!(
                    "event {other} not accepted from an expert node"
                )))
            }
        };
        (ev, by)
    };
    // The stand-in may be created by this very unit: build its actor without reading it back.
    let inst = unit.institution(None).await?;
    let actor = Actor {
        user_id: who,
        institution_id: if foreign.is_some() {
            c.institution_id
        } else {
            inst
        },
        role: if foreign.is_some() {
            Role::Referrer
        } else {
            Role::Consultant
        },
        patient_id: None,
    };
    c.apply(&actor, &ev, now, &st.config().sla)?;
    let audit_user = audit_identity(&actor, &b.by.name, from);
    let mut e = Effect::applied();
    e.consultation = Some(c.id);
    e.audit.push(user_event(
        &audit_user,
        AuditAction::Update,
        "consultation",
        c.id,
        Some(c.patient_id),
        ev.name(),
    ));
    // After a foreign decline the home node routes again, as after a local one.
    if foreign.is_none() && c.state == ConsultationState::Submitted && st.config().auto_assign {
        let referrer = st.store().get_user(c.referrer_id).await?;
        crate::consult::auto_route(
            st,
            &Actor::from(&referrer),
            &audit_user,
            &mut c,
            now,
            &mut e.audit,
        )
        .await?;
        let (more, audit) = after_event(st, &referrer, &before, &c, &ev).await?;
        unit.changes.extend(more);
        e.audit.extend(audit);
    }
    // Last: the stand-ins this unit creates must exist before the case refers to them.
    unit.changes.push(Change::UpdateConsultation {
        consultation: c,
        expected_version: v,
    });
    e.changes = unit.changes;
    Ok(e)
}

async fn receive_message(st: &AppState, from: &str, b: MessageBody) -> Result<Effect, Refusal> {
    let (c, _) = case_for(st, from, &b.case).await?;
    let mut unit = Unit::new(st, from);
    let author = unit.person(&b.author, Role::Consultant, None).await?;
    let body: String = b.body.trim().chars().take(20_000).collect();
    if body.is_empty() {
        return Err(Refusal::Ignore("empty message".into()));
    }
    let m = Message {
        id: b.id,
        consultation_id: c.id,
        parent_id: b.parent,
        author_id: author,
        author_name: format!(
            "{} ({from})",
            b.author.name.chars().take(200).collect::<String>()
        ),
        body,
        created_at: b.created_at,
    };
    let audit_user = audit_identity(
        &Actor {
            user_id: author,
            institution_id: unit.institution(None).await?,
            role: Role::Consultant,
            patient_id: None,
        },
        &b.author.name,
        from,
    );
    let mut e = Effect::applied();
    e.consultation = Some(c.id);
    e.audit.push(user_event(
        &audit_user,
        AuditAction::Create,
        "message",
        m.id,
        Some(c.patient_id),
        "received",
    ));
    unit.changes.push(Change::InsertMessage(m));
    e.changes = unit.changes;
    Ok(e)
}

// ------------------------------------------------------------------------------------------------------------
// Retention

/// Purge mirrored cases whose retention period ended: the packet, its patient pseudonym, thread and attachments,
/// and the DICOM studies that came with it and that no other case links (removed from the archive first, see
/// [`crate::study_transfer::purge_received`]). Also removes this node's study bundles older than the retention
/// it gives its own packets (no receiver can still use them: their mirror cases are gone).
pub async fn retention_sweep(st: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    if let Some(fed) = st.federation() {
        let keep = Duration::days(i64::from(fed.cfg.retention_days.clamp(1, 3650)));
        crate::study_transfer::expire_bundles(st, now - keep).await?;
    }
    let mut n = 0;
    for fc in st.store().fed_expired_foreign_cases(now, 200).await? {
        let c = st.store().fed_consultation(fc.consultation_id).await?;
        let keys = st.store().fed_case_blob_keys(fc.consultation_id).await?;
        let mut audit = vec![system_event(
            AuditAction::Delete,
            "consultation",
            fc.consultation_id,
            Some(c.patient_id),
            &format!("retention ended for the packet from {}", fc.origin_node),
        )];
        // The studies go before the case: a crash in between leaves the case (purged again by the next sweep,
        // which finds its studies already gone), never studies that no case links and no sweep would find.
        let mut studies_ok = true;
        for s in st.store().fed_studies_to_purge(fc.consultation_id).await? {
            match crate::study_transfer::purge_received(st, &s).await {
                Ok(detail) => audit.push(system_event(
                    AuditAction::Delete,
                    "dicom-study",
                    &s.study_uid,
                    Some(c.patient_id),
                    &detail,
                )),
                Err(e) => {
                    tracing::error!(consultation_id = %fc.consultation_id, error = %e.message, "a study of a purged packet could not be removed; the case is kept for the next sweep");
                    studies_ok = false;
                }
            }
        }
        if !studies_ok {
            continue;
        }
        commit(
            st,
            vec![Change::PurgeForeignCase(fc.consultation_id)],
            audit,
        )
        .await?;
        for k in keys {
            if let Err(e) = st.blobs().delete(&k).await {
                tracing::warn!(error = %e.message, "could not delete a purged attachment's content");
            }
        }
        tracing::info!(consultation_id = %fc.consultation_id, origin = %fc.origin_node, "packet purged at the end of its retention");
        n += 1;
    }
    Ok(n)
}

/// Enqueue `count` `net.ping` envelopes to `to` in one transaction (the soak tool's load).
pub async fn enqueue_pings(st: &AppState, to: &str, count: u32) -> AppResult<u32> {
    let Some(fed) = st.federation() else {
        return Err(AppError::unprocessable(
            "error-federation-off",
            "this node is not federated",
        ));
    };
    let node = NodeId::new(to)
        .map_err(|e| AppError::unprocessable("error-unknown-node", e.to_string()))?;
    if node == *fed.me() || fed.directory().member(&node).is_err() {
        return Err(AppError::unprocessable(
            "error-unknown-node",
            format!("{to} is not another member of the directory"),
        ));
    }
    let mut changes = Vec::with_capacity(count as usize);
    for i in 0..count {
        let mut body = Map::new();
        body.insert("seq".into(), Value::from(i));
        changes.push(Change::Enqueue(fed.outgoing(
            to,
            MessageType::NetPing,
            Value::Object(body),
            None,
        )?));
    }
    commit(st, changes, Vec::new()).await?;
    Ok(count)
}

/// This node in the network, for the admin page and API: who we are, the directory, outbox and inbox counts.
pub async fn status(st: &AppState) -> AppResult<Value> {
    let Some(fed) = st.federation() else {
        return Ok(serde_json::json!({ "federated": false }));
    };
    let dir = fed.directory();
    let counts = st.store().fed_counts().await?;
    let members: Vec<Value> = dir
        .members()
        .iter()
        .map(|m| {
            serde_json::json!({
                "node_id": m.node_id,
                "display_name": m.display_name,
                "level": m.level,
                "country": m.country,
                "base_url": m.base_url,
                "me": m.node_id == *fed.me(),
            })
        })
        .collect();
    Ok(serde_json::json!({
        "federated": true,
        "node_id": fed.me(),
        "directory_serial": dir.serial(),
        "directory_expires_at": dir.body().expires_at,
        "members": members,
        "counts": counts,
        "delivered_since_start": fed.delivered_since_start(),
    }))
}

/// The administrator's retry of a dead letter: pending again, due now, its destination's worker woken.
pub async fn retry(st: &AppState, p: &crate::auth::Principal, id: Uuid) -> AppResult<String> {
    let audit = vec![crate::audit::event(
        p,
        AuditAction::Update,
        "federation-envelope",
        id,
        None,
        "retry",
    )];
    let dest = st.store().fed_retry(id, Utc::now(), audit).await?;
    if let Some(f) = st.federation() {
        f.wake(std::slice::from_ref(&dest));
    }
    Ok(dest)
}
