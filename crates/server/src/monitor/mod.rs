//! Remote monitoring in the node: the `monitoring` crate's database (`DATA/monitoring.sqlite`), its MQTT ingest
//! running in the node process (`--mqtt`), and the device registry bound to the node's patients.
//!
//! - Scoping: a user sees a patient's devices, observations and alerts exactly when the node's store lets them read
//!   the patient (their institution, or shared through a consultation). Registering, rotating and unbinding a
//!   device needs a clinician of the patient's own institution.
//! - Audit: every read of a patient's observations or alerts (pages, JSON API, FHIR) and every registry change is
//!   an event of the node's chain. Readings arriving over MQTT are not audited one by one: a device can only
//!   deliver for the patient it was bound to by an audited registration, and each stored message is in the
//!   monitoring database's `messages` table (device, message id, receipt time).
//! - Escalation: tier 1 (responsible clinician) is the referring and consulting clinicians who see the patient,
//!   tier 2 (medical team) adds the coordinator of the institution, tier 3 (critical-care outreach) every
//!   clinical user who sees the patient. An unacknowledged alert moves up one tier per timeout (5 min high,
//!   15 min medium, 30 min low–medium), checked every few seconds by the node whether or not MQTT is on (the
//!   ingest's own escalation is off in the node). Each move is an audit event of the alert's patient by the
//!   system (in the patient's access log); a move whose event cannot be appended is undone and retried at the
//!   next check. Each acknowledgement is an audit event by the clinician who acknowledged.
//! - Broker: the node writes the Mosquitto password file and ACL for the registered devices (plus its own ingest
//!   user when `--mqtt-password` is given) to `DATA/monitoring-broker/` after every registry change; Mosquitto
//!   re-reads them on SIGHUP, which the node sends after each rewrite when `--mqtt-broker-pid-file` names the
//!   broker's `pid_file` (a failure is logged, never fatal: the files are written and the registry changed).
//!
//! Two databases: the registry and the readings live in the monitoring crate's own SQLite file (its ingest
//! commits there before it acknowledges to the broker, at ≥ 10,000 observations/s); the node's store keeps the
//! patients and the audit chain. A registration is written to the monitoring database first and undone if its
//! audit event cannot be appended.

pub mod api;
pub mod chart;
pub mod demo;
pub mod pages;

use crate::audit::{event, search_events, system_event};
use crate::auth::Principal;
use crate::consult::{not_home, PATIENT_READERS};
use crate::error::{AppError, AppResult};
use crate::AppState;
use axum::http::StatusCode;
use caravan_domain::{AuditAction, Patient, PatientId, Role};
use chrono::{DateTime, Utc};
use monitoring::alerts::{current_set, escalation_due, AlertPolicy, TIERS};
use monitoring::broker::{self, BrokerError, INGEST_USER};
use monitoring::ingest::{run_service, BrokerAddr, ServiceConfig};
use monitoring::model::{Device, DeviceId, DeviceKind, PatientRef, Reading};
use monitoring::news2::{self, Spo2Scale};
use monitoring::store::{AlertRecord, DeviceRecord, Durability, ObservationRecord, Store};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

pub use monitoring::model::{ReadingKind, ALL_KINDS};
pub use monitoring::store::ObservationFilter;

/// Clinical roles: the ward, alerts and the registry.
pub const CLINICAL: &[Role] = &[Role::Referrer, Role::Consultant, Role::Coordinator];

/// Most observations one read returns.
pub const MAX_OBSERVATIONS: u32 = 1000;

/// `serve` / `demo` flags.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct MonitorArgs {
    /// Run the remote-monitoring ingest in the node: the MQTT broker (mqtt://host:port) devices publish to.
    #[arg(long, env = "CARAVAN_MQTT")]
    pub mqtt: Option<String>,
    /// The node's own MQTT user name on that broker.
    #[arg(long, env = "CARAVAN_MQTT_USER", default_value = INGEST_USER)]
    pub mqtt_user: String,
    /// The node's MQTT password (also written, hashed, into DATA/monitoring-broker/passwd).
    #[arg(long, env = "CARAVAN_MQTT_PASSWORD", hide_env_values = true)]
    pub mqtt_password: Option<String>,
    /// MQTT client id: the broker keeps the node's persistent session (queued readings) under it.
    #[arg(
        long,
        env = "CARAVAN_MQTT_CLIENT_ID",
        default_value = "caravan-node-ingest"
    )]
    pub mqtt_client_id: String,
    /// Mosquitto's pid file (its `pid_file` setting). After every rewrite of DATA/monitoring-broker/passwd and acl
    /// (start, device registered, password rotated, device unbound) the node sends that process SIGHUP, on which
    /// Mosquitto re-reads both files; without it the broker must be reloaded by hand. A failure is logged.
    #[arg(long, env = "CARAVAN_MQTT_BROKER_PID_FILE")]
    pub mqtt_broker_pid_file: Option<PathBuf>,
}

/// What the ingest is doing, for the ward page.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IngestState {
    /// No `--mqtt`: stored data only.
    Off,
    /// Connecting or reconnecting.
    Connecting,
    /// Subscribed.
    Subscribed,
}

/// Remote monitoring of this node.
pub struct Monitor {
    store: Store,
    registry_changed: Arc<Notify>,
    broker_dir: PathBuf,
    /// `(user, hash)` of the node's own MQTT user, for the password file.
    ingest_hash: Option<(String, String)>,
    policy: AlertPolicy,
    state: Mutex<IngestState>,
    broker_url: Option<String>,
    /// `--mqtt-broker-pid-file`.
    broker_pid_file: Option<PathBuf>,
    /// The last attempt to make the broker re-read its files.
    last_reload: Mutex<Option<BrokerReload>>,
}

