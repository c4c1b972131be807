//! SMART Health Cards: compact JWS (ES256, raw-DEFLATE payload), `shc:/` numeric QR text (single or chunked),
//! the `.smart-health-card` file form, issuer JWKS with RFC 7638 thumbprint kids, and `rid` revocation lists.
//!
//! The JWS handling is written here rather than taken from a JOSE crate because SHC needs three things those
//! crates do not do together: the `zip: DEF` header with a raw-DEFLATE payload, P-256-only keys identified by
//! thumbprint, and byte-exact control over what is accepted (the negative vectors reject DER signatures, BOMs and
//! oversize tokens that general JOSE libraries accept or never see).

use crate::crypto::{KeyType, PublicKey, SigningKey};
use crate::error::{Error, Result};
use crate::verifier::HolderClaims;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::{Read, Write};

/// The longest JWS a single QR code can carry (version 22, numeric mode).
pub const MAX_SINGLE_QR_JWS: usize = 1_195;
/// Most chunks accepted in a (deprecated) chunked card.
pub const MAX_CHUNKS: usize = 16;
/// Longest JWS accepted at all (legacy chunked cards).
pub const MAX_JWS: usize = MAX_CHUNKS * MAX_CHUNK_JWS;
/// Most JWS characters one chunk of a chunked card may hold.
pub const MAX_CHUNK_JWS: usize = 1_191;
/// Largest inflated payload accepted (protects against DEFLATE bombs).
pub const MAX_PAYLOAD: usize = 256 * 1024;

/// One issuer key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShcKey {
    pub kid: String,
    pub x: String,
    pub y: String,
    pub key: PublicKey,
}

/// A revoked `rid`, optionally only for cards issued before a timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedRid {
    pub rid: String,
    pub before: Option<i64>,
}

/// A trusted SMART Health Card issuer: its URL, keys and revocation lists (per kid).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ShcIssuer {
    pub iss: String,
    pub keys: Vec<ShcKey>,
    pub crls: BTreeMap<String, Vec<RevokedRid>>,
}

/// RFC 7638 thumbprint of a P-256 key: base64url(SHA-256 of the canonical `{crv,kty,x,y}` JSON).
pub fn thumbprint(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    B64URL.encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        canonical.as_bytes(),
    ))
}

/// Validates an issuer URL: https, no trailing slash (spec: `iss` must not end with `/`).
pub fn check_issuer_url(iss: &str) -> Result<()> {
    if !iss.starts_with("https://") {
        return Err(Error::Shc(format!("issuer URL {iss:?} must use https")));
    }
    if iss.ends_with('/') {
        return Err(Error::Shc(format!(
            "issuer URL {iss:?} must not end with `/`"
        )));
    }
    if iss.len() <= "https://".len() || iss.contains(char::is_whitespace) {
        return Err(Error::Shc(format!("issuer URL {iss:?} is not a URL")));
    }
    Ok(())
}

impl ShcKey {
    /// Parses a public JWK; it must be an EC P-256 signing key for ES256 whose kid is its thumbprint.
    pub fn from_jwk(jwk: &Value) -> Result<Self> {
        let s = |k: &str| jwk.get(k).and_then(Value::as_str);
        if s("kty") != Some("EC") {
            return Err(Error::Key(format!("kty must be EC, got {:?}", s("kty"))));
        }
        if s("crv") != Some("P-256") {
            return Err(Error::Key(format!("crv must be P-256, got {:?}", s("crv"))));
        }
        if let Some(alg) = s("alg") {
            if alg != "ES256" {
                return Err(Error::Key(format!("alg must be ES256, got {alg:?}")));
            }
        }
        if let Some(u) = s("use") {
            if u != "sig" {
                return Err(Error::Key(format!("use must be sig, got {u:?}")));
            }
        }
        let (x, y) = match (s("x"), s("y")) {
            (Some(x), Some(y)) => (x, y),
            _ => return Err(Error::Key("missing x or y".into())),
        };
        let xb = B64URL
            .decode(x)
            .map_err(|e| Error::Key(format!("x is not base64url: {e}")))?;
        let yb = B64URL
            .decode(y)
            .map_err(|e| Error::Key(format!("y is not base64url: {e}")))?;
        if xb.len() != 32 || yb.len() != 32 {
            return Err(Error::Key("x and y must be 32 bytes each".into()));
        }
        let kid = thumbprint(x, y);
        if let Some(listed) = s("kid") {
            if listed != kid {
                return Err(Error::Key(format!(
                    "kid {listed:?} is not the key's thumbprint {kid:?}"
                )));
            }
        }
        let mut point = Vec::with_capacity(65);
        point.push(4);
        point.extend_from_slice(&xb);
        point.extend_from_slice(&yb);
        Ok(ShcKey {
            kid,
            x: x.to_string(),
            y: y.to_string(),
            key: PublicKey::new(KeyType::P256, point)?,
        })
    }

