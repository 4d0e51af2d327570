//! The typed methods of [`crate::Client`], one file per route group of docs/API.md: `account` (sign-in, the
//! caller's sessions, `/v1/me`, the model catalog), `orgs` (organizations, members, repositories, audit log, GitHub,
//! admin), `tasks` (tasks, their actions and pull requests, sessions, messages, drafts), `processes`, and `admin`
//! (the runtime inspector, for server admins).

mod account;
mod admin;
mod orgs;
mod processes;
mod tasks;

use crate::client::seg;
use crate::types::{RepoKey, SessionKey, TaskKey};

fn org_path(org: &str) -> String {
    format!("/v1/orgs/{}", seg(org))
}

fn repo_path(repo: &RepoKey) -> String {
    format!("{}/repos/{}", org_path(&repo.org), seg(&repo.repo))
}

/// `T = /v1/orgs/{org}/repos/{repo}/tasks/{task}`.
fn task_path(task: &TaskKey) -> String {
    format!("{}/tasks/{}", repo_path(&task.repo_key()), seg(&task.task))
}

/// `S = T/sessions/{session}`.
fn session_path(session: &SessionKey) -> String {
    format!("{}/sessions/{}", task_path(&session.task_key()), seg(&session.session))
}