/// The outcome of telling the broker to re-read its password file and ACL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BrokerReload {
    pub at: DateTime<Utc>,
    /// The broker's process id, when it was signalled.
    pub pid: Option<i32>,
    /// Why it was not (no patient data: paths, process ids and system errors only).
    pub error: Option<String>,
}

/// Why the broker could not be told to reload.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cannot read the broker's pid file {path}: {source}")]
    PidFile {
        path: String,
        source: std::io::Error,
    },
    #[error("the broker's pid file {0} does not hold a process id above 1")]
    NotAPid(String),
    #[error("process {0} is not mosquitto (a stale pid file?); it was not signalled")]
    NotMosquitto(i32),
    #[error("SIGHUP to process {pid}: {source}")]
    Signal { pid: i32, source: std::io::Error },
    #[error("signalling the broker needs a Unix system")]
    Unsupported,
}

/// Send SIGHUP to the Mosquitto whose process id is in `pid_file`; returns the pid. Never signals a process
/// group, init or every process (0, 1 and negative ids are refused: `kill(0|-1|-n)` would), nor, on Linux, a
/// process that is not mosquitto (a pid file left by a broker that died may name a reused id, and SIGHUP ends
/// most programs).
pub fn signal_broker(pid_file: &Path) -> Result<i32, ReloadError> {
    let text = std::fs::read_to_string(pid_file).map_err(|source| ReloadError::PidFile {
        path: pid_file.display().to_string(),
        source,
    })?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|p| *p > 1)
        .ok_or_else(|| ReloadError::NotAPid(pid_file.display().to_string()))?;
    #[cfg(target_os = "linux")]
    if let Ok(comm) = std::fs::read_to_string(format!("/proc/{pid}/comm")) {
        if !comm.trim().contains("mosquitto") {
            return Err(ReloadError::NotMosquitto(pid));
        }
    }
    send_hup(pid)
}

#[cfg(unix)]
fn send_hup(pid: i32) -> Result<i32, ReloadError> {
    use rustix::process::{kill_process, Pid, Signal};
    // `rustix` (already in the dependency tree) rather than `libc::kill`: a safe call, no `unsafe` here.
    let target = Pid::from_raw(pid).ok_or(ReloadError::Unsupported)?;
    kill_process(target, Signal::HUP).map_err(|e| ReloadError::Signal {
        pid,
        source: e.into(),
    })?;
    Ok(pid)
}

#[cfg(not(unix))]
fn send_hup(_pid: i32) -> Result<i32, ReloadError> {
    Err(ReloadError::Unsupported)
}

impl Monitor {
    /// The monitoring database.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// The alert rules.
    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }
    /// The ingest's state.
    pub fn ingest_state(&self) -> IngestState {
        self.state
            .lock()
            .map(|s| s.clone())
            .unwrap_or(IngestState::Off)
    }
    /// The broker the ingest uses.
    pub fn broker_url(&self) -> Option<&str> {
        self.broker_url.as_deref()
    }
    /// Where the password file and ACL are written.
    pub fn broker_dir(&self) -> &Path {
        &self.broker_dir
    }
    /// `--mqtt-broker-pid-file`, if given.
    pub fn broker_pid_file(&self) -> Option<&Path> {
        self.broker_pid_file.as_deref()
    }
    /// The last attempt to make the broker re-read its files (None: never tried, or no pid file configured).
    pub fn last_reload(&self) -> Option<BrokerReload> {
        self.last_reload.lock().ok().and_then(|g| g.clone())
    }
    fn set_state(&self, s: IngestState) {
        if let Ok(mut g) = self.state.lock() {
            *g = s;
        }
    }
    /// The Mosquitto password file and ACL for the registered devices: `(passwd, acl)`.
    pub async fn broker_files(&self) -> AppResult<(String, String)> {
        let mut hashes: Vec<(String, String)> = self.ingest_hash.iter().cloned().collect();
        hashes.extend(
            self.store
                .password_hashes()
                .await
                .map_err(AppError::internal)?,
        );
        Ok((
            broker::password_file(&hashes),
            broker::acl_file(
                self.ingest_hash
                    .as_ref()
                    .map_or(INGEST_USER, |(u, _)| u.as_str()),
            ),
        ))
    }
    /// Write the broker files and tell the ingest to re-read the registry.
    async fn publish_registry(&self) -> AppResult<()> {
        self.registry_changed.notify_one();
        self.write_broker_files().await
    }
    /// Write `passwd` and `acl` into [`Monitor::broker_dir`] (atomically, each by a rename), then tell the broker
    /// to re-read them ([`Monitor::reload_broker`]).
    pub async fn write_broker_files(&self) -> AppResult<()> {
        let (passwd, acl) = self.broker_files().await?;
        let dir = self.broker_dir.clone();
        tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            std::fs::create_dir_all(&dir)?;
            write_atomically(&dir.join("passwd"), &passwd)?;
            write_atomically(&dir.join("acl"), &acl)
        })
        .await
        .map_err(AppError::internal)?
        .map_err(AppError::internal)?;
        self.reload_broker().await;
        Ok(())
    }
    /// With `--mqtt-broker-pid-file`, send the broker SIGHUP so it re-reads the password file and ACL. A failure
    /// is logged (paths and process ids only) and kept for the administrators' broker view; it does not fail the
    /// registry change, which is written and audited (the broker then keeps its old files until reloaded).
    pub async fn reload_broker(&self) -> Option<BrokerReload> {
        let path = self.broker_pid_file.clone()?;
        let at = Utc::now();
        let signalled = tokio::task::spawn_blocking(move || signal_broker(&path)).await;
        let outcome = match signalled {
            Ok(Ok(pid)) => {
                tracing::info!(pid, "MQTT broker told to re-read its password file and ACL");
                BrokerReload {
                    at,
                    pid: Some(pid),
                    error: None,
                }
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "MQTT broker not reloaded: devices registered, rotated or unbound since its last reload are not in force there");
                BrokerReload {
                    at,
                    pid: None,
                    error: Some(e.to_string()),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "MQTT broker reload task failed");
                BrokerReload {
                    at,
                    pid: None,
                    error: Some(e.to_string()),
                }
            }
        };
        if let Ok(mut g) = self.last_reload.lock() {
            *g = Some(outcome.clone());
        }
        Some(outcome)
    }
}

fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Open `DATA/monitoring.sqlite`, attach it to the node and start the escalation loop and, with `--mqtt`, the
/// ingest. Returns the background tasks.
pub async fn start(
    state: &AppState,
    data: &Path,
    args: &MonitorArgs,
) -> Result<Vec<tokio::task::JoinHandle<()>>, String> {
    let broker = args
        .mqtt
        .as_deref()
        .map(|u| BrokerAddr::parse(u).map_err(|e| format!("--mqtt: {e}")))
        .transpose()?;
    let m = open(
        data,
        args.mqtt_password
            .as_deref()
            .map(|p| (args.mqtt_user.as_str(), p)),
    )
    .await?;
    let m = Arc::new(Monitor {
        broker_url: broker.as_ref().map(BrokerAddr::url),
        broker_pid_file: args.mqtt_broker_pid_file.clone(),
        ..m
    });
    state.attach_monitoring(m.clone());
    m.write_broker_files().await.map_err(|e| e.message)?;
    let mut tasks = vec![tokio::spawn(escalation_loop(state.clone()))];
    if let Some(addr) = broker {
        let mut cfg = ServiceConfig::new(addr, data.join("monitoring.sqlite"));
        cfg.username = Some(args.mqtt_user.clone());
        cfg.password = args.mqtt_password.clone();
        cfg.client_id = args.mqtt_client_id.clone();
        cfg.registry_changed = Some(m.registry_changed.clone());
        // The node escalates (and audits each move) in its own loop.
        cfg.escalate = false;
        tasks.push(tokio::spawn(ingest_loop(m, cfg)));
    }
    Ok(tasks)
}

/// Open the monitoring database in `data` without starting anything (tests and the demo seed use it with
/// [`AppState::attach_monitoring`]).
pub async fn open(data: &Path, ingest_user: Option<(&str, &str)>) -> Result<Monitor, String> {
    std::fs::create_dir_all(data).map_err(|e| format!("{}: {e}", data.display()))?;
    let path = data.join("monitoring.sqlite");
    let store = Store::open(&path, Durability::Full)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    let ingest_hash = match ingest_user {
        Some((u, p)) => {
            let pair = [(u.to_owned(), p.to_owned())];
            let h = tokio::task::spawn_blocking(move || broker::hash_passwords(&pair))
                .await
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("hashing the MQTT password: {e}"))?;
            h.into_iter().next()
        }
        None => None,
    };
    Ok(Monitor {
        store,
        registry_changed: Arc::new(Notify::new()),
        broker_dir: data.join("monitoring-broker"),
        ingest_hash,
        policy: AlertPolicy::default(),
        state: Mutex::new(IngestState::Off),
        broker_url: None,
        broker_pid_file: None,
        last_reload: Mutex::new(None),
    })
}

/// Open and attach without background tasks (the escalation loop is [`escalate_now`]).
pub async fn attach(state: &AppState, data: &Path) -> Result<Arc<Monitor>, String> {
    let m = Arc::new(open(data, None).await?);
    state.attach_monitoring(m.clone());
    Ok(m)
}

async fn ingest_loop(m: Arc<Monitor>, cfg: ServiceConfig) {
    loop {
        m.set_state(IngestState::Connecting);
        let ready = m.clone();
        let result = run_service(cfg.clone(), std::future::pending::<()>(), move || {
            ready.set_state(IngestState::Subscribed);
            tracing::info!("monitoring ingest subscribed");
        })
        .await;
        // run_service reconnects by itself; it only returns on a database error.
        if let Err(e) = result {
            tracing::error!(error = %e, "monitoring ingest stopped; restarting in 5 s");
        }
        m.set_state(IngestState::Connecting);
        tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    }
}

async fn escalation_loop(st: AppState) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(5));
    loop {
        tick.tick().await;
        if let Err(e) = escalate_now(&st, Utc::now()).await {
            tracing::warn!(error = %e.message, "monitoring escalation check failed");
        }
    }
}

/// Move every unacknowledged alert whose timeout passed to its next tier; returns how many moved. Each move is an
/// audit event of the alert's patient, by the system, with the tier reached; if that event cannot be appended the
/// move is undone (the next check tries again) and the error returned.
pub async fn escalate_now(st: &AppState, now: DateTime<Utc>) -> AppResult<usize> {
    let m = monitor(st)?;
    let mut moved = 0;
    for a in m.store.open_alerts().await.map_err(db)? {
        let Some(tier) = escalation_due(&m.policy, a.level, a.tier, a.tier_since, now) else {
            continue;
        };
        if !m.store.escalate(a.id, tier, now).await.map_err(db)? {
            continue; // acknowledged meanwhile
        }
        // The alert names the patient by the node's id; a reference that is not one (written by `caravan
        // monitor` tools into the same database) is audited without a patient.
        let patient = m
            .store
            .alert(a.id)
            .await
            .map_err(db)?
            .and_then(|r| r.patient.parse::<PatientId>().ok());
        let audit = system_event(
            AuditAction::Update,
            "monitoring_alert",
            a.id,
            patient,
            &format!("escalated to tier {tier} ({})", tier_name(tier)),
        );
        if let Err(e) = st.store().append_audit(vec![audit]).await {
            let undone = m
                .store
                .undo_escalation(a.id, tier, now, a.tier, a.tier_since)
                .await;
            tracing::error!(alert = a.id, tier, error = %e, undone = matches!(undone, Ok(true)),
                "monitoring escalation not audited; undone");
            return Err(e.into());
        }
        tracing::info!(alert = a.id, tier, "monitoring alert escalated");
        moved += 1;
    }
    Ok(moved)
}