    fn to_jwk(&self) -> Value {
        json!({"kty": "EC", "kid": self.kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": self.x, "y": self.y})
    }
}

impl ShcIssuer {
    /// Builds an issuer from a JWKS. Keys for other uses (e.g. `use: enc`) are skipped; a signing key that is
    /// malformed rejects the whole set.
    pub fn from_jwks(iss: &str, jwks: &Value) -> Result<Self> {
        check_issuer_url(iss)?;
        let keys = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Key("JWKS has no `keys` array".into()))?;
        let mut issuer = ShcIssuer {
            iss: iss.to_string(),
            ..Default::default()
        };
        for jwk in keys {
            let is_signing = jwk
                .get("use")
                .and_then(Value::as_str)
                .is_none_or(|u| u == "sig");
            if !is_signing {
                continue;
            }
            issuer.keys.push(ShcKey::from_jwk(jwk)?);
        }
        if issuer.keys.is_empty() {
            return Err(Error::Key("JWKS holds no signing key".into()));
        }
        if let Some(crls) = jwks.get("crls").and_then(Value::as_array) {
            for crl in crls {
                issuer.add_crl(crl)?;
            }
        }
        Ok(issuer)
    }

    /// Builds an issuer from a JWKS document carrying its issuer URL as `iss`.
    pub fn from_jwks_json(json: &Value) -> Result<Self> {
        let iss = json.get("iss").and_then(Value::as_str).ok_or_else(|| {
            Error::Key("a JWKS in a trust list must name its issuer URL as `iss`".into())
        })?;
        Self::from_jwks(iss, json)
    }

    /// Adds a revocation list `{kid, method: "rid", ctr, rids: ["rid[.timestamp]"]}`.
    pub fn add_crl(&mut self, crl: &Value) -> Result<()> {
        let kid = crl
            .get("kid")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::Shc("CRL without kid".into()))?;
        if crl.get("method").and_then(Value::as_str) != Some("rid") {
            return Err(Error::Shc("CRL method must be \"rid\"".into()));
        }
        let rids = crl
            .get("rids")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Shc("CRL without rids".into()))?;
        let mut list = Vec::with_capacity(rids.len());
        for r in rids {
            let r = r
                .as_str()
                .ok_or_else(|| Error::Shc("CRL rid is not a string".into()))?;
            let (rid, before) = match r.split_once('.') {
                Some((rid, ts)) => (
                    rid,
                    Some(ts.parse::<i64>().map_err(|_| {
                        Error::Shc(format!("CRL timestamp {ts:?} is not an integer"))
                    })?),
                ),
                None => (r, None),
            };
            if rid.is_empty() || rid.len() > 24 || B64URL.decode(rid).is_err() {
                return Err(Error::Shc(format!("CRL rid {rid:?} is not base64url")));
            }
            list.push(RevokedRid {
                rid: rid.to_string(),
                before,
            });
        }
        self.crls.insert(kid.to_string(), list);
        Ok(())
    }

    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub fn key(&self, kid: &str) -> Option<&ShcKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// The exchange form: a JWKS with `iss` and `crls`.
    pub fn to_json(&self) -> Value {
        let crls: Vec<Value> = self
            .crls
            .iter()
            .map(|(kid, rids)| {
                let rids: Vec<String> = rids
                    .iter()
                    .map(|r| match r.before {
                        Some(t) => format!("{}.{t}", r.rid),
                        None => r.rid.clone(),
                    })
                    .collect();
                json!({"kid": kid, "method": "rid", "ctr": 1, "rids": rids})
            })
            .collect();
        json!({"iss": self.iss, "keys": self.keys.iter().map(ShcKey::to_jwk).collect::<Vec<_>>(), "crls": crls})
    }

    fn is_revoked(&self, kid: &str, rid: &str, nbf: f64) -> bool {
        self.crls.get(kid).is_some_and(|list| {
            list.iter()
                .any(|r| r.rid == rid && r.before.is_none_or(|t| nbf < t as f64))
        })
    }
}

