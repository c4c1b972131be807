//! The node's certificate material in `DATA/certs/`, read and written with plain files so that an administrator can
//! see, back up and replace it:
//!
//! ```text
//! certs/trust/dsc-<CC>.json      trusted Document Signer Certificates of one country (exchange form {"dsc": [...]})
//! certs/trust/shc-<hash>.json    one trusted SMART Health Card issuer ({"shc": [{iss, keys, crls}]})
//! certs/rules/<CC>.json          business rules published by one country (an array, as the DCC Gateway serves them)
//! certs/rules/valueSets.json     the value sets the rules read ({id: [codes]})
//! certs/issuer/settings.json     {"shc_iss": "https://..."}: this node's SMART Health Card issuer URL
//! certs/issuer/dcc-<CC>-<created>-<kid>.key.pem / .dsc.pem   this node's DCC signing key and its DSC, per country
//! certs/issuer/shc-<created>-<kid>.key.pem                   this node's SMART Health Card signing key
//! ```
//!
//! Everything here is synchronous file work; the async side ([`super::CertsHub`]) runs it on the blocking pool.
//! Imports go through the `certs` and `certlogic` loaders, so a file the verifier could not use is refused.

use base64::Engine as _;
use certs::crypto::{Algorithm, SigningKey};
use certs::shc::ShcIssuer;
use certs::trust::Dsc;
use certs::{CertType, TrustList, Verifier};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A generated DSC is valid this long; it is replaced once less than [`DSC_MIN_LEFT_DAYS`] remain, so that a
/// certificate issued for a year always lies inside its signer's validity.
pub const DSC_VALID_DAYS: i64 = 730;
pub const DSC_MIN_LEFT_DAYS: i64 = 366;

/// What can go wrong with the material: the input (422) or the node's files (500).
#[derive(Debug, thiserror::Error)]
pub enum MaterialError {
    #[error("{0}")]
    Invalid(String),
    #[error("certificate files: {0}")]
    Io(String),
}

type Result<T, E = MaterialError> = std::result::Result<T, E>;

fn io(what: &Path) -> impl FnOnce(std::io::Error) -> MaterialError + '_ {
    move |e| MaterialError::Io(format!("{}: {e}", what.display()))
}

/// An upper-case ISO 3166-1 alpha-2 code (the DCC also uses `EL`/`UK` style codes and `EU` for templates).
pub fn country_code(s: &str) -> Result<String> {
    let c = s.trim().to_ascii_uppercase();
    if c.len() == 2 && c.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(c)
    } else {
        Err(MaterialError::Invalid(format!(
            "{s:?} is not a two-letter country code"
        )))
    }
}

/// Node settings for issuing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Settings {
    /// The SMART Health Card issuer URL (`iss`): https, no trailing slash. SHC issuing is refused until it is set.
    #[serde(default)]
    pub shc_iss: Option<String>,
}

/// One trusted DSC as the admin page and the API list it.
#[derive(Debug, Clone, Serialize)]
pub struct DscInfo {
    pub country: String,
    /// Base64 kid, as DSC lists write it.
    pub kid: String,
    pub not_before: String,
    pub not_after: String,
    /// DCC types the DSC may sign (`None` = any).
    pub types: Option<Vec<&'static str>>,
    /// One of this node's own issuing keys.
    pub own: bool,
}

/// One trusted SMART Health Card issuer.
#[derive(Debug, Clone, Serialize)]
pub struct ShcInfo {
    pub iss: String,
    pub keys: Vec<String>,
    pub own: bool,
}

/// This node's DCC signing key for one country.
#[derive(Clone)]
pub struct DccKeyFiles {
    pub country: String,
    pub key_pkcs8: Vec<u8>,
    pub dsc_der: Vec<u8>,
    pub kid_b64: String,
    pub not_after: i64,
}

impl std::fmt::Debug for DccKeyFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DccKeyFiles({}, {})", self.country, self.kid_b64)
    }
}

