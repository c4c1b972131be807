//! Trust lists: per-country Document Signer Certificates (DSCs) for EU DCC, and issuer key sets (JWKS) with
//! revocation lists for SMART Health Cards.
//!
//! A node imports them from files (PEM/DER certificates, DGCA-style JSON lists, JWKS) and exchanges them with its
//! federation peers as one JSON document ([`TrustList::to_json`] / [`TrustList::from_json`]). Presence on the list is
//! the validity signal (hcert spec §5.1): there are no CRLs for DSCs.

use crate::crypto::{KeyType, PublicKey};
use crate::error::{Error, Result};
use crate::shc::ShcIssuer;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;
use x509_cert::der::oid::ObjectIdentifier;
use x509_cert::der::Decode;
use x509_cert::ext::pkix::ExtendedKeyUsage;
use x509_cert::Certificate;

const OID_EC_PUBLIC_KEY: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");

/// The three kinds of EU DCC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CertType {
    Test,
    Vaccination,
    Recovery,
}

impl CertType {
    /// The DCC payload key for this type.
    pub fn key(self) -> &'static str {
        match self {
            CertType::Test => "t",
            CertType::Vaccination => "v",
            CertType::Recovery => "r",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CertType::Test => "test",
            CertType::Vaccination => "vaccination",
            CertType::Recovery => "recovery",
        }
    }

    /// Maps an extended-key-usage OID to a DCC type. The spec's arc is 1.3.6.1.4.1.1847.2021.1.x; the test data
    /// (and the official runner) also use the mistyped arc 1.3.6.1.4.1.0.1847.2021.1.x, so both are accepted.
    pub fn from_eku_oid(oid: &str) -> Option<Self> {
        let last = oid
            .strip_prefix("1.3.6.1.4.1.1847.2021.1.")
            .or_else(|| oid.strip_prefix("1.3.6.1.4.1.0.1847.2021.1."))?;
        match last {
            "1" => Some(CertType::Test),
            "2" => Some(CertType::Vaccination),
            "3" => Some(CertType::Recovery),
            _ => None,
        }
    }
}

/// A Document Signer Certificate, parsed once when it is added to the trust list.
#[derive(Debug, Clone)]
pub struct Dsc {
    /// First 8 bytes of SHA-256 over the DER.
    pub kid: [u8; 8],
    /// The country the DSC was imported for (or its subject `C`), upper case.
    pub country: Option<String>,
    /// Validity in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// DCC types named by extended key usage; `None` (no EKU extension) means any type may be signed.
    pub allowed_types: Option<Vec<CertType>>,
    pub key: PublicKey,
    pub der: Arc<[u8]>,
}

impl Dsc {
    /// Parses a DER X.509 certificate.
    pub fn from_der(der: &[u8], country: Option<&str>) -> Result<Self> {
        let cert = Certificate::from_der(der)
            .map_err(|e| Error::SignerCertificate(format!("X.509 DER: {e}")))?;
        let tbs = cert.tbs_certificate();
        let spki = tbs.subject_public_key_info();
        let key_bits = spki
            .subject_public_key
            .as_bytes()
            .ok_or_else(|| {
                Error::SignerCertificate("public key bit string has unused bits".into())
            })?
            .to_vec();
        let key = match spki.algorithm.oid {
            OID_EC_PUBLIC_KEY => {
                let curve_oid: ObjectIdentifier = spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .ok_or_else(|| Error::SignerCertificate("EC key without a named curve".into()))?
                    .decode_as()
                    .map_err(|e| Error::SignerCertificate(format!("EC curve parameter: {e}")))?;
                let key_type = match curve_oid {
                    OID_P256 => KeyType::P256,
                    OID_P384 => KeyType::P384,
                    other => {
                        return Err(Error::SignerCertificate(format!(
                            "unsupported curve {other}"
                        )))
                    }
                };
                PublicKey::new(key_type, key_bits)
                    .map_err(|e| Error::SignerCertificate(e.to_string()))?
            }
            OID_RSA | OID_RSA_PSS => PublicKey::new(KeyType::Rsa, key_bits)
                .map_err(|e| Error::SignerCertificate(e.to_string()))?,
            other => {
                return Err(Error::SignerCertificate(format!(
                    "unsupported key algorithm {other}"
                )))
            }
        };
        let validity = tbs.validity();
        let not_before = secs(validity.not_before.to_unix_duration())?;
        let not_after = secs(validity.not_after.to_unix_duration())?;
        let allowed_types = match tbs.get_extension::<ExtendedKeyUsage>() {
            // An EKU extension with no OID at all (dgc-testdata CO15, "no OID present") restricts nothing.
            Ok(Some((_, eku))) if eku.0.is_empty() => None,
            Ok(Some((_, eku))) => Some(
                eku.0
                    .iter()
                    .filter_map(|oid| CertType::from_eku_oid(&oid.to_string()))
                    .collect(),
            ),
            Ok(None) => None,
            Err(e) => return Err(Error::SignerCertificate(format!("extended key usage: {e}"))),
        };
        let subject_country = tbs
            .subject()
            .country()
            .ok()
            .flatten()
            .map(|c| c.as_str().to_ascii_uppercase());
        Ok(Dsc {
            kid: kid_of(der),
            country: country.map(|c| c.to_ascii_uppercase()).or(subject_country),
            not_before,
            not_after,
            allowed_types,
            key,
            der: Arc::from(der),
        })
    }

