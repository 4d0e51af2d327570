//! Messages of the repository: its initialisation, task creation (it owns the task index, assigns task ids and keeps
//! branches unique) and the task summaries its tasks push up.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::naming;
use super::schema::{self, repo_meta};
use super::Repository;
use crate::actors::organization::ApplyRepoSummary;
use crate::actors::summary::{PullRequestSummary, TaskStatus, TaskSummary};
use crate::actors::task::{ApplyPullRequest, InitializeTask};
use crate::actors::{models, now_ms, validate, Audit, DomainError, DomainResult, TaskKey};
use crate::runtime::{Delivery, Mutation, Read, Tx};

/// The title and branch a task would get: as given (validated) or derived from the prompt, the branch made unique
/// in this repository. Shared by [`CreateTask`] and [`PreviewTaskNames`] so a preview never disagrees with creation.
fn assign_names(
    conn: &mut SqliteConnection,
    prompt: &str,
    title: Option<&str>,
    branch: Option<&str>,
) -> DomainResult<TaskNames> {
    let title = match title {
        Some(t) => {
            validate::display_name("title", t)?;
            t.trim().to_owned()
        }
        None => naming::derive_title(prompt),
    };
    let branch = match branch {
        Some(b) => {
            validate::branch(b)?;
            if schema::branch_taken(conn, b)? {
                return Err(DomainError::Conflict(format!("branch {b:?} already has a task")));
            }
            b.to_owned()
        }
        None => {
            let base = naming::derive_branch(&title);
            let mut err = None;
            let b = naming::unique_branch(&base, |b| {
                schema::branch_taken(conn, b).unwrap_or_else(|e| {
                    err = Some(e);
                    false
                })
            });
            if let Some(e) = err {
                return Err(e);
            }
            b
        }
    };
    Ok(TaskNames { title, branch })
}

/// A task's title and branch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct TaskNames {
    pub title: String,
    pub branch: String,
}

/// What [`CreateTask`] would name a task now (a read: nothing is reserved, so a concurrent creation may take the
/// branch first and creation then picks the next free one).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct PreviewTaskNames {
    pub prompt: String,
    pub title: Option<String>,
    pub branch: Option<String>,
}

impl Read for PreviewTaskNames {
    type Entity = Repository;
    type Output = TaskNames;
    type Error = DomainError;
    fn read(self, repo: &Repository, db: &mut SqliteConnection) -> DomainResult<TaskNames> {
        schema::require_meta(db, &repo.key.repo)?;
        validate::text("prompt", &self.prompt)?;
        assign_names(db, &self.prompt, self.title.as_deref(), self.branch.as_deref())
    }
}

/// Sent by the organization when it imports the repository. Idempotent.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitializeRepository {
    pub full_name: String,
    pub remote_url: String,
    pub default_branch: String,
}

impl Mutation for InitializeRepository {
    type Entity = Repository;
    type Output = ();
    type Error = DomainError;
    fn apply(self, _: &Repository, tx: &mut Tx<'_>) -> DomainResult<()> {
        let now = now_ms();
        diesel::insert_or_ignore_into(repo_meta::table)
            .values((
                repo_meta::id.eq(1),
                repo_meta::full_name.eq(&self.full_name),
                repo_meta::remote_url.eq(&self.remote_url),
                repo_meta::default_branch.eq(&self.default_branch),
                repo_meta::created_at.eq(now),
                repo_meta::updated_at.eq(now),
            ))
            .execute(tx.conn())?;
        Ok(())
    }
}

impl Delivery for InitializeRepository {
    const NAME: &'static str = "repository.initialize";
}

/// Creates a task from a prompt. Title and branch are kept as given (validated) or derived; the branch must be
/// unused and never changes afterwards.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CreateTask {
    pub prompt: String,
    pub title: Option<String>,
    pub branch: Option<String>,
    /// Model of the first session; the task uses the catalog default when `None`.
    pub model: Option<String>,
    pub user_id: Option<String>,
}

/// What `CreateTask` assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreatedTask {
    pub task: TaskKey,
    pub title: String,
    pub branch: String,
    pub session_id: String,
    /// The first session's `session` topic version once the task exists with its prompt, before the first turn
    /// starts (filled in by [`Domain::create_task`](crate::actors::Domain::create_task); 0 from the mutation alone):
    /// a client subscribing with `after` this version gets the turn's start as its first frame.
    pub session_version: u64,
}

/// The first session every task starts with.
pub const FIRST_SESSION: &str = "s1";

