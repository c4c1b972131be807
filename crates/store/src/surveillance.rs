//! What a node stores for infectious-disease surveillance: its regions and their neighbours across borders, the
//! notifiable-disease reports (a pseudonymised line list of cases, and aggregate counts per disease × region × ISO
//! week), the alerts raised by detection (local, or received from a neighbouring country's node) and the notes
//! officers write on them.
//!
//! Writes go through [`crate::Store::apply`] as [`crate::Change`]s, so a report, the alert it raises and the outbox
//! row that carries the alert across the border commit in one transaction with their audit events.

use caravan_domain::UserId;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A region of this node's surveillance area, with its population (for forecasting) and the regions of other
/// countries' nodes it borders.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SurvRegion {
    /// Short stable code, e.g. `KZ-ALM`.
    #[schemars(regex(pattern = r"^[A-Za-z0-9-]{1,32}$"))]
    pub code: String,
    #[schemars(length(min = 1, max = 100), regex(pattern = r"[^\s\u0085]"))]
    pub name: String,
    /// ISO 3166-1 alpha-2.
    #[schemars(regex(pattern = r"^[A-Z]{2}$"))]
    pub country: String,
    #[schemars(range(min = 1))]
    pub population: i64,
    #[serde(default)]
    pub neighbours: Vec<SurvNeighbour>,
}

/// A region of another node that borders one of ours (where cross-border alerts go).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SurvNeighbour {
    /// The other country's node id in the federation directory.
    pub node_id: String,
    /// The region's code on that node.
    pub region: String,
    pub name: String,
}

/// One case of a notifiable disease, pseudonymised: no name, no identifier, only the reporter's own pseudonym.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurvCase {
    pub id: Uuid,
    /// The reporter's pseudonym for the person (e.g. a lab number hash); never a name or national id.
    pub pseudonym: String,
    /// ICD-10 code of a notifiable disease.
    pub disease: String,
    pub region: String,
    pub onset_date: NaiveDate,
    pub report_date: NaiveDate,
    /// `0-4`, `5-14`, `15-24`, `25-44`, `45-64`, `65+` or `unknown`.
    pub age_band: String,
    /// `female`, `male`, `other`, `unknown`.
    pub sex: String,
    /// `recovered`, `hospitalised`, `died`, `unknown`.
    pub outcome: String,
    pub lab_confirmed: bool,
    pub reported_by: UserId,
    /// `form`, `csv`, `fhir`, `api`, `demo`.
    pub source: String,
    pub created_at: DateTime<Utc>,
}

/// The count of one disease in one region in one ISO week, as reported in aggregate (the last report of a key
/// replaces the previous one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurvAggregate {
    pub disease: String,
    pub region: String,
    pub iso_year: i32,
    pub iso_week: u32,
    pub count: i64,
    pub reported_by: UserId,
    pub source: String,
    pub updated_at: DateTime<Utc>,
}

/// One week of a disease × region series: cases of the line list by week of onset, plus the aggregate count.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvWeek {
    pub disease: String,
    pub region: String,
    pub iso_year: i32,
    pub iso_week: u32,
    pub cases: i64,
    pub aggregate: i64,
}

impl SurvWeek {
    pub fn total(&self) -> i64 {
        self.cases + self.aggregate
    }
}

/// Which reports to read; all optional.
#[derive(Clone, Debug, Default)]
pub struct SurvFilter {
    pub disease: Option<String>,
    pub region: Option<String>,
    pub limit: Option<u32>,
}

/// An alert: an alarm of detection on one disease × region × week. `origin_node` is empty for this node's own
/// alerts, and names the sending node for a cross-border alert received from a neighbour.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurvAlert {
    pub id: Uuid,
    pub origin_node: String,
    /// The alert's id on its origin node (equal to `id` for a local alert).
    pub origin_id: String,
    pub disease: String,
    pub region: String,
    pub region_name: String,
    pub country: String,
    /// For a foreign alert: our region that borders `region`.
    pub local_region: Option<String>,
    pub iso_year: i32,
    pub iso_week: u32,
    pub observed: f64,
    pub upperbound: Option<f64>,
    pub method: String,
    pub created_at: DateTime<Utc>,
    /// `open` or `acknowledged`.
    pub status: String,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<DateTime<Utc>>,
}

/// A note in an alert's discussion, or an acknowledgement (`kind` = `ack`) received from a neighbouring node.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SurvNote {
    pub id: Uuid,
    pub alert_id: Uuid,
    /// `note` or `ack`.
    pub kind: String,
    pub author_name: String,
    /// Empty for a person of this node.
    pub author_node: String,
    pub body: String,
    pub created_at: DateTime<Utc>,
}

/// Weekly counts of a border region of a neighbouring node, as its `surv.aggregate` envelopes carried them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SurvForeignCount {
    pub node_id: String,
    pub region: String,
    pub disease: String,
    pub iso_year: i32,
    pub iso_week: u32,
    pub count: i64,
}