impl DccKeyFiles {
    pub fn issuer(&self) -> Result<certs::issue::DccIssuer> {
        let key = SigningKey::from_pkcs8(Algorithm::Es256, &self.key_pkcs8)
            .map_err(|e| MaterialError::Io(format!("DCC issuer key: {e}")))?;
        certs::issue::DccIssuer::new(key, &self.dsc_der, &self.country)
            .map_err(|e| MaterialError::Io(format!("DCC issuer key: {e}")))
    }
}

/// This node's SMART Health Card signing key.
#[derive(Clone)]
pub struct ShcKeyFile {
    pub key_pkcs8: Vec<u8>,
    pub kid: String,
    /// The public JWK.
    pub jwk: Value,
}

impl std::fmt::Debug for ShcKeyFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ShcKeyFile({})", self.kid)
    }
}

/// The material loaded into memory: what verifying and issuing need.
pub struct Loaded {
    pub trust: TrustList,
    pub rules: certs::rules::RuleSet,
    pub dsc: Vec<DscInfo>,
    pub shc: Vec<ShcInfo>,
    /// Country → number of rules it publishes (acceptance and invalidation).
    pub rule_countries: BTreeMap<String, usize>,
    pub value_sets: usize,
    /// The newest DCC key per country (what new certificates are signed with).
    pub dcc_keys: BTreeMap<String, DccKeyFiles>,
    pub shc_keys: Vec<ShcKeyFile>,
    pub settings: Settings,
    verifiers: Mutex<HashMap<(String, String), Arc<Verifier>>>,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Loaded({} DSCs, {} SHC issuers, {} rules)",
            self.dsc.len(),
            self.shc.len(),
            self.rules.rules.len()
        )
    }
}

impl Loaded {
    /// A verifier for one arrival country (rules of that country; `None` = technical checks only) and rule
    /// description language. Built once per pair and shared.
    pub fn verifier(&self, country: Option<&str>, lang: &str) -> Arc<Verifier> {
        let key = (country.unwrap_or("").to_owned(), lang.to_owned());
        let mut cache = self.verifiers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(v) = cache.get(&key) {
            return v.clone();
        }
        let rules = country.map(|c| certs::RulesConfig {
            rules: self.rules.clone(),
            country: c.to_owned(),
            lang: lang.to_owned(),
        });
        let v = Arc::new(Verifier::new(
            self.trust.clone(),
            rules,
            certs::Clock::System,
        ));
        if cache.len() > 256 {
            cache.clear();
        }
        cache.insert(key, v.clone());
        v
    }

    /// Countries whose DSCs are trusted.
    pub fn trusted_countries(&self) -> Vec<String> {
        self.trust.countries()
    }

    /// The public JWKS of this node's SMART Health Card keys (`/.well-known/jwks.json`).
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.shc_keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() })
    }
}

/// Modification stamps of the three folders: a change by another process (the CLI) is noticed on the next request.
pub type Stamp = [Option<std::time::SystemTime>; 3];

/// The `DATA/certs` folder.
#[derive(Debug, Clone)]
pub struct CertsDir {
    root: PathBuf,
}

