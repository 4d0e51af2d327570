//! Messages of the session (data side): initialisation with the first prompt, rename, model change, messages, stop
//! and close. Every change pushes the session's summary to its task.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::schema::{self, session_meta, MetaRow};
use super::{Session, SessionDetail, TOPIC};
use crate::actors::summary::{SessionStatus, SessionSummary};
use crate::actors::task::ApplySessionSummary;
use crate::actors::SessionKey;
use crate::actors::{models, now_ms, validate, Audit, DomainError, DomainResult};
use crate::runtime::{Command, Delivery, EntityCtx, Mutation, Read, Tx};

/// Sent by the task when it opens the session. Idempotent. A first prompt becomes the first transcript item in the
/// same transaction that creates the session, so it can never be dropped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InitializeSession {
    pub name: String,
    pub model: String,
    pub mode: String,
    pub thought_level: String,
    pub prompt: Option<String>,
    pub user_id: Option<String>,
    pub created_at: i64,
}

impl Mutation for InitializeSession {
    type Entity = Session;
    /// Whether this call created the session.
    type Output = bool;
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<bool> {
        if schema::meta(tx.conn())?.is_some() {
            return Ok(false);
        }
        diesel::insert_into(session_meta::table)
            .values((
                session_meta::id.eq(1),
                session_meta::name.eq(&self.name),
                session_meta::model.eq(&self.model),
                session_meta::mode.eq(&self.mode),
                session_meta::thought_level.eq(&self.thought_level),
                session_meta::status.eq(SessionStatus::Ready.as_str()),
                session_meta::created_at.eq(self.created_at),
                session_meta::updated_at.eq(self.created_at),
            ))
            .execute(tx.conn())?;
        if let Some(prompt) = &self.prompt {
            schema::append(tx.conn(), "message", "user", prompt, self.user_id.as_deref(), self.created_at)?;
            // Queued in the transaction that creates the session: the first prompt can never be dropped.
            schema::enqueue(tx.conn(), prompt, self.user_id.as_deref(), self.created_at)?;
            let payload = serde_json::json!({ "chars": prompt.chars().count(), "first": true });
            Audit::session(&s.key).by(self.user_id.as_deref()).append(tx, "task.message.sent", payload)?;
        }
        push_up(s, tx)?;
        Ok(true)
    }
}

impl Delivery for InitializeSession {
    const NAME: &'static str = "session.initialize";
}

/// Pushes the summary to the task and marks the `session` topic changed.
fn push_up(s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
    push_up_key(&s.key, tx)
}

pub(super) fn push_up_key(key: &SessionKey, tx: &mut Tx<'_>) -> DomainResult<()> {
    let m = schema::require_meta(tx.conn(), &key.session)?;
    let summary = SessionSummary {
        session_id: key.session.clone(),
        status: m.status(),
        name: m.name,
        model: m.model,
        created_at: m.created_at,
        updated_at: m.updated_at,
    };
    tx.send(&key.task_key(), &ApplySessionSummary { summary })?;
    tx.touch(TOPIC);
    Ok(())
}

fn require_open(s: &Session, tx: &mut Tx<'_>) -> DomainResult<MetaRow> {
    require_open_key(&s.key, tx)
}

fn require_open_key(key: &SessionKey, tx: &mut Tx<'_>) -> DomainResult<MetaRow> {
    let m = schema::require_meta(tx.conn(), &key.session)?;
    if m.status() == SessionStatus::Closed {
        return Err(DomainError::Unprocessable(format!("session {} is closed", key.session)));
    }
    Ok(m)
}

/// Records a user's message in the transcript and queues it for the agent, in the caller's transaction.
pub(super) fn record_user_message(
    key: &SessionKey,
    tx: &mut Tx<'_>,
    text: &str,
    user_id: Option<&str>,
) -> DomainResult<()> {
    require_open_key(key, tx)?;
    let now = now_ms();
    schema::append(tx.conn(), "message", "user", text, user_id, now)?;
    schema::enqueue(tx.conn(), text, user_id, now)?;
    diesel::update(session_meta::table.find(1)).set(session_meta::updated_at.eq(now)).execute(tx.conn())?;
    push_up_key(key, tx)?;
    let payload = serde_json::json!({ "chars": text.chars().count() });
    Audit::session(key).by(user_id).append(tx, "task.message.sent", payload)
}

