//! A local GitHub-compatible server for tests, examples and the demo mode.
//!
//! [`FakeGitHub`] serves a deterministic [`Fixture`] over plain HTTP on `127.0.0.1` with the JSON shapes, auth,
//! rate-limit headers and `Link` pagination of GitHub's REST v3 API, plus fault controls (injected failures,
//! rate limiting, latency) so clients can be exercised without reaching GitHub.
//!
//! With git enabled ([`FakeGitHub::start_with_git`]) every repository is a real bare repository on disk, served over
//! git's smart HTTP protocol by `git http-backend` (`git` clones and pushes exactly as against github.com); branch
//! and pull shas are the real refs, and pull requests can be opened, merged (in the bare repository) and closed.
//! Events are delivered as signed webhooks ([`FakeGitHub::set_webhook`]).
//!
//! It also plays github.com for OAuth sign-in: `/login/oauth/authorize` (with a configurable signed-in browser user),
//! `/login/oauth/access_token`, and for the tokens it issues `/user`, `/user/emails`, `/user/memberships/orgs/{org}`
//! (the fixture organization's members, by account id, with their role; `read:org` scope required) and
//! `/user/installations` (the App's installations the user may see: on their own account, on the organization they
//! administer, or ones they installed).
//!
//! And it plays GitHub for a GitHub App: `GET /orgs/{org}/installation`, `GET /users/{user}/installation`,
//! `GET /app/installations` and `POST /app/installations/{id}/access_tokens` check the App's RS256 JWT (signature,
//! `iss`, `iat`, `exp`) against the configured public key; the installation tokens they issue are then accepted on the
//! API like the fixed token.
//!
//! Accounts have GitHub's numeric ids: the fixture owner's is [`Fixture::owner_id`] (kept when the owner is renamed
//! with [`FakeGitHub::with_fixture`]), members carry theirs, and any other login gets a stable [`account_id`].
//!
//! Submodules: `rest` (the read-only REST routes), `pulls` (pull request writes), `git` (bare repositories and smart
//! HTTP), `hooks` (webhook deliveries), `accounts` (account ids, members' roles, App and OAuth).

mod accounts;
mod git;
mod hooks;
mod pulls;
mod rest;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use serde_json::{json, Value};

pub use accounts::account_id;
use accounts::{FakeInstallation, Grant, IssuedCode};

/// The data a [`FakeGitHub`] serves: one owner organization with its repositories and members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fixture {
    pub owner: String,
    /// The organization's numeric account id (GitHub's `id`: it survives renames, the login does not).
    pub owner_id: u64,
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

/// A member of the fixture's organization (an active membership).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeMember {
    pub id: u64,
    pub login: String,
    /// Role `admin` (an owner of the organization) rather than `member`.
    pub admin: bool,
}

impl FakeMember {
    pub fn new(login: &str, admin: bool) -> FakeMember {
        FakeMember { id: account_id(login), login: login.to_string(), admin }
    }
}

