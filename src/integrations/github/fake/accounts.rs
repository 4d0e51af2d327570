//! The accounts side of [`FakeGitHub`](super::FakeGitHub): GitHub App endpoints (RS256 JWT checked against the
//! configured public key, installations listed, installation tokens issued) and github.com's OAuth sign-in pages with
//! the endpoints behind the tokens they issue: `/user`, `/user/emails`, `/user/memberships/orgs/{org}`,
//! `/user/installations`. Also the accounts themselves: their numeric ids ([`account_id`]), installations tied to an
//! account id, and the [`FakeGitHub`] methods that set them up.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use super::super::app::base64_decode;
use super::super::oauth::percent_encode;
use super::{fake_sha, fresh_hex, lock, rfc3339, FakeGitHub, FakeMember, FakeOAuthUser, Reply, State, BASE_EPOCH};

/// What an OAuth code or token stands for: a user and the scopes granted, comma-separated as GitHub reports them.
#[derive(Clone)]
pub(super) struct Grant {
    pub(super) user: FakeOAuthUser,
    pub(super) scope: String,
}

pub(super) struct IssuedCode {
    grant: Grant,
    /// The `redirect_uri` of the authorize request, which the exchange must repeat if it sends one.
    redirect_uri: Option<String>,
}

/// The scopes [`FakeGitHub::issue_code`](super::FakeGitHub::issue_code) grants: enough for a profile and its emails.
pub(super) const ISSUE_CODE_SCOPE: &str = "read:user,user:email";

const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";

/// The stable numeric id the fake gives the account `login` (case-insensitive) when nothing else names one: GitHub's
/// ids are stable per account, so the same login gets the same id on every run (in 10,000,000..100,000,000, clear of
/// the small ids fixtures use).
pub fn account_id(login: &str) -> u64 {
    10_000_000
        + u64::from_str_radix(&fake_sha(&format!("account:{}", login.to_ascii_lowercase()))[..12], 16)
            .unwrap_or_default()
            % 90_000_000
}

/// The App installed on an account: the account is known by its id, so a renamed account keeps its installation.
#[derive(Clone)]
pub(super) struct FakeInstallation {
    pub(super) id: i64,
    pub(super) account_id: u64,
    /// The account's login when installed (the fixture owner's is always its current one).
    login: String,
    /// The login who installed it (GitHub lists an installation to the user who made it).
    installed_by: Option<String>,
}

impl State {
    /// The account `login` as GitHub would describe it: (canonical login, id, `Organization` | `User`). The fixture
    /// owner is the organization; other logins are users (a signed-in OAuth user keeps its own id).
    pub(super) fn account(&self, login: &str) -> (String, u64, &'static str) {
        if login.eq_ignore_ascii_case(&self.fixture.owner) {
            return (self.fixture.owner.clone(), self.fixture.owner_id, "Organization");
        }
        let member =
            self.fixture.members.iter().find(|m| m.login.eq_ignore_ascii_case(login)).map(|m| (m.login.clone(), m.id));
        let signed_in = || {
            let grant = self.oauth_tokens.values().find(|g| g.user.login.eq_ignore_ascii_case(login))?;
            Some((grant.user.login.clone(), grant.user.id as u64))
        };
        let (login, id) = member.or_else(signed_in).unwrap_or_else(|| (login.to_string(), account_id(login)));
        (login, id, "User")
    }

    /// The installation's account as GitHub describes it now: (login, id, `Organization` | `User`).
    pub(super) fn installation_account(&self, i: &FakeInstallation) -> (String, u64, &'static str) {
        if i.account_id == self.fixture.owner_id {
            return (self.fixture.owner.clone(), i.account_id, "Organization");
        }
        (i.login.clone(), i.account_id, "User")
    }

    /// The App's installation on the account whose login is now `owner`.
    pub(super) fn installation_on(&self, owner: &str) -> Option<&FakeInstallation> {
        self.installations.iter().find(|i| self.installation_account(i).0.eq_ignore_ascii_case(owner))
    }

    pub(super) fn install(&mut self, owner: &str, id: i64, installed_by: Option<String>) {
        let (login, account_id, _) = self.account(owner);
        self.installations.retain(|i| i.account_id != account_id);
        self.installations.push(FakeInstallation { id, account_id, login, installed_by });
    }

    /// The fixture organization's member with this account id.
    pub(super) fn member(&self, id: u64) -> Option<&FakeMember> {
        self.fixture.members.iter().find(|m| m.id == id)
    }
}

