//! Live care: what a node keeps of a video visit, modelled on FHIR R4 **Schedule** (a clinician's bookable
//! calendar), **Slot** (a free or busy interval of it), **Appointment** and the **Encounter** of the visit. The
//! appointment and its encounter are one row ([`Visit`]): the appointment's status (`booked`, `arrived`,
//! `fulfilled`, `cancelled`) and the encounter's (`planned`, `arrived`, `in-progress`, `finished`, `cancelled`)
//! are both read off [`VisitStatus`], and the encounter's period is `started_at`..`ended_at`.
//!
//! Guests (the patient without an account, an interpreter, a family member) enter through an [`Invitation`]: a
//! random single-visit token of which only the SHA-256 is stored, with an expiry. Of the call itself only who
//! joined and left ([`Participant`]) and the encounter's start and end are kept: no media, no chat, no statistics.
//!
//! Rules every backend enforces in its SQL, inside the booking transaction (the conformance suite checks them):
//! a slot is booked at most once, a clinician has no two overlapping live appointments, slots of one schedule do
//! not overlap, and a clinician has at most one visit in progress (the waiting room admits one patient at a time).

use async_trait::async_trait;
use caravan_domain::*;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Result;

/// A clinician's bookable calendar (FHIR Schedule).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: Uuid,
    pub institution_id: InstitutionId,
    /// The clinician (FHIR `Schedule.actor`).
    pub practitioner_id: UserId,
    /// What is offered (FHIR `serviceType` text), e.g. "cardiology follow-up".
    pub service: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
}

/// FHIR `SlotStatus` (the two values Caravan uses).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SlotStatus {
    Free,
    Busy,
}

impl SlotStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Free => "free",
            Self::Busy => "busy",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "free" => Some(Self::Free),
            "busy" => Some(Self::Busy),
            _ => None,
        }
    }
}

/// An interval of a schedule (FHIR Slot); `start` < `end`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    pub id: Uuid,
    pub schedule_id: Uuid,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: SlotStatus,
}

/// Where a visit is in its life: booked → arrived (in the waiting room) → in-progress (admitted) → finished, or
/// cancelled before it started.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisitStatus {
    Booked,
    Arrived,
    InProgress,
    Finished,
    Cancelled,
}

impl VisitStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Arrived => "arrived",
            Self::InProgress => "in-progress",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "booked" => Self::Booked,
            "arrived" => Self::Arrived,
            "in-progress" => Self::InProgress,
            "finished" => Self::Finished,
            "cancelled" => Self::Cancelled,
            _ => return None,
        })
    }
    /// FHIR `Appointment.status`.
    pub fn appointment_status(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Arrived | Self::InProgress => "arrived",
            Self::Finished => "fulfilled",
            Self::Cancelled => "cancelled",
        }
    }
    /// FHIR `Encounter.status`.
    pub fn encounter_status(self) -> &'static str {
        match self {
            Self::Booked => "planned",
            Self::Arrived => "arrived",
            Self::InProgress => "in-progress",
            Self::Finished => "finished",
            Self::Cancelled => "cancelled",
        }
    }
}

/// An appointment and the encounter of its video visit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Visit {
    pub id: Uuid,
    /// The slot it took, if booked from a schedule (an MDT meeting may be booked at a free time without one).
    pub slot_id: Option<Uuid>,
    pub institution_id: InstitutionId,
    /// The clinician who holds the visit and admits from the waiting room.
    pub practitioner_id: UserId,
    pub patient_id: PatientId,
    /// Set when the visit is a mode of a consultation (an MDT meeting); `None` for an outpatient encounter.
    pub consultation_id: Option<ConsultationId>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub reason: String,
    pub status: VisitStatus,
    /// When the patient entered the waiting room (queue order).
    pub arrived_at: Option<DateTime<Utc>>,
    /// The encounter's period.
    pub started_at: Option<DateTime<Utc>>,
    pub ended_at: Option<DateTime<Utc>>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// A visit with the names the pages show next to it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitView {
    pub visit: Visit,
    pub patient_name: String,
    pub practitioner_name: String,
}

/// Who an invitation lets in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum GuestRole {
    Patient,
    Interpreter,
    Family,
    /// A second clinician (a signed-in user of this node).
    Clinician,
}

impl GuestRole {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Interpreter => "interpreter",
            Self::Family => "family",
            Self::Clinician => "clinician",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "patient" => Self::Patient,
            "interpreter" => Self::Interpreter,
            "family" => Self::Family,
            "clinician" => Self::Clinician,
            _ => return None,
        })
    }
}

