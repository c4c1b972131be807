//! The audit trail: every read or write of patient data is an event in a hash chain.
//!
//! Each record carries the hash of the previous one; the hash covers a canonical JSON encoding of the record's
//! fields. Changing, inserting or deleting any record breaks the chain from that point on, which
//! [`verify_chain`] reports by sequence number.

use crate::ids::{InstitutionId, PatientId, UserId};
use crate::model::Role;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use std::str::FromStr;

/// The hash that precedes the first record.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    Read,
    Search,
    Create,
    Update,
    Delete,
    Export,
    Login,
    LoginFailed,
    Logout,
    TokenCreated,
}

impl AuditAction {
    pub const ALL: [AuditAction; 10] = [
        Self::Read,
        Self::Search,
        Self::Create,
        Self::Update,
        Self::Delete,
        Self::Export,
        Self::Login,
        Self::LoginFailed,
        Self::Logout,
        Self::TokenCreated,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::Create => "create",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::Export => "export",
            Self::Login => "login",
            Self::LoginFailed => "login_failed",
            Self::Logout => "logout",
            Self::TokenCreated => "token_created",
        }
    }
}

impl FromStr for AuditAction {
    type Err = crate::model::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == s)
            .ok_or_else(|| crate::model::ParseError::new("audit action", s))
    }
}

impl fmt::Display for AuditAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An audit event before it is chained: who did what, when, from which institution, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub at: DateTime<Utc>,
    pub actor_user: Option<UserId>,
    /// The actor's display name when the event was written, so the patient's access log stays readable.
    pub actor_name: String,
    pub actor_institution: Option<InstitutionId>,
    pub actor_role: Option<Role>,
    pub action: AuditAction,
    /// `consultation`, `patient`, `attachment`, ... (FHIR-like type names in lower case).
    pub entity_type: String,
    pub entity_id: String,
    /// The patient whose data was touched, when there is one: the key of the patient's access log.
    pub patient_id: Option<PatientId>,
    /// Purpose of use, e.g. `treatment`, `consultation`, `administration`.
    pub purpose: String,
    /// A short technical detail (an event name, a route). Never patient data.
    pub detail: String,
    /// The records a search or list touched, when there are several: one event then stands for the whole result
    /// (its `entity_id` is empty and its `patient_id` is `None`), and each subject is found in the patient's
    /// access log and in the trail of its entity. Empty for an event about one record.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subjects: Vec<AuditSubject>,
}

/// One record touched by a multi-record event: an entity of the event's `entity_type` and its patient.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditSubject {
    pub entity_id: String,
    pub patient_id: Option<PatientId>,
}

impl AuditEvent {
    /// The patients this event touched: its own, and those of its subjects (each once, in order).
    pub fn patients(&self) -> Vec<PatientId> {
        let mut out: Vec<PatientId> = self.patient_id.into_iter().collect();
        out.extend(
            self.subject_patients()
                .into_iter()
                .filter(|p| self.patient_id != Some(*p)),
        );
        out
    }

    /// The distinct patients of the subjects (what a store indexes so that access logs find the event).
    pub fn subject_patients(&self) -> Vec<PatientId> {
        let mut out: Vec<PatientId> = Vec::new();
        for p in self.subjects.iter().filter_map(|s| s.patient_id) {
            if !out.contains(&p) {
                out.push(p);
            }
        }
        out
    }

    /// Whether the event touched `entity_id` of `entity_type`, itself or as one of its subjects.
    pub fn touches(&self, entity_type: &str, entity_id: &str) -> bool {
        self.entity_type == entity_type
            && (self.entity_id == entity_id
                || self.subjects.iter().any(|s| s.entity_id == entity_id))
    }
}

/// The subjects as stored beside an event: a JSON array of `[entity_id, patient_id or null]` pairs (compact; the
/// field names would double it). `None` when there are none, so that single-record events store nothing.
pub fn encode_subjects(subjects: &[AuditSubject]) -> Option<String> {
    if subjects.is_empty() {
        return None;
    }
    let pairs: Vec<(&str, Option<String>)> = subjects
        .iter()
        .map(|s| (s.entity_id.as_str(), s.patient_id.map(|p| p.to_string())))
        .collect();
    serde_json::to_string(&pairs).ok()
}

/// The inverse of [`encode_subjects`]; `None` or an empty text is no subjects.
pub fn decode_subjects(text: Option<&str>) -> Result<Vec<AuditSubject>, String> {
    let Some(text) = text.filter(|t| !t.is_empty()) else {
        return Ok(Vec::new());
    };
    let pairs: Vec<(String, Option<String>)> =
        serde_json::from_str(text).map_err(|e| format!("audit subjects: {e}"))?;
    pairs
        .into_iter()
        .map(|(entity_id, patient)| {
            let patient_id = patient
                .map(|p| {
                    p.parse()
                        .map_err(|_| format!("audit subjects: bad patient id {p:?}"))
                })
                .transpose()?;
            Ok(AuditSubject {
                entity_id,
                patient_id,
            })
        })
        .collect()
}

