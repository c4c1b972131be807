//! Institutions, people, patients and consent.

use crate::ids::*;
use chrono::{DateTime, NaiveDate, NaiveTime, Utc, Weekday};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where an institution sits in the network: the three levels of the seeds' service platform.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InstitutionLevel {
    NationalCenter,
    RegionalPlatform,
    Hospital,
}

impl InstitutionLevel {
    pub const ALL: [InstitutionLevel; 3] = [
        InstitutionLevel::NationalCenter,
        InstitutionLevel::RegionalPlatform,
        InstitutionLevel::Hospital,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NationalCenter => "national_center",
            Self::RegionalPlatform => "regional_platform",
            Self::Hospital => "hospital",
        }
    }
}

impl FromStr for InstitutionLevel {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str() == s)
            .ok_or_else(|| ParseError::new("institution level", s))
    }
}

/// An ISO 3166-1 alpha-2 country code, upper case.
#[derive(
    Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[schemars(extend("pattern" = "^[A-Z]{2}$"))]
pub struct CountryCode(String);

impl CountryCode {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for CountryCode {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<CountryCode> for String {
    fn from(c: CountryCode) -> String {
        c.0
    }
}

impl FromStr for CountryCode {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() == 2 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(ParseError::new(
                "country code (ISO 3166-1 alpha-2, e.g. KZ)",
                s,
            ))
        }
    }
}

impl fmt::Display for CountryCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A value that did not parse, with what was expected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {value:?}")]
pub struct ParseError {
    pub what: &'static str,
    pub value: String,
}

impl ParseError {
    pub fn new(what: &'static str, value: &str) -> Self {
        let mut value = value.to_owned();
        value.truncate(64);
        Self { what, value }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Institution {
    pub id: InstitutionId,
    pub name: String,
    pub level: InstitutionLevel,
    pub country: CountryCode,
    pub parent: Option<InstitutionId>,
    /// IANA time zone name, e.g. `Asia/Almaty`.
    pub timezone: String,
}

/// The roles a user signs in with. One role per account keeps authorisation auditable.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    PartialOrd,
    Ord,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A referring clinician: creates cases for patients of their institution.
    Referrer,
    /// An expert who answers consultations.
    Consultant,
    /// Routes cases, overrides assignments, handles escalations for their institution.
    Coordinator,
    /// Public-health officer: surveillance data, never individual consultations.
    PublicHealthOfficer,
    /// Node administrator: institutions, users, tokens, audit verification.
    Admin,
    /// A patient: sees their own record and who accessed it.
    Patient,
    /// A pharmacist: verifies a printed prescription, looks one up by its id or signed code, records its dispense
    /// and reads the formulary. Never browses patients, consultations, cases, monitoring or imaging.
    Pharmacist,
}

impl Role {
    pub const ALL: [Role; 7] = [
        Role::Referrer,
        Role::Consultant,
        Role::Coordinator,
        Role::PublicHealthOfficer,
        Role::Admin,
        Role::Patient,
        Role::Pharmacist,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Referrer => "referrer",
            Role::Consultant => "consultant",
            Role::Coordinator => "coordinator",
            Role::PublicHealthOfficer => "public_health_officer",
            Role::Admin => "admin",
            Role::Patient => "patient",
            Role::Pharmacist => "pharmacist",
        }
    }
    /// Clinicians may see patient data of their institution. A pharmacist is not one: they see a prescription
    /// only when it is presented to them, never the patient's record.
    pub fn is_clinical(self) -> bool {
        matches!(self, Role::Referrer | Role::Consultant | Role::Coordinator)
    }
    /// Records dispenses of prescriptions (FHIR MedicationDispense).
    pub fn dispenses(self) -> bool {
        matches!(self, Role::Pharmacist)
    }
}

impl FromStr for Role {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| ParseError::new("role", s))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Weekly working hours in the practitioner's own time zone.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkingHours {
    pub days: Vec<Weekday>,
    pub start: NaiveTime,
    pub end: NaiveTime,
}

