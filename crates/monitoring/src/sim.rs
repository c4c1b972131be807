//! A vital-signs simulator: N devices, each a ward robot reading a full NEWS2 set for one patient, publishing at a
//! fixed rate over MQTT (QoS 1, one connection per device with its own credentials). A fraction of the patients
//! deteriorate over the run (rising respiration rate and pulse, falling SpO2 and blood pressure, fever, then new
//! confusion), the way sepsis does; the others stay near their own baseline with measurement noise.

use crate::ingest::BrokerAddr;
use crate::model::{topic_for, DeviceCredentials, DeviceId, Message, Reading};
use crate::news2::Acvpu;
use chrono::Utc;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One simulated patient's physiology.
#[derive(Clone, Debug)]
pub struct PatientModel {
    rr: f64,
    hr: f64,
    spo2: f64,
    sbp: f64,
    dbp: f64,
    temp: f64,
    on_oxygen: bool,
    /// Deteriorates over the run.
    pub deteriorating: bool,
}

impl PatientModel {
    /// A random baseline; a share `deteriorating` (0–1) of the patients drift over the run.
    pub fn random(rng: &mut impl Rng, deteriorating: f64, hypercapnic: bool) -> PatientModel {
        let deteriorating = rng.gen_bool(deteriorating.clamp(0.0, 1.0));
        PatientModel {
            rr: rng.gen_range(13.0..18.0),
            hr: rng.gen_range(58.0..86.0),
            spo2: if hypercapnic {
                rng.gen_range(88.0..92.0)
            } else {
                rng.gen_range(95.5..99.0)
            },
            sbp: rng.gen_range(112.0..145.0),
            dbp: rng.gen_range(65.0..88.0),
            temp: rng.gen_range(36.3..37.3),
            on_oxygen: hypercapnic && rng.gen_bool(0.5),
            deteriorating,
        }
    }

    /// The readings at `progress` (0 at the start of the run, 1 at its end).
    pub fn readings(&self, progress: f64, rng: &mut impl Rng) -> Vec<Reading> {
        let d = if self.deteriorating {
            progress.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let mut noise = |s: f64| (rng.gen::<f64>() + rng.gen::<f64>() - 1.0) * s;
        let rr = (self.rr + 14.0 * d + noise(1.0)).round().max(4.0);
        let hr = (self.hr + 50.0 * d + noise(3.0)).round().max(30.0);
        let spo2 = (self.spo2 - 10.0 * d + noise(0.8))
            .round()
            .clamp(70.0, 100.0);
        let sbp = (self.sbp - 45.0 * d + noise(4.0)).round().max(60.0);
        let dbp = (self.dbp - 25.0 * d + noise(3.0))
            .round()
            .clamp(35.0, sbp - 10.0);
        let temp = ((self.temp + 2.0 * d + noise(0.1)) * 10.0).round() / 10.0;
        let acvpu = if d > 0.85 {
            Acvpu::Confusion
        } else {
            Acvpu::Alert
        };
        vec![
            Reading::RespiratoryRate(rr),
            Reading::Spo2(spo2),
            Reading::OxygenFlow(if self.on_oxygen || d > 0.6 { 2.0 } else { 0.0 }),
            Reading::BloodPressure {
                systolic: sbp,
                diastolic: dbp,
            },
            Reading::HeartRate(hr),
            Reading::Consciousness(acvpu),
            Reading::Temperature(temp),
        ]
    }
}

/// A simulated device.
#[derive(Clone, Debug)]
pub struct SimDevice {
    /// Its id and password (None: connect anonymously with the id as client id).
    pub id: DeviceId,
    /// Password, if the broker needs one.
    pub password: Option<String>,
    /// The patient it measures.
    pub patient: PatientModel,
}

impl SimDevice {
    /// From credentials.
    pub fn from_credentials(c: &DeviceCredentials, patient: PatientModel) -> SimDevice {
        SimDevice {
            id: c.device_id.clone(),
            password: Some(c.password.clone()),
            patient,
        }
    }
}

/// Simulation settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// Broker.
    pub broker: BrokerAddr,
    /// Run length.
    pub duration: Duration,
    /// Messages per second per device.
    pub rate_hz: f64,
    /// First sequence number (devices count on from here).
    pub seq_start: u64,
    /// A tag that makes message ids unique across runs.
    pub run_tag: String,
    /// How long to wait for the broker's PUBACKs after the run.
    pub drain_timeout: Duration,
}

/// What was published.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct SimReport {
    /// Messages acknowledged by the broker.
    pub published_messages: u64,
    /// Observations in those messages.
    pub published_observations: u64,
    /// Messages sent but never acknowledged by the broker.
    pub unconfirmed_messages: u64,
    /// Devices that could not connect.
    pub failed_devices: u64,
    /// Per device: (id, first seq, messages sent).
    #[serde(skip)]
    pub per_device: Vec<(DeviceId, u64, u64)>,
    /// Observations per message.
    pub observations_per_message: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Simulation errors.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// Bad settings.
    #[error("invalid simulation settings: {0}")]
    Settings(String),
}

struct DeviceOutcome {
    id: DeviceId,
    sent: u64,
    acked: u64,
    connected: bool,
}

