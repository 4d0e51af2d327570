//! A local GitHub-compatible REST server for tests and examples.
//!
//! [`FakeGitHub`] serves a deterministic [`Fixture`] over plain HTTP on `127.0.0.1` with the JSON shapes, auth,
//! rate-limit headers and `Link` pagination of GitHub's REST v3 API, plus fault controls (injected failures,
//! rate limiting, latency) so clients can be exercised without reaching GitHub.
//!
//! It also plays github.com for OAuth sign-in: `/login/oauth/authorize` (with a configurable signed-in browser user),
//! `/login/oauth/access_token`, and `/user`, `/user/emails` for the tokens it issues.
//!
//! And it plays GitHub for a GitHub App: `GET /orgs/{org}/installation`, `GET /users/{user}/installation` and
//! `POST /app/installations/{id}/access_tokens` check the App's RS256 JWT (signature, `iss`, `iat`, `exp`) against the
//! configured public key; the installation tokens they issue are then accepted on the API like the fixed token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use ring::signature::{UnparsedPublicKey, RSA_PKCS1_2048_8192_SHA256};
use serde_json::{json, Value};

use super::app::base64_decode;
use super::oauth::percent_encode;

/// The data a [`FakeGitHub`] serves: one owner (org or user) with its repositories and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    pub owner: String,
    pub repos: Vec<FakeRepo>,
    pub members: Vec<FakeMember>,
}

/// A repository of the fixture's owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRepo {
    pub id: u64,
    pub name: String,
    pub private: bool,
    pub default_branch: String,
    pub branches: Vec<String>,
    pub pulls: Vec<FakePull>,
}

/// A pull request of a [`FakeRepo`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakePull {
    pub number: u64,
    pub title: String,
    pub body: Option<String>,
    /// `"open"` or `"closed"`.
    pub state: String,
    pub draft: bool,
    pub merged: bool,
    pub head_ref: String,
    pub base_ref: String,
    pub author: String,
    /// RFC 3339, e.g. `2024-01-01T00:00:00Z`.
    pub updated_at: String,
}

/// A member of the fixture's organization.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMember {
    pub id: u64,
    pub login: String,
}

/// The GitHub account a fake OAuth sign-in grants access to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeOAuthUser {
    pub id: i64,
    pub login: String,
    pub name: Option<String>,
    /// The profile's public email (`email` of `/user`); `None` serves `null`, as GitHub does for private emails.
    pub public_email: Option<String>,
    /// `/user/emails`: (email, primary, verified).
    pub emails: Vec<(String, bool, bool)>,
}

/// Epoch seconds of 2024-01-01T00:00:00Z, the base of all generated timestamps.
const BASE_EPOCH: u64 = 1_704_067_200;

impl Fixture {
    /// Deterministic fixture: repos `repo-000`.. with ids `1000 + index` (every third private), branches `main` plus
    /// `feature-001`..`feature-{branches_per_repo}`, and pulls numbered from 1 whose head is `feature-{number:03}`
    /// (a branch that is not listed when `number > branches_per_repo`, like a deleted head branch). Pulls with
    /// `number % 10` in {0, 5} are closed (those with `% 10 == 0` merged), the rest open (~80%); open pulls with
    /// `number % 7 == 3` are drafts. Five members `dev-1`..`dev-5` (ids 5001..5005) author the pulls in turn.
    pub fn generate(owner: &str, repos: usize, branches_per_repo: usize, pulls_per_repo: usize) -> Fixture {
        let members: Vec<FakeMember> =
            (1..=5u64).map(|i| FakeMember { id: 5000 + i, login: format!("dev-{i}") }).collect();
        let repos = (0..repos)
            .map(|r| {
                let mut branches = vec!["main".to_string()];
                branches.extend((1..=branches_per_repo).map(|b| format!("feature-{b:03}")));
                let pulls = (1..=pulls_per_repo as u64)
                    .map(|n| {
                        let closed = n % 5 == 0;
                        let merged = n % 10 == 0;
                        let draft = !closed && n % 7 == 3;
                        // Scrambled so that ordering by update time differs from ordering by number.
                        let minutes = (n * 7919 + r as u64 * 31) % 100_003;
                        FakePull {
                            number: n,
                            title: format!("Change {n} in repo-{r:03}"),
                            body: if n % 4 == 0 { None } else { Some(format!("Description of change {n}.")) },
                            state: if closed { "closed" } else { "open" }.to_string(),
                            draft,
                            merged,
                            head_ref: format!("feature-{n:03}"),
                            base_ref: "main".to_string(),
                            author: members[(n as usize - 1) % members.len()].login.clone(),
                            updated_at: rfc3339(BASE_EPOCH + minutes * 60),
                        }
                    })
                    .collect();
                FakeRepo {
                    id: 1000 + r as u64,
                    name: format!("repo-{r:03}"),
                    private: r % 3 == 0,
                    default_branch: "main".to_string(),
                    branches,
                    pulls,
                }
            })
            .collect();
        Fixture { owner: owner.to_string(), repos, members }
    }
}

