//! Remote-monitoring resources on `/fhir`: vital-signs `Observation`s (read and search) and the `Device`s that
//! produced them (read, search by patient).
//!
//! The Observations are the ones the monitoring ingest built when the reading arrived (vital-signs profile, LOINC
//! codes and UCUM units; see the `monitoring` crate's README), with the node's row id as `id`. Every access goes through
//! `caravan_server::monitor`, which applies the patient scope of the node's store (404 when the user may not see
//! the patient) and appends the audit event.
//!
//! Search: `Observation?patient=Patient/<id>` (required) with `code` (token, `[system|]code`, comma = or:
//! a LOINC code of a parameter, e.g. `8867-4` heart rate, `85354-9` blood pressure, `59408-5` or `2708-6`
//! SpO2), `date` (repeatable, prefixes `eq` `ge` `gt` `le` `lt`, `YYYY-MM-DD` or an RFC 3339 instant) and
//! `_count`; `Device?patient=Patient/<id>`. Surveillance reports, the other Observations of this node, are
//! create-only and never returned here.

use crate::error::{FhirError, FhirResult};
use crate::input;
use caravan_domain::PatientId;
use caravan_server::auth::Principal;
use caravan_server::monitor::{self, DeviceView, ObservationFilter, ReadingKind, ALL_KINDS};
use caravan_server::AppState;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use fhirbolt::model::r4::Resource;

/// The identifier system of monitoring devices.
pub const DEVICE_SYSTEM: &str = "urn:caravan:monitoring:device";

fn parse_resource(v: &serde_json::Value) -> FhirResult<Resource> {
    let bytes = serde_json::to_vec(v).map_err(FhirError::internal)?;
    fhirbolt::json::from_slice::<Resource>(&bytes, None).map_err(FhirError::internal)
}

/// `Observation/{id}`.
pub async fn read_observation(st: &AppState, p: &Principal, raw_id: &str) -> FhirResult<Resource> {
    let unknown = || FhirError::not_found(format!("Observation/{raw_id} is not known"));
    let id: i64 = raw_id.parse().map_err(|_| unknown())?;
    let o = monitor::observation(st, p, id, "fhir:Observation")
        .await
        .map_err(|e| match e.status.as_u16() {
            404 => unknown(),
            _ => e.into(),
        })?;
    parse_resource(&monitor::fhir_resource(&o)?)
}

/// The reading kinds a `code` token list names (`[system|]code`, comma-separated).
fn kinds_for_codes(list: &str) -> Vec<ReadingKind> {
    let mut out = Vec::new();
    for token in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let (system, code) = match token.rsplit_once('|') {
            Some((s, c)) => (Some(s), c),
            None => (None, token),
        };
        for k in ALL_KINDS {
            let hit = k
                .codes()
                .iter()
                .any(|(sys, c, _)| *c == code && system.is_none_or(|s| s.is_empty() || s == *sys));
            if hit && !out.contains(&k) {
                out.push(k);
            }
        }
    }
    out
}

/// One `date` parameter as a half-open interval `[from, to)`.
/// `[from, to)`, either end open.
type Bounds = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn date_bounds(v: &str) -> FhirResult<Bounds> {
    let (prefix, value) = match v.get(..2) {
        Some(p @ ("eq" | "ge" | "gt" | "le" | "lt")) => (p, &v[2..]),
        _ => ("eq", v),
    };
    let (start, end) = if let Ok(t) = DateTime::parse_from_rfc3339(value) {
        let t = t.with_timezone(&Utc);
        (t, t + Duration::milliseconds(1))
    } else if let Some(d) = NaiveDate::parse_from_str(value, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
    {
        let t = d.and_utc();
        (t, t + Duration::days(1))
    } else {
        return Err(FhirError::invalid(format!(
            "date {v:?} is not [eq|ge|gt|le|lt]YYYY-MM-DD or an RFC 3339 instant"
        )));
    };
    Ok(match prefix {
        "ge" => (Some(start), None),
        "gt" => (Some(end), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start)),
        _ => (Some(start), Some(end)),
    })
}

fn patient_param(params: &[(String, String)], rtype: &str) -> FhirResult<PatientId> {
    let v = params
        .iter()
        .find(|(k, v)| k == "patient" && !v.is_empty())
        .map(|(_, v)| v.as_str())
        .ok_or_else(|| FhirError::invalid(format!("{rtype} search needs patient=Patient/<id>")))?;
    input::ref_id("Patient", v)
}

