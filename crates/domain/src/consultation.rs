//! The consultation (case) and its one state machine.
//!
//! Every change of state goes through [`Consultation::apply`], which checks both that the transition is legal from
//! the current state and that the actor is entitled to make it. Anything else is refused with a
//! [`TransitionError`] whose `code` is stable (it is the Fluent message id shown to the user).

use crate::ids::*;
use crate::model::{Actor, Role};
use crate::sla::SlaPolicy;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    Routine,
    Urgent,
    Emergency,
}

impl Urgency {
    pub const ALL: [Urgency; 3] = [Urgency::Routine, Urgency::Urgent, Urgency::Emergency];
    pub fn as_str(self) -> &'static str {
        match self {
            Urgency::Routine => "routine",
            Urgency::Urgent => "urgent",
            Urgency::Emergency => "emergency",
        }
    }
}

impl FromStr for Urgency {
    type Err = crate::model::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|u| u.as_str() == s)
            .ok_or_else(|| crate::model::ParseError::new("urgency (routine, urgent, emergency)", s))
    }
}

/// The states of a consultation, from draft to closed loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum ConsultationState {
    /// Being written by the referrer; not visible to anyone else.
    Draft,
    /// Submitted with consent, waiting for routing (or re-routing after a decline).
    Submitted,
    /// Offered to a consultant, who must accept or decline.
    Assigned,
    /// Accepted; the panel discusses.
    InProgress,
    /// The lead consultant issued the report.
    Reported,
    /// The referrer read the report.
    Acknowledged,
    /// The referrer recorded the patient's outcome: the loop is closed.
    Closed,
    /// Withdrawn before a report.
    Cancelled,
}

impl ConsultationState {
    pub const ALL: [ConsultationState; 8] = [
        ConsultationState::Draft,
        ConsultationState::Submitted,
        ConsultationState::Assigned,
        ConsultationState::InProgress,
        ConsultationState::Reported,
        ConsultationState::Acknowledged,
        ConsultationState::Closed,
        ConsultationState::Cancelled,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Submitted => "submitted",
            Self::Assigned => "assigned",
            Self::InProgress => "in_progress",
            Self::Reported => "reported",
            Self::Acknowledged => "acknowledged",
            Self::Closed => "closed",
            Self::Cancelled => "cancelled",
        }
    }
    /// States in which the SLA clock runs (waiting for an expert's answer).
    pub fn awaits_report(self) -> bool {
        matches!(self, Self::Submitted | Self::Assigned | Self::InProgress)
    }
    /// States that count towards a consultant's load.
    pub fn is_open(self) -> bool {
        matches!(self, Self::Assigned | Self::InProgress)
    }
}

impl FromStr for ConsultationState {
    type Err = crate::model::ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| crate::model::ParseError::new("consultation state", s))
    }
}

impl fmt::Display for ConsultationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PanelRole {
    Lead,
    Member,
}

impl PanelRole {
    pub fn as_str(self) -> &'static str {
        match self {
            PanelRole::Lead => "lead",
            PanelRole::Member => "member",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PanelMember {
    pub user_id: UserId,
    pub role: PanelRole,
}

/// The structured report of the consultant (or MDT panel).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub findings: String,
    pub impression: String,
    pub recommendations: String,
    pub author_id: UserId,
    pub issued_at: DateTime<Utc>,
}

/// What happened to the patient: the feedback that closes the loop.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// `improved`, `unchanged`, `worsened`, `referred`, `died`.
    pub status: String,
    pub note: String,
    pub recorded_at: DateTime<Utc>,
}

