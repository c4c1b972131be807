//! Surveillance across borders: the envelopes a node sends (`surv.alert` to the nodes of neighbouring regions,
//! `surv.aggregate` with the weekly counts of a border region, `surv.ack` back to the origin of a foreign alert)
//! and their effects when received. Bodies carry aggregate figures only: disease, region, week, counts, bounds,
//! the method and people's names for acknowledgements; never a case of the line list.

use super::SeriesWeek;
use crate::audit::system_event;
use crate::auth::Principal;
use crate::error::AppResult;
use crate::AppState;
use caravan_domain::{AuditAction, AuditEvent};
use caravan_federation::envelope::MessageType;
use caravan_store::*;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use uuid::Uuid;

/// How many past weeks of the region's series travel with an alert.
const RECENT_WEEKS: usize = 12;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WeekCount {
    pub iso_year: i32,
    pub iso_week: u32,
    pub count: i64,
}

/// `surv.alert`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AlertBody {
    /// The alert's id on the sending node (the `surv.ack` names it).
    pub alert: String,
    pub disease: String,
    pub region: String,
    pub region_name: String,
    pub country: String,
    /// The receiver's regions that border `region`.
    pub neighbour_regions: Vec<String>,
    pub iso_year: i32,
    pub iso_week: u32,
    pub observed: f64,
    pub upperbound: Option<f64>,
    pub method: String,
    /// The region's weekly counts up to the alarm week.
    pub recent: Vec<WeekCount>,
}

/// `surv.aggregate`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AggregateBody {
    pub disease: String,
    pub region: String,
    pub region_name: String,
    pub weeks: Vec<WeekCount>,
}

/// Who acknowledged (a person of the receiving node's public-health service).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AckBy {
    pub id: String,
    pub name: String,
}

/// `surv.ack`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct AckBody {
    pub alert: String,
    pub by: AckBy,
    pub acknowledged_at: DateTime<Utc>,
}

/// The neighbouring nodes of a region, each with our region's neighbours on it.
fn by_node(reg: &SurvRegion) -> BTreeMap<String, Vec<String>> {
    let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for n in &reg.neighbours {
        m.entry(n.node_id.clone())
            .or_default()
            .push(n.region.clone());
    }
    m
}

fn to_value<T: Serialize>(b: &T) -> AppResult<Value> {
    serde_json::to_value(b).map_err(crate::error::AppError::internal)
}

/// One `surv.alert` per neighbouring node of the alert's region (none when the node is not federated).
pub fn alert_envelopes(
    st: &AppState,
    alert: &SurvAlert,
    reg: &SurvRegion,
    counts: &[(NaiveDate, i64)],
) -> AppResult<Vec<Outgoing>> {
    let Some(fedn) = st.federation() else {
        return Ok(Vec::new());
    };
    let upto: Vec<&(NaiveDate, i64)> = counts
        .iter()
        .filter(|(d, _)| {
            let w = d.iso_week();
            (w.year(), w.week()) <= (alert.iso_year, alert.iso_week)
        })
        .collect();
    let recent: Vec<WeekCount> = upto
        .iter()
        .skip(upto.len().saturating_sub(RECENT_WEEKS))
        .map(|(d, c)| WeekCount {
            iso_year: d.iso_week().year(),
            iso_week: d.iso_week().week(),
            count: *c,
        })
        .collect();
    let mut out = Vec::new();
    for (node, regions) in by_node(reg) {
        let body = AlertBody {
            alert: alert.id.to_string(),
            disease: alert.disease.clone(),
            region: alert.region.clone(),
            region_name: alert.region_name.clone(),
            country: alert.country.clone(),
            neighbour_regions: regions,
            iso_year: alert.iso_year,
            iso_week: alert.iso_week,
            observed: alert.observed,
            upperbound: alert.upperbound,
            method: alert.method.clone(),
            recent: recent.clone(),
        };
        out.push(fedn.outgoing(&node, MessageType::SurvAlert, to_value(&body)?, None)?);
    }
    Ok(out)
}

