//! The node's MQTT subscriber: validate, de-duplicate, detect gaps, store, score, alert — and acknowledge to the
//! broker only after the database commit.
//!
//! Delivery guarantees:
//! - QoS 1 with a persistent session (`clean_session = false`, fixed client id): while the node is down, the
//!   broker queues the messages for it and delivers them when it reconnects.
//! - Manual acknowledgement (`MqttOptions::set_manual_acks`): a PUBACK is sent only after the batch holding the
//!   message is committed, so a node killed between receipt and commit gets the message again.
//! - The redelivered copy (and any duplicate a device sends) is recognised by (device id, message id) in the
//!   `messages` table and stored once.
//! - **Mosquitto's queue limit**: for a subscriber that is offline or slow, Mosquitto keeps at most
//!   `max_queued_messages` (default **1000**) QoS 1 messages per client and silently drops the rest. The
//!   configuration written by [`crate::broker`] raises it; whatever the broker does, the per-device sequence
//!   numbers expose a loss as rows in `gaps`.
//!
//! Refused messages go to `quarantine` with a reason code and the raw payload (never dropped silently):
//! `bad_topic`, `malformed`, `implausible`, `topic_mismatch` (payload device id ≠ topic device id),
//! `unknown_device`, `unbound_device`, `future_timestamp`.

use crate::alerts::{escalation_due, AlertEngine, AlertPolicy, NewAlert};
use crate::model::{
    device_in_topic, fhir_observation, Device, DeviceId, Message, PatientRef, TOPIC_FILTER,
};
use crate::news2::Spo2Scale;
use crate::store::{ms, Durability, Store, StoreError};
use chrono::{DateTime, Duration as ChronoDuration, Utc};
use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, Publish, QoS};
use sqlx::{QueryBuilder, Sqlite};
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;

/// Ingest errors.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A database error inside a batch.
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// The broker address is not usable.
    #[error("broker URL {0:?}: expected mqtt://host:port")]
    BadBrokerUrl(String),
    /// The MQTT client stopped.
    #[error("MQTT: {0}")]
    Mqtt(String),
}

/// A message as received from the broker.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// Topic.
    pub topic: String,
    /// Raw payload.
    pub payload: Vec<u8>,
    /// When the node received it.
    pub received_at: DateTime<Utc>,
}

/// What a batch did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct BatchReport {
    /// Messages stored.
    pub stored_messages: usize,
    /// Observations stored.
    pub stored_observations: usize,
    /// Messages already stored (redelivery or device retry).
    pub duplicates: usize,
    /// Messages quarantined.
    pub quarantined: usize,
    /// Gap events recorded.
    pub gaps: usize,
    /// Late arrivals recorded.
    pub late: usize,
    /// Alerts raised.
    pub alerts: usize,
}

impl BatchReport {
    fn add(&mut self, o: &BatchReport) {
        self.stored_messages += o.stored_messages;
        self.stored_observations += o.stored_observations;
        self.duplicates += o.duplicates;
        self.quarantined += o.quarantined;
        self.gaps += o.gaps;
        self.late += o.late;
        self.alerts += o.alerts;
    }
}

/// How far a device clock may run ahead of the node's.
const MAX_CLOCK_AHEAD_MINUTES: i64 = 5;

struct Quarantined<'a> {
    inc: &'a Incoming,
    device: Option<String>,
    message_id: Option<String>,
    code: &'static str,
    reason: String,
}

struct Accepted<'a> {
    inc: &'a Incoming,
    msg: Message,
    patient: PatientRef,
}

/// The batch processor: registry, sequence numbers and alert state in memory, everything durable in SQLite.
pub struct Ingestor {
    store: Store,
    devices: HashMap<DeviceId, Device>,
    scales: HashMap<PatientRef, Spo2Scale>,
    last_seq: HashMap<String, u64>,
    engine: AlertEngine,
}