/// Accounts, the OAuth app and the GitHub App of the fake.
impl FakeGitHub {
    /// Registers the OAuth app the OAuth endpoints accept (replacing any previous one).
    pub fn configure_oauth_app(&self, client_id: &str, client_secret: &str) {
        lock(&self.state).oauth_app = Some((client_id.to_string(), client_secret.to_string()));
    }

    /// The user signed in to the "browser" that visits `/login/oauth/authorize`; until set, authorizing answers 401.
    /// The user approves any app and scopes at once.
    pub fn set_browser_user(&self, user: FakeOAuthUser) {
        lock(&self.state).browser_user = Some(user);
    }

    /// Registers the GitHub App whose JWTs the App endpoints accept: its id (the JWT's `iss`) and RSA public key
    /// (PKCS#1 `RSAPublicKey` DER, e.g. `GitHubApp::public_key_der`). Replaces any previous one.
    pub fn configure_app(&self, app_id: &str, public_key_der: Vec<u8>) {
        lock(&self.state).github_app = Some((app_id.to_string(), public_key_der));
    }

    /// Installs the App on an account: both `/orgs/{owner}/installation` and `/users/{owner}/installation` answer
    /// `installation_id`, and tokens can be issued for it.
    pub fn set_installation(&self, owner: &str, installation_id: i64) {
        lock(&self.state).install(owner, installation_id, None);
    }

    /// [`set_installation`](Self::set_installation), made by the user `installer` (so their `/user/installations`
    /// lists it even if they do not administer the account).
    pub fn set_installation_by(&self, owner: &str, installation_id: i64, installer: &str) {
        lock(&self.state).install(owner, installation_id, Some(installer.to_string()));
    }

    /// Adds a member to the fixture organization, or changes their login and role (matched by account id).
    pub fn add_member(&self, member: FakeMember) {
        let mut s = lock(&self.state);
        match s.fixture.members.iter_mut().find(|m| m.id == member.id) {
            Some(existing) => *existing = member,
            None => s.fixture.members.push(member),
        }
    }

    /// The OAuth access tokens issued so far to the GitHub user `login` (to check where they end up).
    pub fn oauth_tokens_of(&self, login: &str) -> Vec<String> {
        let s = lock(&self.state);
        let mut tokens: Vec<String> = s
            .oauth_tokens
            .iter()
            .filter(|(_, g)| g.user.login.eq_ignore_ascii_case(login))
            .map(|(t, _)| t.clone())
            .collect();
        tokens.sort();
        tokens
    }

    /// A fresh single-use code for `user`, as if they had just authorized the app (scopes `read:user,user:email`,
    /// no `redirect_uri` to match), without going through the browser redirect.
    pub fn issue_code(&self, user: FakeOAuthUser) -> String {
        self.issue_code_with_scope(user, ISSUE_CODE_SCOPE)
    }

    /// [`issue_code`](Self::issue_code) granting `scope` (comma- or space-separated, e.g. `read:user,read:org`).
    pub fn issue_code_with_scope(&self, user: FakeOAuthUser, scope: &str) -> String {
        let mut s = lock(&self.state);
        let grant = Grant { user, scope: normalize_scope(scope) };
        new_code(&mut s, grant, None)
    }
}

/// The App endpoints, which take the App's JWT instead of a token.
pub(super) fn is_app_endpoint(req: &HttpRequest) -> bool {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    matches!(segments.as_slice(), ["app", ..] | ["orgs" | "users", _, "installation"])
}

/// The endpoints an OAuth user token reaches (the rest of the REST API keeps the fixed and installation tokens).
pub(super) fn is_user_endpoint(req: &HttpRequest) -> bool {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    matches!(segments.as_slice(), ["user"] | ["user", "emails" | "installations"] | ["user", "memberships", "orgs", _])
}

/// An installation as GitHub's JSON.
fn installation_json(s: &State, i: &FakeInstallation, app_id: &str) -> Value {
    let (login, id, kind) = s.installation_account(i);
    json!({
        "id": i.id,
        "account": {"login": login, "id": id, "type": kind},
        "app_id": app_id.parse::<u64>().map_or(Value::from(app_id), Value::from),
        "target_type": kind,
        "repository_selection": "all",
        "permissions": {"contents": "write", "pull_requests": "write", "members": "read", "metadata": "read"},
    })
}

