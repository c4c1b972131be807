//! DICOM studies attached to a consultation: a link from the case to a study of the node's imaging archive
//! (the pixels stay in the archive; this row only says which case may show which study). A study received from
//! another node is linked `pending` while its transfer runs, then `ready` (see `docs/federation.md`, study
//! transfers).

use caravan_domain::{ConsultationId, UserId};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Where a linked study is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StudyState {
    /// In this node's archive: viewable.
    Ready,
    /// Being fetched from another node (resumable transfer).
    Pending,
    /// The transfer gave up (its reason in `detail`).
    Failed,
}

impl StudyState {
    pub fn as_str(self) -> &'static str {
        match self {
            StudyState::Ready => "ready",
            StudyState::Pending => "pending",
            StudyState::Failed => "failed",
        }
    }
}

impl std::str::FromStr for StudyState {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "ready" => Ok(StudyState::Ready),
            "pending" => Ok(StudyState::Pending),
            "failed" => Ok(StudyState::Failed),
            _ => Err(()),
        }
    }
}

/// One study linked to one case. Descriptive fields are copied from the archive's index when linked, so the
/// case page lists the studies without touching the archive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaseStudy {
    pub consultation_id: ConsultationId,
    /// Study Instance UID in this node's archive.
    pub study_uid: String,
    pub accession: String,
    pub description: String,
    /// Modalities in the study, `\`-separated as in DICOM.
    pub modalities: String,
    /// Study Date as DICOM DA (`YYYYMMDD`), or empty.
    pub study_date: String,
    pub instances: i64,
    pub state: StudyState,
    /// Whether the study goes with the case when the case is sent to another node.
    pub share: bool,
    /// The node the study came from, for a study received with a case.
    pub origin_node: Option<String>,
    /// The transfer's manifest (JSON) while the study is fetched from another node.
    pub transfer: Option<String>,
    /// Progress or the failure reason (never patient data).
    pub detail: String,
    pub added_by: UserId,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}
