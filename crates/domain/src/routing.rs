//! Routing: which consultant should answer a case.
//!
//! Specialty is a hard requirement; among the specialists, candidates are ranked by shared language, availability
//! now (working hours in their own time zone, weighted by urgency) and current load against their capacity.
//! The score is returned with its parts so that a coordinator sees why routing proposed someone.

use crate::consultation::Urgency;
use crate::ids::{InstitutionId, TeamId, UserId};
use crate::model::{Team, WorkingHours};
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub struct RoutingRequest {
    pub specialty: String,
    /// Preferred languages, most preferred first.
    pub languages: Vec<String>,
    pub urgency: Urgency,
    /// Never propose these (the referrer, consultants who declined).
    pub excluded: Vec<UserId>,
}

#[derive(Clone, Debug)]
pub struct Candidate {
    pub user_id: UserId,
    pub institution_id: InstitutionId,
    pub display_name: String,
    pub specialties: Vec<String>,
    pub languages: Vec<String>,
    pub timezone: String,
    pub hours: WorkingHours,
    pub capacity: u32,
    /// Consultations currently assigned to or in progress with this consultant.
    pub open_cases: u32,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedCandidate {
    pub user_id: UserId,
    pub institution_id: InstitutionId,
    pub display_name: String,
    pub score: f64,
    pub language_match: f64,
    pub available_now: bool,
    pub load: f64,
    pub open_cases: u32,
    pub capacity: u32,
}

/// The common language of the network: a candidate who speaks it is a fallback when no preferred language matches.
pub const COMMON_LANGUAGE: &str = "en";

fn primary(tag: &str) -> &str {
    tag.split(['-', '_']).next().unwrap_or(tag)
}

/// 1.0 for the most preferred language, decreasing with preference rank; 0.4 for the common language only; 0.
fn language_match(wanted: &[String], spoken: &[String]) -> f64 {
    for (rank, w) in wanted.iter().enumerate() {
        if spoken
            .iter()
            .any(|s| primary(s).eq_ignore_ascii_case(primary(w)))
        {
            // Each step down the preference list costs 0.2, floored at 0.5.
            let rank = u32::try_from(rank).unwrap_or(u32::MAX).min(2);
            return 1.0 - 0.2 * f64::from(rank);
        }
    }
    if spoken.iter().any(|s| primary(s) == COMMON_LANGUAGE) {
        0.4
    } else {
        0.0
    }
}

/// Whether `tz` is an IANA time zone name this build knows.
pub fn is_known_timezone(tz: &str) -> bool {
    tz.parse::<chrono_tz::Tz>().is_ok()
}

/// Whether `now` falls in the working hours, read in the practitioner's time zone (UTC if the zone is unknown).
pub fn within_hours(hours: &WorkingHours, timezone: &str, now: DateTime<Utc>) -> bool {
    let tz: chrono_tz::Tz = timezone.parse().unwrap_or(chrono_tz::UTC);
    let local = now.with_timezone(&tz);
    let t = local.time();
    hours.days.contains(&local.weekday()) && t >= hours.start && t < hours.end
}

/// A team proposed for a case, with the parts of its score.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RankedTeam {
    pub team_id: TeamId,
    pub name: String,
    pub institution_id: InstitutionId,
    pub lead_id: UserId,
    pub lead_name: String,
    pub member_ids: Vec<UserId>,
    pub score: f64,
    pub language_match: f64,
    pub available_now: bool,
    /// The highest load among the team's people: a panel moves at the pace of its busiest member.
    pub load: f64,
}

