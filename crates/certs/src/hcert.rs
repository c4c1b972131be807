//! EU Digital COVID Certificate (HCERT) wire format: `HC1:` → Base45 → zlib → COSE_Sign1 → CWT → DCC.
//!
//! Each stage is a public function so the conformance runner can test them one by one, exactly as the
//! dgc-testdata flags describe.

use crate::cbor;
use crate::crypto::Algorithm;
use crate::error::{Error, Result};
use ciborium::value::Value;

/// Longest accepted `HC1:` text. A version-40 QR code holds at most 4,296 alphanumeric characters.
pub const MAX_TEXT: usize = 4_296;
/// Largest accepted decompressed COSE message; real DCCs are below 2 KiB, this stops zip bombs.
pub const MAX_INFLATED: usize = 64 * 1024;

const CWT_ISS: i64 = 1;
const CWT_EXP: i64 = 4;
const CWT_IAT: i64 = 6;
const CWT_HCERT: i64 = -260;
const HCERT_EU_DCC_V1: i64 = 1;
const HEADER_ALG: i64 = 1;
const HEADER_KID: i64 = 4;
const TAG_COSE_SIGN1: u64 = 18;
const TAG_CWT: u64 = 61;

/// Removes the `HC1:` context identifier. Other versions (`HC2:`…) and other contexts are rejected.
pub fn strip_prefix(text: &str) -> Result<&str> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err(Error::Empty);
    }
    if text.len() > MAX_TEXT + 4 {
        return Err(Error::TooLong {
            len: text.len(),
            max: MAX_TEXT + 4,
        });
    }
    match text.strip_prefix("HC1:") {
        Some(rest) => Ok(rest),
        None => {
            let found: String = text.chars().take(4).collect();
            Err(Error::Prefix { found })
        }
    }
}

/// Base45 (RFC 9285) decoding.
///
/// Hand-written because it sits on the verification hot path: the `base45` crate measured ~13 µs for a typical
/// 600-character certificate here, this table-driven loop well under 1 µs. The `base45` crate still encodes.
pub fn base45_decode(text: &str) -> Result<Vec<u8>> {
    const INVALID: u8 = 0xff;
    const TABLE: [u8; 128] = {
        let alphabet = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:";
        let mut t = [INVALID; 128];
        let mut i = 0;
        while i < alphabet.len() {
            t[alphabet[i] as usize] = i as u8;
            i += 1;
        }
        t
    };
    let bytes = text.as_bytes();
    if bytes.is_empty() {
        return Err(Error::Base45("no data after the prefix".into()));
    }
    if bytes.len() % 3 == 1 {
        return Err(Error::Base45(format!(
            "length {} leaves a dangling character",
            bytes.len()
        )));
    }
    let value = |pos: usize| -> Result<u32> {
        let b = bytes[pos];
        match TABLE.get(b as usize) {
            Some(&v) if v != INVALID => Ok(u32::from(v)),
            _ => Err(Error::Base45(format!(
                "invalid character {:?} at position {pos}",
                char::from(b)
            ))),
        }
    };
    let mut out = Vec::with_capacity(bytes.len() / 3 * 2 + 1);
    let mut pos = 0;
    while pos + 3 <= bytes.len() {
        let n = value(pos)? + value(pos + 1)? * 45 + value(pos + 2)? * 45 * 45;
        if n > 0xffff {
            return Err(Error::Base45(format!(
                "group at position {pos} exceeds 65535"
            )));
        }
        out.extend_from_slice(&(n as u16).to_be_bytes());
        pos += 3;
    }
    if pos + 2 == bytes.len() {
        let n = value(pos)? + value(pos + 1)? * 45;
        if n > 0xff {
            return Err(Error::Base45(format!(
                "final pair at position {pos} exceeds 255"
            )));
        }
        out.push(n as u8);
    }
    Ok(out)
}

