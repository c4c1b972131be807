//! Caravan's domain: the types clinicians and the standards speak of, and the rules that govern them.
//!
//! Architecture invariant: this crate does no IO. No async, no SQL, no HTTP, no clock reads except where a caller
//! passes `now` in. Everything here is deterministic and unit-testable.

pub mod audit;
pub mod consultation;
pub mod ids;
pub mod model;
pub mod routing;
pub mod sla;

pub use audit::{AuditAction, AuditEvent, AuditRecord, AuditSubject, ChainError};
pub use consultation::{
    Consultation, ConsultationEvent, ConsultationState, Outcome, PanelMember, PanelRole, Report,
    TeamOffer, TransitionError, Urgency,
};
pub use ids::*;
pub use model::*;
pub use routing::{
    rank_candidates, rank_teams, Candidate, RankedCandidate, RankedTeam, RoutingRequest,
};
pub use sla::SlaPolicy;
