//! Live care: video visits with a waiting room (issue 6, points 1 and 2).
//!
//! - Booking: FHIR-shaped schedules, slots and visits (appointment + encounter) in the node store
//!   (`caravan_store::visits`); a visit is an outpatient encounter or a mode of a consultation (an MDT meeting).
//! - Guests (the patient, an interpreter, a family member) enter with an invitation link: a random token of
//!   which the store keeps only the SHA-256, valid for one visit until it expires, giving access to that visit's
//!   guest pages, its waiting room, its TURN credentials and its signaling socket, and to nothing else.
//! - The waiting room: the patient checks in, sees their place in their clinician's queue; the clinician admits
//!   one patient at a time (the store refuses a second visit in progress).
//! - The call: WebRTC between the browsers (1:1 peer to peer, up to four in a mesh); the node relays only
//!   signaling messages between the participants of one visit (`signal`), mints short-lived TURN credentials for
//!   coturn (`turn_credential`, the TURN REST API scheme) and never sees media. Of a call it keeps who joined and
//!   left, and the encounter's start and end.
//!
//! Every read and write of a visit is an audit event with the patient's id, like other patient data.

pub mod api;
pub mod pages;
pub mod signal;

use crate::audit::{event, search_events, system_event};
use crate::auth::{token_hash, Principal};
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::http::StatusCode;
use base64::Engine;
use caravan_domain::*;
use caravan_store::*;
use chrono::{DateTime, Duration, SubsecRound, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use uuid::Uuid;

/// Roles that hold visits, book them and admit from the waiting room.
pub const CLINICIANS: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];
/// Roles that may read visits (each scoped in the store).
pub const VISIT_READERS: &[Role] = &[
    Role::Referrer,
    Role::Consultant,
    Role::Coordinator,
    Role::Patient,
];
/// A mesh call: every browser sends its media to every other, so four is the practical limit of a phone.
pub const MAX_PEERS: usize = 4;
/// The longest TURN credential the node mints (RFC 8489 deployments and the TURN REST draft advise short ones).
pub const MAX_TURN_TTL_SECS: u64 = 3600;
/// The audio-only rule's defaults. Under a 256 kbit/s link Chromium estimates 180–300 kbit/s of uplink and gives
/// video 50–250 of it (320×240 at a few frames per second, audio squeezed): below 300 kbit/s for video the call
/// goes on as audio. Two seconds of averaging keep a dip from switching, and let the switch come within 5 s of
/// connecting (the goal; measured by e2e/visits-bench.mjs).
pub const DEFAULT_AUDIO_ONLY_BELOW_KBPS: u32 = 300;
pub const DEFAULT_AUDIO_ONLY_AFTER_SECONDS: u32 = 2;
pub const DEFAULT_VIDEO_BACK_ABOVE_KBPS: u32 = 500;
/// The cookie that carries a guest's invitation token (HttpOnly; only the visit pages and socket read it).
pub const GUEST_COOKIE: &str = "caravan_visit";

/// The node's live-care settings (`caravan serve --turn-url ... --turn-secret ... --turn-ttl ...`).
#[derive(Clone, Debug)]
pub struct VisitsConfig {
    /// TURN/STUN URLs handed to browsers, e.g. `turn:turn.example.org:3478?transport=udp`.
    pub turn_urls: Vec<String>,
    /// coturn's `static-auth-secret`; without it no TURN credential is minted.
    pub turn_secret: Option<String>,
    pub turn_ttl_secs: u64,
    /// Force every call through the relay (`iceTransportPolicy: 'relay'`): hides participants' addresses.
    pub relay_only: bool,
    /// Audio-only switch (run by each browser, visit.js): when the bitrate video can have — the lower of the
    /// browser's uplink estimate and its video encoder's target — averages below `low_kbps` over `low_seconds`,
    /// video stops; it comes back after `recover_kbps` of estimated uplink for as long, or when a trial of video
    /// (after 10 s of audio-only, doubling on each relapse up to a minute) holds.
    pub low_kbps: u32,
    pub recover_kbps: u32,
    pub low_seconds: u32,
    /// How long an invitation link stays valid after the visit's planned end.
    pub invitation_grace_hours: i64,
}

