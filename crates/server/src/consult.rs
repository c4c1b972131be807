//! The consultation service: what a user can do with patients, consent and cases. The JSON API and the web UI
//! both call these functions, so a rule holds the same way whichever door a request comes through.

use crate::audit::{event, search_events, system_event};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::http::StatusCode;
use bytes::Bytes;
use caravan_domain::routing::{
    rank_candidates, rank_teams, RankedCandidate, RankedTeam, RoutingRequest,
};
use caravan_domain::*;
use caravan_store::{
    Attachment, Change, ConsultationFilter, ConsultationSummary, Message, PatientFilter,
};
use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

const CLINICAL: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];

/// Refusal by institution scope (as opposed to role): the record is visible but belongs to another institution.
pub fn not_home(message: &str) -> AppError {
    AppError::new(StatusCode::FORBIDDEN, "error-not-home-institution", message)
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct NewPatient {
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::api::NON_BLANK))]
    pub given_name: String,
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::api::NON_BLANK))]
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    #[serde(default)]
    pub national_id: Option<String>,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::api::LANGUAGE_TAG)))]
    pub languages: Vec<String>,
}

fn required(field: &str, s: &str, max: usize) -> AppResult<String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(AppError::unprocessable(
            "error-empty-field",
            format!("{field} must not be empty"),
        ));
    }
    if t.chars().count() > max {
        return Err(AppError::unprocessable(
            "error-too-long",
            format!("{field} is longer than {max} characters"),
        ));
    }
    Ok(t.to_owned())
}

/// Validate language tags, keeping the first occurrence of each in order of preference.
fn languages(list: &[String]) -> AppResult<Vec<String>> {
    let mut seen = std::collections::HashSet::new();
    list.iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && seen.insert(l.to_ascii_lowercase()))
        .map(|l| {
            if l.len() <= 12 && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                Ok(l.to_owned())
            } else {
                Err(AppError::unprocessable(
                    "error-bad-language",
                    format!("{l:?} is not a language tag such as en or zh-CN"),
                ))
            }
        })
        .collect()
}

pub async fn create_patient(st: &AppState, p: &Principal, n: NewPatient) -> AppResult<Patient> {
    p.require(&[Role::Referrer, Role::Coordinator])?;
    let today = Utc::now().date_naive();
    if n.birth_date > today || n.birth_date < NaiveDate::from_ymd_opt(1880, 1, 1).unwrap_or(today) {
        return Err(AppError::unprocessable(
            "error-bad-date",
            "birth date is in the future or implausibly old",
        ));
    }
    let patient = Patient {
        id: PatientId::new(),
        institution_id: p.user.institution_id,
        given_name: required("given name", &n.given_name, 200)?,
        family_name: required("family name", &n.family_name, 200)?,
        birth_date: n.birth_date,
        sex: n.sex,
        national_id: n
            .national_id
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty()),
        languages: languages(&n.languages)?,
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "patient",
        patient.id,
        Some(patient.id),
        "",
    )];
    st.store().insert_patient(&patient, audit).await?;
    tracing::info!(patient_id = %patient.id, "patient created");
    Ok(patient)
}

/// Roles that may read patient records at all (each further scoped by institution in the store).
pub const PATIENT_READERS: &[Role] = &[
    Role::Referrer,
    Role::Consultant,
    Role::Coordinator,
    Role::Patient,
];

pub async fn get_patient(st: &AppState, p: &Principal, id: PatientId) -> AppResult<Patient> {
    p.require(PATIENT_READERS)?;
    let patient = st.store().get_patient(&p.actor(), id).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "patient",
            id,
            Some(id),
            "",
        )])
        .await?;
    Ok(patient)
}

pub async fn search_patients(
    st: &AppState,
    p: &Principal,
    filter: &PatientFilter,
) -> AppResult<Vec<Patient>> {
    p.require(PATIENT_READERS)?;
    let found = st.store().list_patients(&p.actor(), filter).await?;
    // Each patient who appears in a result learns who saw them in a list.
    let audit = search_events(p, "patient", found.iter().map(|x| (x.id, Some(x.id))), "");
    st.store().append_audit(audit).await?;
    Ok(found)
}