    /// Whether this DSC may sign a certificate of `t`. With no EKU extension, any type; with one, only the types
    /// it names. An EKU that names no DCC type at all therefore allows none (dgc-testdata IS/3, and the official
    /// runner's reading).
    pub fn allows(&self, t: CertType) -> bool {
        self.allowed_types
            .as_ref()
            .is_none_or(|types| types.contains(&t))
    }
}

fn secs(d: std::time::Duration) -> Result<i64> {
    i64::try_from(d.as_secs()).map_err(|_| Error::SignerCertificate("validity out of range".into()))
}

/// kid = first 8 bytes of SHA-256 over the DSC DER (hcert spec App. A.1).
pub fn kid_of(der: &[u8]) -> [u8; 8] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut kid = [0u8; 8];
    kid.copy_from_slice(&digest.as_ref()[..8]);
    kid
}

/// The trust anchors a verifier accepts.
#[derive(Debug, Clone, Default)]
pub struct TrustList {
    dsc: HashMap<[u8; 8], Vec<Dsc>>,
    shc: BTreeMap<String, ShcIssuer>,
}

/// One DSC entry in the exchange format (also the DGCA verifier-service shape: kid, country, rawData).
#[derive(Debug, Serialize, Deserialize)]
struct DscEntry {
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    country: Option<String>,
    #[serde(
        rename = "rawData",
        alias = "raw_data",
        alias = "certificate",
        alias = "der"
    )]
    raw_data: String,
}

/// The exchange document.
#[derive(Debug, Serialize, Deserialize)]
struct TrustDocument {
    #[serde(default)]
    dsc: Vec<DscEntry>,
    #[serde(default)]
    shc: Vec<serde_json::Value>,
}

impl TrustList {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a DSC. Duplicate kids are kept: the verifier tries every DSC with that kid.
    pub fn add_dsc(&mut self, dsc: Dsc) {
        let list = self.dsc.entry(dsc.kid).or_default();
        if !list.iter().any(|d| d.der == dsc.der) {
            list.push(dsc);
        }
    }

    /// Parses and adds a DER certificate.
    pub fn add_dsc_der(&mut self, der: &[u8], country: Option<&str>) -> Result<[u8; 8]> {
        let dsc = Dsc::from_der(der, country)?;
        let kid = dsc.kid;
        self.add_dsc(dsc);
        Ok(kid)
    }

    /// Adds every `CERTIFICATE` block of a PEM text; returns how many were added.
    pub fn add_pem(&mut self, pem: &[u8], country: Option<&str>) -> Result<usize> {
        let certs = Certificate::load_pem_chain(pem)
            .map_err(|e| Error::SignerCertificate(format!("PEM: {e}")))?;
        for cert in &certs {
            use x509_cert::der::Encode;
            let der = cert
                .to_der()
                .map_err(|e| Error::SignerCertificate(e.to_string()))?;
            self.add_dsc_der(&der, country)?;
        }
        Ok(certs.len())
    }

