//! WebRTC signaling: one WebSocket per participant at `/visit/signal/{visit}`, authenticated by the session
//! cookie (the visit's clinician, invited clinicians, the patient's own account) or by the guest's invitation
//! (cookie `caravan_visit` or header `X-Visit-Token`). The node relays offers, answers and ICE candidates between
//! the participants of that one visit and nobody else; it never sees media. At most [`MAX_PEERS`] per room, and
//! one patient.
//!
//! Wire format (JSON text frames). Browser → node: `{"type":"signal","to":ID,"data":...}`,
//! `{"type":"mode","audioOnly":bool}`. Node → browser: `welcome` (own id, the peers present), `peer-joined`,
//! `peer-left`, `signal` (with `from`), `mode` (with `from`), `ended`, `error` (`code`, `message`).

use super::{Visitor, MAX_PEERS};
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use caravan_domain::{AuditAction, Role};
use caravan_store::{Participant, VisitStatus};
use chrono::{SubsecRound, Utc};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Largest signaling message accepted (an SDP offer with many candidates is a few kilobytes).
const MAX_MESSAGE: usize = 64 * 1024;

enum Outbound {
    Text(String),
    Close,
}

struct Peer {
    id: String,
    key: String,
    role: String,
    name: String,
    tx: mpsc::UnboundedSender<Outbound>,
}

/// The rooms of the calls in progress on this node (in memory: a room is only its connected sockets).
#[derive(Default)]
pub struct Hub {
    rooms: Mutex<HashMap<Uuid, Vec<Peer>>>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    Full,
    SecondPatient,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<Peer>>> {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check(room: &[Peer], key: &str, role: &str) -> Result<(), Refusal> {
        let others: Vec<&Peer> = room.iter().filter(|p| p.key != key).collect();
        if role == "patient" && others.iter().any(|p| p.role == "patient") {
            return Err(Refusal::SecondPatient);
        }
        if others.len() >= MAX_PEERS {
            return Err(Refusal::Full);
        }
        Ok(())
    }

    /// Whether `key` could join now (checked before the upgrade, so the refusal is an HTTP answer).
    pub fn can_join(&self, visit: Uuid, key: &str, role: &str) -> Result<(), Refusal> {
        let rooms = self.lock();
        rooms
            .get(&visit)
            .map_or(Ok(()), |room| Self::check(room, key, role))
    }

    /// Join a room; an earlier socket of the same participant (a reloaded page) is closed and replaced.
    fn join(&self, visit: Uuid, peer: Peer) -> Result<Vec<Value>, Refusal> {
        let mut rooms = self.lock();
        let room = rooms.entry(visit).or_default();
        Self::check(room, &peer.key, &peer.role)?;
        let mut kept = Vec::with_capacity(room.len());
        for p in room.drain(..) {
            if p.key == peer.key {
                let _ = p.tx.send(Outbound::Close);
            } else {
                kept.push(p);
            }
        }
        *room = kept;
        let joined = json!({ "type": "peer-joined", "peer": { "id": peer.id, "name": peer.name, "role": peer.role } })
            .to_string();
        let present = room
            .iter()
            .map(|p| {
                let _ = p.tx.send(Outbound::Text(joined.clone()));
                json!({ "id": p.id, "name": p.name, "role": p.role })
            })
            .collect();
        room.push(peer);
        Ok(present)
    }

    fn leave(&self, visit: Uuid, id: &str) {
        let mut rooms = self.lock();
        if let Some(room) = rooms.get_mut(&visit) {
            room.retain(|p| p.id != id);
            let left = json!({ "type": "peer-left", "id": id }).to_string();
            for p in room.iter() {
                let _ = p.tx.send(Outbound::Text(left.clone()));
            }
            if room.is_empty() {
                rooms.remove(&visit);
            }
        }
    }

    /// Relay a message to one peer of the same room; false if there is no such peer there.
    fn relay(&self, visit: Uuid, to: &str, text: String) -> bool {
        let rooms = self.lock();
        match rooms
            .get(&visit)
            .and_then(|room| room.iter().find(|p| p.id == to))
        {
            Some(p) => p.tx.send(Outbound::Text(text)).is_ok(),
            None => false,
        }
    }

    fn broadcast(&self, visit: Uuid, from: &str, text: String) {
        let rooms = self.lock();
        if let Some(room) = rooms.get(&visit) {
            for p in room.iter().filter(|p| p.id != from) {
                let _ = p.tx.send(Outbound::Text(text.clone()));
            }
        }
    }

    /// The visit ended: tell everyone and close their sockets.
    pub fn end(&self, visit: Uuid) {
        let mut rooms = self.lock();
        if let Some(room) = rooms.remove(&visit) {
            let ended = json!({ "type": "ended" }).to_string();
            for p in room {
                let _ = p.tx.send(Outbound::Text(ended.clone()));
                let _ = p.tx.send(Outbound::Close);
            }
        }
    }

    /// How many sockets a visit's room has (for tests and the admin view).
    pub fn present(&self, visit: Uuid) -> usize {
        self.lock().get(&visit).map_or(0, Vec::len)
    }
}

/// Cross-site WebSocket hijacking guard: a browser always sends `Origin`; it must be this node.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true; // not a browser (API clients, tests); they authenticate explicitly
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    origin
        .split_once("://")
        .is_some_and(|(_, rest)| rest.trim_end_matches('/') == host)
}

