//! Epidemic forecasting for Caravan's surveillance: Cori et al. R_t, SIR/SEIR models on an adaptive Dormand–Prince
//! solver, negative-binomial and least-squares fitting with confidence intervals, time-varying transmission,
//! ensemble forecasts, a metapopulation SEIR with regional importation risk, and SVG charts.

pub mod bench;
pub mod cli;
pub mod data;
pub mod ensemble;
pub mod error;
pub mod fit;
pub mod growth;
pub mod linalg;
pub mod metapop;
pub mod model;
pub mod ode;
pub mod regional;
pub mod rt;
pub mod sim;
pub mod special;
pub mod svg;

pub use error::{ForecastError, Result};