impl CertsDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn root(&self) -> &Path {
        &self.root
    }
    fn trust_dir(&self) -> PathBuf {
        self.root.join("trust")
    }
    fn rules_dir(&self) -> PathBuf {
        self.root.join("rules")
    }
    fn issuer_dir(&self) -> PathBuf {
        self.root.join("issuer")
    }

    /// Creates the folders (0700 for the issuer keys).
    pub fn ensure(&self) -> Result<()> {
        for d in [self.trust_dir(), self.rules_dir(), self.issuer_dir()] {
            std::fs::create_dir_all(&d).map_err(io(&d))?;
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let d = self.issuer_dir();
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).map_err(io(&d))?;
        }
        Ok(())
    }

    pub fn stamp(&self) -> Stamp {
        let m = |p: PathBuf| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        [
            m(self.trust_dir()),
            m(self.rules_dir()),
            m(self.issuer_dir()),
        ]
    }

    fn files(dir: &Path, prefix: &str, suffix: &str) -> Result<Vec<PathBuf>> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(dir)(e)),
        };
        for entry in entries {
            let path = entry.map_err(io(dir))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            if name.starts_with(prefix) && name.ends_with(suffix) {
                out.push(path);
            }
        }
        out.sort();
        Ok(out)
    }

    pub fn settings(&self) -> Result<Settings> {
        let path = self.issuer_dir().join("settings.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| MaterialError::Io(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings::default()),
            Err(e) => Err(io(&path)(e)),
        }
    }

    /// Sets the SMART Health Card issuer URL (checked as the spec requires: https, no trailing slash).
    pub fn set_shc_iss(&self, iss: &str) -> Result<()> {
        let iss = iss.trim();
        certs::shc::check_issuer_url(iss).map_err(|e| MaterialError::Invalid(e.to_string()))?;
        self.ensure()?;
        let mut s = self.settings()?;
        s.shc_iss = Some(iss.to_owned());
        let bytes = serde_json::to_vec_pretty(&s).map_err(|e| MaterialError::Io(e.to_string()))?;
        write_atomic(&self.issuer_dir().join("settings.json"), &bytes, false)
    }

    /// Reads everything into memory. A damaged file is an error naming it (the node's files, so a 500 to clients).
    pub fn load(&self) -> Result<Loaded> {
        let mut trust = TrustList::new();
        let mut dsc = Vec::new();
        let mut shc = Vec::new();
        for path in Self::files(&self.trust_dir(), "dsc-", ".json")? {
            let doc = read_json(&path)?;
            for entry in doc
                .get("dsc")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let raw = entry
                    .get("rawData")
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let der = base64::engine::general_purpose::STANDARD
                    .decode(raw)
                    .map_err(|e| MaterialError::Io(format!("{}: {e}", path.display())))?;
                let country = entry.get("country").and_then(Value::as_str);
                let d = Dsc::from_der(&der, country)
                    .map_err(|e| MaterialError::Io(format!("{}: {e}", path.display())))?;
                dsc.push(dsc_info(&d, false));
                trust.add_dsc(d);
            }
        }
        for path in Self::files(&self.trust_dir(), "shc-", ".json")? {
            let doc = read_json(&path)?;
            for issuer in doc
                .get("shc")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let issuer = ShcIssuer::from_jwks_json(issuer)
                    .map_err(|e| MaterialError::Io(format!("{}: {e}", path.display())))?;
                shc.push(ShcInfo {
                    iss: issuer.iss.clone(),
                    keys: issuer.keys.iter().map(|k| k.kid.clone()).collect(),
                    own: false,
                });
                trust.add_shc_issuer(issuer);
            }
        }
        let rules_dir = self.rules_dir();
        let rules = if rules_dir.is_dir() {
            certs::rules::RuleSet::load_dir(&rules_dir)
                .map_err(|e| MaterialError::Io(e.to_string()))?
        } else {
            certs::rules::RuleSet::default()
        };
        let mut rule_countries = BTreeMap::new();
        for r in &rules.rules {
            *rule_countries.entry(r.country.clone()).or_insert(0) += 1;
        }
        // This node's own keys: always trusted (it stands behind what it issued).
        let mut dcc_keys: BTreeMap<String, DccKeyFiles> = BTreeMap::new();
        for dsc_path in Self::files(&self.issuer_dir(), "dcc-", ".dsc.pem")? {
            let name = dsc_path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let country = country_code(name.get(4..6).unwrap_or_default())?;
            let dsc_der = pem_file(&dsc_path, "CERTIFICATE")?;
            let d = Dsc::from_der(&dsc_der, Some(&country))
                .map_err(|e| MaterialError::Io(format!("{}: {e}", dsc_path.display())))?;
            dsc.push(dsc_info(&d, true));
            let key_path =
                PathBuf::from(dsc_path.to_string_lossy().replace(".dsc.pem", ".key.pem"));
            if key_path.exists() {
                let files = DccKeyFiles {
                    country: country.clone(),
                    key_pkcs8: pem_file(&key_path, "PRIVATE KEY")?,
                    dsc_der,
                    kid_b64: base64::engine::general_purpose::STANDARD.encode(d.kid),
                    not_after: d.not_after,
                };
                // Files sort by creation time: the last one of a country is its current key.
                dcc_keys.insert(country, files);
            }
            trust.add_dsc(d);
        }
        let settings = self.settings()?;
        let mut shc_keys = Vec::new();
        for key_path in Self::files(&self.issuer_dir(), "shc-", ".key.pem")? {
            let key_pkcs8 = pem_file(&key_path, "PRIVATE KEY")?;
            shc_keys.push(shc_key_file(key_pkcs8)?);
        }
        if let Some(iss) = &settings.shc_iss {
            if !shc_keys.is_empty() {
                let jwks =
                    json!({ "keys": shc_keys.iter().map(|k| k.jwk.clone()).collect::<Vec<_>>() });
                let issuer = ShcIssuer::from_jwks(iss, &jwks)
                    .map_err(|e| MaterialError::Io(format!("own SHC keys: {e}")))?;
                shc.push(ShcInfo {
                    iss: iss.clone(),
                    keys: shc_keys.iter().map(|k| k.kid.clone()).collect(),
                    own: true,
                });
                trust.add_shc_issuer(issuer);
            }
        }
        dsc.sort_by(|a, b| (&a.country, &a.kid).cmp(&(&b.country, &b.kid)));
        Ok(Loaded {
            trust,
            value_sets: rules.value_sets.len(),
            rules,
            dsc,
            shc,
            rule_countries,
            dcc_keys,
            shc_keys,
            settings,
            verifiers: Mutex::new(HashMap::new()),
        })
    }

    /// Imports a trust list in any form the `certs` crate reads (PEM or DER certificates, a DGCA DSC list, an SHC
    /// issuer JWKS with `iss`, the exchange document). `country` is required for certificates that do not name
    /// one. Returns what was added: (DSCs per country, SHC issuers).
    pub fn import_trust(&self, bytes: &[u8], country: Option<&str>) -> Result<ImportReport> {
        let country = country
            .filter(|c| !c.trim().is_empty())
            .map(country_code)
            .transpose()?;
        let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let mut list = TrustList::new();
        let trimmed = bytes.trim_ascii_start();
        let bad = |e: certs::Error| MaterialError::Invalid(format!("not a usable trust list: {e}"));
        if trimmed.is_empty() {
            return Err(MaterialError::Invalid("the file is empty".into()));
        }
        if trimmed.starts_with(b"-----BEGIN") {
            list.add_pem(trimmed, country.as_deref()).map_err(bad)?;
        } else if trimmed.starts_with(b"{") || trimmed.starts_with(b"[") {
            list.import_bytes(trimmed).map_err(bad)?;
        } else {
            list.add_dsc_der(bytes, country.as_deref()).map_err(bad)?;
        }
        let doc = list.to_json();
        let mut report = ImportReport::default();
        let mut by_country: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for entry in doc
            .get("dsc")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let c = match (&country, entry.get("country").and_then(Value::as_str)) {
                (Some(c), _) => c.clone(),
                (None, Some(c)) => country_code(c)?,
                (None, None) => {
                    return Err(MaterialError::Invalid(
                        "a certificate names no country: import it with a country".into(),
                    ))
                }
            };
            let mut entry = entry.clone();
            entry["country"] = json!(c);
            by_country.entry(c).or_default().push(entry);
        }
        self.ensure()?;
        for (c, entries) in by_country {
            let path = self.trust_dir().join(format!("dsc-{c}.json"));
            let mut existing: Vec<Value> = if path.exists() {
                read_json(&path)?
                    .get("dsc")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            let mut added = 0;
            for e in entries {
                if !existing
                    .iter()
                    .any(|x| x.get("rawData") == e.get("rawData"))
                {
                    existing.push(e);
                    added += 1;
                }
            }
            write_json(&path, &json!({ "dsc": existing }))?;
            report.dsc.insert(c, added);
        }
        for issuer in doc
            .get("shc")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let iss = issuer
                .get("iss")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let hash = short_hash(iss.as_bytes());
            write_json(
                &self.trust_dir().join(format!("shc-{hash}.json")),
                &json!({ "shc": [issuer] }),
            )?;
            report.shc.push(iss.to_owned());
        }
        if report.dsc.is_empty() && report.shc.is_empty() {
            return Err(MaterialError::Invalid(
                "the file holds no certificate and no issuer key".into(),
            ));
        }
        Ok(report)
    }

    /// Removes a country's trusted DSCs (not this node's own keys). Returns how many were removed.
    pub fn remove_country(&self, country: &str) -> Result<usize> {
        let c = country_code(country)?;
        let path = self.trust_dir().join(format!("dsc-{c}.json"));
        if !path.exists() {
            return Ok(0);
        }
        let n = read_json(&path)?
            .get("dsc")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        std::fs::remove_file(&path).map_err(io(&path))?;
        Ok(n)
    }

    /// Removes a trusted SMART Health Card issuer.
    pub fn remove_shc_issuer(&self, iss: &str) -> Result<bool> {
        let path = self
            .trust_dir()
            .join(format!("shc-{}.json", short_hash(iss.as_bytes())));
        if !path.exists() {
            return Ok(false);
        }
        std::fs::remove_file(&path).map_err(io(&path))?;
        Ok(true)
    }

    /// Imports business rules (one rule, an array, or a directory of them, as `certlogic` loads them) or value
    /// sets (either form `certlogic` reads). Rules are stored per publishing country; a rule with the same
    /// identifier and version replaces the stored one.
    pub fn import_rules(&self, path: &Path) -> Result<ImportReport> {
        let mut report = ImportReport::default();
        let (rules, sets) = if path.is_dir() {
            let set = certs::rules::RuleSet::load_dir(path)
                .map_err(|e| MaterialError::Invalid(e.to_string()))?;
            (set.rules, set.value_sets)
        } else {
            let value = read_json_input(path)?;
            let is_rule = |v: &Value| v.get("Identifier").is_some();
            let looks_like_rules = is_rule(&value)
                || value
                    .as_array()
                    .is_some_and(|a| !a.is_empty() && a.iter().all(is_rule));
            if looks_like_rules {
                let rules = certlogic::load_rules(path)
                    .map_err(|e| MaterialError::Invalid(format!("not valid rules: {e}")))?;
                (rules, BTreeMap::new())
            } else {
                let sets = certlogic::load_value_sets(path).map_err(|e| {
                    MaterialError::Invalid(format!("neither business rules nor value sets: {e}"))
                })?;
                (Vec::new(), sets)
            }
        };
        if rules.is_empty() && sets.is_empty() {
            return Err(MaterialError::Invalid(
                "no business rule and no value set found".into(),
            ));
        }
        self.ensure()?;
        let mut by_country: BTreeMap<String, Vec<certlogic::Rule>> = BTreeMap::new();
        for r in rules {
            let c = country_code(&r.country)?;
            by_country.entry(c).or_default().push(r);
        }
        for (c, new) in by_country {
            let path = self.rules_dir().join(format!("{c}.json"));
            let mut stored: Vec<certlogic::Rule> = if path.exists() {
                certlogic::load_rules(&path).map_err(|e| MaterialError::Io(e.to_string()))?
            } else {
                Vec::new()
            };
            let n = new.len();
            for r in new {
                stored.retain(|s| !(s.identifier == r.identifier && s.version == r.version));
                stored.push(r);
            }
            stored.sort_by(|a, b| (&a.identifier, &a.version).cmp(&(&b.identifier, &b.version)));
            let value =
                serde_json::to_value(&stored).map_err(|e| MaterialError::Io(e.to_string()))?;
            write_json(&path, &value)?;
            report.rules.insert(c, n);
        }
        if !sets.is_empty() {
            let path = self.rules_dir().join("valueSets.json");
            let mut stored = if path.exists() {
                certlogic::load_value_sets(&path).map_err(|e| MaterialError::Io(e.to_string()))?
            } else {
                BTreeMap::new()
            };
            report.value_sets = sets.len();
            stored.extend(sets);
            let value =
                serde_json::to_value(&stored).map_err(|e| MaterialError::Io(e.to_string()))?;
            write_json(&path, &value)?;
        }
        Ok(report)
    }

    /// [`CertsDir::import_rules`] for uploaded bytes (written to a temporary file for the loaders).
    pub fn import_rules_bytes(&self, bytes: &[u8]) -> Result<ImportReport> {
        self.ensure()?;
        let tmp = self
            .root
            .join(format!(".upload-{}.json", uuid::Uuid::new_v4()));
        std::fs::write(&tmp, bytes).map_err(io(&tmp))?;
        let r = self.import_rules(&tmp);
        let _ = std::fs::remove_file(&tmp);
        r
    }

    /// Generates a new DCC signing key and self-signed DSC for `country` (P-256, ES256, valid
    /// [`DSC_VALID_DAYS`], extended key usage for all three DCC types). Older keys stay trusted.
    pub fn generate_dcc_key(&self, country: &str, node_name: &str) -> Result<String> {
        let country = country_code(country)?;
        self.ensure()?;
        let (key_pem, dsc_pem, kid) = generate_dsc(&country, node_name)?;
        let stem = format!(
            "dcc-{country}-{}-{kid}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f")
        );
        let dir = self.issuer_dir();
        write_atomic(
            &dir.join(format!("{stem}.key.pem")),
            key_pem.as_bytes(),
            true,
        )?;
        write_atomic(
            &dir.join(format!("{stem}.dsc.pem")),
            dsc_pem.as_bytes(),
            false,
        )?;
        Ok(kid)
    }

    /// Generates a new SMART Health Card signing key (P-256); returns its kid (RFC 7638 thumbprint).
    pub fn generate_shc_key(&self) -> Result<String> {
        self.ensure()?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| MaterialError::Io(format!("key generation: {e}")))?;
        let file = shc_key_file(key.serialize_der())?;
        let path = self.issuer_dir().join(format!(
            "shc-{}-{}.key.pem",
            chrono::Utc::now().format("%Y%m%dT%H%M%S%.6f"),
            file.kid
        ));
        write_atomic(&path, key.serialize_pem().as_bytes(), true)?;
        Ok(file.kid)
    }
}