impl Mutation for CreateTask {
    type Entity = Repository;
    type Output = (CreatedTask, InitializeTask);
    type Error = DomainError;
    fn apply(self, repo: &Repository, tx: &mut Tx<'_>) -> DomainResult<(CreatedTask, InitializeTask)> {
        let meta = schema::require_meta(tx.conn(), &repo.key.repo)?;
        validate::text("prompt", &self.prompt)?;
        let model = self.model.clone().unwrap_or_else(|| models::default_for(tx));
        if !models::is_allowed(tx, &model) {
            return Err(DomainError::invalid("model", format!("unknown model {model:?}")));
        }
        let TaskNames { title, branch } =
            assign_names(tx.conn(), &self.prompt, self.title.as_deref(), self.branch.as_deref())?;
        let now = now_ms();
        let task_id = schema::next_task_id(tx.conn(), &meta, now)?;
        let summary = TaskSummary {
            repo_id: repo.key.repo.clone(),
            task_id: task_id.clone(),
            title: title.clone(),
            branch: branch.clone(),
            status: TaskStatus::InitBootstrapDb,
            pull_request: None,
            sessions: Vec::new(),
            created_at: now,
            updated_at: now,
        };
        schema::insert_task(tx.conn(), &summary, true)?;
        let key = repo.key.task(&task_id);
        let init = InitializeTask {
            title: title.clone(),
            branch: branch.clone(),
            prompt: self.prompt.clone(),
            explicit_title: self.title.is_some(),
            explicit_branch: self.branch.is_some(),
            model,
            user_id: self.user_id.clone(),
            created_at: now,
            first_session: true,
            pull_request: None,
        };
        tx.send(&key, &init)?;
        push_up(tx, repo, vec![summary])?;
        let audit = Audit::task(&key).by(self.user_id.as_deref());
        audit.append(tx, "task.created", serde_json::json!({ "title": title, "branch": branch }))?;
        let created =
            CreatedTask { task: key, title, branch, session_id: FIRST_SESSION.to_owned(), session_version: 0 };
        Ok((created, init))
    }
}

/// Sends the repository's counters and the changed task summaries to the organization.
fn push_up(tx: &mut Tx<'_>, repo: &Repository, changed: Vec<TaskSummary>) -> DomainResult<()> {
    let (count, latest) = schema::counters(tx.conn())?;
    let summary = ApplyRepoSummary {
        repo_id: repo.key.repo.clone(),
        task_count: count as i32,
        latest_activity_at: latest,
        changed,
    };
    tx.send(&repo.key.org, &summary)?;
    Ok(())
}

/// A task's summary, pushed up whenever the task changes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyTaskSummary {
    pub summary: TaskSummary,
}

impl Mutation for ApplyTaskSummary {
    type Entity = Repository;
    type Output = ();
    type Error = DomainError;
    fn apply(self, repo: &Repository, tx: &mut Tx<'_>) -> DomainResult<()> {
        let Some(current) = schema::task_summary(tx.conn(), &self.summary.task_id)? else {
            return Err(DomainError::not_found("task", &self.summary.task_id));
        };
        // Branches never change: keep the index's branch whatever the summary says.
        let summary = TaskSummary { branch: current.branch, ..self.summary };
        schema::update_task(tx.conn(), &summary)?;
        push_up(tx, repo, vec![summary])
    }
}

impl Delivery for ApplyTaskSummary {
    const NAME: &'static str = "repository.apply_task_summary";
}

/// Every task summary of the repository (one query).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ListTaskSummaries;

impl Read for ListTaskSummaries {
    type Entity = Repository;
    type Output = Vec<TaskSummary>;
    type Error = DomainError;
    fn read(self, repo: &Repository, db: &mut SqliteConnection) -> DomainResult<Vec<TaskSummary>> {
        schema::require_meta(db, &repo.key.repo)?;
        schema::list_tasks(db)
    }
}

/// One task's index entry.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetTaskSummary {
    pub task_id: String,
}

impl Read for GetTaskSummary {
    type Entity = Repository;
    type Output = TaskSummary;
    type Error = DomainError;
    fn read(self, _: &Repository, db: &mut SqliteConnection) -> DomainResult<TaskSummary> {
        schema::task_summary(db, &self.task_id)?.ok_or_else(|| DomainError::not_found("task", &self.task_id))
    }
}

/// Whether a task of the index already has its own actor (`NotFound` if the task does not exist): lets callers skip
/// the write of [`MaterializeTask`] on every use.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct IsTaskMaterialized {
    pub task_id: String,
}

