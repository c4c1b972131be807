//! Devices, the wire payload devices publish, readings, plausibility limits and FHIR vital-signs Observations.
//!
//! Wire format (version 1), published on `caravan/v1/devices/{device_id}/readings` with QoS 1:
//! ```json
//! {"device_id":"ox-0001","message_id":"ox-0001-42","seq":42,"timestamp":"2026-05-01T10:00:00Z",
//!  "readings":[{"kind":"spo2","value":96},{"kind":"heart_rate","value":72},
//!              {"kind":"blood_pressure","systolic":121,"diastolic":79},
//!              {"kind":"consciousness","value":"A"},{"kind":"oxygen_flow","value":0}]}
//! ```
//! `seq` is the device's own counter, starting at 1 and increasing by 1 per message over the device's life; the
//! node uses it to detect lost messages. `message_id` is unique per device and is the de-duplication key.
//! `unit` may be given per reading and must then be the UCUM unit listed in [`ReadingKind::ucum`].

use crate::news2::{Acvpu, Vitals};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::fmt;

/// Topic prefix of version 1 of the wire format.
pub const TOPIC_PREFIX: &str = "caravan/v1/devices/";
/// Topic suffix.
pub const TOPIC_SUFFIX: &str = "/readings";
/// The subscription filter covering every device.
pub const TOPIC_FILTER: &str = "caravan/v1/devices/+/readings";

/// The topic a device publishes on.
pub fn topic_for(device: &DeviceId) -> String {
    format!("{TOPIC_PREFIX}{}{TOPIC_SUFFIX}", device.as_str())
}

/// The device id named by a topic, if the topic has the version 1 layout.
pub fn device_in_topic(topic: &str) -> Option<&str> {
    let rest = topic
        .strip_prefix(TOPIC_PREFIX)?
        .strip_suffix(TOPIC_SUFFIX)?;
    if rest.is_empty() || rest.contains('/') {
        None
    } else {
        Some(rest)
    }
}

/// A device id: 1–64 characters from `A–Z a–z 0–9 . _ -`. It is also the device's MQTT user name and a topic
/// level, so MQTT wildcards (`+`, `#`), `/` and the ACL substitution characters (`%`) are excluded.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceId(String);

impl DeviceId {
    /// Validate a device id.
    pub fn new(s: impl Into<String>) -> Result<DeviceId, ModelError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(DeviceId(s))
        } else {
            Err(ModelError::BadDeviceId(s.chars().take(80).collect()))
        }
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for DeviceId {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        DeviceId::new(s)
    }
}

impl From<DeviceId> for String {
    fn from(d: DeviceId) -> String {
        d.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An opaque reference to a patient, issued by the node (never a name or a national number).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PatientRef(String);

impl PatientRef {
    /// Validate: 1–128 characters from `A–Z a–z 0–9 . _ -` (a FHIR id is a subset of this).
    pub fn new(s: impl Into<String>) -> Result<PatientRef, ModelError> {
        let s = s.into();
        let ok = !s.is_empty()
            && s.len() <= 128
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
        if ok {
            Ok(PatientRef(s))
        } else {
            Err(ModelError::BadPatientRef)
        }
    }

    /// The reference.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PatientRef {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PatientRef::new(s)
    }
}

impl From<PatientRef> for String {
    fn from(p: PatientRef) -> String {
        p.0
    }
}

impl fmt::Display for PatientRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// Home or ward blood-pressure cuff (BP, pulse).
    BpCuff,
    /// Pulse oximeter (SpO2, pulse).
    PulseOximeter,
    /// Thermometer.
    Thermometer,
    /// A ward robot or multi-parameter monitor reading a full NEWS2 set.
    WardRobot,
    /// A bedside multi-parameter monitor.
    MultiparameterMonitor,
    /// Anything else; readings are still checked against the plausibility limits.
    Other,
}