/// Converts `shc:/` numeric text to the JWS. Accepts one QR text or several chunk texts (`shc:/i/n/…`), one per
/// line, in any order.
pub fn numeric_to_jws(text: &str) -> Result<String> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if lines.is_empty() {
        return Err(Error::Empty);
    }
    let mut chunks: Vec<(usize, usize, &str)> = Vec::new();
    for line in &lines {
        let body = line
            .strip_prefix("shc:/")
            .ok_or_else(|| Error::ShcQr(format!("missing `shc:/` header in {:?}", trunc(line))))?;
        let parts: Vec<&str> = body.split('/').collect();
        match parts.as_slice() {
            [digits] => chunks.push((1, 1, digits)),
            [i, n, digits] => {
                let i: usize = i
                    .parse()
                    .map_err(|_| Error::ShcQr(format!("chunk index {i:?} is not a number")))?;
                let n: usize = n
                    .parse()
                    .map_err(|_| Error::ShcQr(format!("chunk count {n:?} is not a number")))?;
                if n < 2 {
                    return Err(Error::ShcQr(format!(
                        "chunked header `shc:/{i}/{n}/` names {n} chunk; a single QR has no index"
                    )));
                }
                if i == 0 || i > n {
                    return Err(Error::ShcQr(format!(
                        "chunk index {i} out of range 1..={n}"
                    )));
                }
                chunks.push((i, n, digits));
            }
            _ => return Err(Error::ShcQr("malformed `shc:/` header".into())),
        }
    }
    let n = chunks[0].1;
    // Chunks must be balanced and as few as possible (each holds up to 1,191 JWS characters): if n − 1 chunks of
    // the longest given size would hold the whole card, the chunks are too small.
    let longest = chunks.iter().map(|c| c.2.len() / 2).max().unwrap_or(0);
    if n > MAX_CHUNKS || (n > 1 && longest * n <= (n - 1) * MAX_CHUNK_JWS) {
        return Err(Error::ShcQr(format!(
            "QR chunks too small: {n} chunks of at most {longest} characters, where {} would do",
            (longest * n).div_ceil(MAX_CHUNK_JWS).max(1)
        )));
    }
    if chunks.iter().any(|c| c.1 != n) {
        return Err(Error::ShcQr("chunks disagree on the chunk count".into()));
    }
    chunks.sort_by_key(|c| c.0);
    for (pos, c) in chunks.iter().enumerate() {
        if c.0 != pos + 1 {
            return Err(Error::ShcQr(
                if chunks.iter().filter(|d| d.0 == c.0).count() > 1 {
                    format!("duplicate chunk {}", c.0)
                } else {
                    format!("missing chunk {} of {n}", pos + 1)
                },
            ));
        }
    }
    if chunks.len() != n {
        return Err(Error::ShcQr(format!(
            "missing chunk {} of {n}",
            chunks.len() + 1
        )));
    }
    let mut jws = String::new();
    for (_, _, digits) in &chunks {
        if digits.len() % 2 != 0 {
            return Err(Error::ShcQr("odd number of digits".into()));
        }
        for pair in digits.as_bytes().chunks(2) {
            if !pair.iter().all(u8::is_ascii_digit) {
                return Err(Error::ShcQr("non-digit character in numeric data".into()));
            }
            let v = (pair[0] - b'0') * 10 + (pair[1] - b'0');
            if v > 77 {
                return Err(Error::ShcQr(format!(
                    "digit pair {v} is out of range (max 77)"
                )));
            }
            jws.push(char::from(v + 45));
        }
    }
    Ok(jws)
}

