//! The organization's tables and the small queries over them.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::actors::summary::TaskSummary;
use crate::actors::{DomainError, DomainResult};

diesel::table! {
    organization_profile (id) {
        id -> Integer,
        login -> Text,
        display_name -> Text,
        kind -> Text,
        installation_id -> Nullable<BigInt>,
        sync_status -> Text,
        sync_phase -> Nullable<Text>,
        sync_synced -> Integer,
        sync_total -> Integer,
        sync_generation -> Integer,
        sync_error -> Nullable<Text>,
        last_sync_at -> Nullable<BigInt>,
        billing_plan -> Text,
        billing_status -> Text,
        billing_seats -> Integer,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    repos (repo_id) {
        repo_id -> Text,
        full_name -> Text,
        remote_url -> Text,
        default_branch -> Text,
        task_count -> Integer,
        latest_activity_at -> Nullable<BigInt>,
        created_at -> BigInt,
    }
}

diesel::table! {
    task_summaries (repo_id, task_id) {
        repo_id -> Text,
        task_id -> Text,
        summary -> Text,
        updated_at -> BigInt,
    }
}

diesel::joinable!(task_summaries -> repos (repo_id));
diesel::allow_tables_to_appear_in_same_query!(repos, task_summaries);

#[derive(
    Debug, Clone, Queryable, Selectable, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema,
)]
#[diesel(table_name = organization_profile)]
#[serde(rename_all = "camelCase")]
pub struct ProfileRow {
    #[serde(skip)]
    pub id: i32,
    pub login: String,
    pub display_name: String,
    pub kind: String,
    pub installation_id: Option<i64>,
    pub sync_status: String,
    pub sync_phase: Option<String>,
    pub sync_synced: i32,
    pub sync_total: i32,
    pub sync_generation: i32,
    pub sync_error: Option<String>,
    pub last_sync_at: Option<i64>,
    pub billing_plan: String,
    pub billing_status: String,
    pub billing_seats: i32,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(
    Debug,
    Clone,
    Queryable,
    Selectable,
    Insertable,
    serde::Serialize,
    serde::Deserialize,
    PartialEq,
    Eq,
    utoipa::ToSchema,
)]
#[diesel(table_name = repos)]
#[serde(rename_all = "camelCase")]
pub struct RepoRow {
    pub repo_id: String,
    pub full_name: String,
    pub remote_url: String,
    pub default_branch: String,
    pub task_count: i32,
    pub latest_activity_at: Option<i64>,
    pub created_at: i64,
}

pub fn profile(conn: &mut SqliteConnection) -> DomainResult<Option<ProfileRow>> {
    Ok(organization_profile::table.select(ProfileRow::as_select()).find(1).first(conn).optional()?)
}

/// The profile, or `NotFound` if the organization was never created.
pub fn require_profile(conn: &mut SqliteConnection, org: &str) -> DomainResult<ProfileRow> {
    profile(conn)?.ok_or_else(|| DomainError::not_found("organization", org))
}

pub fn list_repos(conn: &mut SqliteConnection) -> DomainResult<Vec<RepoRow>> {
    Ok(repos::table.select(RepoRow::as_select()).order(repos::full_name).load(conn)?)
}

pub fn find_repo(conn: &mut SqliteConnection, repo_id: &str) -> DomainResult<Option<RepoRow>> {
    Ok(repos::table.select(RepoRow::as_select()).find(repo_id).first(conn).optional()?)
}

/// Every task summary of every repository, newest activity first: one query.
pub fn list_task_summaries(conn: &mut SqliteConnection) -> DomainResult<Vec<TaskSummary>> {
    let rows: Vec<String> = task_summaries::table
        .select(task_summaries::summary)
        .order((task_summaries::updated_at.desc(), task_summaries::repo_id, task_summaries::task_id))
        .load(conn)?;
    rows.iter().map(|s| decode(s)).collect()
}

pub fn upsert_task_summary(conn: &mut SqliteConnection, summary: &TaskSummary) -> DomainResult<()> {
    let json = encode(summary)?;
    diesel::insert_into(task_summaries::table)
        .values((
            task_summaries::repo_id.eq(&summary.repo_id),
            task_summaries::task_id.eq(&summary.task_id),
            task_summaries::summary.eq(&json),
            task_summaries::updated_at.eq(summary.updated_at),
        ))
        .on_conflict((task_summaries::repo_id, task_summaries::task_id))
        .do_update()
        .set((task_summaries::summary.eq(&json), task_summaries::updated_at.eq(summary.updated_at)))
        .execute(conn)?;
    Ok(())
}

pub fn delete_repo_summaries(conn: &mut SqliteConnection, repo_id: &str) -> DomainResult<()> {
    diesel::delete(task_summaries::table.filter(task_summaries::repo_id.eq(repo_id))).execute(conn)?;
    Ok(())
}

pub(crate) fn encode<T: serde::Serialize>(value: &T) -> DomainResult<String> {
    serde_json::to_string(value).map_err(|e| DomainError::Db(diesel::result::Error::SerializationError(Box::new(e))))
}

pub(crate) fn decode<T: serde::de::DeserializeOwned>(text: &str) -> DomainResult<T> {
    serde_json::from_str(text).map_err(|e| DomainError::Db(diesel::result::Error::DeserializationError(Box::new(e))))
}

diesel::table! {
    members (user_id) {
        user_id -> Text,
        login -> Text,
        role -> Text,
        state -> Text,
        updated_at -> BigInt,
        source -> Text,
    }
}

/// A member of the organization: who may see and change it.
#[derive(
    Debug,
    Clone,
    Queryable,
    Selectable,
    Insertable,
    serde::Serialize,
    serde::Deserialize,
    PartialEq,
    Eq,
    utoipa::ToSchema,
)]
#[diesel(table_name = members)]
#[serde(rename_all = "camelCase")]
pub struct MemberRow {
    pub user_id: String,
    pub login: String,
    pub role: String,
    pub state: String,
    pub updated_at: i64,
    /// `manual` or `github` (joined through the linked GitHub organization).
    pub source: String,
}

pub fn list_members(conn: &mut SqliteConnection) -> DomainResult<Vec<MemberRow>> {
    Ok(members::table.select(MemberRow::as_select()).order(members::user_id).load(conn)?)
}

pub fn find_member(conn: &mut SqliteConnection, user_id: &str) -> DomainResult<Option<MemberRow>> {
    Ok(members::table.select(MemberRow::as_select()).find(user_id).first(conn).optional()?)
}

pub fn upsert_member(conn: &mut SqliteConnection, row: &MemberRow) -> DomainResult<()> {
    diesel::insert_into(members::table)
        .values(row)
        .on_conflict(members::user_id)
        .do_update()
        .set((
            members::login.eq(&row.login),
            members::role.eq(&row.role),
            members::updated_at.eq(row.updated_at),
            members::source.eq(&row.source),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn delete_member(conn: &mut SqliteConnection, user_id: &str) -> DomainResult<bool> {
    Ok(diesel::delete(members::table.find(user_id)).execute(conn)? > 0)
}

pub fn count_owners(conn: &mut SqliteConnection) -> DomainResult<i64> {
    Ok(members::table.filter(members::role.eq("owner")).count().get_result(conn)?)
}
