//! The signed prescription a pharmacy verifies offline: a compact JWS (RFC 7515, `alg: EdDSA`, RFC 8037) over a
//! small JSON payload with what a pharmacy needs, printed as a QR code (`RX1:` + the JWS).
//!
//! The key is an Ed25519 keyring of the federation crate (`caravan_federation::keys`, with rotation and retired
//! keys), kept in `DATA/certs/rx-keyring.json` beside the node's health-certificate issuing keys and published as a
//! JWKS at `/.well-known/caravan-rx-keys.json`. Verification needs only that JWKS (or the raw public key): no
//! network call. The JWS is assembled by hand (three base64url parts and one Ed25519 signature) because the only
//! JOSE crates in the dependency tree do not support EdDSA with ed25519-dalek keys.

use caravan_federation::keys::{
    b64url, b64url_decode, parse_public_key, verify_signature, Keyring, Kid, NodeKey,
};
use chrono::{DateTime, Utc};
use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// The QR code's text prefix (versioned).
pub const QR_PREFIX: &str = "RX1:";

/// What the QR code carries (short keys keep the code small enough to scan from paper).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RxPayload {
    /// Payload version.
    pub v: u32,
    /// Issuing node (its name) and the prescription id there.
    pub iss: String,
    pub id: String,
    /// Issued and expiry (Unix seconds).
    pub iat: i64,
    pub exp: i64,
    /// Patient: name and birth date.
    pub pn: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub pb: String,
    /// Medication: code system, code, display.
    pub ms: String,
    pub mc: String,
    pub md: String,
    /// Dosage text, quantity to dispense, duration in days.
    pub dt: String,
    pub q: u32,
    pub d: u32,
    /// Prescriber and their institution.
    pub by: String,
    pub org: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("not a Caravan prescription code (expected RX1: and a compact JWS)")]
    Malformed,
    #[error("the header is not EdDSA")]
    Algorithm,
    #[error("signed with a key that is not among the published keys (kid {0})")]
    UnknownKey(String),
    #[error(
        "the signature does not match: the prescription was altered or not issued with this key"
    )]
    BadSignature,
    #[error("the prescription expired on {0}")]
    Expired(String),
}

/// Where the node's prescription keyring lives.
pub fn keyring_path(certs_dir: &Path) -> PathBuf {
    certs_dir.join("rx-keyring.json")
}

/// Load the keyring, creating it on first use. Creation is atomic (a hard link that fails if another process
/// created it first, in which case theirs is used), so two first prescriptions never sign with different keys.
pub fn load_or_create(certs_dir: &Path) -> Result<Keyring, String> {
    let path = keyring_path(certs_dir);
    if path.exists() {
        return Keyring::load(&path).map_err(|e| e.to_string());
    }
    std::fs::create_dir_all(certs_dir).map_err(|e| format!("{}: {e}", certs_dir.display()))?;
    let ring = Keyring::generate(None, Utc::now());
    let tmp = certs_dir.join(format!(".rx-keyring.{}.new", uuid::Uuid::new_v4()));
    caravan_federation::keys::write_private_file(&tmp, ring.to_json().as_bytes())
        .map_err(|e| e.to_string())?;
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(ring),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Keyring::load(&path).map_err(|e| e.to_string())
        }
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The public keys as a JWKS (RFC 8037 OKP keys), active first then retired.
pub fn jwks(ring: &Keyring) -> Value {
    let mut keys = vec![okp(
        ring.active().kid().as_str(),
        &ring.active().public_key_b64(),
    )];
    for r in ring.retired() {
        keys.push(okp(r.kid.as_str(), &r.public_key));
    }
    json!({ "keys": keys })
}

fn okp(kid: &str, x: &str) -> Value {
    json!({ "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig", "kid": kid, "x": x })
}

/// Public keys by kid from a JWKS, a Caravan keyring, or one raw base64url key.
pub fn parse_keys(text: &str) -> Result<Vec<(String, VerifyingKey)>, String> {
    let t = text.trim();
    if let Ok(k) = parse_public_key(t) {
        return Ok(vec![(Kid::of(&k).as_str().to_owned(), k)]);
    }
    let v: Value = serde_json::from_str(t)
        .map_err(|_| "not a JWKS, a keyring or a base64url Ed25519 public key".to_owned())?;
    if let Some(keys) = v.get("keys").and_then(Value::as_array) {
        let mut out = Vec::new();
        for k in keys {
            let x = k.get("x").and_then(Value::as_str).unwrap_or_default();
            let key = parse_public_key(x).map_err(|e| format!("JWKS key: {e}"))?;
            let kid = k
                .get("kid")
                .and_then(Value::as_str)
                .map(str::to_owned)
                .unwrap_or_else(|| Kid::of(&key).as_str().to_owned());
            out.push((kid, key));
        }
        return Ok(out);
    }
    let ring = Keyring::from_json(t).map_err(|e| e.to_string())?;
    let mut out = vec![(
        ring.active().kid().as_str().to_owned(),
        ring.active().verifying_key(),
    )];
    for r in ring.retired() {
        if let Ok(k) = parse_public_key(&r.public_key) {
            out.push((r.kid.as_str().to_owned(), k));
        }
    }
    Ok(out)
}

