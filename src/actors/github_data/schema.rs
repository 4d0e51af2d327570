//! The github-data actor's tables and the small queries over them.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::actors::{DomainError, DomainResult};

diesel::table! {
    github_meta (id) {
        id -> Integer,
        account_login -> Text,
        account_kind -> Text,
        generation -> Integer,
        status -> Text,
        phase -> Nullable<Text>,
        synced -> Integer,
        total -> Integer,
        started_at -> Nullable<BigInt>,
        finished_at -> Nullable<BigInt>,
        last_error -> Nullable<Text>,
        updated_at -> BigInt,
        account_id -> Nullable<BigInt>,
    }
}

diesel::table! {
    repositories (repo_id) {
        repo_id -> Text,
        github_id -> BigInt,
        full_name -> Text,
        clone_url -> Text,
        private -> Bool,
        default_branch -> Text,
        generation -> Integer,
    }
}

diesel::table! {
    branches (repo_id, name) {
        repo_id -> Text,
        name -> Text,
        sha -> Text,
        generation -> Integer,
    }
}

diesel::table! {
    pull_requests (repo_id, number) {
        repo_id -> Text,
        number -> BigInt,
        state -> Text,
        summary -> Text,
        generation -> Integer,
    }
}

diesel::table! {
    webhook_deliveries (delivery_id) {
        delivery_id -> Text,
        event -> Text,
        received_at -> BigInt,
    }
}

diesel::table! {
    members (member_id) {
        member_id -> BigInt,
        login -> Text,
        generation -> Integer,
    }
}

/// Sync state and progress.
#[derive(
    Debug, Clone, Queryable, Selectable, serde::Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema,
)]
#[diesel(table_name = github_meta)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(skip)]
    pub id: i32,
    pub account_login: String,
    pub account_kind: String,
    pub generation: i32,
    pub status: String,
    pub phase: Option<String>,
    pub synced: i32,
    pub total: i32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
    pub updated_at: i64,
    /// The connected account's GitHub id (`None` for a connection recorded before ids were).
    pub account_id: Option<i64>,
}

pub fn meta(conn: &mut SqliteConnection) -> DomainResult<Option<Meta>> {
    Ok(github_meta::table.select(Meta::as_select()).find(1).first(conn).optional()?)
}

pub fn require_meta(conn: &mut SqliteConnection, org: &str) -> DomainResult<Meta> {
    meta(conn)?.ok_or_else(|| DomainError::not_found("github connection", org))
}

/// Row counts (repositories, branches, pull requests, members): one query.
pub fn counts(conn: &mut SqliteConnection) -> DomainResult<(i64, i64, i64, i64)> {
    #[derive(QueryableByName)]
    struct Counts {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        r: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        b: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        p: i64,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        m: i64,
    }
    let c: Counts = diesel::sql_query(
        "SELECT (SELECT COUNT(*) FROM repositories) AS r, (SELECT COUNT(*) FROM branches) AS b, \
         (SELECT COUNT(*) FROM pull_requests) AS p, (SELECT COUNT(*) FROM members) AS m",
    )
    .get_result(conn)?;
    Ok((c.r, c.b, c.p, c.m))
}

/// Inserts or refreshes a repository row (stamped with `generation`); true if it was new.
pub fn upsert_repository(
    conn: &mut SqliteConnection,
    r: &crate::integrations::github::client::Repository,
    generation: i32,
) -> DomainResult<bool> {
    let known: bool = diesel::select(diesel::dsl::exists(repositories::table.find(&r.name))).get_result(conn)?;
    diesel::insert_into(repositories::table)
        .values((
            repositories::repo_id.eq(&r.name),
            repositories::github_id.eq(r.id as i64),
            repositories::full_name.eq(&r.full_name),
            repositories::clone_url.eq(&r.clone_url),
            repositories::private.eq(r.private),
            repositories::default_branch.eq(&r.default_branch),
            repositories::generation.eq(generation),
        ))
        .on_conflict(repositories::repo_id)
        .do_update()
        .set((
            repositories::full_name.eq(&r.full_name),
            repositories::clone_url.eq(&r.clone_url),
            repositories::private.eq(r.private),
            repositories::default_branch.eq(&r.default_branch),
            repositories::generation.eq(generation),
        ))
        .execute(conn)?;
    Ok(!known)
}