pub async fn record_consent(
    st: &AppState,
    p: &Principal,
    patient: PatientId,
    scope: ConsentScope,
    granted: bool,
    note: &str,
) -> AppResult<Consent> {
    p.require(&[Role::Referrer, Role::Coordinator])?;
    let pat = st.store().get_patient(&p.actor(), patient).await?;
    if pat.institution_id != p.user.institution_id {
        return Err(not_home(
            "consent is recorded by the patient's home institution",
        ));
    }
    let consent = Consent {
        id: ConsentId::new(),
        patient_id: patient,
        scope,
        granted,
        recorded_by: p.user.id,
        recorded_at: Utc::now(),
        note: note.trim().chars().take(1000).collect(),
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "consent",
        consent.id,
        Some(patient),
        scope.as_str(),
    )];
    st.store().insert_consent(&consent, audit).await?;
    Ok(consent)
}

pub async fn consents(st: &AppState, p: &Principal, patient: PatientId) -> AppResult<Vec<Consent>> {
    p.require(PATIENT_READERS)?;
    let list = st.store().consents(&p.actor(), patient).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "consent",
            patient,
            Some(patient),
            "",
        )])
        .await?;
    Ok(list)
}

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct NewConsultation {
    pub patient_id: PatientId,
    #[schemars(length(min = 1, max = 4000), regex(pattern = crate::api::NON_BLANK))]
    pub question: String,
    #[serde(default)]
    pub clinical_summary: String,
    #[schemars(extend("enum" = SPECIALTIES))]
    pub specialty: String,
    pub urgency: Urgency,
    #[serde(default)]
    #[schemars(inner(regex(pattern = crate::api::LANGUAGE_TAG)))]
    pub languages: Vec<String>,
    /// Submit (and route) at once instead of keeping a draft.
    #[serde(default)]
    pub submit: bool,
}

pub async fn create_consultation(
    st: &AppState,
    p: &Principal,
    n: NewConsultation,
) -> AppResult<Consultation> {
    p.require(&[Role::Referrer])?;
    let patient = st.store().get_patient(&p.actor(), n.patient_id).await?;
    if patient.institution_id != p.user.institution_id {
        return Err(not_home(
            "cases are referred by the patient's home institution",
        ));
    }
    if !is_known_specialty(&n.specialty) {
        return Err(AppError::unprocessable(
            "error-unknown-specialty",
            format!(
                "unknown specialty {:?}; known: {}",
                n.specialty,
                SPECIALTIES.join(", ")
            ),
        ));
    }
    let mut langs = languages(&n.languages)?;
    if langs.is_empty() {
        langs = vec![p.user.locale.clone()];
    }
    let c = Consultation::draft(
        p.user.institution_id,
        p.user.id,
        patient.id,
        required("question", &n.question, 4000)?,
        n.clinical_summary.trim().chars().take(20_000).collect(),
        n.specialty,
        n.urgency,
        langs,
        Utc::now(),
    );
    let audit = vec![event(
        p,
        AuditAction::Create,
        "consultation",
        c.id,
        Some(c.patient_id),
        "draft",
    )];
    st.store().insert_consultation(&c, audit).await?;
    tracing::info!(consultation_id = %c.id, urgency = c.urgency.as_str(), "consultation created");
    if n.submit {
        return apply(st, p, c.id, EventRequest::Submit).await;
    }
    Ok(c)
}

/// An event as a client asks for it (the server fills in what the domain needs, such as the consent state).
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventRequest {
    Submit,
    Assign {
        consultant: UserId,
    },
    /// Give the case to a standing team: its lead is assigned, its members join when the lead accepts.
    AssignTeam {
        team: TeamId,
    },
    Accept,
    Decline {
        reason: String,
    },
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
        #[serde(default)]
        note: String,
    },
    Cancel {
        reason: String,
    },
    /// The referrer selects the attachments that travel with the case packet if an expert abroad takes it.
    ShareAttachments {
        attachments: Vec<AttachmentId>,
    },
}

