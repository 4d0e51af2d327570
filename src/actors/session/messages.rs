//! Messages of the session (data side): initialisation with the first prompt, rename, model change, messages, stop,
//! suspension (task archived or killed) and close. Every change pushes the session's summary to its task.

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::changes::publishing;
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
        // A new session: its subscribers (if any yet) get the whole snapshot.
        tx.touch(TOPIC);
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
            let item = schema::append(tx.conn(), "message", "user", prompt, self.user_id.as_deref(), self.created_at)?;
            // Queued in the transaction that creates the session: the first prompt can never be dropped.
            schema::enqueue(tx.conn(), prompt, self.user_id.as_deref(), self.created_at, item)?;
            tx.owe_work();
            // Without an agent backend no turn can run, so there is nothing to start later.
            if tx.service::<super::SessionAgent>().is_some() {
                tx.schedule_after(super::agent::FIRST_TURN_GRACE, &super::agent::StartOwedTurn)?;
            }
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

/// Pushes the summary to the task (the write around it publishes the topic: `changes::publishing`).
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

/// Refuses prompts to a suspended session (its task is archived or killed).
pub(super) fn refuse_if_suspended(key: &SessionKey, m: &MetaRow) -> DomainResult<()> {
    match &m.suspended {
        Some(reason) => {
            Err(DomainError::TaskArchived(format!("session {} takes no prompts: its task is {reason}", key.session)))
        }
        None => Ok(()),
    }
}

/// Records a user's message in the transcript and queues it for the agent, in the caller's transaction.
pub(super) fn record_user_message(
    key: &SessionKey,
    tx: &mut Tx<'_>,
    text: &str,
    user_id: Option<&str>,
) -> DomainResult<()> {
    let m = require_open_key(key, tx)?;
    refuse_if_suspended(key, &m)?;
    publishing(key, tx, |tx| {
        let now = now_ms();
        let item = schema::append(tx.conn(), "message", "user", text, user_id, now)?;
        schema::enqueue(tx.conn(), text, user_id, now, item)?;
        tx.owe_work();
        diesel::update(session_meta::table.find(1)).set(session_meta::updated_at.eq(now)).execute(tx.conn())?;
        push_up_key(key, tx)
    })?;
    let payload = serde_json::json!({ "chars": text.chars().count() });
    Audit::session(key).by(user_id).append(tx, "task.message.sent", payload)
}

/// Renames the session.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RenameSession {
    pub name: String,
    pub user_id: Option<String>,
}

impl Mutation for RenameSession {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, s: &Session, tx: &mut Tx<'_>) -> DomainResult<()> {
        validate::display_name("name", &self.name)?;
        let m = require_open(s, tx)?;
        let name = self.name.trim();
        publishing(&s.key, tx, |tx| {
            diesel::update(session_meta::table.find(1))
                .set((session_meta::name.eq(name), session_meta::updated_at.eq(now_ms())))
                .execute(tx.conn())?;
            push_up(s, tx)
        })?;
        let payload = serde_json::json!({ "from": m.name, "to": name });
        Audit::session(&s.key).by(self.user_id.as_deref()).append(tx, "task.session.renamed", payload)
    }
}

/// Changes the session's model (and optionally its mode and thought level), checked against the model catalog (the
/// live agent's when one is loaded). A running turn keeps its settings: the change applies from the next turn.
#[derive(serde::Serialize, serde::Deserialize)]
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
            if !models::is_mode_allowed(tx, mode) {
                return Err(DomainError::invalid("mode", format!("unknown mode {mode:?}")));
            }
        }
        if let Some(level) = &self.thought_level {
            if !models::is_thought_level_allowed(tx, level) {
                return Err(DomainError::invalid("thought_level", format!("unknown thought level {level:?}")));
            }
        }
        let m = require_open(s, tx)?;
        publishing(&s.key, tx, |tx| {
            diesel::update(session_meta::table.find(1))
                .set((
                    session_meta::model.eq(&self.model),
                    session_meta::mode.eq(self.mode.as_deref().unwrap_or(&m.mode)),
                    session_meta::thought_level.eq(self.thought_level.as_deref().unwrap_or(&m.thought_level)),
                    session_meta::updated_at.eq(now_ms()),
                ))
                .execute(tx.conn())?;
            push_up(s, tx)
        })?;
        let payload = serde_json::json!({ "from": m.model, "to": self.model });
        Audit::session(&s.key).by(self.user_id.as_deref()).append(tx, "task.model.changed", payload)
    }
}

/// A user's message to the session's agent: stored as a complete transcript item and queued for the agent (which
/// runs it when someone runs the queue: use the `SubmitPrompt` command to also start the turn).
#[derive(serde::Serialize, serde::Deserialize)]
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
#[derive(serde::Serialize, serde::Deserialize)]
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
            publishing(&key, tx, |tx| {
                let now = now_ms();
                schema::flush_partial(tx.conn(), now)?;
                schema::clear_queue(tx.conn())?;
                schema::set_status(tx.conn(), SessionStatus::Stopped, now)?;
                push_up_key(&key, tx)
            })?;
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.stopped", serde_json::json!({}))
        })
    }
}

