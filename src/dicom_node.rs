//! The node's DICOM side (crate `imaging`): the archive in `DATA/dicom`, DICOMweb at `/dicomweb` behind the node's
//! own authentication, and, with `--dicom-listen`, the DIMSE SCP. Every access to the archive becomes an audit
//! event of the node's hash chain (who, what, which study), like any other patient-data access.

use anyhow::{Context, Result};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use caravan_domain::audit::{AuditAction, AuditEvent};
use caravan_domain::Role;
use caravan_server::AppState;
use imaging::archive::{AccessEvent, AccessObserver};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use tokio::sync::mpsc;

/// Roles that may read and send images: the clinical ones (patients read their images through their cases).
const IMAGING_ROLES: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];

/// Hands archive accesses to a task that appends them to the audit chain (the observer runs on the archive's I/O
/// path and must not block). A full queue is logged, never silently dropped.
struct AuditObserver {
    tx: mpsc::Sender<AuditEvent>,
}

impl AccessObserver for AuditObserver {
    fn on_access(&self, e: &AccessEvent<'_>) {
        let (user, name) = match e.principal.split_once(' ') {
            Some((id, name)) => (id.parse().ok(), name.to_owned()),
            None => (None, e.principal.to_owned()),
        };
        let event = AuditEvent {
            at: chrono::Utc::now(),
            actor_user: user,
            actor_name: name,
            actor_institution: None,
            actor_role: None,
            action: match e.action {
                imaging::archive::AccessAction::Store => AuditAction::Create,
                imaging::archive::AccessAction::Query => AuditAction::Search,
                imaging::archive::AccessAction::Delete => AuditAction::Delete,
                _ => AuditAction::Read,
            },
            entity_type: "dicom-study".into(),
            entity_id: e.study_uid.unwrap_or_default().to_owned(),
            patient_id: None,
            purpose: "imaging".into(),
            detail: e.action.as_str().to_owned(),
            subjects: Vec::new(),
        };
        if self.tx.try_send(event).is_err() {
            tracing::error!("imaging audit queue full: an access could not be recorded");
        }
    }
}

pub struct DicomNode {
    /// `/dicomweb`, to mount on the node's router.
    pub routes: axum::Router<AppState>,
    pub scp: Option<imaging::ScpHandle>,
}

pub async fn start(data: &Path, listen: Option<SocketAddr>, state: &AppState) -> Result<DicomNode> {
    let (tx, mut rx) = mpsc::channel::<AuditEvent>(10_000);
    let audit_state = state.clone();
    tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            let mut batch = vec![first];
            while let Ok(e) = rx.try_recv() {
                batch.push(e);
            }
            if let Err(e) = audit_state.store().append_audit(batch).await {
                tracing::error!(error = %e, "could not record imaging accesses");
            }
        }
    });
    let folder = data.join("dicom");
    std::fs::create_dir_all(&folder)
        .with_context(|| format!("cannot create {}", folder.display()))?;
    let archive = imaging::Archive::open_folder(&folder)
        .await
        .map_err(|e| anyhow::anyhow!("DICOM archive in {}: {e}", folder.display()))?
        .with_observer(Arc::new(AuditObserver { tx }));
    let scp = match listen {
        Some(addr) => Some(
            imaging::Scp::bind(addr, archive.clone(), imaging::ScpConfig::default())
                .await
                .map_err(|e| anyhow::anyhow!("DICOM SCP on {addr}: {e}"))?,
        ),
        None => None,
    };
    // Case pages link studies of this archive and show them; study transfers store into it.
    state.attach_imaging(archive.clone());
    let slides = crate::slides::routes(archive.clone());
    let dicomweb = imaging::dicomweb::router(imaging::dicomweb::DicomWebState::new(archive));
    let routes = axum::Router::new()
        .nest_service("/dicomweb", dicomweb)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            authenticate,
        ))
        // Pathology slides check the sign-in themselves (pages redirect to it, tiles answer 401).
        .merge(slides);
    Ok(DicomNode { routes, scp })
}

/// The node's sign-in (session or bearer token) in front of DICOMweb; the caller's id and name travel to the
/// archive's observer, hence to the audit trail.
async fn authenticate(State(st): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match caravan_server::auth::authenticate(req.headers(), &st).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Err(e) = principal.require(IMAGING_ROLES) {
        return e.into_response();
    }
    // STOW-RS from a browser session carries the session's CSRF token, like every other write.
    if !matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    ) {
        let presented = req
            .headers()
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok());
        if let Err(e) = principal.check_csrf(presented) {
            return e.into_response();
        }
    }
    req.extensions_mut()
        .insert(imaging::dicomweb::Principal(format!(
            "{} {}",
            principal.user.id, principal.user.display_name
        )));
    next.run(req).await
}
