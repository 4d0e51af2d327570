//! The [`Domain`]'s flows around a task's workspace: provisioning it from the repository, the workspace a turn runs
//! in (and the commit after each turn), the git operations (push, pull request, merge, revert a file, one file's
//! diff) and archive / kill / unarchive, which stop the sessions and release or destroy the workspace.
//!
//! Git runs in the [`Workspaces`] service, outside any actor; the task actor records the results. Pull requests go
//! through the GitHub API the sync uses ([`GitHubService`]).
//!
//! Archive never loses work silently: work not on the remote is pushed first, and if that push fails the archive is
//! refused unless `force` (which discards it).
//!
//! In cluster mode a workspace lives on the node serving its task's shard (its provisioning runs in the task actor
//! there, and turns run there), so the git operations a request asks for on any other node run there too: each is a
//! [`Procedure`] placed on the task's organization, forwarded by `on_owner!` and served by what [`install`] registers.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::domain::DomainCallError;
use super::github_data::{pull_summary, GitHubService};
use super::organization::GetRepository;
use super::session::{ResumeSession, SessionWorkspace, SuspendSession, TurnPlace, TurnWorkspace};
use super::summary::{PullRequestSummary, SessionStatus, TaskStatus};
use super::task::workspace::{workspace_id, Readiness};
use super::task::{
    AdvanceLifecycle, AwaitWorkspace, GetTaskDetail, GetWorkspace, GitTokens, MarkWorkspaceGone, RecordGitOperation,
    RecordGitState, RecordPullRequest, StartProvision, UnarchiveTask, WorkspaceWait,
};
use super::{Domain, DomainError, TaskKey};
use crate::integrations::github::client::{GitHubError, MergeMethod};
use crate::integrations::workspace::{GitAuth, GitState, WorkspaceError, WorkspaceSpec, Workspaces};
use crate::runtime::{CallError, Entity, Procedure};

type Result<T> = std::result::Result<T, DomainCallError>;

/// Declares the workspace operations as procedures (their inputs, outputs and wire names), and `serve_procedures`,
/// which registers each with the flow that serves it: the same `Domain` method a caller on the serving node runs.
macro_rules! procedures {
    ($($name:ident { $($field:ident: $ty:ty),* } -> $out:ty = |$d:ident, $p:ident| $call:expr;)*) => {
        $(
            #[derive(serde::Serialize, serde::Deserialize)]
            struct $name { task: TaskKey, $($field: $ty),* }
            impl Procedure for $name {
                const NAME: &'static str = stringify!($name);
                type Output = $out;
                type Error = DomainError;
                fn placement(&self) -> String {
                    super::task::Task::placement_key(&self.task).into_owned()
                }
            }
        )*

        fn serve_procedures(domain: &Domain) {
            $(
                let d = domain.clone();
                domain.runtime.serve_procedure(move |$p: $name| {
                    let $d = d.clone();
                    async move { $call.await }
                });
            )*
        }
    };
}

procedures! {
    PushTask { user: Option<String> } -> GitState = |d, p| d.push_task(&p.task, p.user.as_deref());
    PublishPullRequest { user: Option<String> } -> i64 = |d, p| d.publish_pull_request(&p.task, p.user.as_deref());
    MergeTask { user: Option<String> } -> PullRequestSummary = |d, p| d.merge_task(&p.task, p.user.as_deref());
    RevertFile { path: String, user: Option<String> } -> GitState =
        |d, p| d.revert_file(&p.task, &p.path, p.user.as_deref());
    FileDiff { path: String } -> String = |d, p| d.file_diff(&p.task, &p.path);
    ArchiveTask { force: bool, user: Option<String> } -> TaskStatus =
        |d, p| d.archive_task(&p.task, p.force, p.user.as_deref());
    KillTask { user: Option<String> } -> TaskStatus = |d, p| d.kill_task(&p.task, p.user.as_deref());
}

/// Returns the answer of the node serving the task's shard when that is another node (see the module doc).
macro_rules! on_owner {
    ($domain:expr, $procedure:expr) => {
        if let Some(answer) = $domain.runtime.on_owner(&$procedure).await {
            return answer;
        }
    };
}

