//! Health certificates in the node (EU DCC and SMART Health Cards, through the `certs` and `certlogic` crates):
//! trust lists and rules kept in `DATA/certs` ([`material`]), a verifier page and an issuing page ([`pages`]), an
//! administrator page, the JSON API under `/api/v1/certs` ([`api`]) and `caravan trust …` ([`cli`]).
//!
//! Privacy. Verifying is a pure function of (text, trust list, rules, clock) in the `certs` crate: no network, and
//! the node logs nothing and stores nothing about a verified certificate or its holder; the result shows only the
//! status, name, date of birth and the reasons. Issuing is a write of patient data: one audit event in the
//! node's chain (who, when, which certificate id, for which patient record), never the health data itself.
//!
//! Who may do what: any signed-in user may verify (a border officer, a clinician, a patient checking their own
//! certificate before travel) and list the trust anchors; referring clinicians and consultants may issue; the
//! administrator imports trust lists and rules and manages the node's issuing keys.

pub mod api;
pub mod cli;
pub mod material;
pub mod pages;

use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::i18n::Tr;
use crate::AppState;
use axum::http::StatusCode;
use axum::Router;
use caravan_domain::{AuditAction, PatientId, Role};
use material::{CertsDir, ImportReport, Loaded, MaterialError, Stamp};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;

pub use material::seed_demo;

/// Roles that may issue certificates: the clinicians who treat or vaccinate (see the module documentation).
pub const ISSUERS: &[Role] = &[Role::Referrer, Role::Consultant];

/// Longest accepted verifier input (a legacy chunked SMART Health Card is up to ~19 000 characters; a file form
/// with several cards more).
pub const MAX_INPUT: usize = 64 * 1024;

/// The UI pages and the public JWKS. The API routes are in [`api::routes`].
pub fn routes() -> Router<AppState> {
    pages::routes()
}

/// The node's certificate material, loaded once and reloaded when its folder changes (also by another process,
/// such as `caravan trust import` while the node runs).
pub struct CertsHub {
    dir: Option<CertsDir>,
    node_name: String,
    cache: std::sync::RwLock<Option<(Stamp, Arc<Loaded>)>>,
    write: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for CertsHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertsHub({:?})", self.dir)
    }
}

impl From<MaterialError> for AppError {
    fn from(e: MaterialError) -> Self {
        match e {
            MaterialError::Invalid(m) => AppError::unprocessable("error-cert-import", m),
            MaterialError::Io(_) => AppError::internal(e),
        }
    }
}

impl CertsHub {
    /// `dir` is `DATA/certs`; without one the certificate pages answer 503 (`error-cert-not-configured`).
    pub fn new(dir: Option<PathBuf>, node_name: &str) -> Self {
        Self {
            dir: dir.map(CertsDir::new),
            node_name: node_name.to_owned(),
            cache: std::sync::RwLock::new(None),
            write: tokio::sync::Mutex::new(()),
        }
    }