impl DeviceKind {
    /// Stable text form (as in the database).
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::BpCuff => "bp_cuff",
            DeviceKind::PulseOximeter => "pulse_oximeter",
            DeviceKind::Thermometer => "thermometer",
            DeviceKind::WardRobot => "ward_robot",
            DeviceKind::MultiparameterMonitor => "multiparameter_monitor",
            DeviceKind::Other => "other",
        }
    }

    /// Parse [`DeviceKind::as_str`].
    pub fn parse(s: &str) -> Option<DeviceKind> {
        [
            DeviceKind::BpCuff,
            DeviceKind::PulseOximeter,
            DeviceKind::Thermometer,
            DeviceKind::WardRobot,
            DeviceKind::MultiparameterMonitor,
            DeviceKind::Other,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// A registered device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Its id (also its MQTT user name).
    pub id: DeviceId,
    /// What it is.
    pub kind: DeviceKind,
    /// The patient it is bound to; readings from an unbound device are quarantined.
    pub patient: Option<PatientRef>,
}

/// Per-device MQTT credentials. The password is shown once, when generated; the node keeps only the broker's
/// hash of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceCredentials {
    /// The device id, used as the MQTT user name and client id.
    pub device_id: DeviceId,
    /// The password.
    pub password: String,
}

/// Kinds of reading.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadingKind {
    /// Heart rate / pulse.
    HeartRate,
    /// Respiratory rate.
    RespiratoryRate,
    /// Oxygen saturation by pulse oximetry.
    Spo2,
    /// Blood pressure panel (systolic and diastolic).
    BloodPressure,
    /// Body temperature.
    Temperature,
    /// Level of consciousness (ACVPU).
    Consciousness,
    /// Inhaled oxygen flow rate; 0 means room air.
    OxygenFlow,
}

impl ReadingKind {
    /// Stable text form (wire and database).
    pub fn as_str(self) -> &'static str {
        match self {
            ReadingKind::HeartRate => "heart_rate",
            ReadingKind::RespiratoryRate => "respiratory_rate",
            ReadingKind::Spo2 => "spo2",
            ReadingKind::BloodPressure => "blood_pressure",
            ReadingKind::Temperature => "temperature",
            ReadingKind::Consciousness => "consciousness",
            ReadingKind::OxygenFlow => "oxygen_flow",
        }
    }

    /// Parse [`ReadingKind::as_str`].
    pub fn parse(s: &str) -> Option<ReadingKind> {
        ALL_KINDS.into_iter().find(|k| k.as_str() == s)
    }

    /// The UCUM unit of the value (empty for coded values).
    pub fn ucum(self) -> &'static str {
        match self {
            ReadingKind::HeartRate | ReadingKind::RespiratoryRate => "/min",
            ReadingKind::Spo2 => "%",
            ReadingKind::BloodPressure => "mm[Hg]",
            ReadingKind::Temperature => "Cel",
            ReadingKind::Consciousness => "",
            ReadingKind::OxygenFlow => "L/min",
        }
    }

    /// The Observation code: (system, code, display). LOINC as in the FHIR R4 vital-signs profiles; ACVPU uses the
    /// SNOMED CT UK edition concept used by NHS NEWS2 charts.
    pub fn codes(self) -> &'static [(&'static str, &'static str, &'static str)] {
        match self {
            ReadingKind::HeartRate => &[(LOINC, "8867-4", "Heart rate")],
            ReadingKind::RespiratoryRate => &[(LOINC, "9279-1", "Respiratory rate")],
            ReadingKind::Spo2 => &[
                (LOINC, "2708-6", "Oxygen saturation in Arterial blood"),
                (
                    LOINC,
                    "59408-5",
                    "Oxygen saturation in Arterial blood by Pulse oximetry",
                ),
            ],
            ReadingKind::BloodPressure => &[(
                LOINC,
                "85354-9",
                "Blood pressure panel with all children optional",
            )],
            ReadingKind::Temperature => &[(LOINC, "8310-5", "Body temperature")],
            ReadingKind::Consciousness => &[(
                SNOMED,
                "1104441000000107",
                "ACVPU (Alert Confusion Voice Pain Unresponsive) scale score",
            )],
            ReadingKind::OxygenFlow => &[(LOINC, "3151-8", "Inhaled oxygen flow rate")],
        }
    }
}

/// Every reading kind.
pub const ALL_KINDS: [ReadingKind; 7] = [
    ReadingKind::HeartRate,
    ReadingKind::RespiratoryRate,
    ReadingKind::Spo2,
    ReadingKind::BloodPressure,
    ReadingKind::Temperature,
    ReadingKind::Consciousness,
    ReadingKind::OxygenFlow,
];