impl Default for VisitsConfig {
    fn default() -> Self {
        Self {
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: MAX_TURN_TTL_SECS,
            relay_only: false,
            low_kbps: DEFAULT_AUDIO_ONLY_BELOW_KBPS,
            recover_kbps: DEFAULT_VIDEO_BACK_ABOVE_KBPS,
            low_seconds: DEFAULT_AUDIO_ONLY_AFTER_SECONDS,
            invitation_grace_hours: 2,
        }
    }
}

/// The `serve` flags of live care (flattened into the binary's CLI).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct VisitArgs {
    /// A TURN (or STUN) server URL for video visits, e.g. `turn:relay.example.org:3478`; repeat for several.
    #[arg(long = "turn-url", env = "CARAVAN_TURN_URL", value_delimiter = ',')]
    pub turn_url: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): the node mints short-lived TURN credentials from it.
    #[arg(long, env = "CARAVAN_TURN_SECRET", hide_env_values = true)]
    pub turn_secret: Option<String>,
    /// Lifetime of a minted TURN credential, in seconds (at most 3600).
    #[arg(long, env = "CARAVAN_TURN_TTL", default_value_t = MAX_TURN_TTL_SECS)]
    pub turn_ttl: u64,
    /// Force video visits through the TURN relay (browsers use only relay candidates).
    #[arg(long, env = "CARAVAN_TURN_RELAY_ONLY")]
    pub turn_relay_only: bool,
    /// Switch a call to audio-only when the bitrate a browser can give video (its uplink estimate or its video
    /// encoder's target, the lower) averages below this many kbit/s ...
    #[arg(long, default_value_t = DEFAULT_AUDIO_ONLY_BELOW_KBPS)]
    pub audio_only_below_kbps: u32,
    /// ... over this many seconds (and back to video after as long above --video-back-above-kbps).
    #[arg(long, default_value_t = DEFAULT_AUDIO_ONLY_AFTER_SECONDS)]
    pub audio_only_after_seconds: u32,
    /// Back to video once the browser's uplink estimate stays at this many kbit/s or more.
    #[arg(long, default_value_t = DEFAULT_VIDEO_BACK_ABOVE_KBPS)]
    pub video_back_above_kbps: u32,
}

impl VisitArgs {
    pub fn config(&self) -> Result<VisitsConfig, String> {
        if self.turn_ttl == 0 || self.turn_ttl > MAX_TURN_TTL_SECS {
            return Err(format!(
                "--turn-ttl must be between 1 and {MAX_TURN_TTL_SECS} seconds, not {}",
                self.turn_ttl
            ));
        }
        let has_turn = self.turn_url.iter().any(|u| u.starts_with("turn"));
        if has_turn && self.turn_secret.as_deref().unwrap_or("").is_empty() {
            return Err("--turn-url names a TURN server but --turn-secret is missing".into());
        }
        if self.turn_relay_only && !has_turn {
            return Err("--turn-relay-only needs a TURN server (--turn-url turn:...)".into());
        }
        if self.audio_only_after_seconds == 0 || self.audio_only_below_kbps == 0 {
            return Err(
                "--audio-only-below-kbps and --audio-only-after-seconds must be positive".into(),
            );
        }
        Ok(VisitsConfig {
            turn_urls: self.turn_url.clone(),
            turn_secret: self.turn_secret.clone().filter(|s| !s.is_empty()),
            turn_ttl_secs: self.turn_ttl,
            relay_only: self.turn_relay_only,
            low_kbps: self.audio_only_below_kbps,
            recover_kbps: self.video_back_above_kbps.max(self.audio_only_below_kbps),
            low_seconds: self.audio_only_after_seconds,
            ..VisitsConfig::default()
        })
    }
}

/// A TURN REST API credential (draft-uberti-behave-turn-rest, as coturn's `use-auth-secret` checks it):
/// username = `<expiry unix time>:<user>`, password = base64(HMAC-SHA1(secret, username)).
pub fn turn_credential(secret: &str, user: &str, expires_unix: i64) -> (String, String) {
    let username = format!("{expires_unix}:{user}");
    // HMAC accepts keys of any length; `new_from_slice` cannot fail for it.
    let password = match Hmac::<sha1::Sha1>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(username.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    };
    (username, password)
}