/// zlib (RFC 1950) inflation with a size limit.
pub fn inflate(data: &[u8]) -> Result<Vec<u8>> {
    // A zlib stream starts with CMF 0x78 (deflate, 32 KiB window); anything else is "not compressed" (test Z2).
    if data.first() != Some(&0x78) {
        return Err(Error::Zlib(
            "missing zlib header (data is not compressed)".into(),
        ));
    }
    // libdeflate (C, via `libdeflater`) inflates the whole message in one call straight into the output buffer:
    // measured ~3 µs faster per certificate than a streaming inflater here, which is most of the non-signature
    // cost of a verification. The decompressor is reused per thread; the output buffer doubles until it fits.
    thread_local! {
        static DECOMPRESSOR: std::cell::RefCell<libdeflater::Decompressor> =
            std::cell::RefCell::new(libdeflater::Decompressor::new());
    }
    DECOMPRESSOR.with(|d| {
        let mut d = d.borrow_mut();
        let mut size = (data.len() * 4).clamp(1024, MAX_INFLATED);
        loop {
            let mut out = vec![0u8; size];
            match d.zlib_decompress(data, &mut out) {
                Ok(n) => {
                    out.truncate(n);
                    return Ok(out);
                }
                Err(libdeflater::DecompressionError::InsufficientSpace) if size < MAX_INFLATED => {
                    size = (size * 4).min(MAX_INFLATED);
                }
                Err(libdeflater::DecompressionError::InsufficientSpace) => {
                    return Err(Error::Inflated { max: MAX_INFLATED })
                }
                Err(libdeflater::DecompressionError::BadData) => {
                    return Err(Error::Zlib("corrupt or truncated zlib stream".into()))
                }
            }
        }
    })
}

/// A parsed COSE_Sign1 message.
#[derive(Debug, Clone, PartialEq)]
pub struct CoseSign1 {
    /// The serialized protected header, exactly as signed.
    pub protected_raw: Vec<u8>,
    pub alg: Option<i64>,
    /// kid from the protected header, else from the unprotected header.
    pub kid: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub signature: Vec<u8>,
}

impl CoseSign1 {
    /// Parses a COSE_Sign1: tag 18, tag 61 wrapping tag 18 (test CO28), or untagged. Read directly with
    /// [`cbor::Reader`] (this is on every verification's path); the whole message must be one item.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        let mut r = cbor::Reader::new(bytes);
        let mut head = r.head()?;
        if head.major == 6 && head.arg == Some(TAG_CWT) {
            head = r.head()?;
            if head.major == 6 && head.arg != Some(TAG_COSE_SIGN1) {
                return Err(Error::Cose(format!(
                    "unexpected tag {:?} inside the CWT tag",
                    head.arg
                )));
            }
            if head.major != 6 && head.major != 4 {
                return Err(Error::Cose("CWT tag does not wrap a COSE_Sign1".into()));
            }
        }
        if head.major == 6 {
            if head.arg != Some(TAG_COSE_SIGN1) {
                return Err(Error::Cose(format!(
                    "tag {:?} is not COSE_Sign1 (18)",
                    head.arg
                )));
            }
            head = r.head()?;
        }
        if head.major != 4 {
            return Err(Error::Cose("not a CBOR array".into()));
        }
        if head.arg != Some(4) {
            return Err(Error::Cose(format!(
                "array of {:?} items, expected 4",
                head.arg
            )));
        }
        let protected_raw = bstr(&mut r, "protected header")?;
        let (mut alg, mut kid) = (None, None);
        if !protected_raw.is_empty() {
            let mut pr = cbor::Reader::new(&protected_raw);
            read_header(&mut pr, &mut alg, &mut kid, "protected")?;
            if !pr.is_at_end() {
                return Err(Error::Cose("trailing bytes in the protected header".into()));
            }
        }
        // The protected header wins; the unprotected one only fills what it lacks (spec §3.3.1, CO18–CO23).
        let (mut u_alg, mut u_kid) = (None, None);
        read_header(&mut r, &mut u_alg, &mut u_kid, "unprotected")?;
        let alg = alg.or(u_alg);
        let kid = kid.or(u_kid);
        let payload = bstr(&mut r, "payload")?;
        let signature = bstr(&mut r, "signature")?;
        if !r.is_at_end() {
            return Err(Error::Cbor("trailing bytes after the COSE_Sign1".into()));
        }
        Ok(CoseSign1 {
            protected_raw,
            alg,
            kid,
            payload,
            signature,
        })
    }

    /// The signature algorithm named by the header.
    pub fn algorithm(&self) -> Result<Algorithm> {
        Algorithm::from_cose(
            self.alg
                .ok_or_else(|| Error::Algorithm("no alg header".into()))?,
        )
    }

    /// Sig_structure = ["Signature1", protected, h'', payload] (RFC 8152 §4.4).
    pub fn sig_structure(&self) -> Vec<u8> {
        sig_structure(&self.protected_raw, &self.payload)
    }

    /// Serialises as tag 18 COSE_Sign1 with an empty unprotected header.
    pub fn to_tagged_bytes(&self) -> Result<Vec<u8>> {
        let value = Value::Tag(
            TAG_COSE_SIGN1,
            Box::new(Value::Array(vec![
                Value::Bytes(self.protected_raw.clone()),
                Value::Map(Vec::new()),
                Value::Bytes(self.payload.clone()),
                Value::Bytes(self.signature.clone()),
            ])),
        );
        cbor::to_vec(&value)
    }
}

