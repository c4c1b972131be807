//! Epidemic forecasting for Caravan's surveillance: Cori et al. R_t ([`rt`]), SIR/SEIR models ([`model`]) on an
//! adaptive Runge–Kutta 5(4) solver, Dormand–Prince or Tsitouras ([`ode`]), negative-binomial, Poisson and
//! least-squares fitting with Wald or profile-likelihood intervals and time-varying transmission ([`fit`]),
//! ensemble forecasts and their scores ([`ensemble`]), a metapopulation SEIR with regional importation risk
//! ([`metapop`]) and its fit to regional reports ([`regional`]), growth-rate links ([`growth`]), SVG charts
//! ([`svg`]), and the `caravan surveil` commands ([`cli`]) with the SciPy benchmark ([`mod@bench`]).

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
pub mod simd;
pub mod special;
pub mod svg;

pub use error::{ForecastError, Result};