/// What a browser needs to build its `RTCPeerConnection` and run the audio-only rule.
pub fn ice_config(cfg: &VisitsConfig, user: &str, now: DateTime<Utc>) -> Value {
    let mut servers = Vec::new();
    let (stun, turn): (Vec<&String>, Vec<&String>) =
        cfg.turn_urls.iter().partition(|u| u.starts_with("stun"));
    if !stun.is_empty() {
        servers.push(json!({ "urls": stun }));
    }
    let mut expires = None;
    if let (false, Some(secret)) = (turn.is_empty(), cfg.turn_secret.as_deref()) {
        let exp = now.timestamp() + cfg.turn_ttl_secs as i64;
        let (username, credential) = turn_credential(secret, user, exp);
        servers.push(json!({ "urls": turn, "username": username, "credential": credential }));
        expires = Some(exp);
    }
    json!({
        "iceServers": servers,
        "iceTransportPolicy": if cfg.relay_only { "relay" } else { "all" },
        "expires": expires,
        "ttl": cfg.turn_ttl_secs,
        "audioOnly": {
            "lowKbps": cfg.low_kbps,
            "recoverKbps": cfg.recover_kbps,
            "seconds": cfg.low_seconds,
        },
    })
}

/// Who is acting on a visit: a signed-in user, or a guest holding an invitation.
#[derive(Clone, Debug)]
pub enum Visitor {
    User(Principal),
    Guest(Invitation),
}

impl Visitor {
    /// The participant key kept in the store (`user:<id>` or `guest:<invitation id>`).
    pub fn key(&self) -> String {
        match self {
            Self::User(p) => format!("user:{}", p.user.id),
            Self::Guest(i) => format!("guest:{}", i.id),
        }
    }
    pub fn display_name(&self) -> String {
        match self {
            Self::User(p) => p.user.display_name.clone(),
            Self::Guest(i) => i.display_name.clone(),
        }
    }
    /// The TURN username's user part: an id, never a name.
    pub fn turn_user(&self) -> String {
        match self {
            Self::User(p) => p.user.id.to_string(),
            Self::Guest(i) => format!("guest-{}", i.id),
        }
    }
    /// An audit event by this visitor (a guest is named by role; its invitation id is the detail).
    pub fn audit(
        &self,
        action: AuditAction,
        entity_type: &str,
        entity_id: impl ToString,
        patient: Option<PatientId>,
        detail: &str,
    ) -> AuditEvent {
        match self {
            Self::User(p) => event(p, action, entity_type, entity_id, patient, detail),
            Self::Guest(i) => {
                let mut e = system_event(
                    action,
                    entity_type,
                    entity_id,
                    patient,
                    &format!(
                        "invitation {}{}{detail}",
                        i.id,
                        if detail.is_empty() { "" } else { ": " }
                    ),
                );
                e.actor_name = format!("guest ({})", i.role.as_str());
                e.purpose = if i.role == GuestRole::Patient {
                    "self"
                } else {
                    "treatment"
                }
                .into();
                e
            }
        }
    }
}

/// A guest's invitation from its token: unknown → 401, expired → 410, both with a code the page explains.
pub async fn guest(st: &AppState, token: &str) -> AppResult<Invitation> {
    let inv = st
        .store()
        .visit_invitation_by_token(&token_hash(token.trim()))
        .await
        .map_err(|e| match e {
            StoreError::NotFound(_) => AppError::new(
                StatusCode::UNAUTHORIZED,
                "error-visit-token",
                "this invitation link is not valid; ask the clinic for a new one",
            ),
            other => other.into(),
        })?;
    if inv.expires_at <= Utc::now() {
        return Err(AppError::new(
            StatusCode::GONE,
            "error-visit-token-expired",
            "this invitation link has expired; ask the clinic for a new one",
        ));
    }
    Ok(inv)
}

/// The guest's token from the `caravan_visit` cookie or the `X-Visit-Token` header.
pub fn guest_token(headers: &axum::http::HeaderMap) -> Option<String> {
    if let Some(v) = headers.get("x-visit-token").and_then(|v| v.to_str().ok()) {
        return Some(v.to_owned());
    }
    axum_extra::extract::CookieJar::from_headers(headers)
        .get(GUEST_COOKIE)
        .map(|c| c.value().to_owned())
}

/// The guest of a request, or 401 naming the missing link.
pub async fn guest_from(st: &AppState, headers: &axum::http::HeaderMap) -> AppResult<Invitation> {
    match guest_token(headers) {
        Some(t) => guest(st, &t).await,
        None => Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            "error-visit-token",
            "open the invitation link you were sent to enter the visit",
        )),
    }
}

/// A stateless CSRF token for a guest's form posts: derived from the invitation token they hold.
pub fn guest_csrf(token: &str) -> String {
    crate::auth::token_hash(&format!("visit-csrf:{token}"))
}

