//! Queries over the index, shared by C-FIND and QIDO-RS.
//!
//! A query names a level, matching keys in DICOM matching syntax (PS3.4 C.2.2.2: single value,
//! wildcards `*` and `?`, ranges `A-B` on dates and times, `\`-separated UID and code lists,
//! empty for universal matching) and the attributes to return. It is translated to one SQL
//! statement with bound parameters; no value is ever spliced into the SQL text.

use dicom_core::header::Header;
use dicom_core::{DataElement, PrimitiveValue, Tag, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use sqlx::Row;

use crate::archive::{AccessAction, Archive};
use crate::error::{Error, Result};

/// Query/Retrieve level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    Patient,
    Study,
    Series,
    Image,
}

impl Level {
    /// Parses a Query/Retrieve Level (0008,0052) value.
    pub fn parse(value: &str) -> Option<Level> {
        match value.trim().to_ascii_uppercase().as_str() {
            "PATIENT" => Some(Level::Patient),
            "STUDY" => Some(Level::Study),
            "SERIES" => Some(Level::Series),
            "IMAGE" | "INSTANCE" => Some(Level::Image),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Patient => "PATIENT",
            Level::Study => "STUDY",
            Level::Series => "SERIES",
            Level::Image => "IMAGE",
        }
    }
}

/// How an attribute is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Case-sensitive text: exact, wildcard, or `\`-list.
    Text,
    /// Person name: matched case-insensitively, as most archives do.
    Name,
    /// Date (DA): exact or range.
    Date,
    /// Time (TM): exact or range.
    Time,
    /// UID: exact or `\`-list.
    Uid,
    /// Integer string: exact.
    Int,
    /// Unsigned short: exact.
    UShort,
    /// Derived from the index (counts): returned, never matched.
    Computed,
    /// Modalities in Study: matches if any series of the study has one of the listed modalities.
    Modalities,
}

/// One attribute the index knows.
#[derive(Debug)]
struct Attr {
    tag: Tag,
    vr: VR,
    level: Level,
    sql: &'static str,
    kind: Kind,
}

const fn attr(tag: Tag, vr: VR, level: Level, sql: &'static str, kind: Kind) -> Attr {
    Attr {
        tag,
        vr,
        level,
        sql,
        kind,
    }
}