/// Reads a definite-length byte string.
fn bstr(r: &mut cbor::Reader<'_>, what: &str) -> Result<Vec<u8>> {
    let head = r.head()?;
    if head.major != 2 {
        return Err(Error::Cose(format!("{what} is not a byte string")));
    }
    Ok(r.bytes_body(head)?.into_owned())
}

/// Reads a header map, taking `alg` (1) and `kid` (4) and skipping the rest.
fn read_header(
    r: &mut cbor::Reader<'_>,
    alg: &mut Option<i64>,
    kid: &mut Option<Vec<u8>>,
    what: &str,
) -> Result<()> {
    let head = r.head()?;
    if head.major != 5 {
        return Err(Error::Cose(format!("{what} header is not a map")));
    }
    let mut remaining = head.arg;
    loop {
        match remaining.as_mut() {
            Some(0) => break,
            Some(n) => *n -= 1,
            None if r.head_is_break()? => break,
            None => {}
        }
        let kh = r.head()?;
        let label = match kh.major {
            0 | 1 => Some(r.int_of(kh)?),
            3 => {
                r.skip_body(kh)?;
                None
            }
            _ => {
                return Err(Error::Cose(format!(
                    "{what} header label is neither integer nor text"
                )))
            }
        };
        match label {
            Some(HEADER_ALG) => {
                let vh = r.head()?;
                if !matches!(vh.major, 0 | 1) {
                    return Err(Error::Algorithm(format!("{what} alg is not an integer")));
                }
                *alg = Some(r.int_of(vh)?);
            }
            Some(HEADER_KID) => {
                let vh = r.head()?;
                if vh.major != 2 {
                    return Err(Error::Cose("kid is not a byte string".into()));
                }
                *kid = Some(r.bytes_body(vh)?.into_owned());
            }
            _ => r.skip(1)?,
        }
    }
    Ok(())
}

/// Builds the Sig_structure bytes directly: it is four fixed-shape items, and writing the heads by hand avoids
/// building and serialising a CBOR tree on every verification (this sits on the hot path of the benchmark).
pub fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + protected.len() + payload.len() + 18);
    out.push(0x84); // array(4)
    out.push(0x6a); // text(10)
    out.extend_from_slice(b"Signature1");
    cbor_head(&mut out, 2, protected.len() as u64);
    out.extend_from_slice(protected);
    out.push(0x40); // external_aad = h''
    cbor_head(&mut out, 2, payload.len() as u64);
    out.extend_from_slice(payload);
    out
}