/// Load, apply one event (plus automatic routing after a submit or a decline), save with the audit events.
pub async fn apply(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    req: EventRequest,
) -> AppResult<Consultation> {
    let actor = p.actor();
    let store = st.store();
    let mut c = store.get_consultation(&actor, id).await?;
    let loaded_version = c.version;
    // A mirror of another node's case: only the expert side's answers happen here; routing, cancelling and
    // closing the loop belong to the home node (they would otherwise never reach it).
    if st.federation().is_some()
        && !matches!(
            req,
            EventRequest::Accept
                | EventRequest::Decline { .. }
                | EventRequest::Invite { .. }
                | EventRequest::Report { .. }
        )
        && store.fed_foreign_case(id).await?.is_some()
    {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-owned-by-home-node",
            "this case belongs to another node: only the expert's answers are given here",
        ));
    }
    let now = Utc::now();
    let sla = &st.config().sla;
    let ev = match req {
        EventRequest::Submit => {
            let consent = store.consents(&actor, c.patient_id).await?;
            ConsultationEvent::Submit {
                consent: consent_in_force(&consent, ConsentScope::Consultation),
            }
        }
        EventRequest::Assign { consultant } => {
            let target = store.get_user(consultant).await?;
            if target.role != Role::Consultant || !target.active {
                return Err(AppError::unprocessable(
                    "error-not-a-consultant",
                    "the chosen user is not an active consultant",
                ));
            }
            ConsultationEvent::Assign {
                consultant,
                automatic: false,
                team: None,
            }
        }
        EventRequest::AssignTeam { team } => {
            let t = store.get_team(team).await?;
            if t.specialty != c.specialty {
                return Err(AppError::unprocessable(
                    "error-team-specialty",
                    format!(
                        "the team takes {} cases, this one is {}",
                        t.specialty, c.specialty
                    ),
                ));
            }
            let lead = store.get_user(t.lead_id).await?;
            if lead.role != Role::Consultant || !lead.active {
                return Err(AppError::unprocessable(
                    "error-not-a-consultant",
                    "the team's lead is not an active consultant",
                ));
            }
            ConsultationEvent::Assign {
                consultant: t.lead_id,
                automatic: false,
                team: Some(TeamOffer {
                    team_id: t.id,
                    name: t.name,
                    members: t.member_ids,
                }),
            }
        }
        EventRequest::Accept => ConsultationEvent::Accept,
        EventRequest::Decline { reason } => ConsultationEvent::Decline { reason },
        EventRequest::Invite { member } => {
            let target = store.get_user(member).await?;
            if !matches!(target.role, Role::Consultant | Role::Referrer) || !target.active {
                return Err(AppError::unprocessable(
                    "error-not-a-clinician",
                    "only active clinicians can join a panel",
                ));
            }
            ConsultationEvent::Invite { member }
        }
        EventRequest::Report {
            findings,
            impression,
            recommendations,
        } => ConsultationEvent::Report {
            findings: findings.trim().to_owned(),
            impression: impression.trim().to_owned(),
            recommendations: recommendations.trim().to_owned(),
        },
        EventRequest::Acknowledge => ConsultationEvent::Acknowledge,
        EventRequest::RecordOutcome { status, note } => {
            ConsultationEvent::RecordOutcome { status, note }
        }
        EventRequest::Cancel { reason } => ConsultationEvent::Cancel { reason },
        EventRequest::ShareAttachments { attachments } => {
            let known: Vec<AttachmentId> = store
                .list_attachments(&actor, id)
                .await?
                .into_iter()
                .map(|a| a.id)
                .collect();
            if let Some(stranger) = attachments.iter().find(|a| !known.contains(a)) {
                return Err(AppError::unprocessable(
                    "error-not-an-attachment-of-case",
                    format!("{stranger} is not an attachment of this consultation"),
                ));
            }
            ConsultationEvent::ShareAttachments { attachments }
        }
    };
    let before = c.clone();
    c.apply(&actor, &ev, now, sla)?;
    let mut audit = vec![event(
        p,
        AuditAction::Update,
        "consultation",
        c.id,
        Some(c.patient_id),
        ev.name(),
    )];
    if c.state == ConsultationState::Submitted && st.config().auto_assign {
        // The automatic assignment is made on behalf of the referrer whose submit triggered it.
        let routing_actor = Actor {
            user_id: c.referrer_id,
            ..actor.clone()
        };
        auto_route(st, &routing_actor, &p.user, &mut c, now, &mut audit).await?;
    }
    let (outbox, more_audit) =
        crate::federation::after_event(st, &p.user, &before, &c, &ev).await?;
    audit.extend(more_audit);
    let mut changes = vec![Change::UpdateConsultation {
        consultation: c.clone(),
        expected_version: loaded_version,
    }];
    changes.extend(outbox);
    crate::federation::commit(st, changes, audit).await?;
    Ok(c)
}