    fn dir(&self) -> AppResult<&CertsDir> {
        self.dir.as_ref().ok_or_else(|| {
            AppError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "error-cert-not-configured",
                "this node keeps no certificate material (it was started without a data folder)",
            )
        })
    }

    /// The current material.
    pub async fn loaded(&self) -> AppResult<Arc<Loaded>> {
        let dir = self.dir()?.clone();
        let stamp = dir.stamp();
        if let Some((s, l)) = self
            .cache
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            if *s == stamp {
                return Ok(l.clone());
            }
        }
        let loaded = tokio::task::spawn_blocking(move || dir.load())
            .await
            .map_err(AppError::internal)??;
        let loaded = Arc::new(loaded);
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = Some((stamp, loaded.clone()));
        Ok(loaded)
    }

    /// Runs a change of the material on the blocking pool, one at a time, and forgets the cached copy.
    pub async fn change<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CertsDir) -> Result<T, MaterialError> + Send + 'static,
    ) -> AppResult<T> {
        let _guard = self.write.lock().await;
        self.change_locked(f).await
    }

    /// [`CertsHub::change`] with the write lock already held.
    async fn change_locked<T: Send + 'static>(
        &self,
        f: impl FnOnce(&CertsDir) -> Result<T, MaterialError> + Send + 'static,
    ) -> AppResult<T> {
        let dir = self.dir()?.clone();
        let r = tokio::task::spawn_blocking(move || f(&dir))
            .await
            .map_err(AppError::internal);
        *self.cache.write().unwrap_or_else(|p| p.into_inner()) = None;
        Ok(r??)
    }

    /// The trust list as the `certs` exchange document (`{"dsc": [...], "shc": [...]}`), this node's own keys
    /// included: what a federation peer imports for mutual recognition.
    pub async fn export(&self) -> AppResult<Value> {
        Ok(self.loaded().await?.trust.to_json())
    }

    /// Imports a peer's exchange document (or any trust-list form) into the node's trust list.
    pub async fn import_trust(
        &self,
        bytes: Vec<u8>,
        country: Option<String>,
    ) -> AppResult<ImportReport> {
        self.change(move |d| d.import_trust(&bytes, country.as_deref()))
            .await
    }

    /// The newest DCC key of `country`, generated on first use or when it would not outlive a new certificate.
    pub async fn dcc_key(&self, country: &str) -> AppResult<material::DccKeyFiles> {
        let fresh = |l: &Loaded| {
            l.dcc_keys.get(country).cloned().filter(|k| {
                k.not_after - chrono::Utc::now().timestamp() >= material::DSC_MIN_LEFT_DAYS * 86_400
            })
        };
        if let Some(k) = fresh(&*self.loaded().await?) {
            return Ok(k);
        }
        // Under the write lock, look again: a concurrent first issue may have generated it meanwhile.
        let _guard = self.write.lock().await;
        if let Some(k) = fresh(&*self.loaded().await?) {
            return Ok(k);
        }
        let (c, name) = (country.to_owned(), self.node_name.clone());
        let kid = self
            .change_locked(move |d| d.generate_dcc_key(&c, &name))
            .await?;
        tracing::info!(country, kid = %kid, "generated a DCC signing key");
        fresh(&*self.loaded().await?)
            .ok_or_else(|| AppError::internal("the generated DCC key was not found"))
    }

    /// The newest SMART Health Card key, generated on first use.
    pub async fn shc_key(&self) -> AppResult<material::ShcKeyFile> {
        if let Some(k) = self.loaded().await?.shc_keys.last() {
            return Ok(k.clone());
        }
        let _guard = self.write.lock().await;
        if let Some(k) = self.loaded().await?.shc_keys.last() {
            return Ok(k.clone());
        }
        let kid = self.change_locked(|d| d.generate_shc_key()).await?;
        tracing::info!(kid = %kid, "generated a SMART Health Card signing key");
        self.loaded()
            .await?
            .shc_keys
            .last()
            .cloned()
            .ok_or_else(|| AppError::internal("the generated SHC key was not found"))
    }
}

/// Records a change of the trust material (trust lists, rules, keys, settings) in the audit chain.
pub(crate) async fn audit_trust_change(
    st: &AppState,
    p: &Principal,
    action: AuditAction,
    what: &str,
    detail: &str,
) -> AppResult<()> {
    let event = crate::audit::event(p, action, "certificate_trust", what, None, detail);
    Ok(st.store().append_audit(vec![event]).await?)
}

// ---------- verifying ----------

/// A verification request (API body; the page builds the same).
/// `text` may be left out by the page (a scanned QR code fills it); over the API it is what is verified.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[schemars(extend("required" = ["text"]))]
pub struct VerifyRequest {
    /// `HC1:…`, `shc:/…`, a compact JWS or a `.smart-health-card` file's content.
    #[serde(default)]
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    pub text: String,
    /// Country of arrival whose business rules apply (none: technical checks only).
    #[serde(default)]
    pub country: Option<String>,
    /// Validation time (RFC 3339, a date, or epoch seconds), e.g. the arrival date; default now.
    #[serde(default)]
    #[schemars(schema_with = "instant_text")]
    pub at: Option<String>,
    /// Language of the reasons (default: the user's).
    #[serde(default)]
    pub lang: Option<String>,
}

/// The forms a validation time may take (see [`VerifyRequest::at`]; empty means now), for the OpenAPI document.
fn instant_text(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({ "anyOf": [
        { "type": "string", "format": "date-time" },
        { "type": "string", "format": "date" },
        { "type": "string", "pattern": "^[0-9]{0,12}$" },
        { "type": "null" }
    ] })
}

/// What a verifier sees: status, name, date of birth, and why.
#[derive(Debug, Serialize)]
pub struct VerifyResult {
    pub status: certs::Status,
    pub format: certs::verifier::Format,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub holder: Option<Holder>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_type: Option<String>,
    /// Issuing country (DCC) or issuer URL (SHC), once the signature is verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// The reasons, the deciding rule first named by `rule`, in the requested language.
    pub reasons: Vec<ReasonView>,
    /// Country of arrival whose rules were applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// When the signer is not trusted: the country (DCC) or issuer (SHC) the certificate claims to come from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub untrusted: Option<String>,
    pub checked_at: String,
    pub lang: &'static str,
}

