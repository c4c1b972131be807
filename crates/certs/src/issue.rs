//! Issuing EU DCCs: build the payload (vaccination, test or recovery), validate it against the current schema,
//! sign it as COSE_Sign1 with the issuer's DSC key (ES256 or PS256), and encode it as an `HC1:` text.

use crate::crypto::{Algorithm, SigningKey};
use crate::error::{Error, Result};
use crate::hcert::{self, CoseSign1};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// The schema version issued payloads declare.
pub const SCHEMA_VERSION: &str = "1.3.0";

/// The holder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Person {
    pub family_name: String,
    pub given_name: Option<String>,
    /// `YYYY`, `YYYY-MM` or `YYYY-MM-DD`.
    pub dob: String,
}

/// A vaccination event (`v`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Vaccination {
    pub tg: String,
    pub vp: String,
    pub mp: String,
    pub ma: String,
    pub dn: u32,
    pub sd: u32,
    pub dt: String,
    pub co: String,
    pub is: String,
}

/// A test (`t`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Test {
    pub tg: String,
    pub tt: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nm: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ma: Option<String>,
    pub sc: String,
    pub tr: String,
    pub tc: String,
    pub co: String,
    pub is: String,
}

/// A recovery (`r`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Recovery {
    pub tg: String,
    pub fr: String,
    pub co: String,
    pub is: String,
    pub df: String,
    pub du: String,
}

/// What the certificate attests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase", tag = "type")]
pub enum Event {
    Vaccination(Vaccination),
    Test(Test),
    Recovery(Recovery),
}

/// ICAO 9303 machine-readable transliteration for `fnt`/`gnt`: upper case A–Z, common Latin diacritics spelled
/// out, everything else (spaces, hyphens) as `<`. Written here because the schema's pattern is this exact
/// alphabet and no maintained crate implements the ICAO table.
pub fn transliterate(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.trim().chars().flat_map(char::to_uppercase) {
        let mapped: &str = match c {
            'A'..='Z' => {
                out.push(c);
                continue;
            }
            'Ä' | 'Æ' => "AE",
            'Ö' | 'Ø' | 'Œ' => "OE",
            'Ü' => "UE",
            'ß' => "SS",
            'À' | 'Á' | 'Â' | 'Ã' | 'Å' | 'Ā' | 'Ą' | 'Ă' => "A",
            'Ç' | 'Ć' | 'Č' | 'Ĉ' => "C",
            'Ď' | 'Đ' | 'Ð' => "D",
            'È' | 'É' | 'Ê' | 'Ë' | 'Ē' | 'Ę' | 'Ě' => "E",
            'Ğ' | 'Ĝ' | 'Ģ' => "G",
            'Ì' | 'Í' | 'Î' | 'Ï' | 'Ī' | 'İ' => "I",
            'Ł' | 'Ľ' | 'Ĺ' | 'Ļ' => "L",
            'Ñ' | 'Ń' | 'Ň' | 'Ņ' => "N",
            'Ò' | 'Ó' | 'Ô' | 'Õ' | 'Ō' | 'Ő' => "O",
            'Ř' | 'Ŕ' => "R",
            'Ś' | 'Š' | 'Ş' | 'Ș' => "S",
            'Ť' | 'Ţ' | 'Ț' => "T",
            'Ù' | 'Ú' | 'Û' | 'Ū' | 'Ů' | 'Ű' | 'Ų' => "U",
            'Ý' | 'Ÿ' => "Y",
            'Ź' | 'Ż' | 'Ž' => "Z",
            'Þ' => "TH",
            _ => "<",
        };
        out.push_str(mapped);
    }
    out.truncate(80);
    out
}

/// A fresh UVCI `URN:UVCI:01:<CC>:<32 hex>` (opaque unique identifier, no checksum).
pub fn new_uvci(country: &str) -> Result<String> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::SecureRandom::fill(&aws_lc_rs::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| Error::Issue("no randomness for the UVCI".into()))?;
    Ok(format!(
        "URN:UVCI:01:{}:{}",
        country.to_ascii_uppercase(),
        hex::encode_upper(bytes)
    ))
}

