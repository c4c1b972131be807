//! The verifier the node and the CLI use: one input in, a status with reasons and the few holder claims a
//! verifier may see (name and date of birth) out.
//!
//! Privacy: nothing here performs I/O or logs. The trust list and rules are given up front; verification is a pure
//! function of (input, trust, rules, clock). The only `tracing` use in this module would be forbidden: a test
//! (`tests/privacy.rs`) captures every event emitted during verification and asserts there are none.

use crate::error::{Error, Result};
use crate::hcert::{self, Claims, CoseSign1};
use crate::rules::{Outcome, RuleOutcome, RuleSet};
use crate::shc;
use crate::trust::{CertType, Dsc, TrustList};
use serde::Serialize;
use serde_json::Value;

/// Traffic-light status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Technically valid and every applicable rule passed.
    Green,
    /// Technically valid, no rule failed, but some rule could not be evaluated.
    Yellow,
    /// A technical check or a rule failed.
    Red,
}

/// One reason for the status, with a stable code (`rule.failed` / `rule.open` name the deciding rule).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
}

impl From<&Error> for Reason {
    fn from(e: &Error) -> Self {
        Reason {
            code: e.code().to_string(),
            message: e.to_string(),
            rule: None,
        }
    }
}

/// Which format the input was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    EuDcc,
    SmartHealthCard,
    Unknown,
}

/// The claims a verifier screen may show: name and date of birth, plus what the certificate is.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct HolderClaims {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dob: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub certificate_type: Option<String>,
    /// Issuing country (DCC) or issuer URL (SHC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// The result of verifying one input.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Verification {
    pub status: Status,
    pub format: Format,
    pub reasons: Vec<Reason>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claims: Option<HolderClaims>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleOutcome>,
}

impl Verification {
    fn red(format: Format, err: &Error) -> Self {
        Verification {
            status: Status::Red,
            format,
            reasons: vec![err.into()],
            claims: None,
            rules: Vec::new(),
        }
    }

    /// Whether a reason with this code is present.
    pub fn has(&self, code: &str) -> bool {
        self.reasons.iter().any(|r| r.code == code)
    }
}

/// The validation clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The system time at each verification.
    System,
    /// A fixed instant, seconds since the Unix epoch.
    Fixed(i64),
}

impl Clock {
    pub fn now(self) -> i64 {
        match self {
            Clock::System => chrono::Utc::now().timestamp(),
            Clock::Fixed(t) => t,
        }
    }

    /// Parses RFC 3339 (`2021-06-01T10:00:00Z`), a date (`2021-06-01`, midnight UTC) or epoch seconds.
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        if let Ok(secs) = s.parse::<i64>() {
            return Ok(Clock::Fixed(secs));
        }
        if let Ok(dt) = chrono::DateTime::parse_from_rfc3339(s) {
            return Ok(Clock::Fixed(dt.timestamp()));
        }
        // Offsets without a colon (`+0200`) and 7-digit fractions occur in the dgc-testdata clocks.
        if let Ok(dt) = chrono::DateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f%z") {
            return Ok(Clock::Fixed(dt.timestamp()));
        }
        if let Ok(dt) = chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f") {
            return Ok(Clock::Fixed(dt.and_utc().timestamp()));
        }
        if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
            return Ok(Clock::Fixed(
                d.and_time(chrono::NaiveTime::MIN).and_utc().timestamp(),
            ));
        }
        Err(Error::Io(format!(
            "cannot read time {s:?}: expected RFC 3339, YYYY-MM-DD or epoch seconds"
        )))
    }
}

/// Rules and the arrival country they are evaluated for.
#[derive(Debug, Clone)]
pub struct RulesConfig {
    pub rules: RuleSet,
    pub country: String,
    /// Language for rule descriptions (e.g. "en", "de").
    pub lang: String,
}

/// A DCC that passed decoding and signature verification.
#[derive(Debug, Clone)]
pub struct VerifiedDcc<'t> {
    pub cose: CoseSign1,
    pub claims: Claims,
    pub dsc: &'t Dsc,
}

