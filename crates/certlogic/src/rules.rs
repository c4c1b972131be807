//! EU DCC business rules: the rule format of the DCC Gateway, loading, selection for a country, certificate type and
//! validation clock, evaluation to Passed / Failed / Open, and the green / yellow / red status.

use crate::datetime::DateTime;
use crate::eval::{evaluate_val, Val};
use crate::files::{read_json, sorted_entries};
use crate::LoadError;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// The CertLogic engine version this crate implements (the specification's version).
pub const ENGINE_VERSION: semver::Version = semver::Version::new(1, 3, 3);

/// Whether a rule decides acceptance by the country of arrival, or invalidation by the issuing country.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RuleType {
    /// Published by a country of arrival: what it accepts from any issuer.
    Acceptance,
    /// Published by an issuing country: which of its own certificates it no longer stands behind.
    Invalidation,
}

/// The kind of certificate a rule applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
pub enum CertificateType {
    /// Every certificate.
    General,
    /// Vaccination certificates (`v`).
    Vaccination,
    /// Test certificates (`t`).
    Test,
    /// Recovery certificates (`r`).
    Recovery,
}

impl CertificateType {
    /// The type of a DCC payload, from which of `v`, `t`, `r` holds a non-empty array; `None` if none or several do.
    pub fn of_payload(payload: &Value) -> Option<Self> {
        let has = |key: &str| {
            payload
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty())
        };
        match (has("v"), has("t"), has("r")) {
            (true, false, false) => Some(Self::Vaccination),
            (false, true, false) => Some(Self::Test),
            (false, false, true) => Some(Self::Recovery),
            _ => None,
        }
    }
}

/// One language version of a rule's description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Description {
    /// Language code (ISO 639-1, sometimes with a region, e.g. `en`, `de`, `pt-BR`).
    pub lang: String,
    /// The text shown to the holder and the verifier.
    pub desc: String,
}

/// A business rule in the EU DCC Gateway's format (`validation-rule.schema.json`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Rule {
    /// e.g. `VR-DE-0001`: prefix GR (general), VR, TR, RR (vaccination, test, recovery) or IR (invalidation).
    pub identifier: String,
    /// Acceptance or invalidation.
    #[serde(rename = "Type")]
    pub rule_type: RuleType,
    /// The publishing country (ISO 3166-1 alpha-2).
    pub country: String,
    /// The rule's version; among the versions valid at a clock, the highest applies.
    pub version: semver::Version,
    /// The lowest DCC schema version the rule is written for.
    pub schema_version: semver::Version,
    /// The rule language; `CERTLOGIC`.
    pub engine: String,
    /// The CertLogic version the rule needs.
    pub engine_version: semver::Version,
    /// Which certificates the rule applies to.
    pub certificate_type: CertificateType,
    /// The rule's descriptions, one per language.
    pub description: Vec<Description>,
    /// Start of validity.
    pub valid_from: DateTime,
    /// End of validity.
    pub valid_to: DateTime,
    /// Payload fields the logic reads (e.g. `v.0.dn`).
    pub affected_fields: Vec<String>,
    /// The CertLogic expression; true means the certificate passes the rule.
    pub logic: Value,
}

