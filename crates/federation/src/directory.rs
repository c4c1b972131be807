//! The signed member directory: who is in the network, with which keys, endpoints and permissions.
//!
//! A directory is a JSON document signed by one or more of the network's anchor keys. The signature covers
//! the RFC 8785 canonical form of the document without its `signatures` member, so whitespace and member
//! order do not matter on the wire. Nodes pin the anchor public keys in their configuration, refuse a
//! directory whose serial is lower than the one they hold (rollback), and refuse an expired one.
//!
//! ```json
//! {"network":"caravan-demo","serial":7,"issued_at":"2026-12-01T00:00:00Z","expires_at":"2027-01-01T00:00:00Z",
//!  "anchors":["<kid>"],
//!  "members":[{"node_id":"hospital-a.fr","display_name":"Hôpital A","level":"hospital","country":"FR",
//!              "base_url":"https://a.example","message_types":["consult.packet"],
//!              "valid_from":"2026-12-01T00:00:00Z","valid_until":null,
//!              "keys":[{"kid":"<kid>","public_key":"<base64url>","status":"active",
//!                       "not_before":"2026-12-01T00:00:00Z","not_after":null}]}],
//!  "signatures":[{"kid":"<anchor kid>","alg":"ed25519","sig":"<base64url>"}]}
//! ```

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::keys::{b64url, b64url_decode, parse_public_key, verify_signature, Kid, NodeKey};
use crate::NodeId;

/// The position of a member in the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// A national telemedicine center.
    NationalCenter,
    /// A regional platform.
    RegionalPlatform,
    /// A hospital.
    Hospital,
}

/// The state of a member's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    /// Current signing key.
    Active,
    /// No longer used to sign; signatures made inside its validity window still verify.
    Retired,
    /// Compromised or withdrawn: nothing signed with it is accepted, whenever it was signed.
    Revoked,
}

/// A member's public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemberKey {
    /// RFC 7638 thumbprint of the key; checked against `public_key`.
    pub kid: Kid,
    /// Raw 32-byte Ed25519 public key, base64url.
    pub public_key: String,
    /// Its state.
    pub status: KeyStatus,
    /// Start of the validity window.
    pub not_before: DateTime<Utc>,
    /// End of the validity window (none: open).
    #[serde(default)]
    pub not_after: Option<DateTime<Utc>>,
}

/// A network member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Member {
    /// The node id.
    pub node_id: NodeId,
    /// Human name.
    pub display_name: String,
    /// Position in the network.
    pub level: Level,
    /// ISO 3166-1 alpha-2 country code, upper case.
    pub country: String,
    /// Base URL of the node's federation API (`https://host[:port][/prefix]`).
    pub base_url: String,
    /// Its keys.
    pub keys: Vec<MemberKey>,
    /// The envelope types this member may send.
    pub message_types: Vec<String>,
    /// Start of membership.
    pub valid_from: DateTime<Utc>,
    /// End of membership (none: open).
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// Pins of the node's TLS keys for mutual TLS between nodes: base64url SHA-256 of the DER
    /// `SubjectPublicKeyInfo` of each certificate the node may present (several during a renewal).
    /// Optional: absent (or empty) in a directory that does not use pinning, and then not serialised, so
    /// older directories keep their canonical form and signatures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_spki_sha256: Vec<String>,
}

impl Member {
    /// Whether this member may send envelopes of the given type name.
    pub fn may_send(&self, type_name: &str) -> bool {
        self.message_types.iter().any(|t| t == type_name)
    }

    /// Whether membership covers the instant.
    pub fn valid_at(&self, at: DateTime<Utc>) -> bool {
        at >= self.valid_from && self.valid_until.is_none_or(|u| at <= u)
    }

    /// Whether this member pins the TLS key with this SPKI pin (see [`Member::tls_spki_sha256`]).
    pub fn pins_tls_key(&self, spki_pin: &str) -> bool {
        self.tls_spki_sha256.iter().any(|p| p == spki_pin)
    }
}