/// Sign a payload: the compact JWS.
pub fn sign(key: &NodeKey, payload: &RxPayload) -> Result<String, serde_json::Error> {
    let header = serde_json::to_vec(
        &json!({ "alg": "EdDSA", "kid": key.kid().as_str(), "typ": "caravan-rx+jws" }),
    )?;
    let body = serde_json::to_vec(payload)?;
    let input = format!("{}.{}", b64url(&header), b64url(&body));
    let sig = key.sign(input.as_bytes());
    Ok(format!("{input}.{}", b64url(&sig)))
}

/// The QR code text of a token.
pub fn qr_text(token: &str) -> String {
    format!("{QR_PREFIX}{token}")
}

/// Verify a QR text (or a bare JWS) against published keys at `now`; the payload if it is genuine and current.
pub fn verify(
    text: &str,
    keys: &[(String, VerifyingKey)],
    now: DateTime<Utc>,
) -> Result<RxPayload, VerifyError> {
    let t = text.trim();
    let token = t.strip_prefix(QR_PREFIX).unwrap_or(t);
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(VerifyError::Malformed);
    };
    let header: Value = b64url_decode(h, "header")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VerifyError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("EdDSA") {
        return Err(VerifyError::Algorithm);
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (_, key) = keys
        .iter()
        .find(|(k, _)| k == kid)
        .ok_or_else(|| VerifyError::UnknownKey(kid.to_owned()))?;
    let sig = b64url_decode(s, "signature").map_err(|_| VerifyError::Malformed)?;
    if !verify_signature(key, format!("{h}.{p}").as_bytes(), &sig) {
        return Err(VerifyError::BadSignature);
    }
    let payload: RxPayload = b64url_decode(p, "payload")
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(VerifyError::Malformed)?;
    if payload.exp < now.timestamp() {
        let when = DateTime::from_timestamp(payload.exp, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default();
        return Err(VerifyError::Expired(when));
    }
    Ok(payload)
}

/// The token of a QR text (or a bare JWS) and the prescription id its payload claims, without checking the
/// signature: for looking the prescription up, where the whole token must then equal the stored one.
pub fn claimed_id(text: &str) -> Option<(&str, String)> {
    let t = text.trim();
    let token = t.strip_prefix(QR_PREFIX).unwrap_or(t);
    let mut parts = token.split('.');
    let (Some(_), Some(p), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let payload: Value = serde_json::from_slice(&b64url_decode(p, "payload").ok()?).ok()?;
    let id = payload.get("id")?.as_str()?.to_owned();
    Some((token, id))
}

/// The QR code as an SVG document (the `qrcode` crate, through the health-certificate crate's renderer).
pub fn qr_svg(token: &str) -> Result<String, String> {
    certs::qr::render_svg(&qr_text(token)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn payload() -> RxPayload {
        RxPayload {
            v: 1,
            iss: "Node".into(),
            id: "x".into(),
            iat: 1_700_000_000,
            exp: 4_000_000_000,
            pn: "Aigerim Nurlanova".into(),
            pb: "1970-05-17".into(),
            ms: caravan_store::RXNORM.into(),
            mc: "308191".into(),
            md: "amoxicillin 500 MG Oral Capsule".into(),
            dt: "500 mg oral 3×/day for 7 days".into(),
            q: 21,
            d: 7,
            by: "Dr A".into(),
            org: "Hospital".into(),
        }
    }

    #[test]
    fn a_token_verifies_with_the_published_keys_only_and_tampering_fails() {
        let dir = tempfile::tempdir().unwrap();
        let ring = load_or_create(dir.path()).unwrap();
        // Loading again gives the same key.
        assert_eq!(
            load_or_create(dir.path()).unwrap().active().kid(),
            ring.active().kid()
        );
        let token = sign(ring.active(), &payload()).unwrap();
        let keys = parse_keys(&jwks(&ring).to_string()).unwrap();
        let now = Utc::now();
        assert_eq!(verify(&qr_text(&token), &keys, now).unwrap(), payload());
        // Another quantity in the payload: the signature no longer matches.
        let mut altered = payload();
        altered.q = 210;
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            b64url(&serde_json::to_vec(&altered).unwrap()),
            parts[2]
        );
        assert_eq!(verify(&forged, &keys, now), Err(VerifyError::BadSignature));
        // Another node's key is not this node's.
        let other = Keyring::generate(None, now);
        let other_keys = parse_keys(&other.active().public_key_b64()).unwrap();
        assert!(matches!(
            verify(&token, &other_keys, now),
            Err(VerifyError::UnknownKey(_))
        ));
        assert_eq!(verify("RX1:abc", &keys, now), Err(VerifyError::Malformed));
        let mut old = payload();
        old.exp = 1_700_000_001;
        let expired = sign(ring.active(), &old).unwrap();
        assert!(matches!(
            verify(&expired, &keys, now),
            Err(VerifyError::Expired(_))
        ));
        assert!(qr_svg(&token).unwrap().contains("<svg"));
    }

    #[test]
    fn the_claimed_id_is_read_from_a_code_with_or_without_its_prefix() {
        let ring = Keyring::generate(None, Utc::now());
        let token = sign(ring.active(), &payload()).unwrap();
        assert_eq!(
            claimed_id(&format!(" {} ", qr_text(&token))),
            Some((token.as_str(), "x".to_owned()))
        );
        assert_eq!(claimed_id(&token), Some((token.as_str(), "x".to_owned())));
        for bad in [
            "",
            "RX1:",
            "a.b",
            "a.b.c.d",
            "RX1:e30.!!.x",
            "RX1:e30.e30.x",
        ] {
            assert_eq!(claimed_id(bad), None, "{bad:?}");
        }
    }
}