impl Rule {
    /// Parses one rule from its JSON text.
    pub fn from_json_str(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The description in `lang` (exact match, then the same primary language, e.g. `de` for `de-AT`), falling back
    /// to English and then to the first description. Returns the language actually used and the text.
    pub fn description(&self, lang: &str) -> Option<(&str, &str)> {
        let primary = |l: &str| l.split(['-', '_']).next().unwrap_or(l).to_ascii_lowercase();
        let wanted = primary(lang);
        self.description
            .iter()
            .find(|d| d.lang.eq_ignore_ascii_case(lang))
            .or_else(|| self.description.iter().find(|d| primary(&d.lang) == wanted))
            .or_else(|| self.description.iter().find(|d| primary(&d.lang) == "en"))
            .or_else(|| self.description.first())
            .map(|d| (d.lang.as_str(), d.desc.as_str()))
    }

    /// Whether the rule is valid at `clock` (both bounds inclusive, as the DCC verifier apps select rules).
    pub fn is_valid_at(&self, clock: DateTime) -> bool {
        self.valid_from <= clock && clock <= self.valid_to
    }

    /// Problems in the rule's logic found without evaluating it (see [`crate::validate_format`]).
    pub fn logic_issues(&self) -> Vec<crate::Issue> {
        crate::validate_format(&self.logic)
    }
}

/// Parses one rule, naming the file in the error.
pub(crate) fn rule_from_json(path: &Path, value: Value) -> Result<Rule, LoadError> {
    serde_json::from_value::<Rule>(value).map_err(|e| LoadError::Shape {
        path: path.to_owned(),
        what: format!("not a valid business rule: {e}"),
    })
}

fn rules_from_json(path: &Path, value: Value) -> Result<Vec<Rule>, LoadError> {
    let one = |v: Value| rule_from_json(path, v);
    match value {
        Value::Array(items) => items.into_iter().map(one).collect(),
        other => one(other).map(|r| vec![r]),
    }
}

fn looks_like_rules(value: &Value) -> bool {
    match value {
        Value::Object(map) => map.contains_key("Identifier"),
        Value::Array(items) => {
            !items.is_empty() && items.iter().all(|i| i.get("Identifier").is_some())
        }
        _ => false,
    }
}

/// Loads business rules from a file (one rule, or an array of rules as the gateway serves them) or a directory.
///
/// A directory is searched recursively; every `.json` file that holds a rule (an object with `Identifier`) or an
/// array of rules is loaded, other JSON files (value sets, schemas) are skipped, and `tests` directories (rule test
/// cases) are not entered. A file that looks like a rule but does not match the format is an error.
pub fn load_rules(path: &Path) -> Result<Vec<Rule>, LoadError> {
    let meta = std::fs::metadata(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    if !meta.is_dir() {
        return rules_from_json(path, read_json(path)?);
    }
    let mut rules = Vec::new();
    for entry in sorted_entries(path)? {
        if entry.is_dir() {
            if entry.file_name().is_some_and(|n| n != "tests") {
                rules.extend(load_rules(&entry)?);
            }
        } else if entry.extension().is_some_and(|e| e == "json") {
            let value = read_json(&entry)?;
            if looks_like_rules(&value) {
                rules.extend(rules_from_json(&entry, value)?);
            }
        }
    }
    tracing::debug!(path = %path.display(), rules = rules.len(), "loaded business rules");
    Ok(rules)
}

/// What to select rules for.
#[derive(Clone, Debug)]
pub struct RuleQuery<'q> {
    /// The country whose acceptance rules apply (where the certificate is being checked).
    pub arrival_country: &'q str,
    /// The certificate's issuing country, whose invalidation rules apply; `None` to apply none.
    pub issuer_country: Option<&'q str>,
    /// The certificate's type; `General` rules always apply as well.
    pub certificate_type: CertificateType,
    /// The validation clock: only rules valid at this instant apply.
    pub clock: DateTime,
}

/// Selects the rules that apply: acceptance rules of the arrival country and invalidation rules of the issuing
/// country, for the certificate's type or `General`, valid at the clock; of several versions of one rule, the
/// highest valid one. The result is ordered by identifier.
pub fn select_rules<'r>(rules: &'r [Rule], query: &RuleQuery<'_>) -> Vec<&'r Rule> {
    let mut latest: BTreeMap<&str, &'r Rule> = BTreeMap::new();
    for rule in rules {
        let country_matches = match rule.rule_type {
            RuleType::Acceptance => rule.country.eq_ignore_ascii_case(query.arrival_country),
            RuleType::Invalidation => query
                .issuer_country
                .is_some_and(|c| rule.country.eq_ignore_ascii_case(c)),
        };
        let type_matches = rule.certificate_type == CertificateType::General
            || rule.certificate_type == query.certificate_type;
        if !(country_matches && type_matches && rule.is_valid_at(query.clock)) {
            continue;
        }
        let slot = latest.entry(rule.identifier.as_str()).or_insert(rule);
        if rule.version > slot.version {
            *slot = rule;
        }
    }
    latest.into_values().collect()
}

/// The result of one rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The logic evaluated to a truthy value.
    Passed,
    /// The logic evaluated to a falsy value.
    Failed,
    /// The rule could not be evaluated (an evaluation error, an unsupported engine or schema version, a result that
    /// is neither truthy nor falsy).
    Open,
}

/// One rule's outcome, with what a holder needs to understand it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// The rule identifier, e.g. `VR-DE-0001`.
    pub rule: String,
    /// Acceptance or invalidation.
    pub rule_type: RuleType,
    /// The publishing country.
    pub country: String,
    /// The rule version that was applied.
    pub version: String,
    /// Passed, failed or open.
    pub outcome: Outcome,
    /// The rule's description in the requested language (or the fallback).
    pub description: String,
    /// The language of `description`.
    pub language: String,
    /// The payload fields the rule reads.
    pub affected_fields: Vec<String>,
    /// For an open rule, why it could not be evaluated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The overall verdict of a set of rule outcomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Every rule passed (or no rule applies).
    Green,
    /// Some rule is open and none failed.
    Yellow,
    /// Some rule failed.
    Red,
}