static ATTRS: &[Attr] = &[
    attr(tags::PATIENT_NAME, VR::PN, Level::Patient, "p.patient_name", Kind::Name),
    attr(tags::PATIENT_ID, VR::LO, Level::Patient, "p.patient_id", Kind::Text),
    attr(tags::PATIENT_BIRTH_DATE, VR::DA, Level::Patient, "p.birth_date", Kind::Date),
    attr(tags::PATIENT_SEX, VR::CS, Level::Patient, "p.sex", Kind::Text),
    attr(
        tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        VR::IS,
        Level::Patient,
        "(SELECT COUNT(*) FROM studies x WHERE x.patient_key = p.patient_key)",
        Kind::Computed,
    ),
    attr(
        tags::NUMBER_OF_PATIENT_RELATED_SERIES,
        VR::IS,
        Level::Patient,
        "(SELECT COUNT(*) FROM series x JOIN studies y ON y.study_uid = x.study_uid WHERE y.patient_key = p.patient_key)",
        Kind::Computed,
    ),
    attr(
        tags::NUMBER_OF_PATIENT_RELATED_INSTANCES,
        VR::IS,
        Level::Patient,
        "(SELECT COUNT(*) FROM instances x JOIN studies y ON y.study_uid = x.study_uid WHERE y.patient_key = p.patient_key)",
        Kind::Computed,
    ),
    attr(tags::STUDY_INSTANCE_UID, VR::UI, Level::Study, "s.study_uid", Kind::Uid),
    attr(tags::STUDY_DATE, VR::DA, Level::Study, "s.study_date", Kind::Date),
    attr(tags::STUDY_TIME, VR::TM, Level::Study, "s.study_time", Kind::Time),
    attr(tags::ACCESSION_NUMBER, VR::SH, Level::Study, "s.accession_number", Kind::Text),
    attr(tags::STUDY_ID, VR::SH, Level::Study, "s.study_id", Kind::Text),
    attr(tags::STUDY_DESCRIPTION, VR::LO, Level::Study, "s.study_description", Kind::Text),
    attr(
        tags::REFERRING_PHYSICIAN_NAME,
        VR::PN,
        Level::Study,
        "s.referring_physician",
        Kind::Name,
    ),
    attr(
        tags::MODALITIES_IN_STUDY,
        VR::CS,
        Level::Study,
        "(SELECT group_concat(m, '\\') FROM (SELECT DISTINCT x.modality AS m FROM series x WHERE x.study_uid = s.study_uid AND x.modality IS NOT NULL ORDER BY m))",
        Kind::Modalities,
    ),
    attr(
        tags::NUMBER_OF_STUDY_RELATED_SERIES,
        VR::IS,
        Level::Study,
        "(SELECT COUNT(*) FROM series x WHERE x.study_uid = s.study_uid)",
        Kind::Computed,
    ),
    attr(
        tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        VR::IS,
        Level::Study,
        "(SELECT COUNT(*) FROM instances x WHERE x.study_uid = s.study_uid)",
        Kind::Computed,
    ),
    attr(tags::SERIES_INSTANCE_UID, VR::UI, Level::Series, "se.series_uid", Kind::Uid),
    attr(tags::MODALITY, VR::CS, Level::Series, "se.modality", Kind::Text),
    attr(tags::SERIES_NUMBER, VR::IS, Level::Series, "se.series_number", Kind::Int),
    attr(
        tags::SERIES_DESCRIPTION,
        VR::LO,
        Level::Series,
        "se.series_description",
        Kind::Text,
    ),
    attr(tags::BODY_PART_EXAMINED, VR::CS, Level::Series, "se.body_part", Kind::Text),
    attr(tags::SERIES_DATE, VR::DA, Level::Series, "se.series_date", Kind::Date),
    attr(
        tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        VR::IS,
        Level::Series,
        "(SELECT COUNT(*) FROM instances x WHERE x.series_uid = se.series_uid)",
        Kind::Computed,
    ),
    attr(tags::SOP_INSTANCE_UID, VR::UI, Level::Image, "i.sop_uid", Kind::Uid),
    attr(tags::SOP_CLASS_UID, VR::UI, Level::Image, "i.sop_class_uid", Kind::Uid),
    attr(tags::INSTANCE_NUMBER, VR::IS, Level::Image, "i.instance_number", Kind::Int),
    attr(tags::ROWS, VR::US, Level::Image, "i.rows", Kind::UShort),
    attr(tags::COLUMNS, VR::US, Level::Image, "i.columns", Kind::UShort),
    attr(tags::NUMBER_OF_FRAMES, VR::IS, Level::Image, "i.number_of_frames", Kind::Int),
    attr(
        tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        VR::UI,
        Level::Image,
        "i.transfer_syntax",
        Kind::Uid,
    ),
];

fn find_attr(tag: Tag) -> Option<&'static Attr> {
    ATTRS.iter().find(|a| a.tag == tag)
}

/// The unique key of each level.
fn unique_key(level: Level) -> Tag {
    match level {
        Level::Patient => tags::PATIENT_ID,
        Level::Study => tags::STUDY_INSTANCE_UID,
        Level::Series => tags::SERIES_INSTANCE_UID,
        Level::Image => tags::SOP_INSTANCE_UID,
    }
}

