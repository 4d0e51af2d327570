//! Authentication: session tokens (random, 256 bits, only their SHA-256 hash is stored, expiring, revocable), the
//! [`Caller`] extractor every protected route takes, and the sign-in routes (GitHub OAuth; dev sign-in, only when
//! enabled, which `serve` does only on a loopback bind; with `serve --demo` it signs in at the demo's local GitHub).
//!
//! A GitHub sign-in stores the user's OAuth token (sealed, on the user actor): connecting a GitHub account to an
//! organization asks GitHub with it whether the caller controls that account.
//!
//! A token resolves through the app-level auth directory (token hash -> user, before any user or organization actor
//! is known); the session itself lives on the user's actor, so signing out revokes it there and removes the index
//! entry. Browsers carry the token in an HttpOnly, SameSite=Lax cookie (so a WebSocket upgrade is authenticated too);
//! API clients send `Authorization: Bearer <token>`.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use actix_web::http::{header, StatusCode};
use actix_web::{web, FromRequest, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::body::NoBody;
use super::openapi::{BadGateway, NotFound};
use super::replies::{Revoked, WhoAmI};
use super::{Api, ApiError};
use crate::actors::auth_directory::{
    ConsumeVerification, CreateVerification, IndexAuthSession, IndexLogin, LinkAccount, RemoveAuthSession,
    RemoveUserAuthSessions, ResolveAuthSession, ResolvedSession, AUTH_DIRECTORY_KEY,
};
use crate::actors::now_ms;
use crate::actors::user::{
    AuthSessionInfo, LinkOAuthAccount, ListAuthSessions, RevokeAllAuthSessions, RevokeAuthSession, StartAuthSession,
    UpdateProfile, UpsertUser,
};
use crate::actors::validate::schema::{DisplayName, Email, Id};
use crate::integrations::github::oauth::GitHubOAuth;

/// The cookie that carries a browser's session token.
pub const SESSION_COOKIE: &str = "foundry_session";
/// Prefix of session tokens (recognisable in logs and secret scanners).
const TOKEN_PREFIX: &str = "fdy_";
/// How long an OAuth `state` stays valid.
const OAUTH_STATE_TTL: Duration = Duration::from_secs(600);

/// Who a dev sign-in names, handed to [`DevGitHub::issue_code`].
pub struct DevIdentity<'a> {
    pub login: &'a str,
    pub name: Option<&'a str>,
    pub email: Option<&'a str>,
}

/// Dev sign-in through a local GitHub-compatible server (`serve --demo`): the server issues an OAuth code for the
/// login, as if that user had just approved the app there, and the sign-in then completes exactly like GitHub's
/// (code exchange, `/user`, the token stored): the user has a GitHub identity on that server.
#[derive(Clone)]
pub struct DevGitHub {
    /// The OAuth app registered on that server.
    pub oauth: std::sync::Arc<GitHubOAuth>,
    pub issue_code: std::sync::Arc<dyn Fn(&DevIdentity<'_>) -> String + Send + Sync>,
}

/// How users sign in.
#[derive(Clone)]
pub struct AuthSettings {
    /// `POST /v1/auth/dev/sign-in` signs anyone in by login: for local development only.
    pub dev_sign_in: bool,
    /// Lifetime of a session token.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (served over HTTPS).
    pub secure_cookies: bool,
    /// GitHub OAuth, when configured.
    pub github: Option<std::sync::Arc<GitHubOAuth>>,
    /// With dev sign-in: sign in at this GitHub-compatible server instead (`serve --demo`).
    pub dev_github: Option<DevGitHub>,
}

impl AuthSettings {
    /// The GitHub API the users' OAuth tokens were issued for (GitHub sign-in's, else the dev GitHub's).
    pub fn github_api_base(&self) -> Option<&str> {
        let oauth = self.github.as_ref().or(self.dev_github.as_ref().map(|d| &d.oauth))?;
        Some(oauth.config().api_base.as_str())
    }
}

impl Default for AuthSettings {
    fn default() -> Self {
        AuthSettings {
            dev_sign_in: false,
            session_ttl: Duration::from_secs(30 * 24 * 3600),
            secure_cookies: false,
            github: None,
            dev_github: None,
        }
    }
}

/// `n` bytes from the OS generator, hex-encoded.
pub fn random_hex(n: usize) -> Result<String, ApiError> {
    let mut bytes = vec![0u8; n];
    getrandom::getrandom(&mut bytes).map_err(|e| {
        tracing::error!(error = %e, "OS random generator failed");
        ApiError::internal()
    })?;
    Ok(hex(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What is stored for a secret: its SHA-256, hex. A leaked database does not sign anyone in.
pub fn hash_secret(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

/// The token a request carries: `Authorization: Bearer`, else the session cookie (then `true`).
fn request_token(req: &HttpRequest) -> Option<(String, bool)> {
    if let Some(value) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        return value.strip_prefix("Bearer ").map(|t| (t.trim().to_owned(), false));
    }
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| (value.to_owned(), true))
}

/// A browser sends the cookie with requests other sites make it send; for those that act (not GET, except the
/// WebSocket upgrade, which browsers never restrict by origin) the `Origin` must be this server's own.
fn check_origin(req: &HttpRequest) -> Result<(), ApiError> {
    let acts = req.method() != actix_web::http::Method::GET || req.headers().contains_key(header::UPGRADE);
    let Some(origin) = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return Ok(()) };
    if !acts {
        return Ok(());
    }
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest).trim_end_matches('/');
    let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    if origin_host.eq_ignore_ascii_case(host) {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("cross-origin request from {origin} with a session cookie")))
    }
}

