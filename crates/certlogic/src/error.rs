//! Typed errors of the evaluator, the rule loader and the conformance runners.

use std::path::PathBuf;

/// An evaluation error: the expression is not valid CertLogic, or its operands have the wrong types at run time.
///
/// The specification says that evaluating a *valid* expression never fails; every error here therefore means the
/// expression (or the data it met) is outside what CertLogic defines. A rule whose evaluation fails is reported as
/// [`Outcome::Open`](crate::Outcome::Open), never as passed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `null`, a non-integer number, or an object that is not a single-key operation, used as an expression.
    #[error("invalid CertLogic expression: {0}")]
    InvalidExpression(String),
    /// An operation whose operator CertLogic does not have (for example JsonLogic's `all` or `map`).
    #[error("unrecognised operator: \"{0}\"")]
    UnknownOperator(String),
    /// An operation whose shape is wrong: operand count, a literal operand of the wrong kind, a bad `var` path.
    #[error("malformed \"{op}\" operation: {reason}")]
    Malformed {
        /// The operator.
        op: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An operand evaluated to a value of a type the operation does not accept.
    #[error("\"{op}\" operation: {reason}")]
    Type {
        /// The operator.
        op: &'static str,
        /// Which operand had which unexpected type.
        reason: String,
    },
    /// A string that is not one of the date or date-time formats the specification allows.
    #[error("not an allowed date or date-time format: {0:?}")]
    DateFormat(String),
    /// A date or date-time in an allowed format that names no real calendar day or time (for example `2021-02-30`).
    #[error("not a valid calendar date or time: {0:?}")]
    InvalidDate(String),
    /// A date-time outside the range of JavaScript's `Date` (±8.64·10¹⁵ ms around 1970), which the specification
    /// uses to define date arithmetic.
    #[error("date-time out of range: {0}")]
    DateRange(String),
    /// An integer `+` whose result does not fit in 64 bits.
    #[error("integer overflow in \"+\": {0} + {1}")]
    Overflow(i64, i64),
    /// The expression is nested deeper than the evaluator allows (protection against stack exhaustion).
    #[error("expression nested deeper than {0} levels")]
    TooDeep(usize),
}

/// An error while loading business rules, value sets or conformance test files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON.
    #[error("{path} is not valid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error, with line and column.
        source: serde_json::Error,
    },
    /// The file is JSON but does not have the expected shape (a rule, a test file, a value set).
    #[error("{path}: {what}")]
    Shape {
        /// The file.
        path: PathBuf,
        /// What was expected and what was found.
        what: String,
    },
}