/// Formats epoch seconds as RFC 3339 UTC (`YYYY-MM-DDTHH:MM:SSZ`).
fn rfc3339(epoch: u64) -> String {
    let days = (epoch / 86_400) as i64;
    let secs = epoch % 86_400;
    // Civil-from-days (Howard Hinnant).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// A deterministic 40-hex-digit fake commit sha derived from `seed`.
fn fake_sha(seed: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut out = String::with_capacity(40);
    for round in 0..3u64 {
        for b in seed.bytes().chain(round.to_le_bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        out.push_str(&format!("{h:016x}"));
    }
    out.truncate(40);
    out
}

fn now_epoch() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

const RATE_LIMIT: u64 = 5000;

struct FailRule {
    path_contains: String,
    status: u16,
    remaining: u32,
}

/// What an OAuth code or token stands for: a user and the scopes granted, comma-separated as GitHub reports them.
#[derive(Clone)]
struct Grant {
    user: FakeOAuthUser,
    scope: String,
}

struct IssuedCode {
    grant: Grant,
    /// The `redirect_uri` of the authorize request, which the exchange must repeat if it sends one.
    redirect_uri: Option<String>,
}

/// The scopes [`FakeGitHub::issue_code`] grants: enough for a profile and its emails.
const ISSUE_CODE_SCOPE: &str = "read:user,user:email";

struct State {
    fixture: Fixture,
    token: String,
    /// (client_id, client_secret) of the one OAuth app the fake knows.
    oauth_app: Option<(String, String)>,
    browser_user: Option<FakeOAuthUser>,
    oauth_codes: HashMap<String, IssuedCode>,
    oauth_tokens: HashMap<String, Grant>,
    /// Makes every code and token distinct, even within one clock tick.
    oauth_serial: u64,
    /// (app id, RSA public key as PKCS#1 DER) of the one GitHub App the fake knows.
    github_app: Option<(String, Vec<u8>)>,
    /// Lower-cased account login -> installation id of the App.
    installations: HashMap<String, i64>,
    /// Issued installation token -> its expiry (epoch seconds).
    installation_tokens: HashMap<String, u64>,
    base_url: String,
    requests: u64,
    failures: Vec<FailRule>,
    rate_limited: u32,
    rate_limit_retry_after: u64,
    delay_ms: u64,
    window_used: u64,
    window_reset: u64,
}

type Shared = Mutex<State>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running local GitHub-compatible server. See the module docs.
pub struct FakeGitHub {
    state: Arc<Shared>,
    base_url: String,
    handle: ServerHandle,
}

impl FakeGitHub {
    /// Binds `127.0.0.1:0` with one worker and spawns the server on the current actix system. Requests must carry
    /// `Authorization: Bearer <token>` or `Authorization: token <token>`.
    ///
    /// # Panics
    /// If the loopback port cannot be bound.
    pub async fn start(fixture: Fixture, token: &str) -> FakeGitHub {
        let state = Arc::new(Mutex::new(State {
            fixture,
            token: token.to_string(),
            oauth_app: None,
            browser_user: None,
            oauth_codes: HashMap::new(),
            oauth_tokens: HashMap::new(),
            oauth_serial: 0,
            github_app: None,
            installations: HashMap::new(),
            installation_tokens: HashMap::new(),
            base_url: String::new(),
            requests: 0,
            failures: Vec::new(),
            rate_limited: 0,
            rate_limit_retry_after: 0,
            delay_ms: 0,
            window_used: 0,
            window_reset: now_epoch() + 3600,
        }));
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || App::new().app_data(data.clone()).default_service(web::to(handle)))
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .bind(("127.0.0.1", 0))
            .expect("fake GitHub: bind 127.0.0.1:0");
        let addr = server.addrs()[0];
        let base_url = format!("http://{addr}");
        lock(&state).base_url = base_url.clone();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        FakeGitHub { state, base_url, handle }
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    /// Stops the server gracefully and waits for it.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }

    /// The next `times` requests whose path (with query) contains `path_contains` answer `status` with
    /// `{"message": ...}`. Rules are consumed in the order added.
    pub fn fail_next(&self, path_contains: &str, status: u16, times: u32) {
        lock(&self.state).failures.push(FailRule {
            path_contains: path_contains.to_string(),
            status,
            remaining: times,
        });
    }

    /// The next `times` requests answer 403 with `x-ratelimit-remaining: 0`, `x-ratelimit-reset: now+retry_after`,
    /// `retry-after: retry_after_secs` and `{"message":"API rate limit exceeded"}`.
    pub fn rate_limit_next(&self, times: u32, retry_after_secs: u64) {
        let mut s = lock(&self.state);
        s.rate_limited = times;
        s.rate_limit_retry_after = retry_after_secs;
    }

    /// Sleeps `ms` milliseconds before answering every request (0 disables).
    pub fn set_delay(&self, ms: u64) {
        lock(&self.state).delay_ms = ms;
    }

    /// Number of requests received so far (all of them, including rejected ones).
    pub fn request_count(&self) -> u64 {
        lock(&self.state).requests
    }

    /// Changes the served data, e.g. to close a pull request.
    pub fn with_fixture(&self, f: impl FnOnce(&mut Fixture)) {
        f(&mut lock(&self.state).fixture);
    }

    /// A copy of the served data.
    pub fn fixture(&self) -> Fixture {
        lock(&self.state).fixture.clone()
    }

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
        lock(&self.state).installations.insert(owner.to_ascii_lowercase(), installation_id);
    }

    /// A fresh single-use code for `user`, as if they had just authorized the app (scopes `read:user,user:email`,
    /// no `redirect_uri` to match), without going through the browser redirect.
    pub fn issue_code(&self, user: FakeOAuthUser) -> String {
        let mut s = lock(&self.state);
        let grant = Grant { user, scope: ISSUE_CODE_SCOPE.to_string() };
        new_code(&mut s, grant, None)
    }
}

/// Rate-limit header values for one response.
struct RateHeaders {
    remaining: u64,
    reset: u64,
    used: u64,
}

struct Reply {
    status: u16,
    body: Value,
    link: Option<String>,
    retry_after: Option<u64>,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(body: Value) -> Reply {
        Reply { status: 200, body, link: None, retry_after: None, headers: Vec::new() }
    }

    fn message(status: u16, message: &str) -> Reply {
        Reply { status, body: json!({ "message": message }), link: None, retry_after: None, headers: Vec::new() }
    }

    fn not_found() -> Reply {
        Reply {
            status: 404,
            body: json!({"message": "Not Found", "documentation_url": "https://docs.github.com/rest"}),
            link: None,
            retry_after: None,
            headers: Vec::new(),
        }
    }
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    let delay = {
        let mut s = lock(&state);
        s.requests += 1;
        s.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    // github.com's pages, not the REST API: no API auth, rate limits or JSON-only answers.
    if req.path().starts_with("/login/oauth/") {
        return oauth_web(&mut lock(&state), &req, &body);
    }
    let mut s = lock(&state);
    let now = now_epoch();
    if now >= s.window_reset {
        s.window_reset = now + 3600;
        s.window_used = 0;
    }
    let (reply, rate) = respond(&mut s, &req, now);
    drop(s);

    let mut builder =
        HttpResponse::build(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    builder
        .insert_header(("content-type", "application/json; charset=utf-8"))
        .insert_header(("x-ratelimit-limit", RATE_LIMIT.to_string()))
        .insert_header(("x-ratelimit-remaining", rate.remaining.to_string()))
        .insert_header(("x-ratelimit-reset", rate.reset.to_string()))
        .insert_header(("x-ratelimit-used", rate.used.to_string()))
        .insert_header(("x-ratelimit-resource", "core"));
    if let Some(link) = reply.link {
        builder.insert_header(("link", link));
    }
    if let Some(secs) = reply.retry_after {
        builder.insert_header(("retry-after", secs.to_string()));
    }
    for header in reply.headers {
        builder.insert_header(header);
    }
    builder.body(reply.body.to_string())
}

/// Applies auth and faults, then routes. Called with the state locked.
fn respond(s: &mut State, req: &HttpRequest, now: u64) -> (Reply, RateHeaders) {
    let current = |s: &State| RateHeaders {
        remaining: RATE_LIMIT.saturating_sub(s.window_used),
        reset: s.window_reset,
        used: s.window_used,
    };

    let presented = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .map(|(_, tok)| tok.trim().to_string());
    let app_endpoint = is_app_endpoint(req);
    if app_endpoint {
        if let Err(message) = verify_jwt(s, presented.as_deref(), now) {
            let reply = Reply {
                status: 401,
                body: json!({"message": message, "documentation_url": "https://docs.github.com/rest"}),
                link: None,
                retry_after: None,
                headers: Vec::new(),
            };
            return (reply, current(s));
        }
    }
    // OAuth-issued tokens only reach the endpoints sign-in needs; everything else keeps the fixed token.
    let oauth_token = match presented {
        _ if app_endpoint => None,
        Some(t) if t == s.token => None,
        Some(t) if s.installation_tokens.get(&t).is_some_and(|&expires| expires > now) => None,
        Some(t) if matches!(req.path(), "/user" | "/user/emails") && s.oauth_tokens.contains_key(&t) => Some(t),
        _ => {
            let reply = Reply {
                status: 401,
                body: json!({"message": "Bad credentials", "documentation_url": "https://docs.github.com/rest"}),
                link: None,
                retry_after: None,
                headers: Vec::new(),
            };
            return (reply, current(s));
        }
    };

    if s.rate_limited > 0 {
        s.rate_limited -= 1;
        let retry = s.rate_limit_retry_after;
        let mut reply = Reply::message(403, "API rate limit exceeded");
        reply.retry_after = Some(retry);
        return (reply, RateHeaders { remaining: 0, reset: now + retry, used: RATE_LIMIT });
    }

    s.window_used += 1;
    let full_path = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    if let Some(i) = s.failures.iter().position(|r| r.remaining > 0 && full_path.contains(&r.path_contains)) {
        let rule = &mut s.failures[i];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            s.failures.remove(i);
        }
        let text = StatusCode::from_u16(status).ok().and_then(|c| c.canonical_reason()).unwrap_or("Injected failure");
        return (Reply::message(status, text), current(s));
    }

    let reply = if app_endpoint {
        app_route(s, req, now)
    } else if req.method() != actix_web::http::Method::GET && req.method() != actix_web::http::Method::HEAD {
        Reply::not_found()
    } else if let Some(token) = oauth_token {
        oauth_api(s, req, &token)
    } else {
        route(s, req)
    };
    (reply, current(s))
}

fn route(s: &State, req: &HttpRequest) -> Reply {
    let query: HashMap<String, String> = web::Query::<HashMap<String, String>>::from_query(req.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    let f = &s.fixture;
    let owner_matches = |o: &str| o.eq_ignore_ascii_case(&f.owner);
    let find_repo = |o: &str, name: &str| {
        if owner_matches(o) {
            f.repos.iter().find(|r| r.name.eq_ignore_ascii_case(name))
        } else {
            None
        }
    };
    let all_repos = || f.repos.iter().map(|r| repo_json(&f.owner, r)).collect::<Vec<_>>();

    match segments.as_slice() {
        ["orgs", org, "repos"] if owner_matches(org) => paginate(s, req, all_repos(), false),
        ["user", "repos"] => paginate(s, req, all_repos(), false),
        ["installation", "repositories"] => paginate(s, req, all_repos(), true),
        ["orgs", org, "members"] if owner_matches(org) => {
            let members = f.members.iter().map(|m| json!({"id": m.id, "login": m.login, "type": "User"})).collect();
            paginate(s, req, members, false)
        }
        ["repos", o, name] => match find_repo(o, name) {
            Some(r) => Reply::ok(repo_json(&f.owner, r)),
            None => Reply::not_found(),
        },
        ["repos", o, name, "branches"] => match find_repo(o, name) {
            Some(r) => {
                let full_name = format!("{}/{}", f.owner, r.name);
                let branches = r
                    .branches
                    .iter()
                    .map(|b| {
                        json!({"name": b, "commit": {"sha": fake_sha(&format!("{full_name}:{b}"))}, "protected": false})
                    })
                    .collect();
                paginate(s, req, branches, false)
            }
            None => Reply::not_found(),
        },
        ["repos", o, name, "pulls"] => match find_repo(o, name) {
            Some(r) => {
                let state = query.get("state").map(String::as_str).unwrap_or("open");
                let head = query.get("head").map(|h| h.split_once(':').map_or(h.as_str(), |(_, b)| b));
                let base = query.get("base");
                let mut pulls: Vec<&FakePull> = r
                    .pulls
                    .iter()
                    .filter(|p| state == "all" || p.state == state)
                    .filter(|p| head.is_none_or(|h| p.head_ref == h))
                    .filter(|p| base.is_none_or(|b| &p.base_ref == b))
                    .collect();
                // GitHub: sort defaults to `created`; direction defaults to desc for `created`, asc otherwise.
                let sort = query.get("sort").map(String::as_str).unwrap_or("created");
                let desc = match query.get("direction").map(String::as_str) {
                    Some("asc") => false,
                    Some("desc") => true,
                    _ => sort == "created",
                };
                if sort == "updated" || sort == "long-running" {
                    pulls.sort_by(|a, b| a.updated_at.cmp(&b.updated_at).then(a.number.cmp(&b.number)));
                } else {
                    pulls.sort_by_key(|p| p.number);
                }
                if desc {
                    pulls.reverse();
                }
                let items = pulls.into_iter().map(|p| pull_json(&f.owner, r, p)).collect();
                paginate(s, req, items, false)
            }
            None => Reply::not_found(),
        },
        ["repos", o, name, "pulls", number] => {
            let pull = find_repo(o, name).and_then(|r| {
                let n: u64 = number.parse().ok()?;
                r.pulls.iter().find(|p| p.number == n).map(|p| (r, p))
            });
            match pull {
                Some((r, p)) => Reply::ok(pull_json(&f.owner, r, p)),
                None => Reply::not_found(),
            }
        }
        _ => Reply::not_found(),
    }
}

fn repo_json(owner: &str, r: &FakeRepo) -> Value {
    let full_name = format!("{owner}/{}", r.name);
    let updated_at = rfc3339(BASE_EPOCH + (r.id % 10_000) * 3600);
    json!({
        "id": r.id,
        "node_id": format!("R_fake{}", r.id),
        "name": r.name,
        "full_name": full_name,
        "private": r.private,
        "visibility": if r.private { "private" } else { "public" },
        "fork": false,
        "archived": false,
        "description": null,
        "default_branch": r.default_branch,
        "clone_url": format!("https://github.com/{full_name}.git"),
        "html_url": format!("https://github.com/{full_name}"),
        "owner": {"login": owner, "type": "Organization"},
        "updated_at": updated_at,
        "pushed_at": updated_at,
    })
}

fn pull_json(owner: &str, r: &FakeRepo, p: &FakePull) -> Value {
    let full_name = format!("{owner}/{}", r.name);
    let closed = p.state == "closed";
    json!({
        "id": r.id * 100_000 + p.number,
        "number": p.number,
        "title": p.title,
        "body": p.body,
        "state": p.state,
        "draft": p.draft,
        "merged": p.merged,
        "merged_at": if p.merged { Value::from(p.updated_at.clone()) } else { Value::Null },
        "closed_at": if closed { Value::from(p.updated_at.clone()) } else { Value::Null },
        "created_at": rfc3339(BASE_EPOCH - 86_400 + p.number * 60),
        "updated_at": p.updated_at,
        "html_url": format!("https://github.com/{full_name}/pull/{}", p.number),
        "head": {
            "ref": p.head_ref,
            "sha": fake_sha(&format!("{full_name}:{}", p.head_ref)),
            "repo": {"full_name": full_name},
        },
        "base": {
            "ref": p.base_ref,
            "sha": fake_sha(&format!("{full_name}:{}", p.base_ref)),
            "repo": {"full_name": full_name},
        },
        "user": {"login": p.author, "type": "User"},
    })
}

/// Slices `items` by `page`/`per_page` and adds a GitHub-style `Link` header.
fn paginate(s: &State, req: &HttpRequest, items: Vec<Value>, wrap_installation: bool) -> Reply {
    let mut page = 1u64;
    let mut per_page = 30u64;
    let mut kept: Vec<&str> = Vec::new();
    for pair in req.query_string().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "page" => page = value.parse().ok().filter(|&p| p >= 1).unwrap_or(1),
            "per_page" => per_page = value.parse().ok().filter(|&p| p >= 1).unwrap_or(30).min(100),
            _ => kept.push(pair),
        }
    }
    let total = items.len() as u64;
    let last = total.div_ceil(per_page).max(1);
    let start = ((page - 1) * per_page).min(total) as usize;
    let end = (page * per_page).min(total) as usize;
    let slice: Vec<Value> = items.into_iter().skip(start).take(end - start).collect();

    let url = |n: u64| {
        let mut q = kept.join("&");
        if !q.is_empty() {
            q.push('&');
        }
        format!("{}{}?{q}page={n}&per_page={per_page}", s.base_url, req.path())
    };
    let mut links = Vec::new();
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", url(page - 1)));
    }
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", url(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", url(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"first\"", url(1)));
    }

    let body =
        if wrap_installation { json!({"total_count": total, "repositories": slice}) } else { Value::Array(slice) };
    Reply {
        status: 200,
        body,
        link: (!links.is_empty()).then(|| links.join(", ")),
        retry_after: None,
        headers: Vec::new(),
    }
}

