//! Organizations: creation and the caller's list, the snapshot, members, repositories, the audit log, the GitHub
//! connection and sync, and the admin recovery operations.

use reqwest::Method;

use super::{org_path, repo_path, seg};
use crate::client::json;
use crate::types::{
    AddRepoBody, AdminOp, AdminOutcome, AuditPage, AuditQuery, ConnectBody, CreateOrgBody, GitHubConnection,
    InviteBody, MemberBody, MemberRow, OrganizationList, OrganizationSnapshot, RepoKey, RepoRow, SyncStarted,
    TaskSummary,
};
use crate::{Client, Creating, Result};

/// The name a unit enum of the API (`AdminOp`, `TaskAction`, `ProcessSignal`) has in a path.
pub(super) fn name_of(value: &impl serde::Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        // These enums serialise as strings by construction; anything else names no route, and the server says so.
        _ => String::new(),
    }
}

impl Client {
    /// `GET /v1/orgs`: the caller's organizations.
    pub async fn orgs(&self) -> Result<OrganizationList> {
        self.call(Method::GET, "/v1/orgs", None).await
    }

    /// `POST /v1/orgs`: creates an organization owned by the caller (201, its snapshot).
    pub fn create_org(&self, body: &CreateOrgBody) -> Creating<'_, OrganizationSnapshot> {
        self.creating("/v1/orgs".into(), json(body))
    }

    /// `GET /v1/orgs/{org}`: the organization snapshot.
    pub async fn org(&self, org: &str) -> Result<OrganizationSnapshot> {
        self.call(Method::GET, &org_path(org), None).await
    }

    /// `GET /v1/orgs/{org}/members`.
    pub async fn members(&self, org: &str) -> Result<Vec<MemberRow>> {
        self.call(Method::GET, &format!("{}/members", org_path(org)), None).await
    }

    /// `POST /v1/orgs/{org}/members`: adds the user who signed in with a login (admins).
    pub fn invite_member(&self, org: &str, body: &InviteBody) -> Creating<'_, MemberRow> {
        self.creating(format!("{}/members", org_path(org)), json(body))
    }

    /// `PUT /v1/orgs/{org}/members/{user}`: adds a signed-up user or changes a role (admins).
    pub async fn put_member(&self, org: &str, user_id: &str, body: &MemberBody) -> Result<MemberRow> {
        self.call(Method::PUT, &format!("{}/members/{}", org_path(org), seg(user_id)), json(body)).await
    }

    /// `DELETE /v1/orgs/{org}/members/{user}`: removes a member (admins), or leaves.
    pub async fn remove_member(&self, org: &str, user_id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &format!("{}/members/{}", org_path(org), seg(user_id)), None).await
    }

    /// `GET /v1/orgs/{org}/repos`.
    pub async fn repos(&self, org: &str) -> Result<Vec<RepoRow>> {
        self.call(Method::GET, &format!("{}/repos", org_path(org)), None).await
    }

    /// `POST /v1/orgs/{org}/repos`: imports a repository (admins).
    pub fn add_repo(&self, org: &str, body: &AddRepoBody) -> Creating<'_, RepoRow> {
        self.creating(format!("{}/repos", org_path(org)), json(body))
    }

    /// `GET /v1/orgs/{org}/repos/{repo}`.
    pub async fn repo(&self, repo: &RepoKey) -> Result<RepoRow> {
        self.call(Method::GET, &repo_path(repo), None).await
    }

    /// `GET /v1/orgs/{org}/repos/{repo}/tasks`: the repository's task summaries.
    pub async fn task_summaries(&self, repo: &RepoKey) -> Result<Vec<TaskSummary>> {
        self.call(Method::GET, &format!("{}/tasks", repo_path(repo)), None).await
    }

    /// `GET /v1/orgs/{org}/audit`: a page of audit events, newest first (`nextBefore` as `before` for the next).
    pub async fn audit(&self, org: &str, query: &AuditQuery) -> Result<AuditPage> {
        let mut params = Vec::new();
        if let Some(repo) = &query.repo {
            params.push(format!("repo={}", seg(repo)));
        }
        if let Some(task) = &query.task {
            params.push(format!("task={}", seg(task)));
        }
        if let Some(before) = query.before {
            params.push(format!("before={before}"));
        }
        if let Some(limit) = query.limit {
            params.push(format!("limit={limit}"));
        }
        let query = if params.is_empty() { String::new() } else { format!("?{}", params.join("&")) };
        self.call(Method::GET, &format!("{}/audit{query}", org_path(org)), None).await
    }

    /// `GET /v1/orgs/{org}/github`: the GitHub connection and its sync.
    pub async fn github(&self, org: &str) -> Result<GitHubConnection> {
        self.call(Method::GET, &format!("{}/github", org_path(org)), None).await
    }

    /// `POST /v1/orgs/{org}/github/connect`: links a GitHub account the caller controls, then syncs (202).
    pub async fn connect_github(&self, org: &str, body: &ConnectBody) -> Result<SyncStarted> {
        self.call(Method::POST, &format!("{}/github/connect", org_path(org)), json(body)).await
    }

    /// `POST /v1/orgs/{org}/github/sync`: starts a sync (202).
    pub async fn sync_github(&self, org: &str) -> Result<SyncStarted> {
        self.call(Method::POST, &format!("{}/github/sync", org_path(org)), None).await
    }

    /// `POST /v1/orgs/{org}/admin/{op}`: a recovery operation (admins); `None` for `clear-github` (204).
    pub async fn admin(&self, org: &str, op: AdminOp) -> Result<Option<AdminOutcome>> {
        let path = format!("{}/admin/{}", org_path(org), seg(&name_of(&op)));
        if matches!(op, AdminOp::ClearGithub) {
            return self.call_empty(Method::POST, &path, None).await.map(|()| None);
        }
        self.call(Method::POST, &path, None).await.map(Some)
    }
}