/// Checks an App JWT as GitHub does; the error is GitHub's message for the failure.
pub(super) fn verify_jwt(s: &State, jwt: Option<&str>, now: u64) -> Result<(), &'static str> {
    let Some((app_id, public_key)) = &s.github_app else {
        return Err(JWT_UNDECODABLE);
    };
    let jwt = jwt.ok_or(JWT_UNDECODABLE)?;
    let mut parts = jwt.split('.');
    let (Some(header), Some(claims), Some(signature), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JWT_UNDECODABLE);
    };
    let json_part = |part: &str| base64_decode(part).and_then(|b| serde_json::from_slice::<Value>(&b).ok());
    let (Some(header), Some(claims), Some(signature)) =
        (json_part(header), json_part(claims), base64_decode(signature))
    else {
        return Err(JWT_UNDECODABLE);
    };
    let signed = &jwt[..jwt.rfind('.').unwrap_or(0)];
    let key = UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key);
    if header["alg"] != "RS256" || key.verify(signed.as_bytes(), &signature).is_err() {
        return Err(JWT_UNDECODABLE);
    }
    let iss_matches = match &claims["iss"] {
        Value::String(iss) => iss == app_id,
        Value::Number(iss) => iss.to_string() == *app_id,
        _ => false,
    };
    if !iss_matches {
        return Err("Integration not found");
    }
    let (Some(iat), Some(exp)) = (claims["iat"].as_u64(), claims["exp"].as_u64()) else {
        return Err(JWT_UNDECODABLE);
    };
    if iat > now + 60 {
        return Err(
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued.",
        );
    }
    if exp <= now {
        return Err("'Expiration time' claim ('exp') must be a numeric value representing the future time at which \
                    the assertion expires.");
    }
    // GitHub refuses JWTs valid for more than 10 minutes.
    if exp.saturating_sub(iat) > 600 {
        return Err("'Expiration time' claim ('exp') is too far in the future.");
    }
    Ok(())
}

/// The App endpoints, for a verified JWT.
pub(super) fn app_route(s: &mut State, req: &HttpRequest, now: u64) -> Reply {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().as_str();
    let app_id = s.github_app.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
    match (method, segments.as_slice()) {
        ("GET", [_, owner, "installation"]) => match s.installation_on(owner) {
            Some(i) => Reply::ok(installation_json(s, i, &app_id)),
            None => Reply::not_found(),
        },
        ("GET", ["app", "installations"]) => {
            let mut all: Vec<&FakeInstallation> = s.installations.iter().collect();
            all.sort_by_key(|i| i.id);
            let items = all.into_iter().map(|i| installation_json(s, i, &app_id)).collect();
            super::rest::paginate(s, req, items, false)
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            let known = id.parse::<i64>().ok().is_some_and(|id| s.installations.iter().any(|i| i.id == id));
            if !known {
                return Reply::not_found();
            }
            // GitHub's installation tokens: `ghs_` and 36 characters, valid for an hour.
            let token = format!("ghs_{}", fresh_hex(s, "installation", 36));
            let expires = now + 3600;
            s.installation_tokens.insert(token.clone(), expires);
            let mut reply = Reply::ok(json!({
                "token": token,
                "expires_at": rfc3339(expires),
                "permissions": {"contents": "read", "pull_requests": "read", "members": "read", "metadata": "read"},
                "repository_selection": "all",
            }));
            reply.status = 201;
            reply
        }
        _ => Reply::not_found(),
    }
}

const OAUTH_ERRORS_DOC: &str =
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors";

pub(super) fn new_code(s: &mut State, grant: Grant, redirect_uri: Option<String>) -> String {
    // GitHub's codes are 20 hex digits.
    let code = fresh_hex(s, "code", 20);
    s.oauth_codes.insert(code.clone(), IssuedCode { grant, redirect_uri });
    code
}

/// Scopes as GitHub reports a grant: comma-separated, whatever separators were asked with.
pub(super) fn normalize_scope(requested: &str) -> String {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in requested.split([' ', ',']).filter(|p| !p.is_empty()) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.join(",")
}

fn has_scope(granted: &str, wanted: &str) -> bool {
    // `user` includes `read:user` and `user:email`; `write:org` and `admin:org` include `read:org`.
    granted.split(',').any(|s| {
        s == wanted
            || (s == "user" && matches!(wanted, "read:user" | "user:email"))
            || (matches!(s, "write:org" | "admin:org") && wanted == "read:org")
    })
}

fn parse_form(text: &str) -> HashMap<String, String> {
    web::Query::<HashMap<String, String>>::from_query(text).map(|q| q.into_inner()).unwrap_or_default()
}

