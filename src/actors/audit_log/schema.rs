//! The `events` table and the two queries on it: append one event, and list one page (a single query).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

diesel::table! {
    events (id) {
        id -> BigInt,
        kind -> Text,
        repo_id -> Nullable<Text>,
        task_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        user_id -> Nullable<Text>,
        payload -> Text,
        at -> BigInt,
    }
}

/// A row to insert; the payload is already serialised JSON.
#[derive(Insertable, Debug)]
#[diesel(table_name = events)]
pub struct NewEvent<'a> {
    pub kind: &'a str,
    pub repo_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub session_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub payload: String,
    pub at: i64,
}

/// A stored row, payload still as text.
#[derive(Queryable, Selectable, Debug, Clone, PartialEq)]
#[diesel(table_name = events)]
#[diesel(check_for_backend(diesel::sqlite::Sqlite))]
pub struct EventRow {
    pub id: i64,
    pub kind: String,
    pub repo_id: Option<String>,
    pub task_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub payload: String,
    pub at: i64,
}

/// Inserts `event` and returns its id.
pub fn insert(conn: &mut SqliteConnection, event: &NewEvent<'_>) -> QueryResult<i64> {
    diesel::insert_into(events::table).values(event).returning(events::id).get_result(conn)
}

/// What one page asks for. `task_id` is only meaningful with `repo_id` (the caller validates that).
#[derive(Debug, Clone, Copy)]
pub struct PageQuery<'a> {
    pub repo_id: Option<&'a str>,
    pub task_id: Option<&'a str>,
    pub before_id: Option<i64>,
    /// Rows to fetch (the page size plus one, to learn whether more exist).
    pub fetch: i64,
}

/// Up to `q.fetch` events matching the filters, newest first (id descending), in one query. Served by the primary key
/// without filters, by `(repo_id, id)` with a repository and by `(repo_id, task_id, id)` with a task.
pub fn page(conn: &mut SqliteConnection, q: PageQuery<'_>) -> QueryResult<Vec<EventRow>> {
    let mut query = events::table.select(EventRow::as_select()).into_boxed();
    if let Some(repo) = q.repo_id {
        query = query.filter(events::repo_id.eq(repo));
    }
    if let Some(task) = q.task_id {
        query = query.filter(events::task_id.eq(task));
    }
    if let Some(before) = q.before_id {
        query = query.filter(events::id.lt(before));
    }
    query.order(events::id.desc()).limit(q.fetch).load(conn)
}
