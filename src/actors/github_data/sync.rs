//! The sync: its messages, the background loop, and the conversion of GitHub payloads.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::Serialize;

use super::schema::{self, branches, github_meta, members, pull_requests, repositories, Meta};
use super::{GitHubData, GitHubService};
use crate::actors::auth_directory::{ReleaseGitHubAccount, AUTH_DIRECTORY_KEY};
use crate::actors::organization::{ApplyGitHubAccount, ApplySyncProgress, ImportRepository, OrgKind};
use crate::actors::repository::ApplyPullRequests;
use crate::actors::summary::PullRequestSummary;
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult, RepoKey};
use crate::integrations::github::client::{
    parse_rfc3339_ms, Account, AccountKind, AccountRef, Branch, GitHubApi, PullRequest, PullState, Repository,
};
use crate::runtime::{Command, EntityCtx, Mutation, Myself, Read, Tx};

/// Repositories whose branches and pull requests are fetched and stored together.
pub const REPO_BATCH: usize = 10;
/// Recently closed pull requests fetched per repository (open ones are all fetched).
pub const CLOSED_PULLS: usize = 20;

const PHASE_REPOS: &str = "syncing_repositories";
const PHASE_DETAILS: &str = "syncing_branches_and_pull_requests";
const PHASE_MEMBERS: &str = "syncing_members";

fn kind_str(kind: AccountKind) -> &'static str {
    match kind {
        AccountKind::Organization => "organization",
        AccountKind::User => "user",
    }
}

pub(super) fn org_kind(kind: AccountKind) -> OrgKind {
    match kind {
        AccountKind::Organization => OrgKind::Organization,
        AccountKind::User => OrgKind::Personal,
    }
}

/// Connects (or re-points) the organization's GitHub account, audited as `github.connected` by `by`. Whoever sends it
/// has established that the account may be connected (the HTTP layer: the caller proved control through GitHub) and
/// claimed its id in the auth directory (`Domain::connect_github`); re-pointing releases the previous account's claim.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ConnectGitHub {
    /// The login as GitHub spells it.
    pub login: String,
    pub kind: AccountKind,
    /// GitHub's numeric id of the account.
    pub account_id: i64,
    pub by: Option<String>,
}

impl ConnectGitHub {
    /// Run by the HTTP layer before the mutation too: a refused connect must not create the GitHub mirror.
    pub fn validate(&self) -> DomainResult<()> {
        validate::login("login", &self.login)?;
        if self.account_id <= 0 {
            return Err(DomainError::invalid("account_id", "must be a positive GitHub account id"));
        }
        Ok(())
    }
}

impl Mutation for ConnectGitHub {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn apply(self, g: &GitHubData, tx: &mut Tx<'_>) -> DomainResult<()> {
        self.validate()?;
        if let Some(previous) = schema::meta(tx.conn())?.and_then(|m| m.account_id) {
            if previous != self.account_id {
                let release = ReleaseGitHubAccount { account_id: previous, org_id: g.org.clone() };
                tx.send(&AUTH_DIRECTORY_KEY.to_owned(), &release)?;
            }
        }
        let payload =
            serde_json::json!({ "login": self.login, "kind": kind_str(self.kind), "accountId": self.account_id });
        Audit::org(&g.org).by(self.by.as_deref()).append(tx, "github.connected", payload)?;
        diesel::insert_into(github_meta::table)
            .values((
                github_meta::id.eq(1),
                github_meta::account_login.eq(&self.login),
                github_meta::account_kind.eq(kind_str(self.kind)),
                github_meta::account_id.eq(Some(self.account_id)),
                github_meta::updated_at.eq(now_ms()),
            ))
            .on_conflict(github_meta::id)
            .do_update()
            .set((
                github_meta::account_login.eq(&self.login),
                github_meta::account_kind.eq(kind_str(self.kind)),
                github_meta::account_id.eq(Some(self.account_id)),
            ))
            .execute(tx.conn())?;
        tx.send(&g.org, &ApplyGitHubAccount { login: self.login, kind: org_kind(self.kind) })?;
        Ok(())
    }
}