impl Ingestor {
    /// Load the registry, the last sequence numbers and the alert state.
    pub async fn open(store: Store, policy: AlertPolicy) -> Result<Ingestor, IngestError> {
        let mut engine = AlertEngine::new(policy);
        for (p, r, t) in store.latest_readings().await? {
            engine.restore_reading(&p, &r, t);
        }
        for (p, last) in store.last_alerts().await? {
            engine.restore_last_alert(&p, last);
        }
        let mut me = Ingestor {
            devices: HashMap::new(),
            scales: HashMap::new(),
            last_seq: store.last_seqs().await?,
            store,
            engine,
        };
        me.reload_registry().await?;
        Ok(me)
    }

    /// Re-read the device registry and patients' SpO2 scales (after devices were added or rebound).
    pub async fn reload_registry(&mut self) -> Result<(), IngestError> {
        self.devices = self
            .store
            .devices()
            .await?
            .into_iter()
            .map(|d| (d.id.clone(), d))
            .collect();
        self.scales = self.store.scales().await?;
        Ok(())
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn classify<'a>(
        &self,
        inc: &'a Incoming,
        now: DateTime<Utc>,
    ) -> Result<Accepted<'a>, Quarantined<'a>> {
        let q = |device: Option<String>, message_id: Option<String>, code, reason| Quarantined {
            inc,
            device,
            message_id,
            code,
            reason,
        };
        let Some(topic_device) = device_in_topic(&inc.topic) else {
            return Err(q(
                None,
                None,
                "bad_topic",
                format!("topic {:?} is not {TOPIC_FILTER}", inc.topic),
            ));
        };
        let msg = match Message::parse(&inc.payload) {
            Ok(m) => m,
            Err(e) => {
                return Err(q(
                    Some(topic_device.to_string()),
                    None,
                    e.code(),
                    e.to_string(),
                ))
            }
        };
        let dev = Some(msg.device_id.as_str().to_string());
        let mid = Some(msg.message_id.clone());
        if msg.device_id.as_str() != topic_device {
            return Err(q(
                dev,
                mid,
                "topic_mismatch",
                format!(
                    "payload device {} published on the topic of device {topic_device}",
                    msg.device_id
                ),
            ));
        }
        let Some(device) = self.devices.get(&msg.device_id) else {
            return Err(q(
                dev,
                mid,
                "unknown_device",
                format!("device {} is not registered", msg.device_id),
            ));
        };
        let Some(patient) = device.patient.clone() else {
            return Err(q(
                dev,
                mid,
                "unbound_device",
                format!("device {} is not bound to a patient", msg.device_id),
            ));
        };
        if msg.timestamp > now + ChronoDuration::minutes(MAX_CLOCK_AHEAD_MINUTES) {
            return Err(q(
                dev,
                mid,
                "future_timestamp",
                format!(
                    "timestamp {} is more than {MAX_CLOCK_AHEAD_MINUTES} min ahead of the node",
                    msg.timestamp
                ),
            ));
        }
        Ok(Accepted { inc, msg, patient })
    }

