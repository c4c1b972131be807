//! Caravan federation protocol: how sovereign Caravan nodes (national telemedicine centers, regional
//! platforms, hospitals in several countries) trust each other and exchange messages without losing any.
//!
//! - [`keys`]: node signing keys (Ed25519), key ids (RFC 7638 thumbprints), the keyring file and rotation.
//! - [`directory`]: the member directory signed by the network's anchor keys (RFC 8785 canonical JSON),
//!   with rollback and expiry protection and key lookups.
//! - [`httpsig`]: RFC 9421 HTTP Message Signatures (Ed25519) with RFC 9530 `Content-Digest`, and a replay
//!   guard for nonces.
//! - [`envelope`]: the signed, versioned business envelope and its checks against the directory.
//! - [`delivery`]: the outbox delivery engine (one in-order worker per destination, capped exponential
//!   backoff with jitter, dead letters, state behind [`delivery::OutboxStore`]) and its HTTP transport.
//! - [`receiver`]: the inbound side: verify, de-duplicate, store, then acknowledge.
//! - [`problem`]: the JSON problem objects (RFC 9457) that refusals are reported with.
//! - [`cli`]: `caravan keys ...` and `caravan directory ...`.
//!
//! The wire protocol is described in `docs/federation.md` at the workspace root.

pub mod cli;
pub mod delivery;
pub mod directory;
pub mod envelope;
pub mod httpsig;
pub mod jcs;
pub mod keys;
pub mod problem;
pub mod receiver;

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's identifier in the directory, e.g. `hospital-a.fr`.
///
/// 1 to 128 characters of ASCII letters, digits and `-._:`; the restriction keeps ids safe in URLs, logs and
/// file names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NodeId(String);

/// A node id that breaks the syntax rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: 1-128 ASCII letters, digits or -._:")]
pub struct InvalidNodeId(pub String);

impl NodeId {
    /// Checks and wraps a node id.
    pub fn new(id: impl Into<String>) -> Result<NodeId, InvalidNodeId> {
        let id = id.into();
        let ok = !id.is_empty()
            && id.len() <= 128
            && id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'));
        if ok {
            Ok(NodeId(id))
        } else {
            Err(InvalidNodeId(id))
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NodeId::new(s)
    }
}

impl<'de> Deserialize<'de> for NodeId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        NodeId::new(s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids() {
        assert!(NodeId::new("hospital-a.fr").is_ok());
        assert!(NodeId::new("").is_err());
        assert!(NodeId::new("a b").is_err());
        assert!(NodeId::new("x".repeat(129)).is_err());
        assert!(serde_json::from_str::<NodeId>("\"../etc\"").is_err());
    }
}