impl FakeOAuthUser {
    /// The GitHub user `login` with its [`account_id`], no name and no emails.
    pub fn named(login: &str) -> FakeOAuthUser {
        FakeOAuthUser {
            id: account_id(login) as i64,
            login: login.to_string(),
            name: None,
            public_email: None,
            emails: vec![],
        }
    }
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
            // dev-1 is the organization's admin, the others members (an organization always has an owner).
            (1..=5u64).map(|i| FakeMember { id: 5000 + i, login: format!("dev-{i}"), admin: i == 1 }).collect();
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
        Fixture { owner: owner.to_string(), owner_id: account_id(owner), repos, members }
    }

    /// The organization `owner` (id [`account_id`]) with no repositories and no members.
    pub fn new(owner: &str) -> Fixture {
        Fixture { owner: owner.to_string(), owner_id: account_id(owner), repos: Vec::new(), members: Vec::new() }
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

/// The shas a merged pull request keeps once its branches move on.
struct MergeShas {
    head: String,
    base: String,
    commit: String,
}

struct State {
    fixture: Fixture,
    token: String,
    /// Who the fixed token stands for (pull request author, pusher); the fixture owner when unset.
    token_login: Option<String>,
    /// (client_id, client_secret) of the one OAuth app the fake knows.
    oauth_app: Option<(String, String)>,
    browser_user: Option<FakeOAuthUser>,
    oauth_codes: HashMap<String, IssuedCode>,
    oauth_tokens: HashMap<String, Grant>,
    /// Makes every code, token and delivery id distinct, even within one clock tick.
    oauth_serial: u64,
    /// (app id, RSA public key as PKCS#1 DER) of the one GitHub App the fake knows.
    github_app: Option<(String, Vec<u8>)>,
    /// The App's installations, each on one account.
    installations: Vec<FakeInstallation>,
    /// Issued installation token -> its expiry (epoch seconds).
    installation_tokens: HashMap<String, u64>,
    git: Option<git::GitState>,
    /// (lower-cased repository name, number) -> creation time of the pull requests opened through the API.
    pull_created: HashMap<(String, u64), String>,
    merges: HashMap<(String, u64), MergeShas>,
    hooks: hooks::Hooks,
    base_url: String,
    requests: u64,
    failures: Vec<FailRule>,
    rate_limited: u32,
    rate_limit_retry_after: u64,
    delay_ms: u64,
    window_used: u64,
    window_reset: u64,
}

impl State {
    /// The fixture's repository `owner/name` (GitHub matches both case-insensitively).
    fn repo(&self, owner: &str, name: &str) -> Option<&FakeRepo> {
        if !owner.eq_ignore_ascii_case(&self.fixture.owner) {
            return None;
        }
        self.fixture.repos.iter().find(|r| r.name.eq_ignore_ascii_case(name))
    }

    fn repo_mut(&mut self, name: &str) -> Option<&mut FakeRepo> {
        self.fixture.repos.iter_mut().find(|r| r.name.eq_ignore_ascii_case(name))
    }

    /// The login a valid token acts as, `None` for an unknown or expired one. OAuth tokens count here (git accepts
    /// them), though the REST routes only take them for `/user` and `/user/emails`.
    fn token_login(&self, token: &str, now: u64) -> Option<String> {
        if token == self.token {
            return Some(self.token_login.clone().unwrap_or_else(|| self.fixture.owner.clone()));
        }
        if self.installation_tokens.get(token).is_some_and(|&expires| expires > now) {
            let app = self.github_app.as_ref().map_or("app", |(id, _)| id.as_str());
            return Some(format!("fake-app-{app}[bot]"));
        }
        self.oauth_tokens.get(token).map(|g| g.user.login.clone())
    }

    /// Consumes the first matching [`FailRule`] for `full_path` (path and query) and returns its status.
    fn take_fault(&mut self, full_path: &str) -> Option<u16> {
        let i = self.failures.iter().position(|r| r.remaining > 0 && full_path.contains(&r.path_contains))?;
        let rule = &mut self.failures[i];
        rule.remaining -= 1;
        let status = rule.status;
        if rule.remaining == 0 {
            self.failures.remove(i);
        }
        Some(status)
    }
}

type Shared = Mutex<State>;

fn lock(state: &Shared) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Counts a request and waits out the configured delay.
async fn arrive(state: &Shared) {
    let delay = {
        let mut s = lock(state);
        s.requests += 1;
        s.delay_ms
    };
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
}

/// A distinct hex string of `len` (at most 40) characters.
fn fresh_hex(s: &mut State, kind: &str, len: usize) -> String {
    s.oauth_serial += 1;
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let mut out = fake_sha(&format!("{kind}:{}:{nanos}:{}", s.oauth_serial, s.base_url));
    out.truncate(len);
    out
}

/// A running local GitHub-compatible server. See the module docs. Clones are handles to the same server.
#[derive(Clone)]
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
        match FakeGitHub::start_on(fixture, token, ("127.0.0.1", 0)).await {
            Ok(gh) => gh,
            Err(e) => panic!("fake GitHub: bind 127.0.0.1:0: {e}"),
        }
    }

    /// [`FakeGitHub::start`] on a given address (the demo serves it on a fixed loopback port, so that the clone
    /// URLs stored by foundry stay valid across restarts).
    pub async fn start_on(fixture: Fixture, token: &str, addr: impl std::net::ToSocketAddrs) -> io::Result<FakeGitHub> {
        let state = Arc::new_cyclic(|weak| {
            Mutex::new(State {
                fixture,
                token: token.to_string(),
                token_login: None,
                oauth_app: None,
                browser_user: None,
                oauth_codes: HashMap::new(),
                oauth_tokens: HashMap::new(),
                oauth_serial: 0,
                github_app: None,
                installations: Vec::new(),
                installation_tokens: HashMap::new(),
                git: None,
                pull_created: HashMap::new(),
                merges: HashMap::new(),
                hooks: hooks::Hooks::new(weak.clone()),
                base_url: String::new(),
                requests: 0,
                failures: Vec::new(),
                rate_limited: 0,
                rate_limit_retry_after: 0,
                delay_ms: 0,
                window_used: 0,
                window_reset: now_epoch() + 3600,
            })
        });
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                // Smart HTTP streams its bodies, so these routes take the raw payload, not the REST JSON handler.
                .service(web::resource(git::ROUTE).to(git::serve))
                .default_service(web::to(handle))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .bind(addr)?;
        let addr = server.addrs()[0];
        let base_url = format!("http://{addr}");
        lock(&state).base_url = base_url.clone();
        let server = server.run();
        let handle = server.handle();
        actix_rt::spawn(server);
        // The server starts its workers on its first poll: yield once so it is serving when this returns, even if
        // the caller then blocks its thread (e.g. on a `git clone` against it).
        tokio::task::yield_now().await;
        Ok(FakeGitHub { state, base_url, handle })
    }

    /// [`start`](Self::start), then [`enable_git`](Self::enable_git) under `root`.
    ///
    /// # Panics
    /// If the port cannot be bound or the repositories cannot be created (e.g. no `git` on the PATH).
    pub async fn start_with_git(fixture: Fixture, token: &str, root: PathBuf) -> FakeGitHub {
        let gh = FakeGitHub::start(fixture, token).await;
        if let Err(e) = gh.enable_git(root) {
            panic!("fake GitHub: creating the git repositories failed: {e}");
        }
        gh
    }

    /// Gives every fixture repository a real bare repository `<root>/<owner>/<name>.git` (kept if it already exists)
    /// and serves them over smart HTTP. A new one gets a small deterministic history on its default branch (same
    /// shas on every run) and one commit on top of it for each other listed branch. Runs git on the calling thread
    /// (two processes per new repository).
    pub fn enable_git(&self, root: PathBuf) -> io::Result<()> {
        let (owner, repos) = {
            let s = lock(&self.state);
            (s.fixture.owner.clone(), s.fixture.repos.clone())
        };
        std::fs::create_dir_all(&root)?;
        let root = root.canonicalize()?;
        let mut branches = Vec::new();
        for repo in &repos {
            branches.push(git::seed(&root, &owner, repo)?);
        }
        let mut s = lock(&self.state);
        for (repo, refs) in repos.iter().zip(branches) {
            if let Some(r) = s.repo_mut(&repo.name) {
                git::sync_branches(r, &refs);
            }
        }
        s.git = Some(git::GitState::new(root, repos.iter().map(|r| r.name.clone())));
        Ok(())
    }

    /// Adds a public repository `name` to the fixture with a bare repository whose first (and only) commit on
    /// `default_branch` holds `files` (path, content); returns its git directory. Large contents are fine: the
    /// commit is written with `git fast-import` on the calling thread (about 4 s for 50 MB that does not compress).
    /// Replaces a fixture repository of that name that has no git yet.
    ///
    /// # Panics
    /// If git is not enabled, the repository already has git, or git fails.
    pub fn create_repo(&self, name: &str, default_branch: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
        let (root, owner, taken) = {
            let s = lock(&self.state);
            let Some(g) = &s.git else { panic!("fake GitHub: create_repo needs git enabled") };
            let taken = s.repo(&s.fixture.owner, name).is_some_and(|r| g.has(&r.name));
            (g.root.clone(), s.fixture.owner.clone(), taken)
        };
        assert!(!taken, "fake GitHub: repository {owner}/{name} already has git");
        let dir = git::repo_dir(&root, &owner, name);
        if let Err(e) = git::create_with_files(&root, &owner, &dir, default_branch, files) {
            panic!("fake GitHub: creating {owner}/{name}: {e}");
        }
        let mut s = lock(&self.state);
        let id = s.fixture.repos.iter().map(|r| r.id + 1).max().unwrap_or(1000);
        let repo = FakeRepo {
            id,
            name: name.to_string(),
            private: false,
            default_branch: default_branch.to_string(),
            branches: vec![default_branch.to_string()],
            pulls: Vec::new(),
        };
        match s.repo_mut(name) {
            Some(existing) => {
                existing.default_branch = repo.default_branch;
                existing.branches = repo.branches;
            }
            None => s.fixture.repos.push(repo),
        }
        if let Some(g) = &mut s.git {
            g.add(name);
        }
        dir
    }

    /// The bare repository of fixture repository `name`, if it has one (inspect it with `git --git-dir`).
    pub fn git_dir(&self, name: &str) -> Option<PathBuf> {
        let s = lock(&self.state);
        let g = s.git.as_ref()?;
        let r = s.fixture.repos.iter().find(|r| r.name.eq_ignore_ascii_case(name))?;
        g.has(&r.name).then(|| git::repo_dir(&g.root, &s.fixture.owner, &r.name))
    }

    /// The login the fixed token acts as (author of the pull requests it opens, pusher, webhook sender); the fixture
    /// owner until set.
    pub fn set_token_login(&self, login: &str) {
        lock(&self.state).token_login = Some(login.to_string());
    }

    /// Delivers every event from now on to `url`, signed with `secret` (`X-Hub-Signature-256`); an empty `url` stops
    /// deliveries. Deliveries go out one at a time in event order, after the request that caused them answered.
    pub fn set_webhook(&self, url: &str, secret: &str) {
        lock(&self.state).hooks.set_target(url, secret);
    }

    /// Finished webhook deliveries in order: (event, action or ref, final HTTP status or 0 if none was received).
    pub fn deliveries(&self) -> Vec<(String, String, u16)> {
        lock(&self.state).hooks.finished.clone()
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
    /// `{"message": ...}` (plain text on the git routes). Rules are consumed in the order added.
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

    fn json(status: u16, body: Value) -> Reply {
        Reply { status, body, link: None, retry_after: None, headers: Vec::new() }
    }
}

