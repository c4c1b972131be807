//! Remote monitoring for Caravan: devices (home blood-pressure cuffs, pulse oximeters, ward robots) publish
//! vital signs over MQTT; the node stores them as FHIR vital-signs Observations in its own SQLite database,
//! computes NEWS2 per patient and raises alerts that escalate when nobody acknowledges them.
//!
//! - [`news2`]: the Royal College of Physicians NEWS2 score (2017), both SpO2 scales, pure functions.
//! - [`model`]: devices, the wire payload, readings, plausibility limits, FHIR Observations (LOINC + UCUM).
//! - [`ingest`]: the MQTT subscriber (QoS 1, persistent session, PUBACK after commit), de-duplication, gap
//!   detection, quarantine.
//! - [`alerts`]: per-patient NEWS2 over a window of readings, alert-fatigue rules, escalation.
//! - [`store`]: the SQLite schema and queries.
//! - [`broker`]: Mosquitto passwords, ACLs, configuration and a private broker process.
//! - [`sim`], [`soak`]: the vital-signs simulator and the kill-the-node soak.
//! - [`cli`]: `caravan monitor ...`.

pub mod alerts;
pub mod broker;
pub mod cli;
pub mod ingest;
pub mod model;
pub mod news2;
pub mod sim;
pub mod soak;
pub mod store;