const LOINC: &str = "http://loinc.org";
const SNOMED: &str = "http://snomed.info/sct";
const UCUM: &str = "http://unitsofmeasure.org";
/// Code system of the ACVPU values (a local one: no international code list for the five letters is shipped).
pub const ACVPU_SYSTEM: &str = "urn:caravan:acvpu";

/// One validated reading.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reading {
    /// Beats per minute.
    HeartRate(f64),
    /// Breaths per minute.
    RespiratoryRate(f64),
    /// Percent.
    Spo2(f64),
    /// mmHg.
    BloodPressure {
        /// Systolic.
        systolic: f64,
        /// Diastolic.
        diastolic: f64,
    },
    /// °C.
    Temperature(f64),
    /// ACVPU.
    Consciousness(Acvpu),
    /// L/min; 0 is room air.
    OxygenFlow(f64),
}

impl Reading {
    /// Its kind.
    pub fn kind(&self) -> ReadingKind {
        match self {
            Reading::HeartRate(_) => ReadingKind::HeartRate,
            Reading::RespiratoryRate(_) => ReadingKind::RespiratoryRate,
            Reading::Spo2(_) => ReadingKind::Spo2,
            Reading::BloodPressure { .. } => ReadingKind::BloodPressure,
            Reading::Temperature(_) => ReadingKind::Temperature,
            Reading::Consciousness(_) => ReadingKind::Consciousness,
            Reading::OxygenFlow(_) => ReadingKind::OxygenFlow,
        }
    }

    /// The main numeric value (systolic for BP; none for ACVPU).
    pub fn value(&self) -> Option<f64> {
        match *self {
            Reading::HeartRate(v)
            | Reading::RespiratoryRate(v)
            | Reading::Spo2(v)
            | Reading::Temperature(v)
            | Reading::OxygenFlow(v) => Some(v),
            Reading::BloodPressure { systolic, .. } => Some(systolic),
            Reading::Consciousness(_) => None,
        }
    }

    /// The second value (diastolic for BP).
    pub fn value2(&self) -> Option<f64> {
        match *self {
            Reading::BloodPressure { diastolic, .. } => Some(diastolic),
            _ => None,
        }
    }

    /// The coded value (ACVPU letter).
    pub fn value_code(&self) -> Option<&'static str> {
        match *self {
            Reading::Consciousness(a) => Some(a.letter()),
            _ => None,
        }
    }

    /// Check the plausibility limits: values a correctly working device can report for a living patient. These
    /// are wide on purpose (they catch sensor faults and corrupt messages, not abnormal physiology, which is
    /// NEWS2's job).
    pub fn check_plausible(&self) -> Result<(), Implausible> {
        fn range(kind: ReadingKind, v: f64, lo: f64, hi: f64) -> Result<(), Implausible> {
            if v.is_finite() && v >= lo && v <= hi {
                Ok(())
            } else {
                Err(Implausible {
                    kind,
                    value: v,
                    reason: format!(
                        "{} {} {} outside the plausible range {}–{}",
                        kind.as_str(),
                        v,
                        kind.ucum(),
                        lo,
                        hi
                    ),
                })
            }
        }
        match *self {
            Reading::HeartRate(v) => range(ReadingKind::HeartRate, v, 1.0, 300.0),
            Reading::RespiratoryRate(v) => range(ReadingKind::RespiratoryRate, v, 0.0, 80.0),
            Reading::Spo2(v) => range(ReadingKind::Spo2, v, 1.0, 100.0),
            Reading::Temperature(v) => range(ReadingKind::Temperature, v, 25.0, 45.0),
            Reading::OxygenFlow(v) => range(ReadingKind::OxygenFlow, v, 0.0, 70.0),
            Reading::BloodPressure {
                systolic,
                diastolic,
            } => {
                range(ReadingKind::BloodPressure, systolic, 30.0, 300.0)?;
                range(ReadingKind::BloodPressure, diastolic, 10.0, 250.0)?;
                if diastolic >= systolic {
                    return Err(Implausible {
                        kind: ReadingKind::BloodPressure,
                        value: diastolic,
                        reason: format!(
                            "blood_pressure diastolic {diastolic} not below systolic {systolic}"
                        ),
                    });
                }
                Ok(())
            }
            Reading::Consciousness(_) => Ok(()),
        }
    }
}