/// Converts a JWS to `shc:/` numeric text (one QR).
pub fn jws_to_numeric(jws: &str) -> String {
    let mut out = String::with_capacity(5 + jws.len() * 2);
    out.push_str("shc:/");
    for b in jws.bytes() {
        let v = b.saturating_sub(45);
        out.push(char::from(b'0' + v / 10));
        out.push(char::from(b'0' + v % 10));
    }
    out
}

fn trunc(s: &str) -> String {
    s.chars().take(12).collect()
}

/// A verified card.
#[derive(Debug, Clone, PartialEq)]
pub struct VerifiedCard {
    pub iss: String,
    pub kid: String,
    pub payload: Value,
    /// Problems that do not invalidate the card (e.g. a JWS too long for one QR code).
    pub warnings: Vec<String>,
}

impl VerifiedCard {
    /// Name and birth date from the bundle's Patient resource.
    pub fn holder_claims(&self) -> HolderClaims {
        let entries = self
            .payload
            .pointer("/vc/credentialSubject/fhirBundle/entry")
            .and_then(Value::as_array);
        let patient = entries
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("resource"))
            .find(|r| r.get("resourceType").and_then(Value::as_str) == Some("Patient"));
        let name = patient.and_then(|p| p.pointer("/name/0"));
        let given = name
            .and_then(|n| n.get("given"))
            .and_then(Value::as_array)
            .map(|g| {
                g.iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(" ")
            });
        HolderClaims {
            family_name: name
                .and_then(|n| n.get("family"))
                .and_then(Value::as_str)
                .map(String::from),
            given_name: given,
            dob: patient
                .and_then(|p| p.get("birthDate"))
                .and_then(Value::as_str)
                .map(String::from),
            certificate_type: self
                .payload
                .pointer("/vc/type")
                .and_then(Value::as_array)
                .map(|t| {
                    t.iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" ")
                }),
            issuer: Some(self.iss.clone()),
        }
    }
}

/// Extracts the JWS(s) from any accepted input form: compact JWS, `shc:/` numeric text, or file JSON.
pub fn input_to_jws(input: &str) -> Result<Vec<String>> {
    if input.starts_with('\u{feff}') {
        return Err(Error::Jws(
            "input starts with a UTF-8 byte order mark".into(),
        ));
    }
    let text = input.trim();
    if text.starts_with("shc:/") {
        return Ok(vec![numeric_to_jws(text)?]);
    }
    if text.starts_with("shc:") || (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())) {
        return Err(Error::ShcQr(
            "wrong QR header: numeric data must start with `shc:/`".into(),
        ));
    }
    if text.starts_with('{') {
        let file: Value =
            serde_json::from_str(text).map_err(|e| Error::Shc(format!("file is not JSON: {e}")))?;
        let list = file
            .get("verifiableCredential")
            .and_then(Value::as_array)
            .ok_or_else(|| Error::Shc("file has no `verifiableCredential` array".into()))?;
        if list.is_empty() {
            return Err(Error::Shc("`verifiableCredential` is empty".into()));
        }
        return list
            .iter()
            .map(|v| {
                v.as_str().map(String::from).ok_or_else(|| {
                    Error::Shc("`verifiableCredential` entry is not a string".into())
                })
            })
            .collect();
    }
    Ok(vec![text.to_string()])
}

/// Verifies every card in `input` against the trusted issuers at time `now` (seconds). All must verify.
pub fn verify_all(
    trust: &crate::trust::TrustList,
    input: &str,
    now: i64,
) -> Result<Vec<VerifiedCard>> {
    input_to_jws(input)?
        .iter()
        .map(|jws| verify_jws(trust, jws, now))
        .collect()
}