impl Default for WorkingHours {
    fn default() -> Self {
        Self {
            days: vec![
                Weekday::Mon,
                Weekday::Tue,
                Weekday::Wed,
                Weekday::Thu,
                Weekday::Fri,
            ],
            start: NaiveTime::from_hms_opt(8, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
        }
    }
}

/// What routing needs to know about a clinician.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
pub struct PractitionerProfile {
    /// Specialty codes (lower-case slugs such as `cardiology`).
    pub specialties: Vec<String>,
    /// BCP 47 language tags the practitioner works in.
    pub languages: Vec<String>,
    /// IANA time zone.
    pub timezone: String,
    pub hours: WorkingHours,
    /// Maximum number of open consultations the practitioner takes on.
    pub capacity: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub username: String,
    pub display_name: String,
    pub institution_id: InstitutionId,
    pub role: Role,
    /// For a patient account: the patient record it may see.
    pub patient_id: Option<PatientId>,
    /// For clinicians: specialties, languages, hours, capacity.
    pub profile: Option<PractitionerProfile>,
    /// Preferred UI language.
    pub locale: String,
    pub active: bool,
}

/// A standing multidisciplinary team of one institution: routing may propose it as a whole, in which case the
/// lead is assigned and, when the lead accepts, the members join the panel.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Team {
    pub id: TeamId,
    pub institution_id: InstitutionId,
    pub name: String,
    /// The specialty of the cases the team takes (its members may have others).
    pub specialty: String,
    pub lead_id: UserId,
    /// The other members (not the lead), in the order they are listed.
    pub member_ids: Vec<UserId>,
}

impl Team {
    /// Lead first, then the members.
    pub fn everyone(&self) -> impl Iterator<Item = UserId> + '_ {
        std::iter::once(self.lead_id).chain(self.member_ids.iter().copied())
    }
}

/// The acting principal of a request: every store query takes one, so that scoping cannot be forgotten.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Actor {
    pub user_id: UserId,
    pub institution_id: InstitutionId,
    pub role: Role,
    pub patient_id: Option<PatientId>,
}

impl From<&User> for Actor {
    fn from(u: &User) -> Self {
        Self {
            user_id: u.id,
            institution_id: u.institution_id,
            role: u.role,
            patient_id: u.patient_id,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Sex {
    Female,
    Male,
    Other,
    Unknown,
}

impl Sex {
    pub fn as_str(self) -> &'static str {
        match self {
            Sex::Female => "female",
            Sex::Male => "male",
            Sex::Other => "other",
            Sex::Unknown => "unknown",
        }
    }
}

impl FromStr for Sex {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "female" => Ok(Sex::Female),
            "male" => Ok(Sex::Male),
            "other" => Ok(Sex::Other),
            "unknown" => Ok(Sex::Unknown),
            _ => Err(ParseError::new("sex (female, male, other, unknown)", s)),
        }
    }
}

/// A patient held by one institution of this node (data sovereignty: the home institution owns the record).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patient {
    pub id: PatientId,
    pub institution_id: InstitutionId,
    pub given_name: String,
    pub family_name: String,
    pub birth_date: NaiveDate,
    pub sex: Sex,
    /// National identifier, if recorded. Never crosses a border unless consent allows it.
    pub national_id: Option<String>,
    pub languages: Vec<String>,
}

impl Patient {
    /// The text a name search matches against: given and family name, Unicode-lowercased.
    pub fn search_key(&self) -> String {
        name_search_key(&format!("{} {}", self.given_name, self.family_name))
    }
}

/// Fold a name or a search term for case-insensitive matching in any script. Done here, not in SQL,
/// because SQLite's `lower()` only folds ASCII (and PostgreSQL's depends on the database's locale).
pub fn name_search_key(s: &str) -> String {
    s.trim().to_lowercase()
}

/// What a consent covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConsentScope {
    /// Remote consultation within this node's network of institutions.
    Consultation,
    /// A pseudonymised case packet may cross a border.
    CrossBorder,
    /// Name, national id and address may be shared with a foreign node.
    ShareIdentity,
}