pub(crate) fn monitor(st: &AppState) -> AppResult<&Arc<Monitor>> {
    st.monitoring().ok_or_else(|| {
        AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-monitoring-off",
            "remote monitoring is not enabled on this node",
        )
    })
}

fn db(e: monitoring::store::StoreError) -> AppError {
    AppError::internal(e)
}

// ---------------------------------------------------------------------------------------------------------------
// views

/// NEWS2 of a patient's current set.
#[derive(Clone, Debug, Serialize)]
pub struct Score {
    pub total: u8,
    /// `low`, `low_medium`, `medium`, `high`.
    pub risk: &'static str,
    pub complete: bool,
    /// Parameters missing from the set.
    pub missing: Vec<String>,
    pub spo2_scale: u8,
}

/// One value of the current set.
#[derive(Clone, Debug, Serialize)]
pub struct Latest {
    pub kind: &'static str,
    pub value: String,
    pub unit: &'static str,
    pub at: DateTime<Utc>,
}

/// A patient on the ward view.
#[derive(Clone, Debug, Serialize)]
pub struct WardRow {
    pub patient_id: String,
    pub name: String,
    pub birth_date: String,
    pub devices: usize,
    pub latest: Vec<Latest>,
    pub last_reading: Option<DateTime<Utc>>,
    pub news2: Option<Score>,
    pub open_alerts: usize,
    /// The highest tier among the open alerts.
    pub escalation_tier: Option<u8>,
}

/// An alert as the node shows it.
#[derive(Clone, Debug, Serialize)]
pub struct AlertView {
    pub id: i64,
    pub patient_id: String,
    pub patient_name: String,
    pub level: &'static str,
    pub score: u8,
    pub complete: bool,
    pub tier: u8,
    /// `responsible_clinician`, `medical_team`, `critical_care_outreach`.
    pub tier_name: &'static str,
    pub tier_since: DateTime<Utc>,
    pub reading_at: DateTime<Utc>,
    pub raised_at: DateTime<Utc>,
    pub acknowledged_at: Option<DateTime<Utc>>,
    pub acknowledged_by: Option<String>,
    /// Whether the alert's current tier includes the viewer's role.
    pub needs_me: bool,
}

/// A device as the node shows it.
#[derive(Clone, Debug, Serialize)]
pub struct DeviceView {
    pub device_id: String,
    pub kind: &'static str,
    pub patient_id: Option<String>,
    pub registered_at: DateTime<Utc>,
    pub has_password: bool,
    pub last_seq: Option<u64>,
    pub last_seen: Option<DateTime<Utc>>,
    pub topic: String,
}

/// An observation as the JSON API returns it: the values plus the FHIR resource.
#[derive(Clone, Debug, Serialize)]
pub struct ObservationView {
    pub id: i64,
    pub device_id: String,
    pub kind: &'static str,
    pub value: String,
    pub unit: &'static str,
    pub effective: DateTime<Utc>,
    pub received: DateTime<Utc>,
    pub fhir: serde_json::Value,
}

/// Everything the patient page shows.
#[derive(Clone, Debug, Serialize)]
pub struct PatientMonitoring {
    pub summary: WardRow,
    pub devices: Vec<DeviceView>,
    pub observations: Vec<ObservationView>,
    pub alerts: Vec<AlertView>,
    /// Whether the viewer may register and manage devices for this patient.
    pub can_manage: bool,
}

/// The text of a reading's value.
pub fn value_text(r: &Reading) -> String {
    match *r {
        Reading::BloodPressure {
            systolic,
            diastolic,
        } => format!("{}/{}", num(systolic), num(diastolic)),
        Reading::Consciousness(a) => a.letter().to_owned(),
        _ => r.value().map(num).unwrap_or_default(),
    }
}

fn num(v: f64) -> String {
    if v.fract() == 0.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

fn risk_name(r: news2::Risk) -> &'static str {
    r.as_str()
}

pub fn tier_name(tier: u8) -> &'static str {
    TIERS
        .get(usize::from(tier.max(1)) - 1)
        .copied()
        .unwrap_or("critical_care_outreach")
}

/// Whether an alert at `tier` is addressed to `role`: tier 1 the referring and consulting clinicians, tier 2 also
/// the coordinator, tier 3 every clinical role.
pub fn tier_includes(tier: u8, role: Role) -> bool {
    match role {
        Role::Referrer | Role::Consultant => true,
        Role::Coordinator => tier >= 2,
        _ => false,
    }
}

fn alert_view(a: &AlertRecord, name: &str, role: Role) -> AlertView {
    AlertView {
        id: a.id,
        patient_id: a.patient.clone(),
        patient_name: name.to_owned(),
        level: risk_name(a.level),
        score: a.score,
        complete: a.complete,
        tier: a.tier,
        tier_name: tier_name(a.tier),
        tier_since: a.tier_since,
        reading_at: a.reading_at,
        raised_at: a.raised_at,
        acknowledged_at: a.acknowledged.as_ref().map(|(t, _)| *t),
        acknowledged_by: a.acknowledged.as_ref().map(|(_, b)| b.clone()),
        needs_me: a.acknowledged.is_none() && tier_includes(a.tier, role),
    }
}

fn device_view(d: &DeviceRecord) -> DeviceView {
    DeviceView {
        device_id: d.device.id.to_string(),
        kind: d.device.kind.as_str(),
        patient_id: d.device.patient.as_ref().map(|p| p.to_string()),
        registered_at: d.registered_at,
        has_password: d.has_password,
        last_seq: d.last_seen.map(|(s, _)| s),
        last_seen: d.last_seen.map(|(_, t)| t),
        topic: monitoring::model::topic_for(&d.device.id),
    }
}

