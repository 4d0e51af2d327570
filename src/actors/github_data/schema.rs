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
#[derive(Debug, Clone, Queryable, Selectable, serde::Serialize, PartialEq, Eq)]
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
