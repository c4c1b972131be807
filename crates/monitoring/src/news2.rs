//! NEWS2, the Royal College of Physicians' National Early Warning Score 2 (RCP, December 2017).
//!
//! Implemented from the published chart (chart 1, the scoring system; chart 2, thresholds and triggers; chart 3,
//! clinical response). Pure functions, no IO. The chart's bands are integers for respiration rate, SpO2,
//! systolic BP and pulse, and tenths of a degree for temperature: device values are rounded half away from zero
//! to that precision before scoring (91.6 % is scored as 92 %), because a value between two printed bands would
//! otherwise fall in no band.
//!
//! A set of readings may be incomplete (a home pulse oximeter reports SpO2 and pulse only). [`News2`] then holds
//! a *partial* score: the sum of the parameters present. Every parameter score is non-negative, so a partial total
//! is a lower bound of the full total, and a single parameter scoring 3 is final whatever the others are. Alerts
//! raised on a partial set are therefore never raised on a risk higher than the full set would give.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Level of consciousness on the ACVPU scale. New confusion scores 3, like V, P and U.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Acvpu {
    /// Alert.
    #[serde(rename = "A")]
    Alert,
    /// New confusion (or new disorientation, agitation).
    #[serde(rename = "C")]
    Confusion,
    /// Responds to voice.
    #[serde(rename = "V")]
    Voice,
    /// Responds to pain.
    #[serde(rename = "P")]
    Pain,
    /// Unresponsive.
    #[serde(rename = "U")]
    Unresponsive,
}

impl Acvpu {
    /// The one-letter code (`A`, `C`, `V`, `P`, `U`).
    pub fn letter(self) -> &'static str {
        match self {
            Acvpu::Alert => "A",
            Acvpu::Confusion => "C",
            Acvpu::Voice => "V",
            Acvpu::Pain => "P",
            Acvpu::Unresponsive => "U",
        }
    }

    /// Parse the one-letter code (case-insensitive).
    pub fn from_letter(s: &str) -> Option<Acvpu> {
        match s.trim().to_ascii_uppercase().as_str() {
            "A" => Some(Acvpu::Alert),
            "C" => Some(Acvpu::Confusion),
            "V" => Some(Acvpu::Voice),
            "P" => Some(Acvpu::Pain),
            "U" => Some(Acvpu::Unresponsive),
            _ => None,
        }
    }
}

/// Which SpO2 scale applies to a patient. Scale 2 is for patients with hypercapnic respiratory failure (usually
/// COPD) whose prescribed target saturation is 88–92 %, decided and documented by a clinician.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Spo2Scale {
    /// The standard scale.
    #[default]
    #[serde(rename = "1")]
    Scale1,
    /// The hypercapnic respiratory failure scale.
    #[serde(rename = "2")]
    Scale2,
}

impl Spo2Scale {
    /// 1 or 2.
    pub fn number(self) -> u8 {
        match self {
            Spo2Scale::Scale1 => 1,
            Spo2Scale::Scale2 => 2,
        }
    }

    /// From 1 or 2.
    pub fn from_number(n: i64) -> Option<Spo2Scale> {
        match n {
            1 => Some(Spo2Scale::Scale1),
            2 => Some(Spo2Scale::Scale2),
            _ => None,
        }
    }
}

/// One set of observations to score. Missing parameters are `None`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Vitals {
    /// Respiration rate, breaths per minute.
    pub respiration_rate: Option<f64>,
    /// Peripheral oxygen saturation, %.
    pub spo2: Option<f64>,
    /// `true` when the patient receives supplemental oxygen, `false` on air.
    pub on_oxygen: Option<bool>,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: Option<f64>,
    /// Pulse, beats per minute.
    pub pulse: Option<f64>,
    /// Level of consciousness.
    pub consciousness: Option<Acvpu>,
    /// Temperature, °C.
    pub temperature: Option<f64>,
}

/// A value that cannot be scored.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum News2Error {
    /// NaN, infinite or negative.
    #[error("{parameter} value {value} cannot be scored (not a finite non-negative number)")]
    NotScorable {
        /// The parameter's name.
        parameter: &'static str,
        /// The value given.
        value: f64,
    },
}

/// The NEWS2 parameters, in the chart's order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Parameter {
    /// Respiration rate.
    RespirationRate,
    /// SpO2 (scale 1 or 2).
    Spo2,
    /// Air or oxygen.
    AirOrOxygen,
    /// Systolic blood pressure.
    SystolicBp,
    /// Pulse.
    Pulse,
    /// Consciousness (ACVPU).
    Consciousness,
    /// Temperature.
    Temperature,
}

