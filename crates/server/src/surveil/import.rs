//! CSV import of notifiable-disease reports, all or nothing: one bad row refuses the whole file, and the error
//! names every bad line (up to 20) and what is wrong on it.
//!
//! Two layouts, told apart by the header (columns in any order, names in lower case):
//! - cases (line list): `pseudonym,disease,region,onset_date,report_date,age_band,sex,outcome,lab_confirmed`
//!   (`pseudonym`, `age_band`, `sex`, `outcome`, `lab_confirmed` may be left empty or out);
//! - aggregates: `disease,region,iso_year,iso_week,count`.

use super::{summarise, AggregateInput, Batch, CaseInput};
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use caravan_store::SurvRegion;
use chrono::Utc;

pub const CASE_COLUMNS: &[&str] = &[
    "pseudonym",
    "disease",
    "region",
    "onset_date",
    "report_date",
    "age_band",
    "sex",
    "outcome",
    "lab_confirmed",
];
const CASE_REQUIRED: &[&str] = &["disease", "region", "onset_date", "report_date"];
pub const AGGREGATE_COLUMNS: &[&str] = &["disease", "region", "iso_year", "iso_week", "count"];

/// Largest accepted CSV file.
pub const MAX_CSV_BYTES: usize = 8 * 1024 * 1024;

fn refused(message: impl Into<String>) -> AppError {
    AppError::unprocessable("error-surv-import", message)
}

