//! The signed, versioned business envelope every node-to-node message travels in.
//!
//! ```json
//! {"v":1,"id":"0193a6b2-…","from":"hospital-a.fr","to":"center-c.es","type":"consult.packet",
//!  "created":"2026-12-05T10:00:00.000Z","body":{…},
//!  "signature":{"alg":"ed25519","kid":"<sender kid>","sig":"<base64url>"}}
//! ```
//!
//! The signature is Ed25519 over the RFC 8785 canonical form of the envelope without its `signature`
//! member. The receiver checks it against the directory (sender known, key valid at `created` and not
//! revoked, type allowed for the sender, `to` is the receiver, size limit) before anything reads the body.
//! Envelopes are kept by both sides as signed bytes, for audit and non-repudiation.

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use chrono::{DateTime, Duration, DurationRound, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::directory::{Directory, LookupError};
use crate::keys::{b64url, b64url_decode, verify_signature, Kid, NodeKey};
use crate::NodeId;

/// The envelope format version this library writes and accepts.
pub const VERSION: u64 = 1;

/// The registry of envelope types. Unknown names are refused with [`EnvelopeError::UnknownType`]; adding a
/// type is adding a variant here (and to `docs/federation.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageType {
    /// A case packet sent to an expert node (`consult.packet`).
    ConsultPacket,
    /// The expert's report (`consult.report`).
    ConsultReport,
    /// A message in a consultation thread (`consult.message`).
    ConsultMessage,
    /// An invitation to a multidisciplinary meeting (`consult.invite`).
    ConsultInvite,
    /// A consultation status change (`consult.status`).
    ConsultStatus,
    /// An expert catalogue update (`catalogue.update`).
    CatalogueUpdate,
    /// A connectivity check carrying no data (`net.ping`).
    NetPing,
    /// The health-certificate signing keys of the sender's country, for mutual recognition (`trust.update`).
    TrustUpdate,
    /// A cross-border outbreak alert of a region that borders the receiver's country (`surv.alert`): disease,
    /// region, ISO week, observed count, upper bound, method and the region's recent weekly counts; aggregate
    /// figures only, never a case.
    SurvAlert,
    /// Weekly counts of a border region (`surv.aggregate`), aggregate only.
    SurvAggregate,
    /// An officer of the receiving country acknowledged a `surv.alert` (`surv.ack`), sent back to its origin.
    SurvAck,
    /// A prescription sent to another country's node for dispensing (`rx.prescription`).
    RxPrescription,
    /// A dispense reported back to the prescribing node (`rx.dispense`).
    RxDispense,
}

impl MessageType {
    /// Every registered type.
    pub const ALL: [MessageType; 13] = [
        MessageType::ConsultPacket,
        MessageType::ConsultReport,
        MessageType::ConsultMessage,
        MessageType::ConsultInvite,
        MessageType::ConsultStatus,
        MessageType::CatalogueUpdate,
        MessageType::NetPing,
        MessageType::TrustUpdate,
        MessageType::SurvAlert,
        MessageType::SurvAggregate,
        MessageType::SurvAck,
        MessageType::RxPrescription,
        MessageType::RxDispense,
    ];

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            MessageType::ConsultPacket => "consult.packet",
            MessageType::ConsultReport => "consult.report",
            MessageType::ConsultMessage => "consult.message",
            MessageType::ConsultInvite => "consult.invite",
            MessageType::ConsultStatus => "consult.status",
            MessageType::CatalogueUpdate => "catalogue.update",
            MessageType::NetPing => "net.ping",
            MessageType::TrustUpdate => "trust.update",
            MessageType::SurvAlert => "surv.alert",
            MessageType::SurvAggregate => "surv.aggregate",
            MessageType::SurvAck => "surv.ack",
            MessageType::RxPrescription => "rx.prescription",
            MessageType::RxDispense => "rx.dispense",
        }
    }
}

impl fmt::Display for MessageType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MessageType {
    type Err = EnvelopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageType::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| EnvelopeError::UnknownType(s.chars().take(64).collect()))
    }
}

impl Serialize for MessageType {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for MessageType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An envelope (the signed content).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// Format version, 1.
    pub v: u64,
    /// Unique id (UUID v7: time-ordered); the receiver de-duplicates on it.
    pub id: Uuid,
    /// Sending node.
    pub from: NodeId,
    /// Receiving node.
    pub to: NodeId,
    /// Type.
    #[serde(rename = "type")]
    pub kind: MessageType,
    /// When the sender made it (RFC 3339; written in UTC with milliseconds and `Z`).
    #[serde(with = "millis")]
    pub created: DateTime<Utc>,
    /// The business content.
    pub body: Map<String, Value>,
}