/// Route a submitted case (after a submit or a decline, local or from abroad), unless it is the mirror of a case
/// owned by another node (its home node routes it). `routing_actor` must be the referrer or a coordinator;
/// `audit_user` is recorded as having caused it.
pub(crate) async fn auto_route(
    st: &AppState,
    routing_actor: &Actor,
    audit_user: &User,
    c: &mut Consultation,
    now: chrono::DateTime<Utc>,
    audit: &mut Vec<AuditEvent>,
) -> AppResult<()> {
    if st.federation().is_some() && st.store().fed_foreign_case(c.id).await?.is_some() {
        return Ok(());
    }
    let Some((consultant, team, score)) = best_proposal(st, c).await? else {
        tracing::warn!(consultation_id = %c.id, specialty = %c.specialty, "no consultant available; waiting for a coordinator");
        return Ok(());
    };
    let assign = ConsultationEvent::Assign {
        consultant,
        automatic: true,
        team,
    };
    if c.apply(routing_actor, &assign, now, &st.config().sla)
        .is_ok()
    {
        audit.push(crate::audit::user_event(
            audit_user,
            AuditAction::Update,
            "consultation",
            c.id,
            Some(c.patient_id),
            "assign:auto",
        ));
        tracing::info!(consultation_id = %c.id, score, team = c.team.is_some(), "consultation routed");
    }
    Ok(())
}

/// Ranked proposals for a case.
/// What routing is asked for a case: never the referrer, never a consultant who declined it.
fn routing_request(c: &Consultation) -> RoutingRequest {
    let mut excluded = c.declined_by.clone();
    excluded.push(c.referrer_id);
    RoutingRequest {
        specialty: c.specialty.clone(),
        languages: c.languages.clone(),
        urgency: c.urgency,
        excluded,
    }
}

pub async fn propose(st: &AppState, c: &Consultation) -> AppResult<Vec<RankedCandidate>> {
    let candidates = st.store().routing_candidates(&c.specialty).await?;
    Ok(rank_candidates(
        &routing_request(c),
        &candidates,
        Utc::now(),
    ))
}

/// The teams routing proposes for a case, best first (`routing::rank_teams`).
pub async fn propose_teams(st: &AppState, c: &Consultation) -> AppResult<Vec<RankedTeam>> {
    let (teams, people) = st.store().routing_teams(&c.specialty).await?;
    Ok(rank_teams(&routing_request(c), &teams, &people, Utc::now()))
}

/// The automatic choice: the best single consultant, unless a team scores strictly higher (a team goes to its
/// lead, with its members joining on acceptance). `None` when nobody can take the case.
async fn best_proposal(
    st: &AppState,
    c: &Consultation,
) -> AppResult<Option<(UserId, Option<TeamOffer>, f64)>> {
    let mut person = None;
    let mut cross_border: Option<bool> = None;
    for candidate in propose(st, c).await? {
        // An expert of another node only if the patient consented to the case leaving the country.
        if st.federation().is_some()
            && st
                .store()
                .fed_remote_user(candidate.user_id)
                .await?
                .is_some()
        {
            let allowed = match cross_border {
                Some(a) => a,
                None => *cross_border.insert(crate::federation::may_cross_border(st, c).await?),
            };
            if !allowed {
                continue;
            }
        }
        person = Some(candidate);
        break;
    }
    let team = propose_teams(st, c).await?.into_iter().next();
    Ok(match (person, team) {
        (Some(p), Some(t)) if t.score > p.score => Some(team_choice(t)),
        (Some(p), _) => Some((p.user_id, None, p.score)),
        (None, Some(t)) => Some(team_choice(t)),
        (None, None) => None,
    })
}

fn team_choice(t: RankedTeam) -> (UserId, Option<TeamOffer>, f64) {
    (
        t.lead_id,
        Some(TeamOffer {
            team_id: t.team_id,
            name: t.name,
            members: t.member_ids,
        }),
        t.score,
    )
}

/// What routing proposes for a case: single consultants and standing teams, each best first.
#[derive(Debug, Serialize)]
pub struct Proposals {
    pub consultants: Vec<RankedCandidate>,
    pub teams: Vec<RankedTeam>,
}

pub async fn candidates(st: &AppState, p: &Principal, id: ConsultationId) -> AppResult<Proposals> {
    p.require(&[Role::Coordinator])?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    Ok(Proposals {
        consultants: propose(st, &c).await?,
        teams: propose_teams(st, &c).await?,
    })
}

