//! DCC JSON schema validation (ehn-dcc-development/eu-dcc-schema, releases 1.0.0 … 1.3.3, Apache-2.0).
//!
//! The schemas are compiled into the binary so verification never fetches anything. Each is compiled once, on
//! first use. Formats (`date`, `date-time`) are annotations only, as in JSON Schema 2020-12 and in the official
//! dgc-testdata runner; the schemas' own patterns still constrain dates.

use crate::error::{Error, Result};
use jsonschema::Validator;
use std::sync::OnceLock;

const SCHEMAS: [(&str, &str); 6] = [
    ("1.0.0", include_str!("../schemas/DCC-1.0.0.json")),
    ("1.0.1", include_str!("../schemas/DCC-1.0.1.json")),
    ("1.1.0", include_str!("../schemas/DCC-1.1.0.json")),
    ("1.2.1", include_str!("../schemas/DCC-1.2.1.json")),
    ("1.3.0", include_str!("../schemas/DCC-1.3.0.json")),
    ("1.3.3", include_str!("../schemas/DCC-1.3.3.json")),
];

static COMPILED: [OnceLock<std::result::Result<Validator, String>>; 6] = [
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
    OnceLock::new(),
];

/// Picks the schema release for a payload's `ver`: the exact release when we ship it, else the newest release of
/// the same minor line (1.2.0 → 1.2.1, 1.3.2 → 1.3.3). Versions outside 1.0–1.3 are unsupported.
pub fn schema_for_version(ver: &str) -> Result<&'static str> {
    let parts: Vec<&str> = ver.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    if !valid {
        return Err(Error::SchemaVersion(ver.to_string()));
    }
    if let Some((v, _)) = SCHEMAS.iter().find(|(v, _)| *v == ver) {
        return Ok(v);
    }
    let line = format!("{}.{}.", parts[0], parts[1]);
    SCHEMAS
        .iter()
        .rev()
        .find(|(v, _)| v.starts_with(&line))
        .map(|(v, _)| *v)
        .ok_or_else(|| Error::SchemaVersion(ver.to_string()))
}

fn validator(version: &str) -> Result<&'static Validator> {
    let idx = SCHEMAS
        .iter()
        .position(|(v, _)| *v == version)
        .ok_or_else(|| Error::SchemaVersion(version.to_string()))?;
    let compiled = COMPILED[idx].get_or_init(|| {
        let schema: serde_json::Value =
            serde_json::from_str(SCHEMAS[idx].1).map_err(|e| e.to_string())?;
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(false)
            .build(&schema)
            .map_err(|e| e.to_string())
    });
    compiled.as_ref().map_err(|e| Error::Schema {
        version: version.to_string(),
        detail: format!("schema: {e}"),
    })
}

/// Validates a DCC payload against the schema its `ver` names, and checks that it holds exactly one of
/// `v`/`t`/`r` with exactly one entry (the schema alone allows several arrays in old releases).
pub fn validate_dcc(dcc: &serde_json::Value) -> Result<&'static str> {
    let ver = dcc
        .get("ver")
        .and_then(|v| v.as_str())
        .ok_or_else(|| Error::Schema {
            version: "?".into(),
            detail: "`ver` is missing or not a string".into(),
        })?;
    let version = schema_for_version(ver)?;
    validate_against(version, dcc)?;
    let groups: Vec<&serde_json::Value> =
        ["v", "t", "r"].iter().filter_map(|k| dcc.get(*k)).collect();
    if groups.len() != 1 {
        return Err(Error::CertificateType(groups.len()));
    }
    Ok(version)
}

/// Validates against one named schema release.
pub fn validate_against(version: &str, dcc: &serde_json::Value) -> Result<()> {
    let validator = validator(version)?;
    if let Some(err) = validator.iter_errors(dcc).next() {
        return Err(Error::Schema {
            version: version.to_string(),
            // Only locations, never the offending value: it could be the holder's name or date of birth.
            detail: format!("{} fails {}", err.instance_path(), err.schema_path()),
        });
    }
    Ok(())
}