/// An invitation to one visit: a token link for a guest (`token_hash` set), or a named user of this node
/// (`user_id` set, who enters with their own session).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: Uuid,
    pub visit_id: Uuid,
    pub role: GuestRole,
    pub display_name: String,
    pub user_id: Option<UserId>,
    /// Hex SHA-256 of the token; the token itself is shown once and never stored.
    #[serde(skip_serializing)]
    pub token_hash: Option<String>,
    pub expires_at: DateTime<Utc>,
    pub created_by: UserId,
    pub created_at: DateTime<Utc>,
}

/// Someone who joined the call: `user:<id>` or `guest:<invitation id>`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Participant {
    pub visit_id: Uuid,
    pub key: String,
    /// `clinician`, `patient`, `interpreter`, `family`.
    pub role: String,
    pub display_name: String,
    /// The first time they joined.
    pub joined_at: DateTime<Utc>,
    /// The last time they left; `None` while connected.
    pub left_at: Option<DateTime<Utc>>,
}

/// Filters for listing visits; always combined with the actor's scope.
#[derive(Clone, Debug, Default)]
pub struct VisitFilter {
    pub practitioner_id: Option<UserId>,
    pub patient_id: Option<PatientId>,
    pub consultation_id: Option<ConsultationId>,
    pub statuses: Vec<VisitStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: Option<u32>,
}

/// Storage of live care. Every write takes its audit events and commits them in the same transaction.
///
/// Errors: `NotFound("visit" | "slot" | "schedule" | "invitation")`; `Conflict` when a rule above would be
/// broken or the visit is not in the state the step needs (the caller names which).
#[async_trait]
pub trait VisitStore: Send + Sync {
    async fn visit_insert_schedule(&self, s: &Schedule, audit: Vec<AuditEvent>) -> Result<()>;
    async fn visit_get_schedule(&self, id: Uuid) -> Result<Schedule>;
    /// Schedules of an institution and/or a clinician (no patient data).
    async fn visit_schedules(
        &self,
        institution: Option<InstitutionId>,
        practitioner: Option<UserId>,
    ) -> Result<Vec<Schedule>>;
    /// Add slots to one schedule, all or none; `Conflict` if one overlaps another (given or stored).
    async fn visit_insert_slots(&self, slots: &[Slot], audit: Vec<AuditEvent>) -> Result<()>;
    async fn visit_get_slot(&self, id: Uuid) -> Result<Slot>;
    /// Slots of a schedule that end after `from` and start before `to`, in time order.
    async fn visit_slots(
        &self,
        schedule: Uuid,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Slot>>;
    /// Book: mark the slot (if any) busy and insert the visit with its invitations, in one transaction.
    /// `Conflict` if the slot is not free or the clinician has an overlapping live visit.
    async fn visit_book(
        &self,
        v: &Visit,
        invitations: &[Invitation],
        audit: Vec<AuditEvent>,
    ) -> Result<()>;
    /// One visit, if the actor may see it (clinicians of its institution, its clinician, invited users, its
    /// patient); `NotFound` otherwise.
    async fn visit_get(&self, actor: &Actor, id: Uuid) -> Result<VisitView>;
    async fn visit_list(&self, actor: &Actor, filter: &VisitFilter) -> Result<Vec<VisitView>>;
    /// One visit without actor scoping: only after an invitation token was checked, or for the node's own work.
    async fn visit_by_id(&self, id: Uuid) -> Result<VisitView>;
    async fn visit_insert_invitation(&self, i: &Invitation, audit: Vec<AuditEvent>) -> Result<()>;
    /// The guest invitation whose token hashes to `token_hash` (expiry is the caller's check).
    async fn visit_invitation_by_token(&self, token_hash: &str) -> Result<Invitation>;
    async fn visit_invitations(&self, visit: Uuid) -> Result<Vec<Invitation>>;
    /// Enter the waiting room: `booked` → `arrived` (an `arrived` visit keeps its place); `Conflict` otherwise.
    async fn visit_check_in(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit>;
    /// A clinician's waiting room: their `arrived` visits, first come first served.
    async fn visit_queue(&self, practitioner: UserId) -> Result<Vec<VisitView>>;
    /// `arrived` → `in-progress`; `Conflict` if it is not waiting or the clinician already has one in progress.
    async fn visit_admit(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit>;
    /// `in-progress` → `finished`; `Conflict` otherwise.
    async fn visit_finish(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit>;
    /// `booked` or `arrived` → `cancelled`, freeing its slot; `Conflict` otherwise.
    async fn visit_cancel(
        &self,
        id: Uuid,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<Visit>;
    /// Someone joined the call: recorded once (first join kept), `left_at` cleared.
    async fn visit_joined(&self, p: &Participant, audit: Vec<AuditEvent>) -> Result<()>;
    async fn visit_left(
        &self,
        visit: Uuid,
        key: &str,
        at: DateTime<Utc>,
        audit: Vec<AuditEvent>,
    ) -> Result<()>;
    async fn visit_participants(&self, visit: Uuid) -> Result<Vec<Participant>>;
}