/// Run the simulation. `progress_offset` shifts the deterioration clock (0.0 for a fresh run).
pub async fn run(
    cfg: &SimConfig,
    devices: Vec<SimDevice>,
    seed: u64,
) -> Result<SimReport, SimError> {
    if !(cfg.rate_hz > 0.0 && cfg.rate_hz <= 1000.0) {
        return Err(SimError::Settings("rate must be in (0, 1000] Hz".into()));
    }
    if devices.is_empty() {
        return Err(SimError::Settings("no devices".into()));
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let published_total = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(devices.len());
    for (i, dev) in devices.into_iter().enumerate() {
        let cfg = cfg.clone();
        let stop = stop.clone();
        let total = published_total.clone();
        handles.push(tokio::spawn(run_device(
            cfg,
            dev,
            seed.wrapping_add(i as u64),
            stop,
            total,
        )));
    }
    let mut report = SimReport {
        observations_per_message: 7,
        ..SimReport::default()
    };
    for h in handles {
        match h.await {
            Ok(o) => {
                report.published_messages += o.acked;
                report.unconfirmed_messages += o.sent - o.acked;
                if !o.connected {
                    report.failed_devices += 1;
                }
                report.per_device.push((o.id, cfg.seq_start, o.sent));
            }
            Err(e) => tracing::error!(error = %e, "device task failed"),
        }
    }
    report.published_observations = report.published_messages * report.observations_per_message;
    report.seconds = start.elapsed().as_secs_f64();
    Ok(report)
}

async fn run_device(
    cfg: SimConfig,
    dev: SimDevice,
    seed: u64,
    _stop: Arc<AtomicBool>,
    total: Arc<AtomicU64>,
) -> DeviceOutcome {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut opts = MqttOptions::new(dev.id.as_str(), cfg.broker.host.clone(), cfg.broker.port);
    opts.set_keep_alive(Duration::from_secs(30))
        .set_inflight(200);
    if let Some(pw) = &dev.password {
        opts.set_credentials(dev.id.as_str(), pw.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, 256);
    let topic = topic_for(&dev.id);
    let interval = Duration::from_secs_f64(1.0 / cfg.rate_hz);
    let mut out = DeviceOutcome {
        id: dev.id.clone(),
        sent: 0,
        acked: 0,
        connected: false,
    };
    // The event loop runs in its own task (rumqttc's pattern: `poll` is never cancelled mid-way); it counts the
    // broker's PUBACKs.
    let acked = Arc::new(AtomicU64::new(0));
    let (conn_tx, conn_rx) = tokio::sync::oneshot::channel::<bool>();
    let poller = {
        let acked = acked.clone();
        let id = dev.id.clone();
        tokio::spawn(async move {
            let mut conn_tx = Some(conn_tx);
            let mut failures = 0u32;
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        failures = 0;
                        if let Some(tx) = conn_tx.take() {
                            let _ = tx.send(true);
                        }
                    }
                    Ok(Event::Incoming(Packet::PubAck(_))) => {
                        acked.fetch_add(1, Ordering::Relaxed);
                        total.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(Event::Outgoing(Outgoing::Disconnect)) => return,
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        if failures == 1 || failures % 50 == 0 {
                            tracing::warn!(device = %id, error = %e, "device connection error");
                        }
                        if failures >= 20 {
                            if let Some(tx) = conn_tx.take() {
                                let _ = tx.send(false);
                                return;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }
            }
        })
    };
    out.connected = matches!(
        tokio::time::timeout(Duration::from_secs(30), conn_rx).await,
        Ok(Ok(true))
    );
    if !out.connected {
        poller.abort();
        return out;
    }
    let started = Instant::now();
    // Spread the devices' phases over one interval so the broker sees a steady stream.
    let mut next = tokio::time::Instant::now() + interval.mul_f64(rng.gen::<f64>());
    let run_end = tokio::time::Instant::now() + cfg.duration;
    let mut seq = cfg.seq_start;
    while next < run_end {
        tokio::time::sleep_until(next).await;
        let progress = started.elapsed().as_secs_f64() / cfg.duration.as_secs_f64().max(1e-9);
        let msg = Message {
            device_id: dev.id.clone(),
            message_id: format!("{}-{}", cfg.run_tag, seq),
            seq,
            timestamp: Utc::now(),
            readings: dev.patient.readings(progress, &mut rng),
        };
        match client
            .publish(topic.clone(), QoS::AtLeastOnce, false, msg.to_json())
            .await
        {
            Ok(()) => {
                out.sent += 1;
                seq += 1;
            }
            Err(e) => {
                tracing::warn!(device = %dev.id, error = %e, "publish not queued");
                break;
            }
        }
        next += interval;
    }
    let deadline = tokio::time::Instant::now() + cfg.drain_timeout;
    while acked.load(Ordering::Relaxed) < out.sent && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    out.acked = acked.load(Ordering::Relaxed).min(out.sent);
    let _ = client.try_disconnect();
    let abort = poller.abort_handle();
    let _ = tokio::time::timeout(Duration::from_secs(1), poller).await;
    abort.abort();
    out
}
