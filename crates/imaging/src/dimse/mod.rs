//! DICOM Message Service Element networking: the SCP the node listens with, and an SCU for
//! C-MOVE sub-operations and for talking to remote PACS.

pub mod message;
pub mod scp;
pub mod scu;

pub use scp::{is_storage_sop_class, Scp, ScpConfig, ScpHandle};
