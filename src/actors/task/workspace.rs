//! The task's workspace, task side: what it is a checkout of, its provisioning status (with a progress or error
//! message), its directory and its last known git state. Provisioning runs as background work of the task actor (one
//! job at a time, resumed after a restart); the git work itself is done by the [`Workspaces`] service.

use std::sync::Arc;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::Serialize;
use tokio::sync::{mpsc, watch};

use super::{Task, TOPIC};
use crate::actors::{now_ms, DomainError, DomainResult, TaskKey};
use crate::integrations::workspace::{GitAuth, GitState, Provisioned, TokenSource, WorkspaceSpec, Workspaces};
use crate::runtime::{Command, EntityCtx, Mutation, Read, Tx};

diesel::table! {
    task_workspace (id) {
        id -> Integer,
        provider -> Text,
        status -> Text,
        message -> Text,
        full_name -> Text,
        remote_url -> Text,
        base_branch -> Text,
        cwd -> Nullable<Text>,
        git_state -> Nullable<Text>,
        attempts -> Integer,
        updated_at -> BigInt,
    }
}

/// Where git credentials for a repository come from, as a runtime service.
pub struct GitTokens(pub Arc<dyn TokenSource>);

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, serde::Deserialize)]
#[diesel(table_name = task_workspace)]
pub struct WorkspaceRow {
    pub id: i32,
    pub provider: String,
    pub status: String,
    pub message: String,
    pub full_name: String,
    pub remote_url: String,
    pub base_branch: String,
    pub cwd: Option<String>,
    pub git_state: Option<String>,
    pub attempts: i32,
    pub updated_at: i64,
}

/// The workspace as the task view shows it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkspaceView {
    pub provider: String,
    /// `provisioning`, `ready`, `error`, `released` (archived: the branch is on the remote) or `destroyed` (killed).
    pub status: String,
    /// Progress while provisioning, the failure when it failed.
    pub message: String,
    pub base_branch: String,
    pub cwd: Option<String>,
    pub git: Option<GitState>,
    pub attempts: i32,
    pub updated_at: i64,
}

impl WorkspaceRow {
    pub fn view(&self) -> WorkspaceView {
        WorkspaceView {
            provider: self.provider.clone(),
            status: self.status.clone(),
            message: self.message.clone(),
            base_branch: self.base_branch.clone(),
            cwd: self.cwd.clone(),
            git: self.git_state.as_deref().and_then(|s| serde_json::from_str(s).ok()),
            attempts: self.attempts,
            updated_at: self.updated_at,
        }
    }

    /// What the workspace is a checkout of.
    pub fn spec(&self, key: &TaskKey, branch: &str) -> WorkspaceSpec {
        WorkspaceSpec {
            id: workspace_id(key),
            remote_url: self.remote_url.clone(),
            base_branch: self.base_branch.clone(),
            branch: branch.to_owned(),
        }
    }
}

/// Longest workspace id kept as written: a file name may have 255 bytes, and the clone is made under the id plus
/// `.partial` (8 bytes).
const MAX_WORKSPACE_ID: usize = 247;

/// A path-safe id unique per task: `org.repo.task` with other characters escaped (`_` and two hex digits).
///
/// Three valid ids can spell more than a file name may hold (up to 3 x 300 bytes once escaped), so a longer id keeps
/// a prefix and a 128-bit hash of the whole key after `_z`, which no escaped name contains (an escape is `_` and hex
/// digits); ids that fit are unchanged, so existing workspaces keep their directory.
pub fn workspace_id(key: &TaskKey) -> String {
    let mut out = String::new();
    for (i, part) in [&key.org, &key.repo, &key.task].into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        for b in part.bytes() {
            if b.is_ascii_alphanumeric() || b == b'-' {
                out.push(b as char);
            } else {
                out.push_str(&format!("_{b:02x}"));
            }
        }
    }
    if out.len() <= MAX_WORKSPACE_ID {
        return out;
    }
    let mut cut = 200;
    // Never cut an escape in half: the prefix stays a readable escaped name.
    while out.as_bytes()[cut - 1] == b'_' || out.as_bytes()[cut - 2] == b'_' {
        cut -= 1;
    }
    format!("{}_z{}", &out[..cut], crate::runtime::key::hash128_hex(&out))
}

pub fn row(conn: &mut SqliteConnection) -> DomainResult<Option<WorkspaceRow>> {
    Ok(task_workspace::table.select(WorkspaceRow::as_select()).find(1).first(conn).optional()?)
}

fn set_status(conn: &mut SqliteConnection, status: &str, message: &str) -> DomainResult<()> {
    diesel::update(task_workspace::table.find(1))
        .set((
            task_workspace::status.eq(status),
            task_workspace::message.eq(message),
            task_workspace::updated_at.eq(now_ms()),
        ))
        .execute(conn)?;
    Ok(())
}

fn set_git_state(conn: &mut SqliteConnection, state: &GitState) -> DomainResult<()> {
    let json = serde_json::to_string(state).map_err(|e| DomainError::Unprocessable(e.to_string()))?;
    diesel::update(task_workspace::table.find(1))
        .set((task_workspace::git_state.eq(Some(json)), task_workspace::updated_at.eq(now_ms())))
        .execute(conn)?;
    Ok(())
}

