//! What a node stores for federation (`docs/federation.md` §9): the outbox and inbox of signed envelopes, the
//! local stand-ins for other nodes and their experts, and the links between a case and its copies abroad.
//!
//! Everything that changes because of a federated message goes through [`crate::Store::apply`], a unit of work: the
//! clinical change, the outbox rows it causes (or the inbox row that caused it) and the audit events are committed
//! in one transaction, so a message exists exactly when the change that caused it does.

use caravan_domain::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// An envelope to send, written to the outbox in the same transaction as its cause.
#[derive(Clone, Debug)]
pub struct Outgoing {
    pub envelope_id: Uuid,
    pub destination: String,
    pub message_type: String,
    /// The case the message is about, if any (for the admin view and the retention purge).
    pub consultation_id: Option<ConsultationId>,
    /// The signed envelope, exactly as it will be sent.
    pub envelope: Vec<u8>,
    pub enqueued_at: DateTime<Utc>,
}

/// An accepted envelope, stored (keyed by its id) in the same transaction as its effect.
#[derive(Clone, Debug)]
pub struct InboxRecord {
    pub envelope_id: Uuid,
    pub sender: String,
    pub message_type: String,
    pub consultation_id: Option<ConsultationId>,
    pub received_at: DateTime<Utc>,
    pub envelope: Vec<u8>,
    /// Hex SHA-256 of `envelope`, kept when the body is purged.
    pub sha256: String,
    /// `applied`, or `ignored: <reason>` when the envelope was valid but had no effect (kept for audit).
    pub outcome: String,
}

/// A local consultation that mirrors a case owned by another node (the packet an expert here works on).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForeignCase {
    pub consultation_id: ConsultationId,
    pub origin_node: String,
    /// The case id on the origin node.
    pub origin_case: String,
    /// When the packet must be deleted here (set by the sending country).
    pub retention_until: DateTime<Utc>,
}

/// A local stand-in (a user that cannot sign in) for an expert or clinician of another node.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteUser {
    pub user_id: UserId,
    pub node_id: String,
    /// The user's id on their own node.
    pub remote_id: String,
}

/// One outbox row, as the admin pages show it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OutboxRow {
    pub envelope_id: Uuid,
    pub destination: String,
    pub message_type: String,
    pub consultation_id: Option<ConsultationId>,
    /// `pending`, `delivered` or `dead`.
    pub state: String,
    pub attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
    pub last_error: Option<String>,
    pub done_at: Option<DateTime<Utc>>,
}

/// One inbox row, as the admin pages (and the border-crossing tests) see it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct InboxEntry {
    pub envelope_id: Uuid,
    pub sender: String,
    pub message_type: String,
    pub consultation_id: Option<ConsultationId>,
    pub received_at: DateTime<Utc>,
    pub outcome: String,
    /// The envelope as received; `None` once the case it carried was purged.
    pub envelope: Option<Vec<u8>>,
}

/// A pending row for the delivery engine.
#[derive(Clone, Debug)]
pub struct PendingEnvelope {
    pub envelope_id: Uuid,
    pub destination: String,
    pub envelope: Vec<u8>,
    pub attempts: u32,
    pub enqueued_at: DateTime<Utc>,
    pub next_attempt_at: DateTime<Utc>,
}

/// Counts for the admin page and the soak tool.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FederationCounts {
    pub pending: u64,
    pub delivered: u64,
    pub dead: u64,
    pub inbox: u64,
    /// `net.ping` effects recorded, and how many distinct ping ids among them (a difference is a duplicate).
    pub pings: u64,
    pub distinct_pings: u64,
}

/// One change of a unit of work. Applied in order, in one transaction, with the unit's audit events.
#[derive(Clone, Debug)]
pub enum Change {
    InsertInstitution(Institution),
    /// Insert a stand-in user, or update its name, profile and active flag.
    UpsertUser(User),
    InsertPatient(Patient),
    InsertConsultation(Consultation),
    UpdateConsultation {
        consultation: Consultation,
        expected_version: i64,
    },
    InsertMessage(crate::Message),
    InsertAttachment(crate::Attachment),
    /// The local institution standing for another node.
    LinkNode {
        node_id: String,
        institution_id: InstitutionId,
    },
    LinkRemoteUser(RemoteUser),
    LinkForeignCase(ForeignCase),
    /// The case's packet was sent to this node (it receives the case's messages from now on).
    MarkShared {
        consultation_id: ConsultationId,
        node_id: String,
        at: DateTime<Utc>,
    },
    Enqueue(Outgoing),
    /// Fails with `Duplicate("envelope")` if the id is already in the inbox.
    Receive(InboxRecord),
    /// A `net.ping` effect (the soak tool counts them).
    Ping {
        envelope_id: Uuid,
        sender: String,
    },
    /// Delete a mirrored case and everything under it (its pseudonymous patient, messages, attachment records,
    /// participants, study links, link) and blank the bodies of the inbox envelopes that carried it, keeping their ids.
    PurgeForeignCase(ConsultationId),
    /// Replace the node's surveillance regions and their neighbours.
    SurvSetRegions(Vec<crate::SurvRegion>),
    InsertSurvCase(crate::SurvCase),
    /// Insert or replace the count of one disease × region × week.
    PutSurvAggregate(crate::SurvAggregate),
    /// Fails with `Duplicate` when the origin already raised an alert for that disease × region × week.
    InsertSurvAlert(crate::SurvAlert),
    AckSurvAlert {
        id: Uuid,
        by: String,
        at: DateTime<Utc>,
    },
    InsertSurvNote(crate::SurvNote),
    /// Insert or replace a neighbour's weekly count.
    PutSurvForeignCount(crate::SurvForeignCount),
    /// Link a DICOM study to a case, or update the link (state, transfer progress) if it exists.
    LinkStudy(crate::CaseStudy),
    /// An e-prescription record (see [`crate::rx`]).
    Rx(crate::rx::RxChange),
}