/// How long a turn waits for its workspace to be provisioned.
const PROVISION_WAIT: Duration = Duration::from_secs(15 * 60);

fn refused(e: DomainError) -> DomainCallError {
    CallError::Handler(e)
}

/// A workspace failure as the domain reports it.
pub fn workspace_error(e: WorkspaceError) -> DomainCallError {
    refused(match e {
        WorkspaceError::Unreachable(message) => DomainError::Git { message, unreachable: true },
        e @ WorkspaceError::Git { .. } => DomainError::Git { message: e.to_string(), unreachable: false },
        WorkspaceError::Invalid(message) => DomainError::Invalid { field: "path", message },
        WorkspaceError::Missing => DomainError::WorkspaceUnavailable("the task's workspace is not provisioned".into()),
    })
}

fn github_error(e: GitHubError) -> DomainCallError {
    let unreachable = matches!(e, GitHubError::Transport(_));
    refused(DomainError::Git { message: format!("GitHub: {e}"), unreachable })
}

/// A ready workspace and what operating on it needs.
struct Ready {
    workspaces: Arc<Workspaces>,
    spec: WorkspaceSpec,
    auth: GitAuth,
    full_name: String,
}

impl Domain {
    /// Starts provisioning the task's workspace from its repository (the pull request's base for a task made from
    /// one). Idempotent while it runs or once ready; `retry` starts again after a failure (or re-checks a ready one).
    pub async fn provision_workspace(&self, task: &TaskKey, retry: bool) -> Result<bool> {
        let repo = self.orgs.read(&task.org, GetRepository { repo_id: task.repo.clone() }).await?;
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        let base_branch = detail.pull_request.as_ref().map_or(repo.default_branch, |pr| pr.base_ref.clone());
        let msg = StartProvision { full_name: repo.full_name, remote_url: repo.remote_url, base_branch, retry };
        self.tasks.exec(task, msg).await
    }

    /// `POST T/provision`: provisions the workspace again on someone's request (after a failure; re-checks a ready
    /// one), audited as `task.workspace.provisioned`. Replies whether a provisioning job started.
    pub async fn reprovision_workspace(&self, task: &TaskKey, user: Option<&str>) -> Result<bool> {
        let started = self.provision_workspace(task, true).await?;
        self.record(task, "task.workspace.provisioned", serde_json::json!({ "started": started }), user).await?;
        Ok(started)
    }

    /// Resolves when the task's workspace is ready, with its directory; `Ok(None)` when workspaces are not
    /// configured. Starts provisioning if nobody did.
    pub async fn wait_for_workspace(&self, task: &TaskKey) -> std::result::Result<Option<String>, String> {
        let mut started = false;
        loop {
            let wait = self.tasks.exec(task, AwaitWorkspace).await.map_err(|e| e.to_string())?;
            match wait {
                WorkspaceWait::NoProvider => return Ok(None),
                WorkspaceWait::Ready(cwd) => return Ok(Some(cwd)),
                WorkspaceWait::Failed(why) | WorkspaceWait::Gone(why) => return Err(why),
                WorkspaceWait::NotStarted if !started => {
                    started = true;
                    self.provision_workspace(task, false).await.map_err(|e| e.to_string())?;
                }
                WorkspaceWait::NotStarted => return Err("provisioning did not start".into()),
                WorkspaceWait::Pending(mut rx) => {
                    let done = rx.wait_for(|r| *r != Readiness::Pending);
                    let outcome = tokio::time::timeout(PROVISION_WAIT, done).await.map(|r| r.is_ok());
                    match outcome {
                        Ok(true) => {}
                        // The task actor went away (passivated, restarted): ask again.
                        Ok(false) => tokio::time::sleep(Duration::from_millis(50)).await,
                        Err(_) => return Err("provisioning takes too long".into()),
                    }
                }
            }
        }
    }