// ---- GitHub App: JWT-authenticated endpoints ----

const JWT_UNDECODABLE: &str = "A JSON web token could not be decoded";

/// The App endpoints, which take the App's JWT instead of a token.
fn is_app_endpoint(req: &HttpRequest) -> bool {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    matches!(segments.as_slice(), ["app", ..] | ["orgs" | "users", _, "installation"])
}

/// Checks an App JWT as GitHub does; the error is GitHub's message for the failure.
fn verify_jwt(s: &State, jwt: Option<&str>, now: u64) -> Result<(), &'static str> {
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
fn app_route(s: &mut State, req: &HttpRequest, now: u64) -> Reply {
    let segments: Vec<&str> = req.path().split('/').filter(|p| !p.is_empty()).collect();
    let method = req.method().as_str();
    let app_id = s.github_app.as_ref().map(|(id, _)| id.clone()).unwrap_or_default();
    match (method, segments.as_slice()) {
        ("GET", [kind @ ("orgs" | "users"), owner, "installation"]) => {
            match s.installations.get(&owner.to_ascii_lowercase()) {
                Some(id) => Reply::ok(json!({
                    "id": id,
                    "account": {"login": owner, "type": if *kind == "orgs" { "Organization" } else { "User" }},
                    "app_id": app_id.parse::<u64>().map_or(Value::from(app_id.clone()), Value::from),
                    "target_type": if *kind == "orgs" { "Organization" } else { "User" },
                    "repository_selection": "all",
                })),
                None => Reply::not_found(),
            }
        }
        ("POST", ["app", "installations", id, "access_tokens"]) => {
            let known = id.parse::<i64>().ok().is_some_and(|id| s.installations.values().any(|&i| i == id));
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

// ---- OAuth: github.com's sign-in pages and the endpoints behind them ----

const OAUTH_ERRORS_DOC: &str =
    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors";

/// A distinct hex string of `len` (at most 40) characters.
fn fresh_hex(s: &mut State, kind: &str, len: usize) -> String {
    s.oauth_serial += 1;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut out = fake_sha(&format!("{kind}:{}:{nanos}:{}", s.oauth_serial, s.base_url));
    out.truncate(len);
    out
}

fn new_code(s: &mut State, grant: Grant, redirect_uri: Option<String>) -> String {
    // GitHub's codes are 20 hex digits.
    let code = fresh_hex(s, "code", 20);
    s.oauth_codes.insert(code.clone(), IssuedCode { grant, redirect_uri });
    code
}

/// Scopes as GitHub reports a grant: comma-separated, whatever separators were asked with.
fn normalize_scope(requested: &str) -> String {
    let mut scopes: Vec<&str> = Vec::new();
    for scope in requested.split([' ', ',']).filter(|p| !p.is_empty()) {
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes.join(",")
}

fn has_scope(granted: &str, wanted: &str) -> bool {
    // `user` includes `read:user` and `user:email`.
    granted.split(',').any(|s| s == wanted || (s == "user" && matches!(wanted, "read:user" | "user:email")))
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

fn oauth_web(s: &mut State, req: &HttpRequest, body: &[u8]) -> HttpResponse {
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

/// `/user` and `/user/emails` for an OAuth-issued token (known to be valid).
fn oauth_api(s: &State, req: &HttpRequest, token: &str) -> Reply {
    let Some(grant) = s.oauth_tokens.get(token) else {
        return Reply::not_found();
    };
    let u = &grant.user;
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
        _ => Reply::not_found(),
    };
    reply.headers.push(("x-oauth-scopes", grant.scope.replace(',', ", ")));
    reply
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "test-token";

    fn client() -> reqwest::Client {
        crate::integrations::http_client_builder().build().unwrap()
    }

    async fn get(gh: &FakeGitHub, path: &str) -> reqwest::Response {
        client()
            .get(format!("{}{path}", gh.base_url()))
            .header("authorization", format!("Bearer {TOKEN}"))
            .send()
            .await
            .expect("request")
    }

    fn header(resp: &reqwest::Response, name: &str) -> Option<String> {
        resp.headers().get(name).map(|v| v.to_str().unwrap().to_string())
    }

    #[test]
    fn generate_is_deterministic_and_shaped() {
        let a = Fixture::generate("acme", 3, 4, 20);
        assert_eq!(a, Fixture::generate("acme", 3, 4, 20));
        assert_eq!(a.repos[2].name, "repo-002");
        assert_eq!(a.repos[0].branches, vec!["main", "feature-001", "feature-002", "feature-003", "feature-004"]);
        assert_eq!(a.members.len(), 5);
        let pulls = &a.repos[0].pulls;
        assert_eq!(pulls[0].number, 1);
        assert_eq!(pulls[2].head_ref, "feature-003");
        let open = pulls.iter().filter(|p| p.state == "open").count();
        assert_eq!(open, 16);
        assert!(pulls.iter().any(|p| p.merged && p.state == "closed"));
        assert!(pulls.iter().any(|p| !p.merged && p.state == "closed"));
        assert!(pulls.iter().any(|p| p.draft && p.state == "open"));
        assert_eq!(rfc3339(BASE_EPOCH), "2024-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400 + 86_399), "2000-02-29T23:59:59Z");
    }

    #[actix_rt::test]
    async fn paginates_250_repos() {
        let gh = FakeGitHub::start(Fixture::generate("acme", 250, 1, 0), TOKEN).await;
        let base = gh.base_url();
        let mut ids = Vec::new();
        let mut next = Some(format!("{base}/orgs/acme/repos?type=all&per_page=100"));
        let mut pages = 0;
        while let Some(url) = next.take() {
            let resp =
                client().get(&url).header("authorization", format!("token {TOKEN}")).send().await.expect("request");
            assert_eq!(resp.status(), 200);
            assert_eq!(header(&resp, "x-ratelimit-limit").as_deref(), Some("5000"));
            assert!(header(&resp, "content-type").unwrap().starts_with("application/json"));
            let link = header(&resp, "link");
            pages += 1;
            if pages == 1 {
                assert_eq!(
                    link.as_deref(),
                    Some(
                        format!(
                            "<{base}/orgs/acme/repos?type=all&page=2&per_page=100>; rel=\"next\", \
                             <{base}/orgs/acme/repos?type=all&page=3&per_page=100>; rel=\"last\""
                        )
                        .as_str()
                    )
                );
            }
            next = link.and_then(|l| {
                l.split(", ").find(|p| p.ends_with("rel=\"next\"")).map(|p| p[1..p.find('>').unwrap()].to_string())
            });
            let body: Vec<Value> = resp.json().await.unwrap();
            ids.extend(body.iter().map(|r| r["id"].as_u64().unwrap()));
            if pages == 1 {
                assert_eq!(body[0]["full_name"], "acme/repo-000");
                assert_eq!(body[0]["clone_url"], "https://github.com/acme/repo-000.git");
                assert_eq!(body[0]["owner"]["login"], "acme");
            }
        }
        assert_eq!(pages, 3);
        assert_eq!(ids, (1000..1250).collect::<Vec<u64>>());

        let resp = get(&gh, "/installation/repositories?per_page=100&page=3").await;
        let link = header(&resp, "link").unwrap();
        assert!(link.starts_with(&format!("<{base}/installation/repositories?page=2&per_page=100>; rel=\"prev\"")));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["total_count"], 250);
        assert_eq!(body["repositories"].as_array().unwrap().len(), 50);

        let resp = get(&gh, "/user/repos").await;
        assert_eq!(resp.json::<Vec<Value>>().await.unwrap().len(), 30);
        assert_eq!(gh.request_count(), 5);
        gh.stop().await;
    }

    #[actix_rt::test]
    async fn auth_and_not_found() {
        let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), TOKEN).await;
        let resp = client()
            .get(format!("{}/repos/acme/repo-000", gh.base_url()))
            .header("authorization", "Bearer wrong")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401);
        assert!(header(&resp, "x-ratelimit-remaining").is_some());
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["message"], "Bad credentials");
        assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
        let resp = client().get(format!("{}/user/repos", gh.base_url())).send().await.unwrap();
        assert_eq!(resp.status(), 401);

        let resp = get(&gh, "/repos/acme/repo-000").await;
        assert_eq!(resp.status(), 200);
        let repo: Value = resp.json().await.unwrap();
        assert_eq!(repo["id"], 1000);
        assert_eq!(repo["default_branch"], "main");

        for path in ["/repos/acme/nope", "/repos/other/repo-000", "/orgs/other/repos", "/repos/acme/repo-000/pulls/99"]
        {
            let resp = get(&gh, path).await;
            assert_eq!(resp.status(), 404, "{path}");
            assert_eq!(resp.json::<Value>().await.unwrap()["message"], "Not Found");
        }
        assert_eq!(gh.request_count(), 7);
        gh.stop().await;
    }

    #[actix_rt::test]
    async fn faults_then_recover() {
        let gh = FakeGitHub::start(Fixture::generate("acme", 2, 1, 1), TOKEN).await;
        gh.fail_next("/branches", 502, 2);
        for _ in 0..2 {
            let resp = get(&gh, "/repos/acme/repo-000/branches").await;
            assert_eq!(resp.status(), 502);
            assert!(resp.json::<Value>().await.unwrap()["message"].is_string());
        }
        // Other paths are unaffected by the rule.
        assert_eq!(get(&gh, "/repos/acme/repo-000").await.status(), 200);
        let resp = get(&gh, "/repos/acme/repo-000/branches").await;
        assert_eq!(resp.status(), 200);
        let branches: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(branches.len(), 2);
        assert_eq!(branches[1]["name"], "feature-001");
        assert_eq!(branches[1]["commit"]["sha"].as_str().unwrap().len(), 40);
        assert_eq!(branches[1]["protected"], false);

        gh.rate_limit_next(1, 30);
        let before = now_epoch();
        let resp = get(&gh, "/orgs/acme/members").await;
        assert_eq!(resp.status(), 403);
        assert_eq!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
        assert_eq!(header(&resp, "retry-after").as_deref(), Some("30"));
        let reset: u64 = header(&resp, "x-ratelimit-reset").unwrap().parse().unwrap();
        assert!(reset >= before + 30 && reset <= now_epoch() + 30);
        assert_eq!(resp.json::<Value>().await.unwrap()["message"], "API rate limit exceeded");

        let resp = get(&gh, "/orgs/acme/members").await;
        assert_eq!(resp.status(), 200);
        assert_ne!(header(&resp, "x-ratelimit-remaining").as_deref(), Some("0"));
        let members: Vec<Value> = resp.json().await.unwrap();
        assert_eq!(members.len(), 5);
        assert_eq!(members[0]["type"], "User");

        gh.set_delay(50);
        let started = std::time::Instant::now();
        assert_eq!(get(&gh, "/repos/acme/repo-001").await.status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(50));
        assert_eq!(gh.request_count(), 7);
        gh.stop().await;
    }

    #[actix_rt::test]
    async fn pulls_filters_and_updates() {
        let gh = FakeGitHub::start(Fixture::generate("acme", 1, 20, 20), TOKEN).await;
        let numbers = |v: &[Value]| v.iter().map(|p| p["number"].as_u64().unwrap()).collect::<Vec<_>>();

        let open: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?per_page=100").await.json().await.unwrap();
        assert_eq!(open.len(), 16);
        assert!(open.iter().all(|p| p["state"] == "open" && p["merged_at"].is_null()));
        let closed: Vec<Value> =
            get(&gh, "/repos/acme/repo-000/pulls?state=closed&per_page=100").await.json().await.unwrap();
        let mut closed_numbers = numbers(&closed);
        closed_numbers.sort_unstable();
        assert_eq!(closed_numbers, vec![5, 10, 15, 20]);
        assert!(closed.iter().any(|p| p["merged_at"].is_string()));
        let all: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?state=all&per_page=100").await.json().await.unwrap();
        assert_eq!(all.len(), 20);

        let resp = get(&gh, "/repos/acme/repo-000/pulls?state=all&sort=updated&direction=desc&per_page=5").await;
        let link = header(&resp, "link").unwrap();
        assert!(link.contains("/repos/acme/repo-000/pulls?state=all&sort=updated&direction=desc&page=2&per_page=5>"));
        let page: Vec<Value> = resp.json().await.unwrap();
        let times: Vec<&str> = page.iter().map(|p| p["updated_at"].as_str().unwrap()).collect();
        assert!(times.windows(2).all(|w| w[0] >= w[1]));

        let pull: Value = get(&gh, "/repos/acme/repo-000/pulls/3").await.json().await.unwrap();
        assert_eq!(pull["head"]["ref"], "feature-003");
        assert_eq!(pull["head"]["repo"]["full_name"], "acme/repo-000");
        assert_eq!(pull["base"]["ref"], "main");
        assert_eq!(pull["html_url"], "https://github.com/acme/repo-000/pull/3");
        assert_eq!(pull["draft"], true);
        assert!(pull["user"]["login"].is_string());

        gh.with_fixture(|f| f.repos[0].pulls[0].state = "closed".to_string());
        let open: Vec<Value> = get(&gh, "/repos/acme/repo-000/pulls?per_page=100").await.json().await.unwrap();
        assert_eq!(open.len(), 15);
        assert!(!numbers(&open).contains(&1));
        assert_eq!(gh.request_count(), 6);
        gh.stop().await;
    }
}