/// The observation's FHIR resource with the node's id.
pub fn fhir_resource(o: &ObservationRecord) -> AppResult<serde_json::Value> {
    let mut v: serde_json::Value = serde_json::from_str(&o.resource).map_err(AppError::internal)?;
    v["id"] = serde_json::Value::String(o.id.to_string());
    Ok(v)
}

fn observation_view(o: &ObservationRecord) -> AppResult<ObservationView> {
    Ok(ObservationView {
        id: o.id,
        device_id: o.device_id.clone(),
        kind: o.reading.kind().as_str(),
        value: value_text(&o.reading),
        unit: o.reading.kind().ucum(),
        effective: o.effective,
        received: o.received,
        fhir: fhir_resource(o)?,
    })
}

fn name_of(p: &Patient) -> String {
    format!("{} {}", p.given_name, p.family_name)
}

async fn summary(m: &Monitor, p: &Patient) -> AppResult<WardRow> {
    let key = p.id.to_string();
    let latest = m.store.latest_of(&key).await.map_err(db)?;
    let scale = m.store.scale_of(&key).await.map_err(db)?;
    let set = current_set(latest.iter().map(|(r, t)| (r, *t)), m.policy.window);
    let news2 = if latest.is_empty() {
        None
    } else {
        // Readings passed the plausibility limits at ingest, so scoring cannot fail; if it did, no score is shown.
        news2::score(&set, scale).ok().map(|s| Score {
            total: s.total(),
            risk: risk_name(s.risk()),
            complete: s.is_complete(),
            missing: s.missing().iter().map(|x| format!("{x:?}")).collect(),
            spo2_scale: scale.number(),
        })
    };
    let mut latest_view: Vec<Latest> = latest
        .iter()
        .map(|(r, t)| Latest {
            kind: r.kind().as_str(),
            value: value_text(r),
            unit: r.kind().ucum(),
            at: *t,
        })
        .collect();
    latest_view.sort_by_key(|l| kind_order(l.kind));
    let open = m
        .store
        .alerts_of(std::slice::from_ref(&key), true, 100)
        .await
        .map_err(db)?;
    Ok(WardRow {
        patient_id: key.clone(),
        name: name_of(p),
        birth_date: p.birth_date.to_string(),
        devices: m.store.devices_of(&key).await.map_err(db)?.len(),
        last_reading: latest.iter().map(|(_, t)| *t).max(),
        latest: latest_view,
        news2,
        open_alerts: open.len(),
        escalation_tier: open.iter().map(|a| a.tier).max(),
    })
}

/// Display order of reading kinds (the NEWS2 chart's order).
pub fn kind_order(kind: &str) -> usize {
    [
        "respiratory_rate",
        "spo2",
        "oxygen_flow",
        "blood_pressure",
        "heart_rate",
        "consciousness",
        "temperature",
    ]
    .iter()
    .position(|k| *k == kind)
    .unwrap_or(99)
}

/// The monitored patients the principal may see (scoped by the node's store).
async fn visible_patients(st: &AppState, p: &Principal) -> AppResult<Vec<Patient>> {
    let m = monitor(st)?;
    let mut out = Vec::new();
    for r in m.store.monitored_patients().await.map_err(db)? {
        let Ok(id) = r.parse::<PatientId>() else {
            continue; // a reference that is not one of this node's patients (e.g. written by `caravan monitor`)
        };
        match st.store().get_patient(&p.actor(), id).await {
            Ok(pat) => out.push(pat),
            Err(caravan_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    out.sort_by(|a, b| (&a.family_name, &a.given_name).cmp(&(&b.family_name, &b.given_name)));
    Ok(out)
}

/// The ward: every monitored patient the principal may see, with the current set and NEWS2. Each patient shown
/// is an audited search hit.
pub async fn ward(st: &AppState, p: &Principal) -> AppResult<Vec<WardRow>> {
    p.require(CLINICAL)?;
    let m = monitor(st)?;
    let patients = visible_patients(st, p).await?;
    let mut rows = Vec::with_capacity(patients.len());
    for pat in &patients {
        rows.push(summary(m, pat).await?);
    }
    let audit = search_events(
        p,
        "monitoring",
        patients.iter().map(|x| (x.id, Some(x.id))),
        "ward",
    );
    st.store().append_audit(audit).await?;
    Ok(rows)
}

/// The patient as the principal may see them (404 otherwise), for the monitoring reads.
async fn readable_patient(st: &AppState, p: &Principal, id: &str) -> AppResult<Patient> {
    p.require(PATIENT_READERS)?;
    let pid: PatientId = id.parse().map_err(|_| AppError::not_found("patient"))?;
    Ok(st.store().get_patient(&p.actor(), pid).await?)
}

/// A patient's page: devices, current set, recent observations and alerts. One audited read.
pub async fn patient(st: &AppState, p: &Principal, id: &str) -> AppResult<PatientMonitoring> {
    let pat = readable_patient(st, p, id).await?;
    let m = monitor(st)?;
    let key = pat.id.to_string();
    let summary = summary(m, &pat).await?;
    let devices = m.store.devices_of(&key).await.map_err(db)?;
    let obs = m
        .store
        .observations(&ObservationFilter {
            patients: vec![key.clone()],
            limit: 300,
            ..Default::default()
        })
        .await
        .map_err(db)?;
    let alerts = m
        .store
        .alerts_of(std::slice::from_ref(&key), false, 50)
        .await
        .map_err(db)?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "monitoring",
            pat.id,
            Some(pat.id),
            "observations,alerts",
        )])
        .await?;
    let name = name_of(&pat);
    Ok(PatientMonitoring {
        can_manage: CLINICAL.contains(&p.role()) && pat.institution_id == p.user.institution_id,
        summary,
        devices: devices.iter().map(device_view).collect(),
        observations: obs.iter().map(observation_view).collect::<AppResult<_>>()?,
        alerts: alerts
            .iter()
            .map(|a| alert_view(a, &name, p.role()))
            .collect(),
    })
}