/// Who is connecting, and as what role in the call.
async fn participant(
    st: &AppState,
    headers: &HeaderMap,
    visit: Uuid,
) -> AppResult<(Visitor, String)> {
    if let Ok(p) = crate::auth::authenticate(headers, st).await {
        p.require(super::VISIT_READERS)?;
        let v = st.store().visit_get(&p.actor(), visit).await?.visit;
        if !super::is_participant(st, &p, &v).await? {
            return Err(AppError::new(
                StatusCode::FORBIDDEN,
                "error-visit-not-participant",
                "only the participants of this visit may join its call",
            ));
        }
        let role = if p.role() == Role::Patient {
            "patient"
        } else {
            "clinician"
        };
        return Ok((Visitor::User(p), role.to_owned()));
    }
    let inv = super::guest_from(st, headers).await?;
    if inv.visit_id != visit {
        return Err(AppError::not_found("visit"));
    }
    let role = inv.role.as_str().to_owned();
    Ok((Visitor::Guest(inv), role))
}

pub async fn socket(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    match prepare(&st, &id, &headers).await {
        Err(e) => e.into_response(),
        Ok((visit, who, role, patient)) => match ws {
            Err(_) => AppError::bad_request(
                "this address is a WebSocket (signaling of the visit's call); connect with a WebSocket client",
            )
            .into_response(),
            Ok(ws) => ws
                .max_message_size(MAX_MESSAGE)
                .on_upgrade(move |socket| run(st, socket, visit, who, role, patient)),
        },
    }
}

async fn prepare(
    st: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> AppResult<(Uuid, Visitor, String, caravan_domain::PatientId)> {
    if !same_origin(headers) {
        return Err(AppError::new(
            StatusCode::FORBIDDEN,
            "error-visit-origin",
            "the call must be opened from this node's own pages",
        ));
    }
    let visit: Uuid = crate::api::parse_id("visit", id)?;
    let (who, role) = participant(st, headers, visit).await?;
    let v = st.store().visit_by_id(visit).await?.visit;
    if v.status != VisitStatus::InProgress {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-visit-not-started",
            "the clinician has not admitted this visit yet (or it has ended)",
        ));
    }
    st.visit_hub()
        .can_join(visit, &who.key(), &role)
        .map_err(refusal)?;
    Ok((visit, who, role, v.patient_id))
}

fn refusal(r: Refusal) -> AppError {
    match r {
        Refusal::Full => AppError::new(
            StatusCode::CONFLICT,
            "error-visit-room-full",
            "this call already has four participants",
        ),
        Refusal::SecondPatient => AppError::new(
            StatusCode::CONFLICT,
            "error-visit-room-occupied",
            "a patient is already in this call",
        ),
    }
}

