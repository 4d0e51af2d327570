//! The user's sign-in sessions and linked OAuth accounts. The user actor is their authority; the app-level
//! [`AuthDirectory`](crate::actors::auth_directory::AuthDirectory) only indexes them so a request can find its user.
//! Session tokens arrive as SHA-256 hex and are never read back; access tokens are stored sealed under the server's
//! token key ([`TokenCipher`], bound to user, provider and account) and only readable through [`GetOAuthAccessToken`],
//! for server-side calls. None of this is in the `app` snapshot, so nothing here touches it.

use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::messages::require_user;
use super::schema::{self, AccountRow, AccountUpsert, AuthSessionRow};
use super::User;
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult};
use crate::runtime::{Command, EntityCtx, Mutation, Read, Tx};
use crate::secrets::{SecretsError, TokenCipher};

/// Longest session id or provider account id, in characters.
pub const MAX_AUTH_ID_CHARS: usize = 200;
/// User agents longer than this many characters are stored truncated (they are informational only).
pub const MAX_USER_AGENT_CHARS: usize = 512;
/// Longest account login, in characters.
pub const MAX_LOGIN_CHARS: usize = 200;
/// Longest access token, in characters.
pub const MAX_ACCESS_TOKEN_CHARS: usize = 8192;
/// Longest scope list, in characters.
pub const MAX_SCOPES_CHARS: usize = 1024;
/// How long an expired session stays listed (so "where am I signed in" shows recent history) before a later
/// [`StartAuthSession`] prunes it: 30 days.
pub const EXPIRED_SESSION_RETENTION_MS: i64 = 30 * 24 * 60 * 60 * 1000;

/// A sign-in session as the user may see it (never the token hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthSessionInfo {
    pub session_id: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    pub user_agent: Option<String>,
}

impl From<AuthSessionRow> for AuthSessionInfo {
    fn from(row: AuthSessionRow) -> Self {
        AuthSessionInfo {
            session_id: row.session_id,
            created_at_ms: row.created_at,
            expires_at_ms: row.expires_at,
            revoked_at_ms: row.revoked_at,
            user_agent: row.user_agent,
        }
    }
}

/// A linked OAuth account as the user may see it (never the access token).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OAuthAccountInfo {
    pub provider: String,
    pub account_id: String,
    pub login: String,
    pub scopes: String,
    pub updated_at_ms: i64,
}

impl From<AccountRow> for OAuthAccountInfo {
    fn from(row: AccountRow) -> Self {
        OAuthAccountInfo {
            provider: row.provider,
            account_id: row.account_id,
            login: row.login,
            scopes: row.scopes,
            updated_at_ms: row.updated_at,
        }
    }
}

fn check_session_id(session_id: &str) -> DomainResult<()> {
    validate::opaque_id("session_id", session_id, MAX_AUTH_ID_CHARS)
}

/// Records a new sign-in session of an existing user ([`DomainError::NotFound`] otherwise). [`DomainError::Conflict`]
/// if the session id or the token hash is taken. Also prunes sessions expired for longer than
/// [`EXPIRED_SESSION_RETENTION_MS`].
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StartAuthSession {
    pub session_id: String,
    pub token_hash: String,
    pub expires_at_ms: i64,
    pub user_agent: Option<String>,
}

impl StartAuthSession {
    fn validate(&self) -> DomainResult<()> {
        check_session_id(&self.session_id)?;
        validate::sha256_hex("token_hash", &self.token_hash)?;
        if self.expires_at_ms <= 0 {
            return Err(DomainError::invalid("expires_at_ms", "must be a positive Unix time in milliseconds"));
        }
        Ok(())
    }
}

impl Mutation for StartAuthSession {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        self.validate()?;
        require_user(user, tx.conn())?;
        if schema::auth_session_clashes(tx.conn(), &self.session_id, &self.token_hash)? {
            return Err(DomainError::Conflict("auth session id or token is already in use".into()));
        }
        let now = now_ms();
        schema::prune_auth_sessions(tx.conn(), now - EXPIRED_SESSION_RETENTION_MS)?;
        let row = AuthSessionRow {
            session_id: self.session_id,
            token_hash: self.token_hash,
            created_at: now,
            expires_at: self.expires_at_ms,
            revoked_at: None,
            user_agent: self.user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect()),
        };
        let payload = serde_json::json!({ "sessionId": row.session_id });
        schema::insert_auth_session(tx.conn(), &row)?;
        audit_in_each_organization(user, tx, "auth.signed_in", payload)
    }
}

