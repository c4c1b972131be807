//! Service-level agreement clocks per urgency.

use crate::consultation::Urgency;
use chrono::Duration;
use serde::{Deserialize, Serialize};

/// How long an expert has to answer, per urgency. Node-configurable; defaults 72 h / 24 h / 1 h.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaPolicy {
    pub routine_minutes: i64,
    pub urgent_minutes: i64,
    pub emergency_minutes: i64,
}

impl Default for SlaPolicy {
    fn default() -> Self {
        Self {
            routine_minutes: 72 * 60,
            urgent_minutes: 24 * 60,
            emergency_minutes: 60,
        }
    }
}

impl SlaPolicy {
    pub fn duration(&self, urgency: Urgency) -> Duration {
        Duration::minutes(match urgency {
            Urgency::Routine => self.routine_minutes,
            Urgency::Urgent => self.urgent_minutes,
            Urgency::Emergency => self.emergency_minutes,
        })
    }
}