fn conflict(code: &'static str, message: &str) -> AppError {
    AppError::new(StatusCode::CONFLICT, code, message)
}

fn parse_time(what: &str, s: &str) -> AppResult<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s.trim())
        .map(|d| d.with_timezone(&Utc))
        .map_err(|_| {
            AppError::unprocessable(
                "error-visit-time",
                format!("{what} {s:?} is not an RFC 3339 time such as 2030-03-01T09:00:00Z"),
            )
        })
}

// ---------- schedules and slots ----------

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
pub struct NewSchedule {
    /// The clinician (default: the caller).
    pub practitioner_id: Option<UserId>,
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::api::NON_BLANK))]
    pub service: String,
}

pub async fn create_schedule(st: &AppState, p: &Principal, n: NewSchedule) -> AppResult<Schedule> {
    p.require(CLINICIANS)?;
    let service = n.service.trim();
    if service.is_empty() || service.chars().count() > 200 {
        return Err(AppError::unprocessable(
            "error-visit-service",
            "service must be 1 to 200 characters",
        ));
    }
    let practitioner = match n.practitioner_id {
        None => p.user.clone(),
        Some(id) if id == p.user.id => p.user.clone(),
        Some(id) => {
            // A coordinator keeps the calendars of their institution's clinicians.
            p.require(&[Role::Coordinator])?;
            let u = st.store().get_user(id).await?;
            if u.institution_id != p.user.institution_id {
                return Err(crate::consult::not_home(
                    "a coordinator keeps calendars of their own institution only",
                ));
            }
            u
        }
    };
    if !matches!(practitioner.role, Role::Referrer | Role::Consultant) || !practitioner.active {
        return Err(AppError::unprocessable(
            "error-visit-practitioner",
            "a schedule belongs to an active referrer or consultant",
        ));
    }
    let s = Schedule {
        id: Uuid::now_v7(),
        institution_id: practitioner.institution_id,
        practitioner_id: practitioner.id,
        service: service.to_owned(),
        active: true,
        created_at: Utc::now().trunc_subsecs(6),
    };
    let audit = vec![event(p, AuditAction::Create, "schedule", s.id, None, "")];
    st.store().visit_insert_schedule(&s, audit).await?;
    Ok(s)
}

/// Bounds of a slot request, checked by [`add_slots`] and stated in its schema.
const SLOT_MINUTES: (i64, i64) = (5, 240);
const MAX_SLOTS: i64 = 96;

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
pub struct NewSlots {
    /// First slot's start (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub start: String,
    /// Minutes per slot (5–240).
    #[schemars(range(min = SLOT_MINUTES.0, max = SLOT_MINUTES.1))]
    pub minutes: i64,
    /// How many consecutive slots (1–96).
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = MAX_SLOTS))]
    pub count: i64,
}

fn one() -> i64 {
    1
}

pub async fn add_slots(
    st: &AppState,
    p: &Principal,
    schedule: Uuid,
    n: NewSlots,
) -> AppResult<Vec<Slot>> {
    p.require(CLINICIANS)?;
    let s = st.store().visit_get_schedule(schedule).await?;
    if s.practitioner_id != p.user.id
        && !(p.role() == Role::Coordinator && s.institution_id == p.user.institution_id)
    {
        return Err(AppError::forbidden());
    }
    let start = parse_time("start", &n.start)?;
    let (shortest, longest) = SLOT_MINUTES;
    if !(shortest..=longest).contains(&n.minutes) || !(1..=MAX_SLOTS).contains(&n.count) {
        return Err(AppError::unprocessable(
            "error-visit-slots",
            format!("minutes must be {shortest} to {longest} and count 1 to {MAX_SLOTS}"),
        ));
    }
    let slots: Vec<Slot> = (0..n.count)
        .map(|i| Slot {
            id: Uuid::now_v7(),
            schedule_id: s.id,
            start: start + Duration::minutes(n.minutes * i),
            end: start + Duration::minutes(n.minutes * (i + 1)),
            status: SlotStatus::Free,
        })
        .collect();
    let audit = vec![event(
        p,
        AuditAction::Update,
        "schedule",
        s.id,
        None,
        &format!("{} slots", slots.len()),
    )];
    st.store()
        .visit_insert_slots(&slots, audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => conflict(
                "error-visit-slot-overlap",
                "a new slot overlaps a slot this schedule already has",
            ),
            other => other.into(),
        })?;
    Ok(slots)
}

