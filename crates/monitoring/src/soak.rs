//! The soak: a private Mosquitto with per-device credentials and ACLs, the ingest service as a separate process
//! (the node), the simulator publishing from N devices, optionally a SIGKILL and restart of the node mid-run, and
//! a reconciliation of what was published against what was stored.

use crate::broker::{self, MosquittoConfig, MosquittoProcess, INGEST_USER};
use crate::ingest::BrokerAddr;
use crate::model::{Device, DeviceId, DeviceKind, PatientRef};
use crate::news2::Spo2Scale;
use crate::sim::{self, PatientModel, SimConfig, SimDevice};
use crate::store::{Durability, Store};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Soak settings.
#[derive(Clone, Debug)]
pub struct SoakConfig {
    /// Devices (one patient each).
    pub devices: usize,
    /// Publishing time.
    pub seconds: f64,
    /// Messages per second per device (7 observations each).
    pub rate_hz: f64,
    /// SIGKILL the node half-way and restart it.
    pub kill_node: bool,
    /// How long the node stays down.
    pub down_seconds: f64,
    /// The executable and argument prefix that reach this crate's `Command` (e.g. `caravan` + `["monitor"]`).
    pub exe: PathBuf,
    /// Arguments before `ingest`.
    pub exe_prefix: Vec<String>,
    /// Work folder (kept); None: a temporary one, removed afterwards.
    pub dir: Option<PathBuf>,
    /// Commit durability of the node.
    pub durability: Durability,
    /// Mosquitto's `max_queued_messages` (Mosquitto's own default is 1000: set it to see the trap).
    pub max_queued_messages: u64,
    /// Fraction of deteriorating patients.
    pub deteriorating: f64,
    /// Seed.
    pub seed: u64,
}

/// The soak's result line.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SoakReport {
    /// Observations in messages the broker acknowledged to the devices.
    pub published: u64,
    /// Observation rows stored.
    pub stored: u64,
    /// Published observations missing from the database.
    pub lost: u64,
    /// Observation rows stored more than once.
    pub duplicated: u64,
    /// Stored observations per second, from the first stored observation to the last.
    pub per_second: f64,
    /// Reading-to-alert latency p99 (device timestamp → alert committed), ms.
    pub alert_p99_ms: f64,
    /// Reading-to-alert latency p99 from receipt at the node, ms.
    pub alert_p99_node_ms: f64,
    /// Alerts raised.
    pub alerts: u64,
    /// Highest stored observations in one second.
    pub peak_per_second: f64,
    /// Offered load: devices × rate × 7.
    pub offered_per_second: f64,
    /// Messages the node's gap detection counted as missing.
    pub gap_missing: u64,
    /// Quarantined messages.
    pub quarantined: u64,
    /// Node kills.
    pub kills: u32,
    /// Devices that could not connect.
    pub failed_devices: u64,
    /// Messages published but not acknowledged by the broker.
    pub unconfirmed: u64,
}

impl SoakReport {
    /// Lost and duplicated are both zero.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.published > 0
    }
}

/// Soak errors.
#[derive(Debug, thiserror::Error)]
pub enum SoakError {
    /// Broker setup.
    #[error(transparent)]
    Broker(#[from] broker::BrokerError),
    /// Database.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// Database query.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Simulator.
    #[error(transparent)]
    Sim(#[from] sim::SimError),
    /// Process handling.
    #[error("{what}: {source}")]
    Io {
        /// What.
        what: &'static str,
        /// Cause.
        source: std::io::Error,
    },
    /// The node did not become ready.
    #[error("the ingest process did not become ready: {0}")]
    NodeNotReady(String),
    /// Bad settings.
    #[error("invalid soak settings: {0}")]
    Settings(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> SoakError {
    move |source| SoakError::Io { what, source }
}

struct Node {
    child: Child,
}

async fn start_node(
    cfg: &SoakConfig,
    broker: &str,
    db: &Path,
    password: &str,
    log: &Path,
) -> Result<Node, SoakError> {
    let logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(io("opening the node log"))?;
    let mut child = Command::new(&cfg.exe)
        .args(&cfg.exe_prefix)
        .arg("ingest")
        .arg("--broker")
        .arg(broker)
        .arg("--db")
        .arg(db)
        .arg("--username")
        .arg(INGEST_USER)
        .arg("--durability")
        .arg(match cfg.durability {
            Durability::Full => "full",
            Durability::Normal => "normal",
        })
        .env("CARAVAN_MONITOR_MQTT_PASSWORD", password)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(logf))
        .kill_on_drop(true)
        .spawn()
        .map_err(io("starting the ingest process"))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| SoakError::NodeNotReady("no stdout".into()))?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(30), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if line.contains("\"ready\"") {
                return true;
            }
        }
        false
    })
    .await;
    if !matches!(ready, Ok(true)) {
        let _ = child.start_kill();
        let tail = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = tail.lines().rev().take(5).collect();
        return Err(SoakError::NodeNotReady(tail.join(" | ")));
    }
    // Keep draining stdout so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Ok(Node { child })
}