fn cbor_head(out: &mut Vec<u8>, major: u8, len: u64) {
    let m = major << 5;
    match len {
        0..=23 => out.push(m | len as u8),
        24..=0xff => out.extend_from_slice(&[m | 24, len as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(m | 26);
            out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        _ => {
            out.push(m | 27);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
}

/// CWT claims of an HCERT.
#[derive(Debug, Clone, PartialEq)]
pub struct Claims {
    pub iss: Option<String>,
    /// Seconds since the Unix epoch.
    pub iat: Option<i64>,
    pub exp: Option<i64>,
    /// The `eu_dcc_v1` payload as JSON.
    pub dcc: serde_json::Value,
}

impl Claims {
    /// Parses the COSE payload as CWT claims holding one `-260 → {1: DCC}`, reading the CBOR directly (see
    /// [`cbor::Reader`]): this runs on every verification.
    pub fn parse(payload: &[u8]) -> Result<Self> {
        let mut r = cbor::Reader::new(payload);
        let head = r.head()?;
        if head.major != 5 {
            return Err(Error::Cwt("claims are not a CBOR map".into()));
        }
        let (mut iss, mut iat, mut exp, mut dcc) = (None, None, None, None);
        let mut seen = Vec::with_capacity(4);
        let mut remaining = head.arg;
        loop {
            match remaining.as_mut() {
                Some(0) => break,
                Some(n) => *n -= 1,
                None if r.head_is_break()? => break,
                None => {}
            }
            let kh = r.head()?;
            let label = match kh.major {
                0 | 1 => r.int_of(kh)?,
                // Text-keyed claims are not part of HCERT; read and ignore them.
                3 => {
                    r.skip_body(kh)?;
                    r.skip(1)?;
                    continue;
                }
                _ => return Err(Error::Cwt("claim key is neither integer nor text".into())),
            };
            if seen.contains(&label) {
                return Err(Error::Cwt(format!("duplicate claim {label}")));
            }
            seen.push(label);
            match label {
                CWT_ISS => match r.json(1)? {
                    serde_json::Value::String(s) => iss = Some(s),
                    _ => return Err(Error::Cwt("iss (1) is not text".into())),
                },
                CWT_IAT | CWT_EXP => {
                    let name = if label == CWT_IAT { "iat" } else { "exp" };
                    let v = r.json(1)?;
                    let secs = v
                        .as_i64()
                        .or_else(|| {
                            v.as_f64()
                                .filter(|f| f.is_finite() && f.abs() < 1e15)
                                .map(|f| f.floor() as i64)
                        })
                        .ok_or_else(|| {
                            Error::Cwt(format!("{name} ({label}) is not a NumericDate"))
                        })?;
                    if label == CWT_IAT {
                        iat = Some(secs);
                    } else {
                        exp = Some(secs);
                    }
                }
                CWT_HCERT => dcc = Some(read_hcert(&mut r)?),
                _ => r.skip(1)?,
            }
        }
        if !r.is_at_end() {
            return Err(Error::Cbor("trailing bytes after the claims".into()));
        }
        let dcc = dcc.ok_or_else(|| Error::Cwt("no hcert claim (-260)".into()))?;
        Ok(Claims { iss, iat, exp, dcc })
    }

    /// The certificate type: exactly one of `v`, `t`, `r` must be present and non-empty.
    pub fn cert_type(&self) -> Result<crate::trust::CertType> {
        use crate::trust::CertType;
        let present: Vec<CertType> = [CertType::Vaccination, CertType::Test, CertType::Recovery]
            .into_iter()
            .filter(|t| self.dcc.get(t.key()).is_some())
            .collect();
        match present.as_slice() {
            [one] => Ok(*one),
            other => Err(Error::CertificateType(other.len())),
        }
    }
}

/// Reads the hcert claim `{1: DCC}`.
fn read_hcert(r: &mut cbor::Reader<'_>) -> Result<serde_json::Value> {
    let hcert = r.json(1)?;
    let serde_json::Value::Object(map) = hcert else {
        return Err(Error::Cwt("hcert claim (-260) is not a map".into()));
    };
    if map.len() != 1 {
        return Err(Error::Cwt(format!(
            "hcert claim holds {} entries, expected 1",
            map.len()
        )));
    }
    match map.into_iter().next() {
        Some((k, dcc @ serde_json::Value::Object(_))) if k == "1" => Ok(dcc),
        Some((k, _)) if k == "1" => Err(Error::Cwt("eu_dcc_v1 is not a map".into())),
        _ => Err(Error::Cwt(
            "no eu_dcc_v1 (1) entry in the hcert claim".into(),
        )),
    }
}

/// Encodes CWT claims for issuing.
pub fn encode_claims(
    iss: Option<&str>,
    iat: i64,
    exp: i64,
    dcc: &serde_json::Value,
) -> Result<Vec<u8>> {
    let mut claims = Vec::new();
    if let Some(iss) = iss {
        claims.push((Value::Integer(CWT_ISS.into()), Value::Text(iss.to_string())));
    }
    claims.push((Value::Integer(CWT_EXP.into()), Value::Integer(exp.into())));
    claims.push((Value::Integer(CWT_IAT.into()), Value::Integer(iat.into())));
    claims.push((
        Value::Integer(CWT_HCERT.into()),
        Value::Map(vec![(
            Value::Integer(HCERT_EU_DCC_V1.into()),
            cbor::from_json(dcc)?,
        )]),
    ));
    cbor::to_vec(&Value::Map(claims))
}

/// Encodes a protected header `{1: alg, 4: kid}`.
pub fn encode_protected(alg: Algorithm, kid: &[u8]) -> Result<Vec<u8>> {
    cbor::to_vec(&Value::Map(vec![
        (
            Value::Integer(HEADER_ALG.into()),
            Value::Integer(alg.cose_label().into()),
        ),
        (
            Value::Integer(HEADER_KID.into()),
            Value::Bytes(kid.to_vec()),
        ),
    ]))
}

/// zlib compression at the best level, then Base45, then the `HC1:` prefix.
pub fn encode_text(cose: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(cose)
        .map_err(|e| Error::Zlib(e.to_string()))?;
    let compressed = enc.finish().map_err(|e| Error::Zlib(e.to_string()))?;
    Ok(format!("HC1:{}", base45::encode(compressed)))
}

/// Decodes an `HC1:` text up to the parsed COSE_Sign1 (no signature check).
pub fn decode_text(text: &str) -> Result<CoseSign1> {
    let b45 = strip_prefix(text)?;
    let compressed = base45_decode(b45)?;
    let cose = inflate(&compressed)?;
    CoseSign1::parse(&cose)
}