    async fn ready_workspace(&self, task: &TaskKey) -> Result<Ready> {
        let unavailable = |m: &str| refused(DomainError::WorkspaceUnavailable(m.to_owned()));
        let workspaces = self
            .runtime
            .service::<Workspaces>()
            .ok_or_else(|| unavailable("workspaces are not configured on this server"))?;
        let Some((row, branch)) = self.tasks.read(task, GetWorkspace).await? else {
            return Err(unavailable("the task has no workspace yet"));
        };
        match row.status.as_str() {
            "ready" => {}
            "provisioning" => {
                return Err(unavailable(&format!("the workspace is being provisioned ({})", row.message)))
            }
            "error" => return Err(unavailable(&format!("provisioning failed: {} (retry it)", row.message))),
            other => return Err(unavailable(&format!("the workspace was {other}"))),
        }
        let spec = row.spec(task, &branch);
        let auth = self.git_auth(&row.full_name).await?;
        Ok(Ready { workspaces, spec, auth, full_name: row.full_name })
    }

    async fn git_auth(&self, full_name: &str) -> Result<GitAuth> {
        let token = match self.runtime.service::<GitTokens>() {
            Some(tokens) => tokens.0.token(full_name).await.map_err(workspace_error)?,
            None => None,
        };
        Ok(GitAuth { token, ..GitAuth::default() })
    }

    fn github(&self) -> Result<Arc<GitHubService>> {
        self.runtime.service::<GitHubService>().ok_or_else(|| {
            refused(DomainError::Git {
                message: "no GitHub connection is configured (serve --github-token, --github-app-id or --demo)".into(),
                unreachable: false,
            })
        })
    }

    async fn record_state(&self, task: &TaskKey, state: &GitState) -> Result<()> {
        self.tasks.mutate(task, RecordGitState { state: state.clone() }).await
    }

    async fn record(
        &self,
        task: &TaskKey,
        kind: &'static str,
        payload: serde_json::Value,
        user: Option<&str>,
    ) -> Result<()> {
        self.tasks.mutate(task, RecordGitOperation { kind, payload, user_id: user.map(str::to_owned) }).await
    }

    /// Commits what the agent changed in a turn (the prompt's first line is the message) and records the new state.
    pub async fn commit_turn(&self, task: &TaskKey, prompt: &str) -> Result<Option<String>> {
        let r = self.ready_workspace(task).await?;
        let first = prompt.lines().next().unwrap_or_default().trim();
        let message: String = if first.chars().count() > 72 {
            format!("{}...", first.chars().take(69).collect::<String>())
        } else {
            first.to_owned()
        };
        let (state, committed) =
            r.workspaces.commit_and_state(&r.spec, &r.auth, &message).await.map_err(workspace_error)?;
        self.record_state(task, &state).await?;
        Ok(if committed { state.head } else { None })
    }

    /// Pushes the task's branch (committing what is not committed yet).
    pub async fn push_task(&self, task: &TaskKey, user: Option<&str>) -> Result<GitState> {
        on_owner!(self, PushTask { task: task.clone(), user: user.map(str::to_owned) });
        let r = self.ready_workspace(task).await?;
        self.push_ready(task, &r, user).await
    }

    async fn push_ready(&self, task: &TaskKey, r: &Ready, user: Option<&str>) -> Result<GitState> {
        let state = r.workspaces.push(&r.spec, &r.auth).await.map_err(workspace_error)?;
        self.record_state(task, &state).await?;
        let payload = serde_json::json!({ "branch": r.spec.branch, "head": state.head });
        self.record(task, "task.pushed", payload, user).await?;
        Ok(state)
    }

    /// Pushes the branch and opens a pull request for it against the base branch; the pull request is stored as task
    /// data exactly as the sync stores it.
    pub async fn publish_pull_request(&self, task: &TaskKey, user: Option<&str>) -> Result<i64> {
        on_owner!(self, PublishPullRequest { task: task.clone(), user: user.map(str::to_owned) });
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        if let Some(pr) = detail.pull_request.as_ref().filter(|pr| pr.state == "open") {
            return Err(refused(DomainError::Conflict(format!("pull request #{} is open", pr.number))));
        }
        let github = self.github()?;
        let r = self.ready_workspace(task).await?;
        self.push_ready(task, &r, user).await?;
        let body = format!("{}\n\nOpened from foundry task {}.", detail.prompt, task.task);
        let pr = github
            .0
            .create_pull(&r.full_name, &r.spec.branch, &r.spec.base_branch, &detail.title, Some(&body), false)
            .await
            .map_err(github_error)?;
        let summary = pull_summary(&pr);
        let number = summary.number;
        self.tasks.mutate(task, RecordPullRequest { pull_request: summary, user_id: user.map(str::to_owned) }).await?;
        Ok(number)
    }