/// Decodes an `HC1:` text and verifies its signature against the trust list: kid from the protected header, else
/// the unprotected one; every DSC with that kid is tried.
pub fn verify_dcc_signature<'t>(trust: &'t TrustList, text: &str) -> Result<VerifiedDcc<'t>> {
    let cose = hcert::decode_text(text)?;
    verify_cose_signature(trust, cose)
}

/// Signature verification of an already decoded COSE_Sign1.
pub fn verify_cose_signature(trust: &TrustList, cose: CoseSign1) -> Result<VerifiedDcc<'_>> {
    let alg = cose.algorithm()?;
    let kid = cose.kid.as_deref().ok_or(Error::NoKid)?;
    if kid.len() != 8 {
        return Err(Error::KidLength(kid.len()));
    }
    let candidates = trust.dscs(kid);
    if candidates.is_empty() {
        return Err(Error::UnknownKid {
            kid: hex::encode(kid),
        });
    }
    let message = cose.sig_structure();
    let mut mismatch = None;
    let mut signer = None;
    for dsc in candidates {
        match dsc.key.verify(alg, &message, &cose.signature) {
            Ok(true) => {
                signer = Some(dsc);
                break;
            }
            Ok(false) => {}
            Err(e) => mismatch = Some(e),
        }
    }
    let Some(dsc) = signer else {
        return Err(match mismatch {
            Some(e) if candidates.len() == 1 => e,
            _ => Error::Signature {
                kid: hex::encode(kid),
            },
        });
    };
    let claims = Claims::parse(&cose.payload)?;
    Ok(VerifiedDcc { cose, claims, dsc })
}

/// Validity checks of a verified DCC at `clock`: iat ≤ clock ≤ exp, and [iat, exp] within the DSC's validity.
pub fn check_validity(claims: &Claims, dsc: &Dsc, clock: i64) -> Vec<Error> {
    let mut errors = Vec::new();
    let ts = |t: i64| {
        chrono::DateTime::from_timestamp(t, 0)
            .map(|d| d.format("%Y-%m-%dT%H:%M:%SZ").to_string())
            .unwrap_or_else(|| t.to_string())
    };
    match claims.iat {
        None => errors.push(Error::Cwt("no iat (6) claim".into())),
        Some(iat) => {
            if iat > clock {
                errors.push(Error::NotYetValid {
                    iat: ts(iat),
                    clock: ts(clock),
                });
            }
            if iat < dsc.not_before {
                errors.push(Error::SignerValidity {
                    what: format!(
                        "issued at {} before the signer's {}",
                        ts(iat),
                        ts(dsc.not_before)
                    ),
                });
            }
        }
    }
    match claims.exp {
        None => errors.push(Error::Cwt("no exp (4) claim".into())),
        Some(exp) => {
            if clock > exp {
                errors.push(Error::Expired {
                    exp: ts(exp),
                    clock: ts(clock),
                });
            }
            if exp > dsc.not_after {
                errors.push(Error::SignerValidity {
                    what: format!(
                        "expiry {} after the signer's {}",
                        ts(exp),
                        ts(dsc.not_after)
                    ),
                });
            }
        }
    }
    errors
}

/// The DSC's extended key usage must allow the certificate's type.
pub fn check_key_usage(claims: &Claims, dsc: &Dsc) -> Result<CertType> {
    let t = claims.cert_type()?;
    if dsc.allows(t) {
        Ok(t)
    } else {
        Err(Error::KeyUsage {
            cert_type: t.name().to_string(),
        })
    }
}

/// Verifies health certificates against a trust list, optional rules and a clock.
#[derive(Debug, Clone)]
pub struct Verifier {
    pub trust: TrustList,
    pub rules: Option<RulesConfig>,
    pub clock: Clock,
    /// Validate the DCC payload against its JSON schema (on by default).
    pub check_schema: bool,
}

impl Verifier {
    pub fn new(trust: TrustList, rules: Option<RulesConfig>, clock: Clock) -> Self {
        Verifier {
            trust,
            rules,
            clock,
            check_schema: true,
        }
    }

    /// Verifies one input: an `HC1:` text, an `shc:/` numeric text, a compact JWS, or a `.smart-health-card` file.
    pub fn verify(&self, input: &str) -> Verification {
        self.verify_at(input, self.clock.now())
    }