/// What an import added.
#[derive(Debug, Default, Serialize, PartialEq)]
pub struct ImportReport {
    /// Country → DSCs added (already present ones are not counted).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dsc: BTreeMap<String, usize>,
    /// SHC issuers added or replaced.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shc: Vec<String>,
    /// Country → rules imported.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub rules: BTreeMap<String, usize>,
    #[serde(skip_serializing_if = "is_zero")]
    pub value_sets: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn dsc_info(d: &Dsc, own: bool) -> DscInfo {
    let ts = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%d").to_string())
            .unwrap_or_default()
    };
    DscInfo {
        country: d.country.clone().unwrap_or_default(),
        kid: base64::engine::general_purpose::STANDARD.encode(d.kid),
        not_before: ts(d.not_before),
        not_after: ts(d.not_after),
        types: d
            .allowed_types
            .as_ref()
            .map(|t| t.iter().map(|t| CertType::name(*t)).collect()),
        own,
    }
}

fn short_hash(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(&Sha256::digest(bytes)[..8])
}

fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes).map_err(|e| MaterialError::Io(format!("{}: {e}", path.display())))
}

/// Like `read_json`, for a file given by the user: an error is theirs (422), not the node's.
fn read_json_input(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes).map_err(|e| MaterialError::Invalid(format!("not JSON: {e}")))
}