/// Builds a DCC payload for one event; `ci` is the UVCI.
pub fn build_dcc(person: &Person, event: &Event, ci: &str) -> Result<Value> {
    let mut nam = serde_json::Map::new();
    nam.insert("fn".into(), json!(person.family_name));
    nam.insert("fnt".into(), json!(transliterate(&person.family_name)));
    if let Some(g) = &person.given_name {
        nam.insert("gn".into(), json!(g));
        nam.insert("gnt".into(), json!(transliterate(g)));
    }
    let (key, mut entry) = match event {
        Event::Vaccination(v) => ("v", serde_json::to_value(v)),
        Event::Test(t) => ("t", serde_json::to_value(t)),
        Event::Recovery(r) => ("r", serde_json::to_value(r)),
    };
    let entry_obj = entry.as_mut().map_err(|e| Error::Issue(e.to_string()))?;
    if let Some(obj) = entry_obj.as_object_mut() {
        obj.insert("ci".into(), json!(ci));
    }
    let entry = entry.map_err(|e| Error::Issue(e.to_string()))?;
    let mut dcc = json!({ "ver": SCHEMA_VERSION, "nam": nam, "dob": person.dob });
    if let Some(obj) = dcc.as_object_mut() {
        obj.insert(key.into(), json!([entry]));
    }
    Ok(dcc)
}

/// An issuing authority: a DSC and its private key.
#[derive(Debug)]
pub struct DccIssuer {
    key: SigningKey,
    kid: [u8; 8],
    country: String,
}

impl DccIssuer {
    /// `dsc_der` is the issuer's Document Signer Certificate; its kid goes in the protected header. The key must
    /// match the certificate: checked by signing and verifying a probe.
    pub fn new(key: SigningKey, dsc_der: &[u8], country: &str) -> Result<Self> {
        let dsc = crate::trust::Dsc::from_der(dsc_der, Some(country))?;
        let probe = b"caravan key check";
        let sig = key.sign(probe)?;
        if !dsc.key.verify(key.algorithm(), probe, &sig)? {
            return Err(Error::Issue(
                "the private key does not belong to the DSC".into(),
            ));
        }
        Ok(DccIssuer {
            key,
            kid: dsc.kid,
            country: country.to_ascii_uppercase(),
        })
    }

    pub fn kid(&self) -> [u8; 8] {
        self.kid
    }

    pub fn algorithm(&self) -> Algorithm {
        self.key.algorithm()
    }

    /// Signs a DCC payload valid from `iat` to `exp` (Unix seconds); returns the COSE_Sign1 bytes. The payload
    /// must pass its schema first: an issuer must never sign what verifiers will reject.
    pub fn sign(&self, dcc: &Value, iat: i64, exp: i64) -> Result<Vec<u8>> {
        crate::schema::validate_dcc(dcc)?;
        if exp <= iat {
            return Err(Error::Issue("expiry must be after issuance".into()));
        }
        let protected_raw = hcert::encode_protected(self.key.algorithm(), &self.kid)?;
        let payload = hcert::encode_claims(Some(&self.country), iat, exp, dcc)?;
        let signature = self
            .key
            .sign(&hcert::sig_structure(&protected_raw, &payload))?;
        let cose = CoseSign1 {
            protected_raw,
            alg: Some(self.key.algorithm().cose_label()),
            kid: Some(self.kid.to_vec()),
            payload,
            signature,
        };
        cose.to_tagged_bytes()
    }

    /// Signs and encodes as `HC1:` text.
    pub fn issue(&self, dcc: &Value, iat: i64, exp: i64) -> Result<String> {
        hcert::encode_text(&self.sign(dcc, iat, exp)?)
    }
}