/// A reading outside the plausibility limits.
#[derive(Clone, Debug, PartialEq)]
pub struct Implausible {
    /// Which reading.
    pub kind: ReadingKind,
    /// The offending value.
    pub value: f64,
    /// Human-readable reason.
    pub reason: String,
}

/// A parsed, validated message from a device.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    /// Sender as stated in the payload (checked against the topic by the ingest).
    pub device_id: DeviceId,
    /// Unique per device.
    pub message_id: String,
    /// Per-device sequence number (≥ 1).
    pub seq: u64,
    /// When the readings were taken.
    pub timestamp: DateTime<Utc>,
    /// At least one reading.
    pub readings: Vec<Reading>,
}

/// Errors of this module: payloads that cannot be accepted.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Not a valid device id.
    #[error("invalid device id {0:?}")]
    BadDeviceId(String),
    /// Not a valid patient reference.
    #[error("invalid patient reference")]
    BadPatientRef,
    /// Not JSON, or not the payload's shape.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// A reading failed the plausibility limits.
    #[error("implausible value: {}", .0.reason)]
    Implausible(Implausible),
}

impl ModelError {
    /// A stable reason code for the quarantine table.
    pub fn code(&self) -> &'static str {
        match self {
            ModelError::BadDeviceId(_) | ModelError::BadPatientRef | ModelError::Malformed(_) => {
                "malformed"
            }
            ModelError::Implausible(_) => "implausible",
        }
    }
}

// The wire types are plain structs: serde_json's `arbitrary_precision` (on workspace-wide) breaks tagged enums
// holding numbers, so the reading's kind is dispatched by hand in `Message::parse`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireMessage {
    device_id: String,
    message_id: String,
    seq: u64,
    timestamp: String,
    readings: Vec<WireReading>,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields)]
struct WireReading {
    kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    value: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    systolic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diastolic: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    unit: Option<String>,
}

const MAX_READINGS: usize = 32;
const MAX_MESSAGE_ID: usize = 128;

impl Message {
    /// Parse and validate a payload. Plausibility is checked here too: any implausible reading refuses the whole
    /// message (a device that reports SpO2 140 % cannot be trusted for the pulse in the same message either).
    pub fn parse(payload: &[u8]) -> Result<Message, ModelError> {
        let w: WireMessage =
            serde_json::from_slice(payload).map_err(|e| ModelError::Malformed(e.to_string()))?;
        let device_id = DeviceId::new(w.device_id)?;
        if w.message_id.is_empty() || w.message_id.len() > MAX_MESSAGE_ID {
            return Err(ModelError::Malformed(format!(
                "message_id must be 1–{MAX_MESSAGE_ID} characters"
            )));
        }
        if w.seq == 0 || w.seq > i64::MAX as u64 {
            return Err(ModelError::Malformed("seq must be ≥ 1".into()));
        }
        let timestamp = DateTime::parse_from_rfc3339(&w.timestamp)
            .map_err(|e| ModelError::Malformed(format!("timestamp: {e}")))?
            .with_timezone(&Utc);
        if w.readings.is_empty() || w.readings.len() > MAX_READINGS {
            return Err(ModelError::Malformed(format!(
                "readings must hold 1–{MAX_READINGS} entries"
            )));
        }
        let mut readings = Vec::with_capacity(w.readings.len());
        for r in w.readings {
            let reading = parse_reading(r)?;
            if readings
                .iter()
                .any(|x: &Reading| x.kind() == reading.kind())
            {
                return Err(ModelError::Malformed(format!(
                    "two {} readings in one message",
                    reading.kind().as_str()
                )));
            }
            reading.check_plausible().map_err(ModelError::Implausible)?;
            readings.push(reading);
        }
        Ok(Message {
            device_id,
            message_id: w.message_id,
            seq: w.seq,
            timestamp,
            readings,
        })
    }

    /// Serialize to the wire format.
    pub fn to_json(&self) -> Vec<u8> {
        let readings: Vec<WireReading> = self
            .readings
            .iter()
            .map(|r| {
                let mut w = WireReading {
                    kind: r.kind().as_str().to_string(),
                    ..WireReading::default()
                };
                match *r {
                    Reading::BloodPressure {
                        systolic,
                        diastolic,
                    } => {
                        w.systolic = Some(systolic);
                        w.diastolic = Some(diastolic);
                    }
                    Reading::Consciousness(a) => w.value = Some(Value::from(a.letter())),
                    _ => w.value = r.value().map(number),
                }
                w
            })
            .collect();
        let v = json!({
            "device_id": self.device_id.as_str(),
            "message_id": self.message_id,
            "seq": self.seq,
            "timestamp": self.timestamp.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "readings": readings,
        });
        v.to_string().into_bytes()
    }

