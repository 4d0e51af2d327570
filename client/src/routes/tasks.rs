//! Tasks (`.../repos/{repo}/tasks`, `T`): creation, names, the view, actions (archive, push, pull request, merge
//! ...), the diff; sessions (`S`): creation, detail, settings, close, the session commands (messages, steer,
//! interrupt, stop); the caller's drafts and unread marks.

use reqwest::Method;

use super::orgs::name_of;
use super::{repo_path, seg, session_path, task_path};
use crate::client::json;
use crate::types::{
    ActionBody, ActiveSessionBody, CreateSessionBody, CreateTaskBody, DraftBody, InterruptBody, PullRequestOpened,
    RenameBody, RepoKey, SessionCommandOutcome, SessionDetail, SessionKey, SteerBody, TaskAction, TaskActionOutcome,
    TaskCreated, TaskKey, TaskNames, TaskNamesBody, TaskStatus, TaskView, TextBody, UnreadBody, UpdateSessionBody,
};
use crate::{Client, ClientError, Creating, Result};

/// The task view of a `POST T/{action}` answer that documents one.
fn view(outcome: TaskActionOutcome, action: TaskAction) -> Result<TaskView> {
    match outcome {
        TaskActionOutcome::View(view) => Ok(*view),
        TaskActionOutcome::Status(s) => Err(unexpected(action, &s)),
    }
}

/// The status of an `archive`, `unarchive` or `kill` answer.
fn status(outcome: TaskActionOutcome, action: TaskAction) -> Result<TaskStatus> {
    match outcome {
        TaskActionOutcome::Status(s) => Ok(s.status),
        TaskActionOutcome::View(v) => Err(unexpected(action, &v)),
    }
}

fn unexpected(action: TaskAction, got: &impl serde::Serialize) -> ClientError {
    let text = serde_json::to_string(got).unwrap_or_default();
    let source = <serde_json::Error as serde::de::Error>::custom("the other shape of the action's answer");
    ClientError::Decode { what: format!("POST T/{}: {text}", name_of(&action)), status: 200, source }
}