/// Verifies the first (usually only) card in `input`.
pub fn verify(trust: &crate::trust::TrustList, input: &str, now: i64) -> Result<VerifiedCard> {
    let mut cards = verify_all(trust, input, now)?;
    Ok(cards.swap_remove(0))
}

/// Splits and checks the JWS header, and inflates the payload, without checking the signature.
pub fn decode_jws(jws: &str) -> Result<(Value, Value, Vec<u8>, Vec<u8>)> {
    // Guard against absurd inputs before any decoding. Cards longer than one QR code (1,195 characters) are
    // legacy chunked cards: they verify, with a warning (see `VerifiedCard::warnings`).
    if jws.len() > MAX_JWS {
        return Err(Error::Jws(format!(
            "JWS is too long: {} characters",
            jws.len()
        )));
    }
    let mut parts = jws.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Jws(
            "compact JWS must have exactly three parts".into(),
        ));
    };
    let header_bytes = B64URL
        .decode(h)
        .map_err(|e| Error::Jws(format!("header is not base64url: {e}")))?;
    let header: Value = serde_json::from_slice(&header_bytes)
        .map_err(|e| Error::Jws(format!("header is not JSON: {e}")))?;
    if header.get("alg").and_then(Value::as_str) != Some("ES256") {
        return Err(Error::Jws(format!(
            "alg must be ES256, got {}",
            header.get("alg").unwrap_or(&Value::Null)
        )));
    }
    if header.get("zip").and_then(Value::as_str) != Some("DEF") {
        return Err(Error::Jws("header must carry zip: DEF".into()));
    }
    if header.get("kid").and_then(Value::as_str).is_none() {
        return Err(Error::Jws("header has no kid".into()));
    }
    let compressed = B64URL
        .decode(p)
        .map_err(|e| Error::Jws(format!("payload is not base64url: {e}")))?;
    let sig = B64URL
        .decode(s)
        .map_err(|e| Error::Jws(format!("signature is not base64url: {e}")))?;
    if sig.len() != 64 {
        return Err(Error::Jws(format!(
            "ES256 signature must be 64 raw bytes (r‖s), got {} (DER?)",
            sig.len()
        )));
    }
    let mut raw = Vec::new();
    flate2::read::DeflateDecoder::new(compressed.as_slice())
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::Shc(format!("payload is not raw DEFLATE: {e}")))?;
    if raw.len() > MAX_PAYLOAD {
        return Err(Error::Shc(format!(
            "inflated payload exceeds {MAX_PAYLOAD} bytes"
        )));
    }
    if raw.starts_with(b"\xEF\xBB\xBF") {
        return Err(Error::Shc(
            "payload starts with a UTF-8 byte order mark".into(),
        ));
    }
    let payload: Value = serde_json::from_slice(&raw)
        .map_err(|e| Error::Shc(format!("payload is not JSON: {e}")))?;
    let signing_input = jws.as_bytes()[..h.len() + 1 + p.len()].to_vec();
    Ok((header, payload, signing_input, sig))
}

/// Verifies one compact JWS.
pub fn verify_jws(trust: &crate::trust::TrustList, jws: &str, now: i64) -> Result<VerifiedCard> {
    let (header, payload, signing_input, sig) = decode_jws(jws)?;
    check_payload(&payload, now)?;
    let iss = payload
        .get("iss")
        .and_then(Value::as_str)
        .unwrap_or_default();
    check_issuer_url(iss)?;
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let issuer = trust
        .shc_issuer(iss)
        .ok_or_else(|| Error::UntrustedIssuer {
            iss: iss.to_string(),
        })?;
    let key = issuer.key(kid).ok_or_else(|| Error::UnknownKid {
        kid: kid.to_string(),
    })?;
    if !key
        .key
        .verify(crate::crypto::Algorithm::Es256, &signing_input, &sig)?
    {
        return Err(Error::Signature {
            kid: kid.to_string(),
        });
    }
    if let Some(rid) = payload.pointer("/vc/rid").and_then(Value::as_str) {
        let nbf = payload.get("nbf").and_then(Value::as_f64).unwrap_or(0.0);
        if issuer.is_revoked(kid, rid, nbf) {
            return Err(Error::Revoked {
                rid: rid.to_string(),
            });
        }
    }
    let mut warnings = Vec::new();
    if jws.len() > MAX_SINGLE_QR_JWS {
        warnings.push(format!(
            "JWS is too long for one QR code: {} characters, more than {MAX_SINGLE_QR_JWS} (chunked QR codes are deprecated)",
            jws.len()
        ));
    }
    Ok(VerifiedCard {
        iss: iss.to_string(),
        kid: kid.to_string(),
        payload,
        warnings,
    })
}