// ---------- booking ----------

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
pub struct NewVisit {
    pub patient_id: PatientId,
    /// A free slot of a schedule; or `practitioner_id` with `start` and `end`.
    #[schemars(schema_with = "crate::api::uuid_or_null")]
    pub slot_id: Option<Uuid>,
    pub practitioner_id: Option<UserId>,
    #[schemars(extend("format" = "date-time"))]
    pub start: Option<String>,
    #[schemars(extend("format" = "date-time"))]
    pub end: Option<String>,
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub reason: String,
    /// The consultation this visit is a meeting of (its participants are invited).
    pub consultation_id: Option<ConsultationId>,
}

pub async fn book(st: &AppState, p: &Principal, n: NewVisit) -> AppResult<VisitView> {
    p.require(CLINICIANS)?;
    let store = st.store();
    let actor = p.actor();
    // The patient must be in the caller's scope (404 otherwise, as for any record).
    let patient = store.get_patient(&actor, n.patient_id).await?;
    if n.reason.chars().count() > 500 {
        return Err(AppError::unprocessable(
            "error-visit-reason",
            "reason is at most 500 characters",
        ));
    }
    let (slot_id, practitioner, start, end) = match (n.slot_id, n.practitioner_id) {
        (Some(slot_id), _) => {
            let slot = slot_by_id(st, slot_id).await?;
            let schedule = store.visit_get_schedule(slot.schedule_id).await?;
            if !schedule.active {
                return Err(conflict(
                    "error-visit-schedule-closed",
                    "this schedule takes no bookings",
                ));
            }
            let practitioner = store.get_user(schedule.practitioner_id).await?;
            (Some(slot.id), practitioner, slot.start, slot.end)
        }
        (None, Some(pid)) => {
            let start = parse_time("start", n.start.as_deref().unwrap_or(""))?;
            let end = parse_time("end", n.end.as_deref().unwrap_or(""))?;
            if end <= start || end - start > Duration::hours(8) {
                return Err(AppError::unprocessable(
                    "error-visit-time",
                    "end must be after start, at most 8 hours later",
                ));
            }
            (None, store.get_user(pid).await?, start, end)
        }
        (None, None) => {
            return Err(AppError::unprocessable(
                "error-visit-slot",
                "give slot_id, or practitioner_id with start and end",
            ))
        }
    };
    if !matches!(practitioner.role, Role::Referrer | Role::Consultant) || !practitioner.active {
        return Err(AppError::unprocessable(
            "error-visit-practitioner",
            "a visit is held by an active referrer or consultant",
        ));
    }
    let now = Utc::now().trunc_subsecs(6);
    let visit = Visit {
        id: Uuid::now_v7(),
        slot_id,
        institution_id: practitioner.institution_id,
        practitioner_id: practitioner.id,
        patient_id: patient.id,
        consultation_id: n.consultation_id,
        start,
        end,
        reason: n.reason.trim().to_owned(),
        status: VisitStatus::Booked,
        arrived_at: None,
        started_at: None,
        ended_at: None,
        created_by: p.user.id,
        created_at: now,
    };
    let mut invitations = Vec::new();
    if let Some(cid) = n.consultation_id {
        // An MDT meeting: the consultation's referrer, assignee and panel are invited as clinicians.
        let c = store.get_consultation(&actor, cid).await?;
        if c.patient_id != patient.id {
            return Err(AppError::unprocessable(
                "error-visit-consultation",
                "the consultation is about another patient",
            ));
        }
        let mut ids = vec![c.referrer_id];
        ids.extend(c.assigned_to);
        ids.extend(c.panel.iter().map(|m| m.user_id));
        ids.sort();
        ids.dedup();
        for person in store.people(&ids).await? {
            if person.user_id == practitioner.id {
                continue;
            }
            invitations.push(Invitation {
                id: Uuid::now_v7(),
                visit_id: visit.id,
                role: GuestRole::Clinician,
                display_name: person.display_name,
                user_id: Some(person.user_id),
                token_hash: None,
                expires_at: end + Duration::hours(st.config().visits.invitation_grace_hours),
                created_by: p.user.id,
                created_at: now,
            });
        }
    }
    let audit = vec![event(
        p,
        AuditAction::Create,
        "visit",
        visit.id,
        Some(patient.id),
        "booked",
    )];
    store
        .visit_book(&visit, &invitations, audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => conflict(
                "error-visit-slot-taken",
                "this time is already booked for the clinician; choose another slot",
            ),
            other => other.into(),
        })?;
    tracing::info!(visit_id = %visit.id, "visit booked");
    Ok(VisitView {
        visit,
        patient_name: format!("{} {}", patient.given_name, patient.family_name),
        practitioner_name: practitioner.display_name,
    })
}