/// `Observation?patient=...&code=...&date=...`.
pub async fn search_observations(
    st: &AppState,
    p: &Principal,
    params: &[(String, String)],
    count: usize,
) -> FhirResult<Vec<Resource>> {
    let pid = patient_param(params, "Observation")?;
    let mut f = ObservationFilter {
        limit: u32::try_from(count.min(monitor::MAX_OBSERVATIONS as usize)).unwrap_or(1),
        ..Default::default()
    };
    // A code that no vital sign of this node carries matches nothing (the patient's scope is still checked and
    // the search audited).
    let mut matches_nothing = false;
    if let Some((_, codes)) = params.iter().find(|(k, v)| k == "code" && !v.is_empty()) {
        f.kinds = kinds_for_codes(codes);
        matches_nothing = f.kinds.is_empty();
    }
    for (_, v) in params.iter().filter(|(k, v)| k == "date" && !v.is_empty()) {
        let (from, to) = date_bounds(v)?;
        if let Some(t) = from {
            f.from = Some(f.from.map_or(t, |x| x.max(t)));
        }
        if let Some(t) = to {
            f.to = Some(f.to.map_or(t, |x| x.min(t)));
        }
    }
    if matches_nothing {
        f.limit = 1;
    }
    let rows = monitor::observations(st, p, &pid.to_string(), f, "fhir:Observation").await?;
    if matches_nothing {
        return Ok(Vec::new());
    }
    rows.iter()
        .map(|o| parse_resource(&monitor::fhir_resource(o)?))
        .collect()
}

fn device_resource(d: &DeviceView) -> FhirResult<Resource> {
    let mut v = serde_json::json!({
        "resourceType": "Device",
        "id": d.device_id,
        "identifier": [{"system": DEVICE_SYSTEM, "value": d.device_id}],
        "status": if d.patient_id.is_some() { "active" } else { "inactive" },
        "deviceName": [{"name": d.device_id, "type": "user-friendly-name"}],
        "type": {"coding": [{"system": "urn:caravan:monitoring:device-kind", "code": d.kind}], "text": d.kind},
    });
    if let Some(pid) = &d.patient_id {
        v["patient"] = serde_json::json!({"reference": format!("Patient/{pid}")});
    }
    parse_resource(&v)
}

/// `Device/{id}`.
pub async fn read_device(st: &AppState, p: &Principal, raw_id: &str) -> FhirResult<Resource> {
    let d = monitor::device(st, p, raw_id)
        .await
        .map_err(|e| match e.status.as_u16() {
            404 => FhirError::not_found(format!("Device/{raw_id} is not known")),
            _ => e.into(),
        })?;
    device_resource(&d)
}

/// `Device?patient=...`.
pub async fn search_devices(
    st: &AppState,
    p: &Principal,
    params: &[(String, String)],
) -> FhirResult<Vec<Resource>> {
    let pid = patient_param(params, "Device")?;
    monitor::devices_of(st, p, &pid.to_string())
        .await?
        .iter()
        .map(device_resource)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_reading_kinds() {
        assert_eq!(kinds_for_codes("8867-4"), vec![ReadingKind::HeartRate]);
        assert_eq!(
            kinds_for_codes("http://loinc.org|59408-5,85354-9"),
            vec![ReadingKind::Spo2, ReadingKind::BloodPressure]
        );
        assert!(kinds_for_codes("http://snomed.info/sct|8867-4").is_empty());
        assert!(kinds_for_codes("1234-5").is_empty());
    }

    #[test]
    fn date_prefixes_give_half_open_intervals() {
        let day = |s: &str| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
        };
        assert_eq!(
            date_bounds("2026-05-01").unwrap(),
            (Some(day("2026-05-01")), Some(day("2026-05-02")))
        );
        assert_eq!(
            date_bounds("ge2026-05-01").unwrap(),
            (Some(day("2026-05-01")), None)
        );
        assert_eq!(
            date_bounds("gt2026-05-01").unwrap(),
            (Some(day("2026-05-02")), None)
        );
        assert_eq!(
            date_bounds("lt2026-05-01").unwrap(),
            (None, Some(day("2026-05-01")))
        );
        assert_eq!(
            date_bounds("le2026-05-01").unwrap(),
            (None, Some(day("2026-05-02")))
        );
        assert!(date_bounds("2026-13-01").is_err());
        assert!(date_bounds("sa2026-05-01").is_err());
    }
}