/// Everything the case page shows, read with one audit event. `M` is the thread: parsed for the page, as JSON
/// text for the API (see [`caravan_store::RawThread`]).
#[derive(Debug, Serialize)]
pub struct CaseView<M = Vec<Message>> {
    pub consultation: Consultation,
    pub patient: Patient,
    /// The whole thread on the page; in the API only its latest [`caravan_store::THREAD_WINDOW`] messages (the
    /// rest through [`thread_page`]).
    pub messages: M,
    /// Messages in the whole thread.
    pub messages_total: usize,
    pub attachments: Vec<Attachment>,
    pub people: Vec<(UserId, String, String)>,
}

pub async fn view(st: &AppState, p: &Principal, id: ConsultationId) -> AppResult<CaseView> {
    let bundle = st.store().case_bundle(&p.actor(), id).await?;
    audited_view(st, p, bundle).await
}

/// [`view`] with the thread as the store built it, for the JSON API.
pub async fn view_raw(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
) -> AppResult<CaseView<caravan_store::RawThread>> {
    let bundle = st.store().case_bundle_raw(&p.actor(), id).await?;
    audited_view(st, p, bundle).await
}

async fn audited_view<M>(
    st: &AppState,
    p: &Principal,
    bundle: caravan_store::CaseBundle<M>,
) -> AppResult<CaseView<M>> {
    let caravan_store::CaseBundle {
        consultation,
        patient,
        messages,
        messages_total,
        attachments,
        people,
    } = bundle;
    let people = people
        .into_iter()
        .map(|p| (p.user_id, p.display_name, p.institution_name))
        .collect();
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "consultation",
            consultation.id,
            Some(consultation.patient_id),
            "",
        )])
        .await?;
    Ok(CaseView {
        consultation,
        patient,
        messages,
        messages_total,
        attachments,
        people,
    })
}

/// The roles that read consultations (each within its scope: its institution, its cases, its own record).
pub const CASE_READERS: &[Role] = &[
    Role::Referrer,
    Role::Consultant,
    Role::Coordinator,
    Role::Patient,
];

/// Most messages one [`thread_page`] returns.
pub const MAX_THREAD_PAGE: usize = 500;

/// Part of a case's thread, in thread order: the `limit` messages just before the message `before` (the latest
/// ones without it), for a reader paging back from the latest part a case read returned. One audit event, as
/// for a case read.
pub async fn thread_page(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    before: Option<MessageId>,
    limit: usize,
) -> AppResult<Vec<Message>> {
    p.require(CASE_READERS)?;
    if limit == 0 || limit > MAX_THREAD_PAGE {
        return Err(AppError::bad_request(format!(
            "limit must be a number from 1 to {MAX_THREAD_PAGE}"
        )));
    }
    let actor = p.actor();
    let c = st.store().get_consultation(&actor, id).await?;
    let mut thread = st.store().list_messages(&actor, id).await?;
    let end = match before {
        None => thread.len(),
        Some(b) => thread
            .iter()
            .position(|m| m.id == b)
            .ok_or_else(|| AppError::not_found("message"))?,
    };
    thread.truncate(end);
    let page = thread.split_off(end.saturating_sub(limit));
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "consultation",
            c.id,
            Some(c.patient_id),
            "thread",
        )])
        .await?;
    Ok(page)
}

pub async fn list(
    st: &AppState,
    p: &Principal,
    f: &ConsultationFilter,
) -> AppResult<Vec<ConsultationSummary>> {
    p.require(CASE_READERS)?;
    let rows = st.store().list_consultations(&p.actor(), f).await?;
    let audit = search_events(
        p,
        "consultation",
        rows.iter()
            .map(|r| (r.consultation.id, Some(r.consultation.patient_id))),
        "",
    );
    st.store().append_audit(audit).await?;
    Ok(rows)
}

/// Participants, and coordinators who can see the case, may write in the thread. The referrer may attach
/// documents to a draft too (they prepare the case, and choose what may travel with it abroad).
pub(crate) fn may_write(p: &Principal, c: &Consultation, attaching: bool) -> AppResult<()> {
    let referrer_preparing =
        attaching && c.state == ConsultationState::Draft && c.referrer_id == p.user.id;
    if (c.state == ConsultationState::Draft && !referrer_preparing)
        || c.state == ConsultationState::Cancelled
    {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-thread-closed",
            format!("the thread of a {} consultation is closed", c.state),
        ));
    }
    if c.is_participant(p.user.id) || p.role() == Role::Coordinator {
        Ok(())
    } else {
        Err(AppError::forbidden())
    }
}

