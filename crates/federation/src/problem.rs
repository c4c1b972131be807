//! Refusals on the wire: RFC 9457 problem objects (`application/problem+json`) with a stable `code` and a
//! `retryable` flag that tells the sending node whether another attempt can succeed.
//!
//! The `detail` text only names protocol facts (node ids, key ids, times); never envelope bodies.

use serde::{Deserialize, Serialize};

use crate::directory::LookupError;
use crate::envelope::EnvelopeError;
use crate::httpsig::HttpSigError;

/// The media type of problem responses.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// A problem object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:caravan:federation:<code>`.
    #[serde(rename = "type")]
    pub type_uri: String,
    /// Short human summary.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Stable machine code (see `docs/federation.md`).
    pub code: String,
    /// Whether the sender should try again later (after backoff) or give the message up (dead letter).
    pub retryable: bool,
    /// Details (protocol facts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl Problem {
    /// A problem with this code, status, retry flag, title and detail.
    pub fn new(
        code: &str,
        status: u16,
        retryable: bool,
        title: &str,
        detail: Option<String>,
    ) -> Problem {
        Problem {
            type_uri: format!("urn:caravan:federation:{code}"),
            title: title.to_string(),
            status,
            code: code.to_string(),
            retryable,
            detail,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| format!("{{\"code\":\"{}\"}}", self.code))
    }
}

fn lookup(e: &LookupError, detail: String) -> Problem {
    // A key or member the receiver does not know may simply be newer than the receiver's directory:
    // retrying after the directory is refreshed can succeed. A revoked key never will.
    match e {
        LookupError::UnknownNode(_) => Problem::new(
            "unknown_sender",
            403,
            true,
            "Sender not in the directory",
            Some(detail),
        ),
        LookupError::MemberNotValid(_) => Problem::new(
            "member_not_valid",
            403,
            true,
            "Sender membership not valid",
            Some(detail),
        ),
        LookupError::UnknownKey(_) => Problem::new(
            "unknown_key",
            401,
            true,
            "Key not in the directory",
            Some(detail),
        ),
        LookupError::KeyRevoked(_) => {
            Problem::new("key_revoked", 403, false, "Key revoked", Some(detail))
        }
        LookupError::KeyNotValid(_) => Problem::new(
            "key_not_valid",
            401,
            true,
            "Key not valid at that time",
            Some(detail),
        ),
        LookupError::DirectoryExpired(_) => Problem::new(
            "directory_expired",
            503,
            true,
            "Receiver's directory expired",
            Some(detail),
        ),
    }
}

impl From<&HttpSigError> for Problem {
    fn from(e: &HttpSigError) -> Problem {
        use HttpSigError as E;
        let d = Some(e.to_string());
        // Transport signatures are made afresh on every attempt, so most refusals here are worth a retry
        // (the sender's clock or configuration may be fixed meanwhile); the delivery engine still gives up
        // after its attempt limit.
        match e {
            E::Unsigned => Problem::new("unsigned", 401, true, "Request not signed", d),
            E::MissingLabel(_) => Problem::new("unsigned", 401, true, "Request not signed", d),
            E::Malformed { .. } => Problem::new(
                "malformed_signature",
                400,
                true,
                "Malformed signature headers",
                d,
            ),
            E::UnsupportedComponent(_)
            | E::NotCovered(_)
            | E::MissingComponent(_)
            | E::MissingParam(_) => Problem::new(
                "signature_policy",
                401,
                true,
                "Signature does not meet the policy",
                d,
            ),
            E::UnsupportedAlgorithm(_) => Problem::new(
                "unsupported_algorithm",
                401,
                true,
                "Unsupported signature algorithm",
                d,
            ),
            E::CreatedInFuture { .. } => Problem::new(
                "created_in_future",
                401,
                true,
                "Signature created in the future",
                d,
            ),
            E::Expired { .. } => {
                Problem::new("signature_expired", 401, true, "Signature expired", d)
            }
            E::TooOld { .. } => {
                Problem::new("signature_too_old", 401, true, "Signature too old", d)
            }
            E::MissingDigest | E::UnsupportedDigest => {
                Problem::new("digest_missing", 400, true, "Content-Digest missing", d)
            }
            E::DigestMismatch => Problem::new(
                "digest_mismatch",
                400,
                true,
                "Content-Digest does not match the body",
                d,
            ),
            E::Key { reason, .. } => lookup(reason, e.to_string()),
            E::BadSignature => Problem::new("bad_signature", 401, true, "Bad request signature", d),
            E::Replayed => Problem::new("replayed", 409, true, "Replayed request", d),
            E::ReplayCacheFull => Problem::new("busy", 503, true, "Receiver busy", d),
        }
    }
}

impl From<&EnvelopeError> for Problem {
    fn from(e: &EnvelopeError) -> Problem {
        use EnvelopeError as E;
        let d = Some(e.to_string());
        // Envelopes are signed once and stored: a refusal tied to their bytes is final.
        match e {
            E::TooLarge { .. } => Problem::new("too_large", 413, false, "Envelope too large", d),
            E::Malformed(_) | E::Canonical(_) => {
                Problem::new("malformed_envelope", 400, false, "Malformed envelope", d)
            }
            E::Unsigned => Problem::new("envelope_unsigned", 400, false, "Envelope not signed", d),
            E::UnsupportedVersion(_) => Problem::new(
                "unsupported_version",
                400,
                false,
                "Unsupported envelope version",
                d,
            ),
            E::UnknownType(_) => {
                Problem::new("unknown_type", 422, false, "Unknown message type", d)
            }
            E::UnsupportedAlgorithm(_) => Problem::new(
                "unsupported_algorithm",
                400,
                false,
                "Unsupported envelope signature algorithm",
                d,
            ),
            E::NotForMe { .. } => Problem::new(
                "not_for_me",
                421,
                false,
                "Envelope addressed to another node",
                d,
            ),
            E::CreatedInFuture(_) => Problem::new(
                "created_in_future",
                400,
                true,
                "Envelope created in the future",
                d,
            ),
            E::Sender(l) => lookup(l, e.to_string()),
            E::BadSignature => Problem::new(
                "bad_envelope_signature",
                400,
                false,
                "Bad envelope signature",
                d,
            ),
            E::TypeNotAllowed { .. } => Problem::new(
                "type_not_allowed",
                403,
                false,
                "Message type not allowed for the sender",
                d,
            ),
            E::SenderMismatch { .. } => Problem::new(
                "sender_mismatch",
                403,
                false,
                "Envelope sender differs from the request signer",
                d,
            ),
        }
    }
}