/// The live session a token hash stands for (not expired, not revoked).
/// Answered from this node's cache when it can be (see `session_cache.rs` for why that stays correct).
async fn lookup(api: &Api, token_hash: &str) -> Result<Option<ResolvedSession>, ApiError> {
    let now = now_ms();
    if let Some(session) = api.sessions.get(token_hash, now) {
        return Ok(Some(session));
    }
    let epoch = api.sessions.epoch();
    let msg = ResolveAuthSession { token_hash: token_hash.to_owned(), now_ms: now };
    let found = api.domain.auth.read_with(&AUTH_DIRECTORY_KEY.to_owned(), msg, super::CHECK_BACKPRESSURE).await?;
    if let Some(session) = &found {
        api.sessions.insert(token_hash, session, epoch);
    }
    Ok(found)
}

/// The signed-in user of a request. Taking it as an argument makes a route require authentication (401 otherwise).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub session_id: String,
    pub expires_at_ms: i64,
    pub token_hash: String,
}

impl Caller {
    /// Resolves a token to its user: 401 if it is unknown, expired or revoked.
    pub async fn resolve(api: &Api, token: &str) -> Result<Caller, ApiError> {
        // A well-formed token is the prefix plus 64 hex digits; anything else cannot be one of ours.
        let well_formed = token
            .strip_prefix(TOKEN_PREFIX)
            .is_some_and(|rest| rest.len() == 64 && rest.bytes().all(|b| b.is_ascii_hexdigit()));
        if !well_formed {
            return Err(ApiError::unauthenticated("invalid session token"));
        }
        let token_hash = hash_secret(token);
        let session = lookup(api, &token_hash)
            .await?
            .ok_or_else(|| ApiError::unauthenticated("session expired or signed out"))?;
        Ok(Caller {
            user_id: session.user_id,
            session_id: session.session_id,
            expires_at_ms: session.expires_at_ms,
            token_hash,
        })
    }

    /// The caller of `req`, if it carries a valid token.
    pub async fn from_request_async(req: &HttpRequest) -> Result<Caller, ApiError> {
        let api = super::api(req)?;
        let (token, via_cookie) = request_token(req).ok_or_else(|| ApiError::unauthenticated("sign in first"))?;
        // Counted before anything is looked up: a client over its limit costs this check only.
        api.limit_token(&token)?;
        if via_cookie {
            check_origin(req)?;
        }
        Caller::resolve(&api, &token).await
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Caller, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Caller::from_request_async(&req).await })
    }
}

/// A new session for a signed-in user.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignedIn {
    pub token: String,
    pub user_id: String,
    pub session_id: String,
    pub expires_at_ms: i64,
    /// Whether this sign-in created the user.
    pub created: bool,
}