/// Which observations to read (JSON API and FHIR search).
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ObservationQuery {
    /// Reading kinds, comma-separated (`heart_rate,spo2`).
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub device: Option<String>,
    /// RFC 3339 or YYYY-MM-DD, inclusive.
    #[serde(default)]
    pub from: Option<String>,
    /// RFC 3339 or YYYY-MM-DD, exclusive.
    #[serde(default)]
    pub to: Option<String>,
    /// Most readings returned (default 200).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_OBSERVATIONS))]
    pub limit: Option<u32>,
}

fn bad_query(message: String) -> AppError {
    AppError::new(StatusCode::BAD_REQUEST, "error-monitoring-query", message)
}

/// Parse a time: RFC 3339, or a date (midnight UTC).
pub fn parse_time(field: &str, s: &str) -> AppResult<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            bad_query(format!(
                "{field} {s:?} is not a date (YYYY-MM-DD) or RFC 3339 time"
            ))
        })
}

/// Parse reading kinds: `heart_rate,spo2`.
pub fn parse_kinds(s: &str) -> AppResult<Vec<ReadingKind>> {
    s.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            ReadingKind::parse(k).ok_or_else(|| {
                bad_query(format!(
                    "kind {k:?} is not one of {}",
                    monitoring::model::ALL_KINDS.map(|k| k.as_str()).join(", ")
                ))
            })
        })
        .collect()
}

impl ObservationQuery {
    pub fn filter(&self, patient: &str) -> AppResult<ObservationFilter> {
        let limit = self.limit.unwrap_or(200);
        if limit == 0 || limit > MAX_OBSERVATIONS {
            return Err(bad_query(format!("limit must be 1–{MAX_OBSERVATIONS}")));
        }
        Ok(ObservationFilter {
            patients: vec![patient.to_owned()],
            kinds: self
                .kind
                .as_deref()
                .map(parse_kinds)
                .transpose()?
                .unwrap_or_default(),
            device: self.device.clone().filter(|d| !d.is_empty()),
            from: self
                .from
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| parse_time("from", s))
                .transpose()?,
            to: self
                .to
                .as_deref()
                .filter(|s| !s.is_empty())
                .map(|s| parse_time("to", s))
                .transpose()?,
            limit,
        })
    }
}

/// A patient's observations (newest first); one audited read. `detail` names the door (`api`, `fhir:Observation`).
pub async fn observations(
    st: &AppState,
    p: &Principal,
    patient_id: &str,
    f: ObservationFilter,
    detail: &str,
) -> AppResult<Vec<ObservationRecord>> {
    let pat = readable_patient(st, p, patient_id).await?;
    let m = monitor(st)?;
    let f = ObservationFilter {
        patients: vec![pat.id.to_string()],
        ..f
    };
    let rows = m.store.observations(&f).await.map_err(db)?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "monitoring_observations",
            pat.id,
            Some(pat.id),
            detail,
        )])
        .await?;
    Ok(rows)
}

/// [`observations`] as the JSON API returns them.
pub async fn observation_views(
    st: &AppState,
    p: &Principal,
    patient_id: &str,
    q: &ObservationQuery,
) -> AppResult<Vec<ObservationView>> {
    let f = q.filter(patient_id)?;
    observations(st, p, patient_id, f, "api")
        .await?
        .iter()
        .map(observation_view)
        .collect()
}

/// One observation by its node id, if the principal may read its patient (404 otherwise); audited.
pub async fn observation(
    st: &AppState,
    p: &Principal,
    id: i64,
    detail: &str,
) -> AppResult<ObservationRecord> {
    p.require(PATIENT_READERS)?;
    let m = monitor(st)?;
    let o = m
        .store
        .observation(id)
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::not_found("observation"))?;
    let pat = readable_patient(st, p, &o.patient).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "monitoring_observation",
            o.id,
            Some(pat.id),
            detail,
        )])
        .await?;
    Ok(o)
}

/// Alerts of the patients the principal may see; each patient with alerts gets one audited read.
pub async fn alerts(st: &AppState, p: &Principal, open_only: bool) -> AppResult<Vec<AlertView>> {
    p.require(CLINICAL)?;
    let m = monitor(st)?;
    let patients = visible_patients(st, p).await?;
    let keys: Vec<String> = patients.iter().map(|x| x.id.to_string()).collect();
    let rows = m.store.alerts_of(&keys, open_only, 500).await.map_err(db)?;
    let mut audited: Vec<PatientId> = Vec::new();
    let mut out = Vec::with_capacity(rows.len());
    for a in &rows {
        if let Some(pat) = patients.iter().find(|x| x.id.to_string() == a.patient) {
            if !audited.contains(&pat.id) {
                audited.push(pat.id);
            }
            out.push(alert_view(a, &name_of(pat), p.role()));
        }
    }
    let audit = audited
        .into_iter()
        .map(|id| {
            event(
                p,
                AuditAction::Read,
                "monitoring_alerts",
                id,
                Some(id),
                "alerts",
            )
        })
        .collect();
    st.store().append_audit(audit).await?;
    // Alerts addressed to the viewer's role first, then the newest.
    out.sort_by(|a, b| {
        b.needs_me
            .cmp(&a.needs_me)
            .then(b.raised_at.cmp(&a.raised_at))
    });
    Ok(out)
}