/// Whether a workspace is there to wait for, in memory (the database has the same in `task_workspace`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Pending,
    Ready(String),
    Failed(String),
}

/// What a turn learns when it asks for the workspace.
pub enum WorkspaceWait {
    /// Workspaces are not configured: turns run without one.
    NoProvider,
    /// The task has no workspace yet: provisioning must be started (by whoever knows the repository).
    NotStarted,
    /// Provisioning runs: wait on the channel.
    Pending(watch::Receiver<Readiness>),
    Ready(String),
    Failed(String),
    /// Released (archived) or destroyed (killed).
    Gone(String),
}

/// Starts provisioning the task's workspace, or does nothing if it is ready or being provisioned (unless `retry`,
/// which redoes a ready one's checkout check as well). Refused for an archived or killed task.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct StartProvision {
    pub full_name: String,
    pub remote_url: String,
    pub base_branch: String,
    pub retry: bool,
}

impl Command for StartProvision {
    type Entity = Task;
    /// Whether a provisioning job started.
    type Output = bool;
    type Error = DomainError;
    fn run(self, t: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<bool> {
        let Some(workspaces) = ctx.service::<Workspaces>() else { return Ok(false) };
        let task = super::schema::require_row(ctx.db(), &t.key.task)?;
        if task.status().is_winding_down() {
            return Err(DomainError::TaskArchived(format!("task is {}", task.status().as_str())));
        }
        let current = row(ctx.db())?;
        match current.as_ref().map(|r| r.status.as_str()) {
            Some("provisioning") if t.provision.is_some() => return Ok(false),
            Some("ready") if !self.retry => return Ok(false),
            _ => {}
        }
        let key = t.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            let now = now_ms();
            diesel::insert_into(task_workspace::table)
                .values((
                    task_workspace::id.eq(1),
                    task_workspace::provider.eq(workspaces.provider()),
                    task_workspace::status.eq("provisioning"),
                    task_workspace::message.eq("queued"),
                    task_workspace::full_name.eq(&self.full_name),
                    task_workspace::remote_url.eq(&self.remote_url),
                    task_workspace::base_branch.eq(&self.base_branch),
                    task_workspace::attempts.eq(1),
                    task_workspace::updated_at.eq(now),
                ))
                .on_conflict(task_workspace::id)
                .do_update()
                .set((
                    task_workspace::provider.eq(workspaces.provider()),
                    task_workspace::status.eq("provisioning"),
                    task_workspace::message.eq("queued"),
                    task_workspace::full_name.eq(&self.full_name),
                    task_workspace::remote_url.eq(&self.remote_url),
                    task_workspace::base_branch.eq(&self.base_branch),
                    task_workspace::attempts.eq(task_workspace::attempts + 1),
                    task_workspace::updated_at.eq(now),
                ))
                .execute(tx.conn())?;
            super::messages::refresh_key(&key, tx, now)
        })?;
        t.ready.send_replace(Readiness::Pending);
        spawn_job(t, ctx, workspaces)?;
        Ok(true)
    }
}

/// Runs provisioning as the actor's background work (also called after a restart that cut a job short).
pub(super) fn spawn_job(t: &mut Task, ctx: &mut EntityCtx<'_, Task>, workspaces: Arc<Workspaces>) -> DomainResult<()> {
    let Some(ws) = row(ctx.db())? else { return Ok(()) };
    let task = super::schema::require_row(ctx.db(), &t.key.task)?;
    let spec = ws.spec(&t.key, &task.branch);
    let tokens = ctx.service::<GitTokens>();
    let me = ctx.myself();
    let full_name = ws.full_name.clone();
    if let Some(old) = t.provision.take() {
        ctx.cancel(old);
    }
    let handle = ctx.spawn(async move {
        let token = match &tokens {
            Some(t) => t.0.token(&full_name).await,
            None => Ok(None),
        };
        let result = match token {
            Err(e) => Err(e.to_string()),
            Ok(token) => {
                let auth = GitAuth { token, ..GitAuth::default() };
                let (ptx, mut prx) = mpsc::unbounded_channel::<String>();
                let progress = move |m: &str| {
                    let _ = ptx.send(m.to_owned());
                };
                let work = workspaces.provision(&spec, &auth, &progress);
                tokio::pin!(work);
                loop {
                    tokio::select! {
                        r = &mut work => break r.map_err(|e| e.to_string()),
                        Some(message) = prx.recv() => {
                            let _ = me.exec(ProvisionProgress { message }).await;
                        }
                    }
                }
            }
        };
        let _ = me.exec(FinishProvision { result }).await;
    });
    t.provision = Some(handle);
    Ok(())
}

/// A step of the running provisioning job (shown as the workspace's message).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ProvisionProgress {
    message: String,
}

impl Command for ProvisionProgress {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn run(self, _: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<()> {
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            if row(tx.conn())?.is_some_and(|r| r.status == "provisioning") {
                set_status(tx.conn(), "provisioning", &self.message)?;
                tx.touch(TOPIC);
            }
            Ok(())
        })
    }
}

