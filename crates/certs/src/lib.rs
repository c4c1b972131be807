//! Caravan health certificates: the EU Digital COVID Certificate (HCERT) and SMART Health Cards, issued and
//! verified fully offline against trust lists, with business-rule outcomes mapped to green / yellow / red.
//!
//! Entry points: [`Verifier`] (node and CLI), [`TrustList`] (trust anchors and their exchange format),
//! [`issue`] (issuing DCCs), [`shc`] (SMART Health Cards), [`qr`] (QR rendering and decoding), [`cli`].

pub mod bench;
pub mod cbor;
pub mod cli;
pub mod conformance;
pub mod crypto;
pub mod error;
pub mod hcert;
pub mod issue;
pub mod qr;
pub mod rules;
pub mod schema;
pub mod shc;
pub mod trust;
pub mod verifier;

pub use error::{Error, Result};
pub use trust::{CertType, Dsc, TrustList};
pub use verifier::{Clock, HolderClaims, Reason, RulesConfig, Status, Verification, Verifier};
