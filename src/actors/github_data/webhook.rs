//! GitHub webhook deliveries: signature verification (HMAC-SHA256 over the raw body, constant-time compare), the
//! account a delivery concerns ([`delivery_account`], by GitHub's numeric id), and the handling of each event on the
//! github-data actor, once per delivery id. The HTTP route that receives them verifies the signature first (401 and no
//! effect otherwise), finds the organization connected to the account, and sends it [`HandleWebhook`]. A delivery
//! naming the connected account under a new login records the rename.

use diesel::prelude::*;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

use super::schema::{self, members};
use super::sync::pull_summary;
use super::GitHubData;
use crate::actors::organization::{ApplyGitHubAccount, ImportRepository};
use crate::actors::repository::ApplyPullRequests;
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult, RepoKey};
use crate::integrations::github::client::{AccountKind, PullRequest, Repository};
use crate::runtime::{Command, EntityCtx, Tx};

/// Whether `signature_header` (`X-Hub-Signature-256: sha256=<hex>`) is the HMAC-SHA256 of `body` under `secret`.
/// The comparison is constant-time; a missing or malformed header is simply not valid.
pub fn verify_signature(secret: &[u8], body: &[u8], signature_header: Option<&str>) -> bool {
    let Some(hex) = signature_header.and_then(|h| h.strip_prefix("sha256=")) else { return false };
    let Some(expected) = decode_hex(hex) else { return false };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else { return false };
    mac.update(body);
    mac.verify_slice(&expected).is_ok()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The `sha256=<hex>` signature of `body` (for senders and tests).
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    format!("sha256={}", bytes.iter().map(|b| format!("{b:02x}")).collect::<String>())
}

/// The GitHub account a delivery concerns, `(id, login)`: the installation's account (installation events), else the
/// organization (events of an organization's repositories and of the organization itself), else the repository's
/// owner (a user's repositories). `None` when the payload names none with an id.
pub fn delivery_account(payload: &Value) -> Option<(i64, String)> {
    [&payload["installation"]["account"], &payload["organization"], &payload["repository"]["owner"]]
        .into_iter()
        .find_map(|account| {
            let id = account["id"].as_i64().filter(|id| *id > 0)?;
            Some((id, account["login"].as_str().unwrap_or_default().to_owned()))
        })
}

/// What a delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum WebhookOutcome {
    Applied,
    /// The delivery id was seen before: nothing happened again.
    Duplicate,
    /// An event foundry does not act on (recorded, so a redelivery is also a duplicate).
    Ignored,
    /// The installation changed: a sync was started (or the mirror cleared).
    SyncStarted,
    Cleared,
}

/// One verified webhook delivery (`X-GitHub-Event`, `X-GitHub-Delivery`, the parsed body).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct HandleWebhook {
    pub delivery_id: String,
    pub event: String,
    pub payload: Value,
}

fn field<T: serde::de::DeserializeOwned>(payload: &Value, name: &str) -> DomainResult<T> {
    serde_json::from_value(payload[name].clone()).map_err(|e| DomainError::invalid("payload", format!("{name}: {e}")))
}

impl Command for HandleWebhook {
    type Entity = GitHubData;
    type Output = WebhookOutcome;
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<WebhookOutcome> {
        if self.delivery_id.is_empty() || self.delivery_id.len() > 100 {
            return Err(DomainError::invalid("delivery_id", "must be 1-100 characters"));
        }
        let action = self.payload["action"].as_str().unwrap_or_default().to_owned();
        // Installation changes restart or clear the mirror; the delivery is recorded first so it applies once.
        let installation_event =
            matches!((self.event.as_str(), action.as_str()), ("installation", _) | ("installation_repositories", _));
        let org = g.org.clone();
        let account = delivery_account(&self.payload);
        let outcome = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<WebhookOutcome> {
            let m = schema::require_meta(tx.conn(), &org)?;
            if let (Some((id, _)), Some(connected)) = (&account, m.account_id) {
                // The route finds the organization by this id; a mismatch is a stale route (the organization was
                // re-pointed since), never something to apply here.
                if *id != connected {
                    return Err(DomainError::not_found("connection of GitHub account", id.to_string()));
                }
            }
            let fresh = diesel::insert_or_ignore_into(schema::webhook_deliveries::table)
                .values((
                    schema::webhook_deliveries::delivery_id.eq(&self.delivery_id),
                    schema::webhook_deliveries::event.eq(&self.event),
                    schema::webhook_deliveries::received_at.eq(now_ms()),
                ))
                .execute(tx.conn())?;
            if fresh == 0 {
                return Ok(WebhookOutcome::Duplicate);
            }
            let renamed = match &account {
                Some((id, login)) => record_rename(tx, &org, &m, *id, login)?,
                None => false,
            };
            if installation_event {
                return Ok(WebhookOutcome::SyncStarted);
            }
            match apply_event(tx, &org, m.generation, &self.event, &action, &self.payload)? {
                // An event foundry does not act on that showed the rename (`organization` `renamed`) did something.
                WebhookOutcome::Ignored if renamed => Ok(WebhookOutcome::Applied),
                outcome => Ok(outcome),
            }
        })?;
        if outcome != WebhookOutcome::SyncStarted {
            return Ok(outcome);
        }
        if self.event == "installation" && matches!(action.as_str(), "deleted" | "suspend") {
            super::AdminClearState { by: None }.run(g, ctx)?;
            return Ok(WebhookOutcome::Cleared);
        }
        match super::sync::start_sync(g, ctx, None, "webhook") {
            // A sync already running will see the change.
            Ok(_) | Err(DomainError::Conflict(_)) => Ok(WebhookOutcome::SyncStarted),
            Err(e) => Err(e),
        }
    }
}

