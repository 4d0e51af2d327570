//! The session's tables and the small queries over them.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use crate::actors::summary::SessionStatus;
use crate::actors::{DomainError, DomainResult};
use crate::integrations::agent::HistoryItem;

diesel::table! {
    session_meta (id) {
        id -> Integer,
        name -> Text,
        model -> Text,
        mode -> Text,
        thought_level -> Text,
        status -> Text,
        agent_session_id -> Nullable<Text>,
        created_at -> BigInt,
        updated_at -> BigInt,
        partial_text -> Text,
        agent_state -> Nullable<Text>,
        suspended -> Nullable<Text>,
    }
}

diesel::table! {
    pending_prompts (seq) {
        seq -> BigInt,
        text -> Text,
        user_id -> Nullable<Text>,
        at -> BigInt,
        item_seq -> Nullable<BigInt>,
    }
}

diesel::table! {
    transcript (seq) {
        seq -> BigInt,
        kind -> Text,
        role -> Text,
        text -> Text,
        payload -> Text,
        user_id -> Nullable<Text>,
        at -> BigInt,
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = session_meta)]
pub struct MetaRow {
    pub id: i32,
    pub name: String,
    pub model: String,
    pub mode: String,
    pub thought_level: String,
    pub status: String,
    pub agent_session_id: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub partial_text: String,
    pub agent_state: Option<String>,
    /// Why the session takes no prompts (`archived`, `killed`), if it does not.
    pub suspended: Option<String>,
}

impl MetaRow {
    /// The agent backend's saved state ([`AgentEvent::Checkpoint`](crate::integrations::agent::AgentEvent)), if any
    /// (an unreadable one counts as none: the backend then starts a new agent session).
    pub fn agent_state(&self) -> Option<serde_json::Value> {
        self.agent_state.as_deref().and_then(|s| serde_json::from_str(s).ok())
    }
}

impl MetaRow {
    pub fn status(&self) -> SessionStatus {
        SessionStatus::parse(&self.status).unwrap_or(SessionStatus::Error)
    }
}

/// One complete transcript item.
#[derive(Debug, Clone, Queryable, Selectable, Serialize, Deserialize, PartialEq, utoipa::ToSchema)]
#[diesel(table_name = transcript)]
#[serde(rename_all = "camelCase")]
pub struct TranscriptItem {
    pub seq: i64,
    /// `message`, `tool_call`, `file_change`, `status`.
    pub kind: String,
    /// `user`, `agent` or `system`.
    pub role: String,
    pub text: String,
    pub payload: String,
    pub user_id: Option<String>,
    pub at: i64,
}

pub fn meta(conn: &mut SqliteConnection) -> DomainResult<Option<MetaRow>> {
    Ok(session_meta::table.select(MetaRow::as_select()).find(1).first(conn).optional()?)
}

pub fn require_meta(conn: &mut SqliteConnection, session: &str) -> DomainResult<MetaRow> {
    meta(conn)?.ok_or_else(|| DomainError::not_found("session", session))
}

/// Appends a complete item; returns its `seq`.
pub fn append(
    conn: &mut SqliteConnection,
    kind: &str,
    role: &str,
    text: &str,
    user_id: Option<&str>,
    at: i64,
) -> DomainResult<i64> {
    Ok(diesel::insert_into(transcript::table)
        .values((
            transcript::kind.eq(kind),
            transcript::role.eq(role),
            transcript::text.eq(text),
            transcript::user_id.eq(user_id),
            transcript::at.eq(at),
        ))
        .returning(transcript::seq)
        .get_result(conn)?)
}

/// The whole transcript in order: one query.
pub fn transcript_items(conn: &mut SqliteConnection) -> DomainResult<Vec<TranscriptItem>> {
    Ok(transcript::table.select(TranscriptItem::as_select()).order(transcript::seq).load(conn)?)
}

/// The items after `seq`, in order (what a write appended).
pub fn transcript_after(conn: &mut SqliteConnection, seq: i64) -> DomainResult<Vec<TranscriptItem>> {
    Ok(transcript::table
        .select(TranscriptItem::as_select())
        .filter(transcript::seq.gt(seq))
        .order(transcript::seq)
        .load(conn)?)
}

/// The `seq` of the last item (0 if none).
pub fn last_seq(conn: &mut SqliteConnection) -> DomainResult<i64> {
    Ok(transcript::table.select(diesel::dsl::max(transcript::seq)).first::<Option<i64>>(conn)?.unwrap_or(0))
}

/// Queues a prompt for the session's agent; `item_seq` is the transcript item it was recorded as.
pub fn enqueue(
    conn: &mut SqliteConnection,
    text: &str,
    user_id: Option<&str>,
    at: i64,
    item_seq: i64,
) -> DomainResult<()> {
    diesel::insert_into(pending_prompts::table)
        .values((
            pending_prompts::text.eq(text),
            pending_prompts::user_id.eq(user_id),
            pending_prompts::at.eq(at),
            pending_prompts::item_seq.eq(item_seq),
        ))
        .execute(conn)?;
    Ok(())
}