/// Clinical risk (chart 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    /// Aggregate 0–4 and no single parameter scoring 3.
    Low,
    /// A single parameter scoring 3 ("red score") with an aggregate below 5.
    LowMedium,
    /// Aggregate 5–6 (the urgent response threshold).
    Medium,
    /// Aggregate 7 or more (the emergency response threshold).
    High,
}

impl Risk {
    /// Stable text form.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::LowMedium => "low_medium",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }

    /// Parse [`Risk::as_str`].
    pub fn parse(s: &str) -> Option<Risk> {
        match s {
            "low" => Some(Risk::Low),
            "low_medium" => Some(Risk::LowMedium),
            "medium" => Some(Risk::Medium),
            "high" => Some(Risk::High),
            _ => None,
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Minimum monitoring frequency (chart 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitoringFrequency {
    /// Aggregate 0: minimum 12-hourly.
    Every12Hours,
    /// Aggregate 1–4: minimum 4–6-hourly.
    Every4To6Hours,
    /// A single 3, or aggregate 5–6: minimum hourly.
    Hourly,
    /// Aggregate 7 or more: continuous monitoring of vital signs.
    Continuous,
}

/// The recommended clinical response (chart 3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Response {
    /// Minimum monitoring frequency.
    pub frequency: MonitoringFrequency,
    /// The chart's clinical response, abridged.
    pub action: &'static str,
}

/// A NEWS2 result: per-parameter scores (None where the parameter was missing), aggregate and risk.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct News2 {
    /// Respiration rate score.
    pub respiration_rate: Option<u8>,
    /// SpO2 score on the scale used.
    pub spo2: Option<u8>,
    /// Air (0) or oxygen (2).
    pub air_or_oxygen: Option<u8>,
    /// Systolic BP score.
    pub systolic_bp: Option<u8>,
    /// Pulse score.
    pub pulse: Option<u8>,
    /// Consciousness score.
    pub consciousness: Option<u8>,
    /// Temperature score.
    pub temperature: Option<u8>,
    /// The SpO2 scale used.
    pub scale: Spo2Scale,
}

impl News2 {
    fn scores(&self) -> [Option<u8>; 7] {
        [
            self.respiration_rate,
            self.spo2,
            self.air_or_oxygen,
            self.systolic_bp,
            self.pulse,
            self.consciousness,
            self.temperature,
        ]
    }

    /// The aggregate score (of the parameters present).
    pub fn total(&self) -> u8 {
        self.scores().iter().flatten().sum()
    }

    /// All seven parameters present.
    pub fn is_complete(&self) -> bool {
        self.scores().iter().all(Option::is_some)
    }

    /// The parameters missing from the set.
    pub fn missing(&self) -> Vec<Parameter> {
        const ORDER: [Parameter; 7] = [
            Parameter::RespirationRate,
            Parameter::Spo2,
            Parameter::AirOrOxygen,
            Parameter::SystolicBp,
            Parameter::Pulse,
            Parameter::Consciousness,
            Parameter::Temperature,
        ];
        ORDER
            .iter()
            .zip(self.scores())
            .filter(|(_, s)| s.is_none())
            .map(|(p, _)| *p)
            .collect()
    }

    /// Some parameter scored 3 (a "red score").
    pub fn has_single_three(&self) -> bool {
        self.scores().iter().flatten().any(|s| *s >= 3)
    }

    /// Clinical risk (chart 2): ≥ 7 high, 5–6 medium, any single 3 low–medium, else low.
    pub fn risk(&self) -> Risk {
        let total = self.total();
        if total >= 7 {
            Risk::High
        } else if total >= 5 {
            Risk::Medium
        } else if self.has_single_three() {
            Risk::LowMedium
        } else {
            Risk::Low
        }
    }

    /// The recommended response and minimum monitoring frequency (chart 3).
    pub fn response(&self) -> Response {
        match self.risk() {
            Risk::High => Response {
                frequency: MonitoringFrequency::Continuous,
                action: "Emergency response: registered nurse immediately informs the medical team (at least \
                         specialist registrar level); emergency assessment by a team with critical-care \
                         competencies including advanced airway skills; consider transfer to level 2 or 3 care",
            },
            Risk::Medium => Response {
                frequency: MonitoringFrequency::Hourly,
                action: "Urgent response: registered nurse immediately informs the medical team and requests \
                         urgent assessment by a clinician or team competent in acute illness; care in an \
                         environment with monitoring facilities",
            },
            Risk::LowMedium => Response {
                frequency: MonitoringFrequency::Hourly,
                action: "Urgent ward-based response: registered nurse informs the medical team, who review and \
                         decide whether escalation of care is needed",
            },
            Risk::Low if self.total() == 0 => Response {
                frequency: MonitoringFrequency::Every12Hours,
                action: "Continue routine NEWS monitoring",
            },
            Risk::Low => Response {
                frequency: MonitoringFrequency::Every4To6Hours,
                action: "Ward-based response: inform a registered nurse, who assesses the patient and decides \
                         whether monitoring should increase or care escalate",
            },
        }
    }
}

fn checked(parameter: &'static str, value: f64) -> Result<f64, News2Error> {
    if value.is_finite() && value >= 0.0 {
        Ok(value)
    } else {
        Err(News2Error::NotScorable { parameter, value })
    }
}

/// Round half away from zero to an integer (the chart's precision for rates, SpO2 and BP).
fn whole(value: f64) -> f64 {
    value.round()
}

/// Round to tenths (the chart's precision for temperature). Works on the decimal value so that 35.05 becomes
/// 35.1, not 35.0 as binary floating point would have it.
fn tenths(value: f64) -> f64 {
    (value * 10.0 + 1e-9).round() / 10.0
}

/// Respiration rate: ≤ 8 → 3, 9–11 → 1, 12–20 → 0, 21–24 → 2, ≥ 25 → 3.
pub fn score_respiration_rate(rate: f64) -> Result<u8, News2Error> {
    let r = whole(checked("respiration rate", rate)?);
    Ok(if r <= 8.0 {
        3
    } else if r <= 11.0 {
        1
    } else if r <= 20.0 {
        0
    } else if r <= 24.0 {
        2
    } else {
        3
    })
}

/// SpO2 scale 1: ≤ 91 → 3, 92–93 → 2, 94–95 → 1, ≥ 96 → 0 (on air or oxygen alike).
pub fn score_spo2_scale1(spo2: f64) -> Result<u8, News2Error> {
    let s = whole(checked("SpO2", spo2)?);
    Ok(if s <= 91.0 {
        3
    } else if s <= 93.0 {
        2
    } else if s <= 95.0 {
        1
    } else {
        0
    })
}

/// SpO2 scale 2: ≤ 83 → 3, 84–85 → 2, 86–87 → 1, 88–92 → 0, and from 93 % it depends on oxygen: on air ≥ 93 → 0;
/// on oxygen 93–94 → 1, 95–96 → 2, ≥ 97 → 3 (over-oxygenation of a patient at risk of hypercapnia).
pub fn score_spo2_scale2(spo2: f64, on_oxygen: bool) -> Result<u8, News2Error> {
    let s = whole(checked("SpO2", spo2)?);
    Ok(if s <= 83.0 {
        3
    } else if s <= 85.0 {
        2
    } else if s <= 87.0 {
        1
    } else if s <= 92.0 || !on_oxygen {
        0
    } else if s <= 94.0 {
        1
    } else if s <= 96.0 {
        2
    } else {
        3
    })
}

/// Air → 0, oxygen → 2.
pub fn score_air_or_oxygen(on_oxygen: bool) -> u8 {
    if on_oxygen {
        2
    } else {
        0
    }
}

/// Systolic BP: ≤ 90 → 3, 91–100 → 2, 101–110 → 1, 111–219 → 0, ≥ 220 → 3.
pub fn score_systolic_bp(systolic: f64) -> Result<u8, News2Error> {
    let s = whole(checked("systolic BP", systolic)?);
    Ok(if s <= 90.0 {
        3
    } else if s <= 100.0 {
        2
    } else if s <= 110.0 {
        1
    } else if s <= 219.0 {
        0
    } else {
        3
    })
}

/// Pulse: ≤ 40 → 3, 41–50 → 1, 51–90 → 0, 91–110 → 1, 111–130 → 2, ≥ 131 → 3.
pub fn score_pulse(pulse: f64) -> Result<u8, News2Error> {
    let p = whole(checked("pulse", pulse)?);
    Ok(if p <= 40.0 {
        3
    } else if p <= 50.0 {
        1
    } else if p <= 90.0 {
        0
    } else if p <= 110.0 {
        1
    } else if p <= 130.0 {
        2
    } else {
        3
    })
}

/// Alert → 0; new confusion, voice, pain or unresponsive → 3.
pub fn score_consciousness(level: Acvpu) -> u8 {
    if level == Acvpu::Alert {
        0
    } else {
        3
    }
}

/// Temperature: ≤ 35.0 → 3, 35.1–36.0 → 1, 36.1–38.0 → 0, 38.1–39.0 → 1, ≥ 39.1 → 2.
pub fn score_temperature(celsius: f64) -> Result<u8, News2Error> {
    let t = tenths(checked("temperature", celsius)?);
    Ok(if t <= 35.0 {
        3
    } else if t <= 36.0 {
        1
    } else if t <= 38.0 {
        0
    } else if t <= 39.0 {
        1
    } else {
        2
    })
}

/// Score a set of vitals on the given SpO2 scale. On scale 2 an SpO2 without the air/oxygen status is scored as
/// on air for the 93 %+ bands (the lower bound, see the module note).
pub fn score(vitals: &Vitals, scale: Spo2Scale) -> Result<News2, News2Error> {
    let spo2 = match (vitals.spo2, scale) {
        (None, _) => None,
        (Some(s), Spo2Scale::Scale1) => Some(score_spo2_scale1(s)?),
        (Some(s), Spo2Scale::Scale2) => {
            Some(score_spo2_scale2(s, vitals.on_oxygen.unwrap_or(false))?)
        }
    };
    Ok(News2 {
        respiration_rate: vitals
            .respiration_rate
            .map(score_respiration_rate)
            .transpose()?,
        spo2,
        air_or_oxygen: vitals.on_oxygen.map(score_air_or_oxygen),
        systolic_bp: vitals.systolic_bp.map(score_systolic_bp).transpose()?,
        pulse: vitals.pulse.map(score_pulse).transpose()?,
        consciousness: vitals.consciousness.map(score_consciousness),
        temperature: vitals.temperature.map(score_temperature).transpose()?,
        scale,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn normal() -> Vitals {
        Vitals {
            respiration_rate: Some(16.0),
            spo2: Some(97.0),
            on_oxygen: Some(false),
            systolic_bp: Some(120.0),
            pulse: Some(70.0),
            consciousness: Some(Acvpu::Alert),
            temperature: Some(37.0),
        }
    }

    #[test]
    fn normal_set_scores_zero_and_twelve_hourly() {
        let n = score(&normal(), Spo2Scale::Scale1).unwrap();
        assert_eq!(n.total(), 0);
        assert!(n.is_complete());
        assert_eq!(n.risk(), Risk::Low);
        assert_eq!(n.response().frequency, MonitoringFrequency::Every12Hours);
    }

    #[test]
    fn single_three_is_low_medium_until_aggregate_five() {
        let mut v = normal();
        v.consciousness = Some(Acvpu::Confusion);
        let n = score(&v, Spo2Scale::Scale1).unwrap();
        assert_eq!((n.total(), n.risk()), (3, Risk::LowMedium));
        assert_eq!(n.response().frequency, MonitoringFrequency::Hourly);
        v.pulse = Some(115.0); // +2
        assert_eq!(score(&v, Spo2Scale::Scale1).unwrap().risk(), Risk::Medium);
        v.temperature = Some(39.5); // +2 → 7
        let n = score(&v, Spo2Scale::Scale1).unwrap();
        assert_eq!((n.total(), n.risk()), (7, Risk::High));
        assert_eq!(n.response().frequency, MonitoringFrequency::Continuous);
    }

    #[test]
    fn rounding_to_chart_precision() {
        assert_eq!(score_spo2_scale1(91.6).unwrap(), 2);
        assert_eq!(score_spo2_scale1(91.4).unwrap(), 3);
        assert_eq!(score_temperature(35.05).unwrap(), 1);
        assert_eq!(score_temperature(35.04).unwrap(), 3);
        assert_eq!(score_respiration_rate(20.4).unwrap(), 0);
        assert_eq!(score_respiration_rate(20.5).unwrap(), 2);
    }

    #[test]
    fn partial_set_is_a_lower_bound() {
        let v = Vitals {
            spo2: Some(90.0),
            pulse: Some(120.0),
            ..Vitals::default()
        };
        let n = score(&v, Spo2Scale::Scale1).unwrap();
        assert!(!n.is_complete());
        assert_eq!(n.total(), 5);
        assert_eq!(n.missing().len(), 5);
        assert_eq!(n.risk(), Risk::Medium);
    }

    #[test]
    fn bad_values_are_typed_errors() {
        assert!(matches!(
            score_pulse(f64::NAN),
            Err(News2Error::NotScorable {
                parameter: "pulse",
                ..
            })
        ));
        assert!(score_temperature(-1.0).is_err());
        let v = Vitals {
            systolic_bp: Some(f64::INFINITY),
            ..Vitals::default()
        };
        assert!(score(&v, Spo2Scale::Scale2).is_err());
    }
}
