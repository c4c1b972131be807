//! Demo surveillance data: the regions of a KZ, CN or UZ node with their neighbours across the border, six years
//! of weekly aggregate counts of acute diarrhoea (A09, seasonal) in every region, a measles (B05) outbreak in
//! Almaty Region reported case by case over the last weeks, and the alerts detection raised on them (one
//! acknowledged and discussed). Counts come from a seeded generator, so every demo shows the same history.

use super::{default_method, detect_weeks, DISEASES};
use crate::audit::system_event;
use crate::auth;
use crate::network::{DemoNode, LocalNode};
use caravan_domain::*;
use caravan_store::*;
use chrono::{Datelike, Duration, NaiveDate, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

fn region(
    code: &str,
    name: &str,
    country: &str,
    population: i64,
    neighbours: &[(&str, &str, &str)],
) -> SurvRegion {
    SurvRegion {
        code: code.into(),
        name: name.into(),
        country: country.into(),
        population,
        neighbours: neighbours
            .iter()
            .map(|(node, region, name)| SurvNeighbour {
                node_id: (*node).into(),
                region: (*region).into(),
                name: (*name).into(),
            })
            .collect(),
    }
}

/// The regions of a demo node of `country`, with the demo network's node ids as neighbours.
pub fn regions(country: &str) -> Vec<SurvRegion> {
    match country {
        "CN" => vec![
            region(
                "CN-XJ-KS",
                "Kashgar Prefecture",
                "CN",
                4_500_000,
                &[("center-kz", "KZ-ALM", "Almaty Region")],
            ),
            region(
                "CN-XJ-IL",
                "Ili Prefecture",
                "CN",
                2_800_000,
                &[("center-kz", "KZ-ALM", "Almaty Region")],
            ),
        ],
        "UZ" => vec![
            region(
                "UZ-SA",
                "Samarkand Region",
                "UZ",
                4_000_000,
                &[("center-kz", "KZ-TUR", "Turkistan Region")],
            ),
            region("UZ-BU", "Bukhara Region", "UZ", 1_900_000, &[]),
        ],
        _ => vec![
            region(
                "KZ-ALM",
                "Almaty Region",
                "KZ",
                1_500_000,
                &[
                    ("kashgar-cn", "CN-XJ-KS", "Kashgar Prefecture"),
                    ("kashgar-cn", "CN-XJ-IL", "Ili Prefecture"),
                ],
            ),
            region("KZ-ALA", "Almaty City", "KZ", 2_200_000, &[]),
            region(
                "KZ-TUR",
                "Turkistan Region",
                "KZ",
                2_100_000,
                &[("samarkand-uz", "UZ-SA", "Samarkand Region")],
            ),
            region("KZ-ZHA", "Zhambyl Region", "KZ", 1_200_000, &[]),
        ],
    }
}

/// Seasonal weekly counts of acute diarrhoea: a summer peak, Poisson-like noise from a seeded generator.
fn diarrhoea(rng: &mut StdRng, week: u32, base: f64) -> i64 {
    let season = 1.0 + 0.6 * ((week as f64 - 30.0) / 52.0 * std::f64::consts::TAU).cos();
    let mean = base * season;
    // Normal approximation of Poisson noise, kept non-negative.
    let z: f64 = (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
    (mean + z * mean.sqrt()).round().max(0.0) as i64
}

/// Seed the surveillance regions, the officer's history and its alerts, unless regions exist already.
/// `outbreak_cases`: also report the measles outbreak (the network demo reports it through the node instead,
/// so that its cross-border alert travels).
pub async fn seed(
    store: &dyn Store,
    country: &str,
    outbreak_cases: bool,
) -> Result<bool, StoreError> {
    if !store.surv_regions().await?.is_empty() {
        return Ok(false);
    }
    let Ok((officer, _)) = store.get_user_credentials("officer").await else {
        return Ok(false);
    };
    let regions = regions(country);
    store
        .apply(
            vec![Change::SurvSetRegions(regions.clone())],
            vec![system_event(
                AuditAction::Create,
                "surveillance_regions",
                "regions",
                None,
                "demo",
            )],
        )
        .await?;
    let mut rng = StdRng::seed_from_u64(5);
    let today = Utc::now().date_naive();
    let this_week = today - Duration::days(i64::from(today.weekday().num_days_from_monday()));
    let now = Utc::now();
    let mut changes = Vec::new();
    for (i, r) in regions.iter().enumerate() {
        let base = 8.0 + 4.0 * i as f64;
        for k in (1..=312).rev() {
            let monday = this_week - Duration::weeks(k);
            let w = monday.iso_week();
            changes.push(Change::PutSurvAggregate(SurvAggregate {
                disease: "A09".into(),
                region: r.code.clone(),
                iso_year: w.year(),
                iso_week: w.week(),
                count: diarrhoea(&mut rng, w.week(), base),
                reported_by: officer.id,
                source: "demo".into(),
                updated_at: now,
            }));
            // Measles: sporadic cases in the region that borders China.
            if r.code.ends_with("ALM") && k > 8 {
                changes.push(Change::PutSurvAggregate(SurvAggregate {
                    disease: "B05".into(),
                    region: r.code.clone(),
                    iso_year: w.year(),
                    iso_week: w.week(),
                    count: i64::from(rng.gen_range(0..3u8)),
                    reported_by: officer.id,
                    source: "demo".into(),
                    updated_at: now,
                }));
            }
        }
    }
    store
        .apply(
            changes,
            vec![system_event(
                AuditAction::Create,
                "surveillance_report",
                "demo-history",
                None,
                "demo history",
            )],
        )
        .await?;
    if outbreak_cases {
        if let Some(alm) = regions.iter().find(|r| r.code.ends_with("ALM")) {
            let cases = outbreak(&officer, &alm.code, today, 11);
            let n = cases.len();
            store
                .apply(
                    cases.into_iter().map(Change::InsertSurvCase).collect(),
                    vec![system_event(
                        AuditAction::Create,
                        "surveillance_report",
                        "demo-outbreak",
                        None,
                        &format!("{n} case(s) via demo"),
                    )],
                )
                .await?;
        }
    }
    raise_alerts(store, &regions, &officer).await?;
    Ok(true)
}

/// A measles outbreak by day of onset over the last 7 weeks (growing roughly 9 % a day, then slowing), as a
/// pseudonymised line list.
pub fn outbreak(reporter: &User, region: &str, today: NaiveDate, seed: u64) -> Vec<SurvCase> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = Vec::new();
    let now = Utc::now();
    for day in 0..49i64 {
        let onset = today - Duration::days(49 - day);
        let growth = 0.09 * day as f64 - 0.0009 * (day as f64).powi(2);
        let mean = 0.6 * growth.exp();
        let z: f64 = (0..12).map(|_| rng.gen::<f64>()).sum::<f64>() - 6.0;
        let n = (mean + z * mean.sqrt()).round().max(0.0) as usize;
        for _ in 0..n {
            let id = Uuid::now_v7();
            let age = super::AGE_BANDS[rng.gen_range(0..3usize)];
            out.push(SurvCase {
                id,
                pseudonym: format!("ms-{}", &id.simple().to_string()[20..]),
                disease: "B05".into(),
                region: region.into(),
                onset_date: onset,
                report_date: (onset + Duration::days(rng.gen_range(1..4i64))).min(today),
                age_band: age.into(),
                sex: if rng.gen::<bool>() { "female" } else { "male" }.into(),
                outcome: if rng.gen_range(0..10u8) == 0 {
                    "hospitalised"
                } else {
                    "recovered"
                }
                .into(),
                lab_confirmed: rng.gen_range(0..3u8) > 0,
                reported_by: reporter.id,
                source: "demo".into(),
                created_at: now,
            });
        }
    }
    out
}

/// Run the default detection on the last 8 weeks of every series and store the alarms as local alerts (without
/// envelopes: the demo node is not federated when this runs); the oldest is acknowledged and discussed.
async fn raise_alerts(
    store: &dyn Store,
    regions: &[SurvRegion],
    officer: &User,
) -> Result<(), StoreError> {
    let weeks = store.surv_weeks(&SurvFilter::default()).await?;
    let mut first: Option<SurvAlert> = None;
    for r in regions {
        for d in DISEASES {
            let mut counts: Vec<(NaiveDate, i64)> = weeks
                .iter()
                .filter(|w| w.region == r.code && w.disease == *d)
                .filter_map(|w| {
                    NaiveDate::from_isoywd_opt(w.iso_year, w.iso_week, chrono::Weekday::Mon)
                        .map(|m| (m, w.total()))
                })
                .collect();
            if counts.is_empty() {
                continue;
            }
            counts.sort();
            // Zero-fill gaps.
            let mut filled = Vec::new();
            let mut day = counts[0].0;
            let mut it = counts.iter().peekable();
            while let Some(&&(d0, _)) = it.peek() {
                if day == d0 {
                    if let Some(&(d1, c)) = it.next() {
                        filled.push((d1, c));
                    }
                } else {
                    filled.push((day, 0));
                }
                day += Duration::weeks(1);
            }
            let n = filled.len();
            let rows = detect_weeks(&filled, &default_method(), n.saturating_sub(7)..=n)
                .map_err(StoreError::Database)?;
            for row in rows.into_iter().filter(|r| r.alarm) {
                let id = Uuid::now_v7();
                let a = SurvAlert {
                    id,
                    origin_node: String::new(),
                    origin_id: id.to_string(),
                    disease: (*d).into(),
                    region: r.code.clone(),
                    region_name: r.name.clone(),
                    country: r.country.clone(),
                    local_region: None,
                    iso_year: row.iso_year,
                    iso_week: row.iso_week,
                    observed: row.count as f64,
                    upperbound: row.upperbound,
                    method: row.method.clone(),
                    created_at: Utc::now(),
                    status: "open".into(),
                    acknowledged_by: None,
                    acknowledged_at: None,
                };
                store
                    .apply(
                        vec![Change::InsertSurvAlert(a.clone())],
                        vec![system_event(
                            AuditAction::Create,
                            "surveillance_alert",
                            id,
                            None,
                            "demo",
                        )],
                    )
                    .await?;
                first.get_or_insert(a);
            }
        }
    }
    if let Some(a) = first {
        let at = Utc::now();
        store
            .apply(
                vec![
                    Change::AckSurvAlert {
                        id: a.id,
                        by: officer.display_name.clone(),
                        at,
                    },
                    Change::InsertSurvNote(SurvNote {
                        id: Uuid::now_v7(),
                        alert_id: a.id,
                        kind: "note".into(),
                        author_name: officer.display_name.clone(),
                        author_node: String::new(),
                        body: "District epidemiologist informed; checking the reporting clinics."
                            .into(),
                        created_at: at,
                    }),
                ],
                vec![system_event(
                    AuditAction::Update,
                    "surveillance_alert",
                    a.id,
                    None,
                    "demo",
                )],
            )
            .await?;
    }
    Ok(())
}

/// The officer of a demo network node (user `officer`, the node's own institution), unless present.
pub async fn seed_officer(store: &dyn Store, node: DemoNode) -> Result<(), StoreError> {
    if store.get_user_credentials("officer").await.is_ok() {
        return Ok(());
    }
    let country = node.spec(String::new()).country;
    let Some(inst) = store
        .list_institutions()
        .await?
        .into_iter()
        .find(|i| i.country.as_str() == country)
    else {
        return Ok(());
    };
    let name = match node {
        DemoNode::Center => "Marat Dzhaksybekov",
        DemoNode::Kashgar => "Aynur Memet",
        DemoNode::Samarkand => "Dilnoza Rakhimova",
    };
    let hash = auth::hash_password(crate::demo::DEMO_PASSWORD)
        .map_err(|e| StoreError::Database(e.message))?;
    let u = User {
        id: UserId::new(),
        username: "officer".into(),
        display_name: name.into(),
        institution_id: inst.id,
        role: Role::PublicHealthOfficer,
        patient_id: None,
        profile: None,
        locale: match node {
            DemoNode::Kashgar => "zh-CN",
            _ => "ru",
        }
        .into(),
        active: true,
    };
    store.insert_user(&u, Some(&hash), vec![]).await
}

/// Seed a node of the demo network: its officer and regions, and for the center the history (the outbreak is
/// reported later by [`network_outbreak`]).
pub async fn seed_network_node(store: &dyn Store, node: DemoNode) -> Result<(), StoreError> {
    seed_officer(store, node).await?;
    let country = node.spec(String::new()).country;
    if node == DemoNode::Center {
        seed(store, &country, false).await?;
    } else if store.surv_regions().await?.is_empty() {
        store
            .apply(vec![Change::SurvSetRegions(regions(&country))], vec![])
            .await?;
    }
    Ok(())
}

/// Report the measles outbreak at the center through the node, as its officer would: detection raises the alert
/// and sends it to Kashgar's node as a cross-border alert.
pub async fn network_outbreak(nodes: &[LocalNode]) -> Result<usize, String> {
    let Some(center) = nodes.iter().find(|n| n.node == DemoNode::Center) else {
        return Ok(0);
    };
    let st = &center.state;
    let (officer, _) = st
        .store()
        .get_user_credentials("officer")
        .await
        .map_err(|e| e.to_string())?;
    let p = auth::Principal {
        user: officer,
        via: auth::Via::ApiToken,
    };
    let cases = outbreak(&p.user, "KZ-ALM", Utc::now().date_naive(), 11);
    let out = super::submit(
        st,
        &p,
        super::Batch {
            cases,
            aggregates: Vec::new(),
        },
        "demo",
    )
    .await
    .map_err(|e| e.message)?;
    Ok(out.alerts.len())
}
