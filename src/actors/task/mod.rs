//! The task actor (key: organization + repository + task id): a branch with work on it. It coordinates its sessions
//! (their index and summaries), derives its status from all of them, and pushes its summary to its repository only.
//! Publishes the `task` topic (the shared detail; a viewer's overlay is applied at read time from the user actor) and
//! `sandboxProcesses` (the processes it started in the sandbox, see [`processes`]).

mod messages;
pub mod presence;
pub mod processes;
pub mod schema;
pub mod workspace;

use diesel::sqlite::SqliteConnection;
use serde::Serialize;

pub use messages::*;
pub use presence::TaskViewer;
pub use schema::RuntimeRow;
pub use workspace::{
    AwaitWorkspace, GetWorkspace, GitTokens, MarkWorkspaceGone, RecordGitState, StartProvision, WorkspaceView,
    WorkspaceWait,
};

use crate::actors::summary::{PullRequestSummary, SessionSummary, TaskStatus};
use crate::actors::{DomainResult, TaskKey};
use crate::runtime::{embed_migrations, Accepts, ConnectionInfo, EmbeddedMigrations, Entity, EntityCtx, SnapshotError};

pub const TOPIC: &str = "task";

pub struct Task {
    pub key: TaskKey,
    /// The running status poll of the task's sandbox processes (a runtime handle, not state).
    poller: Option<actix::SpawnHandle>,
    /// The running provisioning job of the workspace (a runtime handle, not state).
    provision: Option<actix::SpawnHandle>,
    /// Turns waiting for the workspace watch this (the database has the same in `task_workspace`).
    ready: tokio::sync::watch::Sender<workspace::Readiness>,
    /// Who views the task: derived from the runtime's connections (see [`presence`]), not state.
    viewers: Vec<TaskViewer>,
}

impl Task {
    pub fn new(key: TaskKey) -> Self {
        let (ready, _) = tokio::sync::watch::channel(workspace::Readiness::Pending);
        Task { key, poller: None, provision: None, ready, viewers: Vec::new() }
    }
}

/// What `taskUpdated` carries.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskDetail {
    pub org_id: String,
    pub repo_id: String,
    pub task_id: String,
    pub title: String,
    pub branch: String,
    pub prompt: String,
    pub status: TaskStatus,
    pub explicit_title: bool,
    pub explicit_branch: bool,
    pub sandbox_provider: String,
    pub runtime: Option<RuntimeRow>,
    /// The task's workspace (its checkout and git state), once provisioning started.
    pub workspace: Option<WorkspaceView>,
    pub pull_request: Option<PullRequestSummary>,
    pub sessions: Vec<SessionSummary>,
    /// Who has the task open right now (connected to its topic), by user.
    pub viewers: Vec<TaskViewer>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Task {
    /// Four queries, whatever the number of sessions.
    fn build_detail(&self, db: &mut SqliteConnection) -> DomainResult<TaskDetail> {
        let row = schema::require_row(db, &self.key.task)?;
        Ok(TaskDetail {
            org_id: self.key.org.clone(),
            repo_id: self.key.repo.clone(),
            task_id: self.key.task.clone(),
            status: row.status(),
            pull_request: row.pull_request()?,
            runtime: schema::runtime(db)?,
            workspace: workspace::row(db)?.map(|w| w.view()),
            sessions: schema::sessions(db)?,
            viewers: self.viewers.clone(),
            title: row.title,
            branch: row.branch,
            prompt: row.prompt,
            explicit_title: row.explicit_title,
            explicit_branch: row.explicit_branch,
            sandbox_provider: row.sandbox_provider,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

impl Entity for Task {
    type Key = TaskKey;
    const KIND: &'static str = "task";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/task");

    /// With its organization: a whole organization's actors share one shard (`runtime::placement`).
    fn placement_key(key: &Self::Key) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Borrowed(&key.org)
    }

    fn load(key: &TaskKey, _: &mut SqliteConnection) -> diesel::QueryResult<Self> {
        Ok(Task::new(key.clone()))
    }

    /// `task`: the [`TaskDetail`]; `sandboxProcesses`: the task's processes.
    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        if topic == processes::PROCESSES_TOPIC {
            return Ok(serde_json::to_value(processes::ProcessesSnapshot { processes: processes::list(db)? })?);
        }
        crate::actors::topic_snapshot(Self::KIND, topic, TOPIC, || self.build_detail(db))
    }

    fn on_wake(&mut self, ctx: &mut crate::runtime::EntityCtx<'_, Self>) {
        presence::rebuild(self, ctx);
        processes::resume(self, ctx);
        workspace::resume(self, ctx);
    }

    /// Presence: a viewer of the `task` topic arrived.
    fn on_connect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        presence::changed(self, ctx, conn);
    }

    fn on_disconnect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        presence::changed(self, ctx, conn);
    }

    fn can_passivate(&self) -> bool {
        self.provision.is_none()
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<InitializeTask>().accept::<ApplySessionSummary>().accept::<ApplyPullRequest>();
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
        processes::accept_remote(deliveries);
        workspace::accept_remote(deliveries);
    }
}