#[derive(Debug, Serialize)]
pub struct Holder {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dob: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct ReasonView {
    pub code: String,
    /// Localised explanation.
    pub message: String,
    /// The rule that decided, for `rule.failed` / `rule.open`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The `certs` crate's technical (English) message.
    pub detail: String,
}

/// Countries a verifier may choose as arrival: those whose rules the node holds.
pub fn arrival_countries(l: &Loaded) -> Vec<String> {
    l.rule_countries.keys().cloned().collect()
}

/// Verifies one input. Refuses (4xx) only a malformed request; a text that is not a valid certificate is a red
/// result with its reason, as a verifier app shows it. Logs and stores nothing.
pub async fn verify(st: &AppState, req: &VerifyRequest, tr: Tr<'_>) -> AppResult<VerifyResult> {
    let text = req.text.trim();
    if text.is_empty() {
        return Err(AppError::unprocessable(
            "error-cert-input",
            "no certificate given: paste its text or scan its QR code",
        ));
    }
    if text.len() > MAX_INPUT {
        return Err(AppError::unprocessable(
            "error-cert-input",
            format!("the input is longer than {MAX_INPUT} bytes"),
        ));
    }
    let clock = match req.at.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
        None => chrono::Utc::now().timestamp(),
        Some(at) => certs::Clock::parse(at)
            .map_err(|e| AppError::unprocessable("error-cert-input", e.to_string()))?
            .now(),
    };
    let loaded = st.certs().loaded().await?;
    let country = match req
        .country
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => None,
        Some(c) => {
            let c = material::country_code(c)
                .map_err(|e| AppError::unprocessable("error-cert-input", e.to_string()))?;
            if !loaded.rule_countries.contains_key(&c) {
                return Err(AppError::unprocessable(
                    "error-cert-no-rules",
                    format!("this node holds no business rules of {c}; an administrator can import them"),
                ));
            }
            Some(c)
        }
    };
    let verifier = loaded.verifier(country.as_deref(), tr.lang);
    let v = verifier.verify_at(text, clock);
    let untrusted = if v.has("trust.unknown_kid") {
        claimed_country(text)
    } else {
        v.reasons
            .iter()
            .find(|r| r.code == "trust.untrusted_issuer")
            .and_then(|_| claimed_shc_issuer(text))
    };
    let trusted_countries = loaded.trusted_countries();
    let reasons = v
        .reasons
        .iter()
        .map(|r| reason_view(tr, r, &v.rules, untrusted.as_deref(), &trusted_countries))
        .collect();
    let (holder, certificate_type, issuer) = match v.claims {
        Some(c) => (
            Some(Holder {
                family_name: c.family_name,
                given_name: c.given_name,
                dob: c.dob,
            }),
            c.certificate_type,
            c.issuer,
        ),
        None => (None, None, None),
    };
    Ok(VerifyResult {
        status: v.status,
        format: v.format,
        holder,
        certificate_type,
        issuer,
        reasons,
        country,
        untrusted,
        checked_at: chrono::DateTime::from_timestamp(clock, 0)
            .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default(),
        lang: tr.lang,
    })
}

/// The issuing country an unverifiable DCC claims (CWT claim 1), read without trusting anything else in it.
fn claimed_country(text: &str) -> Option<String> {
    let cose = certs::hcert::decode_text(text).ok()?;
    let claims = certs::hcert::Claims::parse(&cose.payload).ok()?;
    claims
        .iss
        .filter(|c| c.len() == 2 && c.bytes().all(|b| b.is_ascii_alphabetic()))
        .map(|c| c.to_ascii_uppercase())
}

/// The issuer URL an unverifiable SMART Health Card claims.
fn claimed_shc_issuer(text: &str) -> Option<String> {
    let jws = certs::shc::input_to_jws(text).ok()?.into_iter().next()?;
    let (_, payload, _, _) = certs::shc::decode_jws(&jws).ok()?;
    payload
        .get("iss")
        .and_then(Value::as_str)
        .map(|s| s.chars().take(200).collect())
}

/// The Fluent id of a `certs` reason code: `trust.unknown_kid` → `cert-reason-trust-unknown-kid`.
pub fn reason_id(code: &str) -> String {
    format!("cert-reason-{}", code.replace(['.', '_'], "-"))
}

