//! The GitHub REST client: token auth, `Link: rel="next"` pagination, rate limits honoured (`x-ratelimit-*`,
//! `retry-after`: wait and retry, bounded), transient 5xx retried with back-off, 401/403/404 and the refusals of
//! pull request writes (405/409/422, with GitHub's message) as typed errors.
//!
//! Writes are only repeated when that cannot do something twice: a rate-limit refusal or a connection that was
//! never made, always; a 5xx or a lost answer, only for idempotent requests (a PATCH of a state, a merge pinned to a
//! head sha), while a create first looks for what the lost attempt may have made.
//!
//! The base URL is configurable (default `https://api.github.com`). The crate's HTTP client is built without TLS so
//! far (tests and examples use the local GitHub-compatible server over plain HTTP); reaching api.github.com needs
//! reqwest's rustls feature, to be enabled with the GitHub sync work.

use std::time::Duration;

use futures_util::future::BoxFuture;
use reqwest::header::HeaderMap;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::oauth::percent_encode;

pub const DEFAULT_BASE_URL: &str = "https://api.github.com";

/// `YYYY-MM-DDTHH:MM:SSZ` (GitHub's timestamps) to Unix milliseconds.
pub fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Days from civil (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(((days * 86_400) + h * 3600 + mi * 60 + se) * 1000)
}

/// What can go wrong calling GitHub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitHubError {
    #[error("GitHub rejected the credentials (401)")]
    Unauthorized,
    #[error("GitHub refused access (403): {0}")]
    Forbidden(String),
    #[error("not found on GitHub (404): {0}")]
    NotFound(String),
    #[error("GitHub rate limit: retry in {retry_after:?}, more than the client may wait")]
    RateLimited { retry_after: Duration },
    #[error("GitHub answered {status} after {attempts} attempts")]
    Server { status: u16, attempts: u32 },
    #[error("GitHub answered {status}: {message}")]
    Unexpected { status: u16, message: String },
    #[error("cannot reach GitHub: {0}")]
    Transport(String),
    #[error("unexpected JSON from GitHub: {0}")]
    Decode(String),
    /// 422: GitHub's validation message, e.g. "No commits between main and feature".
    #[error("GitHub refused the request (422): {0}")]
    Unprocessable(String),
    /// 405 on a merge: "Pull Request is not mergeable" (conflict, closed, draft).
    #[error("GitHub cannot merge (405): {0}")]
    NotMergeable(String),
    /// 409: the state moved under the request, e.g. "Head branch was modified. Review and try the merge again."
    #[error("GitHub reports a conflict (409): {0}")]
    Conflict(String),
}

/// A repository as the REST API returns it (the fields foundry uses).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    pub id: u64,
    pub name: String,
    pub full_name: String,
    pub private: bool,
    pub default_branch: String,
    pub clone_url: String,
    #[serde(default)]
    pub html_url: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Branch {
    pub name: String,
    pub commit: CommitRef,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommitRef {
    pub sha: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    pub id: u64,
    pub number: u64,
    pub title: String,
    #[serde(default)]
    pub body: Option<String>,
    pub state: String,
    #[serde(default)]
    pub draft: bool,
    #[serde(default)]
    pub merged_at: Option<String>,
    pub updated_at: String,
    pub html_url: String,
    pub head: PullRef,
    pub base: PullRef,
    pub user: Account,
    #[serde(default)]
    pub merged: bool,
    /// Only in the answer for one pull request; `None` while GitHub has not computed it.
    #[serde(default)]
    pub mergeable: Option<bool>,
    #[serde(default)]
    pub merge_commit_sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRef {
    #[serde(rename = "ref")]
    pub ref_name: String,
    #[serde(default)]
    pub sha: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub login: String,
    #[serde(default)]
    pub id: u64,
}

#[derive(Debug, Deserialize)]
struct InstallationRepos {
    repositories: Vec<Repository>,
}

/// Which pull requests to list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    Open,
    Closed,
    All,
}

impl PullState {
    fn as_str(self) -> &'static str {
        match self {
            PullState::Open => "open",
            PullState::Closed => "closed",
            PullState::All => "all",
        }
    }
}

/// How a pull request is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MergeMethod {
    Merge,
    Squash,
    Rebase,
}