/// Sign-in and sign-out belong to no organization: each is recorded in the audit log of every organization the user
/// is a member of at that moment (the admins of each may ask who had access when). A user of no organization leaves
/// no audit event; their own session list (`GET /v1/auth/sessions`) keeps the times.
fn audit_in_each_organization(
    user: &User,
    tx: &mut Tx<'_>,
    kind: &str,
    payload: serde_json::Value,
) -> DomainResult<()> {
    let Some(profile) = schema::find_profile(tx.conn())? else { return Ok(()) };
    let orgs: Vec<String> = schema::decode_json(&profile.eligible_org_ids)?;
    for org in &orgs {
        Audit::org(org).by(Some(user.key())).append(tx, kind, payload.clone())?;
    }
    Ok(())
}

/// Revokes one session. Replies with its token hash if this call revoked it, so the caller removes it from the auth
/// directory; `None` if the session is unknown or was already revoked.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RevokeAuthSession {
    pub session_id: String,
}

impl Mutation for RevokeAuthSession {
    type Entity = User;
    type Output = Option<String>;
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<Option<String>> {
        check_session_id(&self.session_id)?;
        let revoked = schema::revoke_auth_session(tx.conn(), &self.session_id, now_ms())?;
        if revoked.is_some() {
            let payload = serde_json::json!({ "sessionId": self.session_id });
            audit_in_each_organization(user, tx, "auth.signed_out", payload)?;
        }
        Ok(revoked)
    }
}

/// Revokes every session not yet revoked (sign out everywhere); replies with their token hashes.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct RevokeAllAuthSessions;

impl Mutation for RevokeAllAuthSessions {
    type Entity = User;
    type Output = Vec<String>;
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<Vec<String>> {
        let revoked = schema::revoke_all_auth_sessions(tx.conn(), now_ms())?;
        if !revoked.is_empty() {
            let payload = serde_json::json!({ "everywhere": true, "sessions": revoked.len() });
            audit_in_each_organization(user, tx, "auth.signed_out", payload)?;
        }
        Ok(revoked)
    }
}

/// One session, revoked or not.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetAuthSession {
    pub session_id: String,
}

impl Read for GetAuthSession {
    type Entity = User;
    type Output = Option<AuthSessionInfo>;
    type Error = DomainError;

    fn read(self, _: &User, db: &mut SqliteConnection) -> DomainResult<Option<AuthSessionInfo>> {
        check_session_id(&self.session_id)?;
        Ok(schema::find_auth_session(db, &self.session_id)?.map(AuthSessionInfo::from))
    }
}

/// Every session (including revoked and recently expired ones), newest first.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListAuthSessions;

impl Read for ListAuthSessions {
    type Entity = User;
    type Output = Vec<AuthSessionInfo>;
    type Error = DomainError;

    fn read(self, _: &User, db: &mut SqliteConnection) -> DomainResult<Vec<AuthSessionInfo>> {
        Ok(schema::list_auth_sessions(db)?.into_iter().map(AuthSessionInfo::from).collect())
    }
}

/// Links an OAuth account to an existing user ([`DomainError::NotFound`] otherwise), or refreshes its login, token
/// and scopes. The token is stored sealed with the runtime's [`TokenCipher`]; without one nothing is stored
/// ([`DomainError::Unprocessable`]).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
pub struct LinkOAuthAccount {
    pub provider: String,
    pub account_id: String,
    pub login: String,
    pub access_token: String,
    pub scopes: String,
}

impl std::fmt::Debug for LinkOAuthAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkOAuthAccount")
            .field("provider", &self.provider)
            .field("account_id", &self.account_id)
            .field("login", &self.login)
            .field("access_token", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl LinkOAuthAccount {
    fn validate(&self) -> DomainResult<()> {
        validate::id("provider", &self.provider)?;
        validate::opaque_id("account_id", &self.account_id, MAX_AUTH_ID_CHARS)?;
        validate::name("login", &self.login, MAX_LOGIN_CHARS)?;
        validate::opaque_id("access_token", &self.access_token, MAX_ACCESS_TOKEN_CHARS)?;
        if self.scopes.chars().count() > MAX_SCOPES_CHARS || self.scopes.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "scopes",
                format!("must be at most {MAX_SCOPES_CHARS} characters without control characters"),
            ));
        }
        Ok(())
    }
}

