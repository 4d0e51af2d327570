//! Messages of the task: initialisation from its repository, task operations, and the coordination of its sessions
//! (create, close) with the session summaries they push up.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::schema::{self, task, task_runtime, TaskRow};
use super::{Task, TaskDetail, TOPIC};
use crate::actors::repository::ApplyTaskSummary;
use crate::actors::session::{CloseSessionNow, InitializeSession};
use crate::actors::summary::{PullRequestSummary, SessionStatus, SessionSummary, TaskStatus, TaskSummary};
use crate::actors::{models, now_ms, validate, Audit, DomainError, DomainResult, TaskKey};
use crate::runtime::{Delivery, Mutation, Read, Tx};

/// Sent by the repository when it created the task. Idempotent: the first delivery creates the task and its first
/// session (which receives the prompt), later ones change nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitializeTask {
    pub title: String,
    pub branch: String,
    pub prompt: String,
    pub explicit_title: bool,
    pub explicit_branch: bool,
    pub model: String,
    pub user_id: Option<String>,
    pub created_at: i64,
    /// False for a task created from a pull request: no session until a user opens one.
    #[serde(default = "first_session_default")]
    pub first_session: bool,
    /// The pull request the task was created for, if any.
    #[serde(default)]
    pub pull_request: Option<PullRequestSummary>,
}

fn first_session_default() -> bool {
    true
}

impl Mutation for InitializeTask {
    type Entity = Task;
    /// The first session's initialisation (also when the task already existed), to apply at once.
    type Output = Option<InitializeSession>;
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<Option<InitializeSession>> {
        if schema::row(tx.conn())?.is_some() {
            // Already initialised (the outbox copy may arrive before or after the direct call): hand back the first
            // session's initialisation again, so whoever applies it next gets the session (it is idempotent too).
            let first = schema::sessions(tx.conn())?.into_iter().next();
            return Ok(first.map(|s| InitializeSession {
                name: s.name,
                model: s.model,
                mode: models::MODES[0].to_owned(),
                thought_level: models::DEFAULT_THOUGHT_LEVEL.to_owned(),
                prompt: Some(self.prompt),
                user_id: self.user_id,
                created_at: s.created_at,
            }));
        }
        let now = self.created_at;
        diesel::insert_into(task::table)
            .values((
                task::id.eq(1),
                task::title.eq(&self.title),
                task::branch.eq(&self.branch),
                task::prompt.eq(&self.prompt),
                task::status.eq(TaskStatus::InitComplete.as_str()),
                task::explicit_title.eq(self.explicit_title),
                task::explicit_branch.eq(self.explicit_branch),
                task::next_session_seq.eq(1),
                task::created_at.eq(now),
                task::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        diesel::insert_into(task_runtime::table)
            .values((task_runtime::id.eq(1), task_runtime::updated_at.eq(now)))
            .execute(tx.conn())?;
        if let Some(pr) = &self.pull_request {
            schema::set_pull_request(tx.conn(), pr, now)?;
        }
        if !self.first_session {
            refresh(t, tx, now)?;
            return Ok(None);
        }
        let init = new_session(t, tx, None, self.model, Some(self.prompt), self.user_id.as_deref())?;
        Ok(Some(init))
    }
}

impl Delivery for InitializeTask {
    const NAME: &'static str = "task.initialize";
}

/// Adds a session to the index and queues its initialisation; returns it so the caller can apply it at once.
fn new_session(
    t: &Task,
    tx: &mut Tx<'_>,
    name: Option<String>,
    model: String,
    prompt: Option<String>,
    user: Option<&str>,
) -> DomainResult<InitializeSession> {
    let row = schema::require_row(tx.conn(), &t.key.task)?;
    let seq = row.next_session_seq;
    let session_id = format!("s{seq}");
    let now = now_ms();
    diesel::update(task::table.find(1)).set(task::next_session_seq.eq(seq + 1)).execute(tx.conn())?;
    let name = name.unwrap_or_else(|| format!("Session {seq}"));
    let summary = SessionSummary {
        session_id: session_id.clone(),
        name: name.clone(),
        model: model.clone(),
        status: SessionStatus::Ready,
        created_at: now,
        updated_at: now,
    };
    schema::upsert_session(tx.conn(), &summary)?;
    let init = InitializeSession {
        name,
        model,
        mode: models::MODES[0].to_owned(),
        thought_level: models::DEFAULT_THOUGHT_LEVEL.to_owned(),
        prompt,
        user_id: user.map(str::to_owned),
        created_at: now,
    };
    let key = t.key.session(&session_id);
    tx.send(&key, &init)?;
    refresh(t, tx, now)?;
    Audit::session(&key).by(user).append(tx, "task.session.created", serde_json::json!({ "name": summary.name }))?;
    Ok(init)
}

/// Recomputes the status from the sessions (unless archiving or killing), pushes the summary to the repository and
/// marks the `task` topic changed.
fn refresh(t: &Task, tx: &mut Tx<'_>, now: i64) -> DomainResult<()> {
    refresh_key(&t.key, tx, now)
}

/// [`refresh`] by key. While the workspace is provisioning the task is `init_enqueue_provision`; a failed
/// provisioning makes it `error` (the workspace's message says why).
pub(super) fn refresh_key(key: &TaskKey, tx: &mut Tx<'_>, now: i64) -> DomainResult<()> {
    let row = schema::require_row(tx.conn(), &key.task)?;
    let sessions = schema::sessions(tx.conn())?;
    let mut status = row.status();
    if !status.is_winding_down() && status != TaskStatus::InitBootstrapDb {
        status = match super::workspace::row(tx.conn())?.as_ref().map(|w| w.status.as_str()) {
            Some("provisioning") => TaskStatus::InitEnqueueProvision,
            Some("error") => TaskStatus::Error,
            _ => TaskStatus::derive(&sessions),
        };
    }
    schema::set_status(tx.conn(), status, now)?;
    let summary = TaskSummary {
        repo_id: key.repo.clone(),
        task_id: key.task.clone(),
        title: row.title.clone(),
        branch: row.branch.clone(),
        status,
        pull_request: row.pull_request()?,
        sessions,
        created_at: row.created_at,
        updated_at: now,
    };
    tx.send(&key.repo_key(), &ApplyTaskSummary { summary })?;
    tx.touch(TOPIC);
    Ok(())
}

fn require_live(row: &TaskRow) -> DomainResult<()> {
    match row.status() {
        TaskStatus::Archived | TaskStatus::Killed => {
            Err(DomainError::Unprocessable(format!("task is {}", row.status().as_str())))
        }
        _ => Ok(()),
    }
}

/// Renames the task (the branch never changes).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RenameTask {
    pub title: String,
    pub user_id: Option<String>,
}

impl Mutation for RenameTask {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::display_name("title", &self.title)?;
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        require_live(&row)?;
        let title = self.title.trim();
        diesel::update(task::table.find(1))
            .set((task::title.eq(title), task::explicit_title.eq(true)))
            .execute(tx.conn())?;
        refresh(t, tx, now_ms())?;
        let payload = serde_json::json!({ "from": row.title, "to": title });
        Audit::task(&t.key).by(self.user_id.as_deref()).append(tx, "task.title.changed", payload)
    }
}