impl ConsentScope {
    pub const ALL: [ConsentScope; 3] = [
        ConsentScope::Consultation,
        ConsentScope::CrossBorder,
        ConsentScope::ShareIdentity,
    ];
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentScope::Consultation => "consultation",
            ConsentScope::CrossBorder => "cross_border",
            ConsentScope::ShareIdentity => "share_identity",
        }
    }
}

impl FromStr for ConsentScope {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| ParseError::new("consent scope", s))
    }
}

/// A consent decision. The latest record per (patient, scope) is the one in force.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub id: ConsentId,
    pub patient_id: PatientId,
    pub scope: ConsentScope,
    pub granted: bool,
    pub recorded_by: UserId,
    pub recorded_at: DateTime<Utc>,
    pub note: String,
}

/// The consent in force for a scope, given a patient's consent history.
pub fn consent_in_force(history: &[Consent], scope: ConsentScope) -> bool {
    history
        .iter()
        .filter(|c| c.scope == scope)
        .max_by_key(|c| (c.recorded_at, c.id))
        .is_some_and(|c| c.granted)
}

/// A practitioner's specialty catalogue: the codes routing understands. Labels live in the Fluent bundles
/// (`specialty-<code>`).
pub const SPECIALTIES: &[&str] = &[
    "cardiology",
    "dermatology",
    "endocrinology",
    "infectious_diseases",
    "internal_medicine",
    "nephrology",
    "neurology",
    "oncology",
    "paediatrics",
    "pathology",
    "pulmonology",
    "radiology",
    "surgery",
];

pub fn is_known_specialty(code: &str) -> bool {
    SPECIALTIES.contains(&code)
}

#[cfg(test)]
mod tests {
    #[test]
    fn name_search_key_folds_every_script() {
        assert_eq!(super::name_search_key("  Алиев ЖАНАР "), "алиев жанар");
        assert_eq!(super::name_search_key("ÖZTÜRK Émile"), "öztürk émile");
        assert_eq!(super::name_search_key("王芳"), "王芳");
    }

    use super::*;
    use chrono::TimeZone;

    #[test]
    fn country_codes_are_validated() {
        assert!("KZ".parse::<CountryCode>().is_ok());
        assert!("kz".parse::<CountryCode>().is_err());
        assert!("KAZ".parse::<CountryCode>().is_err());
    }

    #[test]
    fn latest_consent_wins() {
        let p = PatientId::new();
        let u = UserId::new();
        let mk = |granted, h| Consent {
            id: ConsentId::new(),
            patient_id: p,
            scope: ConsentScope::Consultation,
            granted,
            recorded_by: u,
            recorded_at: Utc.with_ymd_and_hms(2026, 1, 1, h, 0, 0).unwrap(),
            note: String::new(),
        };
        assert!(!consent_in_force(&[], ConsentScope::Consultation));
        assert!(consent_in_force(
            &[mk(false, 1), mk(true, 2)],
            ConsentScope::Consultation
        ));
        assert!(!consent_in_force(
            &[mk(true, 1), mk(false, 2)],
            ConsentScope::Consultation
        ));
        assert!(!consent_in_force(&[mk(true, 1)], ConsentScope::CrossBorder));
    }

    #[test]
    fn roles_round_trip() {
        for r in Role::ALL {
            assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
        }
        assert!("root".parse::<Role>().is_err());
    }

    #[test]
    fn a_pharmacist_dispenses_but_is_not_a_clinician() {
        assert_eq!("pharmacist".parse::<Role>().unwrap(), Role::Pharmacist);
        assert!(!Role::Pharmacist.is_clinical());
        assert!(Role::Pharmacist.dispenses());
        let dispensers: Vec<Role> = Role::ALL.into_iter().filter(|r| r.dispenses()).collect();
        assert_eq!(
            dispensers,
            [Role::Pharmacist],
            "clinicians prescribe, pharmacists dispense"
        );
        assert_eq!(
            serde_json::to_string(&Role::Pharmacist).unwrap(),
            "\"pharmacist\""
        );
    }
}