/// The connected account appears under another login: GitHub renamed it. The sync uses the new login from now on,
/// the organization shows it, and the audit log keeps both. True if it was a rename.
fn record_rename(tx: &mut Tx<'_>, org: &str, m: &schema::Meta, id: i64, login: &str) -> DomainResult<bool> {
    if m.account_id != Some(id)
        || login.is_empty()
        || login == m.account_login
        || validate::login("login", login).is_err()
    {
        return Ok(false);
    }
    diesel::update(schema::github_meta::table.find(1))
        .set((schema::github_meta::account_login.eq(login), schema::github_meta::updated_at.eq(now_ms())))
        .execute(tx.conn())?;
    let kind = if m.account_kind == "user" { AccountKind::User } else { AccountKind::Organization };
    tx.send(&org.to_owned(), &ApplyGitHubAccount { login: login.to_owned(), kind: super::sync::org_kind(kind) })?;
    let payload = serde_json::json!({ "accountId": id, "from": m.account_login, "to": login });
    Audit::org(org).append(tx, "github.account_renamed", payload)?;
    Ok(true)
}

fn apply_event(
    tx: &mut Tx<'_>,
    org: &str,
    generation: i32,
    event: &str,
    action: &str,
    payload: &Value,
) -> DomainResult<WebhookOutcome> {
    let repo_name = payload["repository"]["name"].as_str().unwrap_or_default().to_owned();
    match event {
        "pull_request"
            if matches!(action, "opened" | "edited" | "closed" | "reopened" | "synchronize" | "ready_for_review") =>
        {
            let pr: PullRequest = field(payload, "pull_request")?;
            let summary = pull_summary(&pr);
            schema::upsert_pull(tx.conn(), &repo_name, &summary, generation)?;
            tx.send(&RepoKey::new(org, &repo_name), &ApplyPullRequests { pull_requests: vec![summary] })?;
            Ok(WebhookOutcome::Applied)
        }
        "push" => {
            let Some(branch) = payload["ref"].as_str().and_then(|r| r.strip_prefix("refs/heads/")) else {
                return Ok(WebhookOutcome::Ignored);
            };
            if payload["deleted"].as_bool() == Some(true) {
                schema::delete_branch(tx.conn(), &repo_name, branch)?;
            } else {
                let sha = payload["after"].as_str().unwrap_or_default();
                schema::upsert_branch(tx.conn(), &repo_name, branch, sha, generation)?;
            }
            Ok(WebhookOutcome::Applied)
        }
        "create" | "delete" if payload["ref_type"] == "branch" => {
            let branch = payload["ref"].as_str().unwrap_or_default();
            if event == "create" {
                schema::upsert_branch(tx.conn(), &repo_name, branch, "", generation)?;
            } else {
                schema::delete_branch(tx.conn(), &repo_name, branch)?;
            }
            Ok(WebhookOutcome::Applied)
        }
        "repository" => {
            let repo: Repository = field(payload, "repository")?;
            if action == "deleted" {
                schema::delete_repository(tx.conn(), &repo.name)?;
            } else {
                schema::upsert_repository(tx.conn(), &repo, generation)?;
                let import = ImportRepository {
                    repo_id: repo.name.clone(),
                    full_name: repo.full_name.clone(),
                    remote_url: repo.clone_url.clone(),
                    default_branch: repo.default_branch.clone(),
                };
                tx.send(&org.to_owned(), &import)?;
            }
            Ok(WebhookOutcome::Applied)
        }
        // `organization` member_added/member_removed is GitHub's organization membership; `member` (collaborator
        // changes) is kept as before for personal accounts, whose "members" are their collaborators.
        "member" | "organization" => {
            let user = if event == "organization" { &payload["membership"]["user"] } else { &payload["member"] };
            let id = user["id"].as_i64().unwrap_or_default();
            let login = user["login"].as_str().unwrap_or_default();
            match action {
                "removed" | "member_removed" => {
                    diesel::delete(members::table.find(id)).execute(tx.conn())?;
                }
                "added" | "edited" | "member_added" if id > 0 => {
                    schema::upsert_member(tx.conn(), id, login, generation)?
                }
                _ => return Ok(WebhookOutcome::Ignored),
            }
            schema::report_members(tx, org)?;
            Ok(WebhookOutcome::Applied)
        }
        _ => Ok(WebhookOutcome::Ignored),
    }
}

crate::actors::remote::remote_messages! {
    super::GitHubData;
    commands: HandleWebhook;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_right_secret_and_body() {
        // The example from GitHub's documentation on validating webhook deliveries.
        let secret = b"It's a Secret to Everybody";
        let body = b"Hello, World!";
        let header = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(sign(secret, body), header);
        assert!(verify_signature(secret, body, Some(header)));
        assert!(!verify_signature(b"wrong secret", body, Some(header)));
        assert!(!verify_signature(secret, b"Hello, World?", Some(header)));
        assert!(!verify_signature(secret, body, None));
        assert!(!verify_signature(secret, body, Some("sha1=abc")));
        assert!(!verify_signature(secret, body, Some("sha256=zz")));
    }
}