/// Rank the teams whose specialty is the request's, best first. `people` holds the routing records of the
/// teams' leads and members (any specialty). A team is left out when its lead is excluded (declined), is not
/// among `people` (inactive), or is at capacity.
///
/// The score uses the same weights as [`rank_candidates`], read for a panel: the best language match among its
/// people (a member may interpret), the lead's availability now, and the busiest member's load, so a team never
/// outranks its own lead working alone and is chosen automatically only when no single specialist scores as well.
pub fn rank_teams(
    request: &RoutingRequest,
    teams: &[Team],
    people: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<RankedTeam> {
    let availability_weight = availability_weight(request.urgency);
    let mut ranked: Vec<RankedTeam> = teams
        .iter()
        .filter(|t| t.specialty == request.specialty)
        .filter(|t| !request.excluded.contains(&t.lead_id))
        .filter_map(|t| {
            let lead = people.iter().find(|c| c.user_id == t.lead_id)?;
            let members: Vec<&Candidate> = t
                .everyone()
                .filter_map(|id| people.iter().find(|c| c.user_id == id))
                .collect();
            if lead.open_cases >= lead.capacity.max(1) {
                return None;
            }
            let lang = members
                .iter()
                .map(|c| language_match(&request.languages, &c.languages))
                .fold(0.0, f64::max);
            let available = within_hours(&lead.hours, &lead.timezone, now);
            let load = members
                .iter()
                .map(|c| f64::from(c.open_cases) / f64::from(c.capacity.max(1)))
                .fold(0.0, f64::max);
            let score = 3.0 * lang
                + availability_weight * f64::from(u8::from(available))
                + 2.0 * (1.0 - load.min(1.0));
            Some(RankedTeam {
                team_id: t.id,
                name: t.name.clone(),
                institution_id: t.institution_id,
                lead_id: t.lead_id,
                lead_name: lead.display_name.clone(),
                member_ids: t.member_ids.clone(),
                score,
                language_match: lang,
                available_now: available,
                load,
            })
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.team_id.cmp(&b.team_id))
    });
    ranked
}

fn availability_weight(urgency: Urgency) -> f64 {
    match urgency {
        Urgency::Routine => 0.5,
        Urgency::Urgent => 1.5,
        Urgency::Emergency => 4.0,
    }
}