/// The parameters of a POST, from a form or a JSON body, over those of its query string (GitHub reads both).
fn post_params(req: &HttpRequest, body: &[u8]) -> HashMap<String, String> {
    let mut params = parse_form(req.query_string());
    let content_type = req.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
    if content_type.contains("json") {
        if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<Value>(body) {
            params.extend(map.into_iter().map(|(k, v)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_owned);
                (k, text)
            }));
        }
    } else if let Ok(text) = std::str::from_utf8(body) {
        params.extend(parse_form(text));
    }
    params
}

fn page(status: StatusCode, text: &str) -> HttpResponse {
    HttpResponse::build(status)
        .insert_header(("content-type", "text/html; charset=utf-8"))
        .body(format!("<!DOCTYPE html><html><body><h1>{text}</h1></body></html>"))
}

pub(super) fn oauth_web(s: &mut State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
    match (req.method().as_str(), req.path()) {
        ("GET", "/login/oauth/authorize") => authorize(s, &parse_form(req.query_string())),
        ("POST", "/login/oauth/access_token") => {
            let answer = access_token(s, &post_params(req, body));
            let wants_json = req
                .headers()
                .get("accept")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|a| a.contains("application/json"));
            // GitHub answers 200 even for errors; only the body tells.
            if wants_json {
                let object: serde_json::Map<String, Value> =
                    answer.into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect();
                HttpResponse::Ok()
                    .insert_header(("content-type", "application/json; charset=utf-8"))
                    .body(Value::Object(object).to_string())
            } else {
                let form: Vec<String> = answer.iter().map(|(k, v)| format!("{k}={}", percent_encode(v))).collect();
                HttpResponse::Ok()
                    .insert_header(("content-type", "application/x-www-form-urlencoded; charset=utf-8"))
                    .body(form.join("&"))
            }
        }
        _ => page(StatusCode::NOT_FOUND, "Not Found"),
    }
}

fn authorize(s: &mut State, query: &HashMap<String, String>) -> HttpResponse {
    let known_app = s.oauth_app.as_ref().is_some_and(|(id, _)| query.get("client_id") == Some(id));
    if !known_app {
        return page(StatusCode::NOT_FOUND, "Not Found");
    }
    let Some(user) = s.browser_user.clone() else {
        return page(StatusCode::UNAUTHORIZED, "Sign in to GitHub to continue");
    };
    // GitHub would fall back to the app's registered callback; the fake registers none.
    let Some(redirect) = query.get("redirect_uri").filter(|r| !r.is_empty()).cloned() else {
        return page(StatusCode::BAD_REQUEST, "redirect_uri is required");
    };
    let scope = normalize_scope(query.get("scope").map(String::as_str).unwrap_or_default());
    let code = new_code(s, Grant { user, scope }, Some(redirect.clone()));
    let separator = if redirect.contains('?') { '&' } else { '?' };
    let mut location = format!("{redirect}{separator}code={code}");
    if let Some(state) = query.get("state") {
        location.push_str("&state=");
        location.push_str(&percent_encode(state));
    }
    HttpResponse::Found().insert_header(("location", location)).finish()
}

/// The fields of the answer to a code exchange: a token, or GitHub's `error`, `error_description`, `error_uri`.
fn access_token(s: &mut State, params: &HashMap<String, String>) -> Vec<(&'static str, String)> {
    let param = |k: &str| params.get(k).map(String::as_str).unwrap_or_default();
    let error = |error: &str, description: &str| {
        vec![
            ("error", error.to_string()),
            ("error_description", description.to_string()),
            ("error_uri", format!("{OAUTH_ERRORS_DOC}#{}", error.replace('_', "-"))),
        ]
    };
    let credentials_ok = s
        .oauth_app
        .as_ref()
        .is_some_and(|(id, secret)| param("client_id") == id.as_str() && param("client_secret") == secret.as_str());
    if !credentials_ok {
        return error("incorrect_client_credentials", "The client_id and/or client_secret passed are incorrect.");
    }
    let code = param("code");
    let Some(issued) = s.oauth_codes.get(code) else {
        return error("bad_verification_code", "The code passed is incorrect or expired.");
    };
    if let (Some(sent), Some(expected)) = (params.get("redirect_uri"), &issued.redirect_uri) {
        if sent != expected {
            return error(
                "redirect_uri_mismatch",
                "The redirect_uri MUST match the registered callback URL for this application.",
            );
        }
    }
    let Some(issued) = s.oauth_codes.remove(code) else {
        return error("bad_verification_code", "The code passed is incorrect or expired.");
    };
    // GitHub's OAuth app tokens: `gho_` and 36 characters.
    let token = format!("gho_{}", fresh_hex(s, "token", 36));
    let scope = issued.grant.scope.clone();
    s.oauth_tokens.insert(token.clone(), issued.grant);
    vec![("access_token", token), ("token_type", "bearer".to_string()), ("scope", scope)]
}