/// `created` is written as `2026-12-05T10:00:00.000Z` whatever its value, so the text is predictable for
/// other implementations; any RFC 3339 form is read.
mod millis {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Millis, true))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&text)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

/// The `signature` member.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EnvelopeSignature {
    alg: String,
    kid: Kid,
    sig: String,
}

/// An envelope with its signature, and the exact bytes that travel and are stored.
#[derive(Debug, Clone)]
pub struct SignedEnvelope {
    /// The content.
    pub envelope: Envelope,
    /// The signing key's kid.
    pub kid: Kid,
    bytes: Bytes,
}

impl SignedEnvelope {
    /// The wire/storage bytes (compact JSON).
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Why an envelope was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EnvelopeError {
    /// Larger than the configured limit.
    #[error("envelope of {size} bytes exceeds the limit of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Not JSON or not the envelope shape.
    #[error("malformed envelope: {0}")]
    Malformed(String),
    /// No `signature` member.
    #[error("envelope is not signed")]
    Unsigned,
    /// A version other than 1.
    #[error("unsupported envelope version {0}")]
    UnsupportedVersion(String),
    /// A type name not in the registry.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A signature algorithm other than ed25519.
    #[error("unsupported signature algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// Addressed to another node.
    #[error("envelope is addressed to {to}, not to this node")]
    NotForMe {
        /// The addressee.
        to: String,
    },
    /// `created` is later than now plus the allowed skew.
    #[error("envelope created in the future ({0})")]
    CreatedInFuture(DateTime<Utc>),
    /// The sender or its key is not usable according to the directory.
    #[error("sender: {0}")]
    Sender(LookupError),
    /// The signature does not verify.
    #[error("bad envelope signature")]
    BadSignature,
    /// The sender may not send this type.
    #[error("{from} may not send {kind}")]
    TypeNotAllowed {
        /// The sender.
        from: String,
        /// The type.
        kind: MessageType,
    },
    /// The sending node of the HTTP request is not the envelope's `from`.
    #[error("envelope from {envelope_from} was sent by {transport_sender}")]
    SenderMismatch {
        /// `from` in the envelope.
        envelope_from: String,
        /// The node whose key signed the HTTP request.
        transport_sender: String,
    },
    /// Could not be canonicalised.
    #[error("{0}")]
    Canonical(String),
}

/// Limits applied to incoming envelopes.
#[derive(Debug, Clone)]
pub struct EnvelopeLimits {
    /// Maximum size in bytes (default 8 MiB).
    pub max_bytes: usize,
    /// How far in the future `created` may be (default 5 minutes).
    pub max_skew: Duration,
}

impl Default for EnvelopeLimits {
    fn default() -> Self {
        EnvelopeLimits {
            max_bytes: 8 * 1024 * 1024,
            max_skew: Duration::minutes(5),
        }
    }
}

impl Envelope {
    /// A new envelope created now, with a fresh UUID v7.
    pub fn new(from: NodeId, to: NodeId, kind: MessageType, body: Map<String, Value>) -> Envelope {
        let now = Utc::now();
        // Millisecond precision keeps the text short and identical across languages.
        let created = now.duration_trunc(Duration::milliseconds(1)).unwrap_or(now);
        Envelope {
            v: VERSION,
            id: Uuid::now_v7(),
            from,
            to,
            kind,
            created,
            body,
        }
    }