    /// [`Verifier::verify`] at an explicit validation clock (Unix seconds).
    pub fn verify_at(&self, input: &str, clock: i64) -> Verification {
        let trimmed = input.trim_start_matches('\u{feff}').trim();
        if trimmed.starts_with("shc:/") || trimmed.starts_with('{') || trimmed.starts_with("ey") {
            return self.verify_shc(input, clock);
        }
        self.verify_dcc(trimmed, clock)
    }

    fn verify_dcc(&self, text: &str, clock: i64) -> Verification {
        let verified = match verify_dcc_signature(&self.trust, text) {
            Ok(v) => v,
            Err(e) => return Verification::red(Format::EuDcc, &e),
        };
        let mut errors = check_validity(&verified.claims, verified.dsc, clock);
        let cert_type = match check_key_usage(&verified.claims, verified.dsc) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(e);
                verified.claims.cert_type().ok()
            }
        };
        if self.check_schema {
            if let Err(e) = crate::schema::validate_dcc(&verified.claims.dcc) {
                errors.push(e);
            }
        }
        let claims = dcc_holder_claims(&verified.claims, cert_type);
        let mut outcomes = Vec::new();
        let mut rule_reasons = Vec::new();
        if let (Some(cfg), Some(t), true) = (&self.rules, cert_type, errors.is_empty()) {
            let issuer_country = verified
                .claims
                .iss
                .as_deref()
                .or(verified.dsc.country.as_deref());
            match cfg.rules.evaluate(
                &cfg.country,
                issuer_country,
                t,
                clock,
                &verified.claims.dcc,
                verified.claims.exp,
                verified.claims.iat,
                verified.cose.kid.as_deref(),
                &cfg.lang,
            ) {
                Ok(o) => outcomes = o,
                Err(e) => errors.push(e),
            }
            for o in &outcomes {
                let (code, message) = match o.outcome {
                    Outcome::Failed => ("rule.failed", o.description.clone()),
                    Outcome::Open => (
                        "rule.open",
                        format!(
                            "{} (could not be evaluated: {})",
                            o.description,
                            o.reason.as_deref().unwrap_or("unknown")
                        ),
                    ),
                    Outcome::Passed => continue,
                };
                rule_reasons.push(Reason {
                    code: code.into(),
                    message,
                    rule: Some(o.rule.clone()),
                });
            }
        }
        let mut reasons: Vec<Reason> = errors.iter().map(Reason::from).collect();
        reasons.extend(rule_reasons);
        let status = if !errors.is_empty() || outcomes.iter().any(|o| o.outcome == Outcome::Failed)
        {
            Status::Red
        } else if outcomes.iter().any(|o| o.outcome == Outcome::Open) {
            Status::Yellow
        } else {
            Status::Green
        };
        Verification {
            status,
            format: Format::EuDcc,
            reasons,
            claims: Some(claims),
            rules: outcomes,
        }
    }

    fn verify_shc(&self, text: &str, clock: i64) -> Verification {
        match shc::verify_all(&self.trust, text, clock).map(|mut cards| cards.swap_remove(0)) {
            Ok(card) => Verification {
                status: Status::Green,
                format: Format::SmartHealthCard,
                reasons: Vec::new(),
                claims: Some(card.holder_claims()),
                rules: Vec::new(),
            },
            Err(e) => Verification::red(Format::SmartHealthCard, &e),
        }
    }
}

fn dcc_holder_claims(claims: &Claims, t: Option<CertType>) -> HolderClaims {
    let nam = claims.dcc.get("nam");
    let field = |k: &str| {
        nam.and_then(|n| n.get(k))
            .and_then(Value::as_str)
            .map(String::from)
    };
    HolderClaims {
        family_name: field("fn").or_else(|| field("fnt")),
        given_name: field("gn").or_else(|| field("gnt")),
        dob: claims
            .dcc
            .get("dob")
            .and_then(Value::as_str)
            .map(String::from),
        certificate_type: t.map(|t| t.name().to_string()),
        issuer: claims.iss.clone(),
    }
}