impl MergeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            MergeMethod::Merge => "merge",
            MergeMethod::Squash => "squash",
            MergeMethod::Rebase => "rebase",
        }
    }
}

/// GitHub's answer to a merge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeOutcome {
    /// The new head of the base branch.
    pub sha: String,
    pub merged: bool,
    pub message: String,
}

type Res<T> = Result<T, GitHubError>;

/// Whose repositories a sync lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    Organization,
    User,
}

/// A connected GitHub account: its kind, its login as last seen, and its numeric id (`None` for a connection recorded
/// before ids were; the id is what identifies the account, as logins can be renamed and then taken by someone else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRef {
    pub kind: AccountKind,
    pub login: String,
    pub id: Option<u64>,
}

/// `GET /user/memberships/orgs/{org}`: the token user's membership of an organization.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct OrgMembership {
    /// `active` or `pending` (invited, not yet accepted).
    pub state: String,
    /// `admin` (an owner of the organization) or `member`.
    pub role: String,
    pub organization: Account,
}

/// An App installation as `GET /user/installations` and `GET /app/installations` list it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Installation {
    pub id: i64,
    pub account: Account,
    /// The App's id (GitHub sends a number).
    #[serde(default)]
    pub app_id: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct UserInstallations {
    installations: Vec<Installation>,
}

/// One page of a list and where the next one is.
pub type Page<T> = (Vec<T>, Option<String>);

/// What foundry asks of GitHub.
pub trait GitHubApi: Send + Sync + 'static {
    /// One page of the account's repositories: the first when `next` is `None`, else the page `next` points at (the
    /// URL a previous page returned). Lets a sync store each page as it arrives.
    fn repos_page(&self, account: &AccountRef, next: Option<String>) -> BoxFuture<'_, Res<Page<Repository>>>;
    fn list_org_repos(&self, org: &str) -> BoxFuture<'_, Res<Vec<Repository>>>;
    fn list_user_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>>;
    fn list_installation_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>>;
    fn get_repo(&self, full_name: &str) -> BoxFuture<'_, Res<Repository>>;
    fn list_branches(&self, full_name: &str) -> BoxFuture<'_, Res<Vec<Branch>>>;
    /// Pull requests, most recently updated first; `limit` bounds how many are fetched (recently closed ones).
    fn list_pulls(&self, full_name: &str, state: PullState, limit: usize) -> BoxFuture<'_, Res<Vec<PullRequest>>>;
    fn get_pull(&self, full_name: &str, number: u64) -> BoxFuture<'_, Res<PullRequest>>;
    fn list_org_members(&self, org: &str) -> BoxFuture<'_, Res<Vec<Account>>>;
    /// Opens a pull request from `head` (a branch of the same repository) into `base`. Refusals (no such head, no
    /// commits between them, one already open) are [`GitHubError::Unprocessable`] with GitHub's message.
    fn create_pull(
        &self,
        full_name: &str,
        head: &str,
        base: &str,
        title: &str,
        body: Option<&str>,
        draft: bool,
    ) -> BoxFuture<'_, Res<PullRequest>>;
    /// Merges pull `number`; with `expected_head_sha`, only if the head is still there (else
    /// [`GitHubError::Conflict`]). A conflict, a closed or a draft pull is [`GitHubError::NotMergeable`].
    fn merge_pull(
        &self,
        full_name: &str,
        number: u64,
        method: MergeMethod,
        expected_head_sha: Option<&str>,
    ) -> BoxFuture<'_, Res<MergeOutcome>>;
    /// Closes (`open == false`) or reopens pull `number`.
    fn update_pull_state(&self, full_name: &str, number: u64, open: bool) -> BoxFuture<'_, Res<PullRequest>>;
}

/// Retry and wait bounds.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts for one request (transient 5xx, transport errors, rate limits).
    pub max_attempts: u32,
    /// First back-off after a 5xx; doubles each attempt.
    pub backoff: Duration,
    /// Longest rate-limit wait the client accepts before failing with `RateLimited`.
    pub max_rate_limit_wait: Duration,
    pub per_page: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            backoff: Duration::from_millis(200),
            max_rate_limit_wait: Duration::from_secs(60),
            per_page: 100,
        }
    }
}

