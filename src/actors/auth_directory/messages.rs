//! Messages of the auth directory and their handlers. Every message validates its input first and refuses with
//! [`DomainError::Invalid`] (or [`DomainError::Conflict`]), changing nothing. No message touches a topic.
//!
//! Timestamps are milliseconds since the Unix epoch. Reads that depend on expiry take `now_ms` from the caller (one
//! clock for the whole request, and testable); pruning uses the actor's own clock, as nothing depends on its timing.

use diesel::sqlite::SqliteConnection;

use super::schema::{self, SessionIndexRow, VerificationRow};
use super::AuthDirectory;
use crate::actors::{now_ms, validate, DomainError, DomainResult};
use crate::runtime::{Mutation, Read, Tx};

/// Longest user id or session id, in characters (the user actor's id limit).
pub const MAX_ID_CHARS: usize = 200;
/// Longest provider account id, in characters.
pub const MAX_ACCOUNT_ID_CHARS: usize = 200;
/// Longest email address, in characters.
pub const MAX_EMAIL_CHARS: usize = validate::MAX_EMAIL;
/// Longest redirect kept with a verification, in characters.
pub const MAX_REDIRECT_CHARS: usize = 2048;

fn check_expiry(expires_at_ms: i64) -> DomainResult<()> {
    if expires_at_ms <= 0 {
        return Err(DomainError::invalid("expires_at_ms", "must be a positive Unix time in milliseconds"));
    }
    Ok(())
}

fn check_account(provider: &str, account_id: &str) -> DomainResult<()> {
    validate::id("provider", provider)?;
    validate::opaque_id("account_id", account_id, MAX_ACCOUNT_ID_CHARS)
}

/// The email as indexed: lowercased, so lookups ignore case.
fn normalized_email(email: &str) -> DomainResult<String> {
    validate::email("email", email)?;
    Ok(email.to_lowercase())
}

/// Indexes a new session token (by hash) for `user_id`'s session `session_id`. Refuses a hash that is already
/// indexed with [`DomainError::Conflict`]. Also deletes up to [`schema::PRUNE_BATCH`] expired entries, so the index
/// stays bounded by the live sessions without a sweeper.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IndexAuthSession {
    pub token_hash: String,
    pub user_id: String,
    pub session_id: String,
    pub expires_at_ms: i64,
}

impl Mutation for IndexAuthSession {
    type Entity = AuthDirectory;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::sha256_hex("token_hash", &self.token_hash)?;
        validate::opaque_id("user_id", &self.user_id, MAX_ID_CHARS)?;
        validate::opaque_id("session_id", &self.session_id, MAX_ID_CHARS)?;
        check_expiry(self.expires_at_ms)?;
        if schema::session_exists(tx.conn(), &self.token_hash)? {
            return Err(DomainError::Conflict("session token is already indexed".into()));
        }
        let now = now_ms();
        schema::prune_sessions(tx.conn(), now)?;
        let row = SessionIndexRow {
            token_hash: self.token_hash,
            user_id: self.user_id,
            session_id: self.session_id,
            expires_at: self.expires_at_ms,
            created_at: now,
        };
        schema::insert_session(tx.conn(), &row)?;
        Ok(())
    }
}

/// Who a live session token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResolvedSession {
    pub user_id: String,
    pub session_id: String,
    pub expires_at_ms: i64,
}

/// The session of a token hash; `None` if it is not indexed or expired at `now_ms` (an entry is valid strictly
/// before its expiry). Revocation is the caller removing the entry ([`RemoveAuthSession`]).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveAuthSession {
    pub token_hash: String,
    pub now_ms: i64,
}

impl Read for ResolveAuthSession {
    type Entity = AuthDirectory;
    type Output = Option<ResolvedSession>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Option<ResolvedSession>> {
        validate::sha256_hex("token_hash", &self.token_hash)?;
        let row = schema::find_session(db, &self.token_hash)?.filter(|r| r.expires_at > self.now_ms);
        Ok(row.map(|r| ResolvedSession { user_id: r.user_id, session_id: r.session_id, expires_at_ms: r.expires_at }))
    }
}

/// Removes a token hash (sign out); replies whether it was indexed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RemoveAuthSession {
    pub token_hash: String,
}

impl Mutation for RemoveAuthSession {
    type Entity = AuthDirectory;
    type Output = bool;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<bool> {
        validate::sha256_hex("token_hash", &self.token_hash)?;
        Ok(schema::delete_session(tx.conn(), &self.token_hash)?)
    }
}

