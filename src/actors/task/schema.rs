//! The task's tables and the small queries over them.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::actors::organization::schema::{decode, encode};
use crate::actors::summary::{PullRequestSummary, SessionStatus, SessionSummary, TaskStatus};
use crate::actors::{DomainError, DomainResult};

diesel::table! {
    task (id) {
        id -> Integer,
        title -> Text,
        branch -> Text,
        prompt -> Text,
        status -> Text,
        sandbox_provider -> Text,
        explicit_title -> Bool,
        explicit_branch -> Bool,
        pull_request -> Nullable<Text>,
        next_session_seq -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    task_runtime (id) {
        id -> Integer,
        active_sandbox_id -> Nullable<Text>,
        switch_target -> Nullable<Text>,
        cwd -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    task_sessions (session_id) {
        session_id -> Text,
        name -> Text,
        model -> Text,
        status -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = task)]
pub struct TaskRow {
    pub id: i32,
    pub title: String,
    pub branch: String,
    pub prompt: String,
    pub status: String,
    pub sandbox_provider: String,
    pub explicit_title: bool,
    pub explicit_branch: bool,
    pub pull_request: Option<String>,
    pub next_session_seq: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TaskRow {
    pub fn status(&self) -> TaskStatus {
        TaskStatus::parse(&self.status).unwrap_or(TaskStatus::Error)
    }

    pub fn pull_request(&self) -> DomainResult<Option<PullRequestSummary>> {
        self.pull_request.as_deref().map(decode).transpose()
    }
}

#[derive(
    Debug, Clone, Queryable, Selectable, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema,
)]
#[diesel(table_name = task_runtime)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeRow {
    #[serde(skip)]
    pub id: i32,
    pub active_sandbox_id: Option<String>,
    pub switch_target: Option<String>,
    pub cwd: Option<String>,
    pub updated_at: i64,
}

#[derive(Queryable, Selectable)]
#[diesel(table_name = task_sessions)]
struct SessionRow {
    session_id: String,
    name: String,
    model: String,
    status: String,
    created_at: i64,
    updated_at: i64,
}

pub fn row(conn: &mut SqliteConnection) -> DomainResult<Option<TaskRow>> {
    Ok(task::table.select(TaskRow::as_select()).find(1).first(conn).optional()?)
}

pub fn require_row(conn: &mut SqliteConnection, task_id: &str) -> DomainResult<TaskRow> {
    row(conn)?.ok_or_else(|| DomainError::not_found("task", task_id))
}

pub fn runtime(conn: &mut SqliteConnection) -> DomainResult<Option<RuntimeRow>> {
    Ok(task_runtime::table.select(RuntimeRow::as_select()).find(1).first(conn).optional()?)
}

/// The session index in creation order: one query.
pub fn sessions(conn: &mut SqliteConnection) -> DomainResult<Vec<SessionSummary>> {
    let rows: Vec<SessionRow> = task_sessions::table
        .select(SessionRow::as_select())
        .order((task_sessions::created_at, task_sessions::session_id))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|r| SessionSummary {
            status: SessionStatus::parse(&r.status).unwrap_or(SessionStatus::Error),
            session_id: r.session_id,
            name: r.name,
            model: r.model,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
        .collect())
}

pub fn upsert_session(conn: &mut SqliteConnection, s: &SessionSummary) -> DomainResult<()> {
    diesel::insert_into(task_sessions::table)
        .values((
            task_sessions::session_id.eq(&s.session_id),
            task_sessions::name.eq(&s.name),
            task_sessions::model.eq(&s.model),
            task_sessions::status.eq(s.status.as_str()),
            task_sessions::created_at.eq(s.created_at),
            task_sessions::updated_at.eq(s.updated_at),
        ))
        .on_conflict(task_sessions::session_id)
        .do_update()
        .set((
            task_sessions::name.eq(&s.name),
            task_sessions::model.eq(&s.model),
            task_sessions::status.eq(s.status.as_str()),
            task_sessions::updated_at.eq(s.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_status(conn: &mut SqliteConnection, status: TaskStatus, now: i64) -> DomainResult<()> {
    diesel::update(task::table.find(1))
        .set((task::status.eq(status.as_str()), task::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn set_pull_request(conn: &mut SqliteConnection, pr: &PullRequestSummary, now: i64) -> DomainResult<()> {
    diesel::update(task::table.find(1))
        .set((task::pull_request.eq(Some(encode(pr)?)), task::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn touch(conn: &mut SqliteConnection, now: i64) -> DomainResult<()> {
    diesel::update(task::table.find(1)).set(task::updated_at.eq(now)).execute(conn)?;
    Ok(())
}