/// The attributes QIDO-RS returns by default at each level (PS3.18 table 10.6.3-3..5).
fn default_return(level: Level) -> Vec<Tag> {
    match level {
        Level::Patient => vec![
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_SEX,
            tags::NUMBER_OF_PATIENT_RELATED_STUDIES,
        ],
        Level::Study => vec![
            tags::STUDY_DATE,
            tags::STUDY_TIME,
            tags::ACCESSION_NUMBER,
            tags::MODALITIES_IN_STUDY,
            tags::REFERRING_PHYSICIAN_NAME,
            tags::PATIENT_NAME,
            tags::PATIENT_ID,
            tags::PATIENT_BIRTH_DATE,
            tags::PATIENT_SEX,
            tags::STUDY_INSTANCE_UID,
            tags::STUDY_ID,
            tags::STUDY_DESCRIPTION,
            tags::NUMBER_OF_STUDY_RELATED_SERIES,
            tags::NUMBER_OF_STUDY_RELATED_INSTANCES,
        ],
        Level::Series => vec![
            tags::STUDY_INSTANCE_UID,
            tags::MODALITY,
            tags::SERIES_DESCRIPTION,
            tags::SERIES_NUMBER,
            tags::SERIES_INSTANCE_UID,
            tags::BODY_PART_EXAMINED,
            tags::SERIES_DATE,
            tags::NUMBER_OF_SERIES_RELATED_INSTANCES,
        ],
        Level::Image => vec![
            tags::STUDY_INSTANCE_UID,
            tags::SERIES_INSTANCE_UID,
            tags::SOP_CLASS_UID,
            tags::SOP_INSTANCE_UID,
            tags::INSTANCE_NUMBER,
            tags::ROWS,
            tags::COLUMNS,
            tags::NUMBER_OF_FRAMES,
            tags::AVAILABLE_TRANSFER_SYNTAX_UID,
        ],
    }
}

/// What to return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnKeys {
    /// The level's default attributes (QIDO-RS without `includefield`).
    Default,
    /// The default attributes plus these (QIDO-RS `includefield`, C-FIND return keys).
    Plus(Vec<Tag>),
    /// Exactly these (C-FIND: the keys present in the identifier).
    Exactly(Vec<Tag>),
    /// Everything the index knows at the level (`includefield=all`).
    All,
}

/// A query over the index.
#[derive(Debug, Clone)]
pub struct Query {
    pub level: Level,
    /// Matching keys: attribute and value in DICOM matching syntax.
    pub filters: Vec<(Tag, String)>,
    pub returns: ReturnKeys,
    pub limit: Option<u32>,
    pub offset: u32,
}

impl Query {
    pub fn new(level: Level) -> Self {
        Query {
            level,
            filters: Vec::new(),
            returns: ReturnKeys::Default,
            limit: None,
            offset: 0,
        }
    }

    /// Adds a matching key.
    pub fn filter(mut self, tag: Tag, value: impl Into<String>) -> Self {
        self.filters.push((tag, value.into()));
        self
    }

    /// Builds a query from a C-FIND identifier: every key present is returned, every key with a
    /// value is matched.
    pub fn from_identifier(identifier: &InMemDicomObject) -> Result<Self> {
        let level = identifier
            .element_opt(tags::QUERY_RETRIEVE_LEVEL)
            .ok()
            .flatten()
            .and_then(|e| e.to_str().ok().map(|s| s.to_string()))
            .ok_or_else(|| {
                Error::InvalidQuery("QueryRetrieveLevel (0008,0052) is missing".into())
            })?;
        let level = Level::parse(&level)
            .ok_or_else(|| Error::InvalidQuery(format!("unknown QueryRetrieveLevel {level:?}")))?;
        let mut query = Query::new(level);
        let mut keys = Vec::new();
        for elem in identifier.iter() {
            let tag = elem.tag();
            if tag == tags::QUERY_RETRIEVE_LEVEL
                || tag == tags::SPECIFIC_CHARACTER_SET
                || tag.group() == 0x0002
                || elem.vr() == VR::SQ
            {
                continue;
            }
            keys.push(tag);
            if let Ok(value) = elem.to_str() {
                let value = value.trim_matches(|c: char| c == ' ' || c == '\0');
                if !value.is_empty() {
                    query.filters.push((tag, value.to_string()));
                }
            }
        }
        query.returns = ReturnKeys::Exactly(keys);
        Ok(query)
    }