pub const OUTCOME_STATUSES: &[&str] = &["improved", "unchanged", "worsened", "referred", "died"];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consultation {
    pub id: ConsultationId,
    /// The referring institution: it owns the case.
    pub institution_id: InstitutionId,
    pub referrer_id: UserId,
    pub patient_id: PatientId,
    pub question: String,
    pub clinical_summary: String,
    pub specialty: String,
    pub urgency: Urgency,
    /// Languages the referrer can work in, in order of preference.
    pub languages: Vec<String>,
    pub state: ConsultationState,
    pub assigned_to: Option<UserId>,
    pub panel: Vec<PanelMember>,
    /// Consultants who declined, so routing does not offer the case to them again.
    pub declined_by: Vec<UserId>,
    /// The team the case is offered to (its lead is `assigned_to`); its members join the panel when the lead
    /// accepts.
    #[serde(default)]
    pub team: Option<TeamOffer>,
    /// Attachments the referrer selected to travel with the case packet when an expert of another node takes
    /// the case (nothing else crosses a border).
    #[serde(default)]
    pub shared_attachments: Vec<AttachmentId>,
    pub created_at: DateTime<Utc>,
    pub submitted_at: Option<DateTime<Utc>>,
    pub due_at: Option<DateTime<Utc>>,
    pub escalated_at: Option<DateTime<Utc>>,
    pub report: Option<Report>,
    pub outcome: Option<Outcome>,
    pub closed_at: Option<DateTime<Utc>>,
    /// Optimistic concurrency: incremented by every applied event.
    pub version: i64,
}

/// A case offered to a standing team: when the lead accepts, `members` join the panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TeamOffer {
    pub team_id: TeamId,
    pub name: String,
    pub members: Vec<UserId>,
}

/// Something that can happen to a consultation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ConsultationEvent {
    /// The referrer submits; `consent` says whether the patient's consultation consent is in force.
    Submit {
        consent: bool,
    },
    /// Offer the case to a consultant. `automatic` when routing chose, otherwise a coordinator's override.
    Assign {
        consultant: UserId,
        automatic: bool,
        /// Set when the case goes to a team whose lead is `consultant`.
        #[serde(default)]
        team: Option<TeamOffer>,
    },
    Accept,
    Decline {
        reason: String,
    },
    /// The lead invites a further expert into the MDT panel.
    Invite {
        member: UserId,
    },
    Report {
        findings: String,
        impression: String,
        recommendations: String,
    },
    Acknowledge,
    RecordOutcome {
        status: String,
        note: String,
    },
    Cancel {
        reason: String,
    },
    /// The SLA clock ran out: flag for the coordinator. Idempotent.
    Escalate,
    /// The referrer selects the attachments that may travel abroad with the case packet.
    ShareAttachments {
        attachments: Vec<AttachmentId>,
    },
}

impl ConsultationEvent {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Submit { .. } => "submit",
            Self::Assign { .. } => "assign",
            Self::Accept => "accept",
            Self::Decline { .. } => "decline",
            Self::Invite { .. } => "invite",
            Self::Report { .. } => "report",
            Self::Acknowledge => "acknowledge",
            Self::RecordOutcome { .. } => "record_outcome",
            Self::Cancel { .. } => "cancel",
            Self::Escalate => "escalate",
            Self::ShareAttachments { .. } => "share_attachments",
        }
    }
}

/// Why an event was refused. `code()` is stable and doubles as the Fluent message id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    #[error("cannot {event} a consultation that is {state}")]
    IllegalTransition {
        event: &'static str,
        state: ConsultationState,
    },
    #[error("only {who} may {event} this consultation")]
    NotPermitted {
        event: &'static str,
        who: &'static str,
    },
    #[error("the patient's consent to remote consultation is not recorded")]
    ConsentMissing,
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("the consultant already declined this case")]
    AlreadyDeclined,
    #[error("already a member of the panel")]
    AlreadyInPanel,
    #[error("unknown outcome status {0:?}")]
    UnknownOutcome(String),
}

impl TransitionError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::IllegalTransition { .. } => "error-illegal-transition",
            Self::NotPermitted { .. } => "error-not-permitted",
            Self::ConsentMissing => "error-consent-missing",
            Self::Empty(_) => "error-empty-field",
            Self::AlreadyDeclined => "error-already-declined",
            Self::AlreadyInPanel => "error-already-in-panel",
            Self::UnknownOutcome(_) => "error-unknown-outcome",
        }
    }
}

fn non_empty(field: &'static str, s: &str) -> Result<(), TransitionError> {
    if s.trim().is_empty() {
        Err(TransitionError::Empty(field))
    } else {
        Ok(())
    }
}