/// The REST client.
#[derive(Clone)]
pub struct GitHubClient {
    base: String,
    token: String,
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl GitHubClient {
    pub fn new(base_url: &str, token: &str) -> Self {
        Self::with_policy(base_url, token, RetryPolicy::default())
    }

    pub fn with_policy(base_url: &str, token: &str, policy: RetryPolicy) -> Self {
        let http = crate::integrations::http_client_builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(60))
            .user_agent("foundry")
            .build()
            .unwrap_or_default();
        GitHubClient { base: base_url.trim_end_matches('/').to_owned(), token: token.to_owned(), http, policy }
    }

    /// The same client (connection pool and policy) authenticating with another token.
    pub fn with_token(&self, token: &str) -> GitHubClient {
        GitHubClient { token: token.to_owned(), ..self.clone() }
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    /// GET `{base}{path}` with this client's token, auth errors and retries, for endpoints outside `GitHubApi`.
    pub async fn get_json<T: DeserializeOwned>(&self, path: &str) -> Res<T> {
        let url = format!("{}{path}", self.base);
        self.send_page(reqwest::Method::GET, &url).await.map(|(v, _)| v)
    }

    /// POST `{base}{path}` without a body (e.g. an App's installation token exchange).
    pub async fn post_json<T: DeserializeOwned>(&self, path: &str) -> Res<T> {
        let url = format!("{}{path}", self.base);
        self.send_page(reqwest::Method::POST, &url).await.map(|(v, _)| v)
    }

    /// `GET /user`: who this (user) token belongs to.
    pub async fn authenticated_user(&self) -> Res<Account> {
        self.get_json("/user").await
    }

    /// `GET /user/memberships/orgs/{org}`: this (user) token's membership of `org`; [`GitHubError::NotFound`] when
    /// not a member.
    pub async fn org_membership(&self, org: &str) -> Res<OrgMembership> {
        self.get_json(&format!("/user/memberships/orgs/{org}")).await
    }

    /// `GET /user/installations`, every page: the App installations this (user) token may access.
    pub async fn user_installations(&self) -> Res<Vec<Installation>> {
        let mut out = Vec::new();
        let mut next = Some(self.url("/user/installations", ""));
        while let Some(url) = next.take() {
            let (page, link): (UserInstallations, _) = self.get_page(&url).await?;
            out.extend(page.installations);
            next = link;
        }
        Ok(out)
    }

    /// `GET /app/installations`, every page: an App's installations (with a JWT as the token).
    pub async fn app_installations(&self) -> Res<Vec<Installation>> {
        self.get_all(self.url("/app/installations", ""), usize::MAX).await
    }

    /// One page of `/installation/repositories` (an installation token's repositories), like `repos_page`.
    pub async fn installation_repos_page(&self, next: Option<String>) -> Res<Page<Repository>> {
        let url = next.unwrap_or_else(|| self.url("/installation/repositories", ""));
        let (page, next): (InstallationRepos, _) = self.get_page(&url).await?;
        Ok((page.repositories, next))
    }

    async fn get_page<T: DeserializeOwned>(&self, url: &str) -> Res<(T, Option<String>)> {
        self.send_page(reqwest::Method::GET, url).await
    }

    async fn send_page<T: DeserializeOwned>(&self, method: reqwest::Method, url: &str) -> Res<(T, Option<String>)> {
        self.send(method, url, None, Repeat::Always).await
    }

    /// One request (with a JSON body if given) with retries as `repeat` allows; returns the decoded body and the
    /// `Link: rel="next"` URL.
    async fn send<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        url: &str,
        body: Option<&serde_json::Value>,
        repeat: Repeat,
    ) -> Res<(T, Option<String>)> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .http
                .request(method.clone(), url)
                .header("authorization", format!("Bearer {}", self.token))
                .header("accept", "application/vnd.github+json")
                .header("x-github-api-version", "2022-11-28");
            if let Some(body) = body {
                request = request.json(body);
            }
            let res = match request.send().await {
                Ok(r) => r,
                Err(e) if attempt < self.policy.max_attempts && (repeat == Repeat::Always || e.is_connect()) => {
                    tracing::debug!(error = %e, attempt, "GitHub transport error; retrying");
                    tokio::time::sleep(self.backoff(attempt)).await;
                    continue;
                }
                Err(e) => return Err(GitHubError::Transport(e.to_string())),
            };
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            if (200..300).contains(&status) {
                let next = next_link(&headers);
                let body = res.text().await.map_err(|e| GitHubError::Transport(e.to_string()))?;
                let value = serde_json::from_str(&body).map_err(|e| GitHubError::Decode(e.to_string()))?;
                return Ok((value, next));
            }
            let text = res.text().await.unwrap_or_default();
            let message = error_message(&text).unwrap_or_default();
            if let Some(wait) = rate_limit_wait(status, &headers) {
                if wait > self.policy.max_rate_limit_wait || attempt >= self.policy.max_attempts {
                    return Err(GitHubError::RateLimited { retry_after: wait });
                }
                tracing::info!(wait_ms = wait.as_millis() as u64, "GitHub rate limit; waiting");
                tokio::time::sleep(wait).await;
                continue;
            }
            match status {
                401 => return Err(GitHubError::Unauthorized),
                403 => return Err(GitHubError::Forbidden(message)),
                404 => return Err(GitHubError::NotFound(message)),
                405 => return Err(GitHubError::NotMergeable(message)),
                409 => return Err(GitHubError::Conflict(message)),
                422 => return Err(GitHubError::Unprocessable(validation_message(&text).unwrap_or(message))),
                500..=599 if repeat == Repeat::Always && attempt < self.policy.max_attempts => {
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
                500..=599 => return Err(GitHubError::Server { status, attempts: attempt }),
                _ => return Err(GitHubError::Unexpected { status, message }),
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.policy.backoff.saturating_mul(1 << (attempt - 1).min(10))
    }

    /// Follows `Link: rel="next"` from `first` until the last page (or `limit` items).
    async fn get_all<T: DeserializeOwned>(&self, first: String, limit: usize) -> Res<Vec<T>> {
        let mut out = Vec::new();
        let mut next = Some(first);
        while let Some(url) = next.take() {
            let (page, link): (Vec<T>, _) = self.get_page(&url).await?;
            out.extend(page);
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
            next = link;
        }
        Ok(out)
    }

    fn url(&self, path: &str, query: &str) -> String {
        let sep = if query.is_empty() { "" } else { "&" };
        format!("{}{path}?per_page={}{sep}{query}", self.base, self.policy.per_page)
    }

    /// The open pull request from `head` into `base`, if there is one.
    async fn find_open_pull(&self, full_name: &str, head: &str, base: &str) -> Res<Option<PullRequest>> {
        let owner = full_name.split('/').next().unwrap_or_default();
        let query =
            format!("state=open&head={}&base={}", percent_encode(&format!("{owner}:{head}")), percent_encode(base));
        let (pulls, _): (Vec<PullRequest>, _) =
            self.get_page(&self.url(&format!("/repos/{full_name}/pulls"), &query)).await?;
        Ok(pulls.into_iter().next())
    }
}

/// Whether a failed request may simply be sent again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Repeat {
    /// Reads and idempotent writes: after transport errors and 5xx too.
    Always,
    /// Other writes: only when GitHub surely did nothing (a rate-limit refusal, a connection never made).
    IfNotSent,
}

