//! Identifiers as newtypes, so that a patient id can never be passed where a user id is expected.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered identifier (UUID v7), so that ids sort by creation.
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(/// A hospital, regional platform or national center.
    InstitutionId);
id_type!(/// A person who signs in: a clinician, coordinator, officer, administrator or patient.
    UserId);
id_type!(/// A patient whose record is held by one institution of this node.
    PatientId);
id_type!(/// A consent record.
    ConsentId);
id_type!(/// A consultation (case).
    ConsultationId);
id_type!(/// A message in a consultation's thread.
    MessageId);
id_type!(/// A file attached to a consultation.
    AttachmentId);
id_type!(/// A standing multidisciplinary team (tumour board, cardiac team, ...) that can take a case together.
    TeamId);