impl Client {
    /// `POST .../repos/{repo}/tasks`: creates a task; its first session's agent starts on the prompt (201).
    pub fn create_task(&self, repo: &RepoKey, body: &CreateTaskBody) -> Creating<'_, TaskCreated> {
        self.creating(format!("{}/tasks", repo_path(repo)), json(body))
    }

    /// `POST .../repos/{repo}/task-names`: the title and branch a creation would get now.
    pub async fn task_names(&self, repo: &RepoKey, body: &TaskNamesBody) -> Result<TaskNames> {
        self.call(Method::POST, &format!("{}/task-names", repo_path(repo)), json(body)).await
    }

    /// `GET T`: the task with the caller's overlay.
    pub async fn task(&self, task: &TaskKey) -> Result<TaskView> {
        self.call(Method::GET, &task_path(task), None).await
    }

    /// `PATCH T {title}`.
    pub async fn rename_task(&self, task: &TaskKey, title: &str) -> Result<TaskView> {
        self.call(Method::PATCH, &task_path(task), json(&RenameBody { title: title.to_owned() })).await
    }

    /// `PUT T/active-session`: the caller's open tab.
    pub async fn set_active_session(&self, task: &TaskKey, session_id: &str) -> Result<TaskView> {
        let body = ActiveSessionBody { session_id: session_id.to_owned() };
        self.call(Method::PUT, &format!("{}/active-session", task_path(task)), json(&body)).await
    }

    /// `GET T/diff?path=`: one file's diff against the base branch (empty when unchanged).
    pub async fn file_diff(&self, task: &TaskKey, path: &str) -> Result<String> {
        let url = format!("{}/diff?path={}", task_path(task), seg(path));
        let (_, _, bytes) = self.send(Method::GET, &url, None, Default::default()).await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }

    /// `POST T/{action}` with its body (`pull-request` answers otherwise: [`Client::open_pull_request`]).
    pub async fn task_action(
        &self,
        task: &TaskKey,
        action: TaskAction,
        body: &ActionBody,
    ) -> Result<TaskActionOutcome> {
        let path = format!("{}/{}", task_path(task), seg(&name_of(&action)));
        self.call(Method::POST, &path, json(body)).await
    }

    /// `POST T/archive {force}`: the task's status after it.
    pub async fn archive_task(&self, task: &TaskKey, force: bool) -> Result<TaskStatus> {
        let body = ActionBody { force, ..ActionBody::default() };
        status(self.task_action(task, TaskAction::Archive, &body).await?, TaskAction::Archive)
    }

    /// `POST T/unarchive`.
    pub async fn unarchive_task(&self, task: &TaskKey) -> Result<TaskStatus> {
        status(self.task_action(task, TaskAction::Unarchive, &ActionBody::default()).await?, TaskAction::Unarchive)
    }

    /// `POST T/kill`.
    pub async fn kill_task(&self, task: &TaskKey) -> Result<TaskStatus> {
        status(self.task_action(task, TaskAction::Kill, &ActionBody::default()).await?, TaskAction::Kill)
    }

    /// `POST T/{provision, unread, push, merge}`: an action without arguments answering the task view.
    pub async fn task_action_view(&self, task: &TaskKey, action: TaskAction) -> Result<TaskView> {
        view(self.task_action(task, action, &ActionBody::default()).await?, action)
    }

    /// `POST T/push`: commits what is not committed and pushes the branch.
    pub async fn push_task(&self, task: &TaskKey) -> Result<TaskView> {
        self.task_action_view(task, TaskAction::Push).await
    }

    /// `POST T/merge`: merges the task's pull request on GitHub.
    pub async fn merge_task(&self, task: &TaskKey) -> Result<TaskView> {
        self.task_action_view(task, TaskAction::Merge).await
    }

    /// `POST T/revert {path}`: restores one file as on the base branch.
    pub async fn revert_file(&self, task: &TaskKey, path: &str) -> Result<TaskView> {
        let body = ActionBody { path: Some(path.to_owned()), ..ActionBody::default() };
        view(self.task_action(task, TaskAction::Revert, &body).await?, TaskAction::Revert)
    }

    /// `POST T/switch {target}`.
    pub async fn switch_task(&self, task: &TaskKey, target: &str) -> Result<TaskView> {
        let body = ActionBody { target: Some(target.to_owned()), ..ActionBody::default() };
        view(self.task_action(task, TaskAction::Switch, &body).await?, TaskAction::Switch)
    }

    /// `POST T/pull-request`: pushes, then opens the pull request on GitHub (201 with its number).
    pub fn open_pull_request(&self, task: &TaskKey) -> Creating<'_, PullRequestOpened> {
        self.creating(format!("{}/pull-request", task_path(task)), None)
    }

    /// `POST T/sessions`: opens another session (201).
    pub fn create_session(&self, task: &TaskKey, body: &CreateSessionBody) -> Creating<'_, SessionDetail> {
        self.creating(format!("{}/sessions", task_path(task)), json(body))
    }

    /// `GET S`: the session with its transcript.
    pub async fn session(&self, session: &SessionKey) -> Result<SessionDetail> {
        self.call(Method::GET, &session_path(session), None).await
    }

    /// `PATCH S {name?, model?, mode?, thoughtLevel?}`.
    pub async fn update_session(&self, session: &SessionKey, body: &UpdateSessionBody) -> Result<SessionDetail> {
        self.call(Method::PATCH, &session_path(session), json(body)).await
    }

    /// `DELETE S`: closes the session (a task keeps one open).
    pub async fn close_session(&self, session: &SessionKey) -> Result<()> {
        self.call_empty(Method::DELETE, &session_path(session), None).await
    }

    /// `POST S/messages {text}`: a prompt; it runs now or after the running turn (202).
    pub fn send_message(&self, session: &SessionKey, text: &str) -> Creating<'_, SessionCommandOutcome> {
        self.creating(format!("{}/messages", session_path(session)), json(&TextBody { text: text.to_owned() }))
    }

    /// `POST S/steer {guidance}`: guidance for the running turn (202).
    pub async fn steer(&self, session: &SessionKey, guidance: &str) -> Result<SessionCommandOutcome> {
        let body = SteerBody { guidance: guidance.to_owned() };
        self.call(Method::POST, &format!("{}/steer", session_path(session)), json(&body)).await
    }

    /// `POST S/interrupt {dropQueued}`: cancels the running turn (202; `droppedPrompts`).
    pub async fn interrupt(&self, session: &SessionKey, drop_queued: bool) -> Result<SessionCommandOutcome> {
        let body = InterruptBody { drop_queued };
        self.call(Method::POST, &format!("{}/interrupt", session_path(session)), json(&body)).await
    }

    /// `POST S/stop`: stops the session's agent (202).
    pub async fn stop_session(&self, session: &SessionKey) -> Result<SessionCommandOutcome> {
        self.call(Method::POST, &format!("{}/stop", session_path(session)), None).await
    }

    /// `PUT S/draft`: the caller's unsent message.
    pub async fn save_draft(&self, session: &SessionKey, body: &DraftBody) -> Result<TaskView> {
        self.call(Method::PUT, &format!("{}/draft", session_path(session)), json(body)).await
    }

    /// `PUT S/unread {unread}`: the caller's unread mark.
    pub async fn set_unread(&self, session: &SessionKey, unread: bool) -> Result<TaskView> {
        self.call(Method::PUT, &format!("{}/unread", session_path(session)), json(&UnreadBody { unread })).await
    }
}
