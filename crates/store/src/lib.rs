//! Storage in domain terms.
//!
//! API boundary: the server talks to storage only through [`Store`]. Every read of patient data takes the acting
//! [`Actor`] and returns only what that actor may see (institution and role scoping lives in the backend's SQL, so it
//! cannot be forgotten by a handler). Every write takes the audit events it causes and commits them in the same
//! transaction, chained onto the audit hash chain.
//!
//! Backends: `caravan-store-sqlite` (default, embedded) and `caravan-store-postgres` (scale-out); both must pass
//! [`conformance`].

pub mod conformance;
pub mod federation;
pub mod rx;
pub mod studies;
pub mod surveillance;
pub mod visits;

pub use federation::*;
pub use rx::*;
pub use studies::{CaseStudy, StudyState};
pub use surveillance::*;
pub use visits::*;

use async_trait::async_trait;
use caravan_domain::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0} already exists")]
    Duplicate(&'static str),
    #[error("the record was changed by someone else; reload and try again")]
    Conflict,
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A signed-in session as stored (the token itself is never stored, only its SHA-256).
#[derive(Clone, Debug)]
pub struct SessionRecord {
    pub user: User,
    pub csrf_token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ApiTokenInfo {
    pub id: String,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub consultation_id: ConsultationId,
    pub parent_id: Option<MessageId>,
    pub author_id: UserId,
    pub author_name: String,
    pub body: String,
    #[serde(with = "stored_instant")]
    pub created_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Attachment {
    pub id: AttachmentId,
    pub consultation_id: ConsultationId,
    pub filename: String,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    /// Key of the bytes in the blob store.
    pub blob_key: String,
    pub uploaded_by: UserId,
    #[serde(with = "stored_instant")]
    pub created_at: DateTime<Utc>,
}

/// Instants of messages and attachments in JSON as they are stored: RFC 3339 with microseconds. SQLite hands a
/// case read its thread as stored text, and a thread page is serialised from parsed messages: both then spell the
/// same instant alike (serde's default would drop trailing zeros).
mod stored_instant {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(at: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&caravan_domain::audit::format_audit_time(*at))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        DateTime::<Utc>::deserialize(d)
    }
}

/// A participant as a case page names them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonRef {
    pub user_id: UserId,
    pub display_name: String,
    pub institution_name: String,
}

/// Filters for listing consultations; all optional, always combined with the actor's scope.
#[derive(Clone, Debug, Default)]
pub struct ConsultationFilter {
    pub states: Vec<ConsultationState>,
    pub assigned_to: Option<UserId>,
    pub referrer_id: Option<UserId>,
    pub patient_id: Option<PatientId>,
    /// Only cases whose SLA clock ran out at this instant.
    pub overdue_at: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// A consultation with the names the UI shows next to it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ConsultationSummary {
    pub consultation: Consultation,
    pub patient_name: String,
    pub referrer_name: String,
    pub assignee_name: Option<String>,
}

/// Everything a case page shows of one consultation, read at once: the case, its patient, the thread in order,
/// the attachments in order and the participants (referrer, assignee, panel) by user id.
/// `M` is how the thread comes: parsed (`Vec<Message>`), or as [`RawThread`] for a reader that only passes it on.
#[derive(Clone, Debug)]
pub struct CaseBundle<M = Vec<Message>> {
    pub consultation: Consultation,
    pub patient: Patient,
    pub messages: M,
    /// Messages in the whole thread: `messages` may hold only the latest [`THREAD_WINDOW`] of them.
    pub messages_total: usize,
    pub attachments: Vec<Attachment>,
    pub people: Vec<PersonRef>,
}

/// Most messages [`Store::case_bundle_raw`] carries: the latest ones. A case read returned the whole thread
/// before, and a long one made every read of the case heavier (the API's readers page back through
/// `list_messages` for the rest).
pub const THREAD_WINDOW: usize = 100;

/// A case's thread as the JSON text of its `Vec<Message>` (the serde form, in thread order), for the API to pass
/// through: a long thread costs a typed parse and a serialisation per message otherwise, most of a case read.
pub type RawThread = Box<serde_json::value::RawValue>;

impl<M> CaseBundle<M> {
    /// The same bundle with the thread in another form.
    pub fn map_messages<N>(self, f: impl FnOnce(M) -> N) -> CaseBundle<N> {
        CaseBundle {
            consultation: self.consultation,
            patient: self.patient,
            messages: f(self.messages),
            messages_total: self.messages_total,
            attachments: self.attachments,
            people: self.people,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct PatientFilter {
    pub name: Option<String>,
    pub birth_date: Option<chrono::NaiveDate>,
    pub limit: Option<u32>,
}

#[async_trait]
pub trait Store: VisitStore + RxStore + Send + Sync + 'static {
    /// Which backend this is (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str;

    // --- institutions and users (administration; no patient data) ---
    async fn insert_institution(&self, i: &Institution, audit: Vec<AuditEvent>) -> Result<()>;
    async fn list_institutions(&self) -> Result<Vec<Institution>>;
    async fn get_institution(&self, id: InstitutionId) -> Result<Institution>;
    async fn insert_user(
        &self,
        u: &User,
        password_hash: Option<&str>,
        audit: Vec<AuditEvent>,
    ) -> Result<()>;
    async fn update_user(&self, u: &User, audit: Vec<AuditEvent>) -> Result<()>;
    async fn get_user(&self, id: UserId) -> Result<User>;
    /// The user and their password hash, for sign-in.
    async fn get_user_credentials(&self, username: &str) -> Result<(User, Option<String>)>;
    async fn list_users(&self, institution: Option<InstitutionId>) -> Result<Vec<User>>;
    /// Display name and institution name of each user id given (unknown ids are left out), in one query: what a
    /// case page shows of its participants.
    async fn people(&self, ids: &[UserId]) -> Result<Vec<PersonRef>>;
    /// Active consultants with the given specialty and their current open-case counts, for routing.
    async fn routing_candidates(&self, specialty: &str) -> Result<Vec<routing::Candidate>>;
    async fn insert_team(&self, t: &Team, audit: Vec<AuditEvent>) -> Result<()>;
    async fn get_team(&self, id: TeamId) -> Result<Team>;
    async fn list_teams(&self, institution: Option<InstitutionId>) -> Result<Vec<Team>>;
    /// The teams of a specialty, with the routing records of their active consultants (leads and members, any
    /// specialty), for `routing::rank_teams`.
    async fn routing_teams(&self, specialty: &str) -> Result<(Vec<Team>, Vec<routing::Candidate>)>;

    // --- sessions and API tokens ---
    async fn create_session(
        &self,
        token_hash: &str,
        user: UserId,
        csrf: &str,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;
    async fn get_session(&self, token_hash: &str) -> Result<SessionRecord>;
    async fn delete_session(&self, token_hash: &str) -> Result<()>;
    async fn create_api_token(
        &self,
        token_hash: &str,
        user: UserId,
        name: &str,
        audit: Vec<AuditEvent>,
    ) -> Result<ApiTokenInfo>;
    async fn user_for_api_token(&self, token_hash: &str) -> Result<User>;
    async fn list_api_tokens(&self, user: UserId) -> Result<Vec<ApiTokenInfo>>;
    async fn revoke_api_token(&self, user: UserId, id: &str, audit: Vec<AuditEvent>) -> Result<()>;

    // --- patients and consent (scoped) ---
    async fn insert_patient(&self, p: &Patient, audit: Vec<AuditEvent>) -> Result<()>;
    async fn get_patient(&self, actor: &Actor, id: PatientId) -> Result<Patient>;
    async fn list_patients(&self, actor: &Actor, filter: &PatientFilter) -> Result<Vec<Patient>>;
    async fn insert_consent(&self, c: &Consent, audit: Vec<AuditEvent>) -> Result<()>;
    /// The consent history of a patient the actor may see.
    async fn consents(&self, actor: &Actor, patient: PatientId) -> Result<Vec<Consent>>;
    /// One consent record, if its patient is in the actor's scope.
    async fn get_consent(&self, actor: &Actor, id: ConsentId) -> Result<Consent>;

    // --- consultations (scoped) ---
    async fn insert_consultation(&self, c: &Consultation, audit: Vec<AuditEvent>) -> Result<()>;
    /// Save a consultation whose version was `expected_version` when loaded; `Conflict` if it changed since.
    async fn update_consultation(
        &self,
        c: &Consultation,
        expected_version: i64,
        audit: Vec<AuditEvent>,
    ) -> Result<()>;
    async fn get_consultation(&self, actor: &Actor, id: ConsultationId) -> Result<Consultation>;
    /// A consultation in the actor's scope with everything its page shows (see [`CaseBundle`]); `NotFound` when it
    /// is absent or out of scope. The patient, thread and attachments of a visible case are visible by the scoping
    /// rules. The default composes the single reads; a backend may answer in fewer round trips.
    async fn case_bundle(&self, actor: &Actor, id: ConsultationId) -> Result<CaseBundle> {
        let consultation = self.get_consultation(actor, id).await?;
        let patient = self.get_patient(actor, consultation.patient_id).await?;
        let messages = self.list_messages(actor, id).await?;
        let attachments = self.list_attachments(actor, id).await?;
        let mut ids = vec![consultation.referrer_id];
        ids.extend(consultation.assigned_to);
        ids.extend(consultation.panel.iter().map(|m| m.user_id));
        ids.sort();
        ids.dedup();
        let people = self.people(&ids).await?;
        Ok(CaseBundle {
            consultation,
            patient,
            messages_total: messages.len(),
            messages,
            attachments,
            people,
        })
    }
    /// [`Store::case_bundle`] with only the latest [`THREAD_WINDOW`] messages of the thread (in thread order), as
    /// JSON text (see [`RawThread`]). The default serialises them from the parsed thread; a backend that builds
    /// the thread as JSON may hand it on unparsed.
    async fn case_bundle_raw(
        &self,
        actor: &Actor,
        id: ConsultationId,
    ) -> Result<CaseBundle<RawThread>> {
        let bundle = self.case_bundle(actor, id).await?;
        let latest = &bundle.messages[bundle.messages.len().saturating_sub(THREAD_WINDOW)..];
        let raw = serde_json::value::to_raw_value(latest)
            .map_err(|e| StoreError::Corrupt(format!("thread: {e}")))?;
        Ok(bundle.map_messages(|_| raw))
    }
    async fn list_consultations(
        &self,
        actor: &Actor,
        filter: &ConsultationFilter,
    ) -> Result<Vec<ConsultationSummary>>;
    /// Unscoped: cases whose SLA ran out and that were not escalated yet (for the escalation sweep).
    async fn overdue_unescalated(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Consultation>>;
    async fn insert_message(&self, m: &Message, audit: Vec<AuditEvent>) -> Result<()>;
    /// The thread of a consultation the actor may see (empty when it is outside their scope).
    async fn list_messages(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<Message>>;
    /// One message, if its consultation is in the actor's scope.
    async fn get_message(&self, actor: &Actor, id: MessageId) -> Result<Message>;
    async fn insert_attachment(&self, a: &Attachment, audit: Vec<AuditEvent>) -> Result<()>;
    /// The attachments of a consultation the actor may see (empty when it is outside their scope).
    async fn list_attachments(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<Attachment>>;
    /// One attachment's metadata, if its consultation is in the actor's scope.
    async fn get_attachment(&self, actor: &Actor, id: AttachmentId) -> Result<Attachment>;
    /// Unscoped: those of `keys` that some attachment row names (for the blob sweep, which removes content no
    /// row names).
    async fn attachment_blob_keys_in_use(&self, keys: &[String]) -> Result<Vec<String>>;
    /// The DICOM studies linked to a consultation the actor may see (empty when it is outside their scope);
    /// linked with [`Change::LinkStudy`].
    async fn list_case_studies(&self, actor: &Actor, c: ConsultationId) -> Result<Vec<CaseStudy>>;
    /// Unscoped: studies whose transfer from another node is still running (for the node's fetcher).
    async fn fed_pending_studies(&self, limit: u32) -> Result<Vec<CaseStudy>>;

    // --- audit ---
    /// Append events (for reads, which have no write of their own to share a transaction with).
    async fn append_audit(&self, events: Vec<AuditEvent>) -> Result<()>;
    /// Events about one patient, newest first: the patient's access log. A multi-record event (a search) appears
    /// when the patient is among its subjects, narrowed to this patient's subjects
    /// ([`AuditRecord::narrowed`]).
    async fn audit_for_patient(&self, patient: PatientId, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Events about one entity, newest first. Multi-record events that list the entity are found through its
    /// patient's index, so they appear only when `patient` is given (narrowed to this entity's subject).
    async fn audit_for_entity(
        &self,
        entity_type: &str,
        entity_id: &str,
        patient: Option<PatientId>,
        limit: u32,
    ) -> Result<Vec<AuditRecord>>;
    /// Records with `seq > after`, in order, at most `limit`: for verification and export.
    async fn audit_page(&self, after: i64, limit: u32) -> Result<Vec<AuditRecord>>;
    /// Of the (patient, event) pairs given, those that the patients' index of multi-record events lacks: what
    /// [`verify_audit_chain`] checks, since the index is outside the hashed records.
    async fn audit_subjects_missing(
        &self,
        pairs: &[(PatientId, i64)],
    ) -> Result<Vec<(PatientId, i64)>>;

    // --- federation (see `federation`) ---
    /// Apply a unit of work: every change, the audit events, in one transaction; all or nothing.
    async fn apply(&self, changes: Vec<Change>, audit: Vec<AuditEvent>) -> Result<()>;
    /// A consultation by id, without actor scoping: for the node's own federation work (applying an accepted
    /// envelope, the retention purge), never for a user's request.
    async fn fed_consultation(&self, id: ConsultationId) -> Result<Consultation>;
    /// The local institution standing for another node, if it was seen.
    async fn fed_node_institution(&self, node: &str) -> Result<Option<InstitutionId>>;
    /// The stand-in for a user of another node, by local id.
    async fn fed_remote_user(&self, user: UserId) -> Result<Option<RemoteUser>>;
    /// Every stand-in user of a node.
    async fn fed_remote_users(&self, node: &str) -> Result<Vec<RemoteUser>>;
    async fn fed_foreign_case(&self, id: ConsultationId) -> Result<Option<ForeignCase>>;
    async fn fed_foreign_case_by_origin(
        &self,
        node: &str,
        origin_case: &str,
    ) -> Result<Option<ForeignCase>>;
    /// Mirrored cases whose retention ended before `now`.
    async fn fed_expired_foreign_cases(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<ForeignCase>>;
    /// Blob keys of a case's attachments, whoever may see them (for the retention purge).
    async fn fed_case_blob_keys(&self, id: ConsultationId) -> Result<Vec<String>>;
    /// The studies that came with a mirrored case from another node (`origin_node` set) and that no other case
    /// links, whoever may see them: those the retention purge removes from the archive with the case.
    async fn fed_studies_to_purge(&self, id: ConsultationId) -> Result<Vec<CaseStudy>>;
    /// Nodes the case's packet was sent to.
    async fn fed_shared_nodes(&self, id: ConsultationId) -> Result<Vec<String>>;
    async fn fed_inbox_contains(&self, envelope_id: uuid::Uuid) -> Result<bool>;
    /// Destinations with pending outbox rows.
    async fn fed_destinations_with_pending(&self) -> Result<Vec<String>>;
    /// The oldest pending row for a destination.
    async fn fed_next_pending(&self, destination: &str) -> Result<Option<PendingEnvelope>>;
    async fn fed_mark_delivered(&self, envelope_id: uuid::Uuid, at: DateTime<Utc>) -> Result<()>;
    async fn fed_record_failure(
        &self,
        envelope_id: uuid::Uuid,
        attempts: u32,
        next_attempt_at: DateTime<Utc>,
        error: &str,
    ) -> Result<()>;
    async fn fed_dead_letter(
        &self,
        envelope_id: uuid::Uuid,
        reason: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<()>;
    /// Outbox rows in a state (`pending`, `delivered`, `dead`), newest first.
    async fn fed_outbox(&self, state: &str, limit: u32) -> Result<Vec<OutboxRow>>;
    /// Make a dead-lettered row pending again, due now; returns its destination.
    async fn fed_retry(
        &self,
        envelope_id: uuid::Uuid,
        now: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<String>;
    async fn fed_counts(&self) -> Result<FederationCounts>;
    /// Inbox rows, newest first.
    async fn fed_inbox(&self, limit: u32) -> Result<Vec<InboxEntry>>;

    // --- surveillance (see `surveillance`; writes are `Change`s of `apply`) ---
    /// The node's regions with their cross-border neighbours, by code.
    async fn surv_regions(&self) -> Result<Vec<SurvRegion>>;
    /// Cases of the line list (pseudonymised patient data: the caller audits the read), newest onset first.
    async fn surv_cases(&self, f: &SurvFilter) -> Result<Vec<SurvCase>>;
    /// Aggregate reports, by disease, region and week.
    async fn surv_aggregates(&self, f: &SurvFilter) -> Result<Vec<SurvAggregate>>;
    /// Weekly series: line-list cases by ISO week of onset and aggregate counts, per disease × region × week
    /// (weeks without any report are absent), ordered by disease, region, week.
    async fn surv_weeks(&self, f: &SurvFilter) -> Result<Vec<SurvWeek>>;
    /// Alerts (local and received), newest first.
    async fn surv_alerts(&self, limit: u32) -> Result<Vec<SurvAlert>>;
    async fn surv_alert(&self, id: uuid::Uuid) -> Result<SurvAlert>;
    /// The alert of `origin_node` (empty: this node) for one disease × region × week, if raised.
    async fn surv_alert_for(
        &self,
        origin_node: &str,
        disease: &str,
        region: &str,
        iso_year: i32,
        iso_week: u32,
    ) -> Result<Option<SurvAlert>>;
    /// A received alert by its id on the sending node.
    async fn surv_alert_by_origin(&self, node: &str, origin_id: &str) -> Result<Option<SurvAlert>>;
    /// The notes and acknowledgements of an alert, oldest first.
    async fn surv_notes(&self, alert: uuid::Uuid) -> Result<Vec<SurvNote>>;
    /// Weekly counts of neighbouring nodes' border regions, by node, region, disease, week.
    async fn surv_foreign_counts(&self) -> Result<Vec<SurvForeignCount>>;
}

/// Verify the whole audit chain of a store, page by page.
pub async fn verify_audit_chain(store: &dyn Store) -> Result<std::result::Result<u64, ChainError>> {
    let mut verifier = audit::ChainVerifier::default();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        // The index that lets each listed patient find a multi-record event is not hashed: check that every
        // pair is there, so that hiding an event from a patient's access log is found too.
        let pairs: Vec<(PatientId, i64)> = page
            .iter()
            .flat_map(|r| r.event.subject_patients().into_iter().map(|p| (p, r.seq)))
            .collect();
        let mut unindexed = i64::MAX;
        for chunk in pairs.chunks(10_000) {
            for (_, seq) in store.audit_subjects_missing(chunk).await? {
                unindexed = unindexed.min(seq);
            }
        }
        for r in &page {
            if let Err(e) = verifier.push(r) {
                return Ok(Err(e));
            }
            if r.seq == unindexed {
                return Ok(Err(ChainError::Unindexed { seq: r.seq }));
            }
        }
    }
    Ok(Ok(verifier.verified))
}