/// The `surv.ack` of a foreign alert, back to its node.
pub fn ack_envelope(
    st: &AppState,
    a: &SurvAlert,
    p: &Principal,
    at: DateTime<Utc>,
) -> AppResult<Option<Outgoing>> {
    let Some(fedn) = st.federation() else {
        return Ok(None);
    };
    let body = AckBody {
        alert: a.origin_id.clone(),
        by: AckBy {
            id: p.user.id.to_string(),
            name: p.user.display_name.clone(),
        },
        acknowledged_at: at,
    };
    Ok(Some(fedn.outgoing(
        &a.origin_node,
        MessageType::SurvAck,
        to_value(&body)?,
        None,
    )?))
}

/// Send the touched weeks of a border region's series to its neighbouring nodes (`surv.aggregate`).
pub async fn share_counts(
    st: &AppState,
    reg: &SurvRegion,
    disease: &str,
    rows: &[SeriesWeek],
) -> AppResult<()> {
    let Some(fedn) = st.federation() else {
        return Ok(());
    };
    if rows.is_empty() {
        return Ok(());
    }
    let weeks: Vec<WeekCount> = rows
        .iter()
        .map(|r| WeekCount {
            iso_year: r.iso_year,
            iso_week: r.iso_week,
            count: r.count,
        })
        .collect();
    let body = AggregateBody {
        disease: disease.to_owned(),
        region: reg.code.clone(),
        region_name: reg.name.clone(),
        weeks,
    };
    let mut changes = Vec::new();
    for node in by_node(reg).keys() {
        changes.push(Change::Enqueue(fedn.outgoing(
            node,
            MessageType::SurvAggregate,
            to_value(&body)?,
            None,
        )?));
    }
    let audit = vec![system_event(
        AuditAction::Export,
        "surveillance_aggregate",
        &reg.code,
        None,
        &format!(
            "{} week(s) of {disease} to {}",
            rows.len(),
            by_node(reg).keys().cloned().collect::<Vec<_>>().join(", ")
        ),
    )];
    crate::federation::commit(st, changes, audit).await
}

/// The effect of a received surveillance envelope: `Ok(Ok(changes, audit))` to apply, `Ok(Err(reason))` when it
/// is valid but cannot take effect here (stored as ignored), `Err` when this node cannot apply it now.
pub type Received = AppResult<Result<(Vec<Change>, Vec<AuditEvent>), String>>;

fn parse<T: serde::de::DeserializeOwned>(body: Value) -> Result<T, String> {
    // serde's message names the field, never its value.
    serde_json::from_value(body).map_err(|e| format!("malformed body: {e}"))
}

/// Apply a `surv.*` envelope from `from`.
pub async fn receive(st: &AppState, from: &str, kind: MessageType, body: Value) -> Received {
    match kind {
        MessageType::SurvAlert => match parse(body) {
            Ok(b) => receive_alert(st, from, b).await,
            Err(e) => Ok(Err(e)),
        },
        MessageType::SurvAggregate => match parse(body) {
            Ok(b) => receive_aggregate(st, from, b).await,
            Err(e) => Ok(Err(e)),
        },
        MessageType::SurvAck => match parse(body) {
            Ok(b) => receive_ack(st, from, b).await,
            Err(e) => Ok(Err(e)),
        },
        other => Ok(Err(format!(
            "{} is not a surveillance message",
            other.name()
        ))),
    }
}

/// Our region among `candidates` that lists `from`'s `region` as a neighbour.
fn bordering<'a>(
    regions: &'a [SurvRegion],
    candidates: &[String],
    from: &str,
    region: &str,
) -> Option<&'a SurvRegion> {
    regions.iter().find(|r| {
        (candidates.is_empty() || candidates.contains(&r.code))
            && r.neighbours
                .iter()
                .any(|n| n.node_id == from && n.region == region)
    })
}

fn short(s: &str, max: usize) -> bool {
    !s.is_empty() && s.chars().count() <= max
}