/// Acknowledge an alert of a patient the principal may see; audited.
pub async fn acknowledge(st: &AppState, p: &Principal, id: i64) -> AppResult<AlertView> {
    p.require(CLINICAL)?;
    let m = monitor(st)?;
    let a = m
        .store
        .alert(id)
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::not_found("alert"))?;
    let pat = readable_patient(st, p, &a.patient)
        .await
        .map_err(|_| AppError::not_found("alert"))?;
    let by = format!("{} ({})", p.user.display_name, p.user.id);
    let at = Utc::now();
    if !m.store.acknowledge(id, &by, at).await.map_err(db)? {
        return Err(AppError::new(
            StatusCode::CONFLICT,
            "error-monitoring-acknowledged",
            format!("alert {id} is already acknowledged"),
        ));
    }
    // The acknowledgement lives in the monitoring database, its audit event in the node's: if the event cannot be
    // written, the acknowledgement is taken back (as an escalation is), so none stands unaudited.
    let audited = st
        .store()
        .append_audit(vec![event(
            p,
            AuditAction::Update,
            "monitoring_alert",
            id,
            Some(pat.id),
            "acknowledged",
        )])
        .await;
    if let Err(e) = audited {
        if let Err(u) = m.store.undo_acknowledgement(id, &by, at).await {
            tracing::error!(alert = id, error = %u, "could not take back an unaudited acknowledgement");
        }
        return Err(e.into());
    }
    let a = m
        .store
        .alert(id)
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::not_found("alert"))?;
    Ok(alert_view(&a, &name_of(&pat), p.role()))
}

// ---------------------------------------------------------------------------------------------------------------
// registry

/// A registration request.
#[derive(Clone, Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct NewDevice {
    pub device_id: String,
    pub kind: String,
    /// 1 (default) or 2 (hypercapnic respiratory failure, on a clinician's decision).
    #[serde(default)]
    pub spo2_scale: Option<u8>,
}

/// Credentials as shown once.
#[derive(Clone, Debug, Serialize)]
pub struct Credentials {
    pub device: DeviceView,
    /// MQTT user name (the device id) and password.
    pub username: String,
    pub password: String,
    pub broker: Option<String>,
    pub topic: String,
    /// The device's line of the Mosquitto password file (the node also writes the whole file).
    pub password_file_line: String,
    /// The ACL rule that confines every device to its own topic.
    pub acl_rule: &'static str,
}

fn unprocessable(code: &'static str, message: String) -> AppError {
    AppError::unprocessable(code, message)
}

/// A patient the principal may manage devices for: visible, and of the principal's own institution.
async fn managed_patient(st: &AppState, p: &Principal, id: &str) -> AppResult<Patient> {
    p.require(CLINICAL)?;
    let pat = readable_patient(st, p, id).await?;
    if pat.institution_id != p.user.institution_id {
        return Err(not_home(
            "devices are registered by clinicians of the patient's own institution",
        ));
    }
    Ok(pat)
}

async fn hash_one(user: &str, password: &str) -> AppResult<String> {
    let pair = [(user.to_owned(), password.to_owned())];
    let r = tokio::task::spawn_blocking(move || broker::hash_passwords(&pair))
        .await
        .map_err(AppError::internal)?;
    match r {
        Ok(mut v) => v
            .pop()
            .map(|(_, h)| h)
            .ok_or_else(|| AppError::internal("no hash")),
        Err(BrokerError::NotInstalled(what)) => Err(AppError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "error-monitoring-broker-tools",
            format!("{what} is not installed on the node; device passwords cannot be hashed"),
        )),
        Err(e) => Err(AppError::internal(e)),
    }
}

fn credentials(m: &Monitor, d: &DeviceRecord, password: String, hash: &str) -> Credentials {
    let id = d.device.id.to_string();
    Credentials {
        device: device_view(d),
        password_file_line: format!("{id}:{hash}"),
        username: id,
        password,
        broker: m.broker_url.clone(),
        topic: monitoring::model::topic_for(&d.device.id),
        acl_rule: "pattern write caravan/v1/devices/%u/readings",
    }
}

/// Register a device for a patient of the principal's institution, with a new MQTT password (shown once).
pub async fn register_device(
    st: &AppState,
    p: &Principal,
    patient_id: &str,
    n: NewDevice,
) -> AppResult<Credentials> {
    let pat = managed_patient(st, p, patient_id).await?;
    let m = monitor(st)?;
    let id = DeviceId::new(n.device_id.trim()).map_err(|_| {
        unprocessable(
            "error-monitoring-device-id",
            format!(
                "device id {:?} must be 1–64 characters from A–Z a–z 0–9 . _ -",
                n.device_id.chars().take(80).collect::<String>()
            ),
        )
    })?;
    let kind = DeviceKind::parse(n.kind.trim()).ok_or_else(|| {
        unprocessable(
            "error-monitoring-device-kind",
            format!(
                "device kind {:?} is not one of bp_cuff, pulse_oximeter, thermometer, ward_robot, multiparameter_monitor, other",
                n.kind.chars().take(40).collect::<String>()
            ),
        )
    })?;
    let scale = match n.spo2_scale {
        None => None,
        Some(s) => Some(Spo2Scale::from_number(i64::from(s)).ok_or_else(|| {
            unprocessable(
                "error-monitoring-scale",
                format!("SpO2 scale {s} is not 1 or 2"),
            )
        })?),
    };
    let duplicate = || {
        AppError::new(
            StatusCode::CONFLICT,
            "error-monitoring-device-exists",
            format!("device {id} is already registered"),
        )
    };
    if m.store.device(id.as_str()).await.map_err(db)?.is_some() {
        return Err(duplicate());
    }
    let password = broker::new_password();
    let hash = hash_one(id.as_str(), &password).await?;
    let patient_ref = PatientRef::new(pat.id.to_string()).map_err(AppError::internal)?;
    let device = Device {
        id: id.clone(),
        kind,
        patient: Some(patient_ref.clone()),
    };
    if !m
        .store
        .add_device(&device, Some(&hash), Utc::now())
        .await
        .map_err(db)?
    {
        return Err(duplicate());
    }
    let audited = async {
        if let Some(s) = scale {
            m.store.upsert_patient(&patient_ref, s).await.map_err(db)?;
        }
        st.store()
            .append_audit(vec![event(
                p,
                AuditAction::Create,
                "monitoring_device",
                &id,
                Some(pat.id),
                kind.as_str(),
            )])
            .await
            .map_err(AppError::from)
    }
    .await;
    if let Err(e) = audited {
        // Not audited: not registered.
        let _ = m.store.remove_unused_device(&id).await;
        return Err(e);
    }
    m.publish_registry().await?;
    tracing::info!(device = %id, "monitoring device registered");
    let rec = m
        .store
        .device(id.as_str())
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::internal("registered device not found"))?;
    Ok(credentials(m, &rec, password, &hash))
}

