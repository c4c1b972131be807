//! The format-independent recording every reader produces and every analysis consumes.

use serde::Serialize;

use crate::error::{EcgError, Result};

/// One lead of a recording, in millivolts; `NaN` marks a sample the source flagged as invalid (e.g. WFDB's
/// "invalid sample" value or a lead-off period).
#[derive(Debug, Clone, PartialEq)]
pub struct Lead {
    /// The lead's name as the source gives it, normalised for the standard leads ("I", "II", "aVR", "V1"...).
    pub name: String,
    /// Samples in millivolts.
    pub samples: Vec<f64>,
}

/// A multi-lead recording with one sampling rate shared by all leads.
#[derive(Debug, Clone, PartialEq)]
pub struct Ecg {
    /// Sampling frequency in hertz.
    pub fs: f64,
    /// The leads, all of the same length.
    pub leads: Vec<Lead>,
}

/// The twelve standard leads in the conventional order.
pub const STANDARD_LEADS: [&str; 12] = [
    "I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6",
];

/// A short description of a recording, safe to log (it holds no patient data).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EcgSummary {
    pub fs: f64,
    pub leads: Vec<String>,
    pub samples: usize,
    pub seconds: f64,
}

impl Ecg {
    /// Builds a recording, checking that the sampling rate is usable and the leads agree in length.
    pub fn new(fs: f64, leads: Vec<Lead>) -> Result<Self> {
        if !(fs.is_finite() && (50.0..=100_000.0).contains(&fs)) {
            return Err(EcgError::Analysis(format!(
                "sampling frequency {fs} Hz is outside 50..100000 Hz"
            )));
        }
        if leads.is_empty() {
            return Err(EcgError::Analysis("recording has no leads".into()));
        }
        let n = leads[0].samples.len();
        if let Some(bad) = leads.iter().find(|l| l.samples.len() != n) {
            return Err(EcgError::Analysis(format!(
                "lead {} has {} samples, lead {} has {n}",
                bad.name,
                bad.samples.len(),
                leads[0].name
            )));
        }
        Ok(Self { fs, leads })
    }

    /// Number of samples per lead.
    pub fn len(&self) -> usize {
        self.leads.first().map_or(0, |l| l.samples.len())
    }

    /// True when the recording holds no samples.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Finds a lead by its (normalised) name.
    pub fn lead(&self, name: &str) -> Option<&Lead> {
        self.leads
            .iter()
            .find(|l| l.name.eq_ignore_ascii_case(name))
    }

    /// A lead by index, with a clear error when it does not exist.
    pub fn channel(&self, index: usize) -> Result<&Lead> {
        self.leads.get(index).ok_or_else(|| {
            EcgError::InvalidRequest(format!(
                "channel {index} does not exist: the recording has {} channel(s) (0..{})",
                self.leads.len(),
                self.leads.len().saturating_sub(1)
            ))
        })
    }

    /// True when all twelve standard leads are present.
    pub fn is_twelve_lead(&self) -> bool {
        STANDARD_LEADS.iter().all(|n| self.lead(n).is_some())
    }

    /// A loggable summary.
    pub fn summary(&self) -> EcgSummary {
        EcgSummary {
            fs: self.fs,
            leads: self.leads.iter().map(|l| l.name.clone()).collect(),
            samples: self.len(),
            seconds: self.len() as f64 / self.fs,
        }
    }
}

/// Maps the many spellings of lead names (DICOM code meanings, aECG MDC codes, WFDB descriptions) onto the
/// conventional short names, so that the analysis and the renderer can find "II" or "V5" in any source.
pub fn normalise_lead_name(raw: &str) -> String {
    let s = raw.trim();
    let upper = s.to_ascii_uppercase();
    let core = upper
        .trim_start_matches("MDC_ECG_LEAD_")
        .trim_start_matches("LEAD ")
        .trim();
    // DICOM code meanings carry qualifiers such as "Lead I (Einthoven)".
    let core = core.split(['(', ' ']).next().unwrap_or(core).trim();
    let mapped = match core {
        "I" => "I",
        "II" | "MLII" => {
            if core == "MLII" {
                return "MLII".to_string();
            }
            "II"
        }
        "III" => "III",
        "AVR" => "aVR",
        "AVL" => "aVL",
        "AVF" => "aVF",
        "V1" | "V2" | "V3" | "V4" | "V5" | "V6" => core,
        _ => return s.to_string(),
    };
    mapped.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_names_normalise() {
        let table = [
            ("Lead I (Einthoven)", "I"),
            ("Lead II", "II"),
            ("Lead aVR", "aVR"),
            ("MDC_ECG_LEAD_AVF", "aVF"),
            ("MDC_ECG_LEAD_V5", "V5"),
            ("V1", "V1"),
            ("MLII", "MLII"),
            ("Pleth", "Pleth"),
        ];
        for (raw, want) in table {
            assert_eq!(normalise_lead_name(raw), want, "{raw}");
        }
    }

    #[test]
    fn rejects_ragged_leads_and_bad_rates() {
        let a = Lead {
            name: "I".into(),
            samples: vec![0.0; 10],
        };
        let b = Lead {
            name: "II".into(),
            samples: vec![0.0; 9],
        };
        assert!(Ecg::new(500.0, vec![a.clone(), b]).is_err());
        assert!(Ecg::new(0.0, vec![a.clone()]).is_err());
        assert!(Ecg::new(f64::NAN, vec![a.clone()]).is_err());
        assert!(Ecg::new(500.0, vec![a]).is_ok());
    }
}