    fn output_attrs(&self) -> Vec<Tag> {
        let mut out: Vec<Tag> = match &self.returns {
            ReturnKeys::Default => default_return(self.level),
            ReturnKeys::Plus(extra) => {
                let mut v = default_return(self.level);
                v.extend(extra.iter().copied());
                v
            }
            ReturnKeys::Exactly(keys) => keys.clone(),
            ReturnKeys::All => ATTRS
                .iter()
                .filter(|a| a.level <= self.level)
                .map(|a| a.tag)
                .collect(),
        };
        // The unique keys of this level and the levels above it (below patient) identify a
        // result; C-FIND requires them in every response.
        let uniques = [Level::Study, Level::Series, Level::Image]
            .into_iter()
            .filter(|l| *l <= self.level)
            .map(unique_key);
        if self.level == Level::Patient {
            out.push(tags::PATIENT_ID);
        }
        out.extend(uniques);
        let mut seen = std::collections::HashSet::new();
        out.retain(|t| seen.insert(*t));
        out
    }
}

enum Param {
    Text(String),
    Int(i64),
}

fn is_wildcard(value: &str) -> bool {
    value.contains('*') || value.contains('?')
}

/// Translates DICOM wildcards to a GLOB pattern, escaping GLOB's own `[` so it matches literally.
fn to_glob(value: &str) -> String {
    value.replace('[', "[[]")
}

/// Translates DICOM wildcards to a LIKE pattern (escape character `!`).
fn to_like(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push('%'),
            '?' => out.push('_'),
            '%' | '_' | '!' => {
                out.push('!');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

fn list_clause(sql: &str, values: &[&str], params: &mut Vec<Param>) -> String {
    let marks = vec!["?"; values.len()].join(", ");
    params.extend(values.iter().map(|v| Param::Text(v.to_string())));
    format!("{sql} IN ({marks})")
}

fn range_clause(sql: &str, value: &str, time: bool, params: &mut Vec<Param>) -> Result<String> {
    let (low, high) = value
        .split_once('-')
        .ok_or_else(|| Error::InvalidQuery(format!("bad range {value:?}")))?;
    let (low, high) = (low.trim(), high.trim());
    let valid = |s: &str| {
        s.chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ':')
    };
    if !valid(low) || !valid(high) || (low.is_empty() && high.is_empty()) {
        return Err(Error::InvalidQuery(format!(
            "bad date/time range {value:?}"
        )));
    }
    let mut parts = Vec::new();
    if !low.is_empty() {
        parts.push(format!("{sql} >= ?"));
        params.push(Param::Text(low.replace([':'], "")));
    }
    if !high.is_empty() {
        parts.push(format!("{sql} <= ?"));
        // A time bound such as 1200 must include 12:00:59.999: extend it past any stored suffix.
        let bound = if time {
            format!("{}\u{10FFFF}", high.replace(':', ""))
        } else {
            high.to_string()
        };
        params.push(Param::Text(bound));
    }
    Ok(format!("({sql} IS NOT NULL AND {})", parts.join(" AND ")))
}

fn match_clause(a: &Attr, value: &str, params: &mut Vec<Param>) -> Result<Option<String>> {
    let value = value.trim();
    if value.is_empty() || value == "*" {
        return Ok(None);
    }
    let values: Vec<&str> = value.split('\\').map(str::trim).collect();
    let sql = a.sql;
    let clause = match a.kind {
        Kind::Computed => {
            return Err(Error::InvalidQuery(format!(
                "attribute {} cannot be used as a matching key",
                a.tag
            )))
        }
        Kind::Modalities => {
            let marks = vec!["?"; values.len()].join(", ");
            params.extend(values.iter().map(|v| Param::Text(v.to_string())));
            format!(
                "EXISTS (SELECT 1 FROM series x WHERE x.study_uid = s.study_uid AND x.modality IN ({marks}))"
            )
        }
        Kind::Uid => {
            if let Some(bad) = values.iter().find(|v| is_wildcard(v)) {
                return Err(Error::InvalidQuery(format!(
                    "wildcards are not allowed in UID matching ({bad:?})"
                )));
            }
            list_clause(sql, &values, params)
        }
        Kind::Int | Kind::UShort => {
            let mut ints = Vec::new();
            for v in &values {
                let n: i64 = v.parse().map_err(|_| {
                    Error::InvalidQuery(format!("{} expects an integer, got {v:?}", a.tag))
                })?;
                ints.push(n);
            }
            let marks = vec!["?"; ints.len()].join(", ");
            params.extend(ints.into_iter().map(Param::Int));
            format!("{sql} IN ({marks})")
        }
        Kind::Date | Kind::Time => {
            let time = a.kind == Kind::Time;
            let mut ors = Vec::new();
            for v in &values {
                if v.contains('-') {
                    ors.push(range_clause(sql, v, time, params)?);
                } else if is_wildcard(v) {
                    ors.push(format!("{sql} GLOB ?"));
                    params.push(Param::Text(to_glob(v)));
                } else if time {
                    // A single time such as 1200 matches any stored time within that minute.
                    ors.push(format!("({sql} >= ? AND {sql} <= ?)"));
                    params.push(Param::Text(v.replace(':', "")));
                    params.push(Param::Text(format!("{}\u{10FFFF}", v.replace(':', ""))));
                } else {
                    ors.push(format!("{sql} = ?"));
                    params.push(Param::Text(v.to_string()));
                }
            }
            format!("({})", ors.join(" OR "))
        }
        Kind::Name => {
            let mut ors = Vec::new();
            for v in &values {
                if is_wildcard(v) {
                    ors.push(format!("{sql} LIKE ? ESCAPE '!'"));
                    params.push(Param::Text(to_like(v)));
                } else {
                    ors.push(format!("{sql} = ? COLLATE NOCASE"));
                    params.push(Param::Text(v.to_string()));
                }
            }
            format!("({})", ors.join(" OR "))
        }
        Kind::Text => {
            let mut ors = Vec::new();
            for v in &values {
                if is_wildcard(v) {
                    ors.push(format!("{sql} GLOB ?"));
                    params.push(Param::Text(to_glob(v)));
                } else {
                    ors.push(format!("{sql} = ?"));
                    params.push(Param::Text(v.to_string()));
                }
            }
            format!("({})", ors.join(" OR "))
        }
    };
    Ok(Some(clause))
}

fn from_clause(level: Level) -> &'static str {
    match level {
        Level::Patient => "patients p",
        Level::Study => "studies s JOIN patients p ON p.patient_key = s.patient_key",
        Level::Series => {
            "series se JOIN studies s ON s.study_uid = se.study_uid \
             JOIN patients p ON p.patient_key = s.patient_key"
        }
        Level::Image => {
            "instances i JOIN series se ON se.series_uid = i.series_uid \
             JOIN studies s ON s.study_uid = se.study_uid \
             JOIN patients p ON p.patient_key = s.patient_key"
        }
    }
}

