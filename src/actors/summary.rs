//! Types that travel between coordinator levels: statuses, session and task summaries, pull request summaries.
//! Children push these up to their direct coordinator only (session -> task -> repository -> organization).

use serde::{Deserialize, Serialize};

/// The canonical task status (domain rule 6). Archive and kill go through their intermediate steps in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    InitBootstrapDb,
    InitEnqueueProvision,
    InitComplete,
    Running,
    Idle,
    Error,
    ArchiveStopStatusSync,
    ArchiveReleaseSandbox,
    ArchiveFinalize,
    Archived,
    KillDestroySandbox,
    KillFinalize,
    Killed,
}

impl TaskStatus {
    pub const ARCHIVE_STEPS: [TaskStatus; 4] = [
        TaskStatus::ArchiveStopStatusSync,
        TaskStatus::ArchiveReleaseSandbox,
        TaskStatus::ArchiveFinalize,
        TaskStatus::Archived,
    ];
    pub const KILL_STEPS: [TaskStatus; 3] =
        [TaskStatus::KillDestroySandbox, TaskStatus::KillFinalize, TaskStatus::Killed];

    pub fn as_str(self) -> &'static str {
        match self {
            TaskStatus::InitBootstrapDb => "init_bootstrap_db",
            TaskStatus::InitEnqueueProvision => "init_enqueue_provision",
            TaskStatus::InitComplete => "init_complete",
            TaskStatus::Running => "running",
            TaskStatus::Idle => "idle",
            TaskStatus::Error => "error",
            TaskStatus::ArchiveStopStatusSync => "archive_stop_status_sync",
            TaskStatus::ArchiveReleaseSandbox => "archive_release_sandbox",
            TaskStatus::ArchiveFinalize => "archive_finalize",
            TaskStatus::Archived => "archived",
            TaskStatus::KillDestroySandbox => "kill_destroy_sandbox",
            TaskStatus::KillFinalize => "kill_finalize",
            TaskStatus::Killed => "killed",
        }
    }

    pub fn parse(s: &str) -> Option<TaskStatus> {
        use TaskStatus::*;
        [
            InitBootstrapDb,
            InitEnqueueProvision,
            InitComplete,
            Running,
            Idle,
            Error,
            ArchiveStopStatusSync,
            ArchiveReleaseSandbox,
            ArchiveFinalize,
            Archived,
            KillDestroySandbox,
            KillFinalize,
            Killed,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }

    /// Archive/kill in progress or done: session activity no longer changes the status.
    pub fn is_winding_down(self) -> bool {
        Self::ARCHIVE_STEPS.contains(&self) || Self::KILL_STEPS.contains(&self)
    }

    /// The status derived from all sessions (rule 4): running if any runs, else error if any failed, else idle.
    pub fn derive(sessions: &[SessionSummary]) -> TaskStatus {
        let open = sessions.iter().filter(|s| s.status != SessionStatus::Closed);
        let mut any_error = false;
        for s in open {
            match s.status {
                SessionStatus::Running => return TaskStatus::Running,
                SessionStatus::Error => any_error = true,
                _ => {}
            }
        }
        if any_error {
            TaskStatus::Error
        } else {
            TaskStatus::Idle
        }
    }
}

/// A session's lifecycle as its task sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SessionStatus {
    /// Created; no turn has run yet.
    Ready,
    Running,
    Idle,
    Error,
    Stopped,
    Closed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionStatus::Ready => "ready",
            SessionStatus::Running => "running",
            SessionStatus::Idle => "idle",
            SessionStatus::Error => "error",
            SessionStatus::Stopped => "stopped",
            SessionStatus::Closed => "closed",
        }
    }

    pub fn parse(s: &str) -> Option<SessionStatus> {
        use SessionStatus::*;
        [Ready, Running, Idle, Error, Stopped, Closed].into_iter().find(|t| t.as_str() == s)
    }
}

/// What a task's index (and so the task detail, the repository and the organization) shows of one session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    pub session_id: String,
    pub name: String,
    pub model: String,
    pub status: SessionStatus,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A pull request as task data (rule 10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PullRequestSummary {
    pub number: i64,
    pub title: String,
    /// `open`, `closed` or `merged`.
    pub state: String,
    pub url: String,
    pub head_ref: String,
    pub base_ref: String,
    pub is_draft: bool,
    pub author_login: Option<String>,
    pub updated_at: i64,
}

/// One task as its repository and organization show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TaskSummary {
    pub repo_id: String,
    pub task_id: String,
    pub title: String,
    pub branch: String,
    pub status: TaskStatus,
    pub pull_request: Option<PullRequestSummary>,
    pub sessions: Vec<SessionSummary>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(status: SessionStatus) -> SessionSummary {
        SessionSummary {
            session_id: "s".into(),
            name: "n".into(),
            model: "m".into(),
            status,
            created_at: 0,
            updated_at: 0,
        }
    }

    #[test]
    fn task_status_derives_from_all_sessions() {
        use SessionStatus::*;
        assert_eq!(TaskStatus::derive(&[s(Idle), s(Running)]), TaskStatus::Running);
        assert_eq!(TaskStatus::derive(&[s(Error), s(Idle)]), TaskStatus::Error);
        assert_eq!(TaskStatus::derive(&[s(Ready), s(Idle)]), TaskStatus::Idle);
        assert_eq!(TaskStatus::derive(&[s(Closed)]), TaskStatus::Idle);
        assert_eq!(TaskStatus::derive(&[s(Error), s(Closed)]), TaskStatus::Error);
    }

    #[test]
    fn statuses_round_trip_their_names() {
        for t in TaskStatus::ARCHIVE_STEPS.iter().chain(&TaskStatus::KILL_STEPS) {
            assert_eq!(TaskStatus::parse(t.as_str()), Some(*t));
            assert!(t.is_winding_down());
        }
        assert_eq!(serde_json::to_string(&TaskStatus::InitBootstrapDb).unwrap(), "\"init_bootstrap_db\"");
        assert_eq!(SessionStatus::parse("running"), Some(SessionStatus::Running));
    }
}
