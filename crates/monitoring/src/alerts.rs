//! NEWS2 per patient over a short window of readings, and the alert rules: when to raise, when to stay quiet
//! (alert fatigue), and when an unacknowledged alert escalates to the next tier. Pure logic with the clock passed
//! in; the ingest stores what it decides.
//!
//! Rules (all times configurable in [`AlertPolicy`]):
//! - A patient's *set* is the latest value of each NEWS2 parameter, from any of the patient's devices, taken within
//!   `window` of the newest reading. Older values fall out of the set. NEWS2 is computed on every new reading.
//! - An alert is raised when the clinical risk is low–medium (a single 3), medium (5–6) or high (≥ 7).
//! - Alert fatigue: no second alert at the same level for the same patient within `suppression` of the last one,
//!   unless the score rose above the last alerted score. A rise to a higher level always alerts.
//! - Hysteresis: the patient's alert episode keeps its level until `hysteresis` consecutive sets score lower, so a
//!   score that flaps around a threshold does not re-alert on every crossing.
//! - Escalation: an alert that nobody acknowledges within `ack_timeout` of its level moves to the next tier
//!   (responsible clinician → medical team → critical-care outreach), and again after another timeout, up to
//!   the last tier.

use crate::model::{Message, PatientRef, Reading};
use crate::news2::{self, Acvpu, News2, News2Error, Risk, Spo2Scale, Vitals};
use chrono::{DateTime, Duration, Utc};
use std::collections::HashMap;

/// Who is notified at each tier.
pub const TIERS: [&str; 3] = [
    "responsible_clinician",
    "medical_team",
    "critical_care_outreach",
];

/// Timing of the alert rules.
#[derive(Clone, Debug, PartialEq)]
pub struct AlertPolicy {
    /// Readings older than this (relative to the newest) leave the patient's set.
    pub window: Duration,
    /// No repeat alert at the same level within this time unless the score rises.
    pub suppression: Duration,
    /// Consecutive lower-scoring sets needed before the episode's level drops.
    pub hysteresis: u32,
    /// Time to acknowledge a low–medium alert before it escalates.
    pub ack_timeout_low_medium: Duration,
    /// Time to acknowledge a medium alert.
    pub ack_timeout_medium: Duration,
    /// Time to acknowledge a high alert.
    pub ack_timeout_high: Duration,
}

impl Default for AlertPolicy {
    fn default() -> Self {
        AlertPolicy {
            window: Duration::minutes(5),
            suppression: Duration::minutes(30),
            hysteresis: 3,
            ack_timeout_low_medium: Duration::minutes(30),
            ack_timeout_medium: Duration::minutes(15),
            ack_timeout_high: Duration::minutes(5),
        }
    }
}

impl AlertPolicy {
    /// The acknowledgement timeout of an alert level.
    pub fn ack_timeout(&self, level: Risk) -> Duration {
        match level {
            Risk::High => self.ack_timeout_high,
            Risk::Medium => self.ack_timeout_medium,
            Risk::LowMedium | Risk::Low => self.ack_timeout_low_medium,
        }
    }
}

/// The tier an unacknowledged alert should be at now, if it is due to move up from `tier` (1-based). It moves one
/// tier per timeout since it last changed.
pub fn escalation_due(
    policy: &AlertPolicy,
    level: Risk,
    tier: u8,
    tier_since: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Option<u8> {
    let max = TIERS.len() as u8;
    if tier >= max || now - tier_since < policy.ack_timeout(level) {
        None
    } else {
        Some(tier + 1)
    }
}

/// An alert to raise.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAlert {
    /// The patient.
    pub patient: PatientRef,
    /// Clinical risk that triggered it.
    pub level: Risk,
    /// The NEWS2 total.
    pub score: u8,
    /// Whether all seven parameters were present (else the score is a lower bound).
    pub complete: bool,
    /// The full result.
    pub news2: News2,
    /// Time of the reading that triggered it (device clock).
    pub reading_time: DateTime<Utc>,
}

/// What the engine remembers of a patient's last alert (restored from the database after a restart).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LastAlert {
    /// Its level.
    pub level: Risk,
    /// Its score.
    pub score: u8,
    /// When it was raised (node clock).
    pub at: DateTime<Utc>,
}

#[derive(Clone, Debug, Default)]
struct PatientState {
    respiration_rate: Option<(f64, DateTime<Utc>)>,
    spo2: Option<(f64, DateTime<Utc>)>,
    on_oxygen: Option<(bool, DateTime<Utc>)>,
    systolic_bp: Option<(f64, DateTime<Utc>)>,
    pulse: Option<(f64, DateTime<Utc>)>,
    consciousness: Option<(Acvpu, DateTime<Utc>)>,
    temperature: Option<(f64, DateTime<Utc>)>,
    newest: Option<DateTime<Utc>>,
    /// The current episode's level (None: no episode).
    episode: Option<Risk>,
    lower_count: u32,
    last_alert: Option<LastAlert>,
}