/// A device whose patient the principal may see (404 otherwise; unbound devices only for administrators of
/// the broker, through `/api/v1/monitoring/broker`).
pub async fn device(st: &AppState, p: &Principal, device_id: &str) -> AppResult<DeviceView> {
    p.require(CLINICAL)?;
    let (d, pat) = bound_device(st, p, device_id).await?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Read,
            "monitoring_device",
            device_id,
            Some(pat.id),
            "",
        )])
        .await?;
    Ok(device_view(&d))
}

async fn bound_device(
    st: &AppState,
    p: &Principal,
    device_id: &str,
) -> AppResult<(DeviceRecord, Patient)> {
    let m = monitor(st)?;
    let unknown = || AppError::not_found("device");
    let d = m
        .store
        .device(device_id)
        .await
        .map_err(db)?
        .ok_or_else(unknown)?;
    let pref = d.device.patient.as_ref().ok_or_else(unknown)?;
    let pat = readable_patient(st, p, pref.as_str())
        .await
        .map_err(|_| unknown())?;
    Ok((d, pat))
}

/// Devices bound to a patient the principal may see (FHIR `Device?patient=`); audited.
pub async fn devices_of(
    st: &AppState,
    p: &Principal,
    patient_id: &str,
) -> AppResult<Vec<DeviceView>> {
    let pat = readable_patient(st, p, patient_id).await?;
    let m = monitor(st)?;
    let list = m.store.devices_of(&pat.id.to_string()).await.map_err(db)?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Search,
            "monitoring_device",
            pat.id,
            Some(pat.id),
            "",
        )])
        .await?;
    Ok(list.iter().map(device_view).collect())
}

/// A new MQTT password for a device of a patient of the principal's institution (the old one stops working when
/// Mosquitto re-reads the password file).
pub async fn rotate_credentials(
    st: &AppState,
    p: &Principal,
    device_id: &str,
) -> AppResult<Credentials> {
    p.require(CLINICAL)?;
    let (d, pat) = bound_device(st, p, device_id).await?;
    managed_patient(st, p, &pat.id.to_string()).await?;
    let m = monitor(st)?;
    let password = broker::new_password();
    let hash = hash_one(d.device.id.as_str(), &password).await?;
    m.store
        .set_password_hash(&d.device.id, Some(&hash))
        .await
        .map_err(db)?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Update,
            "monitoring_device",
            device_id,
            Some(pat.id),
            "credentials rotated",
        )])
        .await?;
    m.publish_registry().await?;
    let d = m
        .store
        .device(device_id)
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::not_found("device"))?;
    Ok(credentials(m, &d, password, &hash))
}

/// Unbind a device from its patient and revoke its broker password. Its stored observations stay; readings it
/// still sends are quarantined as `unbound_device`.
pub async fn unbind(st: &AppState, p: &Principal, device_id: &str) -> AppResult<DeviceView> {
    p.require(CLINICAL)?;
    let (d, pat) = bound_device(st, p, device_id).await?;
    managed_patient(st, p, &pat.id.to_string()).await?;
    let m = monitor(st)?;
    m.store.bind_device(&d.device.id, None).await.map_err(db)?;
    m.store
        .set_password_hash(&d.device.id, None)
        .await
        .map_err(db)?;
    st.store()
        .append_audit(vec![event(
            p,
            AuditAction::Delete,
            "monitoring_device",
            device_id,
            Some(pat.id),
            "unbound",
        )])
        .await?;
    m.publish_registry().await?;
    let d = m
        .store
        .device(device_id)
        .await
        .map_err(db)?
        .ok_or_else(|| AppError::not_found("device"))?;
    Ok(device_view(&d))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The pid file is checked before anything is signalled: missing, not a number, 0/1/negative (a process group,
    /// init or every process), and on Linux a process that is not mosquitto (here: this test process, which
    /// SIGHUP would end).
    #[test]
    fn only_a_mosquitto_named_by_a_sane_pid_file_is_signalled() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("mosquitto.pid");
        assert!(matches!(
            signal_broker(&f),
            Err(ReloadError::PidFile { .. })
        ));
        for bad in ["", "abc", "0", "1", "-1", "-4242", "12 13"] {
            std::fs::write(&f, bad).unwrap();
            assert!(
                matches!(signal_broker(&f), Err(ReloadError::NotAPid(_))),
                "{bad:?}"
            );
        }
        #[cfg(target_os = "linux")]
        {
            let me = i32::try_from(std::process::id()).unwrap();
            std::fs::write(&f, format!("{me}\n")).unwrap();
            assert!(matches!(
                signal_broker(&f),
                Err(ReloadError::NotMosquitto(p)) if p == me
            ));
        }
    }
}