async fn slot_by_id(st: &AppState, id: Uuid) -> AppResult<Slot> {
    Ok(st.store().visit_get_slot(id).await?)
}

/// A visit the user may see, read audited.
pub async fn get(st: &AppState, p: &Principal, id: Uuid) -> AppResult<VisitView> {
    p.require(VISIT_READERS)?;
    let v = st.store().visit_get(&p.actor(), id).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "visit",
            id,
            Some(v.visit.patient_id),
            "",
        )])
        .await?;
    Ok(v)
}

pub async fn list(st: &AppState, p: &Principal, f: &VisitFilter) -> AppResult<Vec<VisitView>> {
    p.require(VISIT_READERS)?;
    let found = st.store().visit_list(&p.actor(), f).await?;
    let audit = search_events(
        p,
        "visit",
        found.iter().map(|v| (v.visit.id, Some(v.visit.patient_id))),
        "",
    );
    st.store().append_audit(audit).await?;
    Ok(found)
}

/// Is this user a participant of the call (not merely someone who may read the visit)?
pub async fn is_participant(st: &AppState, p: &Principal, v: &Visit) -> AppResult<bool> {
    if v.practitioner_id == p.user.id {
        return Ok(true);
    }
    if p.role() == Role::Patient {
        return Ok(p.user.patient_id == Some(v.patient_id));
    }
    let invited = st.store().visit_invitations(v.id).await?;
    Ok(invited
        .iter()
        .any(|i| i.user_id == Some(p.user.id) && i.expires_at > Utc::now()))
}

// ---------- invitations ----------

#[derive(Clone, Debug, Deserialize, schemars::JsonSchema)]
pub struct NewInvitation {
    /// `patient`, `interpreter`, `family` (a token link) or `clinician` (a user of this node, `user_id`).
    pub role: String,
    #[serde(default)]
    pub display_name: String,
    pub user_id: Option<UserId>,
}

#[derive(Clone, Debug, Serialize)]
pub struct CreatedInvitation {
    pub invitation: Invitation,
    /// The token (shown once) and the path of the link that carries it; `None` for a user invitation.
    pub token: Option<String>,
    pub link: Option<String>,
}

pub async fn invite(
    st: &AppState,
    p: &Principal,
    visit: Uuid,
    n: NewInvitation,
) -> AppResult<CreatedInvitation> {
    p.require(CLINICIANS)?;
    let v = st.store().visit_get(&p.actor(), visit).await?.visit;
    if matches!(v.status, VisitStatus::Finished | VisitStatus::Cancelled) {
        return Err(conflict(
            "error-visit-closed",
            "this visit is over; book a new one",
        ));
    }
    let role = GuestRole::parse(n.role.trim()).ok_or_else(|| {
        AppError::unprocessable(
            "error-visit-role",
            format!(
                "role {:?} is not one of patient, interpreter, family, clinician",
                n.role
            ),
        )
    })?;
    let name = n.display_name.trim();
    let expires_at = v.end + Duration::hours(st.config().visits.invitation_grace_hours);
    let now = Utc::now().trunc_subsecs(6);
    let (display_name, user_id, token) = match role {
        GuestRole::Clinician => {
            let uid = n.user_id.ok_or_else(|| {
                AppError::unprocessable("error-visit-role", "a clinician invitation names user_id")
            })?;
            let u = st.store().get_user(uid).await?;
            if !matches!(
                u.role,
                Role::Referrer | Role::Consultant | Role::Coordinator
            ) {
                return Err(AppError::unprocessable(
                    "error-visit-role",
                    "only clinicians join as clinicians",
                ));
            }
            (u.display_name, Some(uid), None)
        }
        _ => {
            if name.is_empty() || name.chars().count() > 100 {
                return Err(AppError::unprocessable(
                    "error-visit-guest-name",
                    "display_name must be 1 to 100 characters (how the others will see the guest)",
                ));
            }
            (name.to_owned(), None, Some(crate::auth::random_token()))
        }
    };
    let inv = Invitation {
        id: Uuid::now_v7(),
        visit_id: v.id,
        role,
        display_name,
        user_id,
        token_hash: token.as_deref().map(token_hash),
        expires_at,
        created_by: p.user.id,
        created_at: now,
    };
    let audit = vec![event(
        p,
        AuditAction::Create,
        "visit_invitation",
        inv.id,
        Some(v.patient_id),
        role.as_str(),
    )];
    st.store().visit_insert_invitation(&inv, audit).await?;
    let link = token.as_ref().map(|t| format!("/visit/join/{t}"));
    Ok(CreatedInvitation {
        invitation: inv,
        token,
        link,
    })
}