/// Sends the current progress to the organization.
fn push_progress(org: &str, tx: &mut Tx<'_>) -> DomainResult<()> {
    let m = schema::require_meta(tx.conn(), org)?;
    let progress = ApplySyncProgress {
        generation: m.generation,
        status: m.status,
        phase: m.phase,
        synced: m.synced,
        total: m.total,
        error: m.last_error,
        finished_at: m.finished_at,
    };
    tx.send(&org.to_owned(), &progress)?;
    Ok(())
}

fn set_progress(conn: &mut SqliteConnection, phase: Option<&str>, synced: i32, total: i32) -> DomainResult<()> {
    diesel::update(github_meta::table.find(1))
        .set((
            github_meta::phase.eq(phase),
            github_meta::synced.eq(synced),
            github_meta::total.eq(total),
            github_meta::updated_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Starts a sync (one per organization at a time); returns its generation. Audited as `github.sync.started` with
/// no user; [`RequestSync`] names who asked.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StartSync;

impl Command for StartSync {
    type Entity = GitHubData;
    type Output = i32;
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<i32> {
        start_sync(g, ctx, None, "api")
    }
}

/// [`StartSync`] on someone's request (audited with who).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RequestSync {
    pub by: Option<String>,
}

impl Command for RequestSync {
    type Entity = GitHubData;
    type Output = i32;
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<i32> {
        start_sync(g, ctx, self.by.as_deref(), "api")
    }
}

/// Starts a sync; `trigger` (`api`, `admin`, `webhook`) and `by` go to the audit log with the generation.
pub(super) fn start_sync(
    g: &mut GitHubData,
    ctx: &mut EntityCtx<'_, GitHubData>,
    by: Option<&str>,
    trigger: &str,
) -> DomainResult<i32> {
    if g.sync.is_some() {
        return Err(DomainError::Conflict("a sync is already running for this organization".into()));
    }
    let Some(api) = ctx.service::<GitHubService>() else {
        return Err(DomainError::Unprocessable("no GitHub client is configured".into()));
    };
    let org = g.org.clone();
    let meta = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<Meta> {
        let m = schema::require_meta(tx.conn(), &org)?;
        // This sync supersedes a retry still pending.
        tx.cancel_schedules::<super::RetrySync>()?;
        let now = now_ms();
        diesel::update(github_meta::table.find(1))
            .set((
                github_meta::generation.eq(m.generation + 1),
                github_meta::status.eq("syncing"),
                github_meta::phase.eq(Some(PHASE_REPOS)),
                github_meta::synced.eq(0),
                github_meta::total.eq(0),
                github_meta::started_at.eq(Some(now)),
                github_meta::last_error.eq(None::<String>),
                github_meta::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        push_progress(&org, tx)?;
        let payload = serde_json::json!({ "generation": m.generation + 1, "trigger": trigger });
        Audit::org(&org).by(by).append(tx, "github.sync.started", payload)?;
        schema::require_meta(tx.conn(), &org)
    })?;
    let account = AccountRef {
        kind: if meta.account_kind == "user" { AccountKind::User } else { AccountKind::Organization },
        login: meta.account_login.clone(),
        id: meta.account_id.and_then(|id| u64::try_from(id).ok()),
    };
    // Keep-awake: the organization's data stays live (not passivated, not evicted) while its sync runs.
    let handle = ctx.keep_awake(run_sync(ctx.myself(), api.0.clone(), account, meta.generation));
    g.sync = Some(handle);
    // A retry sets its attempt after this returns.
    g.retry_attempt = 0;
    Ok(meta.generation)
}

/// Recovery: a full resync (the same as `StartSync`, for admins; audited as `admin.full_sync` too).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AdminFullSync {
    pub by: Option<String>,
}

impl Command for AdminFullSync {
    type Entity = GitHubData;
    type Output = i32;
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<i32> {
        let generation = start_sync(g, ctx, self.by.as_deref(), "admin")?;
        let org = g.org.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            let payload = serde_json::json!({ "generation": generation });
            Audit::org(&org).by(self.by.as_deref()).append(tx, "admin.full_sync", payload)
        })?;
        Ok(generation)
    }
}