/// The pin of a TLS key as the directory lists it: base64url (no padding) of the SHA-256 of the DER
/// `SubjectPublicKeyInfo`.
pub fn tls_spki_pin(spki_der: &[u8]) -> String {
    use sha2::Digest;
    b64url(&sha2::Sha256::digest(spki_der))
}

/// The signed content of a directory (everything but the signatures).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryBody {
    /// Network identifier.
    pub network: String,
    /// Monotonic serial: every new edition has a higher one.
    pub serial: u64,
    /// When this edition was issued.
    pub issued_at: DateTime<Utc>,
    /// After this instant the edition is refused; the network must publish a new one before.
    pub expires_at: DateTime<Utc>,
    /// Kids of the anchor keys that sign the directory.
    pub anchors: Vec<Kid>,
    /// The members.
    pub members: Vec<Member>,
}

/// One anchor signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorySignature {
    /// The anchor key's kid.
    pub kid: Kid,
    /// Always `ed25519`.
    pub alg: String,
    /// Ed25519 signature over the canonical body, base64url.
    pub sig: String,
}

/// Why a directory was refused.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// Not JSON, or not the directory shape.
    #[error("malformed directory: {0}")]
    Malformed(String),
    /// No `signatures`, or an empty list.
    #[error("directory is not signed")]
    Unsigned,
    /// A signature by a pinned anchor key does not verify.
    #[error("bad anchor signature by {kid}")]
    BadAnchorSignature {
        /// The anchor's kid.
        kid: String,
    },
    /// Fewer valid signatures by pinned anchors than required.
    #[error("directory not signed by a pinned anchor ({valid} valid of {required} required)")]
    UntrustedAnchor {
        /// Valid pinned signatures found.
        valid: usize,
        /// Required.
        required: usize,
    },
    /// Serial lower than the one already held.
    #[error("directory rollback: serial {offered} is lower than the held {held}")]
    Rollback {
        /// Serial held.
        held: u64,
        /// Serial offered.
        offered: u64,
    },
    /// Same serial as held but different content.
    #[error("directory serial {serial} reused with different content")]
    SerialReused {
        /// The serial.
        serial: u64,
    },
    /// Past its `expires_at`.
    #[error("directory expired at {expires_at}")]
    Expired {
        /// When it expired.
        expires_at: DateTime<Utc>,
    },
    /// Issued in the future (beyond the clock skew allowance).
    #[error("directory issued in the future ({issued_at})")]
    NotYetValid {
        /// Its issue time.
        issued_at: DateTime<Utc>,
    },
    /// Well signed but internally inconsistent.
    #[error("invalid directory: {0}")]
    Invalid(String),
    /// Could not be canonicalised.
    #[error(transparent)]
    Canonical(#[from] crate::jcs::CanonicalError),
}

/// Why a lookup in the directory failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The node is not a member.
    #[error("node {0} is not in the directory")]
    UnknownNode(String),
    /// Membership does not cover the instant.
    #[error("membership of {0} is not valid at that time")]
    MemberNotValid(String),
    /// No such kid (for that node).
    #[error("unknown key {0}")]
    UnknownKey(String),
    /// The key is revoked.
    #[error("key {0} is revoked")]
    KeyRevoked(String),
    /// The instant is outside the key's validity window.
    #[error("key {0} is not valid at that time")]
    KeyNotValid(String),
    /// The directory held is past its expiry.
    #[error("the directory held expired at {0}")]
    DirectoryExpired(DateTime<Utc>),
}

/// A verified directory with its indexes.
#[derive(Debug, Clone)]
pub struct Directory {
    body: DirectoryBody,
    /// Canonical bytes of the body, to compare editions.
    canonical: Vec<u8>,
    /// The signed document as received.
    raw: Vec<u8>,
    by_node: HashMap<NodeId, usize>,
    by_kid: HashMap<Kid, (usize, usize, VerifyingKey)>,
}

/// How a directory is checked.
#[derive(Debug, Clone)]
pub struct TrustPolicy {
    /// The pinned anchor public keys.
    pub anchors: Vec<VerifyingKey>,
    /// How many distinct pinned anchors must have signed (default 1).
    pub threshold: usize,
    /// Clock skew tolerated on `issued_at` (default 5 minutes).
    pub max_skew: chrono::Duration,
}