/// Opens another session on the task.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CreateSession {
    pub name: Option<String>,
    pub model: Option<String>,
    pub user_id: Option<String>,
}

impl Mutation for CreateSession {
    type Entity = Task;
    type Output = (String, InitializeSession);
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<(String, InitializeSession)> {
        if let Some(n) = &self.name {
            validate::display_name("name", n)?;
        }
        let model = self.model.unwrap_or_else(|| models::default_for(tx));
        if !models::is_allowed(tx, &model) {
            return Err(DomainError::invalid("model", format!("unknown model {model:?}")));
        }
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        require_live(&row)?;
        let id = format!("s{}", row.next_session_seq);
        let init = new_session(t, tx, self.name.map(|n| n.trim().to_owned()), model, None, self.user_id.as_deref())?;
        Ok((id, init))
    }
}

/// Closes a session (the task keeps at least one open).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct CloseSession {
    pub session_id: String,
    pub user_id: Option<String>,
}

impl Mutation for CloseSession {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        schema::require_row(tx.conn(), &t.key.task)?;
        let sessions = schema::sessions(tx.conn())?;
        let Some(target) = sessions.iter().find(|s| s.session_id == self.session_id) else {
            return Err(DomainError::not_found("session", &self.session_id));
        };
        if target.status == SessionStatus::Closed {
            return Ok(());
        }
        if sessions.iter().filter(|s| s.status != SessionStatus::Closed).count() <= 1 {
            return Err(DomainError::Conflict("a task keeps at least one open session".into()));
        }
        let now = now_ms();
        let closed = SessionSummary { status: SessionStatus::Closed, updated_at: now, ..target.clone() };
        schema::upsert_session(tx.conn(), &closed)?;
        let key = t.key.session(&self.session_id);
        tx.send(&key, &CloseSessionNow)?;
        refresh(t, tx, now)?;
        Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.closed", serde_json::json!({}))
    }
}