/// A chained audit event as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: i64,
    pub event: AuditEvent,
    pub prev_hash: String,
    pub hash: String,
}

/// The canonical form that is hashed. Field order is fixed by this struct; timestamps are RFC 3339 with
/// microseconds so that a round trip through any database gives the same bytes.
#[derive(Serialize)]
struct Canonical<'a> {
    seq: i64,
    at: String,
    actor_user: Option<String>,
    actor_name: &'a str,
    actor_institution: Option<String>,
    actor_role: Option<&'static str>,
    action: &'static str,
    entity_type: &'a str,
    entity_id: &'a str,
    patient_id: Option<String>,
    purpose: &'a str,
    detail: &'a str,
    /// Absent when empty, so that events written before subjects existed hash as they did.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    subjects: Vec<(&'a str, Option<String>)>,
    prev_hash: &'a str,
}

/// Truncate a timestamp to the microsecond precision that is hashed and stored.
pub fn audit_time(at: DateTime<Utc>) -> DateTime<Utc> {
    let s = at.to_rfc3339_opts(SecondsFormat::Micros, true);
    DateTime::parse_from_rfc3339(&s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or(at)
}

pub fn format_audit_time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn hash_record(seq: i64, event: &AuditEvent, prev_hash: &str) -> String {
    let canonical = Canonical {
        seq,
        at: format_audit_time(event.at),
        actor_user: event.actor_user.map(|u| u.to_string()),
        actor_name: &event.actor_name,
        actor_institution: event.actor_institution.map(|i| i.to_string()),
        actor_role: event.actor_role.map(Role::as_str),
        action: event.action.as_str(),
        entity_type: &event.entity_type,
        entity_id: &event.entity_id,
        patient_id: event.patient_id.map(|p| p.to_string()),
        purpose: &event.purpose,
        detail: &event.detail,
        subjects: event
            .subjects
            .iter()
            .map(|s| (s.entity_id.as_str(), s.patient_id.map(|p| p.to_string())))
            .collect(),
        prev_hash,
    };
    // Serialising a struct of strings and integers cannot fail; fall back to Debug to stay panic-free regardless.
    let bytes = serde_json::to_vec(&canonical).unwrap_or_else(|_| format!("{seq}").into_bytes());
    hex::encode(Sha256::digest(&bytes))
}

impl AuditRecord {
    /// The record as shown to someone entitled to see only the subjects `keep` accepts (a patient's access log,
    /// one case's trail): the other subjects are left out. The hash still covers the whole event, so a narrowed
    /// multi-record event no longer verifies on its own; the chain is verified from the store, never from views.
    pub fn narrowed(mut self, keep: impl Fn(&AuditSubject) -> bool) -> Self {
        self.event.subjects.retain(|s| keep(s));
        self
    }

    /// Chain `event` after a record with `prev` (sequence, hash), or after the genesis when `prev` is `None`.
    pub fn chain(mut event: AuditEvent, prev: Option<(i64, &str)>) -> Self {
        event.at = audit_time(event.at);
        let (seq, prev_hash) = match prev {
            Some((s, h)) => (s + 1, h.to_owned()),
            None => (1, GENESIS_HASH.to_owned()),
        };
        let hash = hash_record(seq, &event, &prev_hash);
        Self {
            seq,
            event,
            prev_hash,
            hash,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("audit event {seq}: its hash does not match its content (the event was altered)")]
    Altered { seq: i64 },
    #[error("audit event {seq}: it does not follow the previous event's hash (an event was removed, inserted or altered before it)")]
    Broken { seq: i64 },
    #[error("audit event {seq}: sequence gap, expected {expected}")]
    Gap { seq: i64, expected: i64 },
    #[error("audit event {seq}: a patient it lists no longer finds it in their access log (its index row in audit_subjects was removed or altered)")]
    Unindexed { seq: i64 },
}

impl ChainError {
    pub fn seq(&self) -> i64 {
        match self {
            Self::Altered { seq }
            | Self::Broken { seq }
            | Self::Gap { seq, .. }
            | Self::Unindexed { seq } => *seq,
        }
    }
}

/// Incremental chain verifier, so that a store can stream millions of records through it.
#[derive(Debug)]
pub struct ChainVerifier {
    expected_seq: i64,
    prev_hash: String,
    pub verified: u64,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        Self {
            expected_seq: 1,
            prev_hash: GENESIS_HASH.to_owned(),
            verified: 0,
        }
    }
}

impl ChainVerifier {
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        if r.seq != self.expected_seq {
            return Err(ChainError::Gap {
                seq: r.seq,
                expected: self.expected_seq,
            });
        }
        if r.prev_hash != self.prev_hash {
            return Err(ChainError::Broken { seq: r.seq });
        }
        if hash_record(r.seq, &r.event, &r.prev_hash) != r.hash {
            return Err(ChainError::Altered { seq: r.seq });
        }
        self.expected_seq += 1;
        self.prev_hash.clone_from(&r.hash);
        self.verified += 1;
        Ok(())
    }
}