fn write_json(path: &Path, value: &Value) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(value).map_err(|e| MaterialError::Io(e.to_string()))?;
    write_atomic(path, &bytes, false)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file; `secret` files get mode 0600.
fn write_atomic(path: &Path, bytes: &[u8], secret: bool) -> Result<()> {
    use std::io::Write as _;
    let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if secret { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = options.open(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes).map_err(io(&tmp))?;
    f.sync_all().map_err(io(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io(path))
}

fn pem_file(path: &Path, label: &str) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io(path))?;
    certs::crypto::pem_to_der(&bytes, label)
        .map_err(|e| MaterialError::Io(format!("{}: {e}", path.display())))?
        .ok_or_else(|| MaterialError::Io(format!("{}: not PEM", path.display())))
}

/// The public JWK and thumbprint kid of a P-256 PKCS#8 key.
fn shc_key_file(key_pkcs8: Vec<u8>) -> Result<ShcKeyFile> {
    let bad = |e: String| MaterialError::Io(format!("SHC key: {e}"));
    let pair = rcgen::KeyPair::try_from(key_pkcs8.as_slice()).map_err(|e| bad(e.to_string()))?;
    let point = pair.public_key_raw().to_vec();
    // SEC1 uncompressed point: 0x04 ‖ x ‖ y.
    if point.len() != 65 || point[0] != 4 {
        return Err(bad("not an uncompressed P-256 point".into()));
    }
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let x = b64.encode(&point[1..33]);
    let y = b64.encode(&point[33..]);
    let kid = certs::shc::thumbprint(&x, &y);
    let jwk = json!({ "kty": "EC", "kid": kid, "use": "sig", "alg": "ES256", "crv": "P-256", "x": x, "y": y });
    Ok(ShcKeyFile {
        key_pkcs8,
        kid,
        jwk,
    })
}