/// Checks the payload's shape and times: `iss`, numeric `nbf` in seconds (not milliseconds) and not in the
/// future, `exp` (if any) in seconds and not past, and the health-card VC type with a FHIR bundle.
pub fn check_payload(payload: &Value, now: i64) -> Result<()> {
    let now = now as f64;
    if payload.get("iss").and_then(Value::as_str).is_none() {
        return Err(Error::Shc("payload has no `iss`".into()));
    }
    // Seconds since 1970 stay below 1e11 until the year 5138; a larger value is milliseconds.
    let nbf = payload
        .get("nbf")
        .and_then(Value::as_f64)
        .ok_or_else(|| Error::Shc("payload has no numeric `nbf`".into()))?;
    if nbf > 1e11 {
        return Err(Error::Shc("`nbf` is in milliseconds, not seconds".into()));
    }
    if nbf > now {
        return Err(Error::NotYetValid {
            iat: nbf.to_string(),
            clock: now.to_string(),
        });
    }
    if let Some(exp) = payload.get("exp") {
        let exp = exp
            .as_f64()
            .ok_or_else(|| Error::Shc("`exp` is not a number".into()))?;
        if exp > 1e11 {
            return Err(Error::Shc("`exp` is in milliseconds, not seconds".into()));
        }
        if exp < nbf {
            return Err(Error::Shc("`exp` precedes `nbf`".into()));
        }
        if exp < now {
            return Err(Error::Expired {
                exp: exp.to_string(),
                clock: now.to_string(),
            });
        }
    }
    let types: Vec<&str> = payload
        .pointer("/vc/type")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Shc("payload has no `vc.type` array".into()))?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    if !types.contains(&"https://smarthealth.cards#health-card") {
        return Err(Error::Shc(
            "`vc.type` lacks https://smarthealth.cards#health-card".into(),
        ));
    }
    let bundle = payload
        .pointer("/vc/credentialSubject/fhirBundle")
        .ok_or_else(|| Error::Shc("payload has no `vc.credentialSubject.fhirBundle`".into()))?;
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(Error::Shc("`fhirBundle` is not a FHIR Bundle".into()));
    }
    check_vc_types(&types, bundle)?;
    check_bundle(bundle)
}

const VC_HEALTH_CARD: &str = "https://smarthealth.cards#health-card";
const VC_COVID19: &str = "https://smarthealth.cards#covid19";
const VC_KNOWN: [&str; 4] = [
    VC_HEALTH_CARD,
    "https://smarthealth.cards#immunization",
    "https://smarthealth.cards#laboratory",
    VC_COVID19,
];
/// CVX codes of COVID-19 vaccines (CDC CVX table).
const COVID_CVX: [&str; 22] = [
    "207", "208", "210", "211", "212", "213", "217", "218", "219", "221", "225", "226", "227",
    "228", "229", "230", "300", "301", "302", "500", "501", "502",
];