fn order_clause(level: Level) -> &'static str {
    match level {
        Level::Patient => "p.patient_name, p.patient_id",
        Level::Study => "s.study_date, s.study_time, s.study_uid",
        Level::Series => "s.study_uid, se.series_number, se.series_uid",
        Level::Image => "se.series_uid, i.instance_number, i.sop_uid",
    }
}

/// One matched entity: its attributes as a DICOM data set, plus its study for auditing.
#[derive(Debug, Clone)]
pub struct QueryMatch {
    pub attributes: InMemDicomObject,
    pub study_uid: Option<String>,
}

impl Archive {
    /// Runs a query. Matching keys the index does not know are refused as invalid, because
    /// silently ignoring them would return more than the caller asked for. Return keys the
    /// index does not know come back empty, as PS3.4 C.4.1.1.3.2 allows.
    pub async fn query(&self, query: &Query, principal: &str) -> Result<Vec<QueryMatch>> {
        let mut params = Vec::new();
        let mut wheres = Vec::new();
        for (tag, value) in &query.filters {
            let a = find_attr(*tag).ok_or_else(|| {
                Error::InvalidQuery(format!("matching on {tag} is not supported"))
            })?;
            if a.level > query.level {
                return Err(Error::InvalidQuery(format!(
                    "{tag} is below the {} level",
                    query.level.as_str()
                )));
            }
            if let Some(clause) = match_clause(a, value, &mut params)? {
                wheres.push(clause);
            }
        }
        let outputs = query.output_attrs();
        let mut columns = Vec::new();
        let mut known: Vec<(Tag, Option<&'static Attr>)> = Vec::new();
        for tag in &outputs {
            match find_attr(*tag).filter(|a| a.level <= query.level) {
                Some(a) => {
                    columns.push(format!("{} AS c{}", a.sql, columns.len()));
                    known.push((*tag, Some(a)));
                }
                None => known.push((*tag, None)),
            }
        }
        let study_col = if query.level >= Level::Study {
            columns.push("s.study_uid AS study_key".to_string());
            true
        } else {
            false
        };
        if columns.is_empty() {
            columns.push("1".into());
        }
        let sql = format!(
            "SELECT {} FROM {} {} ORDER BY {} LIMIT ? OFFSET ?",
            columns.join(", "),
            from_clause(query.level),
            if wheres.is_empty() {
                String::new()
            } else {
                format!("WHERE {}", wheres.join(" AND "))
            },
            order_clause(query.level),
        );
        let mut q = sqlx::query(&sql);
        for p in params {
            q = match p {
                Param::Text(s) => q.bind(s),
                Param::Int(n) => q.bind(n),
            };
        }
        q = q
            .bind(query.limit.map(i64::from).unwrap_or(-1))
            .bind(i64::from(query.offset));
        let rows = q.fetch_all(self.pool()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let mut obj = InMemDicomObject::new_empty();
            let mut col = 0usize;
            for (tag, a) in &known {
                let elem = match a {
                    Some(a) => {
                        let elem = element_from_column(a, &row, col)?;
                        col += 1;
                        elem
                    }
                    None => {
                        use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
                        let vr = dicom_dictionary_std::StandardDataDictionary
                            .by_tag(*tag)
                            .map(|e| e.vr().relaxed())
                            .unwrap_or(VR::UN);
                        DataElement::new(*tag, vr, PrimitiveValue::Empty)
                    }
                };
                obj.put(elem);
            }
            let study_uid = if study_col {
                row.try_get::<Option<String>, _>("study_key")?
            } else {
                None
            };
            out.push(QueryMatch {
                attributes: obj,
                study_uid,
            });
        }
        let mut seen = std::collections::HashSet::new();
        for m in &out {
            if let Some(study) = &m.study_uid {
                if seen.insert(study.clone()) {
                    self.notify(AccessAction::Query, Some(study), None, principal);
                }
            }
        }
        if query.level == Level::Patient && !out.is_empty() {
            self.notify(AccessAction::Query, None, None, principal);
        }
        Ok(out)
    }
}

fn element_from_column(
    a: &Attr,
    row: &sqlx::sqlite::SqliteRow,
    col: usize,
) -> Result<dicom_object::mem::InMemElement> {
    let value = match a.kind {
        Kind::Int | Kind::Computed => {
            let n: Option<i64> = row.try_get(col)?;
            match n {
                Some(n) => PrimitiveValue::from(n.to_string()),
                None => PrimitiveValue::Empty,
            }
        }
        Kind::UShort => {
            let n: Option<i64> = row.try_get(col)?;
            match n.and_then(|n| u16::try_from(n).ok()) {
                Some(n) => PrimitiveValue::from(n),
                None => PrimitiveValue::Empty,
            }
        }
        _ => {
            let s: Option<String> = row.try_get(col)?;
            match s {
                Some(s) if a.kind == Kind::Modalities || a.vr == VR::CS => {
                    let parts: Vec<String> = s.split('\\').map(str::to_string).collect();
                    PrimitiveValue::Strs(parts.into())
                }
                Some(s) => PrimitiveValue::from(s),
                None => PrimitiveValue::Empty,
            }
        }
    };
    Ok(DataElement::new(a.tag, a.vr, value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_translate_safely() {
        assert_eq!(to_like("Do*_J?%"), "Do%!_J_!%");
        assert_eq!(to_glob("a[b*"), "a[[]b*");
    }

    #[test]
    fn levels_parse() {
        assert_eq!(Level::parse("study "), Some(Level::Study));
        assert_eq!(Level::parse("IMAGE"), Some(Level::Image));
        assert_eq!(Level::parse("FRAME"), None);
    }
}