pub async fn post_message(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    parent: Option<MessageId>,
    body: &str,
) -> AppResult<Message> {
    p.require(CLINICAL)?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    may_write(p, &c, false)?;
    if let Some(parent) = parent {
        let in_thread = match st.store().get_message(&p.actor(), parent).await {
            Ok(m) => m.consultation_id == id,
            Err(caravan_store::StoreError::NotFound(_)) => false,
            Err(e) => return Err(e.into()),
        };
        if !in_thread {
            return Err(AppError::unprocessable(
                "error-bad-parent",
                "the message replied to is not in this thread",
            ));
        }
    }
    let m = Message {
        id: MessageId::new(),
        consultation_id: id,
        parent_id: parent,
        author_id: p.user.id,
        author_name: p.user.display_name.clone(),
        body: required("message", body, 20_000)?,
        created_at: Utc::now(),
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "message",
        m.id,
        Some(c.patient_id),
        "",
    )];
    let mut changes = crate::federation::after_message(st, &c, &m).await?;
    changes.insert(0, Change::InsertMessage(m.clone()));
    crate::federation::commit(st, changes, audit).await?;
    Ok(m)
}

/// Attachment types a clinician may upload. Everything else is refused, so that the node never stores or serves
/// active content.
pub const ALLOWED_TYPES: &[&str] = &[
    "application/pdf",
    "image/png",
    "image/jpeg",
    "application/dicom",
    "text/plain",
    // Whole-slide images (tiled TIFF, Aperio SVS), shown by the slide viewer (src/slides.rs).
    "image/tiff",
];

fn sniff_ok(content_type: &str, bytes: &[u8]) -> bool {
    match content_type {
        "application/pdf" => bytes.starts_with(b"%PDF-"),
        "image/png" => bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "image/jpeg" => bytes.starts_with(&[0xFF, 0xD8, 0xFF]),
        "application/dicom" => bytes.len() > 132 && &bytes[128..132] == b"DICM",
        "text/plain" => std::str::from_utf8(bytes).is_ok(),
        "image/tiff" => [b"II*\0", b"MM\0*", b"II+\0", b"MM\0+"]
            .iter()
            .any(|m| bytes.starts_with(*m)),
        _ => false,
    }
}

pub async fn add_attachment(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    filename: &str,
    content_type: &str,
    bytes: Bytes,
) -> AppResult<Attachment> {
    let body = futures::stream::iter([Ok(bytes)]);
    add_attachment_stream(st, p, id, filename, content_type, body).await
}

/// Bytes read before an attachment's type is decided: enough for every signature [`sniff_ok`] checks (DICOM's
/// lies at byte 128).
const SNIFF_BYTES: usize = 4096;