/// Renames the session.
pub struct RenameSession {
    pub name: String,
    pub user_id: Option<String>,
}

impl Mutation for RenameSession {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::name("name", &self.name, 200)?;
        let m = require_open(s, tx)?;
        let name = self.name.trim();
        diesel::update(session_meta::table.find(1))
            .set((session_meta::name.eq(name), session_meta::updated_at.eq(now_ms())))
            .execute(tx.conn())?;
        push_up(s, tx)?;
        let payload = serde_json::json!({ "from": m.name, "to": name });
        Audit::session(&s.key).by(self.user_id.as_deref()).append(tx, "task.session.renamed", payload)
    }
}

/// Changes the session's model (and optionally its mode and thought level).
pub struct ChangeModel {
    pub model: String,
    pub mode: Option<String>,
    pub thought_level: Option<String>,
    pub user_id: Option<String>,
}

impl Mutation for ChangeModel {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
        if !models::is_allowed(tx, &self.model) {
            return Err(DomainError::invalid("model", format!("unknown model {:?}", self.model)));
        }
        if let Some(mode) = &self.mode {
            if !models::MODES.contains(&mode.as_str()) {
                return Err(DomainError::invalid("mode", format!("unknown mode {mode:?}")));
            }
        }
        if let Some(level) = &self.thought_level {
            if !models::THOUGHT_LEVELS.contains(&level.as_str()) {
                return Err(DomainError::invalid("thought_level", format!("unknown thought level {level:?}")));
            }
        }
        let m = require_open(s, tx)?;
        diesel::update(session_meta::table.find(1))
            .set((
                session_meta::model.eq(&self.model),
                session_meta::mode.eq(self.mode.as_deref().unwrap_or(&m.mode)),
                session_meta::thought_level.eq(self.thought_level.as_deref().unwrap_or(&m.thought_level)),
                session_meta::updated_at.eq(now_ms()),
            ))
            .execute(tx.conn())?;
        push_up(s, tx)?;
        let payload = serde_json::json!({ "from": m.model, "to": self.model });
        Audit::session(&s.key).by(self.user_id.as_deref()).append(tx, "task.model.changed", payload)
    }
}

/// A user's message to the session's agent: stored as a complete transcript item and queued for the agent (which
/// runs it when someone runs the queue: use the `SubmitPrompt` command to also start the turn).
pub struct SendMessage {
    pub text: String,
    pub user_id: Option<String>,
}

impl Mutation for SendMessage {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::text("text", &self.text)?;
        record_user_message(&s.key, tx, &self.text, self.user_id.as_deref())
    }
}

/// Stops the session: cancels its running turn (if any), drops queued follow-ups, and marks it stopped.
pub struct StopSession {
    pub user_id: Option<String>,
}

impl Command for StopSession {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        if let Some(turn) = s.turn.take() {
            ctx.cancel(turn.handle());
        }
        let key = s.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            require_open_key(&key, tx)?;
            let now = now_ms();
            schema::flush_partial(tx.conn(), now)?;
            schema::clear_queue(tx.conn())?;
            schema::set_status(tx.conn(), SessionStatus::Stopped, now)?;
            push_up_key(&key, tx)?;
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.stopped", serde_json::json!({}))
        })
    }
}

/// Sent by the task (the coordinator) when it closes the session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CloseSessionNow;

impl Mutation for CloseSessionNow {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
        let m = schema::require_meta(tx.conn(), &s.key.session)?;
        if m.status() == SessionStatus::Closed {
            return Ok(());
        }
        diesel::update(session_meta::table.find(1))
            .set((session_meta::status.eq(SessionStatus::Closed.as_str()), session_meta::updated_at.eq(now_ms())))
            .execute(tx.conn())?;
        push_up(s, tx)
    }
}

impl Delivery for CloseSessionNow {
    const NAME: &'static str = "session.close";
}

/// The session detail with its transcript.
pub struct GetSessionDetail;

impl Read for GetSessionDetail {
    type Entity = Session;
    type Output = SessionDetail;
    type Error = DomainError;
    fn read(self, s: &Session, db: &mut SqliteConnection) -> DomainResult<SessionDetail> {
        s.build_detail(db)
    }
}
