//! Importing the reference tables (formulary, interactions, allergy rules) from CSV or JSON, validated row by row:
//! a bad row refuses the whole import with its row number and what is wrong, and the stored table is unchanged.

use caravan_store::{AllergyRule, FormularyItem, InteractionRule, RxTable, Severity, RXNORM};
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeSet;

/// The starter tables shipped with the node (see `starter/README.md` for their provenance and licence).
pub const STARTER: [(RxTable, &str); 3] = [
    (RxTable::Formulary, include_str!("starter/formulary.csv")),
    (
        RxTable::Interactions,
        include_str!("starter/interactions.csv"),
    ),
    (RxTable::Allergies, include_str!("starter/allergies.csv")),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("unknown table {0:?} (formulary, interactions, allergies)")]
    UnknownTable(String),
    #[error("the file is neither CSV with a header row nor a JSON array: {0}")]
    Format(String),
    #[error("row {row}: {message}")]
    Row { row: usize, message: String },
    #[error("row {row}: duplicate key {key:?}")]
    Duplicate { row: usize, key: String },
    #[error("the table is empty")]
    Empty,
}

#[derive(Deserialize)]
struct FormularyRow {
    code: String,
    #[serde(default)]
    system: String,
    display: String,
    ingredient: String,
    #[serde(default)]
    strength: String,
    #[serde(default)]
    form: String,
    #[serde(default)]
    route: String,
    /// `;`-separated in CSV; a list or a `;`-separated string in JSON.
    #[serde(default)]
    classes: ClassList,
}

#[derive(Deserialize, Default)]
#[serde(untagged)]
enum ClassList {
    #[default]
    None,
    Text(String),
    List(Vec<String>),
}

impl ClassList {
    fn into_vec(self) -> Vec<String> {
        let items = match self {
            ClassList::None => Vec::new(),
            ClassList::Text(s) => s.split(';').map(str::to_owned).collect(),
            ClassList::List(v) => v,
        };
        items
            .into_iter()
            .map(|c| norm(&c))
            .filter(|c| !c.is_empty())
            .collect()
    }
}

#[derive(Deserialize)]
struct InteractionRow {
    a: String,
    b: String,
    severity: String,
    reason: String,
    #[serde(default)]
    source: String,
}

#[derive(Deserialize)]
struct AllergyRow {
    allergen: String,
    drug_class: String,
    severity: String,
    reason: String,
    #[serde(default)]
    source: String,
}

/// Names compare lower case and trimmed.
pub fn norm(s: &str) -> String {
    s.trim().to_lowercase()
}

fn rows<T: serde::de::DeserializeOwned>(text: &str) -> Result<Vec<T>, TableError> {
    let trimmed = text.trim_start_matches('\u{feff}').trim();
    if trimmed.starts_with('[') {
        // JSON: an array of objects. Rows are parsed one by one so an error names its row.
        let items: Vec<Value> =
            serde_json::from_str(trimmed).map_err(|e| TableError::Format(e.to_string()))?;
        return items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value(v).map_err(|e| TableError::Row {
                    row: i + 1,
                    message: e.to_string(),
                })
            })
            .collect();
    }
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(trimmed.as_bytes());
    let mut out = Vec::new();
    for (i, r) in reader.deserialize::<T>().enumerate() {
        out.push(r.map_err(|e| TableError::Row {
            row: i + 1,
            message: match e.kind() {
                csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
                _ => e.to_string(),
            },
        })?);
    }
    Ok(out)
}

fn required(row: usize, field: &str, v: &str) -> Result<(), TableError> {
    if v.trim().is_empty() {
        return Err(TableError::Row {
            row,
            message: format!("{field} is empty"),
        });
    }
    Ok(())
}

fn severity(row: usize, s: &str) -> Result<Severity, TableError> {
    Severity::parse(&norm(s)).ok_or_else(|| TableError::Row {
        row,
        message: format!("severity {s:?} is not low, moderate or high"),
    })
}