async fn count_observations(pool: &SqlitePool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM observations")
        .fetch_one(pool)
        .await
}

fn percentile(v: &mut [i64], p: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable();
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1] as f64
}

/// Run the soak.
pub async fn run(cfg: SoakConfig) -> Result<SoakReport, SoakError> {
    if cfg.devices == 0 || cfg.seconds <= 0.0 {
        return Err(SoakError::Settings(
            "devices and seconds must be positive".into(),
        ));
    }
    let tmp;
    let dir = match &cfg.dir {
        Some(d) => {
            std::fs::create_dir_all(d).map_err(io("creating the work folder"))?;
            d.clone()
        }
        None => {
            tmp = tempfile::tempdir().map_err(io("creating a temporary folder"))?;
            tmp.path().to_path_buf()
        }
    };
    let db = dir.join("monitoring.db");
    let node_log = dir.join("node.log");
    let _ = std::fs::remove_file(&db);

    // Devices, patients, credentials.
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let ids: Vec<DeviceId> = (1..=cfg.devices)
        .map(|i| DeviceId::new(format!("dev-{i:05}")))
        .collect::<Result<_, _>>()
        .map_err(|e| SoakError::Settings(e.to_string()))?;
    let (creds, hashes) = broker::device_credentials(&ids)?;
    let store = Store::open(&db, cfg.durability).await?;
    let mut sim_devices = Vec::with_capacity(ids.len());
    for (i, c) in creds.iter().enumerate() {
        let patient = PatientRef::new(format!("pat-{:05}", i + 1))
            .map_err(|e| SoakError::Settings(e.to_string()))?;
        let hypercapnic = rng.gen_bool(0.05);
        let scale = if hypercapnic {
            Spo2Scale::Scale2
        } else {
            Spo2Scale::Scale1
        };
        store.upsert_patient(&patient, scale).await?;
        let hash = hashes.get(i).map(|(_, h)| h.as_str());
        store
            .register_device(
                &Device {
                    id: c.device_id.clone(),
                    kind: DeviceKind::WardRobot,
                    patient: Some(patient),
                },
                hash,
            )
            .await?;
        let model = PatientModel::random(&mut rng, cfg.deteriorating, hypercapnic);
        sim_devices.push(SimDevice::from_credentials(c, model));
    }
    store.close().await;

    // Broker.
    let ingest_password = broker::new_password();
    let mut mcfg = MosquittoConfig::new(broker::free_port()?);
    mcfg.max_queued_messages = cfg.max_queued_messages;
    let (_, mcfg) = broker::write_config(&dir, &hashes, &ingest_password, mcfg)?;
    let mosquitto = MosquittoProcess::start(&dir, &mcfg)?;
    let url = mosquitto.url();

    // Node.
    let mut node = start_node(&cfg, &url, &db, &ingest_password, &node_log).await?;
    let read =
        SqlitePool::connect_with(SqliteConnectOptions::new().filename(&db).read_only(true)).await?;

    // Simulator.
    let sim_cfg = SimConfig {
        broker: BrokerAddr::parse(&url).map_err(|e| SoakError::Settings(e.to_string()))?,
        duration: Duration::from_secs_f64(cfg.seconds),
        rate_hz: cfg.rate_hz,
        seq_start: 1,
        run_tag: format!("r{}", cfg.seed),
        drain_timeout: Duration::from_secs(60),
    };
    let started = Instant::now();
    let seed = cfg.seed;
    let sim_task = tokio::spawn(async move { sim::run(&sim_cfg, sim_devices, seed).await });

    let mut kills = 0;
    let mut peak = 0.0f64;
    let mut last = (Instant::now(), 0i64);
    let kill_at = Duration::from_secs_f64(cfg.seconds / 2.0);
    let sample = |peak: &mut f64, last: &mut (Instant, i64), now_count: i64| {
        let dt = last.0.elapsed().as_secs_f64();
        if dt >= 1.0 {
            *peak = peak.max((now_count - last.1) as f64 / dt);
            *last = (Instant::now(), now_count);
        }
    };
    // The ingest rate is measured from the first stored observation to the last (device connection set-up
    // is not ingest time).
    let mut first_stored: Option<Instant> = None;
    while !sim_task.is_finished() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let c = count_observations(&read).await?;
        if c > 0 && first_stored.is_none() {
            first_stored = Some(Instant::now());
        }
        sample(&mut peak, &mut last, c);
        if cfg.kill_node && kills == 0 && started.elapsed() >= kill_at {
            tracing::info!("SIGKILL to the node");
            node.child.start_kill().map_err(io("killing the node"))?;
            let _ = node.child.wait().await;
            kills += 1;
            tokio::time::sleep(Duration::from_secs_f64(cfg.down_seconds)).await;
            node = start_node(&cfg, &url, &db, &ingest_password, &node_log).await?;
            last = (Instant::now(), count_observations(&read).await?);
        }
    }
    let sim_report = match sim_task.await {
        Ok(r) => r?,
        Err(e) => return Err(SoakError::Settings(format!("simulator task: {e}"))),
    };

    // Wait for the node to drain: every message sent is stored, or nothing moved for 5 s.
    let sent_messages: u64 = sim_report.per_device.iter().map(|(_, _, n)| n).sum();
    let mut stable_since = Instant::now();
    let mut prev = -1i64;
    let mut done_at = Instant::now();
    loop {
        let stored_msgs: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages")
            .fetch_one(&read)
            .await?;
        let c = count_observations(&read).await?;
        sample(&mut peak, &mut last, c);
        if c != prev {
            prev = c;
            stable_since = Instant::now();
            done_at = Instant::now();
        }
        if stored_msgs as u64 >= sent_messages || stable_since.elapsed() > Duration::from_secs(5) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let elapsed = done_at
        .duration_since(first_stored.unwrap_or(started))
        .as_secs_f64();
    let _ = node.child.start_kill();
    let _ = node.child.wait().await;

    // Reconcile.
    let rows =
        sqlx::query("SELECT device_id, COUNT(DISTINCT seq) FROM messages GROUP BY device_id")
            .fetch_all(&read)
            .await?;
    let mut found: HashMap<String, u64> = HashMap::new();
    for r in rows {
        let d: String = r.try_get(0)?;
        let n: i64 = r.try_get(1)?;
        found.insert(d, u64::try_from(n).unwrap_or(0));
    }
    let per_msg = sim_report.observations_per_message;
    let (stored, distinct): (i64, i64) = {
        let r = sqlx::query(
            "SELECT COUNT(*), (SELECT COUNT(*) FROM (SELECT DISTINCT device_id, message_id, kind FROM observations))
             FROM observations",
        )
        .fetch_one(&read)
        .await?;
        (r.try_get(0)?, r.try_get(1)?)
    };
    let acked_share = if sent_messages == 0 {
        0.0
    } else {
        sim_report.published_messages as f64 / sent_messages as f64
    };
    let mut lost_messages = 0u64;
    for (id, _, sent) in &sim_report.per_device {
        let f = found.get(id.as_str()).copied().unwrap_or(0);
        lost_messages += sent.saturating_sub(f);
    }
    // Strict: a message sent but never acknowledged by the broker and missing counts as lost too.
    let gap_missing: i64 =
        sqlx::query_scalar("SELECT COALESCE(SUM(missing), 0) FROM gaps WHERE kind = 'gap'")
            .fetch_one(&read)
            .await?;
    let quarantined: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM quarantine")
        .fetch_one(&read)
        .await?;
    let lat = sqlx::query(
        "SELECT raised_at_ms - reading_at_ms, raised_at_ms - received_at_ms FROM alerts",
    )
    .fetch_all(&read)
    .await?;
    let mut e2e = Vec::with_capacity(lat.len());
    let mut node_lat = Vec::with_capacity(lat.len());
    for r in &lat {
        e2e.push(r.try_get::<i64, _>(0)?);
        node_lat.push(r.try_get::<i64, _>(1)?);
    }
    read.close().await;
    drop(mosquitto);
    tracing::debug!(acked_share, "soak finished");

    Ok(SoakReport {
        published: sim_report.published_observations,
        stored: u64::try_from(stored).unwrap_or(0),
        lost: lost_messages * per_msg,
        duplicated: u64::try_from(stored - distinct).unwrap_or(0),
        per_second: if elapsed > 0.0 {
            stored as f64 / elapsed
        } else {
            0.0
        },
        alert_p99_ms: percentile(&mut e2e, 99.0),
        alert_p99_node_ms: percentile(&mut node_lat, 99.0),
        alerts: lat.len() as u64,
        peak_per_second: peak,
        offered_per_second: cfg.devices as f64 * cfg.rate_hz * per_msg as f64,
        gap_missing: u64::try_from(gap_missing).unwrap_or(0),
        quarantined: u64::try_from(quarantined).unwrap_or(0),
        kills,
        failed_devices: sim_report.failed_devices,
        unconfirmed: sim_report.unconfirmed_messages,
    })
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn nearest_rank_percentile() {
        let mut v: Vec<i64> = (1..=100).collect();
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        let mut one = vec![7];
        assert_eq!(percentile(&mut one, 99.0), 7.0);
        assert_eq!(percentile(&mut [], 99.0), 0.0);
    }
}