/// A session's summary, pushed up whenever the session changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplySessionSummary {
    pub summary: SessionSummary,
}

impl Mutation for ApplySessionSummary {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        schema::require_row(tx.conn(), &t.key.task)?;
        let known = schema::sessions(tx.conn())?;
        let Some(current) = known.iter().find(|s| s.session_id == self.summary.session_id) else {
            return Err(DomainError::not_found("session", &self.summary.session_id));
        };
        // The coordinator's close wins over a late summary from the session.
        let status = if current.status == SessionStatus::Closed { SessionStatus::Closed } else { self.summary.status };
        schema::upsert_session(tx.conn(), &SessionSummary { status, ..self.summary })?;
        refresh(t, tx, now_ms())
    }
}

impl Delivery for ApplySessionSummary {
    const NAME: &'static str = "task.apply_session_summary";
}

/// One step of archiving or killing. Steps must come in order (`TaskStatus::ARCHIVE_STEPS` / `KILL_STEPS`).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct AdvanceLifecycle {
    pub to: TaskStatus,
    pub user_id: Option<String>,
}

impl Mutation for AdvanceLifecycle {
    type Entity = Task;
    type Output = TaskStatus;
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<TaskStatus> {
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        let from = row.status();
        let valid = [&TaskStatus::ARCHIVE_STEPS[..], &TaskStatus::KILL_STEPS[..]].iter().any(|steps| {
            match steps.iter().position(|s| *s == self.to) {
                Some(0) => {
                    !from.is_winding_down() || (self.to == TaskStatus::KillDestroySandbox && from != TaskStatus::Killed)
                }
                Some(i) => steps[i - 1] == from,
                None => false,
            }
        });
        if !valid {
            return Err(DomainError::Unprocessable(format!(
                "task cannot go from {} to {}",
                from.as_str(),
                self.to.as_str()
            )));
        }
        let now = now_ms();
        schema::set_status(tx.conn(), self.to, now)?;
        refresh(t, tx, now)?;
        let audit = Audit::task(&t.key).by(self.user_id.as_deref());
        match self.to {
            TaskStatus::Archived => audit.append(tx, "task.archived", serde_json::json!({}))?,
            TaskStatus::Killed => audit.append(tx, "task.killed", serde_json::json!({}))?,
            _ => {}
        }
        Ok(self.to)
    }
}

/// Brings an archived task back (a killed one stays killed): its status is derived from its sessions again.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct UnarchiveTask {
    pub user_id: Option<String>,
}

impl Mutation for UnarchiveTask {
    type Entity = Task;
    type Output = TaskStatus;
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<TaskStatus> {
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        if row.status() != TaskStatus::Archived {
            return Err(DomainError::Conflict(format!("task is {}, not archived", row.status().as_str())));
        }
        let now = now_ms();
        let sessions = schema::sessions(tx.conn())?;
        schema::set_status(tx.conn(), TaskStatus::derive(&sessions), now)?;
        refresh(t, tx, now)?;
        Audit::task(&t.key).by(self.user_id.as_deref()).append(tx, "task.unarchived", serde_json::json!({}))?;
        Ok(schema::require_row(tx.conn(), &t.key.task)?.status())
    }
}

/// Records the pull request published for the task.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RecordPullRequest {
    pub pull_request: PullRequestSummary,
    pub user_id: Option<String>,
}

impl Mutation for RecordPullRequest {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        require_live(&row)?;
        let now = now_ms();
        schema::set_pull_request(tx.conn(), &self.pull_request, now)?;
        refresh(t, tx, now)?;
        let payload = serde_json::json!({ "number": self.pull_request.number, "url": self.pull_request.url });
        Audit::task(&t.key).by(self.user_id.as_deref()).append(tx, "task.pr.published", payload)
    }
}

/// Pull request data for this task, from its repository (sync or webhook).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyPullRequest {
    pub pull_request: PullRequestSummary,
}

