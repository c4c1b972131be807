//! Command-line interface, mounted by the node binary as `caravan monitor ...`.
//!
//! `soak` re-executes the current binary to start the node's ingest as a separate process: it runs
//! `current_exe() <prefix> ingest ...`, where the prefix is the arguments that reach this `Command` (`["monitor"]`
//! for `caravan monitor`, see [`run`]; [`run_with_prefix`] for other hosts).

use crate::alerts::AlertPolicy;
use crate::broker::{self, MosquittoConfig};
use crate::ingest::{self, BrokerAddr, ServiceConfig};
use crate::model::{Device, DeviceCredentials, DeviceId, DeviceKind, PatientRef};
use crate::news2::{self, Acvpu, Spo2Scale, Vitals};
use crate::sim::{self, PatientModel, SimConfig, SimDevice};
use crate::soak::{self, SoakConfig};
use crate::store::{Durability, Store};
use chrono::Utc;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// The `monitor` commands.
#[derive(Clone, Debug, clap::Subcommand)]
pub enum Command {
    /// Publish realistic vital-sign streams from N simulated devices (some patients deteriorating).
    Simulate {
        /// Broker, e.g. mqtt://127.0.0.1:1883.
        #[arg(long)]
        broker: String,
        /// Number of devices.
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// Seconds to publish.
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
        /// Messages per second per device (each a full NEWS2 set of 7 observations).
        #[arg(long, default_value_t = 1.0)]
        rate: f64,
        /// Device credentials (JSON list of {device_id, password}, as written by `provision`); without it the
        /// devices `sim-00001`... connect anonymously.
        #[arg(long)]
        credentials: Option<PathBuf>,
        /// First sequence number (continue a previous run's devices from here).
        #[arg(long, default_value_t = 1)]
        seq_start: u64,
        /// Fraction of deteriorating patients.
        #[arg(long, default_value_t = 0.1)]
        deteriorating: f64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Start a private broker, the node's ingest as a separate process and the simulator; optionally SIGKILL and
    /// restart the node mid-run; print one JSON line; exit non-zero unless lost = 0 and duplicated = 0.
    Soak {
        /// Number of devices.
        #[arg(long, default_value_t = 1000)]
        devices: usize,
        /// Seconds to publish.
        #[arg(long, default_value_t = 30.0)]
        seconds: f64,
        /// Messages per second per device (7 observations each).
        #[arg(long, default_value_t = 1.5)]
        rate: f64,
        /// SIGKILL the node half-way through and restart it.
        #[arg(long)]
        kill_node: bool,
        /// Seconds the node stays down after the kill.
        #[arg(long, default_value_t = 3.0)]
        down_seconds: f64,
        /// Keep the work folder here (database, broker config, logs).
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Commit durability of the node.
        #[arg(long, value_enum, default_value_t = Durability::Full)]
        durability: Durability,
        /// Mosquitto's max_queued_messages (its default, 1000, loses messages across a node kill).
        #[arg(long, default_value_t = 1_000_000)]
        max_queued: u64,
        /// Fraction of deteriorating patients.
        #[arg(long, default_value_t = 0.1)]
        deteriorating: f64,
        /// Random seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    /// Run the node's MQTT ingest service (used by `soak`; the node runs the same service in-process).
    #[command(hide = true)]
    Ingest {
        /// Broker, e.g. mqtt://127.0.0.1:1883.
        #[arg(long)]
        broker: String,
        /// SQLite database file.
        #[arg(long)]
        db: PathBuf,
        /// MQTT user name.
        #[arg(long)]
        username: Option<String>,
        /// MQTT password (prefer the environment variable to keep it out of `ps`).
        #[arg(long, env = "CARAVAN_MONITOR_MQTT_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Fixed MQTT client id (the broker keeps the session and queued messages under it).
        #[arg(long, default_value = "caravan-node-ingest")]
        client_id: String,
        /// Commit durability.
        #[arg(long, value_enum, default_value_t = Durability::Full)]
        durability: Durability,
        /// Largest batch per transaction.
        #[arg(long, default_value_t = 5000)]
        max_batch: usize,
        /// Grouping window of a patient's readings, seconds.
        #[arg(long, default_value_t = 300)]
        window_secs: i64,
    },
    /// Register N devices bound to N patients in a database and write per-device credentials, a Mosquitto
    /// password file, ACL file and mosquitto.conf into a folder.
    Provision {
        /// SQLite database file.
        #[arg(long)]
        db: PathBuf,
        /// Number of devices.
        #[arg(long, default_value_t = 10)]
        devices: usize,
        /// Kind of device.
        #[arg(long, value_enum, default_value_t = DeviceKind::WardRobot)]
        kind: DeviceKind,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Port of the broker configuration.
        #[arg(long, default_value_t = 1884)]
        port: u16,
    },
    /// Score one set of vital signs with NEWS2 and print the result as JSON.
    News2 {
        /// Respiration rate, /min.
        #[arg(long)]
        rr: Option<f64>,
        /// SpO2, %.
        #[arg(long)]
        spo2: Option<f64>,
        /// On supplemental oxygen.
        #[arg(long)]
        oxygen: bool,
        /// Systolic BP, mmHg.
        #[arg(long)]
        sbp: Option<f64>,
        /// Pulse, /min.
        #[arg(long)]
        pulse: Option<f64>,
        /// ACVPU letter.
        #[arg(long)]
        acvpu: Option<String>,
        /// Temperature, °C.
        #[arg(long)]
        temp: Option<f64>,
        /// SpO2 scale (2 for hypercapnic respiratory failure).
        #[arg(long, default_value_t = 1)]
        scale: u8,
    },
    /// Acknowledge an alert (stops its escalation).
    Ack {
        /// SQLite database file.
        #[arg(long)]
        db: PathBuf,
        /// Alert id.
        #[arg(long)]
        alert: i64,
        /// Who acknowledges.
        #[arg(long)]
        by: String,
    },
    /// Print the database's counts, quarantine reasons and alert latency as JSON.
    Status {
        /// SQLite database file.
        #[arg(long)]
        db: PathBuf,
    },
}

/// Run a command as mounted under `caravan monitor` (the soak re-executes `current_exe() monitor ingest ...`).
pub fn run(cmd: Command) -> ExitCode {
    run_with_prefix(cmd, &["monitor"])
}

/// Run a command; `prefix` is the arguments between the executable and this `Command` in the host binary.
pub fn run_with_prefix(cmd: Command, prefix: &[&str]) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let prefix: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
    match rt.block_on(run_async(cmd, prefix)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(v: &impl serde::Serialize) {
    let s = serde_json::to_string(v).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{s}");
    let _ = out.flush();
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Write a file readable by its owner only (plaintext credentials).
fn write_secret(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Run a command inside an existing runtime.
pub async fn run_async(cmd: Command, prefix: Vec<String>) -> Result<ExitCode, BoxError> {
    match cmd {
        Command::Simulate {
            broker,
            devices,
            seconds,
            rate,
            credentials,
            seq_start,
            deteriorating,
            seed,
        } => {
            let mut rng = StdRng::seed_from_u64(seed);
            let creds: Vec<DeviceCredentials> = match credentials {
                Some(path) => {
                    let text = std::fs::read_to_string(&path)?;
                    let all: Vec<DeviceCredentials> = serde_json::from_str(&text)?;
                    all.into_iter().take(devices).collect()
                }
                None => Vec::new(),
            };
            let sim_devices: Vec<SimDevice> = if creds.is_empty() {
                (1..=devices)
                    .map(|i| {
                        Ok(SimDevice {
                            id: DeviceId::new(format!("sim-{i:05}"))?,
                            password: None,
                            patient: PatientModel::random(&mut rng, deteriorating, false),
                        })
                    })
                    .collect::<Result<_, crate::model::ModelError>>()?
            } else {
                creds
                    .iter()
                    .map(|c| {
                        SimDevice::from_credentials(
                            c,
                            PatientModel::random(&mut rng, deteriorating, false),
                        )
                    })
                    .collect()
            };
            let cfg = SimConfig {
                broker: BrokerAddr::parse(&broker)?,
                duration: Duration::from_secs_f64(seconds.max(0.0)),
                rate_hz: rate,
                seq_start,
                run_tag: format!("{:x}", Utc::now().timestamp_millis()),
                drain_timeout: Duration::from_secs(30),
            };
            let report = sim::run(&cfg, sim_devices, seed).await?;
            print_json(&report);
            Ok(
                if report.failed_devices == 0 && report.unconfirmed_messages == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                },
            )
        }
        Command::Soak {
            devices,
            seconds,
            rate,
            kill_node,
            down_seconds,
            keep,
            durability,
            max_queued,
            deteriorating,
            seed,
        } => {
            let report = soak::run(SoakConfig {
                devices,
                seconds,
                rate_hz: rate,
                kill_node,
                down_seconds,
                exe: std::env::current_exe()?,
                exe_prefix: prefix,
                dir: keep,
                durability,
                max_queued_messages: max_queued,
                deteriorating,
                seed,
            })
            .await?;
            print_json(&report);
            Ok(if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Ingest {
            broker,
            db,
            username,
            password,
            client_id,
            durability,
            max_batch,
            window_secs,
        } => {
            let mut cfg = ServiceConfig::new(BrokerAddr::parse(&broker)?, db);
            cfg.username = username;
            cfg.password = password;
            cfg.client_id = client_id;
            cfg.durability = durability;
            cfg.max_batch = max_batch.max(1);
            cfg.policy = AlertPolicy {
                window: chrono::Duration::seconds(window_secs.max(1)),
                ..AlertPolicy::default()
            };
            let shutdown = async {
                let term = async {
                    match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    {
                        Ok(mut s) => {
                            s.recv().await;
                        }
                        Err(_) => std::future::pending::<()>().await,
                    }
                };
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term => {}
                }
            };
            let stats = ingest::run_service(cfg, shutdown, || {
                print_json(&serde_json::json!({"event": "ready"}));
            })
            .await?;
            print_json(&serde_json::json!({"event": "stopped", "stats": stats}));
            Ok(ExitCode::SUCCESS)
        }
        Command::Provision {
            db,
            devices,
            kind,
            out,
            port,
        } => {
            std::fs::create_dir_all(&out)?;
            let ids: Vec<DeviceId> = (1..=devices)
                .map(|i| DeviceId::new(format!("dev-{i:05}")))
                .collect::<Result<_, _>>()?;
            let (creds, hashes) = broker::device_credentials(&ids)?;
            let store = Store::open(&db, Durability::Full).await?;
            for (i, (c, (_, h))) in creds.iter().zip(&hashes).enumerate() {
                let patient = PatientRef::new(format!("pat-{:05}", i + 1))?;
                store.upsert_patient(&patient, Spo2Scale::Scale1).await?;
                store
                    .register_device(
                        &Device {
                            id: c.device_id.clone(),
                            kind,
                            patient: Some(patient),
                        },
                        Some(h),
                    )
                    .await?;
            }
            store.close().await;
            let ingest_password = broker::new_password();
            let (conf, _) =
                broker::write_config(&out, &hashes, &ingest_password, MosquittoConfig::new(port))?;
            write_secret(
                &out.join("credentials.json"),
                &serde_json::to_vec_pretty(&creds)?,
            )?;
            write_secret(&out.join("ingest-password"), ingest_password.as_bytes())?;
            print_json(&serde_json::json!({
                "devices": devices, "config": conf, "credentials": out.join("credentials.json"),
                "ingest_user": broker::INGEST_USER, "ingest_password_file": out.join("ingest-password"),
            }));
            Ok(ExitCode::SUCCESS)
        }
        Command::News2 {
            rr,
            spo2,
            oxygen,
            sbp,
            pulse,
            acvpu,
            temp,
            scale,
        } => {
            let consciousness = match acvpu {
                Some(a) => {
                    Some(Acvpu::from_letter(&a).ok_or("acvpu must be one of A, C, V, P, U")?)
                }
                None => None,
            };
            let scale = Spo2Scale::from_number(i64::from(scale)).ok_or("scale must be 1 or 2")?;
            let v = Vitals {
                respiration_rate: rr,
                spo2,
                on_oxygen: Some(oxygen),
                systolic_bp: sbp,
                pulse,
                consciousness,
                temperature: temp,
            };
            let n = news2::score(&v, scale)?;
            print_json(&serde_json::json!({
                "scores": n, "total": n.total(), "complete": n.is_complete(), "risk": n.risk(),
                "response": n.response(), "missing": n.missing(),
            }));
            Ok(ExitCode::SUCCESS)
        }
        Command::Ack { db, alert, by } => {
            let store = Store::open(&db, Durability::Full).await?;
            let done = store.acknowledge(alert, &by, Utc::now()).await?;
            store.close().await;
            print_json(&serde_json::json!({"alert": alert, "acknowledged": done}));
            Ok(if done {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Status { db } => {
            let store = Store::open(&db, Durability::Full).await?;
            let counts = store.counts().await?;
            let reasons = store.quarantine_reasons().await?;
            let mut lat: Vec<i64> = store
                .alert_latencies()
                .await?
                .into_iter()
                .map(|(e, _)| e)
                .collect();
            lat.sort_unstable();
            let p = |q: f64| -> i64 {
                if lat.is_empty() {
                    0
                } else {
                    lat[((q * lat.len() as f64).ceil() as usize).clamp(1, lat.len()) - 1]
                }
            };
            store.close().await;
            print_json(&serde_json::json!({
                "counts": counts, "quarantine": reasons.into_iter().collect::<std::collections::BTreeMap<_, _>>(),
                "alert_latency_ms": {"p50": p(0.5), "p99": p(0.99)},
            }));
            Ok(ExitCode::SUCCESS)
        }
    }
}
