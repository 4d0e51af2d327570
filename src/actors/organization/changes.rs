//! How the organization's writes reach the `organization` topic: as row-level patches of the snapshot's lists, not
//! the whole snapshot (with 1,000 tasks it is ~80 KB, and every task's status change used to resend it to every
//! client). Each helper writes or reads the rows it changes and says where they sit in the snapshot's order, so the
//! operations are exact: `add`/`remove` at an index of `taskSummaries` (newest activity first) and `repos` (by full
//! name), `replace` of `profile` or `members` (small, and rarely changed).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::schema::{self, repos, task_summaries};
use crate::actors::summary::TaskSummary;
use crate::actors::{DomainError, DomainResult};
use crate::runtime::PatchOp;

fn to_json<T: serde::Serialize>(value: &T) -> DomainResult<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| DomainError::Db(diesel::result::Error::SerializationError(Box::new(e))))
}

/// `replace` of the member list, as it is now.
pub(super) fn members(conn: &mut SqliteConnection) -> DomainResult<PatchOp> {
    Ok(PatchOp::replace("/members", to_json(&schema::list_members(conn)?)?))
}

/// `replace` of the profile, as it is now.
pub(super) fn profile(conn: &mut SqliteConnection, org: &str) -> DomainResult<PatchOp> {
    Ok(PatchOp::replace("/profile", to_json(&schema::require_profile(conn, org)?)?))
}

/// Index of a repository in the snapshot's `repos` (ordered by full name, which is unique).
fn repo_index(conn: &mut SqliteConnection, full_name: &str) -> DomainResult<i64> {
    Ok(repos::table.filter(repos::full_name.lt(full_name)).count().get_result(conn)?)
}

/// The operation for a repository row that was just inserted (`added`) or updated.
pub(super) fn repo(conn: &mut SqliteConnection, repo_id: &str, added: bool) -> DomainResult<PatchOp> {
    let row = schema::find_repo(conn, repo_id)?.ok_or_else(|| DomainError::not_found("repository", repo_id))?;
    let path = format!("/repos/{}", repo_index(conn, &row.full_name)?);
    let value = to_json(&row)?;
    Ok(if added { PatchOp::add(path, value) } else { PatchOp::replace(path, value) })
}

/// Index of a task summary in the snapshot's `taskSummaries` (ordered by `updated_at` descending, then repository
/// and task id: `schema::list_task_summaries`): the rows that sort before it.
fn summary_index(conn: &mut SqliteConnection, updated_at: i64, repo_id: &str, task_id: &str) -> DomainResult<i64> {
    use task_summaries::dsl as t;
    let before = t::updated_at.gt(updated_at).or(t::updated_at
        .eq(updated_at)
        .and(t::repo_id.lt(repo_id).or(t::repo_id.eq(repo_id).and(t::task_id.lt(task_id)))));
    Ok(t::task_summaries.filter(before).count().get_result(conn)?)
}

/// Stores a task summary and adds the operations that move it in the snapshot: `add` for a new task; for a known
/// one `replace` where it stays, or `remove` + `add` when its activity moves it up the list.
pub(super) fn put_task_summary(
    conn: &mut SqliteConnection,
    summary: &TaskSummary,
    ops: &mut Vec<PatchOp>,
) -> DomainResult<()> {
    let (repo_id, task_id) = (summary.repo_id.as_str(), summary.task_id.as_str());
    let old: Option<i64> =
        task_summaries::table.select(task_summaries::updated_at).find((repo_id, task_id)).first(conn).optional()?;
    let old_index = old.map(|u| summary_index(conn, u, repo_id, task_id)).transpose()?;
    schema::upsert_task_summary(conn, summary)?;
    let index = summary_index(conn, summary.updated_at, repo_id, task_id)?;
    let value = to_json(summary)?;
    match old_index {
        Some(i) if i == index => ops.push(PatchOp::replace(format!("/taskSummaries/{i}"), value)),
        Some(i) => {
            ops.push(PatchOp::remove(format!("/taskSummaries/{i}")));
            ops.push(PatchOp::add(format!("/taskSummaries/{index}"), value));
        }
        None => ops.push(PatchOp::add(format!("/taskSummaries/{index}"), value)),
    }
    Ok(())
}