    /// Signs the envelope.
    pub fn sign(self, key: &NodeKey) -> Result<SignedEnvelope, EnvelopeError> {
        let mut value =
            serde_json::to_value(&self).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        let canonical =
            crate::jcs::canonical(&value).map_err(|e| EnvelopeError::Canonical(e.to_string()))?;
        let sig = EnvelopeSignature {
            alg: "ed25519".into(),
            kid: key.kid().clone(),
            sig: b64url(&key.sign(&canonical)),
        };
        if let Value::Object(map) = &mut value {
            map.insert(
                "signature".into(),
                serde_json::to_value(&sig).map_err(|e| EnvelopeError::Malformed(e.to_string()))?,
            );
        }
        let bytes =
            serde_json::to_vec(&value).map_err(|e| EnvelopeError::Malformed(e.to_string()))?;
        Ok(SignedEnvelope {
            envelope: self,
            kid: key.kid().clone(),
            bytes: Bytes::from(bytes),
        })
    }
}

/// Reads an envelope's structure and signature without checking them against a directory (for showing
/// stored envelopes). Never use this to accept one.
pub fn parse_unverified(raw: &[u8]) -> Result<SignedEnvelope, EnvelopeError> {
    let (envelope, sig, _) = split(raw, usize::MAX)?;
    Ok(SignedEnvelope {
        envelope,
        kid: sig.kid,
        bytes: Bytes::copy_from_slice(raw),
    })
}

fn split(raw: &[u8], max: usize) -> Result<(Envelope, EnvelopeSignature, Vec<u8>), EnvelopeError> {
    if raw.len() > max {
        return Err(EnvelopeError::TooLarge {
            size: raw.len(),
            max,
        });
    }
    let mut value: Value = serde_json::from_slice(raw).map_err(json_err)?;
    let obj = value
        .as_object_mut()
        .ok_or_else(|| EnvelopeError::Malformed("not a JSON object".into()))?;
    let sig = match obj.remove("signature") {
        None | Some(Value::Null) => return Err(EnvelopeError::Unsigned),
        Some(v) => serde_json::from_value::<EnvelopeSignature>(v)
            .map_err(|_| EnvelopeError::Malformed("signature member".into()))?,
    };
    // Version and type first, so that an unknown type or a future version gets its own clear refusal
    // rather than a generic shape error.
    match obj.get("v") {
        Some(Value::Number(n)) if n.as_u64() == Some(VERSION) => {}
        Some(other) => {
            return Err(EnvelopeError::UnsupportedVersion(
                other.to_string().chars().take(32).collect(),
            ))
        }
        None => return Err(EnvelopeError::Malformed("missing v".into())),
    }
    match obj.get("type") {
        Some(Value::String(t)) => {
            t.parse::<MessageType>()?;
        }
        _ => {
            return Err(EnvelopeError::Malformed(
                "missing or non-string type".into(),
            ))
        }
    }
    if sig.alg != "ed25519" {
        return Err(EnvelopeError::UnsupportedAlgorithm(
            sig.alg.chars().take(32).collect(),
        ));
    }
    let canonical =
        crate::jcs::canonical(&value).map_err(|e| EnvelopeError::Canonical(e.to_string()))?;
    let envelope: Envelope = serde_json::from_value(value).map_err(json_err)?;
    Ok((envelope, sig, canonical))
}

/// serde_json's messages can quote the offending value, which may be clinical text: keep only the
/// category and position, so refusals can be logged and returned safely.
fn json_err(e: serde_json::Error) -> EnvelopeError {
    let kind = match e.classify() {
        serde_json::error::Category::Io => "I/O error",
        serde_json::error::Category::Syntax => "JSON syntax error",
        serde_json::error::Category::Data => "wrong shape or field type",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    if e.line() > 0 {
        EnvelopeError::Malformed(format!("{kind} at line {} column {}", e.line(), e.column()))
    } else {
        EnvelopeError::Malformed(kind.to_string())
    }
}

/// Verifies an incoming envelope for node `me` against the directory, at time `now`.
pub fn verify(
    raw: &[u8],
    directory: &Directory,
    me: &NodeId,
    now: DateTime<Utc>,
    limits: &EnvelopeLimits,
) -> Result<SignedEnvelope, EnvelopeError> {
    let (envelope, sig, canonical) = split(raw, limits.max_bytes)?;
    if &envelope.to != me {
        return Err(EnvelopeError::NotForMe {
            to: envelope.to.to_string(),
        });
    }
    if envelope.created > now + limits.max_skew {
        return Err(EnvelopeError::CreatedInFuture(envelope.created));
    }
    directory.check_fresh(now).map_err(EnvelopeError::Sender)?;
    // The key must have been valid when the envelope was made; revoked keys are refused whenever.
    let key = directory
        .key(&envelope.from, &sig.kid, envelope.created)
        .map_err(EnvelopeError::Sender)?;
    let sig_bytes =
        b64url_decode(&sig.sig, "signature").map_err(|_| EnvelopeError::BadSignature)?;
    if !verify_signature(&key, &canonical, &sig_bytes) {
        return Err(EnvelopeError::BadSignature);
    }
    if !directory.type_allowed(&envelope.from, envelope.kind.name()) {
        return Err(EnvelopeError::TypeNotAllowed {
            from: envelope.from.to_string(),
            kind: envelope.kind,
        });
    }
    Ok(SignedEnvelope {
        envelope,
        kid: sig.kid,
        bytes: Bytes::copy_from_slice(raw),
    })
}