/// Finds or creates the user of an external account, refreshes their name/email, and starts a session.
async fn sign_in(api: &Api, req: &HttpRequest, account: Account<'_>) -> Result<SignedIn, ApiError> {
    let new_user_id = format!("u_{}", random_hex(12)?);
    let link = LinkAccount {
        provider: account.provider.to_owned(),
        account_id: account.account_id.to_owned(),
        email: account.email.clone(),
        new_user_id,
    };
    let linked = api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), link).await?;
    let user = linked.user_id.clone();
    let index =
        IndexLogin { provider: account.provider.to_owned(), login: account.login.to_owned(), user_id: user.clone() };
    api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), index).await?;
    let email = account.email.clone().unwrap_or_else(|| format!("{}@users.noreply.github.com", account.login));
    let upsert = UpsertUser { name: account.name.to_owned(), email, avatar_url: account.avatar_url.clone() };
    api.domain.users.mutate(&user, upsert).await?;
    if account.provider == "github" {
        let profile = UpdateProfile { github_login: Some(account.login.to_owned()), ..Default::default() };
        api.domain.users.mutate(&user, profile).await?;
    }
    // The provider's token is stored (sealed) before the session exists: a sign-in that could not keep it fails.
    if let Some((access_token, scopes)) = account.oauth {
        let link = LinkOAuthAccount {
            provider: account.provider.to_owned(),
            account_id: account.account_id.to_owned(),
            login: account.login.to_owned(),
            access_token,
            scopes,
        };
        api.domain.users.mutate(&user, link).await?;
    }
    let token = format!("{TOKEN_PREFIX}{}", random_hex(32)?);
    let token_hash = hash_secret(&token);
    let session_id = format!("as_{}", random_hex(8)?);
    let expires_at_ms = now_ms() + api.auth.session_ttl.as_millis() as i64;
    let user_agent = req.headers().get(header::USER_AGENT).and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The session is recorded on the user first: an index entry never points at a session the user lacks.
    let start =
        StartAuthSession { session_id: session_id.clone(), token_hash: token_hash.clone(), expires_at_ms, user_agent };
    api.domain.users.mutate(&user, start).await?;
    let index = IndexAuthSession { token_hash, user_id: user.clone(), session_id: session_id.clone(), expires_at_ms };
    api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), index).await?;
    Ok(SignedIn { token, user_id: user, session_id, expires_at_ms, created: linked.created })
}

struct Account<'a> {
    provider: &'a str,
    account_id: &'a str,
    login: &'a str,
    name: &'a str,
    email: Option<String>,
    avatar_url: Option<String>,
    /// The provider's access token and its scopes.
    oauth: Option<(String, String)>,
}

fn session_cookie(api: &Api, token: &str, max_age: Duration) -> String {
    let secure = if api.auth.secure_cookies { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={}{secure}", max_age.as_secs())
}

fn signed_in_response(api: &Api, signed: &SignedIn) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, session_cookie(api, &signed.token, api.auth.session_ttl)))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(signed)
}

#[derive(Clone, Debug, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevSignIn {
    #[schema(value_type = Id)]
    pub login: String,
    /// Default: the login.
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    /// Default: `<login>@dev.invalid`.
    #[schema(value_type = Option<Email>)]
    pub email: Option<String>,
}

/// `POST /v1/auth/dev/sign-in {login, name?, email?}`: signs in (creating the user) without a provider, or with
/// [`AuthSettings::dev_github`] as that login at the local GitHub. Refused (404, as if absent) unless dev sign-in is
/// enabled.
#[utoipa::path(post, path = "/v1/auth/dev/sign-in", tag = "auth", request_body = DevSignIn,
    responses(
        (status = 200, description = "Signed in (the session cookie is set too)", body = SignedIn),
        (status = 404, response = NotFound),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn dev_sign_in(
    req: HttpRequest,
    body: super::body::Json<DevSignIn>,
) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    api.limit_sign_in(&req)?;
    if !api.auth.dev_sign_in {
        return Err(ApiError::not_found("dev sign-in is disabled on this server"));
    }
    let body = body.into_inner();
    crate::actors::validate::login("login", &body.login)?;
    if let Some(dev) = &api.auth.dev_github {
        let who = DevIdentity { login: &body.login, name: body.name.as_deref(), email: body.email.as_deref() };
        let code = (dev.issue_code)(&who);
        let signed = github_code_sign_in(&api, &req, &dev.oauth, &code).await?;
        return Ok(signed_in_response(&api, &signed));
    }
    let name = body.name.unwrap_or_else(|| body.login.clone());
    let email = Some(body.email.unwrap_or_else(|| format!("{}@dev.invalid", body.login)));
    let account = Account {
        provider: "dev",
        account_id: &body.login,
        login: &body.login,
        name: &name,
        email,
        avatar_url: None,
        oauth: None,
    };
    let signed = sign_in(&api, &req, account).await?;
    Ok(signed_in_response(&api, &signed))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct StartQuery {
    /// Where to land after signing in: a path on this site.
    #[param(max_length = 500, pattern = r"^/(?:[^/\\][^\\]*)?$")]
    redirect: Option<String>,
}

/// `GET /v1/auth/github/start?redirect=/path`: redirects the browser to GitHub's authorize page with a fresh,
/// single-use `state`. `redirect` (where to land afterwards) must be a path on this site.
#[utoipa::path(get, path = "/v1/auth/github/start", tag = "auth", params(StartQuery),
    responses(
        (status = 302, description = "To GitHub's authorize page",
            headers(("Location" = String, description = "GitHub's authorize URL"))),
        (status = 404, response = NotFound),
    ))]