/// Adds an attachment whose bytes arrive as a stream (an upload of any size up to
/// [`crate::NodeConfig::max_attachment_bytes`]), in bounded memory: the role, the case's scope and the name are
/// checked before anything is read; the first bytes decide and check the type; then every piece is digested
/// (SHA-256), counted and written to a staging blob (a multipart upload). The finished blob is moved to its
/// content address (`attachments/ab/<sha256>`, or dropped when that exists already) before the row is
/// written; a file over the limit is a 413 and leaves nothing behind (the upload is aborted); content a failed
/// row write leaves unnamed is removed by the blob sweep ([`crate::housekeeping`]).
pub async fn add_attachment_stream<S>(
    st: &AppState,
    p: &Principal,
    id: ConsultationId,
    filename: &str,
    content_type: &str,
    mut body: S,
) -> AppResult<Attachment>
where
    S: futures::Stream<Item = AppResult<Bytes>> + Unpin,
{
    use futures::StreamExt;
    p.require(CLINICAL)?;
    let c = st.store().get_consultation(&p.actor(), id).await?;
    may_write(p, &c, true)?;
    let filename = required(
        "file name",
        filename.rsplit(['/', '\\']).next().unwrap_or(filename),
        255,
    )?;
    let limit = st.config().max_attachment_bytes;
    let too_large = || {
        AppError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "error-too-large",
            format!("the file is larger than {limit} bytes"),
        )
    };
    let mut head = Vec::new();
    while head.len() < SNIFF_BYTES {
        match body.next().await {
            Some(piece) => head.extend_from_slice(&piece?),
            None => break,
        }
    }
    if head.is_empty() {
        return Err(AppError::unprocessable(
            "error-empty-file",
            "the file is empty",
        ));
    }
    if head.len() as u64 > limit {
        return Err(too_large());
    }
    // Browsers send .svs (often .tif too) as application/octet-stream: a slide is known by its name and content.
    let lower = filename.to_ascii_lowercase();
    let content_type = if [".svs", ".tif", ".tiff"].iter().any(|e| lower.ends_with(e))
        && sniff_ok("image/tiff", &head)
    {
        "image/tiff"
    } else {
        content_type
    };
    if !ALLOWED_TYPES.contains(&content_type) {
        return Err(AppError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "error-file-type",
            format!(
                "{content_type:?} is not accepted; accepted: {}",
                ALLOWED_TYPES.join(", ")
            ),
        ));
    }
    let not_content = || {
        AppError::unprocessable(
            "error-file-content",
            format!("the file's content is not {content_type}"),
        )
    };
    // Text is checked as it arrives (UTF-8 throughout); the other types by their first bytes.
    let mut text = (content_type == "text/plain").then(Utf8Check::default);
    if text.is_none() && !sniff_ok(content_type, &head) {
        return Err(not_content());
    }
    let staging = format!("attachments/incoming/{}", uuid::Uuid::new_v4());
    let mut writer = st.blobs().writer(&staging).await?;
    let mut sha = Sha256::new();
    let mut size = 0u64;
    let mut piece = Bytes::from(head);
    let received: AppResult<()> = loop {
        size += piece.len() as u64;
        if size > limit {
            break Err(too_large());
        }
        if text.as_mut().is_some_and(|t| !t.feed(&piece)) {
            break Err(not_content());
        }
        sha.update(&piece);
        if let Err(e) = writer.write(&piece).await {
            break Err(e);
        }
        piece = match body.next().await {
            Some(Ok(b)) => b,
            Some(Err(e)) => break Err(e),
            None if text.as_ref().is_some_and(|t| !t.complete()) => break Err(not_content()),
            None => break Ok(()),
        };
    };
    if let Err(e) = received {
        writer.abort().await;
        return Err(e);
    }
    writer.finish().await?;
    let sha = hex::encode(sha.finalize());
    let key = format!("attachments/{}/{}", &sha[..2], sha);
    // Bytes first, row second: a crash in between leaves an unreferenced blob (removed by the blob sweep, see
    // `housekeeping`), never a row without its bytes. The gate keeps the sweep out until the row names them.
    let _gate = st.blobs().attachment_gate().read().await;
    let stored = match st.blobs().size(&key).await {
        Ok(Some(_)) => {
            discard(st, &staging).await;
            Ok(())
        }
        Ok(None) => st.blobs().rename(&staging, &key).await,
        Err(e) => Err(e),
    };
    if let Err(e) = stored {
        discard(st, &staging).await;
        return Err(e);
    }
    let a = Attachment {
        id: AttachmentId::new(),
        consultation_id: id,
        filename,
        content_type: content_type.to_owned(),
        size: i64::try_from(size).map_err(AppError::internal)?,
        sha256: sha,
        blob_key: key,
        uploaded_by: p.user.id,
        created_at: Utc::now(),
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "attachment",
        a.id,
        Some(c.patient_id),
        "",
    )];
    // When the row cannot be written the content stays: another upload of the same bytes may have found it and
    // be about to name it. The blob sweep removes it later if no row does.
    st.store().insert_attachment(&a, audit).await?;
    Ok(a)
}

/// Deletes a staging blob; a failure is logged (the blob sweep removes it later).
async fn discard(st: &AppState, key: &str) {
    if let Err(e) = st.blobs().delete(key).await {
        tracing::warn!(error = %e.message, "an unreferenced attachment blob could not be removed");
    }
}

/// UTF-8 validation of a text arriving in pieces: a character may be split between two pieces.
#[derive(Default)]
struct Utf8Check {
    /// The start of a character cut at the end of the last piece (at most 3 bytes).
    carry: Vec<u8>,
}

impl Utf8Check {
    /// Whether the text is valid so far.
    fn feed(&mut self, piece: &[u8]) -> bool {
        let joined;
        let data: &[u8] = if self.carry.is_empty() {
            piece
        } else {
            let mut j = std::mem::take(&mut self.carry);
            j.extend_from_slice(piece);
            joined = j;
            &joined
        };
        match std::str::from_utf8(data) {
            Ok(_) => true,
            // Cut at the end: keep the start of the character for the next piece.
            Err(e) if e.error_len().is_none() => {
                self.carry = data[e.valid_up_to()..].to_vec();
                true
            }
            Err(_) => false,
        }
    }