/// `vc.type` may list only the SHC types; the retired `VerifiableCredential` and unknown types are rejected, and a
/// card about COVID-19 vaccination must say so with `#covid19`.
fn check_vc_types(types: &[&str], bundle: &Value) -> Result<()> {
    if let Some(t) = types.iter().find(|t| **t == "VerifiableCredential") {
        return Err(Error::Shc(format!(
            "`vc.type` lists the optional type {t:?}, which SMART Health Cards no longer use"
        )));
    }
    if let Some(t) = types.iter().find(|t| !VC_KNOWN.contains(t)) {
        return Err(Error::Shc(format!(
            "`vc.type` lists the unknown type {t:?}"
        )));
    }
    let covid_vaccine = resources(bundle)
        .filter(|r| r.get("resourceType").and_then(Value::as_str) == Some("Immunization"))
        .any(|r| {
            r.pointer("/vaccineCode/coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .any(|c| {
                    c.get("system").and_then(Value::as_str) == Some("http://hl7.org/fhir/sid/cvx")
                        && c.get("code")
                            .and_then(Value::as_str)
                            .is_some_and(|code| COVID_CVX.contains(&code))
                })
        });
    if covid_vaccine && !types.contains(&VC_COVID19) {
        return Err(Error::Shc(
            "`vc.type` lacks the covid19 type for a COVID-19 vaccination".into(),
        ));
    }
    Ok(())
}

fn resources(bundle: &Value) -> impl Iterator<Item = &Value> {
    bundle
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("resource"))
}

/// The SMART Health Card FHIR rules the spec's validator enforces on a bundle: short `resource:N` references,
/// `meta` holding only `security`, no empty values, completed immunizations with exactly one occurrence, and
/// codes that carry a `coding`.
pub fn check_bundle(bundle: &Value) -> Result<()> {
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| Error::Shc("bundle has no `entry` array".into()))?;
    // Short references are `resource:N`. Cards may also use absolute URLs (the spec's insurance examples do), so
    // only a reference that tries the `resource` scheme and gets it wrong is rejected.
    let bad_short = |s: &str| {
        s.contains("resource")
            && !s
                .strip_prefix("resource:")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    for (i, entry) in entries.iter().enumerate() {
        if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
            if bad_short(full_url) {
                return Err(Error::Shc(format!(
                    "entry {i}: fullUrl {full_url:?} is not a short `resource:N` reference"
                )));
            }
        }
        let resource = entry
            .get("resource")
            .ok_or_else(|| Error::Shc(format!("entry {i} has no resource")))?;
        let kind = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for key in ["patient", "subject"] {
            if let Some(r) = resource
                .pointer(&format!("/{key}/reference"))
                .and_then(Value::as_str)
            {
                if bad_short(r) {
                    return Err(Error::Shc(format!(
                        "entry {i}: reference {r:?} is not a short `resource:N` reference"
                    )));
                }
            }
        }
        // The immunization and laboratory profiles minimise clinical resources to `meta.security` only; other
        // card types (the spec's insurance examples) keep FHIR's usual `meta`.
        let clinical = matches!(kind, "Immunization" | "Observation");
        if let Some(meta) = resource.get("meta").filter(|_| clinical) {
            let keys: Vec<&String> = meta
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            if keys.iter().any(|k| *k != "security") {
                return Err(Error::Shc(format!(
                    "entry {i}: bad meta: only `meta.security` is allowed"
                )));
            }
            if !keys.iter().any(|k| *k == "security") {
                return Err(Error::Shc(format!(
                    "entry {i}: bad meta: `meta` without `security`"
                )));
            }
        }
        let code_field = match kind {
            "Immunization" => Some("vaccineCode"),
            "Observation" => Some("code"),
            _ => None,
        };
        if let Some(field) = code_field {
            if resource.get(field).and_then(|c| c.get("coding")).is_none() {
                return Err(Error::Shc(format!(
                    "entry {i}: {kind}.{field} is missing its coding"
                )));
            }
        }
        if kind == "Immunization" {
            let status = resource
                .get("status")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if status != "completed" {
                return Err(Error::Shc(format!(
                    "entry {i}: Immunization status is {status:?}, not \"completed\""
                )));
            }
            let occurrences = ["occurrenceDateTime", "occurrenceString"]
                .iter()
                .filter(|k| resource.get(**k).is_some())
                .count();
            if occurrences != 1 {
                return Err(Error::Shc(format!("entry {i}: Immunization has {occurrences} occurrence[x] values, expected exactly one")));
            }
        }
        if let Some(path) = empty_value(resource, String::new()) {
            return Err(Error::Shc(format!(
                "entry {i}: empty value at {path} (FHIR forbids empty elements)"
            )));
        }
    }
    Ok(())
}

