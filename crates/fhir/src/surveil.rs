//! Notifiable-disease reports posted as FHIR R4 (create only; read them back through the surveillance API):
//!
//! - a **case** is an `Observation` (POST `/fhir/Observation`): `code` = the disease as an ICD-10 coding
//!   (`http://hl7.org/fhir/sid/icd-10`), `effectiveDateTime` = onset date, `identifier[0].value` = the reporter's
//!   pseudonym (optional; never a name), and `component`s coded in [`COMPONENT_SYSTEM`]: `region` (valueString),
//!   `report-date` (valueDateTime), `age-band`, `sex`, `outcome` (valueString), `lab-confirmed` (valueBoolean).
//!   No `subject`: the case is pseudonymised, and an Observation that names a patient is refused;
//! - **aggregate counts** are a `MeasureReport` (POST `/fhir/MeasureReport`, `type` = `summary`) whose `period`
//!   is one ISO week (Monday to Sunday); one `group` per disease (`group.code` an ICD-10 coding), stratified by
//!   region: `stratifier.stratum.value.text` = region code, `stratum.population[0].count` = the count.
//!
//! Both go through the same validation and detection as the form, the CSV import and the JSON API
//! (`caravan_server::surveil`); a refusal is an OperationOutcome naming the element, and nothing is stored.

use crate::error::{FhirError, FhirResult};
use caravan_server::auth::Principal;
use caravan_server::surveil::{self, AggregateInput, CaseInput};
use caravan_server::AppState;
use chrono::Datelike;
use fhirbolt::model::r4::resources as fr;
use fhirbolt::model::r4::types as ft;

pub const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";
/// The code system of the case components.
pub const COMPONENT_SYSTEM: &str = "https://caravan.example/fhir/CodeSystem/surveillance-case";

fn icd10(cc: Option<&ft::CodeableConcept>, element: &str) -> FhirResult<String> {
    cc.and_then(|cc| {
        cc.coding.iter().find_map(|c| {
            (c.system.as_ref().and_then(|s| s.value.as_deref()) == Some(ICD10))
                .then(|| c.code.as_ref().and_then(|c| c.value.clone()))
                .flatten()
        })
    })
    .ok_or_else(|| FhirError::invalid(format!("{element} needs an ICD-10 coding (system {ICD10})")))
}

fn component_code(c: &fr::ObservationComponent) -> Option<&str> {
    c.code.coding.iter().find_map(|cd| {
        (cd.system.as_ref().and_then(|s| s.value.as_deref()) == Some(COMPONENT_SYSTEM))
            .then(|| cd.code.as_ref().and_then(|c| c.value.as_deref()))
            .flatten()
    })
}

fn component_text(o: &fr::Observation, code: &str) -> FhirResult<String> {
    let Some(c) = o.component.iter().find(|c| component_code(c) == Some(code)) else {
        return Ok(String::new());
    };
    Ok(match &c.value {
        Some(fr::ObservationComponentValue::String(s)) => s.value.clone().unwrap_or_default(),
        Some(fr::ObservationComponentValue::DateTime(d)) => d.value.clone().unwrap_or_default(),
        Some(fr::ObservationComponentValue::Boolean(b)) => {
            b.value.map(|b| b.to_string()).unwrap_or_default()
        }
        Some(fr::ObservationComponentValue::CodeableConcept(cc)) => cc
            .coding
            .first()
            .and_then(|c| c.code.as_ref().and_then(|c| c.value.clone()))
            .or_else(|| cc.text.as_ref().and_then(|t| t.value.clone()))
            .unwrap_or_default(),
        _ => {
            return Err(FhirError::invalid(format!(
                "Observation.component {code} has a value type this node does not read"
            )))
        }
    })
}

/// The case an Observation reports.
pub fn case_of(o: &fr::Observation) -> FhirResult<CaseInput> {
    if o.subject.is_some() {
        return Err(FhirError::invalid(
            "Observation.subject must be absent: surveillance cases are pseudonymised (use identifier for the reporter's code)",
        ));
    }
    let disease = icd10(Some(&o.code), "Observation.code")?;
    let onset = match &o.effective {
        Some(fr::ObservationEffective::DateTime(d)) => d.value.clone().unwrap_or_default(),
        _ => {
            return Err(FhirError::invalid(
                "Observation.effectiveDateTime (the onset date) is required",
            ))
        }
    };
    // A dateTime may carry a time: the date part is the onset date.
    let onset: String = onset.chars().take(10).collect();
    let mut report = component_text(o, "report-date")?;
    report.truncate(10);
    if report.is_empty() {
        return Err(FhirError::invalid(
            "Observation.component report-date is required",
        ));
    }
    Ok(CaseInput {
        pseudonym: o
            .identifier
            .first()
            .and_then(|i| i.value.as_ref().and_then(|v| v.value.clone()))
            .unwrap_or_default(),
        disease,
        region: component_text(o, "region")?,
        onset_date: onset,
        report_date: report,
        age_band: component_text(o, "age-band")?,
        sex: component_text(o, "sex")?,
        outcome: component_text(o, "outcome")?,
        lab_confirmed: component_text(o, "lab-confirmed")?,
    })
}