    /// The NEWS2 inputs this message carries.
    pub fn vitals(&self) -> Vitals {
        let mut v = Vitals::default();
        for r in &self.readings {
            match *r {
                Reading::HeartRate(x) => v.pulse = Some(x),
                Reading::RespiratoryRate(x) => v.respiration_rate = Some(x),
                Reading::Spo2(x) => v.spo2 = Some(x),
                Reading::BloodPressure { systolic, .. } => v.systolic_bp = Some(systolic),
                Reading::Temperature(x) => v.temperature = Some(x),
                Reading::Consciousness(a) => v.consciousness = Some(a),
                Reading::OxygenFlow(x) => v.on_oxygen = Some(x > 0.0),
            }
        }
        v
    }
}

fn number(v: f64) -> Value {
    // Whole numbers are written without a fraction, like devices do.
    if v.fract() == 0.0 && v.abs() < 1e15 {
        Value::from(v as i64)
    } else {
        Value::from(v)
    }
}

fn as_f64(kind: ReadingKind, v: &Option<Value>) -> Result<f64, ModelError> {
    match v {
        Some(Value::Number(n)) => n.as_f64().ok_or_else(|| {
            ModelError::Malformed(format!("{} value is not a number", kind.as_str()))
        }),
        Some(_) => Err(ModelError::Malformed(format!(
            "{} value must be a number",
            kind.as_str()
        ))),
        None => Err(ModelError::Malformed(format!(
            "{} reading has no value",
            kind.as_str()
        ))),
    }
}

fn parse_reading(r: WireReading) -> Result<Reading, ModelError> {
    let kind = ReadingKind::parse(&r.kind).ok_or_else(|| {
        ModelError::Malformed(format!("unknown reading kind {:?}", truncate(&r.kind)))
    })?;
    if let Some(unit) = &r.unit {
        if unit != kind.ucum() {
            return Err(ModelError::Malformed(format!(
                "unit {:?} not accepted for {} (expected UCUM {:?})",
                truncate(unit),
                kind.as_str(),
                kind.ucum()
            )));
        }
    }
    if kind != ReadingKind::BloodPressure && (r.systolic.is_some() || r.diastolic.is_some()) {
        return Err(ModelError::Malformed(format!(
            "systolic/diastolic given for {}",
            kind.as_str()
        )));
    }
    Ok(match kind {
        ReadingKind::HeartRate => Reading::HeartRate(as_f64(kind, &r.value)?),
        ReadingKind::RespiratoryRate => Reading::RespiratoryRate(as_f64(kind, &r.value)?),
        ReadingKind::Spo2 => Reading::Spo2(as_f64(kind, &r.value)?),
        ReadingKind::Temperature => Reading::Temperature(as_f64(kind, &r.value)?),
        ReadingKind::OxygenFlow => Reading::OxygenFlow(as_f64(kind, &r.value)?),
        ReadingKind::BloodPressure => {
            if r.value.is_some() {
                return Err(ModelError::Malformed(
                    "blood_pressure takes systolic and diastolic, not value".into(),
                ));
            }
            match (r.systolic, r.diastolic) {
                (Some(systolic), Some(diastolic)) => Reading::BloodPressure {
                    systolic,
                    diastolic,
                },
                _ => {
                    return Err(ModelError::Malformed(
                        "blood_pressure needs systolic and diastolic".into(),
                    ))
                }
            }
        }
        ReadingKind::Consciousness => match &r.value {
            Some(Value::String(s)) => {
                Reading::Consciousness(Acvpu::from_letter(s).ok_or_else(|| {
                    ModelError::Malformed(format!(
                        "consciousness {:?} is not one of A, C, V, P, U",
                        truncate(s)
                    ))
                })?)
            }
            _ => {
                return Err(ModelError::Malformed(
                    "consciousness value must be one of \"A\", \"C\", \"V\", \"P\", \"U\"".into(),
                ))
            }
        },
    })
}

