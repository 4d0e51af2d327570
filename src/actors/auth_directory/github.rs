//! Which organization a GitHub account is connected to, by the account's numeric id (logins change hands; ids do
//! not). An organization claims the account when it connects it ([`ClaimGitHubAccount`], refused when another
//! organization holds it), releases it when it connects another ([`ReleaseGitHubAccount`], through its outbox), and
//! the webhook route finds the organization of a delivery with [`ResolveGitHubAccount`].

use diesel::sqlite::SqliteConnection;

use super::schema;
use super::AuthDirectory;
use crate::actors::{now_ms, validate, DomainError, DomainResult};
use crate::runtime::{Delivery, Mutation, Read, Tx};

fn check_account_id(account_id: i64) -> DomainResult<()> {
    if account_id <= 0 {
        return Err(DomainError::invalid("account_id", "must be a positive GitHub account id"));
    }
    Ok(())
}

/// Makes `org_id` the organization of GitHub account `account_id`. Replies whether this call made the claim (false:
/// the organization already held it). [`DomainError::Conflict`] if another organization holds it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ClaimGitHubAccount {
    pub account_id: i64,
    /// The account's login, for the refusal's message only.
    pub login: String,
    pub org_id: String,
}

impl Mutation for ClaimGitHubAccount {
    type Entity = AuthDirectory;
    type Output = bool;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<bool> {
        check_account_id(self.account_id)?;
        validate::org_id("org_id", &self.org_id)?;
        match schema::github_account_org(tx.conn(), self.account_id)? {
            Some(org) if org == self.org_id => Ok(false),
            // Naming the holder tells the caller whom to ask; they proved they control the account, so they may know.
            Some(org) => Err(DomainError::Conflict(format!(
                "GitHub account {} (id {}) is already connected to organization {org:?}; an account belongs to one \
                 organization",
                self.login, self.account_id
            ))),
            None => {
                schema::insert_github_account(tx.conn(), self.account_id, &self.org_id, now_ms())?;
                Ok(true)
            }
        }
    }
}

/// Gives up `org_id`'s claim on the account (nothing if another organization holds it, or nobody).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReleaseGitHubAccount {
    pub account_id: i64,
    pub org_id: String,
}

impl Mutation for ReleaseGitHubAccount {
    type Entity = AuthDirectory;
    type Output = bool;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<bool> {
        check_account_id(self.account_id)?;
        validate::org_id("org_id", &self.org_id)?;
        Ok(schema::delete_github_account(tx.conn(), self.account_id, &self.org_id)?)
    }
}

impl Delivery for ReleaseGitHubAccount {
    const NAME: &'static str = "auth_directory.release_github_account";
}

/// The organization connected to a GitHub account, if any.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveGitHubAccount {
    pub account_id: i64,
}

impl Read for ResolveGitHubAccount {
    type Entity = AuthDirectory;
    type Output = Option<String>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Option<String>> {
        check_account_id(self.account_id)?;
        Ok(schema::github_account_org(db, self.account_id)?)
    }
}

crate::actors::remote::remote_messages! {
    super::AuthDirectory;
    mutations: ClaimGitHubAccount, ReleaseGitHubAccount;
    reads: ResolveGitHubAccount;
}