async fn run(
    st: AppState,
    socket: WebSocket,
    visit: Uuid,
    who: Visitor,
    role: String,
    patient: caravan_domain::PatientId,
) {
    let (mut sink, mut stream) = socket.split();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let me = crate::auth::random_token()[..16].to_owned();
    let key = who.key();
    let peer = Peer {
        id: me.clone(),
        key: key.clone(),
        role: role.clone(),
        name: who.display_name(),
        tx,
    };
    let present = match st.visit_hub().join(visit, peer) {
        Ok(p) => p,
        Err(r) => {
            let e = refusal(r);
            let _ = sink
                .send(Message::Text(
                    json!({ "type": "error", "code": e.code, "message": e.message })
                        .to_string()
                        .into(),
                ))
                .await;
            let _ = sink.close().await;
            return;
        }
    };
    let now = Utc::now().trunc_subsecs(6);
    let joined = Participant {
        visit_id: visit,
        key: key.clone(),
        role: role.clone(),
        display_name: who.display_name(),
        joined_at: now,
        left_at: None,
    };
    let audit = vec![who.audit(
        AuditAction::Update,
        "visit",
        visit,
        Some(patient),
        "joined the call",
    )];
    if let Err(e) = st.store().visit_joined(&joined, audit).await {
        tracing::error!(visit_id = %visit, error = %e, "could not record a participant");
    }
    tracing::info!(visit_id = %visit, peer = %me, role = %role, "joined call");
    let welcome =
        json!({ "type": "welcome", "id": me, "role": role, "peers": present }).to_string();
    if sink.send(Message::Text(welcome.into())).await.is_err() {
        st.visit_hub().leave(visit, &me);
        return;
    }
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Outbound::Text(t)) => {
                    if sink.send(Message::Text(t.into())).await.is_err() { break; }
                }
                Some(Outbound::Close) | None => { let _ = sink.close().await; break; }
            },
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    if let Some(reply) = handle(&st, visit, &me, t.as_str()) {
                        if sink.send(Message::Text(reply.into())).await.is_err() { break; }
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    st.visit_hub().leave(visit, &me);
    let audit = vec![who.audit(
        AuditAction::Update,
        "visit",
        visit,
        Some(patient),
        "left the call",
    )];
    if let Err(e) = st
        .store()
        .visit_left(visit, &key, Utc::now().trunc_subsecs(6), audit)
        .await
    {
        tracing::warn!(visit_id = %visit, error = %e, "could not record a participant leaving");
    }
    tracing::info!(visit_id = %visit, peer = %me, "left call");
}

fn error_frame(code: &str, message: &str) -> String {
    json!({ "type": "error", "code": code, "message": message }).to_string()
}

/// One message from a browser: relayed within the room, or answered with an error frame.
fn handle(st: &AppState, visit: Uuid, me: &str, text: &str) -> Option<String> {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return Some(error_frame(
            "error-visit-signal",
            "a signaling message is a JSON object",
        ));
    };
    match msg["type"].as_str() {
        Some("signal") => {
            let Some(to) = msg["to"].as_str() else {
                return Some(error_frame(
                    "error-visit-signal",
                    "a signal message names `to`",
                ));
            };
            let out = json!({ "type": "signal", "from": me, "data": msg["data"] }).to_string();
            if st.visit_hub().relay(visit, to, out) {
                None
            } else {
                Some(error_frame(
                    "error-visit-peer",
                    "no such participant in this call",
                ))
            }
        }
        Some("mode") => {
            let audio_only = msg["audioOnly"].as_bool().unwrap_or(false);
            let out = json!({ "type": "mode", "from": me, "audioOnly": audio_only }).to_string();
            st.visit_hub().broadcast(visit, me, out);
            None
        }
        _ => Some(error_frame(
            "error-visit-signal",
            "type must be `signal` or `mode`",
        )),
    }
}