fn truncate(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A FHIR R4 Observation (vital-signs profile where one exists) for one reading. `identifier` carries
/// `{device}/{message_id}/{kind}`, unique per reading.
pub fn fhir_observation(
    reading: &Reading,
    device: &DeviceId,
    message_id: &str,
    patient: &PatientRef,
    effective: &DateTime<Utc>,
) -> Value {
    let kind = reading.kind();
    let coding: Vec<Value> = kind
        .codes()
        .iter()
        .map(|(system, code, display)| json!({"system": system, "code": code, "display": display}))
        .collect();
    let profile = match kind {
        ReadingKind::HeartRate => Some("heartrate"),
        ReadingKind::RespiratoryRate => Some("resprate"),
        ReadingKind::Spo2 => Some("oxygensat"),
        ReadingKind::BloodPressure => Some("bp"),
        ReadingKind::Temperature => Some("bodytemp"),
        ReadingKind::Consciousness | ReadingKind::OxygenFlow => None,
    };
    let mut obs = json!({
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/observation-category",
            "code": "vital-signs", "display": "Vital Signs"}]}],
        "code": {"coding": coding},
        "subject": {"reference": format!("Patient/{}", patient.as_str())},
        "effectiveDateTime": effective.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "device": {"reference": format!("Device/{}", device.as_str())},
        "identifier": [{"system": "urn:caravan:monitoring:reading",
                         "value": format!("{}/{}/{}", device.as_str(), message_id, kind.as_str())}],
    });
    if let Some(p) = profile {
        obs["meta"] = json!({"profile": [format!("http://hl7.org/fhir/StructureDefinition/{p}")]});
    }
    let quantity =
        |v: f64| json!({"value": v, "unit": kind.ucum(), "system": UCUM, "code": kind.ucum()});
    match *reading {
        Reading::BloodPressure {
            systolic,
            diastolic,
        } => {
            obs["component"] = json!([
                {"code": {"coding": [{"system": LOINC, "code": "8480-6", "display": "Systolic blood pressure"}]},
                 "valueQuantity": quantity(systolic)},
                {"code": {"coding": [{"system": LOINC, "code": "8462-4", "display": "Diastolic blood pressure"}]},
                 "valueQuantity": quantity(diastolic)},
            ]);
        }
        Reading::Consciousness(a) => {
            let display = match a {
                Acvpu::Alert => "Alert",
                Acvpu::Confusion => "New confusion",
                Acvpu::Voice => "Responds to voice",
                Acvpu::Pain => "Responds to pain",
                Acvpu::Unresponsive => "Unresponsive",
            };
            obs["valueCodeableConcept"] = json!({"coding": [{"system": ACVPU_SYSTEM, "code": a.letter(), "display": display}], "text": display});
        }
        _ => {
            if let Some(v) = reading.value() {
                obs["valueQuantity"] = quantity(v);
            }
        }
    }
    obs
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(readings: &str) -> Vec<u8> {
        format!(
            r#"{{"device_id":"ox-1","message_id":"m1","seq":1,"timestamp":"2026-05-01T10:00:00Z","readings":{readings}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn parses_a_full_set_and_round_trips() {
        let p = payload(
            r#"[{"kind":"spo2","value":96,"unit":"%"},{"kind":"heart_rate","value":72.5},
                {"kind":"blood_pressure","systolic":121,"diastolic":79},{"kind":"consciousness","value":"c"},
                {"kind":"oxygen_flow","value":2},{"kind":"temperature","value":37.2},{"kind":"respiratory_rate","value":18}]"#,
        );
        let m = Message::parse(&p).unwrap();
        assert_eq!(m.readings.len(), 7);
        assert_eq!(m.readings[3], Reading::Consciousness(Acvpu::Confusion));
        let v = m.vitals();
        assert_eq!(v.on_oxygen, Some(true));
        assert_eq!(v.systolic_bp, Some(121.0));
        assert_eq!(Message::parse(&m.to_json()).unwrap(), m);
    }

    #[test]
    fn spo2_140_is_refused_with_a_reason() {
        let err = Message::parse(&payload(r#"[{"kind":"spo2","value":140}]"#)).unwrap_err();
        assert_eq!(err.code(), "implausible");
        assert!(
            err.to_string()
                .contains("spo2 140 % outside the plausible range 1–100"),
            "{err}"
        );
    }

    #[test]
    fn malformed_payloads_are_typed_errors() {
        let cases: &[&[u8]] = &[
            b"not json",
            b"",
            br#"{"device_id":"a"}"#,
            &payload(r#"[]"#),
            &payload(r#"[{"kind":"glucose","value":5}]"#),
            &payload(r#"[{"kind":"spo2","value":"96"}]"#),
            &payload(r#"[{"kind":"spo2","value":96,"unit":"ratio"}]"#),
            &payload(r#"[{"kind":"blood_pressure","systolic":120}]"#),
            &payload(r#"[{"kind":"consciousness","value":"X"}]"#),
            &payload(r#"[{"kind":"spo2","value":96},{"kind":"spo2","value":97}]"#),
            br#"{"device_id":"a/b","message_id":"m","seq":1,"timestamp":"2026-05-01T10:00:00Z","readings":[{"kind":"spo2","value":96}]}"#,
            br#"{"device_id":"a","message_id":"m","seq":0,"timestamp":"2026-05-01T10:00:00Z","readings":[{"kind":"spo2","value":96}]}"#,
            br#"{"device_id":"a","message_id":"m","seq":1,"timestamp":"yesterday","readings":[{"kind":"spo2","value":96}]}"#,
            br#"{"device_id":"a","message_id":"m","seq":1,"timestamp":"2026-05-01T10:00:00Z","readings":[{"kind":"spo2","value":96}],"extra":1}"#,
        ];
        for c in cases {
            let e = Message::parse(c).unwrap_err();
            assert_eq!(
                e.code(),
                "malformed",
                "{e} for {}",
                String::from_utf8_lossy(c)
            );
        }
    }

    #[test]
    fn plausibility_limits() {
        assert!(Reading::Spo2(100.0).check_plausible().is_ok());
        assert!(Reading::Spo2(100.1).check_plausible().is_err());
        assert!(Reading::Temperature(46.0).check_plausible().is_err());
        assert!(Reading::HeartRate(f64::NAN).check_plausible().is_err());
        assert!(Reading::BloodPressure {
            systolic: 80.0,
            diastolic: 90.0
        }
        .check_plausible()
        .is_err());
        assert!(Reading::RespiratoryRate(-1.0).check_plausible().is_err());
    }

    #[test]
    fn topics_and_ids() {
        let d = DeviceId::new("bp-0007").unwrap();
        assert_eq!(topic_for(&d), "caravan/v1/devices/bp-0007/readings");
        assert_eq!(device_in_topic(&topic_for(&d)), Some("bp-0007"));
        assert_eq!(device_in_topic("caravan/v1/devices/a/b/readings"), None);
        assert_eq!(device_in_topic("other/x"), None);
        for bad in ["", "a+b", "a#", "a/b", "%u", &"x".repeat(65)] {
            assert!(DeviceId::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn fhir_shapes() {
        let d = DeviceId::new("ox-1").unwrap();
        let p = PatientRef::new("pat-1").unwrap();
        let t = Utc::now();
        let o = fhir_observation(&Reading::Spo2(95.0), &d, "m1", &p, &t);
        assert_eq!(o["code"]["coding"][0]["code"], "2708-6");
        assert_eq!(o["code"]["coding"][1]["code"], "59408-5");
        assert_eq!(o["valueQuantity"]["code"], "%");
        assert_eq!(o["subject"]["reference"], "Patient/pat-1");
        let bp = fhir_observation(
            &Reading::BloodPressure {
                systolic: 120.0,
                diastolic: 80.0,
            },
            &d,
            "m1",
            &p,
            &t,
        );
        assert_eq!(bp["code"]["coding"][0]["code"], "85354-9");
        assert_eq!(bp["component"][0]["code"]["coding"][0]["code"], "8480-6");
        assert_eq!(bp["component"][1]["valueQuantity"]["code"], "mm[Hg]");
        assert!(bp.get("valueQuantity").is_none());
        let t37 = fhir_observation(&Reading::Temperature(37.0), &d, "m1", &p, &t);
        assert_eq!(t37["valueQuantity"]["code"], "Cel");
        assert_eq!(t37["code"]["coding"][0]["code"], "8310-5");
    }
}
