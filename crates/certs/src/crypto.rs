//! Signature verification and signing on top of `ring` (constant-time, assembly-optimised P-256/P-384 and RSA).
//!
//! Keys are held in the exact byte form `ring` verifies with (SEC1 uncompressed point, PKCS#1 RSAPublicKey), so a
//! verification does no parsing beyond what `ring` itself does.

use crate::error::{Error, Result};
use ring::signature::{self, UnparsedPublicKey};

/// COSE / JOSE signature algorithms supported for health certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// ECDSA P-256 with SHA-256, raw r‖s signature (COSE -7).
    Es256,
    /// ECDSA P-384 with SHA-384, raw r‖s signature (COSE -35).
    Es384,
    /// RSASSA-PSS with SHA-256, MGF1-SHA-256, 32-byte salt (COSE -37).
    Ps256,
}

impl Algorithm {
    /// Maps a COSE algorithm label.
    pub fn from_cose(label: i64) -> Result<Self> {
        match label {
            -7 => Ok(Algorithm::Es256),
            -35 => Ok(Algorithm::Es384),
            -37 => Ok(Algorithm::Ps256),
            other => Err(Error::Algorithm(format!("COSE label {other}"))),
        }
    }

    pub fn cose_label(self) -> i64 {
        match self {
            Algorithm::Es256 => -7,
            Algorithm::Es384 => -35,
            Algorithm::Ps256 => -37,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Es256 => "ES256",
            Algorithm::Es384 => "ES384",
            Algorithm::Ps256 => "PS256",
        }
    }
}

/// Elliptic curves we accept for signer keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

/// A signer's public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// SEC1 uncompressed point (0x04 ‖ x ‖ y).
    Ec { curve: Curve, point: Vec<u8> },
    /// PKCS#1 RSAPublicKey DER.
    Rsa { pkcs1: Vec<u8> },
}

impl PublicKey {
    /// Verifies `signature` over `message`. Returns `Err(KeyMismatch)` when the key cannot be used with `alg`
    /// (test CO27: an RSA key named by an ECDSA algorithm must fail, not be tried anyway), and `Ok(false)` when the
    /// signature does not verify.
    pub fn verify(&self, alg: Algorithm, message: &[u8], sig: &[u8]) -> Result<bool> {
        let ok = match (alg, self) {
            (
                Algorithm::Es256,
                PublicKey::Ec {
                    curve: Curve::P256,
                    point,
                },
            ) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, sig)
                .is_ok(),
            (
                Algorithm::Es384,
                PublicKey::Ec {
                    curve: Curve::P384,
                    point,
                },
            ) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message, sig)
                .is_ok(),
            (Algorithm::Ps256, PublicKey::Rsa { pkcs1 }) => {
                UnparsedPublicKey::new(&signature::RSA_PSS_2048_8192_SHA256, pkcs1)
                    .verify(message, sig)
                    .is_ok()
            }
            (alg, _) => {
                return Err(Error::KeyMismatch {
                    alg: alg.name().to_string(),
                })
            }
        };
        Ok(ok)
    }
}

/// A private signing key for issuing (PKCS#8 DER).
pub enum SigningKey {
    Es256(signature::EcdsaKeyPair),
    Ps256(signature::RsaKeyPair),
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.write_str(match self {
            SigningKey::Es256(_) => "SigningKey::Es256(..)",
            SigningKey::Ps256(_) => "SigningKey::Ps256(..)",
        })
    }
}

impl SigningKey {
    /// Loads a PKCS#8 DER private key: P-256 for ES256, RSA for PS256.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self> {
        match alg {
            Algorithm::Es256 => {
                let rng = ring::rand::SystemRandom::new();
                signature::EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &rng,
                )
                .map(SigningKey::Es256)
                .map_err(|e| Error::Key(format!("not a P-256 PKCS#8 key: {e}")))
            }
            Algorithm::Ps256 => signature::RsaKeyPair::from_pkcs8(der)
                .map(SigningKey::Ps256)
                .map_err(|e| Error::Key(format!("not an RSA PKCS#8 key: {e}"))),
            Algorithm::Es384 => Err(Error::Issue("issuing with ES384 is not supported".into())),
        }
    }

    /// Loads a PKCS#8 key from PEM or DER.
    pub fn from_pkcs8_pem_or_der(alg: Algorithm, data: &[u8]) -> Result<Self> {
        let der = pem_to_der(data, "PRIVATE KEY")?.unwrap_or_else(|| data.to_vec());
        Self::from_pkcs8(alg, &der)
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            SigningKey::Es256(_) => Algorithm::Es256,
            SigningKey::Ps256(_) => Algorithm::Ps256,
        }
    }

    /// Signs `message`; ECDSA signatures are raw r‖s as COSE and JOSE require.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = ring::rand::SystemRandom::new();
        match self {
            SigningKey::Es256(kp) => kp
                .sign(&rng, message)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::Issue("ECDSA signing failed".into())),
            SigningKey::Ps256(kp) => {
                let mut sig = vec![0u8; kp.public().modulus_len()];
                kp.sign(&signature::RSA_PSS_SHA256, &rng, message, &mut sig)
                    .map_err(|_| Error::Issue("RSA-PSS signing failed".into()))?;
                Ok(sig)
            }
        }
    }
}

/// Extracts the DER inside the first PEM block with `label`, or `None` when the input is not PEM.
pub fn pem_to_der(data: &[u8], label: &str) -> Result<Option<Vec<u8>>> {
    let text = match std::str::from_utf8(data) {
        Ok(t) if t.contains("-----BEGIN") => t,
        _ => return Ok(None),
    };
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text
        .find(&begin)
        .ok_or_else(|| Error::Key(format!("no `{begin}` block")))?
        + begin.len();
    let stop = text[start..]
        .find(&end)
        .ok_or_else(|| Error::Key(format!("no `{end}` line")))?
        + start;
    let b64: String = text[start..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map(Some)
        .map_err(|e| Error::Key(format!("PEM body is not Base64: {e}")))
}