/// Recovery: stops any sync and forgets everything mirrored from GitHub (the connection stays). Audited as
/// `admin.clear_github` when an admin asked (`by`), else as `github.cleared` (GitHub removed the installation).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AdminClearState {
    pub by: Option<String>,
}

impl Command for AdminClearState {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
        if let Some(h) = g.sync.take() {
            ctx.cancel(h);
        }
        let org = g.org.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            schema::require_meta(tx.conn(), &org)?;
            diesel::delete(repositories::table).execute(tx.conn())?;
            diesel::delete(branches::table).execute(tx.conn())?;
            diesel::delete(pull_requests::table).execute(tx.conn())?;
            diesel::delete(members::table).execute(tx.conn())?;
            schema::report_members(tx, &org)?;
            diesel::update(github_meta::table.find(1))
                .set((github_meta::status.eq("cleared"), github_meta::last_error.eq(None::<String>)))
                .execute(tx.conn())?;
            set_progress(tx.conn(), None, 0, 0)?;
            push_progress(&org, tx)?;
            let kind = if self.by.is_some() { "admin.clear_github" } else { "github.cleared" };
            Audit::org(&org).by(self.by.as_deref()).append(tx, kind, serde_json::json!({}))
        })
    }
}

/// Sync status and row counts.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SyncStatus {
    pub meta: Meta,
    pub repositories: i64,
    pub branches: i64,
    pub pull_requests: i64,
    pub members: i64,
}

#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetSyncStatus;

impl Read for GetSyncStatus {
    type Entity = GitHubData;
    type Output = SyncStatus;
    type Error = DomainError;
    fn read(self, g: &GitHubData, db: &mut SqliteConnection) -> DomainResult<SyncStatus> {
        let meta = schema::require_meta(db, &g.org)?;
        let (repositories, branches, pull_requests, members) = schema::counts(db)?;
        Ok(SyncStatus { meta, repositories, branches, pull_requests, members })
    }
}

/// Marks a sync that a restart cut short as failed and schedules its retry (called when the actor starts).
pub(super) fn fail_interrupted(g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
    let org = g.org.clone();
    ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
        match schema::meta(tx.conn())? {
            Some(m) if m.status == "syncing" => {
                diesel::update(github_meta::table.find(1))
                    .set((
                        github_meta::status.eq("error"),
                        github_meta::last_error.eq(Some("interrupted by a restart")),
                        github_meta::finished_at.eq(Some(now_ms())),
                    ))
                    .execute(tx.conn())?;
                push_progress(&org, tx)?;
                super::retry::schedule_retry(tx, &org, m.generation, 1)?;
                let payload = serde_json::json!({ "generation": m.generation, "error": "interrupted by a restart" });
                Audit::org(&org).append(tx, "github.sync.failed", payload)
            }
            _ => Ok(()),
        }
    })
}

/// The loop: fetch, hand each chunk to the actor, end each phase, end the sync (with the error if any).
async fn run_sync(me: Myself<GitHubData>, api: Arc<dyn GitHubApi>, account: AccountRef, generation: i32) {
    let result = sync_phases(&me, api.as_ref(), &account, generation).await;
    let _ = me.exec(EndSync { generation, error: result.err() }).await;
}

