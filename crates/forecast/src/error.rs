//! Typed errors for every fallible operation of the crate.

use thiserror::Error;

/// Everything that can go wrong when reading data, solving, fitting or forecasting.
#[derive(Debug, Error)]
pub enum ForecastError {
    /// The input file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The CSV could not be parsed at all.
    #[error("malformed CSV: {0}")]
    Csv(String),
    /// The named column is missing from the CSV header.
    #[error("column `{column}` not found (header has: {header})")]
    MissingColumn { column: String, header: String },
    /// A cell is not a number.
    #[error("row {row}: `{value}` in column `{column}` is not a number")]
    NotNumeric {
        row: usize,
        column: String,
        value: String,
    },
    /// A count is negative or not finite.
    #[error("row {row}: value {value} in column `{column}` must be a finite number >= 0")]
    InvalidCount {
        row: usize,
        column: String,
        value: f64,
    },
    /// The series has no rows.
    #[error("the series is empty")]
    Empty,
    /// The series is shorter than the method needs.
    #[error("the series has {got} values but at least {need} are needed: {why}")]
    TooShort {
        got: usize,
        need: usize,
        why: &'static str,
    },
    /// The series carries no cases at all, so nothing can be estimated.
    #[error("the series has no cases (all values are zero)")]
    NoCases,
    /// A parameter is out of its domain.
    #[error("invalid parameter {name} = {value}: {why}")]
    InvalidParameter {
        name: &'static str,
        value: f64,
        why: &'static str,
    },
    /// The ODE solver could not reach the end of the interval.
    #[error("ODE solver failed at t = {t}: {why}")]
    Solver { t: f64, why: &'static str },
    /// The optimiser did not converge to a finite optimum.
    #[error("the fit did not converge: {0}")]
    NoConvergence(String),
    /// A parameter cannot be estimated from the data.
    #[error("{0}")]
    NotIdentifiable(String),
    /// A matrix is singular or not positive definite.
    #[error("{0}")]
    Singular(&'static str),
    /// An external benchmark peer failed.
    #[error("benchmark peer failed: {0}")]
    Peer(String),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ForecastError>;