// ---------- waiting room ----------

/// What a guest (or the patient) sees of their visit: its state and their place in the queue (1 = next).
#[derive(Clone, Debug, Serialize)]
pub struct GuestState {
    pub visit_id: Uuid,
    pub status: VisitStatus,
    pub role: GuestRole,
    pub display_name: String,
    pub practitioner_name: String,
    pub start: DateTime<Utc>,
    pub place: Option<usize>,
    pub waiting: usize,
}

pub async fn guest_state(st: &AppState, inv: &Invitation) -> AppResult<GuestState> {
    let v = st.store().visit_by_id(inv.visit_id).await?;
    let queue = st.store().visit_queue(v.visit.practitioner_id).await?;
    let place = queue
        .iter()
        .position(|q| q.visit.id == v.visit.id)
        .map(|i| i + 1);
    Ok(GuestState {
        visit_id: v.visit.id,
        status: v.visit.status,
        role: inv.role,
        display_name: inv.display_name.clone(),
        practitioner_name: v.practitioner_name,
        start: v.visit.start,
        place,
        waiting: queue.len(),
    })
}

/// The patient enters the waiting room (a guest of the patient role, the patient's own account, or the
/// clinician on their behalf). Other guests wait with the visit but do not queue it.
pub async fn check_in(st: &AppState, who: &Visitor, visit: Uuid) -> AppResult<Visit> {
    let v = match who {
        Visitor::Guest(i) => {
            if i.visit_id != visit {
                return Err(AppError::not_found("visit"));
            }
            st.store().visit_by_id(visit).await?.visit
        }
        Visitor::User(p) => {
            p.require(VISIT_READERS)?;
            st.store().visit_get(&p.actor(), visit).await?.visit
        }
    };
    match v.status {
        VisitStatus::Booked | VisitStatus::Arrived => {}
        VisitStatus::InProgress => return Ok(v),
        VisitStatus::Finished | VisitStatus::Cancelled => {
            return Err(conflict("error-visit-closed", "this visit is over"))
        }
    }
    let audit = vec![who.audit(
        AuditAction::Update,
        "visit",
        v.id,
        Some(v.patient_id),
        "checked in",
    )];
    st.store()
        .visit_check_in(v.id, Utc::now(), audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => conflict("error-visit-closed", "this visit is over"),
            other => other.into(),
        })
}

/// The clinician's waiting room.
pub async fn queue(st: &AppState, p: &Principal) -> AppResult<Vec<VisitView>> {
    p.require(CLINICIANS)?;
    let q = st.store().visit_queue(p.user.id).await?;
    let audit = search_events(
        p,
        "visit",
        q.iter().map(|v| (v.visit.id, Some(v.visit.patient_id))),
        "waiting room",
    );
    st.store().append_audit(audit).await?;
    Ok(q)
}

/// Admit one patient: `visit` (or the head of the queue with `None`). 409 when a visit is already in progress.
pub async fn admit(st: &AppState, p: &Principal, visit: Option<Uuid>) -> AppResult<Visit> {
    p.require(CLINICIANS)?;
    let id = match visit {
        Some(id) => id,
        None => st
            .store()
            .visit_queue(p.user.id)
            .await?
            .first()
            .map(|v| v.visit.id)
            .ok_or_else(|| conflict("error-visit-queue-empty", "nobody is waiting"))?,
    };
    let v = st.store().visit_get(&p.actor(), id).await?.visit;
    if v.practitioner_id != p.user.id {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "error-visit-not-yours",
            "only the visit's clinician admits from the waiting room",
        ));
    }
    if v.status != VisitStatus::Arrived {
        return Err(conflict(
            "error-visit-not-waiting",
            "the patient is not in the waiting room",
        ));
    }
    let audit = vec![event(
        p,
        AuditAction::Update,
        "visit",
        v.id,
        Some(v.patient_id),
        "admitted",
    )];
    let admitted = st
        .store()
        .visit_admit(v.id, Utc::now(), audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => conflict(
                "error-visit-room-occupied",
                "another visit is in progress: end it before admitting the next patient",
            ),
            other => other.into(),
        })?;
    tracing::info!(visit_id = %v.id, "visit admitted");
    Ok(admitted)
}

