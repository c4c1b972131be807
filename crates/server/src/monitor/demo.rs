//! Demo data for remote monitoring: devices bound to three demo patients and an hour of readings fed through
//! the monitoring crate's own ingest (`Ingestor::process`: de-duplication, NEWS2, alert rules), so the pages show
//! a stable patient, a deteriorating one with alerts, and a patient of the other hospital — without a broker.

use super::Monitor;
use crate::audit::system_event;
use caravan_domain::{Actor, AuditAction, Patient};
use caravan_store::{PatientFilter, Store, StoreError};
use chrono::{DateTime, Duration, Utc};
use monitoring::ingest::{Incoming, Ingestor};
use monitoring::model::{topic_for, Device, DeviceId, DeviceKind, Message, PatientRef, Reading};
use monitoring::news2::Acvpu;

/// What was seeded.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Seeded {
    pub devices: usize,
    pub messages: usize,
    pub alerts: usize,
}

async fn patient_of(
    store: &dyn Store,
    user: &str,
    family: &str,
) -> Result<Option<Patient>, StoreError> {
    let (u, _) = match store.get_user_credentials(user).await {
        Ok(x) => x,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(e),
    };
    let list = store
        .list_patients(
            &Actor::from(&u),
            &PatientFilter {
                name: Some(family.to_owned()),
                birth_date: None,
                limit: Some(5),
            },
        )
        .await?;
    Ok(list.into_iter().find(|p| p.family_name == family))
}

fn err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Database(e.to_string())
}

/// Linear interpolation from `a` to `b` at step `i` of `n`.
fn lerp(a: f64, b: f64, i: usize, n: usize) -> f64 {
    let v = a + (b - a) * i as f64 / n.max(1) as f64;
    (v * 10.0).round() / 10.0
}

/// Seed once (when the monitoring database has no devices yet). `now` anchors the hour of readings.
pub async fn seed(
    m: &Monitor,
    store: &dyn Store,
    now: DateTime<Utc>,
) -> Result<Seeded, StoreError> {
    let db = m.store();
    if !db.devices().await.map_err(err)?.is_empty() {
        return Ok(Seeded::default());
    }
    let stable = patient_of(store, "dr.aliyev", "Serikbayev").await?;
    let deteriorating = patient_of(store, "dr.aliyev", "Nurlanova").await?;
    let other = patient_of(store, "dr.wang", "Tursun").await?;
    let mut plan: Vec<(Patient, &str, DeviceKind)> = Vec::new();
    if let Some(p) = stable {
        plan.push((p, "demo-robot-01", DeviceKind::WardRobot));
    }
    if let Some(p) = deteriorating {
        plan.push((p.clone(), "demo-oximeter-02", DeviceKind::PulseOximeter));
        plan.push((p, "demo-monitor-02", DeviceKind::MultiparameterMonitor));
    }
    if let Some(p) = other {
        plan.push((p, "demo-oximeter-03", DeviceKind::PulseOximeter));
    }
    let mut out = Seeded::default();
    let mut audit = Vec::new();
    for (p, id, kind) in &plan {
        let device = Device {
            id: DeviceId::new(*id).map_err(err)?,
            kind: *kind,
            patient: Some(PatientRef::new(p.id.to_string()).map_err(err)?),
        };
        if db
            .add_device(&device, None, now - Duration::hours(2))
            .await
            .map_err(err)?
        {
            out.devices += 1;
            audit.push(system_event(
                AuditAction::Create,
                "monitoring_device",
                id,
                Some(p.id),
                "demo",
            ));
        }
    }
    store.append_audit(audit).await?;

    let mut ingest = Ingestor::open(db.clone(), m.policy().clone())
        .await
        .map_err(err)?;
    let steps = 12;
    let mut batch = Vec::new();
    for i in 0..=steps {
        let t = now - Duration::minutes(5 * (steps - i) as i64);
        for (_, id, _) in &plan {
            let readings = match *id {
                "demo-robot-01" => vec![
                    Reading::RespiratoryRate(16.0 + (i % 3) as f64),
                    Reading::Spo2(97.0 - (i % 2) as f64),
                    Reading::OxygenFlow(0.0),
                    Reading::BloodPressure {
                        systolic: 124.0 + (i % 4) as f64,
                        diastolic: 78.0,
                    },
                    Reading::HeartRate(72.0 + (i % 5) as f64),
                    Reading::Consciousness(Acvpu::Alert),
                    Reading::Temperature(36.8),
                ],
                // Sepsis-like deterioration over the hour: the NEWS2 score climbs from 0 to 11.
                "demo-oximeter-02" => vec![
                    Reading::Spo2(lerp(97.0, 90.0, i, steps).round()),
                    Reading::HeartRate(lerp(78.0, 125.0, i, steps).round()),
                ],
                "demo-monitor-02" => vec![
                    Reading::RespiratoryRate(lerp(16.0, 26.0, i, steps).round()),
                    Reading::BloodPressure {
                        systolic: lerp(128.0, 95.0, i, steps).round(),
                        diastolic: lerp(82.0, 58.0, i, steps).round(),
                    },
                    Reading::Temperature(lerp(37.0, 38.8, i, steps)),
                    Reading::Consciousness(Acvpu::Alert),
                    Reading::OxygenFlow(0.0),
                ],
                _ => vec![
                    Reading::Spo2(98.0),
                    Reading::HeartRate(66.0 + (i % 3) as f64),
                ],
            };
            let msg = Message {
                device_id: DeviceId::new(*id).map_err(err)?,
                message_id: format!("{id}-demo-{}", i + 1),
                seq: i as u64 + 1,
                timestamp: t,
                readings,
            };
            batch.push(Incoming {
                topic: topic_for(&msg.device_id),
                payload: msg.to_json(),
                received_at: t + Duration::seconds(1),
            });
        }
    }
    // One message per batch, in time order, so the alert rules see the readings as they would have arrived.
    for inc in batch {
        let r = ingest
            .process(std::slice::from_ref(&inc))
            .await
            .map_err(err)?;
        out.messages += r.stored_messages;
        out.alerts += r.alerts;
    }
    Ok(out)
}