/// Rank the specialists for a request, best first. Candidates without the specialty or excluded are left out.
pub fn rank_candidates(
    request: &RoutingRequest,
    candidates: &[Candidate],
    now: DateTime<Utc>,
) -> Vec<RankedCandidate> {
    let availability_weight = availability_weight(request.urgency);
    let mut ranked: Vec<RankedCandidate> = candidates
        .iter()
        .filter(|c| c.specialties.iter().any(|s| s == &request.specialty))
        .filter(|c| !request.excluded.contains(&c.user_id))
        .map(|c| {
            let lang = language_match(&request.languages, &c.languages);
            let available = within_hours(&c.hours, &c.timezone, now);
            let capacity = c.capacity.max(1);
            let load = f64::from(c.open_cases) / f64::from(capacity);
            // A consultant at or beyond capacity sinks below every one with room left.
            let full_penalty = if c.open_cases >= capacity { 10.0 } else { 0.0 };
            let score = 3.0 * lang
                + availability_weight * f64::from(u8::from(available))
                + 2.0 * (1.0 - load.min(1.0))
                - full_penalty;
            RankedCandidate {
                user_id: c.user_id,
                institution_id: c.institution_id,
                display_name: c.display_name.clone(),
                score,
                language_match: lang,
                available_now: available,
                load,
                open_cases: c.open_cases,
                capacity: c.capacity,
            }
        })
        .collect();
    ranked.sort_by(|a, b| {
        b.score
            .total_cmp(&a.score)
            .then_with(|| a.open_cases.cmp(&b.open_cases))
            .then_with(|| a.user_id.cmp(&b.user_id))
    });
    ranked
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn cand(name: &str, langs: &[&str], tz: &str, open: u32, cap: u32) -> Candidate {
        Candidate {
            user_id: UserId::new(),
            institution_id: InstitutionId::new(),
            display_name: name.into(),
            specialties: vec!["cardiology".into()],
            languages: langs.iter().map(|s| s.to_string()).collect(),
            timezone: tz.into(),
            hours: WorkingHours::default(),
            capacity: cap,
            open_cases: open,
        }
    }

    fn req(langs: &[&str], urgency: Urgency) -> RoutingRequest {
        RoutingRequest {
            specialty: "cardiology".into(),
            languages: langs.iter().map(|s| s.to_string()).collect(),
            urgency,
            excluded: vec![],
        }
    }

    #[test]
    fn language_then_load() {
        // Monday 10:00 UTC: everybody in Europe/London is at work.
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let ru = cand("ru", &["ru", "en"], "Europe/London", 3, 10);
        let en = cand("en", &["en"], "Europe/London", 0, 10);
        let ranked = rank_candidates(
            &req(&["ru"], Urgency::Routine),
            &[en.clone(), ru.clone()],
            now,
        );
        assert_eq!(ranked[0].display_name, "ru");
        // Same languages: the less loaded wins.
        let busy = cand("busy", &["en"], "Europe/London", 8, 10);
        let ranked = rank_candidates(&req(&["en"], Urgency::Routine), &[busy, en], now);
        assert_eq!(ranked[0].display_name, "en");
    }

    #[test]
    fn emergencies_go_to_whoever_is_awake() {
        // 04:30 UTC Monday is morning in Almaty (UTC+5) and the middle of the night in London.
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 4, 30, 0).unwrap();
        let london = cand("london", &["ru"], "Europe/London", 0, 10);
        let almaty = cand("almaty", &["en"], "Asia/Almaty", 0, 10);
        let ranked = rank_candidates(&req(&["ru"], Urgency::Emergency), &[london, almaty], now);
        assert_eq!(ranked[0].display_name, "almaty");
        assert!(ranked[0].available_now);
    }

    fn team(name: &str, lead: &Candidate, members: &[&Candidate]) -> Team {
        Team {
            id: TeamId::new(),
            institution_id: lead.institution_id,
            name: name.into(),
            specialty: "cardiology".into(),
            lead_id: lead.user_id,
            member_ids: members.iter().map(|c| c.user_id).collect(),
        }
    }

    #[test]
    fn teams_read_as_panels() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let lead = cand("lead", &["en"], "Europe/London", 1, 10);
        let interpreter = cand("kk", &["kk", "ru"], "Asia/Almaty", 2, 10);
        let busy = cand("busy", &["en"], "Europe/London", 9, 10);
        let people = [lead.clone(), interpreter.clone(), busy.clone()];
        let with_kk = team("heart team", &lead, &[&interpreter]);
        let with_busy = team("slow board", &lead, &[&busy]);
        let ranked = rank_teams(
            &req(&["kk"], Urgency::Routine),
            &[with_busy.clone(), with_kk.clone()],
            &people,
            now,
        );
        assert_eq!(ranked[0].name, "heart team");
        assert_eq!(ranked[0].language_match, 1.0, "a member speaks Kazakh");
        assert!(
            (ranked[1].load - 0.9).abs() < 1e-9,
            "the busiest member sets the load"
        );
        // A team never outranks its own lead alone on language-neutral terms.
        let alone = rank_candidates(
            &req(&["en"], Urgency::Routine),
            std::slice::from_ref(&lead),
            now,
        );
        let teams = rank_teams(
            &req(&["en"], Urgency::Routine),
            std::slice::from_ref(&with_kk),
            &people,
            now,
        );
        assert!(teams[0].score <= alone[0].score);
        // Another specialty, an excluded (declined) lead or a lead at capacity: no proposal.
        let mut r = req(&["kk"], Urgency::Routine);
        r.excluded.push(lead.user_id);
        assert!(rank_teams(&r, std::slice::from_ref(&with_kk), &people, now).is_empty());
        let mut derm = with_kk.clone();
        derm.specialty = "dermatology".into();
        assert!(rank_teams(&req(&["kk"], Urgency::Routine), &[derm], &people, now).is_empty());
        let mut full = lead.clone();
        full.open_cases = 10;
        assert!(rank_teams(
            &req(&["kk"], Urgency::Routine),
            &[with_kk],
            &[full, interpreter],
            now
        )
        .is_empty());
    }

    #[test]
    fn specialty_exclusion_and_capacity() {
        let now = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        let mut derm = cand("derm", &["en"], "UTC", 0, 10);
        derm.specialties = vec!["dermatology".into()];
        let full = cand("full", &["en"], "UTC", 5, 5);
        let declined = cand("declined", &["en"], "UTC", 0, 5);
        let free = cand("free", &["zh"], "UTC", 0, 5);
        let mut r = req(&["en"], Urgency::Routine);
        r.excluded.push(declined.user_id);
        let ranked = rank_candidates(&r, &[derm, full, declined, free], now);
        let names: Vec<_> = ranked.iter().map(|c| c.display_name.as_str()).collect();
        assert_eq!(names, ["free", "full"]);
    }
}
