//! Business rules → status: a thin layer over the `certlogic` crate, which loads the published rules, selects the
//! ones that apply and evaluates them. This module only builds the CertLogic data context from a verified DCC and
//! hands back the per-rule outcomes; [`crate::Verifier`] folds them into green / yellow / red.

use crate::error::{Error, Result};
use crate::trust::CertType;
use std::collections::BTreeMap;
use std::path::Path;

pub use certlogic::{Outcome, RuleOutcome};

/// Rules and the value sets they read.
#[derive(Debug, Clone, Default)]
pub struct RuleSet {
    pub rules: Vec<certlogic::Rule>,
    /// Value set id → codes (CertLogic's `external.valueSets`).
    pub value_sets: BTreeMap<String, Vec<String>>,
}

impl RuleSet {
    /// Loads every rule under `dir` (rule test folders are skipped) and the value sets found there: a
    /// `valueSets.json` map or value-set documents in a `valuesets` / `valueSets` folder.
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let rules = certlogic::load_rules(dir).map_err(|e| Error::Io(format!("rules: {e}")))?;
        let mut value_sets = BTreeMap::new();
        for name in [
            "valuesets",
            "valueSets",
            "valueSets.json",
            "valuesets/valueSets.json",
        ] {
            let path = dir.join(name);
            if path.exists() {
                let sets = certlogic::load_value_sets(&path)
                    .map_err(|e| Error::Io(format!("value sets: {e}")))?;
                value_sets.extend(sets);
            }
        }
        Ok(RuleSet { rules, value_sets })
    }

    /// Selects and evaluates the rules for a verified DCC: acceptance rules of `country`, invalidation rules of
    /// the issuing country, at `clock` (Unix seconds).
    #[allow(clippy::too_many_arguments)]
    pub fn evaluate(
        &self,
        country: &str,
        issuer_country: Option<&str>,
        t: CertType,
        clock: i64,
        payload: &serde_json::Value,
        exp: Option<i64>,
        iat: Option<i64>,
        kid: Option<&[u8]>,
        lang: &str,
    ) -> Result<Vec<RuleOutcome>> {
        let time = |secs: i64| {
            certlogic::DateTime::from_unix_millis(secs.saturating_mul(1000))
                .map_err(|e| Error::Io(format!("clock: {e}")))
        };
        let certificate_type = match t {
            CertType::Test => certlogic::CertificateType::Test,
            CertType::Vaccination => certlogic::CertificateType::Vaccination,
            CertType::Recovery => certlogic::CertificateType::Recovery,
        };
        let clock_dt = time(clock)?;
        let query = certlogic::RuleQuery {
            arrival_country: country,
            issuer_country,
            certificate_type,
            clock: clock_dt,
        };
        let selected = certlogic::select_rules(&self.rules, &query);
        let mut external = certlogic::External::new(clock_dt, country);
        external.value_sets = self.value_sets.clone();
        external.exp = exp.map(time).transpose()?;
        external.iat = iat.map(time).transpose()?;
        external.issuer_country_code = issuer_country.map(str::to_string);
        external.kid = kid.map(|k| {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(k)
        });
        external.language = lang.to_string();
        Ok(certlogic::validate(selected, payload, &external))
    }
}