    /// Merges the task's pull request on GitHub (a merge commit), then records the pull request as merged.
    pub async fn merge_task(&self, task: &TaskKey, user: Option<&str>) -> Result<PullRequestSummary> {
        on_owner!(self, MergeTask { task: task.clone(), user: user.map(str::to_owned) });
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        let Some(pr) = detail.pull_request else {
            return Err(refused(DomainError::Conflict("the task has no pull request: publish one first".into())));
        };
        let github = self.github()?;
        let repo = self.orgs.read(&task.org, GetRepository { repo_id: task.repo.clone() }).await?;
        let number = pr.number as u64;
        let outcome =
            github.0.merge_pull(&repo.full_name, number, MergeMethod::Merge, None).await.map_err(github_error)?;
        let merged = github.0.get_pull(&repo.full_name, number).await.map_err(github_error)?;
        let summary = pull_summary(&merged);
        self.tasks.mutate(task, super::task::ApplyPullRequest { pull_request: summary.clone() }).await?;
        let payload = serde_json::json!({ "number": number, "sha": outcome.sha, "base": pr.base_ref });
        self.record(task, "task.merged", payload, user).await?;
        Ok(summary)
    }

    /// Restores one file as it is on the base branch, committed.
    pub async fn revert_file(&self, task: &TaskKey, path: &str, user: Option<&str>) -> Result<GitState> {
        on_owner!(self, RevertFile { task: task.clone(), path: path.to_owned(), user: user.map(str::to_owned) });
        crate::integrations::workspace::validate_path(path).map_err(workspace_error)?;
        let r = self.ready_workspace(task).await?;
        let state = r.workspaces.revert_file(&r.spec, &r.auth, path).await.map_err(workspace_error)?;
        self.record_state(task, &state).await?;
        self.record(task, "task.file.reverted", serde_json::json!({ "path": path }), user).await?;
        Ok(state)
    }

    /// One file's diff against the base branch.
    pub async fn file_diff(&self, task: &TaskKey, path: &str) -> Result<String> {
        on_owner!(self, FileDiff { task: task.clone(), path: path.to_owned() });
        crate::integrations::workspace::validate_path(path).map_err(workspace_error)?;
        let r = self.ready_workspace(task).await?;
        r.workspaces.file_diff(&r.spec, &r.auth, path).await.map_err(workspace_error)
    }

    async fn suspend_sessions(&self, task: &TaskKey, reason: &str, user: Option<&str>) -> Result<()> {
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        for s in detail.sessions.iter().filter(|s| s.status != SessionStatus::Closed) {
            let msg = SuspendSession { reason: reason.to_owned(), user_id: user.map(str::to_owned) };
            self.sessions.exec(&task.session(&s.session_id), msg).await?;
        }
        Ok(())
    }

    /// Archives the task: its turns are cancelled and its sessions take no prompts, work not on the remote is pushed
    /// (refused if that fails, unless `force`), and the workspace is released.
    pub async fn archive_task(&self, task: &TaskKey, force: bool, user: Option<&str>) -> Result<TaskStatus> {
        on_owner!(self, ArchiveTask { task: task.clone(), force, user: user.map(str::to_owned) });
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        if detail.status.is_winding_down() {
            return Err(refused(DomainError::TaskArchived(format!("task is {}", detail.status.as_str()))));
        }
        let ready = match self.ready_workspace(task).await {
            Ok(r) => Some(r),
            Err(CallError::Handler(DomainError::WorkspaceUnavailable(_))) => None,
            Err(e) => return Err(e),
        };
        if let Some(r) = &ready {
            let state = r.workspaces.state(&r.spec, &r.auth).await.map_err(workspace_error)?;
            if state.has_unpushed_work() {
                if let Err(e) = r.workspaces.push(&r.spec, &r.auth).await {
                    if !force {
                        return Err(refused(DomainError::Conflict(format!(
                            "the workspace has work that is not on the remote and pushing it failed ({e}); \
                             archive with force to discard it"
                        ))));
                    }
                }
            }
        }
        let user_id = user.map(str::to_owned);
        for &to in &TaskStatus::ARCHIVE_STEPS {
            self.tasks.mutate(task, AdvanceLifecycle { to, user_id: user_id.clone() }).await?;
            match to {
                TaskStatus::ArchiveStopStatusSync => self.suspend_sessions(task, "archived", user).await?,
                TaskStatus::ArchiveReleaseSandbox => {
                    if let Some(r) = &ready {
                        r.workspaces.release(&r.spec).await.map_err(workspace_error)?;
                    }
                    self.tasks.exec(task, MarkWorkspaceGone { destroyed: false }).await?;
                }
                _ => {}
            }
        }
        Ok(TaskStatus::Archived)
    }