pub async fn finish(st: &AppState, p: &Principal, id: Uuid) -> AppResult<Visit> {
    p.require(CLINICIANS)?;
    let v = st.store().visit_get(&p.actor(), id).await?.visit;
    if v.practitioner_id != p.user.id {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "error-visit-not-yours",
            "only the visit's clinician ends it",
        ));
    }
    let audit = vec![event(
        p,
        AuditAction::Update,
        "visit",
        v.id,
        Some(v.patient_id),
        "finished",
    )];
    let done = st
        .store()
        .visit_finish(id, Utc::now(), audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => {
                conflict("error-visit-not-started", "this visit is not in progress")
            }
            other => other.into(),
        })?;
    st.visit_hub().end(id);
    Ok(done)
}

pub async fn cancel(st: &AppState, p: &Principal, id: Uuid) -> AppResult<Visit> {
    p.require(CLINICIANS)?;
    let v = st.store().visit_get(&p.actor(), id).await?.visit;
    if v.practitioner_id != p.user.id && v.created_by != p.user.id && p.role() != Role::Coordinator
    {
        return Err(AppError::forbidden());
    }
    let audit = vec![event(
        p,
        AuditAction::Update,
        "visit",
        v.id,
        Some(v.patient_id),
        "cancelled",
    )];
    st.store()
        .visit_cancel(id, Utc::now(), audit)
        .await
        .map_err(|e| match e {
            StoreError::Conflict => conflict(
                "error-visit-closed",
                "only a visit that has not started can be cancelled",
            ),
            other => other.into(),
        })
}

/// TURN credentials and ICE policy for a participant of a visit.
pub async fn ice_for(st: &AppState, who: &Visitor, visit: Uuid) -> AppResult<Value> {
    match who {
        Visitor::Guest(i) if i.visit_id != visit => return Err(AppError::not_found("visit")),
        Visitor::Guest(_) => {}
        Visitor::User(p) => {
            p.require(VISIT_READERS)?;
            let v = st.store().visit_get(&p.actor(), visit).await?.visit;
            if !is_participant(st, p, &v).await? {
                return Err(AppError::new(
                    StatusCode::FORBIDDEN,
                    "error-visit-not-participant",
                    "only the participants of this visit may join its call",
                ));
            }
        }
    }
    Ok(ice_config(
        &st.config().visits,
        &who.turn_user(),
        Utc::now(),
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The RFC 2202 HMAC-SHA1 test case 2 ("Jefe"), base64-encoded, and the username layout.
    #[test]
    fn turn_credential_is_hmac_sha1_of_the_username() {
        let (user, pass) = turn_credential("Jefe", "what do ya want for nothing?", 0);
        assert_eq!(user, "0:what do ya want for nothing?");
        let (_, reference) = {
            let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").unwrap();
            mac.update(user.as_bytes());
            (
                (),
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()),
            )
        };
        assert_eq!(pass, reference);
        // RFC 2202 case 2 itself, on the bare message.
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn ice_config_expires_within_the_ttl_and_forces_relay_when_told() {
        let cfg = VisitsConfig {
            turn_urls: vec!["turn:127.0.0.1:3478".into(), "stun:127.0.0.1:3478".into()],
            turn_secret: Some("s3cret".into()),
            turn_ttl_secs: 600,
            relay_only: true,
            ..VisitsConfig::default()
        };
        let now = Utc::now();
        let v = ice_config(&cfg, "u1", now);
        assert_eq!(v["iceTransportPolicy"], "relay");
        let turn = &v["iceServers"][1];
        let username = turn["username"].as_str().unwrap();
        let (exp, user) = username.split_once(':').unwrap();
        assert_eq!(user, "u1");
        assert_eq!(exp.parse::<i64>().unwrap(), now.timestamp() + 600);
        assert_eq!(
            turn["credential"],
            turn_credential("s3cret", "u1", now.timestamp() + 600).1
        );
        assert!(VisitArgs {
            turn_ttl: 7200,
            ..VisitArgs::default()
        }
        .config()
        .is_err());
    }
}