impl Status {
    /// Green if all passed, yellow if some are open and none failed, red if any failed.
    pub fn of(outcomes: &[RuleOutcome]) -> Self {
        if outcomes.iter().any(|o| o.outcome == Outcome::Failed) {
            Status::Red
        } else if outcomes.iter().any(|o| o.outcome == Outcome::Open) {
            Status::Yellow
        } else {
            Status::Green
        }
    }

    /// The outcomes that decided the status: the failed rules for red, the open rules for yellow, none for green.
    pub fn deciding(outcomes: &[RuleOutcome]) -> Vec<&RuleOutcome> {
        let decisive = match Self::of(outcomes) {
            Status::Red => Outcome::Failed,
            Status::Yellow => Outcome::Open,
            Status::Green => return Vec::new(),
        };
        outcomes.iter().filter(|o| o.outcome == decisive).collect()
    }
}

/// The verdict a verifier shows: the status, the rules that decided it, and every rule's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Green, yellow or red.
    pub status: Status,
    /// Identifiers of the rules that decided the status (failed ones for red, open ones for yellow).
    pub deciding: Vec<String>,
    /// Every rule's outcome, with its description in the requested language.
    pub outcomes: Vec<RuleOutcome>,
}

impl Verdict {
    /// Summarises rule outcomes.
    pub fn new(outcomes: Vec<RuleOutcome>) -> Self {
        let status = Status::of(&outcomes);
        let deciding = Status::deciding(&outcomes)
            .iter()
            .map(|o| o.rule.clone())
            .collect();
        Self {
            status,
            deciding,
            outcomes,
        }
    }
}

/// Selects the rules that apply to a certificate and evaluates them: [`select_rules`], then [`validate`], then
/// [`Verdict::new`]. The query's clock should equal `external.validation_clock`.
pub fn check(
    rules: &[Rule],
    query: &RuleQuery<'_>,
    payload: &Value,
    external: &External,
) -> Verdict {
    Verdict::new(validate(select_rules(rules, query), payload, external))
}

/// The `external` part of the data context that rules see, plus the language for descriptions.
#[derive(Clone, Debug, Serialize)]
pub struct External {
    /// Value sets by id, each as its list of codes (e.g. `"vaccines-covid-19-names": ["EU/1/20/1528", ...]`).
    #[serde(rename = "valueSets")]
    pub value_sets: BTreeMap<String, Vec<String>>,
    /// The validation clock.
    #[serde(rename = "validationClock")]
    pub validation_clock: DateTime,
    /// The country where the certificate is being checked.
    #[serde(rename = "countryCode")]
    pub country_code: String,
    /// The certificate's expiry (CWT `exp`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<DateTime>,
    /// The certificate's issuing time (CWT `iat`), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<DateTime>,
    /// The issuing country (CWT `iss`), if known.
    #[serde(rename = "issuerCountryCode", skip_serializing_if = "Option::is_none")]
    pub issuer_country_code: Option<String>,
    /// The signing key identifier (base64), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    /// The language of the descriptions in the outcomes (not part of the data context).
    #[serde(skip)]
    pub language: String,
}

impl External {
    /// An external context for a clock and a country of arrival, with no value sets, in English.
    pub fn new(validation_clock: DateTime, country_code: impl Into<String>) -> Self {
        Self {
            value_sets: BTreeMap::new(),
            validation_clock,
            country_code: country_code.into(),
            exp: None,
            iat: None,
            issuer_country_code: None,
            kid: None,
            language: "en".to_owned(),
        }
    }