impl Read for IsTaskMaterialized {
    type Entity = Repository;
    type Output = bool;
    type Error = DomainError;
    fn read(self, _: &Repository, db: &mut SqliteConnection) -> DomainResult<bool> {
        let found = schema::task_by_id(db, &self.task_id)?;
        found.map(|(_, materialized)| materialized).ok_or_else(|| DomainError::not_found("task", &self.task_id))
    }
}

/// Pull requests of this repository, from the GitHub sync or a webhook: each updates the task owning its branch, or
/// (if open and no task claims the branch) becomes a task row in the index at once. The task's own actor is only
/// told when it exists; a lazily created task gets one on first use, so thousands of PRs spawn no actors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ApplyPullRequests {
    pub pull_requests: Vec<PullRequestSummary>,
}

impl Mutation for ApplyPullRequests {
    type Entity = Repository;
    /// Tasks created.
    type Output = usize;
    type Error = DomainError;
    fn apply(self, repo: &Repository, tx: &mut Tx<'_>) -> DomainResult<usize> {
        let mut meta = schema::require_meta(tx.conn(), &repo.key.repo)?;
        let now = now_ms();
        let mut changed = Vec::new();
        let mut created = 0;
        for pr in self.pull_requests {
            match schema::task_on_branch(tx.conn(), &pr.head_ref)? {
                Some((mut summary, materialized)) => {
                    if summary.pull_request.as_ref() == Some(&pr) {
                        continue;
                    }
                    summary.pull_request = Some(pr.clone());
                    summary.updated_at = now;
                    schema::update_task(tx.conn(), &summary)?;
                    if materialized {
                        tx.send(&repo.key.task(&summary.task_id), &ApplyPullRequest { pull_request: pr })?;
                    }
                    changed.push(summary);
                }
                None if pr.state == "open" => {
                    let task_id = schema::next_task_id(tx.conn(), &meta, now)?;
                    meta.next_task_seq += 1;
                    let summary = TaskSummary {
                        repo_id: repo.key.repo.clone(),
                        task_id,
                        title: pr.title.clone(),
                        branch: pr.head_ref.clone(),
                        status: TaskStatus::InitComplete,
                        pull_request: Some(pr),
                        sessions: Vec::new(),
                        created_at: now,
                        updated_at: now,
                    };
                    schema::insert_task(tx.conn(), &summary, false)?;
                    created += 1;
                    changed.push(summary);
                }
                None => {}
            }
        }
        if !changed.is_empty() {
            push_up(tx, repo, changed)?;
        }
        Ok(created)
    }
}

impl Delivery for ApplyPullRequests {
    const NAME: &'static str = "repository.apply_pull_requests";

    /// The sync may reach a repository before the organization initialised it: retry until it is.
    fn is_retryable(error: &DomainError) -> bool {
        matches!(error, DomainError::NotFound { what: "repository", .. })
    }
}

/// Gives a task created lazily from a pull request its own actor, on first use: marks it materialised and returns
/// the initialisation to apply (also queued in the outbox). `None` if the task already has its actor.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct MaterializeTask {
    pub task_id: String,
}

impl Mutation for MaterializeTask {
    type Entity = Repository;
    type Output = Option<InitializeTask>;
    type Error = DomainError;
    fn apply(self, repo: &Repository, tx: &mut Tx<'_>) -> DomainResult<Option<InitializeTask>> {
        let Some((summary, materialized)) = schema::task_by_id(tx.conn(), &self.task_id)? else {
            return Err(DomainError::not_found("task", &self.task_id));
        };
        if materialized {
            return Ok(None);
        }
        schema::set_materialized(tx.conn(), &self.task_id)?;
        let prompt = summary.pull_request.as_ref().map_or_else(|| summary.title.clone(), |pr| pr.title.clone());
        let init = InitializeTask {
            title: summary.title.clone(),
            branch: summary.branch.clone(),
            prompt,
            explicit_title: false,
            explicit_branch: true,
            model: models::default_for(tx),
            user_id: None,
            created_at: summary.created_at,
            first_session: false,
            pull_request: summary.pull_request.clone(),
        };
        tx.send(&repo.key.task(&self.task_id), &init)?;
        Ok(Some(init))
    }
}

crate::actors::remote::remote_messages! {
    super::Repository;
    mutations: InitializeRepository, CreateTask, ApplyTaskSummary, ApplyPullRequests, MaterializeTask;
    reads: PreviewTaskNames, ListTaskSummaries, GetTaskSummary, IsTaskMaterialized;
}