/// What a sealed token is bound to: the same token sealed for another user, provider or account does not open.
fn token_context(user: &User, provider: &str, account_id: &str) -> String {
    format!("foundry oauth token\0{}\0{provider}\0{account_id}", user.key())
}

fn no_cipher() -> DomainError {
    DomainError::Unprocessable("this server has no token key, so it stores no OAuth tokens".into())
}

impl Mutation for LinkOAuthAccount {
    type Entity = User;
    type Output = ();
    type Error = DomainError;

    fn apply(self, user: &User, tx: &mut Tx<'_>) -> DomainResult<()> {
        self.validate()?;
        require_user(user, tx.conn())?;
        let cipher = tx.service::<TokenCipher>().ok_or_else(no_cipher)?;
        let sealed = cipher
            .seal(&self.access_token, &token_context(user, &self.provider, &self.account_id))
            .map_err(|e| DomainError::Unprocessable(e.to_string()))?;
        let account = AccountUpsert {
            provider: &self.provider,
            account_id: &self.account_id,
            login: &self.login,
            access_token: &sealed,
            scopes: &self.scopes,
        };
        schema::upsert_account(tx.conn(), account, now_ms())?;
        Ok(())
    }
}

/// The linked accounts, by provider and account id, without their tokens.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ListOAuthAccounts;

impl Read for ListOAuthAccounts {
    type Entity = User;
    type Output = Vec<OAuthAccountInfo>;
    type Error = DomainError;

    fn read(self, _: &User, db: &mut SqliteConnection) -> DomainResult<Vec<OAuthAccountInfo>> {
        Ok(schema::list_accounts(db)?.into_iter().map(OAuthAccountInfo::from).collect())
    }
}

/// A stored access token as [`GetOAuthAccessToken`] finds it. Never `Debug`-printed with the token.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StoredAccessToken {
    /// No account of that provider is linked.
    Missing,
    Token(String),
    /// The stored value does not open with this server's key (the key was replaced, or the row damaged): a new
    /// sign-in with the provider stores a fresh one.
    Unreadable(SecretsError),
}

impl std::fmt::Debug for StoredAccessToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoredAccessToken::Missing => f.write_str("Missing"),
            StoredAccessToken::Token(_) => f.write_str("Token(<redacted>)"),
            StoredAccessToken::Unreadable(e) => f.debug_tuple("Unreadable").field(e).finish(),
        }
    }
}

/// The access token of the user's account at `provider` (the most recently linked one if several), for server-side
/// calls only: never send it to a client. A command, not a read: a token stored in plaintext by an earlier version is
/// sealed in place on this first use.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct GetOAuthAccessToken {
    pub provider: String,
}

impl Command for GetOAuthAccessToken {
    type Entity = User;
    type Output = StoredAccessToken;
    type Error = DomainError;

    fn run(self, user: &mut User, ctx: &mut EntityCtx<'_, User>) -> DomainResult<StoredAccessToken> {
        validate::id("provider", &self.provider)?;
        let Some((account_id, stored)) = schema::access_token(ctx.db(), &self.provider)? else {
            return Ok(StoredAccessToken::Missing);
        };
        let cipher = ctx.service::<TokenCipher>().ok_or_else(no_cipher)?;
        let context = token_context(user, &self.provider, &account_id);
        if TokenCipher::is_sealed(&stored) {
            return Ok(match cipher.open(&stored, &context) {
                Ok(token) => StoredAccessToken::Token(token),
                Err(e) => {
                    let (user, provider) = (user.key(), &self.provider);
                    tracing::error!(user, %provider, error = %e, "stored OAuth token unreadable");
                    StoredAccessToken::Unreadable(e)
                }
            });
        }
        let sealed = cipher.seal(&stored, &context).map_err(|e| DomainError::Unprocessable(e.to_string()))?;
        let provider = self.provider.clone();
        ctx.write(|tx: &mut Tx<'_>| schema::replace_access_token(tx.conn(), &provider, &account_id, &stored, &sealed))?;
        let (user, provider) = (user.key(), &self.provider);
        tracing::info!(user, %provider, "sealed a plaintext OAuth token of an earlier version");
        Ok(StoredAccessToken::Token(stored))
    }
}

crate::actors::remote::remote_messages! {
    super::User;
    mutations: StartAuthSession, RevokeAuthSession, RevokeAllAuthSessions, LinkOAuthAccount;
    reads: GetAuthSession, ListAuthSessions, ListOAuthAccounts;
    commands: GetOAuthAccessToken;
}