    /// Process a batch in one transaction. On error nothing is committed, and the caller must not acknowledge
    /// the batch (the in-memory alert state may then be ahead of the database: restart the ingestor).
    pub async fn process(&mut self, batch: &[Incoming]) -> Result<BatchReport, IngestError> {
        let now = Utc::now();
        let mut report = BatchReport::default();
        let mut quarantined = Vec::new();
        let mut accepted = Vec::new();
        let mut in_batch = HashSet::new();
        for inc in batch {
            match self.classify(inc, now) {
                Ok(a) => {
                    if in_batch.insert((a.msg.device_id.clone(), a.msg.message_id.clone())) {
                        accepted.push(a);
                    } else {
                        report.duplicates += 1;
                    }
                }
                Err(q) => quarantined.push(q),
            }
        }

        let mut tx = self.store.pool().begin().await?;

        // De-duplicate against everything stored: the messages table's primary key decides.
        let mut new_keys: HashSet<(String, String)> = HashSet::new();
        for chunk in accepted.chunks(4000) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO messages (device_id, message_id, seq, received_at_ms) ",
            );
            qb.push_values(chunk, |mut b, a| {
                b.push_bind(a.msg.device_id.as_str())
                    .push_bind(a.msg.message_id.as_str())
                    .push_bind(a.msg.seq as i64)
                    .push_bind(ms(&a.inc.received_at));
            });
            qb.push(" ON CONFLICT DO NOTHING RETURNING device_id, message_id");
            let rows: Vec<(String, String)> = qb.build_query_as().fetch_all(&mut *tx).await?;
            new_keys.extend(rows);
        }

        struct ObsRow {
            idx: usize,
            reading: usize,
            resource: String,
        }
        let mut obs_rows = Vec::new();
        let mut gap_rows: Vec<(String, &'static str, u64, u64, u64)> = Vec::new();
        let mut alerts: Vec<(NewAlert, DateTime<Utc>, String)> = Vec::new();
        let mut seq_updates: HashMap<String, u64> = HashMap::new();
        let mut latest: HashMap<(PatientRef, &'static str), (usize, usize)> = HashMap::new();
        for (idx, a) in accepted.iter().enumerate() {
            let key = (
                a.msg.device_id.as_str().to_string(),
                a.msg.message_id.clone(),
            );
            if !new_keys.contains(&key) {
                report.duplicates += 1;
                continue;
            }
            report.stored_messages += 1;
            let dev = a.msg.device_id.as_str();
            let last = seq_updates
                .get(dev)
                .or_else(|| self.last_seq.get(dev))
                .copied()
                .unwrap_or(0);
            if a.msg.seq > last + 1 {
                gap_rows.push((
                    dev.to_string(),
                    "gap",
                    last + 1,
                    a.msg.seq - 1,
                    a.msg.seq - 1 - last,
                ));
            } else if a.msg.seq <= last {
                gap_rows.push((dev.to_string(), "late", a.msg.seq, a.msg.seq, 0));
            }
            if a.msg.seq > last {
                seq_updates.insert(dev.to_string(), a.msg.seq);
            }
            for (ri, r) in a.msg.readings.iter().enumerate() {
                let resource = fhir_observation(
                    r,
                    &a.msg.device_id,
                    &a.msg.message_id,
                    &a.patient,
                    &a.msg.timestamp,
                )
                .to_string();
                obs_rows.push(ObsRow {
                    idx,
                    reading: ri,
                    resource,
                });
                let k = (a.patient.clone(), r.kind().as_str());
                let newer = latest
                    .get(&k)
                    .is_none_or(|(i, _)| accepted[*i].msg.timestamp <= a.msg.timestamp);
                if newer {
                    latest.insert(k, (idx, ri));
                }
            }
            let scale = self.scales.get(&a.patient).copied().unwrap_or_default();
            match self.engine.observe(&a.patient, scale, &a.msg, now) {
                Ok((_, Some(alert))) => {
                    let json = serde_json::to_string(&alert.news2).unwrap_or_default();
                    alerts.push((alert, a.inc.received_at, json));
                }
                Ok((_, None)) => {}
                // Unreachable for readings that passed the plausibility limits; logged, never fatal.
                Err(e) => tracing::warn!(error = %e, "NEWS2 not computable"),
            }
        }
        report.stored_observations = obs_rows.len();
        report.gaps = gap_rows.iter().filter(|g| g.1 == "gap").count();
        report.late = gap_rows.iter().filter(|g| g.1 == "late").count();
        report.quarantined = quarantined.len();
        report.alerts = alerts.len();

        for chunk in obs_rows.chunks(2000) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO observations (device_id, message_id, seq, patient_ref, kind, value, value2, value_code, \
                 effective_ms, received_at_ms, resource) ",
            );
            qb.push_values(chunk, |mut b, o| {
                let a = &accepted[o.idx];
                let r = &a.msg.readings[o.reading];
                b.push_bind(a.msg.device_id.as_str())
                    .push_bind(a.msg.message_id.as_str())
                    .push_bind(a.msg.seq as i64)
                    .push_bind(a.patient.as_str())
                    .push_bind(r.kind().as_str())
                    .push_bind(r.value())
                    .push_bind(r.value2())
                    .push_bind(r.value_code())
                    .push_bind(ms(&a.msg.timestamp))
                    .push_bind(ms(&a.inc.received_at))
                    .push_bind(o.resource.as_str());
            });
            qb.build().execute(&mut *tx).await?;
        }

        let latest: Vec<_> = latest.into_iter().collect();
        for chunk in latest.chunks(4000) {
            let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
                "INSERT INTO latest_readings (patient_ref, kind, value, value2, value_code, effective_ms) ",
            );
            qb.push_values(chunk, |mut b, ((p, kind), (i, ri))| {
                let a = &accepted[*i];
                let r = &a.msg.readings[*ri];
                b.push_bind(p.as_str())
                    .push_bind(*kind)
                    .push_bind(r.value())
                    .push_bind(r.value2())
                    .push_bind(r.value_code())
                    .push_bind(ms(&a.msg.timestamp));
            });
            qb.push(
                " ON CONFLICT (patient_ref, kind) DO UPDATE SET value = excluded.value, value2 = excluded.value2, \
                 value_code = excluded.value_code, effective_ms = excluded.effective_ms \
                 WHERE excluded.effective_ms >= latest_readings.effective_ms",
            );
            qb.build().execute(&mut *tx).await?;
        }

        let seqs: Vec<_> = seq_updates.iter().collect();
        for chunk in seqs.chunks(4000) {
            let mut qb: QueryBuilder<Sqlite> =
                QueryBuilder::new("INSERT INTO device_seq (device_id, last_seq, last_seen_ms) ");
            qb.push_values(chunk, |mut b, (d, s)| {
                b.push_bind(d.as_str())
                    .push_bind(**s as i64)
                    .push_bind(ms(&now));
            });
            qb.push(
                " ON CONFLICT (device_id) DO UPDATE SET last_seq = MAX(last_seq, excluded.last_seq), \
                 last_seen_ms = excluded.last_seen_ms",
            );
            qb.build().execute(&mut *tx).await?;
        }

        for (device, kind, from, to, missing) in &gap_rows {
            sqlx::query(
                "INSERT INTO gaps (device_id, kind, from_seq, to_seq, missing, detected_at_ms) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(device.as_str())
            .bind(*kind)
            .bind(*from as i64)
            .bind(*to as i64)
            .bind(*missing as i64)
            .bind(ms(&now))
            .execute(&mut *tx)
            .await?;
            if *kind == "gap" {
                tracing::warn!(device = %device, missing, from_seq = from, "sequence gap: messages lost before the node");
            }
        }

        for q in &quarantined {
            sqlx::query(
                "INSERT INTO quarantine (received_at_ms, topic, device_id, message_id, reason_code, reason, payload)
                 VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(ms(&q.inc.received_at))
            .bind(q.inc.topic.as_str())
            .bind(q.device.as_deref())
            .bind(q.message_id.as_deref())
            .bind(q.code)
            .bind(q.reason.as_str())
            .bind(q.inc.payload.as_slice())
            .execute(&mut *tx)
            .await?;
            tracing::info!(reason = q.code, "message quarantined");
        }

        // The raise time is taken just before the commit that makes the alert visible.
        let raised = Utc::now();
        for (alert, received, json) in &alerts {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO alerts (patient_ref, level, score, complete, news2, tier, tier_since_ms, reading_at_ms,
                   received_at_ms, raised_at_ms) VALUES (?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id",
            )
            .bind(alert.patient.as_str())
            .bind(alert.level.as_str())
            .bind(i64::from(alert.score))
            .bind(alert.complete)
            .bind(json.as_str())
            .bind(ms(&raised))
            .bind(ms(&alert.reading_time))
            .bind(ms(received))
            .bind(ms(&raised))
            .fetch_one(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO alert_events (alert_id, event, tier, at_ms) VALUES (?, 'raised', 1, ?)")
                .bind(id)
                .bind(ms(&raised))
                .execute(&mut *tx)
                .await?;
        }

        tx.commit().await?;
        self.last_seq.extend(seq_updates);
        Ok(report)
    }

    /// Escalate every unacknowledged alert whose timeout has passed; returns how many moved.
    pub async fn escalate_due(&self, now: DateTime<Utc>) -> Result<usize, IngestError> {
        let mut moved = 0;
        for a in self.store.open_alerts().await? {
            if let Some(tier) =
                escalation_due(self.engine.policy(), a.level, a.tier, a.tier_since, now)
            {
                if self.store.escalate(a.id, tier, now).await? {
                    tracing::info!(alert = a.id, tier, "alert escalated");
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }
}

/// Where the broker is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
}

impl BrokerAddr {
    /// Parse `mqtt://host:port` (or `tcp://`, or `host:port`; port 1883 by default).
    pub fn parse(url: &str) -> Result<BrokerAddr, IngestError> {
        let bad = || IngestError::BadBrokerUrl(url.to_string());
        let rest = url
            .strip_prefix("mqtt://")
            .or_else(|| url.strip_prefix("tcp://"))
            .unwrap_or(url)
            .trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().map_err(|_| bad())?),
            None => (rest, 1883),
        };
        if host.is_empty() || host.contains('/') || host.contains('@') {
            return Err(bad());
        }
        Ok(BrokerAddr {
            host: host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port,
        })
    }

    /// `mqtt://host:port`.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }
}

/// Settings of the ingest service.
#[derive(Clone, Debug)]
pub struct ServiceConfig {
    /// Broker.
    pub broker: BrokerAddr,
    /// MQTT user name of the node (None: anonymous).
    pub username: Option<String>,
    /// Its password.
    pub password: Option<String>,
    /// Fixed client id: the broker keeps the session (and queues messages) under it.
    pub client_id: String,
    /// Database file.
    pub db: PathBuf,
    /// Commit durability.
    pub durability: Durability,
    /// Largest batch per transaction.
    pub max_batch: usize,
    /// Alert rules.
    pub policy: AlertPolicy,
    /// Seconds between escalation checks.
    pub escalation_interval: Duration,
    /// Whether the service escalates overdue alerts itself. The node turns this off: its own escalation loop
    /// moves them and records each move in its audit chain.
    pub escalate: bool,
    /// Signalled by whoever changes the device registry in the same database (the node's registry API): the
    /// ingest re-reads it before taking the next messages, instead of within ten escalation ticks.
    pub registry_changed: Option<Arc<tokio::sync::Notify>>,
}

impl ServiceConfig {
    /// Defaults for a broker and database.
    pub fn new(broker: BrokerAddr, db: PathBuf) -> ServiceConfig {
        ServiceConfig {
            broker,
            username: None,
            password: None,
            client_id: "caravan-node-ingest".into(),
            db,
            durability: Durability::Full,
            max_batch: 5000,
            policy: AlertPolicy::default(),
            escalation_interval: Duration::from_secs(1),
            escalate: true,
            registry_changed: None,
        }
    }
}

/// Totals of a service run.
pub type ServiceStats = BatchReport;

/// Run the ingest service until `shutdown` resolves. `on_ready` is called once the subscription is in place.
pub async fn run_service(
    cfg: ServiceConfig,
    shutdown: impl std::future::Future<Output = ()>,
    on_ready: impl FnOnce() + Send + 'static,
) -> Result<ServiceStats, IngestError> {
    let store = Store::open(&cfg.db, cfg.durability).await?;
    let mut ingestor = Ingestor::open(store, cfg.policy.clone()).await?;

    let mut opts = MqttOptions::new(
        cfg.client_id.clone(),
        cfg.broker.host.clone(),
        cfg.broker.port,
    );
    opts.set_clean_session(false)
        .set_manual_acks(true)
        .set_keep_alive(Duration::from_secs(30))
        .set_max_packet_size(256 * 1024, 256 * 1024);
    if let Some(user) = &cfg.username {
        opts.set_credentials(user.clone(), cfg.password.clone().unwrap_or_default());
    }
    // The request channel carries our PUBACKs; it must hold a whole batch so that acking never waits on the
    // event loop (which is busy handing us the next messages).
    let (client, eventloop) = AsyncClient::new(opts, cfg.max_batch * 2 + 1024);
    // Connection generation: a PUBACK is only valid on the connection that delivered the message.
    let generation = Arc::new(AtomicU64::new(0));
    let (tx, mut rx) = mpsc::unbounded_channel::<(u64, Publish, DateTime<Utc>)>();
    let poller = tokio::spawn(poll_loop(
        eventloop,
        client.clone(),
        tx,
        generation.clone(),
        on_ready,
    ));

    let mut total = BatchReport::default();
    let mut tick = tokio::time::interval(cfg.escalation_interval);
    let mut ticks: u64 = 0;
    tokio::pin!(shutdown);
    let result = loop {
        tokio::select! {
            biased;
            _ = &mut shutdown => break Ok(()),
            // Before the messages: under a constant stream `biased` would otherwise never reach the tick.
            _ = tick.tick() => {
                if cfg.escalate {
                    if let Err(e) = ingestor.escalate_due(Utc::now()).await {
                        tracing::warn!(error = %e, "escalation check failed");
                    }
                }
                // Devices registered or rebound by the node are picked up within ten ticks.
                ticks += 1;
                if ticks % 10 == 0 {
                    if let Err(e) = ingestor.reload_registry().await {
                        tracing::warn!(error = %e, "registry reload failed");
                    }
                }
            }
            // Before the messages, so that a device registered just before its first message is known.
            () = wait_changed(cfg.registry_changed.as_deref()) => {
                if let Err(e) = ingestor.reload_registry().await {
                    tracing::warn!(error = %e, "registry reload failed");
                }
            }
            first = rx.recv() => {
                let Some(first) = first else {
                    break Err(IngestError::Mqtt("event loop stopped".into()));
                };
                let mut publishes = vec![first];
                while publishes.len() < cfg.max_batch {
                    match rx.try_recv() {
                        Ok(p) => publishes.push(p),
                        Err(_) => break,
                    }
                }
                let batch: Vec<Incoming> = publishes
                    .iter()
                    .map(|(_, p, at)| Incoming { topic: p.topic.clone(), payload: p.payload.to_vec(), received_at: *at })
                    .collect();
                match ingestor.process(&batch).await {
                    Ok(r) => total.add(&r),
                    Err(e) => break Err(e),
                }
                // Committed: acknowledge. A message delivered on an earlier connection is not acknowledged here;
                // the broker redelivers it on the current one and the duplicate is acknowledged then.
                let current = generation.load(Ordering::SeqCst);
                for (g, p, _) in &publishes {
                    if *g == current {
                        if let Err(e) = client.ack(p).await {
                            tracing::warn!(error = %e, "PUBACK not queued");
                        }
                    }
                }
            }
        }
    };
    poller.abort();
    ingestor.store().close().await;
    result.map(|()| total)
}

async fn wait_changed(n: Option<&tokio::sync::Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

async fn poll_loop(
    mut eventloop: EventLoop,
    client: AsyncClient,
    tx: mpsc::UnboundedSender<(u64, Publish, DateTime<Utc>)>,
    generation: Arc<AtomicU64>,
    on_ready: impl FnOnce() + Send + 'static,
) {
    let mut on_ready = Some(on_ready);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::Publish(p))) => {
                if tx
                    .send((generation.load(Ordering::SeqCst), p, Utc::now()))
                    .is_err()
                {
                    return;
                }
            }
            Ok(Event::Incoming(Packet::ConnAck(ack))) => {
                tracing::info!(session_present = ack.session_present, "connected to broker");
                if ack.session_present {
                    if let Some(f) = on_ready.take() {
                        f();
                    }
                } else if let Err(e) = client.try_subscribe(TOPIC_FILTER, QoS::AtLeastOnce) {
                    tracing::error!(error = %e, "subscribe not queued");
                }
            }
            Ok(Event::Incoming(Packet::SubAck(_))) => {
                if let Some(f) = on_ready.take() {
                    f();
                }
            }
            Ok(_) => {}
            Err(e) => {
                generation.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "broker connection lost; reconnecting");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