/// The end of the provisioning job.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct FinishProvision {
    result: Result<Provisioned, String>,
}

impl Command for FinishProvision {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn run(self, t: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<()> {
        t.provision = None;
        let key = t.key.clone();
        let readiness = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<Readiness> {
            if row(tx.conn())?.is_none_or(|r| r.status != "provisioning") {
                // Archived or killed meanwhile: the job's result no longer matters.
                return Ok(Readiness::Failed("the workspace was released".into()));
            }
            let now = now_ms();
            let readiness = match &self.result {
                Ok(p) => {
                    diesel::update(task_workspace::table.find(1))
                        .set(task_workspace::cwd.eq(Some(&p.cwd)))
                        .execute(tx.conn())?;
                    diesel::update(super::schema::task_runtime::table.find(1))
                        .set((
                            super::schema::task_runtime::cwd.eq(Some(&p.cwd)),
                            super::schema::task_runtime::updated_at.eq(now),
                        ))
                        .execute(tx.conn())?;
                    set_git_state(tx.conn(), &p.state)?;
                    set_status(tx.conn(), "ready", "")?;
                    Readiness::Ready(p.cwd.clone())
                }
                Err(why) => {
                    set_status(tx.conn(), "error", why)?;
                    Readiness::Failed(why.clone())
                }
            };
            super::messages::refresh_key(&key, tx, now)?;
            Ok(readiness)
        })?;
        t.ready.send_replace(readiness);
        Ok(())
    }
}

/// Asks whether the workspace is ready (for a turn about to start).
pub struct AwaitWorkspace;

impl Command for AwaitWorkspace {
    type Entity = Task;
    type Output = WorkspaceWait;
    type Error = DomainError;
    fn run(self, t: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<WorkspaceWait> {
        if ctx.service::<Workspaces>().is_none() {
            return Ok(WorkspaceWait::NoProvider);
        }
        let Some(ws) = row(ctx.db())? else { return Ok(WorkspaceWait::NotStarted) };
        Ok(match ws.status.as_str() {
            "ready" => WorkspaceWait::Ready(ws.cwd.unwrap_or_default()),
            "error" => WorkspaceWait::Failed(ws.message),
            "provisioning" => WorkspaceWait::Pending(t.ready.subscribe()),
            other => WorkspaceWait::Gone(format!("the workspace was {other}")),
        })
    }
}

/// The workspace's row (what it is a checkout of, its status), if the task has one.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetWorkspace;

impl Read for GetWorkspace {
    type Entity = Task;
    type Output = Option<(WorkspaceRow, String)>;
    type Error = DomainError;
    fn read(self, t: &Task, db: &mut SqliteConnection) -> DomainResult<Option<(WorkspaceRow, String)>> {
        let task = super::schema::require_row(db, &t.key.task)?;
        Ok(row(db)?.map(|r| (r, task.branch)))
    }
}

/// The workspace's git state, as just computed.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RecordGitState {
    pub state: GitState,
}

impl Mutation for RecordGitState {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, _: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        if row(tx.conn())?.is_some_and(|r| r.status == "ready") {
            set_git_state(tx.conn(), &self.state)?;
            super::schema::touch(tx.conn(), now_ms())?;
            tx.touch(TOPIC);
        }
        Ok(())
    }
}

/// The workspace was removed: `released` (archive; the branch was pushed) or `destroyed` (kill).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct MarkWorkspaceGone {
    pub destroyed: bool,
}

impl Command for MarkWorkspaceGone {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn run(self, t: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<()> {
        if let Some(job) = t.provision.take() {
            ctx.cancel(job);
        }
        let status = if self.destroyed { "destroyed" } else { "released" };
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            if row(tx.conn())?.is_some() {
                set_status(tx.conn(), status, "")?;
                diesel::update(task_workspace::table.find(1))
                    .set(task_workspace::cwd.eq(None::<String>))
                    .execute(tx.conn())?;
                tx.touch(TOPIC);
            }
            Ok(())
        })?;
        t.ready.send_replace(Readiness::Failed(format!("the workspace was {status}")));
        Ok(())
    }
}

/// After a restart: a provisioning job that was cut short starts again.
pub(super) fn resume(t: &mut Task, ctx: &mut EntityCtx<'_, Task>) {
    let Some(workspaces) = ctx.service::<Workspaces>() else { return };
    match row(ctx.db()) {
        Ok(Some(ws)) if ws.status == "provisioning" => {
            if let Err(e) = spawn_job(t, ctx, workspaces) {
                tracing::error!(error = %e, "could not resume provisioning");
            }
        }
        Ok(Some(ws)) if ws.status == "ready" => {
            t.ready.send_replace(Readiness::Ready(ws.cwd.unwrap_or_default()));
        }
        Ok(_) => {}
        Err(e) => tracing::error!(error = %e, "could not read the workspace"),
    }
}

crate::actors::remote::remote_messages! {
    super::Task;
    mutations: RecordGitState;
    reads: GetWorkspace;
    commands: StartProvision, ProvisionProgress, FinishProvision, MarkWorkspaceGone;
}
