//! The user actor's tables (profile and UI state, auth sessions, OAuth accounts) and the small queries its handlers
//! run. Every list is one query (no per-row queries).

use diesel::prelude::*;
use diesel::sqlite::{Sqlite, SqliteConnection};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::actors::keys::{SessionKey, TaskKey};

diesel::table! {
    /// Singleton (`id = 1`): who this user is.
    user (id) {
        id -> Integer,
        user_id -> Text,
        name -> Text,
        email -> Text,
        avatar_url -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Singleton (`id = 1`), created with `user`: profile and preferences.
    user_profile (id) {
        id -> Integer,
        github_login -> Nullable<Text>,
        role -> Text,
        eligible_org_ids -> Text,
        starter_repo_status -> Text,
        default_model -> Text,
        updated_at -> BigInt,
        active_org_id -> Nullable<Text>,
    }
}

diesel::table! {
    /// Per organization of the user: its display name and the user's role, as the organization last told them.
    user_org_details (org_id) {
        org_id -> Text,
        display_name -> Text,
        role -> Text,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Per task: the session tab this user has open.
    user_task_state (org_id, repo_id, task_id) {
        org_id -> Text,
        repo_id -> Text,
        task_id -> Text,
        active_session_id -> Nullable<Text>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// Per session: unread flag and the unsent draft.
    user_session_state (org_id, repo_id, task_id, session_id) {
        org_id -> Text,
        repo_id -> Text,
        task_id -> Text,
        session_id -> Text,
        unread -> Bool,
        draft_text -> Text,
        draft_attachments -> Text,
        draft_updated_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

diesel::table! {
    /// The user's sign-in sessions; the token is stored only as its SHA-256 hex.
    auth_sessions (session_id) {
        session_id -> Text,
        token_hash -> Text,
        created_at -> BigInt,
        expires_at -> BigInt,
        revoked_at -> Nullable<BigInt>,
        user_agent -> Nullable<Text>,
    }
}

diesel::table! {
    /// Linked OAuth accounts with their access token (server-side use only), sealed (`secrets::TokenCipher`).
    accounts (provider, account_id) {
        provider -> Text,
        account_id -> Text,
        login -> Text,
        access_token -> Text,
        scopes -> Text,
        created_at -> BigInt,
        updated_at -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    user,
    user_profile,
    user_task_state,
    user_session_state,
    user_org_details
);

/// The singleton row's id.
const SINGLETON: i32 = 1;

/// A row of `user`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, AsChangeset)]
#[diesel(table_name = user, check_for_backend(Sqlite), treat_none_as_null = true)]
pub struct UserRow {
    pub user_id: String,
    pub name: String,
    pub email: String,
    pub avatar_url: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A row of `user_profile` (`eligible_org_ids` is a JSON array).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, AsChangeset)]
#[diesel(table_name = user_profile, check_for_backend(Sqlite), treat_none_as_null = true)]
pub struct ProfileRow {
    pub github_login: Option<String>,
    pub role: String,
    pub eligible_org_ids: String,
    pub starter_repo_status: String,
    pub default_model: String,
    pub updated_at: i64,
    pub active_org_id: Option<String>,
}

/// A row of `user_session_state` (`draft_attachments` is a JSON array).
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = user_session_state, check_for_backend(Sqlite))]
pub struct SessionStateRow {
    pub session_id: String,
    pub unread: bool,
    pub draft_text: String,
    pub draft_attachments: String,
    pub draft_updated_at: Option<i64>,
}

/// Parses a JSON column; a malformed value is a deserialisation error of the query.
pub fn decode_json<T: DeserializeOwned>(text: &str) -> QueryResult<T> {
    serde_json::from_str(text).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// Serialises a value for a JSON column.
pub fn encode_json<T: Serialize + ?Sized>(value: &T) -> QueryResult<String> {
    serde_json::to_string(value).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

pub fn find_user(conn: &mut SqliteConnection) -> QueryResult<Option<UserRow>> {
    user::table.find(SINGLETON).select(UserRow::as_select()).first(conn).optional()
}

pub fn find_profile(conn: &mut SqliteConnection) -> QueryResult<Option<ProfileRow>> {
    user_profile::table.find(SINGLETON).select(ProfileRow::as_select()).first(conn).optional()
}

/// The user with their profile, in one query; `None` if the user was never created.
pub fn find_user_with_profile(conn: &mut SqliteConnection) -> QueryResult<Option<(UserRow, ProfileRow)>> {
    user::table
        .inner_join(user_profile::table.on(user_profile::id.eq(user::id)))
        .filter(user::id.eq(SINGLETON))
        .select((UserRow::as_select(), ProfileRow::as_select()))
        .first(conn)
        .optional()
}

pub fn user_exists(conn: &mut SqliteConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(user::table.find(SINGLETON))).get_result(conn)
}

/// Creates the user and their profile (other profile columns take their defaults).
pub fn insert_user(conn: &mut SqliteConnection, row: &UserRow, default_model: &str) -> QueryResult<()> {
    diesel::insert_into(user::table)
        .values((
            user::id.eq(SINGLETON),
            user::user_id.eq(&row.user_id),
            user::name.eq(&row.name),
            user::email.eq(&row.email),
            user::avatar_url.eq(&row.avatar_url),
            user::created_at.eq(row.created_at),
            user::updated_at.eq(row.updated_at),
        ))
        .execute(conn)?;
    diesel::insert_into(user_profile::table)
        .values((
            user_profile::id.eq(SINGLETON),
            user_profile::default_model.eq(default_model),
            user_profile::updated_at.eq(row.updated_at),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn save_user(conn: &mut SqliteConnection, row: &UserRow) -> QueryResult<()> {
    diesel::update(user::table.find(SINGLETON)).set(row).execute(conn)?;
    Ok(())
}

pub fn save_profile(conn: &mut SqliteConnection, row: &ProfileRow) -> QueryResult<()> {
    diesel::update(user_profile::table.find(SINGLETON)).set(row).execute(conn)?;
    Ok(())
}

/// A row of `user_org_details`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = user_org_details, check_for_backend(Sqlite))]
pub struct OrgDetailsRow {
    pub org_id: String,
    pub display_name: String,
    pub role: String,
}

/// Every organization's details (one query).
pub fn org_details(conn: &mut SqliteConnection) -> QueryResult<Vec<OrgDetailsRow>> {
    user_org_details::table.select(OrgDetailsRow::as_select()).load(conn)
}

/// Stores what an organization told; whether anything changed.
pub fn put_org_details(conn: &mut SqliteConnection, row: &OrgDetailsRow, now: i64) -> QueryResult<bool> {
    let before: Option<OrgDetailsRow> =
        user_org_details::table.find(&row.org_id).select(OrgDetailsRow::as_select()).first(conn).optional()?;
    if before.as_ref() == Some(row) {
        return Ok(false);
    }
    diesel::replace_into(user_org_details::table)
        .values((
            user_org_details::org_id.eq(&row.org_id),
            user_org_details::display_name.eq(&row.display_name),
            user_org_details::role.eq(&row.role),
            user_org_details::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

/// Forgets an organization's details; whether there were any.
pub fn delete_org_details(conn: &mut SqliteConnection, org_id: &str) -> QueryResult<bool> {
    Ok(diesel::delete(user_org_details::table.find(org_id)).execute(conn)? > 0)
}

pub fn set_active_session(conn: &mut SqliteConnection, task: &TaskKey, session_id: &str, now: i64) -> QueryResult<()> {
    diesel::insert_into(user_task_state::table)
        .values((
            user_task_state::org_id.eq(&task.org),
            user_task_state::repo_id.eq(&task.repo),
            user_task_state::task_id.eq(&task.task),
            user_task_state::active_session_id.eq(session_id),
            user_task_state::updated_at.eq(now),
        ))
        .on_conflict((user_task_state::org_id, user_task_state::repo_id, user_task_state::task_id))
        .do_update()
        .set((user_task_state::active_session_id.eq(session_id), user_task_state::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

pub fn set_unread(conn: &mut SqliteConnection, session: &SessionKey, unread: bool, now: i64) -> QueryResult<()> {
    diesel::insert_into(user_session_state::table)
        .values((
            user_session_state::org_id.eq(&session.org),
            user_session_state::repo_id.eq(&session.repo),
            user_session_state::task_id.eq(&session.task),
            user_session_state::session_id.eq(&session.session),
            user_session_state::unread.eq(unread),
            user_session_state::updated_at.eq(now),
        ))
        .on_conflict(session_state_pk())
        .do_update()
        .set((user_session_state::unread.eq(unread), user_session_state::updated_at.eq(now)))
        .execute(conn)?;
    Ok(())
}

/// Replaces the draft of `session` (text and JSON attachments), stamped `now`.
pub fn save_draft(
    conn: &mut SqliteConnection,
    session: &SessionKey,
    text: &str,
    attachments_json: &str,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(user_session_state::table)
        .values((
            user_session_state::org_id.eq(&session.org),
            user_session_state::repo_id.eq(&session.repo),
            user_session_state::task_id.eq(&session.task),
            user_session_state::session_id.eq(&session.session),
            user_session_state::draft_text.eq(text),
            user_session_state::draft_attachments.eq(attachments_json),
            user_session_state::draft_updated_at.eq(now),
            user_session_state::updated_at.eq(now),
        ))
        .on_conflict(session_state_pk())
        .do_update()
        .set((
            user_session_state::draft_text.eq(text),
            user_session_state::draft_attachments.eq(attachments_json),
            user_session_state::draft_updated_at.eq(now),
            user_session_state::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

fn session_state_pk() -> (
    user_session_state::org_id,
    user_session_state::repo_id,
    user_session_state::task_id,
    user_session_state::session_id,
) {
    (
        user_session_state::org_id,
        user_session_state::repo_id,
        user_session_state::task_id,
        user_session_state::session_id,
    )
}

/// This user's state for `task` in two queries: whether the user exists together with the task's active session
/// (`None` if the user was never created), then every session row of the task, sorted by session id.
pub fn task_overlay(
    conn: &mut SqliteConnection,
    task: &TaskKey,
) -> QueryResult<Option<(Option<String>, Vec<SessionStateRow>)>> {
    let head: Option<(i32, Option<String>)> = user::table
        .left_join(
            user_task_state::table.on(user_task_state::org_id
                .eq(&task.org)
                .and(user_task_state::repo_id.eq(&task.repo))
                .and(user_task_state::task_id.eq(&task.task))),
        )
        .filter(user::id.eq(SINGLETON))
        .select((user::id, user_task_state::active_session_id.nullable()))
        .first(conn)
        .optional()?;
    let Some((_, active_session_id)) = head else { return Ok(None) };
    let sessions = user_session_state::table
        .filter(user_session_state::org_id.eq(&task.org))
        .filter(user_session_state::repo_id.eq(&task.repo))
        .filter(user_session_state::task_id.eq(&task.task))
        .order(user_session_state::session_id.asc())
        .select(SessionStateRow::as_select())
        .load(conn)?;
    Ok(Some((active_session_id, sessions)))
}

/// A row of `auth_sessions`.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = auth_sessions, check_for_backend(Sqlite))]
pub struct AuthSessionRow {
    pub session_id: String,
    pub token_hash: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub user_agent: Option<String>,
}

/// A row of `accounts` without its access token: what listings may show.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
#[diesel(table_name = accounts, check_for_backend(Sqlite))]
pub struct AccountRow {
    pub provider: String,
    pub account_id: String,
    pub login: String,
    pub scopes: String,
    pub updated_at: i64,
}

/// Whether a session with this id or this token hash exists (either would break the table's uniqueness).
pub fn auth_session_clashes(conn: &mut SqliteConnection, session_id: &str, token_hash: &str) -> QueryResult<bool> {
    let clash = auth_sessions::table
        .filter(auth_sessions::session_id.eq(session_id).or(auth_sessions::token_hash.eq(token_hash)));
    diesel::select(diesel::dsl::exists(clash)).get_result(conn)
}

pub fn insert_auth_session(conn: &mut SqliteConnection, row: &AuthSessionRow) -> QueryResult<()> {
    diesel::insert_into(auth_sessions::table).values(row).execute(conn)?;
    Ok(())
}

/// Deletes up to 100 sessions that expired before `cutoff`; returns how many.
pub fn prune_auth_sessions(conn: &mut SqliteConnection, cutoff: i64) -> QueryResult<usize> {
    // Raw SQL: diesel refuses a delete filtered by a subquery on the same table.
    diesel::sql_query(
        "DELETE FROM auth_sessions WHERE session_id IN \
         (SELECT session_id FROM auth_sessions WHERE expires_at < ? LIMIT 100)",
    )
    .bind::<diesel::sql_types::BigInt, _>(cutoff)
    .execute(conn)
}

/// Marks the session revoked at `now` unless it already is; returns its token hash if this call revoked it.
pub fn revoke_auth_session(conn: &mut SqliteConnection, session_id: &str, now: i64) -> QueryResult<Option<String>> {
    diesel::update(auth_sessions::table.find(session_id).filter(auth_sessions::revoked_at.is_null()))
        .set(auth_sessions::revoked_at.eq(now))
        .returning(auth_sessions::token_hash)
        .get_result(conn)
        .optional()
}

/// Marks every unrevoked session revoked at `now`; returns their token hashes.
pub fn revoke_all_auth_sessions(conn: &mut SqliteConnection, now: i64) -> QueryResult<Vec<String>> {
    diesel::update(auth_sessions::table.filter(auth_sessions::revoked_at.is_null()))
        .set(auth_sessions::revoked_at.eq(now))
        .returning(auth_sessions::token_hash)
        .get_results(conn)
}

pub fn find_auth_session(conn: &mut SqliteConnection, session_id: &str) -> QueryResult<Option<AuthSessionRow>> {
    auth_sessions::table.find(session_id).select(AuthSessionRow::as_select()).first(conn).optional()
}

/// Every session, newest first (ties by id, so the order is stable).
pub fn list_auth_sessions(conn: &mut SqliteConnection) -> QueryResult<Vec<AuthSessionRow>> {
    auth_sessions::table
        .order((auth_sessions::created_at.desc(), auth_sessions::session_id.desc()))
        .select(AuthSessionRow::as_select())
        .load(conn)
}

/// The fields [`upsert_account`] writes.
#[derive(Debug, Clone, Copy)]
pub struct AccountUpsert<'a> {
    pub provider: &'a str,
    pub account_id: &'a str,
    pub login: &'a str,
    pub access_token: &'a str,
    pub scopes: &'a str,
}

/// Inserts the account or replaces its login, token and scopes (keeping `created_at`).
pub fn upsert_account(conn: &mut SqliteConnection, a: AccountUpsert<'_>, now: i64) -> QueryResult<()> {
    diesel::insert_into(accounts::table)
        .values((
            accounts::provider.eq(a.provider),
            accounts::account_id.eq(a.account_id),
            accounts::login.eq(a.login),
            accounts::access_token.eq(a.access_token),
            accounts::scopes.eq(a.scopes),
            accounts::created_at.eq(now),
            accounts::updated_at.eq(now),
        ))
        .on_conflict((accounts::provider, accounts::account_id))
        .do_update()
        .set((
            accounts::login.eq(a.login),
            accounts::access_token.eq(a.access_token),
            accounts::scopes.eq(a.scopes),
            accounts::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

/// Every account (without tokens), by provider and account id.
pub fn list_accounts(conn: &mut SqliteConnection) -> QueryResult<Vec<AccountRow>> {
    accounts::table.order((accounts::provider, accounts::account_id)).select(AccountRow::as_select()).load(conn)
}

/// The account id and stored access token of the most recently updated account of `provider`.
pub fn access_token(conn: &mut SqliteConnection, provider: &str) -> QueryResult<Option<(String, String)>> {
    accounts::table
        .filter(accounts::provider.eq(provider))
        .order((accounts::updated_at.desc(), accounts::account_id.desc()))
        .select((accounts::account_id, accounts::access_token))
        .first(conn)
        .optional()
}

/// Replaces an account's stored token if it is still `old` (a sign-in in between wins).
pub fn replace_access_token(
    conn: &mut SqliteConnection,
    provider: &str,
    account_id: &str,
    old: &str,
    new: &str,
) -> QueryResult<()> {
    diesel::update(
        accounts::table
            .filter(accounts::provider.eq(provider))
            .filter(accounts::account_id.eq(account_id))
            .filter(accounts::access_token.eq(old)),
    )
    .set(accounts::access_token.eq(new))
    .execute(conn)?;
    Ok(())
}
