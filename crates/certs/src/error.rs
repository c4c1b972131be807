//! Typed errors. Every rejection carries a stable machine code (see [`Error::code`]) so that the node, the CLI
//! and translations can key on it, and a human message that says exactly what was wrong.

use thiserror::Error;

/// Everything that can go wrong while decoding, verifying or issuing a health certificate.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    #[error("input is empty")]
    Empty,
    #[error("input is {len} bytes long, more than the {max}-byte limit")]
    TooLong { len: usize, max: usize },
    #[error("unsupported or missing prefix: expected `HC1:`, found {found:?}")]
    Prefix { found: String },
    #[error("invalid Base45: {0}")]
    Base45(String),
    #[error("invalid zlib data: {0}")]
    Zlib(String),
    #[error("decompressed data exceeds the {max}-byte limit")]
    Inflated { max: usize },
    #[error("invalid CBOR: {0}")]
    Cbor(String),
    #[error("invalid COSE_Sign1 structure: {0}")]
    Cose(String),
    #[error("invalid CWT claims: {0}")]
    Cwt(String),
    #[error("unsupported signature algorithm {0}")]
    Algorithm(String),
    #[error("no `kid` in the protected or unprotected header")]
    NoKid,
    #[error("`kid` must be 8 bytes, got {0}")]
    KidLength(usize),
    #[error("no trusted signer for kid {kid}")]
    UnknownKid { kid: String },
    #[error("signature does not verify against any trusted signer for kid {kid}")]
    Signature { kid: String },
    #[error("signer key type does not match the algorithm {alg}")]
    KeyMismatch { alg: String },
    #[error("certificate not yet valid (issued at {iat}, validation clock {clock})")]
    NotYetValid { iat: String, clock: String },
    #[error("certificate expired at {exp} (validation clock {clock})")]
    Expired { exp: String, clock: String },
    #[error("certificate validity ({what}) lies outside the signer certificate's validity")]
    SignerValidity { what: String },
    #[error("signer certificate may not sign {cert_type} certificates (extended key usage)")]
    KeyUsage { cert_type: String },
    #[error("DCC payload does not match schema {version}: {detail}")]
    Schema { version: String, detail: String },
    #[error("unsupported DCC schema version {0:?}")]
    SchemaVersion(String),
    #[error("DCC must hold exactly one of `v`, `t`, `r`; found {0}")]
    CertificateType(usize),
    #[error("invalid signer certificate: {0}")]
    SignerCertificate(String),
    #[error("invalid trust list {path}: {detail}")]
    TrustList { path: String, detail: String },
    #[error("invalid key: {0}")]
    Key(String),
    #[error("invalid JWS: {0}")]
    Jws(String),
    #[error("invalid SMART Health Card: {0}")]
    Shc(String),
    #[error("SMART Health Card QR: {0}")]
    ShcQr(String),
    #[error("issuer {iss:?} is not trusted")]
    UntrustedIssuer { iss: String },
    #[error("SMART Health Card revoked (rid {rid})")]
    Revoked { rid: String },
    #[error("QR code: {0}")]
    Qr(String),
    #[error("cannot issue: {0}")]
    Issue(String),
    #[error("{0}")]
    Io(String),
}

impl Error {
    /// A stable code per reason, for APIs, translations and tests. Never change an existing code.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Empty => "input.empty",
            Error::TooLong { .. } => "input.too_long",
            Error::Prefix { .. } => "hcert.prefix",
            Error::Base45(_) => "hcert.base45",
            Error::Zlib(_) => "hcert.zlib",
            Error::Inflated { .. } => "hcert.zlib_too_large",
            Error::Cbor(_) => "hcert.cbor",
            Error::Cose(_) => "hcert.cose",
            Error::Cwt(_) => "hcert.cwt",
            Error::Algorithm(_) => "signature.algorithm",
            Error::NoKid => "signature.no_kid",
            Error::KidLength(_) => "signature.kid_length",
            Error::UnknownKid { .. } => "trust.unknown_kid",
            Error::Signature { .. } => "signature.invalid",
            Error::KeyMismatch { .. } => "signature.key_mismatch",
            Error::NotYetValid { .. } => "validity.not_yet_valid",
            Error::Expired { .. } => "validity.expired",
            Error::SignerValidity { .. } => "validity.signer",
            Error::KeyUsage { .. } => "trust.key_usage",
            Error::Schema { .. } => "schema.invalid",
            Error::SchemaVersion(_) => "schema.version",
            Error::CertificateType(_) => "schema.certificate_type",
            Error::SignerCertificate(_) => "trust.signer_certificate",
            Error::TrustList { .. } => "trust.list",
            Error::Key(_) => "key.invalid",
            Error::Jws(_) => "shc.jws",
            Error::Shc(_) => "shc.payload",
            Error::ShcQr(_) => "shc.qr",
            Error::UntrustedIssuer { .. } => "trust.untrusted_issuer",
            Error::Revoked { .. } => "shc.revoked",
            Error::Qr(_) => "qr",
            Error::Issue(_) => "issue",
            Error::Io(_) => "io",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