async fn sync_phases(
    me: &Myself<GitHubData>,
    api: &dyn GitHubApi,
    account: &AccountRef,
    generation: i32,
) -> Result<(), String> {
    let err = |e: &dyn std::fmt::Display| e.to_string();
    let mut next = None;
    loop {
        let (repos, more) = api.repos_page(account, next).await.map_err(|e| err(&e))?;
        me.exec(StoreRepos { generation, repos }).await.map_err(|e| err(&e))?;
        match more {
            Some(url) => next = Some(url),
            None => break,
        }
    }
    let repos = me.exec(EndPhase { generation, phase: PHASE_REPOS }).await.map_err(|e| err(&e))?;
    for batch in repos.chunks(REPO_BATCH) {
        // The repositories of a batch are fetched concurrently (the sync is bound by round trips to GitHub); the
        // batch is then stored in one transaction.
        let fetches = batch.iter().map(|(repo_id, full_name)| async move {
            let branches = api.list_branches(full_name).await?;
            let mut pulls = api.list_pulls(full_name, PullState::Open, usize::MAX).await?;
            pulls.extend(api.list_pulls(full_name, PullState::Closed, CLOSED_PULLS).await?);
            Ok::<_, crate::integrations::github::client::GitHubError>(RepoDetails {
                repo_id: repo_id.clone(),
                branches,
                pulls,
            })
        });
        let items = futures_util::future::try_join_all(fetches).await.map_err(|e| err(&e))?;
        me.exec(StoreRepoDetails { generation, items }).await.map_err(|e| err(&e))?;
    }
    me.exec(EndPhase { generation, phase: PHASE_DETAILS }).await.map_err(|e| err(&e))?;
    let found = match account.kind {
        AccountKind::Organization => api.list_org_members(&account.login).await.map_err(|e| err(&e))?,
        AccountKind::User => Vec::new(),
    };
    me.exec(StoreMembers { generation, members: found }).await.map_err(|e| err(&e))?;
    me.exec(EndPhase { generation, phase: PHASE_MEMBERS }).await.map_err(|e| err(&e))?;
    Ok(())
}

