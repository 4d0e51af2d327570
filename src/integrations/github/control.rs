//! Proof that a signed-in user controls a GitHub account, asked of GitHub with that user's own OAuth token: a user
//! account is theirs when the token belongs to it (`GET /user`); an organization is theirs when their membership is
//! active with role `admin` (`GET /user/memberships/orgs/{org}`, which needs the `read:org` scope); and with a GitHub
//! App configured, an installation of that App on the account which the user may access (`GET /user/installations`:
//! their own account, an organization they administer, one they installed) counts too.
//!
//! The answer carries the account's numeric id and its login as GitHub spells it: a connection records the id, which
//! survives renames, rather than the login someone typed.

use super::client::{AccountKind, GitHubClient, GitHubError};

/// How control was shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    /// The token's own user account.
    SameUser,
    /// An active admin membership of the organization.
    OrganizationAdmin,
    /// An installation of the configured App on the account, accessible to the user.
    AppInstallation,
}

/// A GitHub account the user controls.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlledAccount {
    pub kind: AccountKind,
    /// The login as GitHub spells it now.
    pub login: String,
    pub id: u64,
    pub proof: Proof,
}

/// Why control was not shown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// GitHub answered, and the user does not control the account (the message says what GitHub said).
    #[error("{0}")]
    NotControlled(String),
    /// GitHub refused the user's token (revoked, expired): a new sign-in with GitHub issues another.
    #[error(
        "GitHub no longer accepts your GitHub sign-in (the token was revoked or expired): sign in with GitHub again"
    )]
    TokenRejected,
    /// GitHub could not be asked (unreachable, 5xx, rate limit, an unexpected answer).
    #[error("could not ask GitHub: {0}")]
    Unavailable(GitHubError),
}

fn unavailable(e: GitHubError) -> ControlError {
    match e {
        GitHubError::Unauthorized => ControlError::TokenRejected,
        e => ControlError::Unavailable(e),
    }
}

/// Whether the user behind `user_api` (a client holding their OAuth token) controls the GitHub account `login` of
/// `kind`. `app_id`: the GitHub App this server is, whose installations also count.
pub async fn verify_control(
    user_api: &GitHubClient,
    login: &str,
    kind: AccountKind,
    app_id: Option<&str>,
) -> Result<ControlledAccount, ControlError> {
    let refusal = match kind {
        AccountKind::User => {
            let me = user_api.authenticated_user().await.map_err(unavailable)?;
            if me.login.eq_ignore_ascii_case(login) && me.id > 0 {
                return Ok(ControlledAccount { kind, login: me.login, id: me.id, proof: Proof::SameUser });
            }
            format!("you are signed in to GitHub as {}, not as the GitHub user {login}", me.login)
        }
        AccountKind::Organization => match user_api.org_membership(login).await {
            Ok(m) if m.state == "active" && m.role == "admin" && m.organization.id > 0 => {
                let o = m.organization;
                return Ok(ControlledAccount { kind, login: o.login, id: o.id, proof: Proof::OrganizationAdmin });
            }
            Ok(m) if m.state != "active" => {
                format!("your membership of the GitHub organization {login} is {} (not yet active)", m.state)
            }
            Ok(m) => format!("you are a {} of the GitHub organization {login}, not an admin", m.role),
            Err(GitHubError::NotFound(_)) => format!("you are not a member of a GitHub organization named {login}"),
            Err(GitHubError::Forbidden(message)) => format!(
                "GitHub did not show your membership of {login} ({message}); signing in with GitHub again grants \
                 the read:org scope"
            ),
            Err(e) => return Err(unavailable(e)),
        },
    };
    if let Some(app_id) = app_id {
        let installations = match user_api.user_installations().await {
            Ok(installations) => installations,
            // GitHub lists installations only to tokens it allows to (e.g. not to every OAuth app's): none shown.
            Err(GitHubError::Forbidden(_) | GitHubError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(unavailable(e)),
        };
        let ours = |v: &serde_json::Value| v.as_str().map_or_else(|| v.to_string(), str::to_owned) == app_id;
        if let Some(i) =
            installations.into_iter().find(|i| ours(&i.app_id) && i.account.login.eq_ignore_ascii_case(login))
        {
            if i.account.id > 0 {
                let proof = Proof::AppInstallation;
                return Ok(ControlledAccount { kind, login: i.account.login, id: i.account.id, proof });
            }
        }
        return Err(ControlError::NotControlled(format!(
            "{refusal}, and no installation of this server's GitHub App on {login} is yours"
        )));
    }
    Err(ControlError::NotControlled(refusal))
}