    /// Kills the task: turns cancelled, sessions closed to prompts, the workspace destroyed at once (unpushed work is
    /// gone).
    pub async fn kill_task(&self, task: &TaskKey, user: Option<&str>) -> Result<TaskStatus> {
        on_owner!(self, KillTask { task: task.clone(), user: user.map(str::to_owned) });
        let user_id = user.map(str::to_owned);
        for &to in &TaskStatus::KILL_STEPS {
            self.tasks.mutate(task, AdvanceLifecycle { to, user_id: user_id.clone() }).await?;
            if to == TaskStatus::KillDestroySandbox {
                self.suspend_sessions(task, "killed", user).await?;
                if let (Some(workspaces), Some((row, branch))) =
                    (self.runtime.service::<Workspaces>(), self.tasks.read(task, GetWorkspace).await?)
                {
                    workspaces.release(&row.spec(task, &branch)).await.map_err(workspace_error)?;
                }
                self.tasks.exec(task, MarkWorkspaceGone { destroyed: true }).await?;
            }
        }
        Ok(TaskStatus::Killed)
    }

    /// Brings an archived task back: its sessions take prompts again and its workspace is provisioned again from the
    /// branch on the remote.
    pub async fn unarchive_task(&self, task: &TaskKey, user: Option<&str>) -> Result<TaskStatus> {
        let status = self.tasks.mutate(task, UnarchiveTask { user_id: user.map(str::to_owned) }).await?;
        let detail = self.tasks.read(task, GetTaskDetail).await?;
        for s in detail.sessions.iter().filter(|s| s.status != SessionStatus::Closed) {
            let msg = ResumeSession { user_id: user.map(str::to_owned) };
            self.sessions.exec(&task.session(&s.session_id), msg).await?;
        }
        if self.runtime.service::<Workspaces>().is_some() {
            self.provision_workspace(task, true).await?;
        }
        Ok(status)
    }
}

/// Turns wait for their task's workspace and commit their work after: the [`TurnWorkspace`] of the domain.
pub struct TaskWorkspaces(pub Domain);

impl TurnWorkspace for TaskWorkspaces {
    fn prepare(&self, task: TaskKey) -> BoxFuture<'static, std::result::Result<Option<TurnPlace>, String>> {
        let domain = self.0.clone();
        Box::pin(async move {
            let Some(workspaces) = domain.runtime.service::<Workspaces>() else { return Ok(None) };
            let Some(cwd) = domain.wait_for_workspace(&task).await? else { return Ok(None) };
            let agent_url = workspaces.agent_url(&workspace_id(&task)).await.map_err(|e| e.to_string())?;
            Ok(Some(TurnPlace { cwd, agent_url }))
        })
    }

    fn turn_finished(&self, task: TaskKey, prompt: String) -> BoxFuture<'static, ()> {
        let domain = self.0.clone();
        Box::pin(async move {
            if domain.runtime.service::<Workspaces>().is_none() {
                return;
            }
            if let Err(e) = domain.commit_turn(&task, &prompt).await {
                tracing::warn!(task = %task.task, error = %e, "could not commit the turn's work");
            }
        })
    }
}

/// Sessions of `domain` run in their task's workspace (once the runtime provides [`Workspaces`]; services may be
/// provided after the domain is built).
pub(super) fn install(domain: &Domain) {
    if domain.runtime.service::<SessionWorkspace>().is_none() {
        domain.runtime.provide(Arc::new(SessionWorkspace(Arc::new(TaskWorkspaces(domain.clone())))));
    }
    serve_procedures(domain);
}