/// The path of the first empty string, array or object, if any.
fn empty_value(v: &Value, path: String) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() => Some(path),
        Value::Array(a) if a.is_empty() => Some(path),
        Value::Object(o) if o.is_empty() => Some(path),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| empty_value(x, format!("{path}/{i}"))),
        Value::Object(o) => o
            .iter()
            .find_map(|(k, x)| empty_value(x, format!("{path}/{k}"))),
        _ => None,
    }
}

/// Parses a JSON document strictly: only a final line break may follow the closing brace.
pub fn parse_strict_json(text: &str) -> Result<Value> {
    let body = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(text);
    let end = body.trim_end().len();
    if end != body.len() {
        return Err(Error::Shc(
            "trailing characters after the JSON document".into(),
        ));
    }
    serde_json::from_str(body).map_err(|e| Error::Shc(format!("not JSON: {e}")))
}

/// Reads a `.smart-health-card` file: the extension is required (spec §"File download").
pub fn read_file(path: &std::path::Path) -> Result<String> {
    if path.extension().is_none_or(|e| e != "smart-health-card") {
        return Err(Error::Shc(format!(
            "file {:?} must have the .smart-health-card extension",
            path.file_name().unwrap_or_default()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))
}

/// Issues a card: minified JSON payload, raw DEFLATE, ES256 over the compact serialisation.
pub fn issue(key: &SigningKey, kid: &str, payload: &Value) -> Result<String> {
    if key.algorithm() != crate::crypto::Algorithm::Es256 {
        return Err(Error::Issue(
            "SMART Health Cards are signed with ES256 only".into(),
        ));
    }
    let header = json!({"zip": "DEF", "alg": "ES256", "kid": kid});
    let body = serde_json::to_vec(payload).map_err(|e| Error::Issue(e.to_string()))?;
    let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&body)
        .map_err(|e| Error::Issue(e.to_string()))?;
    let compressed = enc.finish().map_err(|e| Error::Issue(e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(header.to_string()),
        B64URL.encode(compressed)
    );
    let sig = key.sign(signing_input.as_bytes())?;
    Ok(format!("{signing_input}.{}", B64URL.encode(sig)))
}

/// Loads an ES256 signing key from a private JWK (`d`, `x`, `y`), returning it with its thumbprint kid.
pub fn signing_key_from_jwk(jwk: &Value) -> Result<(SigningKey, String)> {
    let public = ShcKey::from_jwk(jwk)?;
    let d = jwk
        .get("d")
        .and_then(Value::as_str)
        .ok_or_else(|| Error::Key("private JWK has no `d`".into()))?;
    let d = B64URL
        .decode(d)
        .map_err(|e| Error::Key(format!("d is not base64url: {e}")))?;
    let pkcs8 = p256_pkcs8(&d, public.key.bytes())?;
    Ok((
        SigningKey::from_pkcs8(crate::crypto::Algorithm::Es256, &pkcs8)?,
        public.kid,
    ))
}

/// Wraps a raw P-256 private scalar and public point in the fixed PKCS#8 v1 layout (RFC 5915 inside
/// RFC 5208). `aws-lc-rs` imports keys as PKCS#8 only, so the few DER bytes are assembled here; it then checks that
/// the scalar and point belong together.
fn p256_pkcs8(d: &[u8], point: &[u8]) -> Result<Vec<u8>> {
    if d.len() != 32 || point.len() != 65 {
        return Err(Error::Key(
            "P-256 private key must be 32 bytes with a 65-byte public point".into(),
        ));
    }
    let mut out = vec![
        0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d,
        0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30,
        0x6b, 0x02, 0x01, 0x01, 0x04, 0x20,
    ];
    out.extend_from_slice(d);
    out.extend_from_slice(&[0xa1, 0x44, 0x03, 0x42, 0x00]);
    out.extend_from_slice(point);
    Ok(out)
}