    /// All DSCs with this kid (possibly several).
    pub fn dscs(&self, kid: &[u8]) -> &[Dsc] {
        <[u8; 8]>::try_from(kid)
            .ok()
            .and_then(|k| self.dsc.get(&k))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    pub fn dsc_count(&self) -> usize {
        self.dsc.values().map(Vec::len).sum()
    }

    /// Countries with at least one DSC.
    pub fn countries(&self) -> Vec<String> {
        let mut c: Vec<String> = self
            .dsc
            .values()
            .flatten()
            .filter_map(|d| d.country.clone())
            .collect();
        c.sort();
        c.dedup();
        c
    }

    /// Adds (or replaces) a SMART Health Card issuer.
    pub fn add_shc_issuer(&mut self, issuer: ShcIssuer) {
        self.shc.insert(issuer.iss.clone(), issuer);
    }

    pub fn shc_issuer(&self, iss: &str) -> Option<&ShcIssuer> {
        self.shc.get(iss)
    }

    pub fn shc_issuer_mut(&mut self, iss: &str) -> Option<&mut ShcIssuer> {
        self.shc.get_mut(iss)
    }

    /// Merges another list into this one (mutual recognition: a peer's anchors join ours).
    pub fn merge(&mut self, other: TrustList) {
        for dsc in other.dsc.into_values().flatten() {
            self.add_dsc(dsc);
        }
        for (iss, issuer) in other.shc {
            self.shc.insert(iss, issuer);
        }
    }

    /// Imports a file, recognising its form by content: PEM certificates, a DER certificate, the exchange JSON
    /// (`{"dsc":[…],"shc":[…]}`), a DGCA-style DSC list (`[{kid,country,rawData}]` or `{"certificates":[…]}`), or an
    /// SHC issuer JWKS carrying its issuer URL (`{"iss": …, "keys": […]}`).
    pub fn import_file(&mut self, path: &Path) -> Result<usize> {
        let data =
            std::fs::read(path).map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
        self.import_bytes(&data).map_err(|e| match e {
            Error::TrustList { detail, .. } => Error::TrustList {
                path: path.display().to_string(),
                detail,
            },
            other => Error::TrustList {
                path: path.display().to_string(),
                detail: other.to_string(),
            },
        })
    }

    /// See [`TrustList::import_file`].
    pub fn import_bytes(&mut self, data: &[u8]) -> Result<usize> {
        let data = data.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(data);
        let trimmed = data.trim_ascii_start();
        if trimmed.starts_with(b"-----BEGIN") {
            return self.add_pem(trimmed, None);
        }
        if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
            let json: serde_json::Value =
                serde_json::from_slice(trimmed).map_err(|e| Error::TrustList {
                    path: String::new(),
                    detail: format!("not JSON: {e}"),
                })?;
            return self.import_json(&json);
        }
        self.add_dsc_der(data, None).map(|_| 1)
    }

    /// Imports one of the JSON forms listed in [`TrustList::import_file`].
    pub fn import_json(&mut self, json: &serde_json::Value) -> Result<usize> {
        let bad = |detail: String| Error::TrustList {
            path: String::new(),
            detail,
        };
        if json.get("keys").is_some() {
            let issuer = ShcIssuer::from_jwks_json(json)?;
            let n = issuer.key_count();
            self.add_shc_issuer(issuer);
            return Ok(n);
        }
        let entries: Vec<DscEntry> =
            if let Some(list) = json.get("certificates").or_else(|| json.get("dsc")) {
                serde_json::from_value(list.clone()).map_err(|e| bad(format!("DSC list: {e}")))?
            } else if json.is_array() {
                serde_json::from_value(json.clone()).map_err(|e| bad(format!("DSC list: {e}")))?
            } else if json.get("shc").is_some() {
                Vec::new()
            } else {
                return Err(bad(
                    "unrecognised JSON: expected `dsc`, `certificates`, `shc` or `keys`".into(),
                ));
            };
        let mut n = 0;
        for entry in &entries {
            let der = base64::engine::general_purpose::STANDARD
                .decode(entry.raw_data.trim())
                .map_err(|e| bad(format!("rawData is not Base64: {e}")))?;
            let kid = self.add_dsc_der(&der, entry.country.as_deref())?;
            // A listed kid that disagrees with the certificate means a corrupted or forged entry.
            if let Some(listed) = &entry.kid {
                let listed = base64::engine::general_purpose::STANDARD
                    .decode(listed.trim())
                    .map_err(|e| bad(format!("kid is not Base64: {e}")))?;
                if listed != kid {
                    return Err(bad(format!(
                        "listed kid {} does not match the certificate",
                        hex::encode(listed)
                    )));
                }
            }
            n += 1;
        }
        if let Some(issuers) = json.get("shc").and_then(|s| s.as_array()) {
            for issuer in issuers {
                let issuer = ShcIssuer::from_jwks_json(issuer)?;
                n += issuer.key_count();
                self.add_shc_issuer(issuer);
            }
        }
        Ok(n)
    }

    /// The exchange document for federation peers: every DSC (with kid and country) and every SHC issuer.
    pub fn to_json(&self) -> serde_json::Value {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut dsc: Vec<DscEntry> = self
            .dsc
            .values()
            .flatten()
            .map(|d| DscEntry {
                kid: Some(b64.encode(d.kid)),
                country: d.country.clone(),
                raw_data: b64.encode(&d.der),
            })
            .collect();
        dsc.sort_by(|a, b| (&a.country, &a.kid).cmp(&(&b.country, &b.kid)));
        let shc = self.shc.values().map(ShcIssuer::to_json).collect();
        serde_json::to_value(TrustDocument { dsc, shc }).unwrap_or(serde_json::Value::Null)
    }

    /// Builds a list from the exchange document.
    pub fn from_json(json: &serde_json::Value) -> Result<Self> {
        let mut list = TrustList::new();
        list.import_json(json)?;
        Ok(list)
    }
}