/// The `rel="next"` URL of a `Link` header.
fn next_link(headers: &HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.split(';').any(|p| p.trim() == "rel=\"next\"").then(|| url.trim().trim_matches(['<', '>']).to_owned())
    })
}

/// How long to wait if this response is a rate limit (403/429 with `retry-after` or an exhausted
/// `x-ratelimit-remaining`), else `None`.
fn rate_limit_wait(status: u16, headers: &HeaderMap) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let header =
        |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(secs) = header("retry-after") {
        return Some(Duration::from_secs(secs));
    }
    if header("x-ratelimit-remaining") == Some(0) {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        return Some(Duration::from_secs(header("x-ratelimit-reset").unwrap_or(now).saturating_sub(now).max(1)));
    }
    (status == 429).then_some(Duration::from_secs(1))
}

/// GitHub's human message for a 422: the first error's `message`, else the `message` with the first error's field
/// and code (e.g. "Validation Failed: head invalid").
fn validation_message(body: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(body).ok()?;
    let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("Validation Failed");
    let Some(first) = v.get("errors").and_then(|e| e.get(0)) else { return Some(message.to_owned()) };
    if let Some(text) = first.as_str().or_else(|| first.get("message").and_then(|m| m.as_str())) {
        return Some(text.to_owned());
    }
    match (first.get("field").and_then(|f| f.as_str()), first.get("code").and_then(|c| c.as_str())) {
        (Some(field), Some(code)) => Some(format!("{message}: {field} {code}")),
        _ => Some(message.to_owned()),
    }
}