fn put<T>(slot: &mut Option<(T, DateTime<Utc>)>, v: T, t: DateTime<Utc>) {
    // A late reading never replaces a newer one.
    if slot.as_ref().is_none_or(|(_, old)| *old <= t) {
        *slot = Some((v, t));
    }
}

fn fresh<T: Copy>(slot: &Option<(T, DateTime<Utc>)>, since: DateTime<Utc>) -> Option<T> {
    slot.as_ref().filter(|(_, t)| *t >= since).map(|(v, _)| *v)
}

impl PatientState {
    fn add(&mut self, reading: &Reading, t: DateTime<Utc>) {
        match *reading {
            Reading::HeartRate(v) => put(&mut self.pulse, v, t),
            Reading::RespiratoryRate(v) => put(&mut self.respiration_rate, v, t),
            Reading::Spo2(v) => put(&mut self.spo2, v, t),
            Reading::BloodPressure { systolic, .. } => put(&mut self.systolic_bp, systolic, t),
            Reading::Temperature(v) => put(&mut self.temperature, v, t),
            Reading::Consciousness(a) => put(&mut self.consciousness, a, t),
            Reading::OxygenFlow(v) => put(&mut self.on_oxygen, v > 0.0, t),
        }
        if self.newest.is_none_or(|n| n < t) {
            self.newest = Some(t);
        }
    }

    fn vitals(&self, window: Duration) -> Vitals {
        let Some(newest) = self.newest else {
            return Vitals::default();
        };
        let since = newest - window;
        Vitals {
            respiration_rate: fresh(&self.respiration_rate, since),
            spo2: fresh(&self.spo2, since),
            on_oxygen: fresh(&self.on_oxygen, since),
            systolic_bp: fresh(&self.systolic_bp, since),
            pulse: fresh(&self.pulse, since),
            consciousness: fresh(&self.consciousness, since),
            temperature: fresh(&self.temperature, since),
        }
    }
}

/// A patient's current NEWS2 set from readings with their times (e.g. `Store::latest_of`): the newest value of
/// each parameter within `window` of the newest reading, exactly as the alert engine builds it.
pub fn current_set<'a>(
    readings: impl IntoIterator<Item = (&'a Reading, DateTime<Utc>)>,
    window: Duration,
) -> Vitals {
    let mut st = PatientState::default();
    for (r, t) in readings {
        st.add(r, t);
    }
    st.vitals(window)
}

/// The per-patient alert state machine.
#[derive(Debug, Default)]
pub struct AlertEngine {
    policy: AlertPolicy,
    patients: HashMap<PatientRef, PatientState>,
}

