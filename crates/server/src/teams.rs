//! Standing multidisciplinary teams: administrators define them; routing proposes them (`consult::propose_teams`)
//! and a coordinator may give a case to a team, whose members join the panel when its lead accepts.

use crate::audit::event;
use crate::auth::Principal;
use crate::error::{AppError, AppResult};
use crate::AppState;
use caravan_domain::*;
use serde::{Deserialize, Serialize};

/// Most members a team may list besides its lead (a panel larger than this is a conference, not a team).
pub const MAX_MEMBERS: usize = 12;

#[derive(Debug, Deserialize, Serialize, schemars::JsonSchema)]
pub struct NewTeam {
    #[schemars(length(min = 1, max = 200), regex(pattern = crate::api::NON_BLANK))]
    pub name: String,
    #[schemars(extend("enum" = caravan_domain::SPECIALTIES))]
    pub specialty: String,
    pub lead_id: UserId,
    #[serde(default)]
    pub member_ids: Vec<UserId>,
}

pub async fn create(st: &AppState, p: &Principal, n: NewTeam) -> AppResult<Team> {
    p.require(&[Role::Admin])?;
    let name = n.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(AppError::unprocessable(
            "error-empty-field",
            "a team needs a name of at most 200 characters",
        ));
    }
    if !is_known_specialty(&n.specialty) {
        return Err(AppError::unprocessable(
            "error-unknown-specialty",
            format!("unknown specialty {:?}", n.specialty),
        ));
    }
    let lead =
        st.store().get_user(n.lead_id).await.map_err(|_| {
            AppError::unprocessable("error-not-a-consultant", "the lead is not a user")
        })?;
    if lead.role != Role::Consultant || !lead.active {
        return Err(AppError::unprocessable(
            "error-not-a-consultant",
            "a team's lead must be an active consultant",
        ));
    }
    let mut members: Vec<UserId> = Vec::new();
    for m in n.member_ids {
        if m == lead.id || members.contains(&m) {
            continue;
        }
        let u = st.store().get_user(m).await.map_err(|_| {
            AppError::unprocessable("error-not-a-clinician", format!("member {m} is not a user"))
        })?;
        if !u.role.is_clinical() || u.role == Role::Coordinator || !u.active {
            return Err(AppError::unprocessable(
                "error-not-a-clinician",
                format!("member {} is not an active clinician", u.username),
            ));
        }
        members.push(m);
    }
    if members.len() > MAX_MEMBERS {
        return Err(AppError::unprocessable(
            "error-too-many-members",
            format!("a team lists at most {MAX_MEMBERS} members besides its lead"),
        ));
    }
    let team = Team {
        id: TeamId::new(),
        institution_id: lead.institution_id,
        name: name.to_owned(),
        specialty: n.specialty,
        lead_id: lead.id,
        member_ids: members,
    };
    st.store()
        .insert_team(
            &team,
            vec![event(p, AuditAction::Create, "team", team.id, None, "")],
        )
        .await?;
    tracing::info!(team_id = %team.id, members = team.member_ids.len(), "team created");
    Ok(team)
}

pub async fn list(st: &AppState, p: &Principal) -> AppResult<Vec<Team>> {
    p.require(&[Role::Admin, Role::Coordinator])?;
    Ok(st.store().list_teams(None).await?)
}
