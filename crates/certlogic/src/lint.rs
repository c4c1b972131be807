//! Static checks of business rules before they are trusted: the CertLogic format of the logic, the declared
//! `AffectedFields` against the payload fields the logic actually reads, and the DCC Gateway's metadata constraints
//! (identifier shape and prefix, engine, validity range).
//!
//! A verifier loading rules from a peer or a file can run these checks and refuse, or at least flag, rules whose
//! description would mislead the holder about what is being checked.

use crate::rules::{CertificateType, Rule, RuleType};
use serde_json::Value;
use std::collections::BTreeSet;

fn gather<'a>(expr: &'a Value, out: &mut BTreeSet<&'a str>, depth: usize) {
    if depth > crate::eval::MAX_DEPTH {
        return;
    }
    match expr {
        Value::Array(items) => items.iter().for_each(|i| gather(i, out, depth + 1)),
        Value::Object(map) if map.len() == 1 => {
            let Some((op, operands)) = map.iter().next() else {
                return;
            };
            if op == "var" {
                if let Value::String(path) = operands {
                    out.insert(path);
                }
                return;
            }
            let Value::Array(args) = operands else { return };
            let take: &[Value] = match op.as_str() {
                "if" => &args[..args.len().min(3)],
                "!" | "plusTime" | "extractFromUVCI" | "dccDateOfBirth" => {
                    &args[..args.len().min(1)]
                }
                // The lambda of `reduce` reads its own context ({accumulator, current}), not the data.
                "reduce" => {
                    args.first()
                        .into_iter()
                        .chain(args.get(2))
                        .for_each(|a| gather(a, out, depth + 1));
                    return;
                }
                _ => args,
            };
            take.iter().for_each(|a| gather(a, out, depth + 1));
        }
        _ => {}
    }
}

/// The data paths an expression can read (`var` operands), sorted and without duplicates. Paths read inside a
/// `reduce` lambda are relative to the lambda's context and are not included, as in the reference implementation.
///
/// ```
/// let logic = serde_json::json!({"if": [{"var": "payload.v.0"}, {"<": [{"var": "payload.v.0.dn"}, 3]}, true]});
/// assert_eq!(certlogic::data_accesses(&logic), ["payload.v.0", "payload.v.0.dn"]);
/// ```
pub fn data_accesses(expr: &Value) -> Vec<String> {
    let mut out = BTreeSet::new();
    gather(expr, &mut out, 0);
    out.into_iter().map(str::to_owned).collect()
}

fn expected_prefix(rule: &Rule) -> &'static str {
    match (rule.rule_type, rule.certificate_type) {
        (RuleType::Invalidation, _) => "IR",
        (RuleType::Acceptance, CertificateType::General) => "GR",
        (RuleType::Acceptance, CertificateType::Vaccination) => "VR",
        (RuleType::Acceptance, CertificateType::Test) => "TR",
        (RuleType::Acceptance, CertificateType::Recovery) => "RR",
    }
}

impl Rule {
    /// Every problem found in the rule without evaluating it, as sentences; empty when the rule is sound.
    ///
    /// Checks: the logic is valid CertLogic; `AffectedFields` lists exactly the payload fields the logic reads;
    /// the identifier has the form `PP-CC-NNNN` with the prefix matching the type (GR, VR, TR, RR for acceptance
    /// rules by certificate type, IR for invalidation) and `CC` the rule's country; the engine is `CERTLOGIC`;
    /// `ValidFrom` is before `ValidTo`; there is an English description.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .logic_issues()
            .into_iter()
            .map(|i| format!("logic: {} (in {})", i.message, i.expr))
            .collect();

        let read: BTreeSet<String> = data_accesses(&self.logic)
            .into_iter()
            .filter_map(|p| p.strip_prefix("payload.").map(str::to_owned))
            .collect();
        let declared: BTreeSet<String> = self.affected_fields.iter().cloned().collect();
        let missing: Vec<&String> = read.difference(&declared).collect();
        let unused: Vec<&String> = declared.difference(&read).collect();
        if !missing.is_empty() {
            problems.push(format!(
                "AffectedFields lacks fields the logic reads: {missing:?}"
            ));
        }
        if !unused.is_empty() {
            problems.push(format!(
                "AffectedFields lists fields the logic never reads: {unused:?}"
            ));
        }

        let parts: Vec<&str> = self.identifier.split('-').collect();
        let well_formed = matches!(parts.as_slice(), [p, c, n]
            if p.len() == 2 && c.len() == 2 && n.len() == 4 && n.bytes().all(|b| b.is_ascii_digit()));
        if !well_formed {
            problems.push(format!(
                "identifier {:?} is not of the form PP-CC-NNNN",
                self.identifier
            ));
        } else {
            let prefix = expected_prefix(self);
            if parts[0] != prefix {
                problems.push(format!(
                    "identifier {:?} should start with {prefix} for a {:?} rule of type {:?}",
                    self.identifier, self.rule_type, self.certificate_type
                ));
            }
            if !parts[1].eq_ignore_ascii_case(&self.country) {
                problems.push(format!(
                    "identifier {:?} names another country than {}",
                    self.identifier, self.country
                ));
            }
        }
        if !self.engine.eq_ignore_ascii_case("CERTLOGIC") {
            problems.push(format!("engine {:?} is not CERTLOGIC", self.engine));
        }
        if self.valid_from >= self.valid_to {
            problems.push(format!(
                "ValidFrom {} is not before ValidTo {}",
                self.valid_from, self.valid_to
            ));
        }
        if !self
            .description
            .iter()
            .any(|d| d.lang.eq_ignore_ascii_case("en"))
        {
            problems.push("no English description".to_owned());
        }
        problems
    }
}