/// Removes every token of a user (sign out everywhere); replies how many were indexed.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RemoveUserAuthSessions {
    pub user_id: String,
}

impl Mutation for RemoveUserAuthSessions {
    type Entity = AuthDirectory;
    type Output = usize;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<usize> {
        validate::opaque_id("user_id", &self.user_id, MAX_ID_CHARS)?;
        Ok(schema::delete_user_sessions(tx.conn(), &self.user_id)?)
    }
}

/// Reply of [`LinkAccount`]: the user the account belongs to, and whether that is `new_user_id` (the caller must then
/// create the user actor).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LinkedAccount {
    pub user_id: String,
    pub created: bool,
}

/// Finds or assigns the user of an OAuth account, in one transaction (so two concurrent sign-ins of a new account
/// agree on one user):
/// 1. the account is indexed: its user;
/// 2. else `email` is indexed (case-insensitively): that user, and the account is bound to them;
/// 3. else the account, and `email` if given, are bound to `new_user_id` (`created: true`).
///
/// Step 2 merges accounts by email, so the caller must pass only an email the provider has verified.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkAccount {
    pub provider: String,
    pub account_id: String,
    pub email: Option<String>,
    pub new_user_id: String,
}

impl Mutation for LinkAccount {
    type Entity = AuthDirectory;
    type Output = LinkedAccount;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<LinkedAccount> {
        check_account(&self.provider, &self.account_id)?;
        validate::opaque_id("new_user_id", &self.new_user_id, MAX_ID_CHARS)?;
        let email = self.email.as_deref().map(normalized_email).transpose()?;
        if let Some(user_id) = schema::find_account(tx.conn(), &self.provider, &self.account_id)? {
            super::orgs::link_to_orgs(tx, &self.provider, &self.account_id, &user_id)?;
            return Ok(LinkedAccount { user_id, created: false });
        }
        let by_email = match &email {
            Some(email) => schema::find_email(tx.conn(), email)?,
            None => None,
        };
        let (user_id, created) = match by_email {
            Some(user_id) => (user_id, false),
            None => (self.new_user_id, true),
        };
        schema::insert_account(tx.conn(), &self.provider, &self.account_id, &user_id)?;
        if let (true, Some(email)) = (created, &email) {
            schema::insert_email_if_free(tx.conn(), email, &user_id)?;
        }
        super::orgs::link_to_orgs(tx, &self.provider, &self.account_id, &user_id)?;
        Ok(LinkedAccount { user_id, created })
    }
}

/// The user an OAuth account is bound to.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveAccount {
    pub provider: String,
    pub account_id: String,
}

impl Read for ResolveAccount {
    type Entity = AuthDirectory;
    type Output = Option<String>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Option<String>> {
        check_account(&self.provider, &self.account_id)?;
        Ok(schema::find_account(db, &self.provider, &self.account_id)?)
    }
}

/// Records the login a user signed in with (case-insensitive), so admins can add them by it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IndexLogin {
    pub provider: String,
    pub login: String,
    pub user_id: String,
}

impl Mutation for IndexLogin {
    type Entity = AuthDirectory;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<()> {
        check_account(&self.provider, &self.login)?;
        validate::opaque_id("user_id", &self.user_id, MAX_ID_CHARS)?;
        Ok(schema::upsert_login(tx.conn(), &self.provider, &self.login.to_lowercase(), &self.user_id)?)
    }
}

/// The user who last signed in with a login (case-insensitive): GitHub logins first, then development logins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveLogin {
    pub login: String,
}

impl Read for ResolveLogin {
    type Entity = AuthDirectory;
    type Output = Option<String>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Option<String>> {
        check_account("github", &self.login)?;
        let login = self.login.to_lowercase();
        for provider in ["github", "dev"] {
            if let Some(user) = schema::find_login(db, provider, &login)? {
                return Ok(Some(user));
            }
        }
        Ok(None)
    }
}

/// Most logins one [`ListLoginUsers`] looks up.
pub const MAX_LOGINS_LISTED: usize = 64;

/// The users who last signed in with these `(provider, login)` pairs (logins case-insensitive); pairs that name
/// nobody are left out. The server-admin check asks it for the configured admin logins.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListLoginUsers {
    pub logins: Vec<(String, String)>,
}

