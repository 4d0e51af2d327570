//! The repository's tables and the small queries over them.

use diesel::dsl::{count_star, max};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::actors::organization::schema::{decode, encode};
use crate::actors::summary::TaskSummary;
use crate::actors::{DomainError, DomainResult};

diesel::table! {
    repo_meta (id) {
        id -> Integer,
        full_name -> Text,
        remote_url -> Text,
        default_branch -> Text,
        next_task_seq -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    tasks (task_id) {
        task_id -> Text,
        branch -> Text,
        summary -> Text,
        materialized -> Bool,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, PartialEq, Eq)]
#[diesel(table_name = repo_meta)]
#[serde(rename_all = "camelCase")]
pub struct RepoMeta {
    #[serde(skip)]
    pub id: i32,
    pub full_name: String,
    pub remote_url: String,
    pub default_branch: String,
    pub next_task_seq: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn meta(conn: &mut SqliteConnection) -> DomainResult<Option<RepoMeta>> {
    Ok(repo_meta::table.select(RepoMeta::as_select()).find(1).first(conn).optional()?)
}

pub fn require_meta(conn: &mut SqliteConnection, repo: &str) -> DomainResult<RepoMeta> {
    meta(conn)?.ok_or_else(|| DomainError::not_found("repository", repo))
}

pub fn branch_taken(conn: &mut SqliteConnection, branch: &str) -> DomainResult<bool> {
    Ok(diesel::select(diesel::dsl::exists(tasks::table.filter(tasks::branch.eq(branch)))).get_result(conn)?)
}

pub fn insert_task(conn: &mut SqliteConnection, summary: &TaskSummary, materialized: bool) -> DomainResult<()> {
    diesel::insert_into(tasks::table)
        .values((
            tasks::task_id.eq(&summary.task_id),
            tasks::branch.eq(&summary.branch),
            tasks::summary.eq(encode(summary)?),
            tasks::materialized.eq(materialized),
            tasks::created_at.eq(summary.created_at),
            tasks::updated_at.eq(summary.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// Replaces a task's summary; the branch is immutable and never rewritten. False if the task is unknown.
pub fn update_task(conn: &mut SqliteConnection, summary: &TaskSummary) -> DomainResult<bool> {
    let n = diesel::update(tasks::table.find(&summary.task_id))
        .set((tasks::summary.eq(encode(summary)?), tasks::updated_at.eq(summary.updated_at)))
        .execute(conn)?;
    Ok(n == 1)
}

pub fn task_summary(conn: &mut SqliteConnection, task_id: &str) -> DomainResult<Option<TaskSummary>> {
    let row: Option<String> = tasks::table.select(tasks::summary).find(task_id).first(conn).optional()?;
    row.map(|s| decode(&s)).transpose()
}

/// All task summaries, most recently updated first: one query.
pub fn list_tasks(conn: &mut SqliteConnection) -> DomainResult<Vec<TaskSummary>> {
    let rows: Vec<String> =
        tasks::table.select(tasks::summary).order((tasks::updated_at.desc(), tasks::task_id)).load(conn)?;
    rows.iter().map(|s| decode(s)).collect()
}

/// Task count and latest activity, for the summary pushed to the organization.
pub fn counters(conn: &mut SqliteConnection) -> DomainResult<(i64, Option<i64>)> {
    Ok(tasks::table.select((count_star(), max(tasks::updated_at))).first(conn)?)
}

/// The task on `branch`, with whether its actor exists.
pub fn task_on_branch(conn: &mut SqliteConnection, branch: &str) -> DomainResult<Option<(TaskSummary, bool)>> {
    let row: Option<(String, bool)> = tasks::table
        .select((tasks::summary, tasks::materialized))
        .filter(tasks::branch.eq(branch))
        .first(conn)
        .optional()?;
    row.map(|(s, m)| decode(&s).map(|t| (t, m))).transpose()
}

/// Next task id, reserved.
pub fn next_task_id(conn: &mut SqliteConnection, meta: &RepoMeta, now: i64) -> DomainResult<String> {
    diesel::update(repo_meta::table.find(1))
        .set((repo_meta::next_task_seq.eq(meta.next_task_seq + 1), repo_meta::updated_at.eq(now)))
        .execute(conn)?;
    Ok(format!("t{}", meta.next_task_seq))
}

/// A task by id, with whether its actor exists.
pub fn task_by_id(conn: &mut SqliteConnection, task_id: &str) -> DomainResult<Option<(TaskSummary, bool)>> {
    let row: Option<(String, bool)> =
        tasks::table.select((tasks::summary, tasks::materialized)).find(task_id).first(conn).optional()?;
    row.map(|(s, m)| decode(&s).map(|t| (t, m))).transpose()
}

pub fn set_materialized(conn: &mut SqliteConnection, task_id: &str) -> DomainResult<()> {
    diesel::update(tasks::table.find(task_id)).set(tasks::materialized.eq(true)).execute(conn)?;
    Ok(())
}