/// Parse and validate a whole file against the node's regions.
pub fn parse(
    text: &str,
    regions: &[SurvRegion],
    reporter: &Principal,
    now: chrono::DateTime<Utc>,
) -> AppResult<Batch> {
    if text.len() > MAX_CSV_BYTES {
        return Err(refused(format!(
            "the file is larger than {} MB",
            MAX_CSV_BYTES / 1024 / 1024
        )));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers: Vec<String> = rdr
        .headers()
        .map_err(|e| refused(format!("line 1: {e}")))?
        .iter()
        .map(|h| h.to_ascii_lowercase())
        .collect();
    if headers.iter().all(|h| h.is_empty()) {
        return Err(refused("the file is empty (no header line)"));
    }
    let is_cases = headers.iter().any(|h| h == "onset_date");
    let is_aggregates = headers.iter().any(|h| h == "iso_week");
    let (allowed, required): (&[&str], &[&str]) = match (is_cases, is_aggregates) {
        (true, false) => (CASE_COLUMNS, CASE_REQUIRED),
        (false, true) => (AGGREGATE_COLUMNS, AGGREGATE_COLUMNS),
        _ => {
            return Err(refused(format!(
            "line 1: the header must be either the case columns ({}) or the aggregate columns ({})",
            CASE_COLUMNS.join(","),
            AGGREGATE_COLUMNS.join(",")
        )))
        }
    };
    for h in &headers {
        if !allowed.contains(&h.as_str()) {
            return Err(refused(format!(
                "line 1: unknown column {:?} (expected {})",
                h.chars().take(40).collect::<String>(),
                allowed.join(",")
            )));
        }
    }
    for r in required {
        if !headers.iter().any(|h| h == r) {
            return Err(refused(format!("line 1: the column {r} is missing")));
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for h in &headers {
        if !seen.insert(h) {
            return Err(refused(format!("line 1: the column {h} appears twice")));
        }
    }
    let col = |name: &str| headers.iter().position(|h| h == name);
    let mut errors = Vec::new();
    let mut batch = Batch::default();
    let mut rows = 0usize;
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("line {line}: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        if rec.iter().all(str::is_empty) {
            continue;
        }
        rows += 1;
        if rows > super::MAX_BATCH {
            return Err(refused(format!(
                "the file has more than {} rows",
                super::MAX_BATCH
            )));
        }
        if rec.len() != headers.len() {
            errors.push(format!(
                "line {line}: {} fields where the header has {}",
                rec.len(),
                headers.len()
            ));
            continue;
        }
        let get = |name: &str| {
            col(name)
                .and_then(|i| rec.get(i))
                .unwrap_or_default()
                .to_owned()
        };
        if is_cases {
            let input = CaseInput {
                pseudonym: get("pseudonym"),
                disease: get("disease"),
                region: get("region"),
                onset_date: get("onset_date"),
                report_date: get("report_date"),
                age_band: get("age_band"),
                sex: get("sex"),
                outcome: get("outcome"),
                lab_confirmed: get("lab_confirmed"),
            };
            match super::validate_case(&input, regions, reporter, "csv", now) {
                Ok(c) => batch.cases.push(c),
                Err(e) => errors.push(format!("line {line}: {e}")),
            }
        } else {
            let num = |name: &str| -> Result<i64, String> {
                let v = get(name);
                v.parse::<i64>().map_err(|_| {
                    format!(
                        "{name} {:?} is not a whole number",
                        v.chars().take(40).collect::<String>()
                    )
                })
            };
            let input = (|| -> Result<AggregateInput, String> {
                Ok(AggregateInput {
                    disease: get("disease"),
                    region: get("region"),
                    iso_year: num("iso_year")?,
                    iso_week: num("iso_week")?,
                    count: num("count")?,
                })
            })();
            match input.and_then(|a| super::validate_aggregate(&a, regions, reporter, "csv", now)) {
                Ok(a) => batch.aggregates.push(a),
                Err(e) => errors.push(format!("line {line}: {e}")),
            }
        }
    }
    if !errors.is_empty() {
        return Err(refused(format!(
            "nothing was imported: {}",
            summarise(&errors)
        )));
    }
    if rows == 0 {
        return Err(refused("the file has a header but no rows"));
    }
    // The same week reported twice in one file would silently keep the last figure: refuse it instead.
    let mut keys = std::collections::BTreeMap::new();
    for (i, a) in batch.aggregates.iter().enumerate() {
        if let Some(first) = keys.insert((&a.disease, &a.region, a.iso_year, a.iso_week), i) {
            return Err(refused(format!(
                "nothing was imported: rows {} and {} both report {} in {} for {}-W{:02}",
                first + 1,
                i + 1,
                a.disease,
                a.region,
                a.iso_year,
                a.iso_week
            )));
        }
    }
    Ok(batch)
}

/// Import a CSV file as one report.
pub async fn import(st: &AppState, p: &Principal, text: &str) -> AppResult<super::ReportOutcome> {
    p.require(super::OFFICERS)?;
    let regions = st.store().surv_regions().await?;
    let batch = parse(text, &regions, p, Utc::now())?;
    super::submit(st, p, batch, "csv").await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use caravan_domain::*;

    fn officer() -> Principal {
        Principal {
            user: User {
                id: UserId::new(),
                username: "o".into(),
                display_name: "O".into(),
                institution_id: InstitutionId::new(),
                role: Role::PublicHealthOfficer,
                patient_id: None,
                profile: None,
                locale: "en".into(),
                active: true,
            },
            via: crate::auth::Via::ApiToken,
        }
    }

    fn regions() -> Vec<SurvRegion> {
        vec![SurvRegion {
            code: "KZ-ALM".into(),
            name: "Almaty".into(),
            country: "KZ".into(),
            population: 1000,
            neighbours: vec![],
        }]
    }

    #[test]
    fn a_good_case_file_parses() {
        let csv = "disease,region,onset_date,report_date,sex,age_band,lab_confirmed\n\
                   A09,KZ-ALM,2026-01-05,2026-01-07,female,25-44,yes\n\
                   \n\
                   B05,KZ-ALM,2026-01-06,2026-01-08,,,no\n";
        let b = parse(csv, &regions(), &officer(), Utc::now()).unwrap();
        assert_eq!(b.cases.len(), 2);
        assert!(b.cases[0].lab_confirmed);
        assert_eq!(b.cases[1].sex, "unknown");
        assert!(b.cases[1].pseudonym.starts_with("anon-"));
    }

    #[test]
    fn every_bad_line_is_named_and_nothing_is_kept() {
        let csv = "disease,region,iso_year,iso_week,count\n\
                   A09,KZ-ALM,2026,2,5\n\
                   A09,KZ-XXX,2026,3,5\n\
                   A09,KZ-ALM,2026,54,5\n\
                   A09,KZ-ALM,2026,4,-1\n\
                   A09,KZ-ALM,2026,5,five\n";
        let e = parse(csv, &regions(), &officer(), Utc::now()).unwrap_err();
        assert_eq!(e.code, "error-surv-import");
        for needle in [
            "line 3: region \"KZ-XXX\"",
            "line 4: iso_week 54",
            "line 5: count -1",
            "line 6: count \"five\"",
        ] {
            assert!(e.message.contains(needle), "{needle} in {}", e.message);
        }
        assert!(!e.message.contains("line 2"), "{}", e.message);
    }

    #[test]
    fn headers_are_checked() {
        let r = regions();
        let o = officer();
        for (csv, needle) in [
            ("", "empty"),
            ("a,b\n1,2\n", "header must be"),
            ("disease,region,iso_year,iso_week,count,name\n", "unknown column \"name\""),
            ("disease,iso_year,iso_week,count\n", "column region is missing"),
            ("disease,region,iso_year,iso_week,count\n", "no rows"),
            ("disease,region,iso_year,iso_week,count\nA09,KZ-ALM,2026\n", "line 2: 3 fields"),
            (
                "disease,region,iso_year,iso_week,count\nA09,KZ-ALM,2026,2,1\nA09,KZ-ALM,2026,2,3\n",
                "rows 1 and 2",
            ),
        ] {
            let e = parse(csv, &r, &o, Utc::now()).unwrap_err();
            assert!(e.message.contains(needle), "{needle:?} in {:?}", e.message);
        }
    }
}