/// The user endpoints for an OAuth-issued token (known to be valid).
pub(super) fn oauth_api(s: &State, req: &HttpRequest, token: &str) -> Reply {
    let Some(grant) = s.oauth_tokens.get(token) else {
        return Reply::not_found();
    };
    let u = &grant.user;
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    if let ["user", "memberships", "orgs", org] = segments.as_slice() {
        let mut reply = membership(s, grant, org);
        reply.headers.push(("x-oauth-scopes", grant.scope.replace(',', ", ")));
        return reply;
    }
    let mut reply = match req.path() {
        "/user" => Reply::ok(json!({
            "login": u.login,
            "id": u.id,
            "node_id": format!("U_fake{}", u.id),
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", u.id),
            "html_url": format!("https://github.com/{}", u.login),
            "type": "User",
            "site_admin": false,
            "name": u.name,
            "company": null,
            "blog": "",
            "location": null,
            "email": u.public_email,
            "bio": null,
            "public_repos": 0,
            "followers": 0,
            "following": 0,
            "created_at": rfc3339(BASE_EPOCH),
            "updated_at": rfc3339(BASE_EPOCH),
        })),
        // Without the scope GitHub answers 404, not 403.
        "/user/emails" if has_scope(&grant.scope, "user:email") => {
            let emails = u
                .emails
                .iter()
                .map(|(email, primary, verified)| {
                    let visibility = if u.public_email.as_ref() == Some(email) {
                        Value::from("public")
                    } else if *primary {
                        Value::from("private")
                    } else {
                        Value::Null
                    };
                    json!({"email": email, "primary": primary, "verified": verified, "visibility": visibility})
                })
                .collect();
            Reply::ok(Value::Array(emails))
        }
        "/user/installations" => {
            let app_id = s.github_app.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
            // What GitHub lists to a user: installations on their own account, on organizations they administer, and
            // those they installed themselves.
            let mut visible: Vec<&FakeInstallation> = s
                .installations
                .iter()
                .filter(|i| {
                    let (_, account, kind) = s.installation_account(i);
                    let own = kind == "User" && account == u.id as u64;
                    let administers = kind == "Organization" && s.member(u.id as u64).is_some_and(|m| m.admin);
                    let installed = i.installed_by.as_ref().is_some_and(|by| by.eq_ignore_ascii_case(&u.login));
                    own || administers || installed
                })
                .collect();
            visible.sort_by_key(|i| i.id);
            let items = visible.into_iter().map(|i| installation_json(s, i, &app_id)).collect();
            let mut page = super::rest::paginate(s, req, items, false);
            let total = page.body.as_array().map_or(0, Vec::len);
            page.body = json!({"total_count": total, "installations": page.body});
            page
        }
        _ => Reply::not_found(),
    };
    reply.headers.push(("x-oauth-scopes", grant.scope.replace(',', ", ")));
    reply
}

/// `GET /user/memberships/orgs/{org}`: the token user's membership of the fixture organization (by account id), 404
/// for a non-member or another organization, 403 without the `read:org` scope.
fn membership(s: &State, grant: &Grant, org: &str) -> Reply {
    if !has_scope(&grant.scope, "read:org") {
        return Reply::message(
            403,
            "You need at least read:org scope or user scope to list your organization memberships.",
        );
    }
    let u = &grant.user;
    let f = &s.fixture;
    let Some(m) = s.member(u.id as u64).filter(|_| org.eq_ignore_ascii_case(&f.owner)) else {
        return Reply::not_found();
    };
    Reply::ok(json!({
        "url": format!("{}/orgs/{}/memberships/{}", s.base_url, f.owner, u.login),
        "state": "active",
        "role": if m.admin { "admin" } else { "member" },
        "organization_url": format!("{}/orgs/{}", s.base_url, f.owner),
        "organization": {"login": f.owner, "id": f.owner_id, "node_id": format!("O_fake{}", f.owner_id)},
        "user": {"login": u.login, "id": u.id, "type": "User"},
    }))
}