/// The weekly counts a MeasureReport reports.
pub fn aggregates_of(m: &fr::MeasureReport) -> FhirResult<Vec<AggregateInput>> {
    if m.r#type.value.as_deref() != Some("summary") {
        return Err(FhirError::invalid("MeasureReport.type must be summary"));
    }
    let start = m
        .period
        .start
        .as_ref()
        .and_then(|d| d.value.as_deref())
        .and_then(|s| chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
        .ok_or_else(|| {
            FhirError::invalid(
                "MeasureReport.period.start must be a date (the Monday of an ISO week)",
            )
        })?;
    if start.weekday() != chrono::Weekday::Mon {
        return Err(FhirError::invalid(format!(
            "MeasureReport.period.start {start} is not a Monday: the period is one ISO week"
        )));
    }
    if let Some(end) = m
        .period
        .end
        .as_ref()
        .and_then(|d| d.value.as_deref())
        .and_then(|s| chrono::NaiveDate::parse_from_str(s.get(..10)?, "%Y-%m-%d").ok())
    {
        if (end - start).num_days() != 6 {
            return Err(FhirError::invalid(
                "MeasureReport.period must span one ISO week (Monday to Sunday)",
            ));
        }
    }
    let iso = start.iso_week();
    let mut out = Vec::new();
    for (g, group) in m.group.iter().enumerate() {
        let disease = icd10(
            group.code.as_deref(),
            &format!("MeasureReport.group[{g}].code"),
        )?;
        if group.stratifier.is_empty() {
            return Err(FhirError::invalid(format!(
                "MeasureReport.group[{g}] needs a stratifier by region"
            )));
        }
        for (s, strat) in group.stratifier.iter().enumerate() {
            for (k, stratum) in strat.stratum.iter().enumerate() {
                let at = format!("MeasureReport.group[{g}].stratifier[{s}].stratum[{k}]");
                let region = stratum
                    .value
                    .as_ref()
                    .and_then(|v| {
                        v.text.as_ref().and_then(|t| t.value.clone()).or_else(|| {
                            v.coding
                                .first()
                                .and_then(|c| c.code.as_ref().and_then(|c| c.value.clone()))
                        })
                    })
                    .ok_or_else(|| {
                        FhirError::invalid(format!("{at}.value (the region code) is required"))
                    })?;
                let count = stratum
                    .population
                    .first()
                    .and_then(|p| p.count.as_ref().and_then(|c| c.value))
                    .ok_or_else(|| {
                        FhirError::invalid(format!("{at}.population[0].count is required"))
                    })?;
                out.push(AggregateInput {
                    disease: disease.clone(),
                    region,
                    iso_year: i64::from(iso.year()),
                    iso_week: i64::from(iso.week()),
                    count: i64::from(count),
                });
            }
        }
    }
    if out.is_empty() {
        return Err(FhirError::invalid("MeasureReport.group is empty"));
    }
    Ok(out)
}

fn with_id<T>(mut r: T, id: String, set: impl FnOnce(&mut T, ft::Id)) -> T {
    set(
        &mut r,
        ft::Id {
            value: Some(id),
            ..Default::default()
        },
    );
    r
}

/// Store a case Observation; returns it with the case's id.
pub async fn create_observation(
    st: &AppState,
    p: &Principal,
    o: fr::Observation,
) -> FhirResult<fr::Observation> {
    p.require(surveil::OFFICERS)?;
    let input = case_of(&o)?;
    let batch = surveil::validate(st, p, &[input], &[], "fhir").await?;
    let id = batch
        .cases
        .first()
        .map(|c| c.id.to_string())
        .unwrap_or_default();
    surveil::submit(st, p, batch, "fhir").await?;
    Ok(with_id(o, id, |r, id| r.id = Some(id)))
}

/// Store the counts of a MeasureReport; returns it with the report's batch id.
pub async fn create_measure_report(
    st: &AppState,
    p: &Principal,
    m: fr::MeasureReport,
) -> FhirResult<fr::MeasureReport> {
    p.require(surveil::OFFICERS)?;
    let inputs = aggregates_of(&m)?;
    let batch = surveil::validate(st, p, &[], &inputs, "fhir").await?;
    let out = surveil::submit(st, p, batch, "fhir").await?;
    Ok(with_id(m, out.batch.to_string(), |r, id| r.id = Some(id)))
}