impl Mutation for ApplyPullRequest {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        schema::require_row(tx.conn(), &t.key.task)?;
        let now = now_ms();
        schema::set_pull_request(tx.conn(), &self.pull_request, now)?;
        refresh(t, tx, now)
    }
}

impl Delivery for ApplyPullRequest {
    const NAME: &'static str = "task.apply_pull_request";
}

/// Records a git operation done on the task's branch (push, merge, revert of a file, a requested provisioning of its
/// workspace) in the task and the audit log.
#[derive(serde::Serialize)]
pub struct RecordGitOperation {
    /// `task.pushed`, `task.merged`, `task.file.reverted` or `task.workspace.provisioned`.
    pub kind: &'static str,
    pub payload: serde_json::Value,
    pub user_id: Option<String>,
}

// By hand: a derived impl of a struct with a `&'static str` field only reads from `'static` input, which the runtime's
// remote codec (any lifetime) cannot use.
impl<'de> serde::Deserialize<'de> for RecordGitOperation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Wire {
            kind: String,
            payload: serde_json::Value,
            user_id: Option<String>,
        }
        let w = Wire::deserialize(d)?;
        Ok(RecordGitOperation {
            kind: crate::actors::error::static_name(&w.kind),
            payload: w.payload,
            user_id: w.user_id,
        })
    }
}

impl Mutation for RecordGitOperation {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        if !["task.pushed", "task.merged", "task.file.reverted", "task.workspace.provisioned"].contains(&self.kind) {
            return Err(DomainError::invalid("kind", format!("not a git operation: {}", self.kind)));
        }
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        require_live(&row)?;
        schema::touch(tx.conn(), now_ms())?;
        tx.touch(TOPIC);
        // Told to whoever has the task open, once: the snapshot shows the branch's new state, not who did what.
        let event = GitOperationEvent {
            kind: self.kind.to_owned(),
            user_id: self.user_id.clone(),
            payload: self.payload.clone(),
        };
        tx.emit(TOPIC, GIT_OPERATION_EVENT, &event)?;
        Audit::task(&t.key).by(self.user_id.as_deref()).append(tx, self.kind, self.payload)
    }
}

/// The `task` topic's event for a git operation done on the task (its payload: [`GitOperationEvent`]).
pub const GIT_OPERATION_EVENT: &str = "gitOperation";

/// A push, merge, reverted file or requested provisioning, as the task's viewers hear of it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct GitOperationEvent {
    /// `task.pushed`, `task.merged`, `task.file.reverted` or `task.workspace.provisioned` (as in the audit log).
    pub kind: String,
    /// Who did it (`null`: the system).
    pub user_id: Option<String>,
    /// What the audit log records with it (the branch pushed, the file reverted, ...).
    pub payload: serde_json::Value,
}

/// Points the task's sandbox at another target (a branch or commit to check out).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SwitchTask {
    pub target: String,
    pub user_id: Option<String>,
}

impl Mutation for SwitchTask {
    type Entity = Task;
    type Output = ();
    type Error = DomainError;
    fn apply(self, t: &Task, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::branch(&self.target).map_err(|e| e.with_field("target"))?;
        let row = schema::require_row(tx.conn(), &t.key.task)?;
        require_live(&row)?;
        let now = now_ms();
        diesel::update(task_runtime::table.find(1))
            .set((task_runtime::switch_target.eq(&self.target), task_runtime::updated_at.eq(now)))
            .execute(tx.conn())?;
        schema::touch(tx.conn(), now)?;
        tx.touch(TOPIC);
        let payload = serde_json::json!({ "target": self.target });
        Audit::task(&t.key).by(self.user_id.as_deref()).append(tx, "task.switch", payload)
    }
}

/// The task detail (without any viewer's overlay).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetTaskDetail;

impl Read for GetTaskDetail {
    type Entity = Task;
    type Output = TaskDetail;
    type Error = DomainError;
    fn read(self, t: &Task, db: &mut SqliteConnection) -> DomainResult<TaskDetail> {
        t.build_detail(db)
    }
}

crate::actors::remote::remote_messages! {
    super::Task;
    mutations: InitializeTask, RenameTask, CreateSession, CloseSession, ApplySessionSummary, AdvanceLifecycle, UnarchiveTask, RecordPullRequest, ApplyPullRequest, RecordGitOperation, SwitchTask;
    reads: GetTaskDetail;
}
