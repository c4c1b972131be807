//! CertLogic, the rule language of the EU Digital COVID Certificate business rules, and the rules themselves.
//!
//! - [`evaluate`] evaluates a CertLogic expression exactly as the specification (v1.3.3) defines it, and
//!   [`validate_format`] checks an expression's shape without evaluating it.
//! - [`Rule`] is the DCC Gateway's business-rule format; [`load_rules`] reads rules from files or directories,
//!   [`select_rules`] picks those that apply to a country, certificate type and validation clock, and [`validate`]
//!   evaluates them to [`Outcome`]s (passed / failed / open), summarised by [`Status`] (green / yellow / red);
//!   [`Rule::problems`] checks a rule statically (logic format, `AffectedFields`, gateway metadata constraints).
//! - [`conformance`] runs the specification's test suite and the country rules' tests; [`cli`] exposes both, a rule
//!   check and a benchmark on the command line.
//!
//! Nothing here touches the network, and logs carry rule identifiers and outcomes only, never certificate data.

pub mod cli;
pub mod conformance;
mod datetime;
mod error;
mod eval;
mod files;
mod lint;
pub mod rules;
mod validate;

pub use datetime::{DateTime, TimeUnit};
pub use error::{Error, LoadError};
pub use eval::{boolsiness, evaluate, MAX_DEPTH};
pub use lint::data_accesses;
pub use rules::{
    check, evaluate_rule, load_rules, load_value_sets, select_rules, validate, validate_json,
    value_sets_from_json, CertificateType, Description, External, Outcome, Rule, RuleOutcome,
    RuleQuery, RuleType, Status, Verdict,
};
pub use validate::{validate_format, Issue};