/// What the locked part of a REST request decided.
enum Routed {
    Done(Reply),
    /// A pull request write (or a read needing git) for the caller's login, finished without the lock held.
    Pulls(pulls::PullOp, String),
}

async fn handle(req: HttpRequest, body: web::Bytes, state: web::Data<Shared>) -> HttpResponse {
    arrive(&state).await;
    // github.com's pages, not the REST API: no API auth, rate limits or JSON-only answers.
    if req.path().starts_with("/login/oauth/") {
        return accounts::oauth_web(&mut lock(&state), &req, &body);
    }
    let (routed, rate) = {
        let mut s = lock(&state);
        let now = now_epoch();
        if now >= s.window_reset {
            s.window_reset = now + 3600;
            s.window_used = 0;
        }
        respond(&mut s, &req, now)
    };
    let reply = match routed {
        Routed::Done(reply) => reply,
        Routed::Pulls(op, login) => pulls::serve(&state, op, &login, &body).await,
    };

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

/// The token of an `Authorization: Bearer <token>` or `Authorization: token <token>` header.
fn bearer_token(req: &HttpRequest) -> Option<String> {
    req.headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token"))
        .map(|(_, tok)| tok.trim().to_string())
}

/// Applies auth, rate limits and faults, then routes. Called with the state locked.
fn respond(s: &mut State, req: &HttpRequest, now: u64) -> (Routed, RateHeaders) {
    let current = |s: &State| RateHeaders {
        remaining: RATE_LIMIT.saturating_sub(s.window_used),
        reset: s.window_reset,
        used: s.window_used,
    };
    let unauthorized = |message: &str| {
        Routed::Done(Reply::json(401, json!({"message": message, "documentation_url": "https://docs.github.com/rest"})))
    };

    let presented = bearer_token(req);
    let app_endpoint = accounts::is_app_endpoint(req);
    if app_endpoint {
        if let Err(message) = accounts::verify_jwt(s, presented.as_deref(), now) {
            return (unauthorized(message), current(s));
        }
    }
    // OAuth-issued tokens only reach the endpoints sign-in needs; everything else keeps the fixed token.
    let oauth_token = match presented.clone() {
        _ if app_endpoint => None,
        Some(t) if t == s.token => None,
        Some(t) if s.installation_tokens.get(&t).is_some_and(|&expires| expires > now) => None,
        Some(t) if accounts::is_user_endpoint(req) && s.oauth_tokens.contains_key(&t) => Some(t),
        _ => return (unauthorized("Bad credentials"), current(s)),
    };

    if s.rate_limited > 0 {
        s.rate_limited -= 1;
        let retry = s.rate_limit_retry_after;
        let mut reply = Reply::message(403, "API rate limit exceeded");
        reply.retry_after = Some(retry);
        return (Routed::Done(reply), RateHeaders { remaining: 0, reset: now + retry, used: RATE_LIMIT });
    }

    s.window_used += 1;
    let full_path = match req.query_string() {
        "" => req.path().to_string(),
        q => format!("{}?{q}", req.path()),
    };
    if let Some(status) = s.take_fault(&full_path) {
        let text = StatusCode::from_u16(status).ok().and_then(|c| c.canonical_reason()).unwrap_or("Injected failure");
        return (Routed::Done(Reply::message(status, text)), current(s));
    }

    let routed = if app_endpoint {
        Routed::Done(accounts::app_route(s, req, now))
    } else if let Some(op) = pulls::classify(s, req) {
        let login = presented.as_deref().and_then(|t| s.token_login(t, now)).unwrap_or_default();
        Routed::Pulls(op, login)
    } else if req.method() != actix_web::http::Method::GET && req.method() != actix_web::http::Method::HEAD {
        Routed::Done(Reply::not_found())
    } else if let Some(token) = oauth_token {
        Routed::Done(accounts::oauth_api(s, req, &token))
    } else {
        Routed::Done(rest::route(s, req))
    };
    (routed, current(s))
}
