//! Caravan's ECG analyser, usable on its own: readers for WFDB, DICOM 12-lead waveforms and HL7 aECG; a
//! Pan–Tompkins-family QRS detector; an EC57-style beat-by-beat scorer; interval measurements on a median
//! beat; and a printable SVG renderer on standard ECG paper.

pub mod aecg;
pub mod cli;
pub mod dicom;
pub mod dsp;
pub mod error;
pub mod load;
pub mod measure;
pub mod qrs;
pub mod render;
pub mod score;
pub mod scp;
pub mod signal;
pub mod wfdb;

pub use error::{EcgError, Result};
pub use signal::{Ecg, Lead};