fn reason_view(
    tr: Tr<'_>,
    r: &certs::Reason,
    rules: &[certs::rules::RuleOutcome],
    untrusted: Option<&str>,
    trusted_countries: &[String],
) -> ReasonView {
    let id = reason_id(&r.code);
    let message = match (r.code.as_str(), &r.rule, untrusted) {
        ("rule.failed" | "rule.open", Some(rule), _) => {
            let description = rules
                .iter()
                .find(|o| &o.rule == rule)
                .map(|o| o.description.clone())
                .unwrap_or_else(|| r.message.clone());
            tr.t2(&id, "rule", rule, "description", description)
        }
        ("trust.unknown_kid", _, Some(c)) if trusted_countries.iter().any(|t| t == c) => {
            tr.t1("cert-reason-key-untrusted", "country", c)
        }
        ("trust.unknown_kid", _, Some(c)) => tr.t1("cert-reason-country-untrusted", "country", c),
        ("trust.untrusted_issuer", _, Some(iss)) => {
            tr.t1("cert-reason-issuer-untrusted", "issuer", iss)
        }
        _ if tr.i18n.has(tr.lang, &id) || tr.i18n.has("en", &id) => tr.t(&id),
        _ => r.message.clone(),
    };
    ReasonView {
        code: r.code.clone(),
        message,
        rule: r.rule.clone(),
        detail: r.message.clone(),
    }
}

// ---------- issuing ----------