pub(super) async fn github_start(req: HttpRequest, q: web::Query<StartQuery>) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    api.limit_sign_in(&req)?;
    let oauth = api.auth.github.clone().ok_or_else(|| ApiError::not_found("GitHub sign-in is not configured"))?;
    let redirect = q.into_inner().redirect;
    if let Some(r) = &redirect {
        if !r.starts_with('/') || r.starts_with("//") || r.contains('\\') || r.len() > 2000 {
            return Err(ApiError::bad_request("invalid_redirect", "redirect must be a path on this site"));
        }
    }
    let state = random_hex(16)?;
    let verification = CreateVerification {
        state_hash: hash_secret(&state),
        provider: "github".into(),
        redirect,
        expires_at_ms: now_ms() + OAUTH_STATE_TTL.as_millis() as i64,
    };
    api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), verification).await?;
    Ok(HttpResponse::Found().insert_header((header::LOCATION, oauth.config().authorize_url(&state))).finish())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CallbackQuery {
    /// GitHub's code to exchange.
    code: Option<String>,
    /// The state `start` issued (single use).
    state: Option<String>,
    /// Set when the user declined.
    error: Option<String>,
}

/// `GET /v1/auth/github/callback?code&state`: GitHub sends the browser back here. The state must be one we issued
/// (once); the code is exchanged for a token, the GitHub user found or created, and a session started. Lands on the
/// `redirect` given at start (with the cookie set), or answers the session as JSON.
#[utoipa::path(get, path = "/v1/auth/github/callback", tag = "auth", params(CallbackQuery),
    responses(
        (status = 200, description = "Signed in (no `redirect` was given at start)", body = SignedIn),
        (status = 302, description = "Signed in: to the `redirect` given at start, with the session cookie",
            headers(("Location" = String))),
        (status = 404, response = NotFound),
        (status = 502, response = BadGateway),
    ))]
pub(super) async fn github_callback(req: HttpRequest, q: web::Query<CallbackQuery>) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    api.limit_sign_in(&req)?;
    let oauth = api.auth.github.clone().ok_or_else(|| ApiError::not_found("GitHub sign-in is not configured"))?;
    let q = q.into_inner();
    if let Some(error) = q.error {
        return Err(ApiError::bad_request("oauth_denied", format!("GitHub refused the sign-in: {error}")));
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return Err(ApiError::bad_request("invalid_query", "code and state are required"));
    };
    let consume = ConsumeVerification { state_hash: hash_secret(&state), now_ms: now_ms() };
    let verification = api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), consume).await?;
    let verification =
        verification.ok_or_else(|| ApiError::bad_request("invalid_state", "unknown or expired state"))?;
    let signed = github_code_sign_in(&api, &req, &oauth, &code).await?;
    match verification.redirect {
        Some(to) => Ok(HttpResponse::Found()
            .insert_header((header::SET_COOKIE, session_cookie(&api, &signed.token, api.auth.session_ttl)))
            .insert_header((header::LOCATION, to))
            .finish()),
        None => Ok(signed_in_response(&api, &signed)),
    }
}

/// Exchanges a GitHub OAuth code, finds or creates the GitHub user's account here, stores their token and starts a
/// session.
async fn github_code_sign_in(
    api: &Api,
    req: &HttpRequest,
    oauth: &GitHubOAuth,
    code: &str,
) -> Result<SignedIn, ApiError> {
    let oauth_failed = |e: crate::integrations::github::oauth::OAuthError| {
        tracing::warn!(error = %e, "GitHub OAuth failed");
        ApiError::new(StatusCode::BAD_GATEWAY, "oauth_failed", format!("GitHub sign-in failed: {e}"))
    };
    let token = oauth.exchange_code(code).await.map_err(|e| match e {
        crate::integrations::github::oauth::OAuthError::BadCode(m) => ApiError::bad_request("invalid_code", m),
        e => oauth_failed(e),
    })?;
    let gh = oauth.authenticated_user(&token.access_token).await.map_err(oauth_failed)?;
    let account_id = gh.id.to_string();
    let name = gh.name.clone().unwrap_or_else(|| gh.login.clone());
    let account = Account {
        provider: "github",
        account_id: &account_id,
        login: &gh.login,
        name: &name,
        email: gh.email.clone(),
        avatar_url: gh.avatar_url.clone(),
        oauth: Some((token.access_token, token.scope)),
    };
    sign_in(api, req, account).await
}

