//! The auth directory's tables and the small queries its handlers run. Each handler step is one statement.

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel::sqlite::{Sqlite, SqliteConnection};

diesel::table! {
    /// Session token hash -> the user and user-side session it belongs to.
    auth_session_index (token_hash) {
        token_hash -> Text,
        user_id -> Text,
        session_id -> Text,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// Lowercased email -> user.
    auth_email_index (email) {
        email -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    /// OAuth account (provider, provider's account id) -> user.
    auth_account_index (provider, account_id) {
        provider -> Text,
        account_id -> Text,
        user_id -> Text,
    }
}

diesel::table! {
    /// Pending OAuth flows by the hash of their `state` parameter.
    auth_verification (state_hash) {
        state_hash -> Text,
        provider -> Text,
        redirect -> Nullable<Text>,
        expires_at -> BigInt,
        created_at -> BigInt,
    }
}

diesel::table! {
    /// (provider, account) -> the organizations whose GitHub mirror lists that account as a member.
    account_orgs (provider, account_id, org_id) {
        provider -> Text,
        account_id -> Text,
        org_id -> Text,
        login -> Text,
    }
}

diesel::table! {
    /// (provider, lowercased sign-in login) -> user.
    auth_login_index (provider, login) {
        provider -> Text,
        login -> Text,
        user_id -> Text,
    }
}

diesel::allow_tables_to_appear_in_same_query!(account_orgs, auth_account_index);

/// A row of `auth_session_index`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_session_index, check_for_backend(Sqlite))]
pub struct SessionIndexRow {
    pub token_hash: String,
    pub user_id: String,
    pub session_id: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// A row of `auth_verification`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_verification, check_for_backend(Sqlite))]
pub struct VerificationRow {
    pub state_hash: String,
    pub provider: String,
    pub redirect: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

/// Most expired rows one pruning pass deletes: keeps the mutation that prunes cheap however much has piled up.
pub const PRUNE_BATCH: i64 = 100;

pub fn session_exists(conn: &mut SqliteConnection, token_hash: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(auth_session_index::table.find(token_hash))).get_result(conn)
}

pub fn insert_session(conn: &mut SqliteConnection, row: &SessionIndexRow) -> QueryResult<()> {
    diesel::insert_into(auth_session_index::table).values(row).execute(conn)?;
    Ok(())
}

pub fn find_session(conn: &mut SqliteConnection, token_hash: &str) -> QueryResult<Option<SessionIndexRow>> {
    auth_session_index::table.find(token_hash).select(SessionIndexRow::as_select()).first(conn).optional()
}

/// Deletes one entry; returns whether it existed.
pub fn delete_session(conn: &mut SqliteConnection, token_hash: &str) -> QueryResult<bool> {
    Ok(diesel::delete(auth_session_index::table.find(token_hash)).execute(conn)? > 0)
}

/// Deletes every entry of `user_id`; returns how many there were.
pub fn delete_user_sessions(conn: &mut SqliteConnection, user_id: &str) -> QueryResult<usize> {
    diesel::delete(auth_session_index::table.filter(auth_session_index::user_id.eq(user_id))).execute(conn)
}

/// Deletes up to [`PRUNE_BATCH`] entries expired at `now` (served by the expiry index); returns how many.
pub fn prune_sessions(conn: &mut SqliteConnection, now: i64) -> QueryResult<usize> {
    // Raw SQL: diesel refuses a delete filtered by a subquery on the same table.
    diesel::sql_query(
        "DELETE FROM auth_session_index WHERE token_hash IN \
         (SELECT token_hash FROM auth_session_index WHERE expires_at <= ? LIMIT ?)",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(PRUNE_BATCH)
    .execute(conn)
}

pub fn find_email(conn: &mut SqliteConnection, email: &str) -> QueryResult<Option<String>> {
    auth_email_index::table.find(email).select(auth_email_index::user_id).first(conn).optional()
}

/// Binds `email` (already lowercased) to `user_id` unless it is bound; returns whether this call bound it.
pub fn insert_email_if_free(conn: &mut SqliteConnection, email: &str, user_id: &str) -> QueryResult<bool> {
    let inserted = diesel::insert_into(auth_email_index::table)
        .values((auth_email_index::email.eq(email), auth_email_index::user_id.eq(user_id)))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(inserted > 0)
}

pub fn find_login(conn: &mut SqliteConnection, provider: &str, login: &str) -> QueryResult<Option<String>> {
    auth_login_index::table.find((provider, login)).select(auth_login_index::user_id).first(conn).optional()
}

/// Points `(provider, login)` at `user_id`, dropping the user's previous login of that provider (a renamed account).
pub fn upsert_login(conn: &mut SqliteConnection, provider: &str, login: &str, user_id: &str) -> QueryResult<()> {
    use auth_login_index::dsl as l;
    diesel::delete(
        l::auth_login_index.filter(l::provider.eq(provider)).filter(l::user_id.eq(user_id)).filter(l::login.ne(login)),
    )
    .execute(conn)?;
    diesel::insert_into(l::auth_login_index)
        .values((l::provider.eq(provider), l::login.eq(login), l::user_id.eq(user_id)))
        .on_conflict((l::provider, l::login))
        .do_update()
        .set(l::user_id.eq(user_id))
        .execute(conn)?;
    Ok(())
}

pub fn find_account(conn: &mut SqliteConnection, provider: &str, account_id: &str) -> QueryResult<Option<String>> {
    auth_account_index::table.find((provider, account_id)).select(auth_account_index::user_id).first(conn).optional()
}

pub fn insert_account(conn: &mut SqliteConnection, provider: &str, account_id: &str, user_id: &str) -> QueryResult<()> {
    diesel::insert_into(auth_account_index::table)
        .values((
            auth_account_index::provider.eq(provider),
            auth_account_index::account_id.eq(account_id),
            auth_account_index::user_id.eq(user_id),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn verification_exists(conn: &mut SqliteConnection, state_hash: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(auth_verification::table.find(state_hash))).get_result(conn)
}

pub fn insert_verification(conn: &mut SqliteConnection, row: &VerificationRow) -> QueryResult<()> {
    diesel::insert_into(auth_verification::table).values(row).execute(conn)?;
    Ok(())
}

/// Deletes the verification and returns it as it was (one statement, so it can be taken only once).
pub fn take_verification(conn: &mut SqliteConnection, state_hash: &str) -> QueryResult<Option<VerificationRow>> {
    diesel::delete(auth_verification::table.find(state_hash))
        .returning(VerificationRow::as_returning())
        .get_result(conn)
        .optional()
}

/// Deletes up to [`PRUNE_BATCH`] verifications expired at `now`; returns how many.
pub fn prune_verifications(conn: &mut SqliteConnection, now: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM auth_verification WHERE state_hash IN \
         (SELECT state_hash FROM auth_verification WHERE expires_at <= ? LIMIT ?)",
    )
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(PRUNE_BATCH)
    .execute(conn)
}

/// The organizations an account belongs to, with its login there.
pub fn orgs_of_account(
    conn: &mut SqliteConnection,
    provider: &str,
    account_id: &str,
) -> QueryResult<Vec<(String, String)>> {
    account_orgs::table
        .filter(account_orgs::provider.eq(provider).and(account_orgs::account_id.eq(account_id)))
        .select((account_orgs::org_id, account_orgs::login))
        .order(account_orgs::org_id)
        .load(conn)
}

/// An organization's accounts of `provider`: (account id, login).
pub fn accounts_of_org(
    conn: &mut SqliteConnection,
    org_id: &str,
    provider: &str,
) -> QueryResult<Vec<(String, String)>> {
    account_orgs::table
        .filter(account_orgs::org_id.eq(org_id).and(account_orgs::provider.eq(provider)))
        .select((account_orgs::account_id, account_orgs::login))
        .order(account_orgs::account_id)
        .load(conn)
}

pub fn replace_org_accounts(
    conn: &mut SqliteConnection,
    org_id: &str,
    provider: &str,
    accounts: &[(String, String)],
) -> QueryResult<()> {
    diesel::delete(
        account_orgs::table.filter(account_orgs::org_id.eq(org_id).and(account_orgs::provider.eq(provider))),
    )
    .execute(conn)?;
    for (account_id, login) in accounts {
        diesel::insert_or_ignore_into(account_orgs::table)
            .values((
                account_orgs::provider.eq(provider),
                account_orgs::account_id.eq(account_id),
                account_orgs::org_id.eq(org_id),
                account_orgs::login.eq(login),
            ))
            .execute(conn)?;
    }
    Ok(())
}

diesel::table! {
    /// GitHub account id -> the organization connected to it (one organization per account).
    github_account_index (account_id) {
        account_id -> BigInt,
        org_id -> Text,
        claimed_at -> BigInt,
    }
}

/// The organization connected to a GitHub account.
pub fn github_account_org(conn: &mut SqliteConnection, account_id: i64) -> QueryResult<Option<String>> {
    github_account_index::table.find(account_id).select(github_account_index::org_id).first(conn).optional()
}

pub fn insert_github_account(conn: &mut SqliteConnection, account_id: i64, org_id: &str, now: i64) -> QueryResult<()> {
    diesel::insert_into(github_account_index::table)
        .values((
            github_account_index::account_id.eq(account_id),
            github_account_index::org_id.eq(org_id),
            github_account_index::claimed_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Removes the account's entry if it belongs to `org_id`; true if it did.
pub fn delete_github_account(conn: &mut SqliteConnection, account_id: i64, org_id: &str) -> QueryResult<bool> {
    let rows = diesel::delete(
        github_account_index::table
            .filter(github_account_index::account_id.eq(account_id))
            .filter(github_account_index::org_id.eq(org_id)),
    )
    .execute(conn)?;
    Ok(rows > 0)
}