/// Removes a repository and everything mirrored under it.
pub fn delete_repository(conn: &mut SqliteConnection, repo_id: &str) -> DomainResult<()> {
    diesel::delete(repositories::table.find(repo_id)).execute(conn)?;
    diesel::delete(branches::table.filter(branches::repo_id.eq(repo_id))).execute(conn)?;
    diesel::delete(pull_requests::table.filter(pull_requests::repo_id.eq(repo_id))).execute(conn)?;
    Ok(())
}

pub fn upsert_branch(
    conn: &mut SqliteConnection,
    repo: &str,
    name: &str,
    sha: &str,
    generation: i32,
) -> DomainResult<()> {
    diesel::insert_into(branches::table)
        .values((
            branches::repo_id.eq(repo),
            branches::name.eq(name),
            branches::sha.eq(sha),
            branches::generation.eq(generation),
        ))
        .on_conflict((branches::repo_id, branches::name))
        .do_update()
        .set((branches::sha.eq(sha), branches::generation.eq(generation)))
        .execute(conn)?;
    Ok(())
}

pub fn delete_branch(conn: &mut SqliteConnection, repo: &str, name: &str) -> DomainResult<()> {
    diesel::delete(branches::table.filter(branches::repo_id.eq(repo)).filter(branches::name.eq(name))).execute(conn)?;
    Ok(())
}

/// Inserts or refreshes a pull request row (its summary as JSON).
pub fn upsert_pull(
    conn: &mut SqliteConnection,
    repo: &str,
    summary: &crate::actors::summary::PullRequestSummary,
    generation: i32,
) -> DomainResult<()> {
    let json = serde_json::to_string(summary).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::insert_into(pull_requests::table)
        .values((
            pull_requests::repo_id.eq(repo),
            pull_requests::number.eq(summary.number),
            pull_requests::state.eq(&summary.state),
            pull_requests::summary.eq(&json),
            pull_requests::generation.eq(generation),
        ))
        .on_conflict((pull_requests::repo_id, pull_requests::number))
        .do_update()
        .set((
            pull_requests::state.eq(&summary.state),
            pull_requests::summary.eq(&json),
            pull_requests::generation.eq(generation),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn upsert_member(conn: &mut SqliteConnection, id: i64, login: &str, generation: i32) -> DomainResult<()> {
    diesel::insert_into(members::table)
        .values((members::member_id.eq(id), members::login.eq(login), members::generation.eq(generation)))
        .on_conflict(members::member_id)
        .do_update()
        .set((members::login.eq(login), members::generation.eq(generation)))
        .execute(conn)?;
    Ok(())
}

/// Reports the mirrored members to the auth directory, which links them to signed-in users (see
/// `auth_directory::SetOrganizationAccounts`). Called after every change of the members table, in its transaction.
pub fn report_members(tx: &mut crate::runtime::Tx<'_>, org: &str) -> crate::actors::DomainResult<()> {
    use crate::actors::auth_directory::{OrgAccount, SetOrganizationAccounts, AUTH_DIRECTORY_KEY};
    let rows: Vec<(i64, String)> =
        members::table.select((members::member_id, members::login)).order(members::member_id).load(tx.conn())?;
    let accounts = rows.into_iter().map(|(id, login)| OrgAccount { account_id: id.to_string(), login }).collect();
    let msg = SetOrganizationAccounts { org_id: org.to_owned(), provider: "github".into(), accounts };
    tx.send(&AUTH_DIRECTORY_KEY.to_owned(), &msg)?;
    Ok(())
}