impl TrustPolicy {
    /// A policy trusting these anchors, one signature required.
    pub fn new(anchors: Vec<VerifyingKey>) -> TrustPolicy {
        TrustPolicy {
            anchors,
            threshold: 1,
            max_skew: chrono::Duration::minutes(5),
        }
    }
}

impl DirectoryBody {
    /// Checks the body's internal consistency (ids unique, kids matching keys, countries, URLs, windows).
    pub fn validate(&self) -> Result<(), DirectoryError> {
        let bad = |m: String| Err(DirectoryError::Invalid(m));
        if self.network.trim().is_empty() {
            return bad("empty network id".into());
        }
        if self.expires_at <= self.issued_at {
            return bad("expires_at is not after issued_at".into());
        }
        if self.anchors.is_empty() {
            return bad("no anchors listed".into());
        }
        let mut nodes = BTreeSet::new();
        let mut kids = BTreeSet::new();
        let mut pins = BTreeSet::new();
        for m in &self.members {
            if !nodes.insert(m.node_id.clone()) {
                return bad(format!("duplicate node {}", m.node_id));
            }
            if m.country.len() != 2 || !m.country.bytes().all(|b| b.is_ascii_uppercase()) {
                return bad(format!(
                    "{}: country {:?} is not ISO 3166-1 alpha-2",
                    m.node_id, m.country
                ));
            }
            check_base_url(&m.base_url)
                .map_err(|e| DirectoryError::Invalid(format!("{}: {e}", m.node_id)))?;
            if m.valid_until.is_some_and(|u| u < m.valid_from) {
                return bad(format!("{}: valid_until before valid_from", m.node_id));
            }
            for t in &m.message_types {
                if t.is_empty() || t.len() > 64 {
                    return bad(format!("{}: bad message type name", m.node_id));
                }
            }
            for p in &m.tls_spki_sha256 {
                match b64url_decode(p, "tls_spki_sha256") {
                    Ok(d) if d.len() == 32 => {}
                    _ => {
                        return bad(format!(
                            "{}: tls_spki_sha256 {p:?} is not a base64url SHA-256",
                            m.node_id
                        ))
                    }
                }
                // One TLS key identifies one node: a pin shared by two members would make the peer ambiguous.
                if !pins.insert(p.clone()) {
                    return bad(format!("duplicate tls_spki_sha256 {p}"));
                }
            }
            for k in &m.keys {
                let key = parse_public_key(&k.public_key).map_err(|e| {
                    DirectoryError::Invalid(format!("{} key {}: {e}", m.node_id, k.kid))
                })?;
                let computed = Kid::of(&key);
                if computed != k.kid {
                    return bad(format!(
                        "{}: kid {} does not match its key ({computed})",
                        m.node_id, k.kid
                    ));
                }
                if !kids.insert(k.kid.clone()) {
                    return bad(format!("duplicate kid {}", k.kid));
                }
                if k.not_after.is_some_and(|a| a < k.not_before) {
                    return bad(format!(
                        "{}: key {} not_after before not_before",
                        m.node_id, k.kid
                    ));
                }
            }
        }
        Ok(())
    }

    /// Signs the body with anchor keys, giving the wire document.
    pub fn sign(&self, anchors: &[&NodeKey]) -> Result<Value, DirectoryError> {
        self.validate()?;
        if anchors.is_empty() {
            return Err(DirectoryError::Unsigned);
        }
        for a in anchors {
            if !self.anchors.contains(a.kid()) {
                return Err(DirectoryError::Invalid(format!(
                    "signing key {} is not listed in anchors",
                    a.kid()
                )));
            }
        }
        let mut doc =
            serde_json::to_value(self).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        let canonical = crate::jcs::canonical(&doc)?;
        let sigs: Vec<DirectorySignature> = anchors
            .iter()
            .map(|a| DirectorySignature {
                kid: a.kid().clone(),
                alg: "ed25519".into(),
                sig: b64url(&a.sign(&canonical)),
            })
            .collect();
        if let Value::Object(map) = &mut doc {
            map.insert(
                "signatures".into(),
                serde_json::to_value(sigs).map_err(|e| DirectoryError::Malformed(e.to_string()))?,
            );
        }
        Ok(doc)
    }
}

