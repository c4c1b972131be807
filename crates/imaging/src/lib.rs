//! Caravan imaging: a DICOM node that can be embedded in the Caravan server or run on its own.
//!
//! - [`Archive`]: Part-10 bytes in an `object_store`, an index in SQLite, an [`AccessObserver`]
//!   hook for the node's audit trail.
//! - [`dimse`]: a DIMSE SCP (C-ECHO, C-STORE, C-FIND, C-MOVE) and a small SCU.
//! - [`dicomweb`]: STOW-RS, QIDO-RS and WADO-RS as an axum router.
//! - [`deid`]: de-identification (PS3.15 Basic Profile) for studies sent without the patient's identity.
//! - [`render`]: pixel decoding, window/level and PNG/JPEG rendering for viewing.
//! - [`wsi`]: whole-slide images (DICOM WSI, tiled TIFF, Aperio SVS) as Deep Zoom tiles.
//! - [`cli`]: the `imaging` subcommands (`serve`, `bench`).

pub mod archive;
pub mod cli;
pub mod deid;
pub mod dicomweb;
pub mod dimse;
pub mod error;
mod index_writer;
pub mod query;
pub mod render;
pub mod uid;
pub mod wsi;

pub use archive::{
    AccessAction, AccessEvent, AccessObserver, Archive, ArchiveConfig, InstanceRecord, NoObserver,
    StoreOutcome, StudyDeletion,
};
pub use dimse::{Scp, ScpConfig, ScpHandle};
pub use error::{Error, RejectReason, Result};
pub use query::{Level, Query, QueryMatch, ReturnKeys};

/// Our implementation class UID (under the UUID-derived 2.25 root, so it needs no registration).
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.190238423981447105734659302847563129841";
/// Our implementation version name (at most 16 characters).
pub const IMPLEMENTATION_VERSION_NAME: &str = "CARAVAN_010";