/// A prompt taken off the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Dequeued {
    pub text: String,
    /// The transcript item it was recorded as (for prompts queued before that was stored: the latest user message
    /// with its text), if known.
    pub item_seq: Option<i64>,
}

/// Takes the oldest queued prompt off the queue.
pub fn dequeue(conn: &mut SqliteConnection) -> DomainResult<Option<Dequeued>> {
    let next: Option<(i64, String, Option<i64>)> = pending_prompts::table
        .select((pending_prompts::seq, pending_prompts::text, pending_prompts::item_seq))
        .order(pending_prompts::seq)
        .first(conn)
        .optional()?;
    let Some((seq, text, item_seq)) = next else { return Ok(None) };
    diesel::delete(pending_prompts::table.find(seq)).execute(conn)?;
    let item_seq = match item_seq {
        Some(s) => Some(s),
        None => transcript::table
            .select(transcript::seq)
            .filter(transcript::kind.eq("message").and(transcript::role.eq("user")).and(transcript::text.eq(&text)))
            .order(transcript::seq.desc())
            .first(conn)
            .optional()?,
    };
    Ok(Some(Dequeued { text, item_seq }))
}

/// The user messages and agent replies before transcript item `before` (all of them if `None`), oldest first.
pub fn history(conn: &mut SqliteConnection, before: Option<i64>) -> DomainResult<Vec<HistoryItem>> {
    let mut query = transcript::table
        .select((transcript::role, transcript::text))
        .filter(transcript::kind.eq("message").and(transcript::role.eq_any(["user", "agent"])))
        .order(transcript::seq)
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(transcript::seq.lt(before));
    }
    let rows: Vec<(String, String)> = query.load(conn)?;
    Ok(rows.into_iter().map(|(role, text)| HistoryItem { role, text }).collect())
}

/// Suspends the session (`reason`) or lifts the suspension (`None`).
pub fn set_suspended(conn: &mut SqliteConnection, reason: Option<&str>) -> DomainResult<()> {
    diesel::update(session_meta::table.find(1)).set(session_meta::suspended.eq(reason)).execute(conn)?;
    Ok(())
}

pub fn queued(conn: &mut SqliteConnection) -> DomainResult<i64> {
    Ok(pending_prompts::table.count().get_result(conn)?)
}

pub fn clear_queue(conn: &mut SqliteConnection) -> DomainResult<usize> {
    Ok(diesel::delete(pending_prompts::table).execute(conn)?)
}

pub fn set_status(conn: &mut SqliteConnection, status: SessionStatus, at: i64) -> DomainResult<()> {
    diesel::update(session_meta::table.find(1))
        .set((session_meta::status.eq(status.as_str()), session_meta::updated_at.eq(at)))
        .execute(conn)?;
    Ok(())
}

/// Folds streamed text into the partial buffer.
pub fn append_partial(conn: &mut SqliteConnection, text: &str) -> DomainResult<()> {
    diesel::update(session_meta::table.find(1))
        .set(session_meta::partial_text.eq(session_meta::partial_text.concat(text)))
        .execute(conn)?;
    Ok(())
}

/// Turns the partial buffer into a complete agent message item (if any text was streamed), which it returns.
pub fn flush_partial(conn: &mut SqliteConnection, at: i64) -> DomainResult<Option<TranscriptItem>> {
    let text: String = session_meta::table.select(session_meta::partial_text).find(1).first(conn)?;
    if text.is_empty() {
        return Ok(None);
    }
    let item = diesel::insert_into(transcript::table)
        .values((
            transcript::kind.eq("message"),
            transcript::role.eq("agent"),
            transcript::text.eq(text.trim_end()),
            transcript::at.eq(at),
        ))
        .returning(TranscriptItem::as_returning())
        .get_result(conn)?;
    diesel::update(session_meta::table.find(1)).set(session_meta::partial_text.eq("")).execute(conn)?;
    Ok(Some(item))
}

/// Appends a complete agent item (a tool call, its result, a file change) and returns it.
pub fn append_agent_item(
    conn: &mut SqliteConnection,
    kind: &str,
    text: &str,
    payload: &str,
    at: i64,
) -> DomainResult<TranscriptItem> {
    Ok(diesel::insert_into(transcript::table)
        .values((
            transcript::kind.eq(kind),
            transcript::role.eq("agent"),
            transcript::text.eq(text),
            transcript::payload.eq(payload),
            transcript::at.eq(at),
        ))
        .returning(TranscriptItem::as_returning())
        .get_result(conn)?)
}

/// Stores the agent backend's state for the next turn.
pub fn set_agent_state(conn: &mut SqliteConnection, state: &serde_json::Value) -> DomainResult<()> {
    diesel::update(session_meta::table.find(1))
        .set(session_meta::agent_state.eq(Some(state.to_string())))
        .execute(conn)?;
    Ok(())
}