impl Read for ListLoginUsers {
    type Entity = AuthDirectory;
    type Output = Vec<String>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Vec<String>> {
        if self.logins.len() > MAX_LOGINS_LISTED {
            return Err(DomainError::invalid("logins", format!("at most {MAX_LOGINS_LISTED} at once")));
        }
        let mut users = Vec::new();
        for (provider, login) in &self.logins {
            check_account(provider, login)?;
            if let Some(user) = schema::find_login(db, provider, &login.to_lowercase())? {
                users.push(user);
            }
        }
        Ok(users)
    }
}

/// The user an email is bound to (case-insensitive).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ResolveEmail {
    pub email: String,
}

impl Read for ResolveEmail {
    type Entity = AuthDirectory;
    type Output = Option<String>;
    type Error = DomainError;

    fn read(self, _: &AuthDirectory, db: &mut SqliteConnection) -> DomainResult<Option<String>> {
        let email = normalized_email(&self.email)?;
        Ok(schema::find_email(db, &email)?)
    }
}

/// Binds an email (case-insensitive) to a user. Idempotent for the same user; [`DomainError::Conflict`] if another
/// user has it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct IndexEmail {
    pub email: String,
    pub user_id: String,
}

impl Mutation for IndexEmail {
    type Entity = AuthDirectory;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<()> {
        let email = normalized_email(&self.email)?;
        validate::opaque_id("user_id", &self.user_id, MAX_ID_CHARS)?;
        if schema::insert_email_if_free(tx.conn(), &email, &self.user_id)? {
            return Ok(());
        }
        match schema::find_email(tx.conn(), &email)? {
            Some(owner) if owner != self.user_id => Err(DomainError::Conflict("email belongs to another user".into())),
            _ => Ok(()),
        }
    }
}

/// A consumed OAuth flow: which provider it was for and where to go afterwards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Verification {
    pub provider: String,
    pub redirect: Option<String>,
}

/// Records a pending OAuth flow under the hash of its `state`. [`DomainError::Conflict`] if the hash exists. Also
/// deletes up to [`schema::PRUNE_BATCH`] expired flows (abandoned sign-ins are never consumed).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateVerification {
    pub state_hash: String,
    pub provider: String,
    pub redirect: Option<String>,
    pub expires_at_ms: i64,
}

impl Mutation for CreateVerification {
    type Entity = AuthDirectory;
    type Output = ();
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::sha256_hex("state_hash", &self.state_hash)?;
        validate::id("provider", &self.provider)?;
        if let Some(redirect) = &self.redirect {
            if redirect.chars().count() > MAX_REDIRECT_CHARS || redirect.chars().any(char::is_control) {
                return Err(DomainError::invalid(
                    "redirect",
                    format!("must be at most {MAX_REDIRECT_CHARS} characters without control characters"),
                ));
            }
        }
        check_expiry(self.expires_at_ms)?;
        if schema::verification_exists(tx.conn(), &self.state_hash)? {
            return Err(DomainError::Conflict("verification state is already pending".into()));
        }
        let now = now_ms();
        schema::prune_verifications(tx.conn(), now)?;
        let row = VerificationRow {
            state_hash: self.state_hash,
            provider: self.provider,
            redirect: self.redirect,
            expires_at: self.expires_at_ms,
            created_at: now,
        };
        schema::insert_verification(tx.conn(), &row)?;
        Ok(())
    }
}

/// Takes a pending OAuth flow: deletes it and replies with it, or `None` if it is unknown, already consumed or
/// expired at `now_ms` (an expired one is deleted too). Single use, so a replayed `state` is refused.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ConsumeVerification {
    pub state_hash: String,
    pub now_ms: i64,
}

impl Mutation for ConsumeVerification {
    type Entity = AuthDirectory;
    type Output = Option<Verification>;
    type Error = DomainError;

    fn apply(self, _: &AuthDirectory, tx: &mut Tx<'_>) -> DomainResult<Option<Verification>> {
        validate::sha256_hex("state_hash", &self.state_hash)?;
        let row = schema::take_verification(tx.conn(), &self.state_hash)?.filter(|r| r.expires_at > self.now_ms);
        Ok(row.map(|r| Verification { provider: r.provider, redirect: r.redirect }))
    }
}

crate::actors::remote::remote_messages! {
    super::AuthDirectory;
    mutations: IndexAuthSession, RemoveAuthSession, RemoveUserAuthSessions, LinkAccount, IndexLogin, IndexEmail, CreateVerification, ConsumeVerification;
    reads: ResolveAuthSession, ResolveAccount, ResolveLogin, ListLoginUsers, ResolveEmail;
}