/// A P-256 key and a self-signed Document Signer Certificate for `country`, as PEM, with the kid (Base64).
fn generate_dsc(country: &str, node_name: &str) -> Result<(String, String, String)> {
    use rcgen::{
        CertificateParams, DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, KeyPair,
        KeyUsagePurpose, SerialNumber,
    };
    let bad = |e: rcgen::Error| MaterialError::Io(format!("DSC generation: {e}"));
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(bad)?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(
        DnType::CountryName,
        DnValue::PrintableString(country.try_into().map_err(bad)?),
    );
    let org: String = node_name.chars().take(60).collect();
    dn.push(DnType::OrganizationName, org.clone());
    dn.push(DnType::CommonName, format!("{org} DSC {country}"));
    params.distinguished_name = dn;
    let today = chrono::Utc::now().date_naive();
    let end = today + chrono::Duration::days(DSC_VALID_DAYS);
    let ymd = |d: chrono::NaiveDate| {
        use chrono::Datelike;
        rcgen::date_time_ymd(d.year(), d.month() as u8, d.day() as u8)
    };
    params.not_before = ymd(today);
    params.not_after = ymd(end);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // 1.3.6.1.4.1.1847.2021.1.{1,2,3}: test, vaccination, recovery (hcert spec §5.1).
    params.extended_key_usages = (1..=3)
        .map(|t| ExtendedKeyUsagePurpose::Other(vec![1, 3, 6, 1, 4, 1, 1847, 2021, 1, t]))
        .collect();
    let mut serial = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut serial);
    serial[0] &= 0x7f;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let cert = params.self_signed(&key).map_err(bad)?;
    let kid = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(certs::trust::kid_of(cert.der()))
        .replace(['-', '_'], "x");
    Ok((key.serialize_pem(), cert.pem(), kid))
}

/// Seeds a demo node's material: the test trust lists, rules and value sets of `fixtures/certs`, the SMART Health
/// Cards example issuer, and an SHC issuer URL. Idempotent.
pub fn seed_demo(dir: &CertsDir) -> Result<()> {
    const DSC: &str = include_str!("../../fixtures/certs/dgc-testdata-dsc.json");
    const RULES: &str = include_str!("../../fixtures/certs/rules.json");
    const VALUE_SETS: &str = include_str!("../../fixtures/certs/valueSets.json");
    const SHC: &str = include_str!("../../fixtures/certs/shc-example-issuer.json");
    dir.import_trust(DSC.as_bytes(), None)?;
    dir.import_trust(SHC.as_bytes(), None)?;
    dir.import_rules_bytes(RULES.as_bytes())?;
    dir.import_rules_bytes(VALUE_SETS.as_bytes())?;
    if dir.settings()?.shc_iss.is_none() {
        dir.set_shc_iss("https://demo.caravan.invalid/shc")?;
    }
    Ok(())
}