/// An issuing request. The event fields use the DCC's own names (`v`, `t`, `r`: see the eHN DCC schema); `co`
/// and `is` default to the clinician's institution's country and name, `tg` to COVID-19.
/// A holder is required (`patient_id` or `person`), and the event the kind names (`v`, `t`, `r` or `immunization`).
// Not stated in the schema as `anyOf`/`oneOf`: schemathesis' coverage phase failed on those now and then
// ("Inconsistent results"), which would make `.ci/api-fuzz` fail without a fault of the node.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct IssueRequest {
    /// `vaccination`, `test`, `recovery` (EU DCC) or `shc` (a SMART Health Card for an immunization).
    #[schemars(extend("enum" = ["vaccination", "test", "recovery", "shc"]))]
    pub kind: String,
    /// A patient of this node: name and date of birth are taken from the record, and the patient's access log
    /// shows the issuing.
    #[serde(default)]
    #[schemars(schema_with = "crate::api::uuid_or_null")]
    pub patient_id: Option<String>,
    /// The holder, when no patient record is named.
    #[serde(default)]
    pub person: Option<PersonIn>,
    #[serde(default)]
    pub v: Option<VaccinationIn>,
    #[serde(default)]
    pub t: Option<TestIn>,
    #[serde(default)]
    pub r: Option<RecoveryIn>,
    /// SMART Health Card immunization.
    #[serde(default)]
    pub immunization: Option<ImmunizationIn>,
    /// Validity in days (DCC; default 365, at most the signer's remaining validity).
    #[serde(default)]
    pub days: Option<i64>,
    /// Also return the QR code: `svg` or `png` (Base64).
    #[serde(default)]
    pub qr: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct PersonIn {
    #[schemars(length(min = 1), regex(pattern = crate::api::NON_BLANK))]
    pub family_name: String,
    #[serde(default)]
    pub given_name: Option<String>,
    /// `YYYY-MM-DD` (also `YYYY-MM` or `YYYY` when the day or month is unknown).
    #[schemars(regex(pattern = r"^[0-9]{4}(-[0-9]{2}(-[0-9]{2})?)?$"))]
    pub dob: String,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct VaccinationIn {
    #[serde(default)]
    pub tg: Option<String>,
    pub vp: String,
    pub mp: String,
    pub ma: String,
    pub dn: u32,
    pub sd: u32,
    pub dt: String,
    #[serde(default)]
    pub co: Option<String>,
    #[serde(default)]
    pub is: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct TestIn {
    #[serde(default)]
    pub tg: Option<String>,
    pub tt: String,
    #[serde(default)]
    pub nm: Option<String>,
    #[serde(default)]
    pub ma: Option<String>,
    pub sc: String,
    pub tr: String,
    pub tc: String,
    #[serde(default)]
    pub co: Option<String>,
    #[serde(default)]
    pub is: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct RecoveryIn {
    #[serde(default)]
    pub tg: Option<String>,
    pub fr: String,
    pub df: String,
    pub du: String,
    #[serde(default)]
    pub co: Option<String>,
    #[serde(default)]
    pub is: Option<String>,
}

#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
pub struct ImmunizationIn {
    /// CVX vaccine code, e.g. `207` (Moderna COVID-19), `208` (Pfizer-BioNTech COVID-19).
    pub cvx: String,
    /// `YYYY-MM-DD`.
    pub date: String,
    #[serde(default)]
    pub lot: Option<String>,
    /// Who vaccinated (default: the clinician's institution).
    #[serde(default)]
    pub performer: Option<String>,
}

/// An issued certificate.
#[derive(Debug, Serialize)]
pub struct Issued {
    pub format: certs::verifier::Format,
    /// `HC1:…` or `shc:/…`: what the QR code carries.
    pub text: String,
    /// The compact JWS of a SMART Health Card.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jws: Option<String>,
    /// UVCI (DCC) or the card's id in the audit trail (SHC).
    pub id: String,
    pub kid: String,
    /// Issuing country (DCC) or issuer URL (SHC).
    pub issuer: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_svg: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_png: Option<String>,
}

/// COVID-19 vaccine CVX codes (CDC CVX table): a card about one must carry the `#covid19` type.
const COVID_CVX: [&str; 22] = [
    "207", "208", "210", "211", "212", "213", "217", "218", "219", "221", "225", "226", "227",
    "228", "229", "230", "300", "301", "302", "500", "501", "502",
];

fn invalid(message: impl Into<String>) -> AppError {
    AppError::unprocessable("error-cert-issue", message)
}

fn cert_err(e: certs::Error) -> AppError {
    invalid(e.to_string())
}

/// A `YYYY-MM-DD` date.
fn date(s: &str, what: &str) -> AppResult<String> {
    let s = nonempty(s, what)?;
    chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d")
        .map_err(|_| invalid(format!("{what} {s:?} is not a date (YYYY-MM-DD)")))?;
    Ok(s)
}

/// A date of birth: `YYYY-MM-DD`, or `YYYY-MM` / `YYYY` when the day or month is unknown (DCC schema).
fn birth_date(s: &str) -> AppResult<String> {
    let s = nonempty(s, "date of birth")?;
    let ok = match s.len() {
        4 => s.bytes().all(|b| b.is_ascii_digit()),
        7 => chrono::NaiveDate::parse_from_str(&format!("{s}-01"), "%Y-%m-%d").is_ok(),
        10 => chrono::NaiveDate::parse_from_str(&s, "%Y-%m-%d").is_ok(),
        _ => false,
    };
    if ok {
        Ok(s)
    } else {
        Err(invalid(format!(
            "date of birth {s:?} is not YYYY-MM-DD (or YYYY-MM, YYYY)"
        )))
    }
}

fn nonempty(s: &str, what: &str) -> AppResult<String> {
    let s = s.trim();
    if s.is_empty() {
        Err(invalid(format!("{what} is required")))
    } else {
        Ok(s.to_owned())
    }
}

/// Issues a certificate: role check, the holder from the patient record (an audited read) or the request, the
/// payload checked against its schema, signed with this node's key for the clinician's country, and one audit
/// event in the node's chain. The log line names the user and the kind, never the holder or the health data.
pub async fn issue(st: &AppState, p: &Principal, req: IssueRequest) -> AppResult<Issued> {
    p.require(ISSUERS)?;
    let institution = st.store().get_institution(p.user.institution_id).await?;
    let country = material::country_code(institution.country.as_str())
        .map_err(|e| AppError::internal(e.to_string()))?;
    let issuer_name: String = institution.name.chars().take(80).collect();
    let patient_id: Option<PatientId> = match req
        .patient_id
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        Some(id) => Some(crate::api::parse_id("patient", id)?),
        None => None,
    };
    let person = match patient_id {
        Some(id) => {
            let pat = crate::consult::get_patient(st, p, id).await?;
            certs::issue::Person {
                family_name: pat.family_name,
                given_name: Some(pat.given_name).filter(|g| !g.trim().is_empty()),
                dob: pat.birth_date.format("%Y-%m-%d").to_string(),
            }
        }
        None => {
            let person = req
                .person
                .as_ref()
                .ok_or_else(|| invalid("name the holder: `patient_id` or `person`"))?;
            certs::issue::Person {
                family_name: nonempty(&person.family_name, "family name")?,
                given_name: person
                    .given_name
                    .as_deref()
                    .map(str::trim)
                    .filter(|g| !g.is_empty())
                    .map(str::to_owned),
                dob: birth_date(&person.dob)?,
            }
        }
    };
    let now = chrono::Utc::now().timestamp();
    let kind = req.kind.trim().to_ascii_lowercase();
    let mut issued = if kind == "shc" {
        issue_shc(st, &req, &person, &issuer_name, now).await?
    } else {
        let event = dcc_event(&kind, &req, &country, &issuer_name)?;
        let key = st.certs().dcc_key(&country).await?;
        let uvci = certs::issue::new_uvci(&country).map_err(AppError::internal)?;
        let dcc = certs::issue::build_dcc(&person, &event, &uvci).map_err(cert_err)?;
        let days = req.days.unwrap_or(365).clamp(1, 730);
        let exp = (now + days * 86_400).min(key.not_after);
        let issuer = key.issuer()?;
        let text = issuer.issue(&dcc, now, exp).map_err(cert_err)?;
        Issued {
            format: certs::verifier::Format::EuDcc,
            text,
            jws: None,
            id: uvci,
            kid: key.kid_b64.clone(),
            issuer: country.clone(),
            expires_at: chrono::DateTime::from_timestamp(exp, 0).map(|d| d.to_rfc3339()),
            qr_svg: None,
            qr_png: None,
        }
    };
    match req.qr.as_deref() {
        Some("svg") => {
            issued.qr_svg = Some(certs::qr::render_svg(&issued.text).map_err(AppError::internal)?)
        }
        Some("png") => {
            use base64::Engine as _;
            let png = certs::qr::render_png(&issued.text, 4).map_err(AppError::internal)?;
            issued.qr_png = Some(base64::engine::general_purpose::STANDARD.encode(png));
        }
        Some(other) if !other.is_empty() => {
            return Err(AppError::bad_request(format!(
                "qr must be `svg` or `png`, not {other:?}"
            )))
        }
        _ => {}
    }
    let format = match issued.format {
        certs::verifier::Format::SmartHealthCard => "shc",
        _ => "dcc",
    };
    st.store()
        .append_audit(vec![crate::audit::event(
            p,
            AuditAction::Create,
            "health_certificate",
            &issued.id,
            patient_id,
            &format!("{format} {kind}"),
        )])
        .await?;
    tracing::info!(user = %p.user.id, format, kind = %kind, "health certificate issued");
    Ok(issued)
}

fn dcc_event(
    kind: &str,
    req: &IssueRequest,
    country: &str,
    issuer_name: &str,
) -> AppResult<certs::issue::Event> {
    use certs::issue::{Event, Recovery, Test, Vaccination};
    const COVID: &str = "840539006";
    let co = |c: &Option<String>| -> AppResult<String> {
        match c.as_deref().map(str::trim).filter(|s| !s.is_empty()) {
            Some(c) => material::country_code(c).map_err(|e| invalid(e.to_string())),
            None => Ok(country.to_owned()),
        }
    };
    let is = |i: &Option<String>| {
        i.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(issuer_name)
            .chars()
            .take(80)
            .collect::<String>()
    };
    let tg = |t: &Option<String>| {
        t.as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .unwrap_or(COVID)
            .to_owned()
    };
    Ok(match kind {
        "vaccination" => {
            let v = req
                .v
                .as_ref()
                .ok_or_else(|| invalid("a vaccination needs `v`"))?;
            if v.dn == 0 || v.sd == 0 || v.dn > 9 || v.sd > 9 {
                return Err(invalid("dose numbers must be between 1 and 9"));
            }
            Event::Vaccination(Vaccination {
                tg: tg(&v.tg),
                vp: nonempty(&v.vp, "vaccine type (vp)")?,
                mp: nonempty(&v.mp, "vaccine product (mp)")?,
                ma: nonempty(&v.ma, "manufacturer (ma)")?,
                dn: v.dn,
                sd: v.sd,
                dt: date(&v.dt, "vaccination date (dt)")?,
                co: co(&v.co)?,
                is: is(&v.is),
            })
        }
        "test" => {
            let t = req.t.as_ref().ok_or_else(|| invalid("a test needs `t`"))?;
            let opt = |s: &Option<String>| {
                s.as_deref()
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
            };
            Event::Test(Test {
                tg: tg(&t.tg),
                tt: nonempty(&t.tt, "test type (tt)")?,
                nm: opt(&t.nm),
                ma: opt(&t.ma),
                sc: sample_time(&t.sc)?,
                tr: nonempty(&t.tr, "test result (tr)")?,
                tc: nonempty(&t.tc, "test centre (tc)")?,
                co: co(&t.co)?,
                is: is(&t.is),
            })
        }
        "recovery" => {
            let r = req
                .r
                .as_ref()
                .ok_or_else(|| invalid("a recovery needs `r`"))?;
            Event::Recovery(Recovery {
                tg: tg(&r.tg),
                fr: date(&r.fr, "first positive test (fr)")?,
                df: date(&r.df, "valid from (df)")?,
                du: date(&r.du, "valid until (du)")?,
                co: co(&r.co)?,
                is: is(&r.is),
            })
        }
        other => {
            return Err(invalid(format!(
                "kind must be vaccination, test, recovery or shc, not {other:?}"
            )))
        }
    })
}

/// A test's sample time as the schema wants it (RFC 3339 with offset); a browser's `datetime-local` value
/// (`2021-06-01T10:00`) is taken as UTC.
fn sample_time(s: &str) -> AppResult<String> {
    let s = nonempty(s, "sample time (sc)")?;
    if let Ok(d) = chrono::DateTime::parse_from_rfc3339(&s) {
        return Ok(d.to_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string());
    }
    for f in ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"] {
        if let Ok(d) = chrono::NaiveDateTime::parse_from_str(&s, f) {
            return Ok(d.and_utc().format("%Y-%m-%dT%H:%M:%SZ").to_string());
        }
    }
    Err(invalid(format!(
        "sample time {s:?} is not a date and time (2021-06-01T10:00:00Z)"
    )))
}

async fn issue_shc(
    st: &AppState,
    req: &IssueRequest,
    person: &certs::issue::Person,
    institution: &str,
    now: i64,
) -> AppResult<Issued> {
    let imm = req
        .immunization
        .as_ref()
        .ok_or_else(|| invalid("a SMART Health Card needs `immunization`"))?;
    let iss = st
        .certs()
        .loaded()
        .await?
        .settings
        .shc_iss
        .clone()
        .ok_or_else(|| {
            AppError::new(
                StatusCode::CONFLICT,
                "error-cert-shc-issuer",
                "this node's SMART Health Card issuer URL is not set; an administrator sets it on the certificates page",
            )
        })?;
    let cvx = nonempty(&imm.cvx, "vaccine code (CVX)")?;
    if !cvx.bytes().all(|b| b.is_ascii_digit()) || cvx.len() > 4 {
        return Err(invalid(format!("{cvx:?} is not a CVX code")));
    }
    let date = date(&imm.date, "vaccination date")?;
    let mut name = json!({ "family": person.family_name });
    if let Some(g) = &person.given_name {
        name["given"] = json!(g.split_whitespace().collect::<Vec<_>>());
    }
    let performer: String = imm
        .performer
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .unwrap_or(institution)
        .chars()
        .take(200)
        .collect();
    let mut immunization = json!({
        "resourceType": "Immunization",
        "status": "completed",
        "vaccineCode": { "coding": [{ "system": "http://hl7.org/fhir/sid/cvx", "code": cvx }] },
        "patient": { "reference": "resource:0" },
        "occurrenceDateTime": date,
        "performer": [{ "actor": { "display": performer } }],
    });
    if let Some(lot) = imm.lot.as_deref().map(str::trim).filter(|l| !l.is_empty()) {
        immunization["lotNumber"] = json!(lot);
    }
    let mut types = vec![
        "https://smarthealth.cards#health-card",
        "https://smarthealth.cards#immunization",
    ];
    if COVID_CVX.contains(&cvx.as_str()) {
        types.push("https://smarthealth.cards#covid19");
    }
    let payload = json!({
        "iss": iss,
        "nbf": now,
        "vc": {
            "type": types,
            "credentialSubject": {
                "fhirVersion": "4.0.1",
                "fhirBundle": {
                    "resourceType": "Bundle",
                    "type": "collection",
                    "entry": [
                        { "fullUrl": "resource:0", "resource": { "resourceType": "Patient", "name": [name], "birthDate": person.dob } },
                        { "fullUrl": "resource:1", "resource": immunization },
                    ],
                },
            },
        },
    });
    certs::shc::check_payload(&payload, now).map_err(cert_err)?;
    let key = st.certs().shc_key().await?;
    let signing =
        certs::crypto::SigningKey::from_pkcs8(certs::crypto::Algorithm::Es256, &key.key_pkcs8)
            .map_err(AppError::internal)?;
    let jws = certs::shc::issue(&signing, &key.kid, &payload).map_err(cert_err)?;
    if jws.len() > certs::shc::MAX_SINGLE_QR_JWS {
        return Err(invalid(
            "the card is too long for one QR code; shorten the performer or lot number",
        ));
    }
    use sha2::Digest as _;
    let id = format!(
        "shc:{}",
        hex::encode(&sha2::Sha256::digest(jws.as_bytes())[..8])
    );
    Ok(Issued {
        format: certs::verifier::Format::SmartHealthCard,
        text: certs::shc::jws_to_numeric(&jws),
        jws: Some(jws),
        id,
        kid: key.kid,
        issuer: iss,
        expires_at: None,
        qr_svg: None,
        qr_png: None,
    })
}

/// The trust anchors and rules as listed by the API and the admin page.
pub fn trust_summary(l: &Loaded) -> Value {
    json!({
        "dsc": l.dsc,
        "countries": l.trusted_countries(),
        "shc": l.shc,
        "rules": l.rule_countries,
        "value_sets": l.value_sets,
        "issuer": {
            "dcc": l.dcc_keys.values().map(|k| json!({ "country": k.country, "kid": k.kid_b64 })).collect::<Vec<_>>(),
            "shc_iss": l.settings.shc_iss,
            "shc_keys": l.shc_keys.iter().map(|k| k.kid.clone()).collect::<Vec<_>>(),
        },
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::i18n::I18n;

    /// Every reason code the `certs` crate can give (read from its source) and every error code of this module
    /// has an English message, so a verifier never sees a bare code.
    #[test]
    fn every_reason_and_error_code_has_an_english_message() {
        let i18n = I18n::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let errors = std::fs::read_to_string(root.join("../certs/src/error.rs")).unwrap();
        let mut codes: Vec<String> = errors
            .lines()
            .filter_map(|l| l.split("=> \"").nth(1))
            .filter_map(|rest| rest.split('"').next())
            .map(str::to_owned)
            .collect();
        codes.extend(["rule.failed".into(), "rule.open".into()]);
        assert!(codes.len() > 30, "{codes:?}");
        for code in &codes {
            assert!(i18n.has("en", &reason_id(code)), "no message for {code}");
        }
        let mut seen = 0;
        for file in ["mod.rs", "api.rs", "pages.rs", "material.rs"] {
            let src = std::fs::read_to_string(root.join("src/certs_web").join(file)).unwrap();
            for (i, _) in src.match_indices("\"error-cert") {
                let code: String = src[i + 1..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '-')
                    .collect();
                if code.len() > "error-cert-".len() && src[i + 1 + code.len()..].starts_with('"') {
                    assert!(i18n.has("en", &code), "no message for {code}");
                    seen += 1;
                }
            }
        }
        assert!(seen >= 5, "found {seen} error codes");
    }

    #[test]
    fn a_generated_dsc_signs_certificates_that_verify_with_it() {
        let dir = tempfile_dir();
        let certs = material::CertsDir::new(&dir);
        certs.generate_dcc_key("kz", "Test node").unwrap();
        let loaded = certs.load().unwrap();
        let key = loaded.dcc_keys.get("KZ").unwrap();
        let dsc = certs::trust::Dsc::from_der(&key.dsc_der, None).unwrap();
        assert_eq!(
            dsc.country.as_deref(),
            Some("KZ"),
            "country from the subject"
        );
        assert_eq!(
            dsc.allowed_types.as_ref().map(Vec::len),
            Some(3),
            "EKU names test, vaccination, recovery"
        );
        assert!(dsc.not_after - dsc.not_before >= (material::DSC_VALID_DAYS - 1) * 86_400);
        let issuer = key.issuer().unwrap();
        let person = certs::issue::Person {
            family_name: "Test".into(),
            given_name: None,
            dob: "1990".into(),
        };
        let event = certs::issue::Event::Recovery(certs::issue::Recovery {
            tg: "840539006".into(),
            fr: "2026-01-01".into(),
            co: "KZ".into(),
            is: "Test".into(),
            df: "2026-01-12".into(),
            du: "2026-06-01".into(),
        });
        let now = chrono::Utc::now().timestamp();
        let dcc = certs::issue::build_dcc(&person, &event, "URN:UVCI:01:KZ:1").unwrap();
        let hc1 = issuer.issue(&dcc, now, now + 3600).unwrap();
        let v = loaded.verifier(None, "en").verify(&hc1);
        assert_eq!(v.status, certs::Status::Green, "{v:?}");
        // Key files are private to the node's user.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            for e in std::fs::read_dir(dir.join("issuer")).unwrap() {
                let p = e.unwrap().path();
                if p.to_string_lossy().ends_with(".key.pem") {
                    let mode = std::fs::metadata(&p).unwrap().permissions().mode();
                    assert_eq!(mode & 0o077, 0, "{} is readable by others", p.display());
                }
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let d = std::env::temp_dir().join(format!("caravan-certs-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