/// Runs `f` in a write transaction if `generation` is still the current sync (a cancelled sync's late chunks are
/// ignored).
fn in_generation<T: Default>(
    g: &GitHubData,
    ctx: &mut EntityCtx<'_, GitHubData>,
    generation: i32,
    f: impl FnOnce(&mut Tx<'_>, &Meta) -> DomainResult<T>,
) -> DomainResult<T> {
    let org = g.org.clone();
    ctx.write(|tx: &mut Tx<'_>| -> DomainResult<T> {
        let m = schema::require_meta(tx.conn(), &org)?;
        if m.generation != generation || m.status != "syncing" {
            return Ok(T::default());
        }
        f(tx, &m)
    })
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoreRepos {
    generation: i32,
    repos: Vec<Repository>,
}

impl Command for StoreRepos {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
        let org = g.org.clone();
        in_generation(g, ctx, self.generation, |tx, m| {
            for r in &self.repos {
                let new = schema::upsert_repository(tx.conn(), r, self.generation)?;
                if new {
                    let import = ImportRepository {
                        repo_id: r.name.clone(),
                        full_name: r.full_name.clone(),
                        remote_url: r.clone_url.clone(),
                        default_branch: r.default_branch.clone(),
                    };
                    tx.send(&org, &import)?;
                }
            }
            let n = m.synced + self.repos.len() as i32;
            set_progress(tx.conn(), Some(PHASE_REPOS), n, n)?;
            push_progress(&org, tx)
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RepoDetails {
    repo_id: String,
    branches: Vec<Branch>,
    pulls: Vec<PullRequest>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoreRepoDetails {
    generation: i32,
    items: Vec<RepoDetails>,
}

impl Command for StoreRepoDetails {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
        let org = g.org.clone();
        let generation = self.generation;
        in_generation(g, ctx, generation, |tx, m| {
            for item in &self.items {
                for b in &item.branches {
                    schema::upsert_branch(tx.conn(), &item.repo_id, &b.name, &b.commit.sha, generation)?;
                }
                let summaries: Vec<PullRequestSummary> = item.pulls.iter().map(pull_summary).collect();
                for summary in &summaries {
                    schema::upsert_pull(tx.conn(), &item.repo_id, summary, generation)?;
                }
                if !summaries.is_empty() {
                    let to = RepoKey::new(&org, &item.repo_id);
                    tx.send(&to, &ApplyPullRequests { pull_requests: summaries })?;
                }
            }
            set_progress(tx.conn(), Some(PHASE_DETAILS), m.synced + self.items.len() as i32, m.total)?;
            push_progress(&org, tx)
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoreMembers {
    generation: i32,
    members: Vec<Account>,
}

impl Command for StoreMembers {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
        let generation = self.generation;
        in_generation(g, ctx, generation, |tx, _| {
            for a in &self.members {
                schema::upsert_member(tx.conn(), a.id as i64, &a.login, generation)?;
            }
            let n = self.members.len() as i32;
            set_progress(tx.conn(), Some(PHASE_MEMBERS), n, n)
        })
    }
}

/// Ends a phase: sweeps what this sync did not see, moves progress to the next phase. After the repositories phase
/// it returns the repositories to fetch details for.
struct EndPhase {
    generation: i32,
    phase: &'static str,
}

impl Command for EndPhase {
    type Entity = GitHubData;
    type Output = Vec<(String, String)>;
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<Vec<(String, String)>> {
        let org = g.org.clone();
        let generation = self.generation;
        in_generation(g, ctx, generation, |tx, _| {
            let conn = tx.conn();
            match self.phase {
                PHASE_REPOS => {
                    diesel::delete(repositories::table.filter(repositories::generation.lt(generation)))
                        .execute(conn)?;
                    let repos: Vec<(String, String)> = repositories::table
                        .select((repositories::repo_id, repositories::full_name))
                        .order(repositories::repo_id)
                        .load(conn)?;
                    set_progress(conn, Some(PHASE_DETAILS), 0, repos.len() as i32)?;
                    push_progress(&org, tx)?;
                    Ok(repos)
                }
                PHASE_DETAILS => {
                    diesel::delete(branches::table.filter(branches::generation.lt(generation))).execute(conn)?;
                    diesel::delete(pull_requests::table.filter(pull_requests::generation.lt(generation)))
                        .execute(conn)?;
                    set_progress(conn, Some(PHASE_MEMBERS), 0, 0)?;
                    push_progress(&org, tx)?;
                    Ok(Vec::new())
                }
                _ => {
                    diesel::delete(members::table.filter(members::generation.lt(generation))).execute(conn)?;
                    schema::report_members(tx, &org)?;
                    Ok(Vec::new())
                }
            }
        })
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct EndSync {
    generation: i32,
    error: Option<String>,
}

impl Command for EndSync {
    type Entity = GitHubData;
    type Output = ();
    type Error = DomainError;
    fn run(self, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) -> DomainResult<()> {
        g.sync = None;
        let org = g.org.clone();
        let error = self.error;
        let next_attempt = g.retry_attempt + 1;
        in_generation(g, ctx, self.generation, |tx, m| {
            let status = if error.is_some() { "error" } else { "synced" };
            if let Some(e) = &error {
                tracing::warn!(org = %org, error = %e, "GitHub sync failed; rows kept");
            }
            diesel::update(github_meta::table.find(1))
                .set((
                    github_meta::status.eq(status),
                    github_meta::phase.eq(if error.is_some() { m.phase.clone() } else { None }),
                    github_meta::last_error.eq(&error),
                    github_meta::finished_at.eq(Some(now_ms())),
                ))
                .execute(tx.conn())?;
            push_progress(&org, tx)?;
            if error.is_some() {
                super::retry::schedule_retry(tx, &org, m.generation, next_attempt)?;
            }
            let (kind, payload) = match &error {
                Some(e) => ("github.sync.failed", serde_json::json!({ "generation": m.generation, "error": e })),
                None => ("github.sync.finished", serde_json::json!({ "generation": m.generation })),
            };
            Audit::org(&org).append(tx, kind, payload)
        })
    }
}

/// A GitHub pull request as task data (rule 10).
pub fn pull_summary(pr: &PullRequest) -> PullRequestSummary {
    let state = if pr.merged_at.is_some() { "merged".to_owned() } else { pr.state.clone() };
    PullRequestSummary {
        number: pr.number as i64,
        title: pr.title.clone(),
        state,
        url: pr.html_url.clone(),
        head_ref: pr.head.ref_name.clone(),
        base_ref: pr.base.ref_name.clone(),
        is_draft: pr.draft,
        author_login: Some(pr.user.login.clone()),
        updated_at: parse_rfc3339_ms(&pr.updated_at).unwrap_or(0),
    }
}

crate::actors::remote::remote_messages! {
    super::GitHubData;
    mutations: ConnectGitHub;
    reads: GetSyncStatus;
    commands: StartSync, RequestSync, AdminFullSync, AdminClearState, StoreRepos, StoreRepoDetails, StoreMembers, EndSync;
}