/// Ends one of the user's sessions: revoked on the user, removed from the index (so the token stops working at once).
async fn revoke(api: &Api, user_id: &str, session_id: &str) -> Result<bool, ApiError> {
    let hash = api
        .domain
        .users
        .mutate_existing(&user_id.to_owned(), RevokeAuthSession { session_id: session_id.to_owned() })
        .await?;
    let Some(token_hash) = hash else { return Ok(false) };
    api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), RemoveAuthSession { token_hash }).await?;
    api.notify_signed_out(user_id, Some(session_id));
    Ok(true)
}

/// `POST /v1/auth/sign-out`: ends the caller's session and clears the cookie.
#[utoipa::path(post, path = "/v1/auth/sign-out", tag = "auth", request_body = Option<NoBody>,
    responses((status = 204, description = "Signed out (the cookie is cleared)")))]
pub(super) async fn sign_out(req: HttpRequest, caller: Caller, _: NoBody) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    revoke(&api, &caller.user_id, &caller.session_id).await?;
    Ok(HttpResponse::NoContent().insert_header((header::SET_COOKIE, session_cookie(&api, "", Duration::ZERO))).finish())
}

/// `GET /v1/auth/sessions`: the caller's sessions (never their tokens).
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "auth",
    responses((status = 200, description = "The caller's sessions", body = Vec<AuthSessionInfo>)))]
pub(super) async fn list_sessions(
    req: HttpRequest,
    caller: Caller,
) -> Result<web::Json<Vec<AuthSessionInfo>>, ApiError> {
    let api = super::api(&req)?;
    Ok(web::Json(api.domain.users.read_existing(&caller.user_id, ListAuthSessions).await?))
}

/// `DELETE /v1/auth/sessions/{id}`: signs one of the caller's sessions out (e.g. a lost laptop).
#[utoipa::path(delete, path = "/v1/auth/sessions/{session}", tag = "auth",
    params(("session" = String, Path, description = "One of the caller's session ids")),
    request_body = Option<NoBody>,
    responses((status = 204, description = "Signed out")))]
pub(super) async fn delete_session(
    req: HttpRequest,
    caller: Caller,
    path: web::Path<String>,
    _: NoBody,
) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    if revoke(&api, &caller.user_id, &path.into_inner()).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found("no such active session"))
    }
}

/// `DELETE /v1/auth/sessions`: signs the caller out everywhere (every session, this one included).
#[utoipa::path(delete, path = "/v1/auth/sessions", tag = "auth", request_body = Option<NoBody>,
    responses((status = 200, description = "Signed out everywhere (the cookie is cleared)", body = Revoked)))]
pub(super) async fn delete_all_sessions(req: HttpRequest, caller: Caller, _: NoBody) -> Result<HttpResponse, ApiError> {
    let api = super::api(&req)?;
    let revoked = api.domain.users.mutate_existing(&caller.user_id, RevokeAllAuthSessions).await?;
    let msg = RemoveUserAuthSessions { user_id: caller.user_id.clone() };
    api.domain.auth.mutate(&AUTH_DIRECTORY_KEY.to_owned(), msg).await?;
    api.notify_signed_out(&caller.user_id, None);
    Ok(HttpResponse::Ok()
        .insert_header((header::SET_COOKIE, session_cookie(&api, "", Duration::ZERO)))
        .json(Revoked { revoked: revoked.len() }))
}

/// `GET /v1/auth/whoami`: the caller's user and session ids.
#[utoipa::path(get, path = "/v1/auth/whoami", tag = "auth",
    responses((status = 200, description = "The caller's user and session", body = WhoAmI)))]
pub(super) async fn whoami(caller: Caller) -> HttpResponse {
    HttpResponse::Ok().json(WhoAmI {
        user_id: caller.user_id,
        session_id: caller.session_id,
        expires_at_ms: caller.expires_at_ms,
    })
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/dev/sign-in", web::post().to(dev_sign_in))
        .route("/auth/github/start", web::get().to(github_start))
        .route("/auth/github/callback", web::get().to(github_callback))
        .route("/auth/sign-out", web::post().to(sign_out))
        .route("/auth/whoami", web::get().to(whoami))
        .route("/auth/sessions", web::get().to(list_sessions))
        .route("/auth/sessions", web::delete().to(delete_all_sessions))
        .route("/auth/sessions/{session}", web::delete().to(delete_session));
}

impl Caller {
    /// Whether the session is still signed in (not revoked, not expired).
    pub async fn still_valid(&self, api: &Api) -> Result<bool, ApiError> {
        Ok(lookup(api, &self.token_hash).await?.is_some_and(|s| s.session_id == self.session_id))
    }
}