fn check_base_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|_| format!("base_url {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("https") | Some("http") => {}
        _ => return Err(format!("base_url {url:?} must be http(s)")),
    }
    if uri.authority().is_none() {
        return Err(format!("base_url {url:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("base_url {url:?} must not have a query"));
    }
    Ok(())
}

impl Directory {
    /// Verifies a signed directory document against the trust policy.
    ///
    /// `held_serial` is the serial of the directory already held, if any: a lower serial is a rollback.
    pub fn verify(
        raw: &[u8],
        policy: &TrustPolicy,
        now: DateTime<Utc>,
        held_serial: Option<u64>,
    ) -> Result<Directory, DirectoryError> {
        let mut doc: Value =
            serde_json::from_slice(raw).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        let obj = doc
            .as_object_mut()
            .ok_or_else(|| DirectoryError::Malformed("not a JSON object".into()))?;
        let sigs = match obj.remove("signatures") {
            None => return Err(DirectoryError::Unsigned),
            Some(v) => serde_json::from_value::<Vec<DirectorySignature>>(v)
                .map_err(|e| DirectoryError::Malformed(format!("signatures: {e}")))?,
        };
        if sigs.is_empty() {
            return Err(DirectoryError::Unsigned);
        }
        let canonical = crate::jcs::canonical(&doc)?;
        let pinned: HashMap<Kid, &VerifyingKey> =
            policy.anchors.iter().map(|k| (Kid::of(k), k)).collect();
        let mut valid = BTreeSet::new();
        for s in &sigs {
            let Some(key) = pinned.get(&s.kid) else {
                // Signatures by keys we do not pin are not evidence either way.
                continue;
            };
            let ok = s.alg == "ed25519"
                && b64url_decode(&s.sig, "signature")
                    .map(|sig| verify_signature(key, &canonical, &sig))
                    .unwrap_or(false);
            if !ok {
                return Err(DirectoryError::BadAnchorSignature {
                    kid: s.kid.to_string(),
                });
            }
            valid.insert(s.kid.clone());
        }
        let required = policy.threshold.max(1);
        if valid.len() < required {
            return Err(DirectoryError::UntrustedAnchor {
                valid: valid.len(),
                required,
            });
        }
        // Only now, with the signature checked, is the content worth interpreting.
        let body: DirectoryBody =
            serde_json::from_value(doc).map_err(|e| DirectoryError::Malformed(e.to_string()))?;
        for kid in &valid {
            if !body.anchors.contains(kid) {
                return Err(DirectoryError::Invalid(format!(
                    "signer {kid} is not listed in anchors"
                )));
            }
        }
        if let Some(held) = held_serial {
            if body.serial < held {
                return Err(DirectoryError::Rollback {
                    held,
                    offered: body.serial,
                });
            }
        }
        if now > body.expires_at {
            return Err(DirectoryError::Expired {
                expires_at: body.expires_at,
            });
        }
        if body.issued_at > now + policy.max_skew {
            return Err(DirectoryError::NotYetValid {
                issued_at: body.issued_at,
            });
        }
        body.validate()?;
        Directory::index(body, canonical, raw.to_vec())
    }

    fn index(
        body: DirectoryBody,
        canonical: Vec<u8>,
        raw: Vec<u8>,
    ) -> Result<Directory, DirectoryError> {
        let mut by_node = HashMap::new();
        let mut by_kid = HashMap::new();
        for (mi, m) in body.members.iter().enumerate() {
            by_node.insert(m.node_id.clone(), mi);
            for (ki, k) in m.keys.iter().enumerate() {
                let key = parse_public_key(&k.public_key)
                    .map_err(|e| DirectoryError::Invalid(e.to_string()))?;
                by_kid.insert(k.kid.clone(), (mi, ki, key));
            }
        }
        Ok(Directory {
            body,
            canonical,
            raw,
            by_node,
            by_kid,
        })
    }

    /// The directory content.
    pub fn body(&self) -> &DirectoryBody {
        &self.body
    }

    /// The serial.
    pub fn serial(&self) -> u64 {
        self.body.serial
    }

    /// The signed document as received, to serve to other nodes.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The members.
    pub fn members(&self) -> &[Member] {
        &self.body.members
    }

    /// Refuses lookups in an expired directory.
    pub fn check_fresh(&self, now: DateTime<Utc>) -> Result<(), LookupError> {
        if now > self.body.expires_at {
            Err(LookupError::DirectoryExpired(self.body.expires_at))
        } else {
            Ok(())
        }
    }

    /// A member by node id (whatever its validity).
    pub fn member(&self, node: &NodeId) -> Result<&Member, LookupError> {
        self.by_node
            .get(node)
            .map(|&i| &self.body.members[i])
            .ok_or_else(|| LookupError::UnknownNode(node.to_string()))
    }

    /// A member whose membership covers `at`.
    pub fn member_at(&self, node: &NodeId, at: DateTime<Utc>) -> Result<&Member, LookupError> {
        let m = self.member(node)?;
        if m.valid_at(at) {
            Ok(m)
        } else {
            Err(LookupError::MemberNotValid(node.to_string()))
        }
    }

    /// The key `kid` of `node`, usable for a signature made at `at`: refuses unknown and revoked keys,
    /// instants outside the key's window and outside the membership.
    pub fn key(
        &self,
        node: &NodeId,
        kid: &Kid,
        at: DateTime<Utc>,
    ) -> Result<VerifyingKey, LookupError> {
        let m = self.member(node)?;
        let Some((mi, ki, key)) = self.by_kid.get(kid) else {
            return Err(LookupError::UnknownKey(kid.to_string()));
        };
        if &self.body.members[*mi].node_id != node {
            // The kid exists but belongs to another member.
            return Err(LookupError::UnknownKey(kid.to_string()));
        }
        self.check_key(m, &m.keys[*ki], at)?;
        Ok(*key)
    }

    /// The key with this kid, whichever member holds it, checked as in [`Directory::key`].
    pub fn key_by_kid(
        &self,
        kid: &Kid,
        at: DateTime<Utc>,
    ) -> Result<(&Member, VerifyingKey), LookupError> {
        let Some((mi, ki, key)) = self.by_kid.get(kid) else {
            return Err(LookupError::UnknownKey(kid.to_string()));
        };
        let m = &self.body.members[*mi];
        self.check_key(m, &m.keys[*ki], at)?;
        Ok((m, *key))
    }

    fn check_key(&self, m: &Member, k: &MemberKey, at: DateTime<Utc>) -> Result<(), LookupError> {
        if k.status == KeyStatus::Revoked {
            return Err(LookupError::KeyRevoked(k.kid.to_string()));
        }
        if !m.valid_at(at) {
            return Err(LookupError::MemberNotValid(m.node_id.to_string()));
        }
        if at < k.not_before || k.not_after.is_some_and(|a| at > a) {
            return Err(LookupError::KeyNotValid(k.kid.to_string()));
        }
        Ok(())
    }

    /// The member that pins this TLS key (SPKI pin), if its membership covers `at`.
    pub fn member_by_tls_pin(&self, spki_pin: &str, at: DateTime<Utc>) -> Option<&Member> {
        self.body
            .members
            .iter()
            .find(|m| m.pins_tls_key(spki_pin) && m.valid_at(at))
    }

    /// Whether `node` may send envelopes of type `type_name`.
    pub fn type_allowed(&self, node: &NodeId, type_name: &str) -> bool {
        self.member(node).is_ok_and(|m| m.may_send(type_name))
    }
}

/// The directory a node currently holds, shared between its request handlers and delivery workers.
///
/// Replacing it enforces the rollback rule: a lower serial is refused, an equal serial is accepted only
/// with identical content.
#[derive(Debug, Clone)]
pub struct SharedDirectory {
    inner: Arc<RwLock<Arc<Directory>>>,
}

impl SharedDirectory {
    /// Starts from a verified directory.
    pub fn new(dir: Directory) -> SharedDirectory {
        SharedDirectory {
            inner: Arc::new(RwLock::new(Arc::new(dir))),
        }
    }

    /// The current directory.
    pub fn get(&self) -> Arc<Directory> {
        match self.inner.read() {
            Ok(g) => g.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Verifies a newly fetched document and makes it current. Returns `true` if it replaced the held one,
    /// `false` if it was the same edition.
    pub fn refresh(
        &self,
        raw: &[u8],
        policy: &TrustPolicy,
        now: DateTime<Utc>,
    ) -> Result<bool, DirectoryError> {
        let held = self.get();
        let dir = Directory::verify(raw, policy, now, Some(held.serial()))?;
        self.replace(dir)
    }

    /// Makes a verified directory current (rollback rule applies).
    pub fn replace(&self, dir: Directory) -> Result<bool, DirectoryError> {
        let mut guard = match self.inner.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        let held = guard.serial();
        if dir.serial() < held {
            return Err(DirectoryError::Rollback {
                held,
                offered: dir.serial(),
            });
        }
        if dir.serial() == held {
            if dir.canonical == guard.canonical {
                return Ok(false);
            }
            return Err(DirectoryError::SerialReused { serial: held });
        }
        tracing::info!(
            network = %dir.body.network,
            serial = dir.serial(),
            members = dir.body.members.len(),
            "directory replaced"
        );
        *guard = Arc::new(dir);
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn member(id: &str, key: &NodeKey, types: &[&str], now: DateTime<Utc>) -> Member {
        Member {
            node_id: NodeId::new(id).unwrap(),
            display_name: id.to_uppercase(),
            level: Level::Hospital,
            country: "FR".into(),
            base_url: format!("https://{id}.example"),
            keys: vec![MemberKey {
                kid: key.kid().clone(),
                public_key: key.public_key_b64(),
                status: KeyStatus::Active,
                not_before: now - Duration::days(1),
                not_after: None,
            }],
            message_types: types.iter().map(|s| s.to_string()).collect(),
            valid_from: now - Duration::days(1),
            valid_until: None,
            tls_spki_sha256: Vec::new(),
        }
    }

    fn body(
        serial: u64,
        anchor: &NodeKey,
        members: Vec<Member>,
        now: DateTime<Utc>,
    ) -> DirectoryBody {
        DirectoryBody {
            network: "test-net".into(),
            serial,
            issued_at: now,
            expires_at: now + Duration::days(30),
            anchors: vec![anchor.kid().clone()],
            members,
        }
    }

    fn bytes(v: &Value) -> Vec<u8> {
        serde_json::to_vec_pretty(v).unwrap()
    }

    #[test]
    fn sign_verify_and_lookups() {
        let now = Utc::now();
        let anchor = NodeKey::generate();
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        let mut mb = member("b", &b, &[], now);
        mb.keys[0].status = KeyStatus::Revoked;
        let doc = body(
            3,
            &anchor,
            vec![member("a", &a, &["consult.packet"], now), mb],
            now,
        )
        .sign(&[&anchor])
        .unwrap();
        let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
        let dir = Directory::verify(&bytes(&doc), &policy, now, None).unwrap();
        let na = NodeId::new("a").unwrap();
        let nb = NodeId::new("b").unwrap();
        assert_eq!(dir.serial(), 3);
        assert_eq!(dir.key(&na, a.kid(), now).unwrap(), a.verifying_key());
        assert_eq!(dir.key_by_kid(a.kid(), now).unwrap().0.node_id, na);
        assert!(dir.type_allowed(&na, "consult.packet"));
        assert!(!dir.type_allowed(&na, "consult.report"));
        assert_eq!(
            dir.key(&nb, b.kid(), now),
            Err(LookupError::KeyRevoked(b.kid().to_string()))
        );
        // a's kid does not belong to b.
        assert!(matches!(
            dir.key(&nb, a.kid(), now),
            Err(LookupError::UnknownKey(_))
        ));
        assert!(matches!(
            dir.key(&NodeId::new("zz").unwrap(), a.kid(), now),
            Err(LookupError::UnknownNode(_))
        ));
        // Before the key's window.
        assert!(matches!(
            dir.key(&na, a.kid(), now - Duration::days(2)),
            Err(LookupError::MemberNotValid(_))
        ));
    }

    #[test]
    fn whitespace_and_member_order_do_not_matter() {
        let now = Utc::now();
        let anchor = NodeKey::generate();
        let doc = body(1, &anchor, vec![], now).sign(&[&anchor]).unwrap();
        // Compact form, different member order via a round trip through a BTreeMap-backed Value.
        let compact = serde_json::to_vec(&doc).unwrap();
        let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
        assert!(Directory::verify(&compact, &policy, now, None).is_ok());
        let mut text = String::from_utf8(compact).unwrap();
        text = text.replace(",\"", ",\n  \"");
        assert!(Directory::verify(text.as_bytes(), &policy, now, None).is_ok());
    }

    #[test]
    fn refusals() {
        let now = Utc::now();
        let anchor = NodeKey::generate();
        let other = NodeKey::generate();
        let a = NodeKey::generate();
        let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
        let good = body(
            5,
            &anchor,
            vec![member("a", &a, &["consult.packet"], now)],
            now,
        );
        let doc = good.sign(&[&anchor]).unwrap();

        // Unsigned.
        let mut unsigned = doc.clone();
        unsigned.as_object_mut().unwrap().remove("signatures");
        assert!(matches!(
            Directory::verify(&bytes(&unsigned), &policy, now, None),
            Err(DirectoryError::Unsigned)
        ));

        // Tampered content: the anchor's signature no longer verifies.
        let mut tampered = doc.clone();
        tampered["members"][0]["message_types"] =
            serde_json::json!(["consult.packet", "consult.report"]);
        assert!(matches!(
            Directory::verify(&bytes(&tampered), &policy, now, None),
            Err(DirectoryError::BadAnchorSignature { .. })
        ));

        // Signed by a key that is not pinned.
        let mut by_other = good.clone();
        by_other.anchors = vec![other.kid().clone()];
        let by_other = by_other.sign(&[&other]).unwrap();
        assert!(matches!(
            Directory::verify(&bytes(&by_other), &policy, now, None),
            Err(DirectoryError::UntrustedAnchor { valid: 0, .. })
        ));

        // Forged signature value under the pinned kid.
        let mut forged = doc.clone();
        forged["signatures"][0]["sig"] = Value::String(b64url(&other.sign(b"x")));
        assert!(matches!(
            Directory::verify(&bytes(&forged), &policy, now, None),
            Err(DirectoryError::BadAnchorSignature { .. })
        ));

        // Rollback.
        assert!(matches!(
            Directory::verify(&bytes(&doc), &policy, now, Some(6)),
            Err(DirectoryError::Rollback {
                held: 6,
                offered: 5
            })
        ));

        // Expired.
        assert!(matches!(
            Directory::verify(&bytes(&doc), &policy, now + Duration::days(31), None),
            Err(DirectoryError::Expired { .. })
        ));

        // Issued in the future.
        assert!(matches!(
            Directory::verify(&bytes(&doc), &policy, now - Duration::hours(1), None),
            Err(DirectoryError::NotYetValid { .. })
        ));

        // Kid that does not match its key, even when properly signed.
        let mut wrong_kid = good.clone();
        wrong_kid.members[0].keys[0].kid = other.kid().clone();
        assert!(matches!(
            wrong_kid.sign(&[&anchor]),
            Err(DirectoryError::Invalid(_))
        ));

        // Not JSON.
        assert!(matches!(
            Directory::verify(b"{not json", &policy, now, None),
            Err(DirectoryError::Malformed(_))
        ));
    }

    #[test]
    fn tls_pins_are_optional_signed_and_checked() {
        let now = Utc::now();
        let anchor = NodeKey::generate();
        let a = NodeKey::generate();
        let b = NodeKey::generate();
        let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
        // Without pins the member serialises exactly as before the field existed.
        let plain = member("a", &a, &[], now);
        let v = serde_json::to_value(&plain).unwrap();
        assert!(v.get("tls_spki_sha256").is_none());
        // A directory written before the field existed (no member carries it) still verifies.
        let old = body(1, &anchor, vec![plain.clone()], now)
            .sign(&[&anchor])
            .unwrap();
        let dir = Directory::verify(&bytes(&old), &policy, now, None).unwrap();
        assert!(dir.members()[0].tls_spki_sha256.is_empty());

        let pin_a = tls_spki_pin(b"spki of a");
        let pin_a2 = tls_spki_pin(b"spki of a, renewed");
        let mut ma = plain;
        ma.tls_spki_sha256 = vec![pin_a.clone(), pin_a2.clone()];
        let mut mb = member("b", &b, &[], now);
        mb.valid_until = Some(now - Duration::hours(1));
        mb.valid_from = now - Duration::days(1);
        let pin_b = tls_spki_pin(b"spki of b");
        mb.tls_spki_sha256 = vec![pin_b.clone()];
        let doc = body(2, &anchor, vec![ma.clone(), mb.clone()], now)
            .sign(&[&anchor])
            .unwrap();
        let dir = Directory::verify(&bytes(&doc), &policy, now, None).unwrap();
        let na = NodeId::new("a").unwrap();
        assert_eq!(dir.member_by_tls_pin(&pin_a, now).unwrap().node_id, na);
        assert_eq!(dir.member_by_tls_pin(&pin_a2, now).unwrap().node_id, na);
        // b's membership ended: its pin no longer opens the door.
        assert!(dir.member_by_tls_pin(&pin_b, now).is_none());
        assert!(dir.member_by_tls_pin(&tls_spki_pin(b"x"), now).is_none());
        let listing = crate::cli::render(dir.body(), true);
        assert!(
            listing.contains(&format!("tls key sha256 {pin_a2}")),
            "{listing}"
        );

        // The pin is covered by the anchor signature.
        let mut tampered = doc.clone();
        tampered["members"][0]["tls_spki_sha256"][0] = Value::String(tls_spki_pin(b"evil"));
        assert!(matches!(
            Directory::verify(&bytes(&tampered), &policy, now, None),
            Err(DirectoryError::BadAnchorSignature { .. })
        ));
        // Not a SHA-256, or one TLS key claimed by two members: refused.
        let mut bad = ma.clone();
        bad.tls_spki_sha256 = vec!["abc".into()];
        assert!(matches!(
            body(3, &anchor, vec![bad], now).sign(&[&anchor]),
            Err(DirectoryError::Invalid(_))
        ));
        let mut shared = mb;
        shared.tls_spki_sha256 = vec![pin_a];
        assert!(matches!(
            body(3, &anchor, vec![ma, shared], now).sign(&[&anchor]),
            Err(DirectoryError::Invalid(_))
        ));
    }

    #[test]
    fn shared_directory_refuses_rollback_and_serial_reuse() {
        let now = Utc::now();
        let anchor = NodeKey::generate();
        let policy = TrustPolicy::new(vec![anchor.verifying_key()]);
        let d5 = bytes(&body(5, &anchor, vec![], now).sign(&[&anchor]).unwrap());
        let d4 = bytes(&body(4, &anchor, vec![], now).sign(&[&anchor]).unwrap());
        let d6 = bytes(&body(6, &anchor, vec![], now).sign(&[&anchor]).unwrap());
        let mut other6 = body(6, &anchor, vec![], now);
        other6.network = "other".into();
        let other6 = bytes(&other6.sign(&[&anchor]).unwrap());
        let shared = SharedDirectory::new(Directory::verify(&d5, &policy, now, None).unwrap());
        assert!(matches!(
            shared.refresh(&d4, &policy, now),
            Err(DirectoryError::Rollback {
                held: 5,
                offered: 4
            })
        ));
        assert!(!shared.refresh(&d5, &policy, now).unwrap());
        assert!(shared.refresh(&d6, &policy, now).unwrap());
        assert_eq!(shared.get().serial(), 6);
        assert!(matches!(
            shared.refresh(&other6, &policy, now),
            Err(DirectoryError::SerialReused { serial: 6 })
        ));
    }
}