async fn receive_alert(st: &AppState, from: &str, b: AlertBody) -> Received {
    if !(short(&b.alert, 64)
        && short(&b.region, 32)
        && short(&b.region_name, 100)
        && short(&b.method, 32)
        && b.country.len() == 2
        && super::DISEASES.contains(&b.disease.as_str())
        && b.observed.is_finite()
        && b.observed >= 0.0)
    {
        return Ok(Err("invalid alert".into()));
    }
    let regions = st.store().surv_regions().await?;
    let Some(local) = bordering(&regions, &b.neighbour_regions, from, &b.region) else {
        return Ok(Err("no region here borders the alert's region".into()));
    };
    if st
        .store()
        .surv_alert_for(from, &b.disease, &b.region, b.iso_year, b.iso_week)
        .await?
        .is_some()
    {
        return Ok(Err("alert already received".into()));
    }
    let id = Uuid::now_v7();
    let alert = SurvAlert {
        id,
        origin_node: from.to_owned(),
        origin_id: b.alert,
        disease: b.disease,
        region: b.region,
        region_name: b.region_name,
        country: b.country,
        local_region: Some(local.code.clone()),
        iso_year: b.iso_year,
        iso_week: b.iso_week,
        observed: b.observed,
        upperbound: b.upperbound.filter(|u| u.is_finite()),
        method: b.method,
        created_at: Utc::now(),
        status: "open".into(),
        acknowledged_by: None,
        acknowledged_at: None,
    };
    let mut changes = vec![Change::InsertSurvAlert(alert.clone())];
    for w in b.recent.iter().take(104) {
        changes.push(Change::PutSurvForeignCount(SurvForeignCount {
            node_id: from.to_owned(),
            region: alert.region.clone(),
            disease: alert.disease.clone(),
            iso_year: w.iso_year,
            iso_week: w.iso_week,
            count: w.count.max(0),
        }));
    }
    let audit = vec![system_event(
        AuditAction::Create,
        "surveillance_alert",
        id,
        None,
        &format!("cross-border alert from {from} (borders {})", local.code),
    )];
    tracing::info!(alert = %id, from, local_region = %local.code, "cross-border alert received");
    Ok(Ok((changes, audit)))
}

async fn receive_aggregate(st: &AppState, from: &str, b: AggregateBody) -> Received {
    if !(short(&b.region, 32) && super::DISEASES.contains(&b.disease.as_str()))
        || b.weeks.len() > 520
    {
        return Ok(Err("invalid aggregate".into()));
    }
    let regions = st.store().surv_regions().await?;
    if bordering(&regions, &[], from, &b.region).is_none() {
        return Ok(Err("no region here borders the aggregate's region".into()));
    }
    let changes = b
        .weeks
        .iter()
        .map(|w| {
            Change::PutSurvForeignCount(SurvForeignCount {
                node_id: from.to_owned(),
                region: b.region.clone(),
                disease: b.disease.clone(),
                iso_year: w.iso_year,
                iso_week: w.iso_week,
                count: w.count.max(0),
            })
        })
        .collect();
    let audit = vec![system_event(
        AuditAction::Create,
        "surveillance_aggregate",
        format!("{from}/{}", b.region),
        None,
        &format!("{} week(s) of {} from {from}", b.weeks.len(), b.disease),
    )];
    Ok(Ok((changes, audit)))
}

async fn receive_ack(st: &AppState, from: &str, b: AckBody) -> Received {
    let Ok(id) = b.alert.parse::<Uuid>() else {
        return Ok(Err("unknown alert".into()));
    };
    let a = match st.store().surv_alert(id).await {
        Ok(a) => a,
        Err(StoreError::NotFound(_)) => return Ok(Err("unknown alert".into())),
        Err(e) => return Err(e.into()),
    };
    if !a.origin_node.is_empty() {
        return Ok(Err("unknown alert".into()));
    }
    let regions = st.store().surv_regions().await?;
    let sent_there = regions
        .iter()
        .find(|r| r.code == a.region)
        .is_some_and(|r| r.neighbours.iter().any(|n| n.node_id == from));
    if !sent_there || !short(&b.by.name, 200) {
        return Ok(Err("the alert was not sent to this node".into()));
    }
    let note = SurvNote {
        id: Uuid::now_v7(),
        alert_id: id,
        kind: "ack".into(),
        author_name: b.by.name,
        author_node: from.to_owned(),
        body: String::new(),
        created_at: b.acknowledged_at.min(Utc::now()),
    };
    let audit = vec![system_event(
        AuditAction::Update,
        "surveillance_alert",
        id,
        None,
        &format!("acknowledged by {from}"),
    )];
    Ok(Ok((vec![Change::InsertSurvNote(note)], audit)))
}