/// The `message` of a GitHub JSON error body.
pub(super) fn error_message(body: &str) -> Option<String> {
    serde_json::from_str::<serde_json::Value>(body).ok()?.get("message")?.as_str().map(str::to_owned)
}

impl GitHubApi for GitHubClient {
    fn repos_page(&self, account: &AccountRef, next: Option<String>) -> BoxFuture<'_, Res<Page<Repository>>> {
        let url = next.unwrap_or_else(|| match account.kind {
            AccountKind::Organization => self.url(&format!("/orgs/{}/repos", account.login), ""),
            // The account's public repositories: `/user/repos` would list the token owner's own (private ones too),
            // whoever the connected user is.
            AccountKind::User => self.url(&format!("/users/{}/repos", account.login), ""),
        });
        Box::pin(async move { self.get_page(&url).await })
    }

    fn list_org_repos(&self, org: &str) -> BoxFuture<'_, Res<Vec<Repository>>> {
        let url = self.url(&format!("/orgs/{org}/repos"), "");
        Box::pin(self.get_all(url, usize::MAX))
    }

    fn list_user_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>> {
        let url = self.url("/user/repos", "");
        Box::pin(self.get_all(url, usize::MAX))
    }

    fn list_installation_repos(&self) -> BoxFuture<'_, Res<Vec<Repository>>> {
        let url = self.url("/installation/repositories", "");
        Box::pin(async move {
            let mut out = Vec::new();
            let mut next = Some(url);
            while let Some(u) = next.take() {
                let (page, link): (InstallationRepos, _) = self.get_page(&u).await?;
                out.extend(page.repositories);
                next = link;
            }
            Ok(out)
        })
    }

    fn get_repo(&self, full_name: &str) -> BoxFuture<'_, Res<Repository>> {
        let url = format!("{}/repos/{full_name}", self.base);
        Box::pin(async move { self.get_page(&url).await.map(|(r, _)| r) })
    }

    fn list_branches(&self, full_name: &str) -> BoxFuture<'_, Res<Vec<Branch>>> {
        let url = self.url(&format!("/repos/{full_name}/branches"), "");
        Box::pin(self.get_all(url, usize::MAX))
    }

    fn list_pulls(&self, full_name: &str, state: PullState, limit: usize) -> BoxFuture<'_, Res<Vec<PullRequest>>> {
        let query = format!("state={}&sort=updated&direction=desc", state.as_str());
        let url = self.url(&format!("/repos/{full_name}/pulls"), &query);
        Box::pin(self.get_all(url, limit))
    }

    fn get_pull(&self, full_name: &str, number: u64) -> BoxFuture<'_, Res<PullRequest>> {
        let url = format!("{}/repos/{full_name}/pulls/{number}", self.base);
        Box::pin(async move { self.get_page(&url).await.map(|(r, _)| r) })
    }

    fn list_org_members(&self, org: &str) -> BoxFuture<'_, Res<Vec<Account>>> {
        let url = self.url(&format!("/orgs/{org}/members"), "");
        Box::pin(self.get_all(url, usize::MAX))
    }

    fn create_pull(
        &self,
        full_name: &str,
        head: &str,
        base: &str,
        title: &str,
        body: Option<&str>,
        draft: bool,
    ) -> BoxFuture<'_, Res<PullRequest>> {
        let url = format!("{}/repos/{full_name}/pulls", self.base);
        let mut payload = serde_json::json!({"title": title, "head": head, "base": base, "draft": draft});
        if let Some(body) = body {
            payload["body"] = body.into();
        }
        let (full_name, head, base) = (full_name.to_owned(), head.to_owned(), base.to_owned());
        Box::pin(async move {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match self.send(reqwest::Method::POST, &url, Some(&payload), Repeat::IfNotSent).await {
                    Ok((pull, _)) => return Ok(pull),
                    Err(e @ (GitHubError::Server { .. } | GitHubError::Transport(_))) => {
                        // The answer may be lost after GitHub created it: look before asking again, or there would
                        // be two.
                        if let Ok(Some(pull)) = self.find_open_pull(&full_name, &head, &base).await {
                            return Ok(pull);
                        }
                        if attempt >= self.policy.max_attempts {
                            return Err(e);
                        }
                        tokio::time::sleep(self.backoff(attempt)).await;
                    }
                    Err(e) => return Err(e),
                }
            }
        })
    }

    fn merge_pull(
        &self,
        full_name: &str,
        number: u64,
        method: MergeMethod,
        expected_head_sha: Option<&str>,
    ) -> BoxFuture<'_, Res<MergeOutcome>> {
        let url = format!("{}/repos/{full_name}/pulls/{number}/merge", self.base);
        let mut payload = serde_json::json!({"merge_method": method.as_str()});
        if let Some(sha) = expected_head_sha {
            payload["sha"] = sha.into();
        }
        let full_name = full_name.to_owned();
        let expected = expected_head_sha.map(str::to_owned);
        Box::pin(async move {
            // Pinned to a head, a merge can be repeated: the repeat merges that head or finds it merged.
            let repeat = if expected.is_some() { Repeat::Always } else { Repeat::IfNotSent };
            match self.send(reqwest::Method::PUT, &url, Some(&payload), repeat).await {
                Ok((outcome, _)) => Ok(outcome),
                Err(GitHubError::NotMergeable(message)) if expected.is_some() => {
                    let pull = self.get_pull(&full_name, number).await?;
                    match pull.merge_commit_sha {
                        Some(sha) if pull.merged && pull.head.sha == expected => Ok(MergeOutcome {
                            sha,
                            merged: true,
                            message: "Pull Request was already merged".to_owned(),
                        }),
                        _ => Err(GitHubError::NotMergeable(message)),
                    }
                }
                Err(e) => Err(e),
            }
        })
    }

    fn update_pull_state(&self, full_name: &str, number: u64, open: bool) -> BoxFuture<'_, Res<PullRequest>> {
        let url = format!("{}/repos/{full_name}/pulls/{number}", self.base);
        let payload = serde_json::json!({"state": if open { "open" } else { "closed" }});
        Box::pin(async move {
            self.send(reqwest::Method::PATCH, &url, Some(&payload), Repeat::Always).await.map(|(pull, _)| pull)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn next_link_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.insert(
            "link",
            HeaderValue::from_static(
                "<https://x/r?page=2&per_page=100>; rel=\"next\", <https://x/r?page=9&per_page=100>; rel=\"last\"",
            ),
        );
        assert_eq!(next_link(&h).as_deref(), Some("https://x/r?page=2&per_page=100"));
        h.insert("link", HeaderValue::from_static("<https://x/r?page=1>; rel=\"prev\""));
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn validation_messages_prefer_githubs_words() {
        let body = r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","code":"custom",
            "message":"No commits between main and x"}]}"#;
        assert_eq!(validation_message(body).as_deref(), Some("No commits between main and x"));
        let body =
            r#"{"message":"Validation Failed","errors":[{"resource":"PullRequest","field":"head","code":"invalid"}]}"#;
        assert_eq!(validation_message(body).as_deref(), Some("Validation Failed: head invalid"));
        assert_eq!(validation_message(r#"{"message":"Nope"}"#).as_deref(), Some("Nope"));
        assert_eq!(validation_message("not json"), None);
    }

    #[test]
    fn rate_limits_are_recognised() {
        let mut h = HeaderMap::new();
        assert_eq!(rate_limit_wait(403, &h), None, "a plain 403 is a refusal, not a rate limit");
        h.insert("retry-after", HeaderValue::from_static("7"));
        assert_eq!(rate_limit_wait(403, &h), Some(Duration::from_secs(7)));
        assert_eq!(rate_limit_wait(404, &h), None);
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from_static("0"));
        h.insert("x-ratelimit-reset", HeaderValue::from_static("0"));
        assert_eq!(rate_limit_wait(403, &h), Some(Duration::from_secs(1)));
    }
}

#[cfg(test)]
mod timestamp_tests {
    use super::parse_rfc3339_ms;

    #[test]
    fn github_timestamps_parse() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339_ms("2026-11-26T12:34:56Z"), Some(1_795_696_496_000));
        assert_eq!(parse_rfc3339_ms("2000-02-29T00:00:01Z"), Some(951_782_401_000));
        assert_eq!(parse_rfc3339_ms("nope"), None);
    }
}