/// Verify a whole chain held in memory.
pub fn verify_chain(records: &[AuditRecord]) -> Result<u64, ChainError> {
    let mut v = ChainVerifier::default();
    for r in records {
        v.push(r)?;
    }
    Ok(v.verified)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: u32) -> AuditEvent {
        AuditEvent {
            at: Utc::now(),
            actor_user: Some(UserId::new()),
            actor_name: format!("Dr {n}"),
            actor_institution: Some(InstitutionId::new()),
            actor_role: Some(Role::Consultant),
            action: AuditAction::Read,
            entity_type: "consultation".into(),
            entity_id: n.to_string(),
            patient_id: Some(PatientId::new()),
            purpose: "consultation".into(),
            detail: String::new(),
            subjects: Vec::new(),
        }
    }

    fn chain(n: u32) -> Vec<AuditRecord> {
        let mut out: Vec<AuditRecord> = Vec::new();
        for i in 0..n {
            let prev = out.last().map(|r| (r.seq, r.hash.as_str()));
            let r = AuditRecord::chain(event(i), prev);
            out.push(r);
        }
        out
    }

    #[test]
    fn intact_chain_verifies() {
        assert_eq!(verify_chain(&chain(5)).unwrap(), 5);
    }

    #[test]
    fn tampering_is_located() {
        let mut c = chain(5);
        c[2].event.actor_name = "someone else".into();
        assert_eq!(
            verify_chain(&c).unwrap_err(),
            ChainError::Altered { seq: 3 }
        );

        let mut c = chain(5);
        c.remove(1);
        assert_eq!(verify_chain(&c).unwrap_err().seq(), 3);

        // Re-hashing an altered record does not help: the next one no longer follows it.
        let mut c = chain(5);
        c[1].event.detail = "x".into();
        c[1].hash = hash_record(c[1].seq, &c[1].event, &c[1].prev_hash);
        assert_eq!(verify_chain(&c).unwrap_err(), ChainError::Broken { seq: 3 });
    }

    #[test]
    fn events_without_subjects_hash_as_before_subjects_existed() {
        // Computed from the canonical form of the first release (no `subjects` field): chains written then
        // still verify.
        let e = AuditEvent {
            at: DateTime::parse_from_rfc3339("2026-01-02T03:04:05.678901Z")
                .unwrap()
                .with_timezone(&Utc),
            actor_user: None,
            actor_name: "system".into(),
            actor_institution: None,
            actor_role: None,
            action: AuditAction::Create,
            entity_type: "patient".into(),
            entity_id: "x".into(),
            patient_id: None,
            purpose: "operations".into(),
            detail: String::new(),
            subjects: Vec::new(),
        };
        let canonical = r#"{"seq":1,"at":"2026-01-02T03:04:05.678901Z","actor_user":null,"actor_name":"system","actor_institution":null,"actor_role":null,"action":"create","entity_type":"patient","entity_id":"x","patient_id":null,"purpose":"operations","detail":"","prev_hash":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        assert_eq!(
            hash_record(1, &e, GENESIS_HASH),
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
    }

    #[test]
    fn subjects_are_hashed_and_narrowed_views_keep_only_theirs() {
        let (p1, p2) = (PatientId::new(), PatientId::new());
        let mut e = event(1);
        e.entity_id = String::new();
        e.patient_id = None;
        e.subjects = vec![
            AuditSubject {
                entity_id: "a".into(),
                patient_id: Some(p1),
            },
            AuditSubject {
                entity_id: "b".into(),
                patient_id: Some(p2),
            },
            AuditSubject {
                entity_id: "c".into(),
                patient_id: Some(p1),
            },
        ];
        assert_eq!(e.patients(), vec![p1, p2]);
        assert!(e.touches("consultation", "b") && !e.touches("consultation", "d"));
        assert!(!e.touches("visit", "b"));
        let mut c = vec![AuditRecord::chain(e.clone(), None)];
        assert_eq!(verify_chain(&c).unwrap(), 1);
        // Dropping a subject from the stored event is tampering.
        c[0].event.subjects.pop();
        assert_eq!(
            verify_chain(&c).unwrap_err(),
            ChainError::Altered { seq: 1 }
        );

        let stored = encode_subjects(&e.subjects).unwrap();
        assert_eq!(decode_subjects(Some(&stored)).unwrap(), e.subjects);
        assert_eq!(decode_subjects(None).unwrap(), vec![]);
        assert!(encode_subjects(&[]).is_none());
        assert!(decode_subjects(Some("[[\"a\",\"not-an-id\"]]")).is_err());

        let mine = AuditRecord::chain(e, None).narrowed(|s| s.patient_id == Some(p1));
        let ids: Vec<&str> = mine
            .event
            .subjects
            .iter()
            .map(|s| s.entity_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "c"]);
    }
}