/// Suspends the session because its task was archived or killed (`reason`: `archived` or `killed`): cancels the
/// running turn (its streamed text is kept, and a status item says why it stopped), drops queued follow-ups, and
/// marks the session stopped. Until [`ResumeSession`], prompts, steer and the queue are refused with
/// [`DomainError::TaskArchived`]; the suspension is stored, so it outlives a restart. Idempotent.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SuspendSession {
    pub reason: String,
    pub user_id: Option<String>,
}

impl Command for SuspendSession {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        validate::name("reason", &self.reason, 40)?;
        let reason = self.reason.trim();
        let key = s.key.clone();
        if s.turn.is_none() {
            let m = schema::require_meta(ctx.db(), &key.session)?;
            if m.suspended.as_deref() == Some(reason) {
                return Ok(());
            }
        }
        let turn = s.turn.take();
        if let Some(turn) = &turn {
            ctx.cancel(turn.handle());
        }
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            let m = schema::require_meta(tx.conn(), &key.session)?;
            let dropped = publishing(&key, tx, |tx| {
                let now = now_ms();
                schema::flush_partial(tx.conn(), now)?;
                if turn.is_some() {
                    let note = format!("turn cancelled: task {reason}");
                    schema::append(tx.conn(), "status", "system", &note, self.user_id.as_deref(), now)?;
                }
                let dropped = schema::clear_queue(tx.conn())?;
                schema::set_suspended(tx.conn(), Some(reason))?;
                if m.status() != SessionStatus::Closed {
                    schema::set_status(tx.conn(), SessionStatus::Stopped, now)?;
                }
                push_up_key(&key, tx)?;
                Ok(dropped)
            })?;
            let payload = serde_json::json!({ "reason": reason, "droppedFollowUps": dropped });
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.suspended", payload)
        })
    }
}

/// Lifts a [`SuspendSession`] (the task was unarchived): the session is idle and takes prompts again. Idempotent.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ResumeSession {
    pub user_id: Option<String>,
}

impl Command for ResumeSession {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        let key = s.key.clone();
        let resumed = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<bool> {
            let m = schema::require_meta(tx.conn(), &key.session)?;
            let Some(reason) = m.suspended.clone() else { return Ok(false) };
            publishing(&key, tx, |tx| {
                schema::set_suspended(tx.conn(), None)?;
                if m.status() == SessionStatus::Stopped {
                    schema::set_status(tx.conn(), SessionStatus::Idle, now_ms())?;
                }
                push_up_key(&key, tx)
            })?;
            let payload = serde_json::json!({ "was": reason });
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.resumed", payload)?;
            Ok(true)
        })?;
        if resumed {
            s.run_queue(ctx)?;
        }
        Ok(())
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
        publishing(&s.key, tx, |tx| {
            diesel::update(session_meta::table.find(1))
                .set((session_meta::status.eq(SessionStatus::Closed.as_str()), session_meta::updated_at.eq(now_ms())))
                .execute(tx.conn())?;
            push_up(s, tx)
        })
    }
}

impl Delivery for CloseSessionNow {
    const NAME: &'static str = "session.close";
}

/// What the agent backend saved to continue the conversation (its ids and event cursor), if anything: for
/// diagnostics and tests.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetAgentState;

impl Read for GetAgentState {
    type Entity = Session;
    type Output = Option<serde_json::Value>;
    type Error = DomainError;
    fn read(self, s: &Session, db: &mut SqliteConnection) -> DomainResult<Option<serde_json::Value>> {
        Ok(schema::require_meta(db, &s.key.session)?.agent_state())
    }
}

/// The session detail with its transcript.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetSessionDetail;

impl Read for GetSessionDetail {
    type Entity = Session;
    type Output = SessionDetail;
    type Error = DomainError;
    fn read(self, s: &Session, db: &mut SqliteConnection) -> DomainResult<SessionDetail> {
        s.build_detail(db)
    }
}

/// Where a session stands after a command: what the session command routes answer (`202`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionState {
    pub session_id: String,
    pub status: SessionStatus,
    /// Prompts waiting for a turn.
    pub queued: i64,
    /// The `session` topic's version as of this read: a `sessionUpdated` frame with a higher one is newer.
    pub version: u64,
}

/// The session's status, queue length and topic version (two small queries, no transcript).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetSessionState;

impl Read for GetSessionState {
    type Entity = Session;
    type Output = SessionState;
    type Error = DomainError;
    fn read(self, s: &Session, db: &mut SqliteConnection) -> DomainResult<SessionState> {
        let meta = schema::require_meta(db, &s.key.session)?;
        Ok(SessionState {
            session_id: s.key.session.clone(),
            status: meta.status(),
            queued: schema::queued(db)?,
            version: crate::runtime::outbox::topic_version(db, TOPIC)?,
        })
    }
}

crate::actors::remote::remote_messages! {
    super::Session;
    mutations: InitializeSession, RenameSession, ChangeModel, SendMessage, CloseSessionNow;
    reads: GetAgentState, GetSessionDetail, GetSessionState;
    commands: StopSession, SuspendSession, ResumeSession;
}