impl AlertEngine {
    /// A new engine.
    pub fn new(policy: AlertPolicy) -> AlertEngine {
        AlertEngine {
            policy,
            patients: HashMap::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &AlertPolicy {
        &self.policy
    }

    /// Restore a reading into a patient's set without evaluating (used when the node starts).
    pub fn restore_reading(&mut self, patient: &PatientRef, reading: &Reading, t: DateTime<Utc>) {
        self.patients
            .entry(patient.clone())
            .or_default()
            .add(reading, t);
    }

    /// Restore a patient's last alert (used when the node starts). The episode resumes at that level.
    pub fn restore_last_alert(&mut self, patient: &PatientRef, last: LastAlert) {
        let st = self.patients.entry(patient.clone()).or_default();
        st.last_alert = Some(last);
        st.episode = Some(last.level);
    }

    /// Add a message's readings to the patient's set, score it, and decide whether to alert. `now` is the node's
    /// clock (for suppression), the message's timestamp is the reading time (for the window).
    pub fn observe(
        &mut self,
        patient: &PatientRef,
        scale: Spo2Scale,
        message: &Message,
        now: DateTime<Utc>,
    ) -> Result<(News2, Option<NewAlert>), News2Error> {
        let policy = &self.policy;
        let st = self.patients.entry(patient.clone()).or_default();
        for r in &message.readings {
            st.add(r, message.timestamp);
        }
        let result = news2::score(&st.vitals(policy.window), scale)?;
        let level = result.risk();
        let score = result.total();

        let raise = match st.episode {
            _ if level == Risk::Low => {
                if st.episode.is_some() {
                    st.lower_count += 1;
                    if st.lower_count >= policy.hysteresis {
                        st.episode = None;
                        st.lower_count = 0;
                    }
                }
                false
            }
            Some(ep) if level < ep => {
                // Improving but still at risk: stay quiet; drop the episode level only after enough lower sets.
                st.lower_count += 1;
                if st.lower_count >= policy.hysteresis {
                    st.episode = Some(level);
                    st.lower_count = 0;
                }
                false
            }
            Some(ep) if level == ep => {
                // The episode is known (alerted, and escalating until acknowledged): only a rising score
                // alerts again.
                st.lower_count = 0;
                st.last_alert.is_none_or(|last| score > last.score)
            }
            _ => {
                // No episode, or a rise to a higher level.
                st.lower_count = 0;
                st.episode = Some(level);
                match st.last_alert {
                    Some(last) if last.level == level && now - last.at < policy.suppression => {
                        score > last.score
                    }
                    _ => true,
                }
            }
        };
        let alert = if raise {
            st.last_alert = Some(LastAlert {
                level,
                score,
                at: now,
            });
            Some(NewAlert {
                patient: patient.clone(),
                level,
                score,
                complete: result.is_complete(),
                news2: result,
                reading_time: message.timestamp,
            })
        } else {
            None
        };
        Ok((result, alert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DeviceId;

    fn msg(t: DateTime<Utc>, readings: Vec<Reading>) -> Message {
        Message {
            device_id: DeviceId::new("d1").unwrap(),
            message_id: format!("m{}", t.timestamp_millis()),
            seq: 1,
            timestamp: t,
            readings,
        }
    }

    /// A full set whose NEWS2 total is `rr_score + 0`: respiration rate picks the score (0, 1, 2 or 3).
    fn full(t: DateTime<Utc>, rr: f64, pulse: f64) -> Message {
        msg(
            t,
            vec![
                Reading::RespiratoryRate(rr),
                Reading::Spo2(97.0),
                Reading::OxygenFlow(0.0),
                Reading::BloodPressure {
                    systolic: 120.0,
                    diastolic: 80.0,
                },
                Reading::HeartRate(pulse),
                Reading::Consciousness(Acvpu::Alert),
                Reading::Temperature(37.0),
            ],
        )
    }

    fn t0() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-05-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    #[test]
    fn readings_from_several_devices_form_one_set_within_the_window() {
        let mut e = AlertEngine::new(AlertPolicy::default());
        let p = PatientRef::new("p1").unwrap();
        let t = t0();
        let (n, a) = e
            .observe(&p, Spo2Scale::Scale1, &msg(t, vec![Reading::Spo2(91.0)]), t)
            .unwrap();
        assert_eq!((n.total(), n.risk()), (3, Risk::LowMedium));
        assert!(a.is_some_and(|a| !a.complete));
        let t2 = t + Duration::minutes(1);
        let (n, _) = e
            .observe(
                &p,
                Spo2Scale::Scale1,
                &msg(t2, vec![Reading::HeartRate(115.0)]),
                t2,
            )
            .unwrap();
        assert_eq!(n.total(), 5, "SpO2 3 + pulse 2");
        // Ten minutes later the SpO2 reading has left the window.
        let t3 = t + Duration::minutes(10);
        let (n, _) = e
            .observe(
                &p,
                Spo2Scale::Scale1,
                &msg(t3, vec![Reading::HeartRate(115.0)]),
                t3,
            )
            .unwrap();
        assert_eq!(n.total(), 2);
    }

    #[test]
    fn suppression_rising_score_and_higher_level() {
        let mut e = AlertEngine::new(AlertPolicy::default());
        let p = PatientRef::new("p1").unwrap();
        let t = t0();
        let s = Spo2Scale::Scale1;
        // RR 25 → 3 (low-medium).
        assert!(e
            .observe(&p, s, &full(t, 25.0, 70.0), t)
            .unwrap()
            .1
            .is_some());
        // Same level, same score: suppressed.
        let t1 = t + Duration::minutes(1);
        assert!(e
            .observe(&p, s, &full(t1, 26.0, 70.0), t1)
            .unwrap()
            .1
            .is_none());
        // Same level, score rises 3 → 4: alerts.
        let t2 = t + Duration::minutes(2);
        let a = e
            .observe(&p, s, &full(t2, 25.0, 95.0), t2)
            .unwrap()
            .1
            .unwrap();
        assert_eq!((a.level, a.score), (Risk::LowMedium, 4));
        // Rise to medium (3 + 2 = 5): alerts.
        let t3 = t + Duration::minutes(3);
        let a = e
            .observe(&p, s, &full(t3, 25.0, 115.0), t3)
            .unwrap()
            .1
            .unwrap();
        assert_eq!(a.level, Risk::Medium);
        // A persisting episode does not repeat, even after the suppression window.
        let t4 = t3 + Duration::minutes(31);
        assert!(e
            .observe(&p, s, &full(t4, 25.0, 115.0), t4)
            .unwrap()
            .1
            .is_none());
        // The episode ends after three normal sets; a new medium episode within the suppression window of the
        // last medium alert is suppressed, after it alerts.
        let mut t5 = t4;
        for _ in 0..3 {
            t5 += Duration::minutes(1);
            assert!(e
                .observe(&p, s, &full(t5, 16.0, 70.0), t5)
                .unwrap()
                .1
                .is_none());
        }
        t5 += Duration::minutes(1);
        let last_medium = t5;
        assert!(
            e.observe(&p, s, &full(t5, 25.0, 115.0), t5)
                .unwrap()
                .1
                .is_some(),
            "window of t3 is over"
        );
        for _ in 0..3 {
            t5 += Duration::minutes(1);
            e.observe(&p, s, &full(t5, 16.0, 70.0), t5).unwrap();
        }
        t5 += Duration::minutes(1);
        assert!(
            e.observe(&p, s, &full(t5, 25.0, 115.0), t5)
                .unwrap()
                .1
                .is_none(),
            "suppressed"
        );
        let t6 = last_medium + Duration::minutes(30);
        for i in 0..3 {
            let t = t6 + Duration::seconds(i);
            e.observe(&p, s, &full(t, 16.0, 70.0), t).unwrap();
        }
        let t7 = t6 + Duration::seconds(10);
        assert!(e
            .observe(&p, s, &full(t7, 25.0, 115.0), t7)
            .unwrap()
            .1
            .is_some());
    }

    #[test]
    fn hysteresis_stops_flapping() {
        let policy = AlertPolicy {
            suppression: Duration::seconds(10),
            ..AlertPolicy::default()
        };
        let mut e = AlertEngine::new(policy);
        let p = PatientRef::new("p1").unwrap();
        let s = Spo2Scale::Scale1;
        let mut t = t0();
        let mut raised = 0;
        // The score flaps between 3 (RR 25) and 0 (RR 16) every minute for an hour: one alert only, because the
        // episode needs three lower sets in a row to end.
        for i in 0..60 {
            let rr = if i % 2 == 0 { 25.0 } else { 16.0 };
            if e.observe(&p, s, &full(t, rr, 70.0), t).unwrap().1.is_some() {
                raised += 1;
            }
            t += Duration::minutes(1);
        }
        assert_eq!(raised, 1);
        // Three normal sets end the episode; the next 3 alerts again (suppression is only 10 s here).
        for _ in 0..3 {
            assert!(e
                .observe(&p, s, &full(t, 16.0, 70.0), t)
                .unwrap()
                .1
                .is_none());
            t += Duration::minutes(1);
        }
        assert!(e
            .observe(&p, s, &full(t, 25.0, 70.0), t)
            .unwrap()
            .1
            .is_some());
    }

    #[test]
    fn restored_alert_suppresses_after_restart() {
        let mut e = AlertEngine::new(AlertPolicy::default());
        let p = PatientRef::new("p1").unwrap();
        let t = t0();
        e.restore_last_alert(
            &p,
            LastAlert {
                level: Risk::LowMedium,
                score: 3,
                at: t,
            },
        );
        let t1 = t + Duration::minutes(1);
        assert!(e
            .observe(&p, Spo2Scale::Scale1, &full(t1, 25.0, 70.0), t1)
            .unwrap()
            .1
            .is_none());
    }

    #[test]
    fn escalation_moves_one_tier_per_timeout() {
        let p = AlertPolicy::default();
        let t = t0();
        assert_eq!(
            escalation_due(&p, Risk::High, 1, t, t + Duration::minutes(4)),
            None
        );
        assert_eq!(
            escalation_due(&p, Risk::High, 1, t, t + Duration::minutes(5)),
            Some(2)
        );
        assert_eq!(
            escalation_due(&p, Risk::Medium, 2, t, t + Duration::minutes(14)),
            None
        );
        assert_eq!(
            escalation_due(&p, Risk::Medium, 2, t, t + Duration::minutes(15)),
            Some(3)
        );
        assert_eq!(
            escalation_due(&p, Risk::High, 3, t, t + Duration::hours(9)),
            None
        );
    }

    #[test]
    fn scale_two_patient_on_oxygen() {
        let mut e = AlertEngine::new(AlertPolicy::default());
        let p = PatientRef::new("copd").unwrap();
        let t = t0();
        let m = msg(t, vec![Reading::Spo2(97.0), Reading::OxygenFlow(2.0)]);
        let (n, a) = e.observe(&p, Spo2Scale::Scale2, &m, t).unwrap();
        assert_eq!(n.total(), 5, "scale 2: 97 % on oxygen scores 3, oxygen 2");
        assert_eq!(a.unwrap().level, Risk::Medium);
    }
}