impl Consultation {
    /// A new draft.
    #[allow(clippy::too_many_arguments)]
    pub fn draft(
        institution_id: InstitutionId,
        referrer_id: UserId,
        patient_id: PatientId,
        question: String,
        clinical_summary: String,
        specialty: String,
        urgency: Urgency,
        languages: Vec<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: ConsultationId::new(),
            institution_id,
            referrer_id,
            patient_id,
            question,
            clinical_summary,
            specialty,
            urgency,
            languages,
            state: ConsultationState::Draft,
            assigned_to: None,
            panel: Vec::new(),
            declined_by: Vec::new(),
            team: None,
            shared_attachments: Vec::new(),
            created_at: now,
            submitted_at: None,
            due_at: None,
            escalated_at: None,
            report: None,
            outcome: None,
            closed_at: None,
            version: 0,
        }
    }

    pub fn lead(&self) -> Option<UserId> {
        self.panel
            .iter()
            .find(|m| m.role == PanelRole::Lead)
            .map(|m| m.user_id)
    }

    pub fn is_panel_member(&self, user: UserId) -> bool {
        self.panel.iter().any(|m| m.user_id == user)
    }

    /// Whether the user takes part in the case (and so may read it and write in its thread).
    pub fn is_participant(&self, user: UserId) -> bool {
        self.referrer_id == user || self.assigned_to == Some(user) || self.is_panel_member(user)
    }

    /// Whether the SLA clock has run out at `now`.
    pub fn is_overdue(&self, now: DateTime<Utc>) -> bool {
        self.state.awaits_report() && self.due_at.is_some_and(|d| d <= now)
    }

    /// Apply an event, validating the transition and the actor's right to make it. On error nothing changes.
    /// The SLA clock ran out: flag the case for the coordinators. This is the node's own doing (its
    /// escalation sweep), so it takes no actor; it is the same transition as `apply(.., Escalate, ..)`.
    pub fn escalate(&mut self, now: DateTime<Utc>) -> Result<(), TransitionError> {
        if !self.is_overdue(now) {
            return Err(TransitionError::IllegalTransition {
                event: ConsultationEvent::Escalate.name(),
                state: self.state,
            });
        }
        if self.escalated_at.is_none() {
            self.escalated_at = Some(now);
        }
        self.version += 1;
        Ok(())
    }

    pub fn apply(
        &mut self,
        actor: &Actor,
        event: &ConsultationEvent,
        now: DateTime<Utc>,
        sla: &SlaPolicy,
    ) -> Result<(), TransitionError> {
        use ConsultationEvent as E;
        use ConsultationState as S;
        let illegal = || TransitionError::IllegalTransition {
            event: event.name(),
            state: self.state,
        };
        let is_referrer = actor.user_id == self.referrer_id;
        let is_coordinator = actor.role == Role::Coordinator;
        match event {
            E::Submit { consent } => {
                if self.state != S::Draft {
                    return Err(illegal());
                }
                if !is_referrer {
                    return Err(TransitionError::NotPermitted {
                        event: "submit",
                        who: "the referring clinician",
                    });
                }
                non_empty("question", &self.question)?;
                if !consent {
                    return Err(TransitionError::ConsentMissing);
                }
                self.state = S::Submitted;
                self.submitted_at = Some(now);
                self.due_at = Some(now + sla.duration(self.urgency));
            }
            E::Assign {
                consultant,
                automatic,
                team,
            } => {
                let allowed_state = match self.state {
                    S::Submitted => true,
                    // A coordinator may move a case that is still waiting for the consultant's answer.
                    S::Assigned => !automatic,
                    _ => false,
                };
                if !allowed_state {
                    return Err(illegal());
                }
                let allowed_actor = if *automatic {
                    is_referrer || is_coordinator
                } else {
                    is_coordinator
                };
                if !allowed_actor {
                    return Err(TransitionError::NotPermitted {
                        event: "assign",
                        who: "a coordinator",
                    });
                }
                if *automatic && self.declined_by.contains(consultant) {
                    return Err(TransitionError::AlreadyDeclined);
                }
                self.state = S::Assigned;
                self.assigned_to = Some(*consultant);
                self.team = team.clone();
            }
            E::Accept => {
                if self.state != S::Assigned {
                    return Err(illegal());
                }
                if self.assigned_to != Some(actor.user_id) {
                    return Err(TransitionError::NotPermitted {
                        event: "accept",
                        who: "the assigned consultant",
                    });
                }
                self.state = S::InProgress;
                self.panel.retain(|m| m.user_id != actor.user_id);
                self.panel.insert(
                    0,
                    PanelMember {
                        user_id: actor.user_id,
                        role: PanelRole::Lead,
                    },
                );
                // A team's members join with its lead (not the referrer, nobody twice).
                let members = self
                    .team
                    .as_ref()
                    .map(|t| t.members.clone())
                    .unwrap_or_default();
                for m in members {
                    if m != self.referrer_id && !self.is_panel_member(m) {
                        self.panel.push(PanelMember {
                            user_id: m,
                            role: PanelRole::Member,
                        });
                    }
                }
            }
            E::Decline { reason } => {
                if self.state != S::Assigned {
                    return Err(illegal());
                }
                if self.assigned_to != Some(actor.user_id) {
                    return Err(TransitionError::NotPermitted {
                        event: "decline",
                        who: "the assigned consultant",
                    });
                }
                non_empty("reason", reason)?;
                self.state = S::Submitted;
                self.assigned_to = None;
                self.team = None;
                if !self.declined_by.contains(&actor.user_id) {
                    self.declined_by.push(actor.user_id);
                }
            }
            E::Invite { member } => {
                if self.state != S::InProgress {
                    return Err(illegal());
                }
                if self.lead() != Some(actor.user_id) && !is_coordinator {
                    return Err(TransitionError::NotPermitted {
                        event: "invite",
                        who: "the panel lead or a coordinator",
                    });
                }
                if self.is_panel_member(*member) || *member == self.referrer_id {
                    return Err(TransitionError::AlreadyInPanel);
                }
                self.panel.push(PanelMember {
                    user_id: *member,
                    role: PanelRole::Member,
                });
            }
            E::Report {
                findings,
                impression,
                recommendations,
            } => {
                if self.state != S::InProgress {
                    return Err(illegal());
                }
                if self.lead() != Some(actor.user_id) {
                    return Err(TransitionError::NotPermitted {
                        event: "report",
                        who: "the panel lead",
                    });
                }
                non_empty("findings", findings)?;
                non_empty("impression", impression)?;
                non_empty("recommendations", recommendations)?;
                self.state = S::Reported;
                self.report = Some(Report {
                    findings: findings.clone(),
                    impression: impression.clone(),
                    recommendations: recommendations.clone(),
                    author_id: actor.user_id,
                    issued_at: now,
                });
            }
            E::Acknowledge => {
                if self.state != S::Reported {
                    return Err(illegal());
                }
                if !is_referrer {
                    return Err(TransitionError::NotPermitted {
                        event: "acknowledge",
                        who: "the referring clinician",
                    });
                }
                self.state = S::Acknowledged;
            }
            E::RecordOutcome { status, note } => {
                if self.state != S::Acknowledged {
                    return Err(illegal());
                }
                if !is_referrer {
                    return Err(TransitionError::NotPermitted {
                        event: "record_outcome",
                        who: "the referring clinician",
                    });
                }
                if !OUTCOME_STATUSES.contains(&status.as_str()) {
                    return Err(TransitionError::UnknownOutcome(status.clone()));
                }
                self.state = S::Closed;
                self.closed_at = Some(now);
                self.outcome = Some(Outcome {
                    status: status.clone(),
                    note: note.clone(),
                    recorded_at: now,
                });
            }
            E::Cancel { reason } => {
                if !matches!(
                    self.state,
                    S::Draft | S::Submitted | S::Assigned | S::InProgress
                ) {
                    return Err(illegal());
                }
                let coordinator_of_case = is_coordinator && self.state != S::Draft;
                if !is_referrer && !coordinator_of_case {
                    return Err(TransitionError::NotPermitted {
                        event: "cancel",
                        who: "the referring clinician or a coordinator",
                    });
                }
                non_empty("reason", reason)?;
                self.state = S::Cancelled;
                self.closed_at = Some(now);
            }
            E::Escalate => return self.escalate(now),
            E::ShareAttachments { attachments } => {
                if !is_referrer {
                    return Err(TransitionError::NotPermitted {
                        event: "share_attachments",
                        who: "the referring clinician",
                    });
                }
                if !matches!(
                    self.state,
                    S::Draft | S::Submitted | S::Assigned | S::InProgress
                ) {
                    return Err(illegal());
                }
                let mut list = attachments.clone();
                list.sort();
                list.dedup();
                self.shared_attachments = list;
            }
        }
        self.version += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{Duration, TimeZone};

    struct World {
        inst: InstitutionId,
        referrer: Actor,
        consultant: Actor,
        other: Actor,
        coordinator: Actor,
        sla: SlaPolicy,
        now: DateTime<Utc>,
    }

    fn actor(inst: InstitutionId, role: Role) -> Actor {
        Actor {
            user_id: UserId::new(),
            institution_id: inst,
            role,
            patient_id: None,
        }
    }

    fn world() -> World {
        let inst = InstitutionId::new();
        World {
            inst,
            referrer: actor(inst, Role::Referrer),
            consultant: actor(InstitutionId::new(), Role::Consultant),
            other: actor(InstitutionId::new(), Role::Consultant),
            coordinator: actor(InstitutionId::new(), Role::Coordinator),
            sla: SlaPolicy::default(),
            now: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
        }
    }

    fn draft(w: &World) -> Consultation {
        Consultation::draft(
            w.inst,
            w.referrer.user_id,
            PatientId::new(),
            "Is this ST elevation?".into(),
            "58 y, chest pain".into(),
            "cardiology".into(),
            Urgency::Urgent,
            vec!["en".into()],
            w.now,
        )
    }

    #[test]
    fn a_team_joins_the_panel_when_its_lead_accepts() {
        let w = world();
        let mut c = draft(&w);
        let sla = &w.sla;
        c.apply(
            &w.referrer,
            &ConsultationEvent::Submit { consent: true },
            w.now,
            sla,
        )
        .unwrap();
        let offer = TeamOffer {
            team_id: TeamId::new(),
            name: "Heart team".into(),
            // The referrer is never a panel member, even if listed in the team.
            members: vec![w.other.user_id, w.referrer.user_id],
        };
        let assign = ConsultationEvent::Assign {
            consultant: w.consultant.user_id,
            automatic: true,
            team: Some(offer.clone()),
        };
        c.apply(&w.referrer, &assign, w.now, sla).unwrap();
        assert!(
            c.panel.is_empty(),
            "members join only when the lead accepts"
        );
        // A decline drops the team offer with the lead.
        let mut declined = c.clone();
        declined
            .apply(
                &w.consultant,
                &ConsultationEvent::Decline {
                    reason: "away".into(),
                },
                w.now,
                sla,
            )
            .unwrap();
        assert_eq!(declined.team, None);
        c.apply(&w.consultant, &ConsultationEvent::Accept, w.now, sla)
            .unwrap();
        let panel: Vec<_> = c.panel.iter().map(|m| (m.user_id, m.role)).collect();
        assert_eq!(
            panel,
            vec![
                (w.consultant.user_id, PanelRole::Lead),
                (w.other.user_id, PanelRole::Member)
            ]
        );
    }

    #[test]
    fn the_whole_loop() {
        let w = world();
        let mut c = draft(&w);
        let sla = &w.sla;
        c.apply(
            &w.referrer,
            &ConsultationEvent::Submit { consent: true },
            w.now,
            sla,
        )
        .unwrap();
        assert_eq!(c.due_at, Some(w.now + Duration::hours(24)));
        c.apply(
            &w.referrer,
            &ConsultationEvent::Assign {
                consultant: w.consultant.user_id,
                automatic: true,
                team: None,
            },
            w.now,
            sla,
        )
        .unwrap();
        c.apply(&w.consultant, &ConsultationEvent::Accept, w.now, sla)
            .unwrap();
        assert_eq!(c.lead(), Some(w.consultant.user_id));
        c.apply(
            &w.consultant,
            &ConsultationEvent::Invite {
                member: w.other.user_id,
            },
            w.now,
            sla,
        )
        .unwrap();
        // A panel member who is not the lead may not issue the report.
        let err = c
            .apply(
                &w.other,
                &ConsultationEvent::Report {
                    findings: "f".into(),
                    impression: "i".into(),
                    recommendations: "r".into(),
                },
                w.now,
                sla,
            )
            .unwrap_err();
        assert_eq!(err.code(), "error-not-permitted");
        c.apply(
            &w.consultant,
            &ConsultationEvent::Report {
                findings: "f".into(),
                impression: "i".into(),
                recommendations: "r".into(),
            },
            w.now,
            sla,
        )
        .unwrap();
        c.apply(&w.referrer, &ConsultationEvent::Acknowledge, w.now, sla)
            .unwrap();
        c.apply(
            &w.referrer,
            &ConsultationEvent::RecordOutcome {
                status: "improved".into(),
                note: String::new(),
            },
            w.now,
            sla,
        )
        .unwrap();
        assert_eq!(c.state, ConsultationState::Closed);
        assert_eq!(c.version, 7);
    }

    #[test]
    fn submit_needs_consent_and_changes_nothing_when_refused() {
        let w = world();
        let mut c = draft(&w);
        let before = c.clone();
        let err = c
            .apply(
                &w.referrer,
                &ConsultationEvent::Submit { consent: false },
                w.now,
                &w.sla,
            )
            .unwrap_err();
        assert_eq!(err, TransitionError::ConsentMissing);
        assert_eq!(c, before);
    }

    #[test]
    fn decline_reroutes_and_remembers() {
        let w = world();
        let mut c = draft(&w);
        c.apply(
            &w.referrer,
            &ConsultationEvent::Submit { consent: true },
            w.now,
            &w.sla,
        )
        .unwrap();
        let assign = ConsultationEvent::Assign {
            consultant: w.consultant.user_id,
            automatic: true,
            team: None,
        };
        c.apply(&w.referrer, &assign, w.now, &w.sla).unwrap();
        c.apply(
            &w.consultant,
            &ConsultationEvent::Decline {
                reason: "on leave".into(),
            },
            w.now,
            &w.sla,
        )
        .unwrap();
        assert_eq!(c.state, ConsultationState::Submitted);
        assert_eq!(
            c.apply(&w.referrer, &assign, w.now, &w.sla).unwrap_err(),
            TransitionError::AlreadyDeclined
        );
        // A coordinator may still override.
        c.apply(
            &w.coordinator,
            &ConsultationEvent::Assign {
                consultant: w.consultant.user_id,
                automatic: false,
                team: None,
            },
            w.now,
            &w.sla,
        )
        .unwrap();
    }

    /// Every (state, event) pair outside the table of legal transitions is refused.
    #[test]
    fn illegal_transitions_are_refused_in_every_state() {
        use ConsultationState as S;
        let w = world();
        let events: Vec<(ConsultationEvent, &[S])> = vec![
            (ConsultationEvent::Submit { consent: true }, &[S::Draft]),
            (ConsultationEvent::Accept, &[S::Assigned]),
            (
                ConsultationEvent::Report {
                    findings: "f".into(),
                    impression: "i".into(),
                    recommendations: "r".into(),
                },
                &[S::InProgress],
            ),
            (ConsultationEvent::Acknowledge, &[S::Reported]),
            (
                ConsultationEvent::RecordOutcome {
                    status: "improved".into(),
                    note: String::new(),
                },
                &[S::Acknowledged],
            ),
            (
                ConsultationEvent::Cancel { reason: "x".into() },
                &[S::Draft, S::Submitted, S::Assigned, S::InProgress],
            ),
        ];
        for state in ConsultationState::ALL {
            for (event, legal) in &events {
                let mut c = draft(&w);
                c.state = state;
                c.assigned_to = Some(w.consultant.user_id);
                c.panel = vec![PanelMember {
                    user_id: w.consultant.user_id,
                    role: PanelRole::Lead,
                }];
                let who = match event {
                    ConsultationEvent::Accept | ConsultationEvent::Report { .. } => &w.consultant,
                    _ => &w.referrer,
                };
                let result = c.apply(who, event, w.now, &w.sla);
                if legal.contains(&state) {
                    assert!(
                        result.is_ok(),
                        "{state} + {} should pass: {result:?}",
                        event.name()
                    );
                } else {
                    assert!(
                        matches!(result, Err(TransitionError::IllegalTransition { .. })),
                        "{state} + {} should be illegal: {result:?}",
                        event.name()
                    );
                }
            }
        }
    }

    #[test]
    fn escalation_only_when_overdue() {
        let w = world();
        let mut c = draft(&w);
        c.apply(
            &w.referrer,
            &ConsultationEvent::Submit { consent: true },
            w.now,
            &w.sla,
        )
        .unwrap();
        assert!(c
            .apply(&w.coordinator, &ConsultationEvent::Escalate, w.now, &w.sla)
            .is_err());
        let later = w.now + Duration::hours(25);
        assert!(c.is_overdue(later));
        c.apply(&w.coordinator, &ConsultationEvent::Escalate, later, &w.sla)
            .unwrap();
        assert_eq!(c.escalated_at, Some(later));
    }
}
