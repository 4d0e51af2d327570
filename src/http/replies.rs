//! Typed bodies of the answers that are not a domain type as is (a list with its context, a count, what a command
//! reports besides the state it leaves), so that the OpenAPI document describes exactly what the handlers serialise.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::actors::domain::TaskView;
use crate::actors::github_data::{SyncStatus, WebhookOutcome};
use crate::actors::repository::CreatedTask;
use crate::actors::session::{SessionState, Submitted};
use crate::actors::summary::TaskStatus;
use crate::actors::user::OrganizationEntry;
use crate::integrations::sandbox::LogEntry;

/// `GET /v1/orgs`: the caller's organizations and the one the app opens (as in the `app` snapshot).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OrganizationList {
    /// In the order the caller joined them.
    pub organizations: Vec<OrganizationEntry>,
    pub active_organization_id: Option<String>,
}

/// `GET /v1/orgs/{org}/github`: whether a GitHub account is connected, and then its sync status.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct GitHubConnection {
    pub connected: bool,
    /// Present when connected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SyncStatus>,
}

/// A sync was started, or one was already running: its generation.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncStarted {
    pub generation: i32,
}

/// `POST .../admin/rebuild`: how many task summaries were written again.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rebuilt {
    pub task_summaries: usize,
}

/// The 200 answer of `POST .../admin/{op}`: `full-sync` starts a sync, `rebuild` counts what it wrote.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AdminOutcome {
    Sync(SyncStarted),
    Rebuilt(Rebuilt),
}

/// `POST .../repos/{repo}/tasks` (201): the new task, its first session and that session's topic version before its
/// first turn (subscribe with `after` it: docs/API.md, "Following a new task").
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskCreated {
    pub org_id: String,
    pub repo_id: String,
    pub task_id: String,
    pub title: String,
    pub branch: String,
    pub session_id: String,
    pub session_version: u64,
}

impl From<&CreatedTask> for TaskCreated {
    fn from(created: &CreatedTask) -> Self {
        TaskCreated {
            org_id: created.task.org.clone(),
            repo_id: created.task.repo.clone(),
            task_id: created.task.task.clone(),
            title: created.title.clone(),
            branch: created.branch.clone(),
            session_id: created.session_id.clone(),
            session_version: created.session_version,
        }
    }
}

/// The task's status after `archive`, `unarchive` or `kill`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskStatusChanged {
    pub status: TaskStatus,
}

/// The 200 answer of `POST T/{action}`: the status for `archive`, `unarchive` and `kill`, the task view for the
/// others (`pull-request` answers 201 [`PullRequestOpened`]).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum TaskActionOutcome {
    Status(TaskStatusChanged),
    View(Box<TaskView>),
}

/// `POST T/pull-request` (201): the pull request's number on GitHub.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PullRequestOpened {
    pub number: i64,
}

/// The 202 answer of every session command (`messages`, `steer`, `interrupt`, `stop`): where the session stands once
/// the command was taken, plus what the command itself reports.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionCommandOutcome {
    #[serde(flatten)]
    pub state: SessionState,
    /// `messages`: whether the prompt runs now or after the running turn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submitted: Option<Submitted>,
    /// `interrupt`: how many queued prompts it dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dropped_prompts: Option<usize>,
}

/// `GET T/processes/{process}/logs`: the output so far.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProcessLogs {
    pub process_id: String,
    pub entries: Vec<LogEntry>,
}

/// `DELETE /v1/auth/sessions`: how many sessions were signed out.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub revoked: usize,
}

/// `GET /v1/auth/whoami`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WhoAmI {
    pub user_id: String,
    pub session_id: String,
    /// When the session expires, in milliseconds since the epoch.
    pub expires_at_ms: i64,
}

/// A `ping` delivery's outcome: nothing to apply.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Pong {
    Pong,
}

/// What a webhook delivery did.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum DeliveryOutcome {
    Delivery(WebhookOutcome),
    Ping(Pong),
}

/// `POST /v1/webhooks/github`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookAnswer {
    pub outcome: DeliveryOutcome,
}