    /// Whether the text ended on a whole character.
    fn complete(&self) -> bool {
        self.carry.is_empty()
    }
}

pub async fn attachment_content(
    st: &AppState,
    p: &Principal,
    id: AttachmentId,
) -> AppResult<(Attachment, Bytes)> {
    let (a, patient) = readable_attachment(st, p, id).await?;
    let bytes = st.blobs().get(&a.blob_key).await?;
    audit_attachment_read(st, p, &a, patient).await?;
    Ok((a, bytes))
}

/// An attachment's bytes as a stream (a download of any size in bounded memory), with its size; audited like
/// [`attachment_content`].
pub async fn attachment_stream(
    st: &AppState,
    p: &Principal,
    id: AttachmentId,
) -> AppResult<(
    Attachment,
    u64,
    futures::stream::BoxStream<'static, Result<Bytes, object_store::Error>>,
)> {
    let (a, patient) = readable_attachment(st, p, id).await?;
    let (size, stream) = st.blobs().get_stream(&a.blob_key).await?;
    audit_attachment_read(st, p, &a, patient).await?;
    Ok((a, size, stream))
}

/// An attachment the principal may read, with its case's patient.
async fn readable_attachment(
    st: &AppState,
    p: &Principal,
    id: AttachmentId,
) -> AppResult<(Attachment, PatientId)> {
    // Visible only through a consultation the principal may see (the store scopes both reads).
    let a = st.store().get_attachment(&p.actor(), id).await?;
    let c = st
        .store()
        .get_consultation(&p.actor(), a.consultation_id)
        .await
        .map_err(|_| AppError::not_found("attachment"))?;
    Ok((a, c.patient_id))
}

async fn audit_attachment_read(
    st: &AppState,
    p: &Principal,
    a: &Attachment,
    patient: PatientId,
) -> AppResult<()> {
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "attachment",
            a.id,
            Some(patient),
            "",
        )])
        .await?;
    Ok(())
}

/// Escalate every case whose SLA clock ran out: flag it for coordinators, once.
pub async fn escalation_sweep(st: &AppState) -> AppResult<usize> {
    let now = Utc::now();
    let overdue = st.store().overdue_unescalated(now, 500).await?;
    let mut n = 0;
    for mut c in overdue {
        let v = c.version;
        if c.escalate(now).is_ok() {
            let audit = vec![system_event(
                AuditAction::Update,
                "consultation",
                c.id,
                Some(c.patient_id),
                "escalate",
            )];
            match st.store().update_consultation(&c, v, audit).await {
                Ok(()) => {
                    n += 1;
                    tracing::warn!(consultation_id = %c.id, urgency = c.urgency.as_str(), "SLA breached; escalated to coordinators");
                }
                Err(caravan_store::StoreError::Conflict) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the OpenAPI document promises is accepted: text matching `NON_BLANK` within its length passes
    /// `required`, and a language list whose items match `LANGUAGE_TAG` passes `languages` (a fuzzer builds
    /// requests from these patterns and expects them taken).
    #[test]
    fn the_schema_patterns_admit_only_what_the_handlers_take() {
        let non_blank = regex::Regex::new(crate::api::NON_BLANK).unwrap();
        let tag = regex::Regex::new(crate::api::LANGUAGE_TAG).unwrap();
        let samples = [
            "",
            " ",
            "\u{85}",
            "\u{2003}",
            "\u{feff}",
            "\t\n",
            "a",
            " a ",
            "\u{85}x",
            "zh-CN",
            " ru ",
            "en_GB",
            "abcdefghijklm",
            "abcdefghijkl",
            "Ω",
            "x y",
        ];
        for s in samples {
            if non_blank.is_match(s) {
                assert!(required("field", s, 200).is_ok(), "{s:?} matches NON_BLANK");
            }
            if tag.is_match(s) {
                assert!(
                    languages(&[s.to_owned()]).is_ok(),
                    "{s:?} matches LANGUAGE_TAG"
                );
            }
        }
        // And the patterns are not vacuous: blanks and bad tags are outside them.
        assert!(!non_blank.is_match(" \u{85}\t"));
        assert!(non_blank.is_match(" a "));
        assert!(!tag.is_match("en_GB") && !tag.is_match("abcdefghijklm"));
        assert!(tag.is_match(" zh-CN "));
    }
}