/// Parse and validate a table; the rows as the store keeps them (key, document).
pub fn parse(table: RxTable, text: &str) -> Result<Vec<(String, Value)>, TableError> {
    let mut out: Vec<(String, Value)> = Vec::new();
    let mut keys = BTreeSet::new();
    let mut push = |row: usize, key: String, doc: Value| -> Result<(), TableError> {
        if !keys.insert(key.clone()) {
            return Err(TableError::Duplicate { row, key });
        }
        out.push((key, doc));
        Ok(())
    };
    let to_value =
        |v: Result<Value, serde_json::Error>| v.map_err(|e| TableError::Format(e.to_string()));
    match table {
        RxTable::Formulary => {
            for (i, r) in rows::<FormularyRow>(text)?.into_iter().enumerate() {
                let row = i + 1;
                required(row, "code", &r.code)?;
                required(row, "display", &r.display)?;
                required(row, "ingredient", &r.ingredient)?;
                let item = FormularyItem {
                    code: r.code.trim().to_owned(),
                    system: if r.system.trim().is_empty() {
                        RXNORM.to_owned()
                    } else {
                        r.system.trim().to_owned()
                    },
                    display: r.display.trim().to_owned(),
                    ingredient: norm(&r.ingredient),
                    strength: r.strength.trim().to_owned(),
                    form: r.form.trim().to_owned(),
                    route: norm(&r.route),
                    classes: r.classes.into_vec(),
                };
                push(
                    row,
                    item.code.clone(),
                    to_value(serde_json::to_value(&item))?,
                )?;
            }
        }
        RxTable::Interactions => {
            for (i, r) in rows::<InteractionRow>(text)?.into_iter().enumerate() {
                let row = i + 1;
                required(row, "a", &r.a)?;
                required(row, "b", &r.b)?;
                required(row, "reason", &r.reason)?;
                let rule = InteractionRule {
                    a: norm(&r.a),
                    b: norm(&r.b),
                    severity: severity(row, &r.severity)?,
                    reason: r.reason.trim().to_owned(),
                    source: r.source.trim().to_owned(),
                };
                push(row, rule.key(), to_value(serde_json::to_value(&rule))?)?;
            }
        }
        RxTable::Allergies => {
            for (i, r) in rows::<AllergyRow>(text)?.into_iter().enumerate() {
                let row = i + 1;
                required(row, "allergen", &r.allergen)?;
                required(row, "drug_class", &r.drug_class)?;
                required(row, "reason", &r.reason)?;
                let rule = AllergyRule {
                    allergen: norm(&r.allergen),
                    drug_class: norm(&r.drug_class),
                    severity: severity(row, &r.severity)?,
                    reason: r.reason.trim().to_owned(),
                    source: r.source.trim().to_owned(),
                };
                push(row, rule.key(), to_value(serde_json::to_value(&rule))?)?;
            }
        }
    }
    if out.is_empty() {
        return Err(TableError::Empty);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn the_starter_tables_parse() {
        for (t, text) in STARTER {
            let rows = parse(t, text).unwrap();
            assert!(rows.len() >= 9, "{t:?}: {}", rows.len());
        }
        let f = parse(RxTable::Formulary, STARTER[0].1).unwrap();
        let amox: FormularyItem =
            serde_json::from_value(f.iter().find(|(k, _)| k == "308191").unwrap().1.clone())
                .unwrap();
        assert_eq!(amox.ingredient, "amoxicillin");
        assert_eq!(amox.classes, ["penicillin", "beta-lactam", "antibacterial"]);
        assert_eq!(amox.system, RXNORM);
    }

    #[test]
    fn json_works_and_bad_rows_are_named() {
        let json = r#"[{"code":"1","display":"x 1 mg","ingredient":"X","classes":["A"," b "]}]"#;
        let rows = parse(RxTable::Formulary, json).unwrap();
        assert_eq!(rows[0].1["classes"], serde_json::json!(["a", "b"]));
        let bad = "a,b,severity,reason,source\nx,y,high,r,s\nx,z,severe,r,s\n";
        assert_eq!(
            parse(RxTable::Interactions, bad).unwrap_err(),
            TableError::Row {
                row: 2,
                message: "severity \"severe\" is not low, moderate or high".into()
            }
        );
        let dup = "a,b,severity,reason,source\nx,y,high,r,s\ny,x,low,r,s\n";
        assert!(matches!(
            parse(RxTable::Interactions, dup).unwrap_err(),
            TableError::Duplicate { row: 2, .. }
        ));
        assert!(matches!(
            parse(RxTable::Formulary, "code,display\n1,x\n").unwrap_err(),
            TableError::Row { row: 1, .. }
        ));
        assert_eq!(
            parse(RxTable::Allergies, "allergen,drug_class,severity,reason\n").unwrap_err(),
            TableError::Empty
        );
    }
}