    /// The JSON form that rules read as `external`.
    pub fn to_json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Reads value sets in either form: the compressed map the rules expect (`{id: [codes...]}`), or the EU value-set
/// documents (`{valueSetId, valueSetValues: {code: {...}}}`), singly, as an array, or as a map of them.
pub fn value_sets_from_json(value: &Value) -> Option<BTreeMap<String, Vec<String>>> {
    fn document(v: &Value) -> Option<(String, Vec<String>)> {
        let id = v.get("valueSetId")?.as_str()?;
        let values = v.get("valueSetValues")?.as_object()?;
        Some((id.to_owned(), values.keys().cloned().collect()))
    }
    fn codes(v: &Value) -> Option<Vec<String>> {
        v.as_array()?
            .iter()
            .map(|c| c.as_str().map(str::to_owned))
            .collect()
    }
    match value {
        Value::Array(docs) => docs.iter().map(document).collect(),
        Value::Object(map) if map.contains_key("valueSetId") => {
            document(value).map(|d| BTreeMap::from([d]))
        }
        Value::Object(map) => map
            .iter()
            .map(|(id, v)| match codes(v) {
                Some(c) => Some((id.clone(), c)),
                None => document(v),
            })
            .collect(),
        _ => None,
    }
}

/// Loads value sets from a JSON file in any form [`value_sets_from_json`] reads, or from a directory of such files
/// (not searched recursively; JSON files of other shapes, such as schemas, are skipped).
pub fn load_value_sets(path: &Path) -> Result<BTreeMap<String, Vec<String>>, LoadError> {
    if path.is_dir() {
        let mut sets = BTreeMap::new();
        for entry in sorted_entries(path)? {
            if entry.extension().is_some_and(|e| e == "json") {
                if let Some(found) = value_sets_from_json(&read_json(&entry)?) {
                    sets.extend(found);
                }
            }
        }
        return Ok(sets);
    }
    value_sets_from_json(&read_json(path)?).ok_or_else(|| LoadError::Shape {
        path: path.to_owned(),
        what: "not value sets (neither {id: [codes]} nor EU value-set documents)".to_owned(),
    })
}

fn schema_mismatch(rule: &Rule, payload: &Value) -> Option<String> {
    let ver = payload.get("ver")?.as_str()?;
    let Ok(ver) = semver::Version::parse(ver) else {
        return Some(format!(
            "the certificate's schema version {ver:?} is not a version number"
        ));
    };
    (ver.major != rule.schema_version.major || ver < rule.schema_version).then(|| {
        format!(
            "the certificate's schema version {ver} is not covered by the rule's schema version {}",
            rule.schema_version
        )
    })
}

/// Evaluates one rule against a payload and a raw `external` JSON context (the form the rule tests use), giving the
/// outcome and, when open, the reason.
pub fn evaluate_rule(rule: &Rule, payload: &Value, external: &Value) -> (Outcome, Option<String>) {
    if !rule.engine.eq_ignore_ascii_case("CERTLOGIC") {
        return (
            Outcome::Open,
            Some(format!("unsupported rule engine {:?}", rule.engine)),
        );
    }
    if rule.engine_version.major > ENGINE_VERSION.major {
        return (
            Outcome::Open,
            Some(format!(
                "the rule needs CertLogic {}, this engine implements {ENGINE_VERSION}",
                rule.engine_version
            )),
        );
    }
    if let Some(reason) = schema_mismatch(rule, payload) {
        return (Outcome::Open, Some(reason));
    }
    let context = Val::Object(vec![
        ("payload", Val::Ref(payload)),
        ("external", Val::Ref(external)),
    ]);
    match evaluate_val(&rule.logic, &context) {
        Ok(result) => match result.boolsiness() {
            Some(true) => (Outcome::Passed, None),
            Some(false) => (Outcome::Failed, None),
            None => (
                Outcome::Open,
                Some(
                    "the rule's logic evaluated to a value that is neither true nor false"
                        .to_owned(),
                ),
            ),
        },
        Err(e) => (Outcome::Open, Some(e.to_string())),
    }
}

/// Evaluates rules against a DCC payload (the JSON under CWT claim -260/1) and the external context, giving one
/// outcome per rule with its description in `external.language` (English fallback). Combine with [`Status::of`].
pub fn validate<'r>(
    rules: impl IntoIterator<Item = &'r Rule>,
    payload: &Value,
    external: &External,
) -> Vec<RuleOutcome> {
    validate_json(rules, payload, &external.to_json(), &external.language)
}

/// [`validate`] with the external context given as raw JSON.
pub fn validate_json<'r>(
    rules: impl IntoIterator<Item = &'r Rule>,
    payload: &Value,
    external: &Value,
    language: &str,
) -> Vec<RuleOutcome> {
    rules
        .into_iter()
        .map(|rule| {
            let (outcome, reason) = evaluate_rule(rule, payload, external);
            // The identifier and outcome only: payload values never reach the log.
            tracing::debug!(rule = %rule.identifier, ?outcome, "evaluated business rule");
            let (lang, desc) = rule.description(language).unwrap_or(("", ""));
            RuleOutcome {
                rule: rule.identifier.clone(),
                rule_type: rule.rule_type,
                country: rule.country.clone(),
                version: rule.version.to_string(),
                outcome,
                description: desc.to_owned(),
                language: lang.to_owned(),
                affected_fields: rule.affected_fields.clone(),
                reason,
            }
        })
        .collect()
}

/// Builds the data context `{payload, external}` as a JSON value (for callers that evaluate expressions themselves).
pub fn data_context(payload: &Value, external: &Value) -> Value {
    let mut map = Map::new();
    map.insert("payload".to_owned(), payload.clone());
    map.insert("external".to_owned(), external.clone());
    Value::Object(map)
}
