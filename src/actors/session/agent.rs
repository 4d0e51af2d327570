//! The session's agent loop. Each session runs its own turns, one at a time, as background work of its actor: the
//! mailbox stays free, so steer, interrupt and reads never wait behind a running turn, and sessions never wait for
//! each other. Prompts wait in `pending_prompts` (written in the same transaction that records them) until a turn
//! takes them; streamed deltas are folded into `partial_text` and become a complete transcript item when the turn
//! ends; a turn interrupted by a crash is marked failed when the actor next starts.

use std::sync::Arc;

use actix::SpawnHandle;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use super::changes::{self, publishing};
use super::schema;
use super::turns::{Admission, TurnPermit, TurnPermits};
use super::{Session, TOPIC};
use crate::actors::summary::SessionStatus;
use crate::actors::{now_ms, validate, Audit, DomainError, DomainResult, TaskKey};
use crate::integrations::agent::{AgentBackend, AgentEvent, HistoryItem, HistorySource, TurnEnd, TurnRequest};
use crate::runtime::idempotency::{self, IdempotencyKey, Once, Recorded};
use crate::runtime::{Command, EntityCtx, EntityKey, Myself, PatchOp, Tx};

/// The agent backend sessions use, provided to the runtime (`Runtime::provide(Arc::new(SessionAgent(..)))`).
pub struct SessionAgent(pub Arc<dyn AgentBackend>);

/// What a turn needs from its task's workspace. The task side provides it as a runtime service
/// ([`SessionWorkspace`]); without one, turns run with no working directory.
pub trait TurnWorkspace: Send + Sync + 'static {
    /// Resolves once the task's workspace is ready, with its directory (`None`: the task has no workspace). An error
    /// says why it cannot be had, and the turn fails with it, visibly.
    fn prepare(&self, task: TaskKey) -> BoxFuture<'static, Result<Option<TurnPlace>, String>>;
    /// The agent finished a turn in the workspace (not called for an interrupted turn): record its work.
    fn turn_finished(&self, task: TaskKey, prompt: String) -> BoxFuture<'static, ()>;
}

/// Where a turn runs: the workspace directory, and the task's own agent server if it has one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnPlace {
    pub cwd: String,
    pub agent_url: Option<String>,
}

/// The [`TurnWorkspace`] sessions use, as a runtime service.
pub struct SessionWorkspace(pub Arc<dyn TurnWorkspace>);

/// The turn a session is running.
pub(super) struct RunningTurn {
    id: u64,
    handle: SpawnHandle,
    steer: mpsc::UnboundedSender<String>,
    /// Held until the turn ends (the session drops its `RunningTurn`), then handed to the next waiting session.
    _permit: Option<TurnPermit>,
}

impl RunningTurn {
    pub(super) fn handle(&self) -> SpawnHandle {
        self.handle
    }
}

/// Most events folded into one transaction: a fast stream is coalesced into few commits and few snapshots.
const MAX_EVENTS_PER_COMMIT: usize = 256;
/// How long streamed events gather before they are committed and published: at most ~40 session snapshots per
/// second per session, whatever the agent's pace, for a delay readers do not notice.
const COALESCE_WINDOW: std::time::Duration = std::time::Duration::from_millis(25);
/// How long a new session waits for its creator to start the first turn before starting it itself.
pub(super) const FIRST_TURN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// Scheduled by `InitializeSession` (durably, in the transaction that queues the first prompt) for
/// [`FIRST_TURN_GRACE`] later (with an agent backend). The creator normally starts the first turn itself at once, and
/// starting a turn cancels this; if nobody did — the
/// creating request died with its process and the task's outbox finished the initialisation after a restart, or the
/// session was evicted within the grace — this wakes the session (activating it if it passivated) and runs its queue.
/// The schedule's row outlives passivation and restarts, which the in-memory timer it replaces did not; a crash after
/// it committed but before the queue ran is covered by the prompt's recovery mark (`Tx::owe_work`).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct StartOwedTurn;

impl crate::runtime::Mutation for StartOwedTurn {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn apply(self, _: &Session, _: &mut Tx<'_>) -> DomainResult<()> {
        Ok(())
    }
}

impl crate::runtime::Scheduled for StartOwedTurn {
    const NAME: &'static str = "session.start_owed_turn";

    fn committed(_: (), s: &mut Session, ctx: &mut EntityCtx<'_, Session>) {
        if let Err(e) = s.run_owed_turn(ctx) {
            tracing::warn!(session = %s.key.encode(), error = %e, "could not start the first turn");
        }
    }
}

impl Session {
    /// Starts the next queued prompt's turn if none is running. Call after anything that queued a prompt.
    pub(super) fn run_queue(&mut self, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<bool> {
        self.run_queue_with(ctx, None)
    }

    /// [`Session::run_queue`], with the turn permit the gate handed to this session if it waited for one. Without a
    /// permit, the turn takes one from the [`TurnPermits`]; if none is free the session waits in line (its prompt stays
    /// queued, and it may passivate meanwhile).
    pub(super) fn run_queue_with(
        &mut self,
        ctx: &mut EntityCtx<'_, Session>,
        permit: Option<TurnPermit>,
    ) -> DomainResult<bool> {
        if self.turn.is_some() {
            return Ok(false);
        }
        let Some(agent) = ctx.service::<SessionAgent>() else {
            // Without an agent backend the prompts stay queued (durably) until one is provided.
            return Ok(false);
        };
        let key = self.key.clone();
        // Only a session with a prompt it may run takes a permit or lines up for one.
        let runnable = schema::meta(ctx.db())?
            .is_some_and(|m| m.status() != SessionStatus::Closed && m.suspended.is_none())
            && schema::queued(ctx.db())? > 0;
        if !runnable {
            self.waiting = false;
            return Ok(false);
        }
        let permit = match (permit, ctx.service::<TurnPermits>()) {
            (Some(p), _) => Some(p),
            (None, None) => None,
            (None, Some(gate)) => match gate.admit(&key) {
                Admission::Run(p) => Some(p),
                Admission::Wait => {
                    self.waiting = true;
                    return Ok(false);
                }
            },
        };
        self.waiting = false;
        let me = ctx.myself();
        let started = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<Option<TurnRequest>> {
            let m = schema::require_meta(tx.conn(), &key.session)?;
            // A suspended session keeps what is queued (if anything) but runs none of it.
            if m.status() == SessionStatus::Closed || m.suspended.is_some() {
                return Ok(None);
            }
            publishing(&key, tx, |tx| {
                let Some(next) = schema::dequeue(tx.conn())? else { return Ok(None) };
                // A turn is starting: the first turn's fallback start (`StartOwedTurn`) is not owed any more, and
                // cancelling it here spares the session a wake-up and a transaction when it would have fired.
                tx.cancel_schedules::<StartOwedTurn>()?;
                schema::set_status(tx.conn(), SessionStatus::Running, now_ms())?;
                push_summary(&key, tx)?;
                let resume = m.agent_state();
                Ok(Some(TurnRequest {
                    session_id: key.encode(),
                    model: m.model,
                    mode: m.mode,
                    thought_level: m.thought_level,
                    prompt: next.text,
                    resume,
                    history_source: Some(history_source(me.clone(), next.item_seq)),
                    ..TurnRequest::default()
                }))
            })
        })?;
        let Some(request) = started else { return Ok(false) };
        self.next_turn += 1;
        let id = self.next_turn;
        let (events_tx, events_rx) = mpsc::channel(256);
        let (steer_tx, steer_rx) = mpsc::unbounded_channel();
        let workspace = ctx.service::<SessionWorkspace>();
        let task = key.task_key();
        let handle = ctx.spawn(async move {
            let mut request = request;
            if let Some(ws) = &workspace {
                match ws.0.prepare(task.clone()).await {
                    Ok(place) => {
                        request.agent_url = place.as_ref().and_then(|p| p.agent_url.clone());
                        request.cwd = place.map(|p| p.cwd);
                    }
                    Err(why) => {
                        let end = TurnEnd::Failed(format!("the workspace is not ready: {why}"));
                        let _ = me.exec(FinishTurn { turn: id, end }).await;
                        return;
                    }
                }
            }
            let after = workspace.map(|ws| (ws, task, request.prompt.clone()));
            let turn = agent.0.run_turn(request, events_tx, steer_rx);
            drive_turn(me, id, turn, events_rx, after).await
        });
        self.turn = Some(RunningTurn { id, handle, steer: steer_tx, _permit: permit });
        Ok(true)
    }

    /// Runs the queue if the session was initialised meanwhile (and no turn is running: `run_queue` checks).
    pub(super) fn run_owed_turn(&mut self, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        if schema::meta(ctx.db())?.is_some() {
            self.run_queue(ctx)?;
        }
        Ok(())
    }

    /// After a restart no turn is running: a session stored as running lost its turn (crash). Mark it failed and
    /// carry on with the queue.
    pub(super) fn recover_turn(&mut self, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        if schema::meta(ctx.db())?.is_none() {
            // Activated to be initialised: `InitializeSession` schedules the first turn's start (`StartOwedTurn`).
            return Ok(());
        }
        let key = self.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            let Some(m) = schema::meta(tx.conn())? else { return Ok(()) };
            if m.status() != SessionStatus::Running {
                return Ok(());
            }
            publishing(&key, tx, |tx| {
                let now = now_ms();
                schema::flush_partial(tx.conn(), now)?;
                let why = "turn failed: the session restarted mid-turn";
                schema::append(tx.conn(), "status", "system", why, None, now)?;
                schema::set_status(tx.conn(), SessionStatus::Error, now)?;
                push_summary(&key, tx)
            })
        })?;
        self.run_queue(ctx).map(|_| ())
    }
}

/// Loads the conversation before transcript item `before` from the session itself, when the backend asks for it
/// (only a backend that lost its agent session does: most turns never load it).
fn history_source(me: Myself<Session>, before: Option<i64>) -> HistorySource {
    HistorySource::new(move || {
        let me = me.clone();
        Box::pin(async move { me.exec(LoadHistory { before }).await.map_err(|e| e.to_string()) })
    })
}

/// The user messages and agent replies before transcript item `before` (all if `None`).
#[derive(serde::Serialize, serde::Deserialize)]
struct LoadHistory {
    before: Option<i64>,
}

impl Command for LoadHistory {
    type Entity = Session;
    type Output = Vec<HistoryItem>;
    type Error = DomainError;
    fn run(self, _: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<Vec<HistoryItem>> {
        schema::history(ctx.db(), self.before)
    }
}

/// Pushes the session's summary to its task.
fn push_summary(key: &crate::actors::SessionKey, tx: &mut Tx<'_>) -> DomainResult<()> {
    super::messages::push_up_key(key, tx)
}

/// Streams one turn: events are applied in batches, and the agent keeps running while a batch commits, so whatever
/// it produced meanwhile forms the next batch (a fast stream costs few transactions and few snapshots). Dropping this
/// future (interrupt, passivation, stop) drops the agent's turn with it.
async fn drive_turn(
    me: Myself<Session>,
    id: u64,
    turn: BoxFuture<'static, TurnEnd>,
    mut events: mpsc::Receiver<AgentEvent>,
    after: Option<(Arc<SessionWorkspace>, TaskKey, String)>,
) {
    let mut turn = turn;
    let mut end = None;
    loop {
        tokio::select! {
            Some(first) = events.recv() => {
                // Gather what arrives within the window (the agent keeps running), then commit it in one go.
                let mut batch = vec![first];
                let window = tokio::time::sleep(COALESCE_WINDOW);
                tokio::pin!(window);
                while batch.len() < MAX_EVENTS_PER_COMMIT {
                    tokio::select! {
                        _ = &mut window => break,
                        next = events.recv() => match next {
                            Some(e) => batch.push(e),
                            None => break,
                        },
                        result = &mut turn, if end.is_none() => end = Some(result),
                    }
                }
                let apply = me.exec(ApplyTurnEvents { turn: id, events: batch });
                tokio::pin!(apply);
                loop {
                    tokio::select! {
                        applied = &mut apply => {
                            if applied.is_err() {
                                return;
                            }
                            break;
                        }
                        result = &mut turn, if end.is_none() => end = Some(result),
                    }
                }
            }
            result = &mut turn, if end.is_none() => end = Some(result),
            else => break,
        }
    }
    if let Some((ws, task, prompt)) = after {
        // Before the session reports idle, so a reader who sees the turn done also sees its work recorded.
        ws.0.turn_finished(task, prompt).await;
    }
    let _ = me.exec(FinishTurn { turn: id, end: end.unwrap_or(TurnEnd::Completed) }).await;
}

fn stale(session: &Session, turn: u64) -> bool {
    session.turn.as_ref().is_none_or(|t| t.id != turn)
}

/// Applies a batch of streamed events of turn `turn` (ignored if that turn was interrupted meanwhile).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct ApplyTurnEvents {
    turn: u64,
    events: Vec<AgentEvent>,
}

impl Command for ApplyTurnEvents {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        if stale(s, self.turn) {
            return Ok(());
        }
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            let now = now_ms();
            // Each checkpoint supersedes the ones before it: only the batch's last one is written (with its events).
            let mut checkpoint = None;
            // What subscribers are sent: the streamed text and the new items, never the transcript before them.
            let mut ops = Vec::new();
            for event in &self.events {
                match event {
                    AgentEvent::TextDelta { text } => {
                        schema::append_partial(tx.conn(), text)?;
                        changes::append_text(&mut ops, text);
                    }
                    AgentEvent::Checkpoint { state } => checkpoint = Some(state),
                    other => {
                        // A tool call or file change is a complete item; text streamed before it is one too.
                        if let Some(item) = schema::flush_partial(tx.conn(), now)? {
                            ops.push(changes::add_item(&item)?);
                            ops.push(PatchOp::replace(changes::PARTIAL_TEXT, "".into()));
                        }
                        let (kind, text) = match other {
                            AgentEvent::ToolCall { name, .. } => ("tool_call", name.clone()),
                            AgentEvent::ToolResult { output, .. } => ("tool_result", output.clone()),
                            AgentEvent::FileChange { path, .. } => ("file_change", path.clone()),
                            AgentEvent::TextDelta { .. } | AgentEvent::Checkpoint { .. } => {
                                unreachable!("handled above")
                            }
                        };
                        let payload = serde_json::to_string(other).unwrap_or_default();
                        let item = schema::append_agent_item(tx.conn(), kind, &text, &payload, now)?;
                        ops.push(changes::add_item(&item)?);
                    }
                }
            }
            if let Some(state) = checkpoint {
                schema::set_agent_state(tx.conn(), state)?;
            }
            tx.patch(TOPIC, ops);
            Ok(())
        })
    }
}

/// Ends turn `turn`: its text becomes a complete item, and the next queued prompt (if any) starts.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct FinishTurn {
    turn: u64,
    end: TurnEnd,
}

impl Command for FinishTurn {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        if stale(s, self.turn) {
            return Ok(());
        }
        s.turn = None;
        let key = s.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            publishing(&key, tx, |tx| {
                let now = now_ms();
                schema::flush_partial(tx.conn(), now)?;
                if schema::require_meta(tx.conn(), &key.session)?.status() == SessionStatus::Closed {
                    return Ok(());
                }
                let status = match &self.end {
                    TurnEnd::Completed => SessionStatus::Idle,
                    TurnEnd::Failed(why) => {
                        schema::append(tx.conn(), "status", "system", &format!("turn failed: {why}"), None, now)?;
                        SessionStatus::Error
                    }
                };
                schema::set_status(tx.conn(), status, now)?;
                push_summary(&key, tx)
            })
        })?;
        s.run_queue(ctx).map(|_| ())
    }
}

/// Queues a prompt for the session's agent; it runs now if no turn is running, else as a follow-up.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SubmitPrompt {
    pub text: String,
    pub user_id: Option<String>,
}

/// Where a submitted prompt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Submitted {
    Started,
    Queued,
}

impl Command for SubmitPrompt {
    type Entity = Session;
    type Output = Submitted;
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<Submitted> {
        validate::text("text", &self.text)?;
        let key = s.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            super::messages::record_user_message(&key, tx, &self.text, self.user_id.as_deref())
        })?;
        Ok(if s.run_queue(ctx)? { Submitted::Started } else { Submitted::Queued })
    }
}

/// [`SubmitPrompt`] at most once per idempotency key: the key is recorded in the transaction that records the
/// prompt, so a retried request finds it and replays instead of sending the prompt twice.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct SubmitPromptOnce {
    pub text: String,
    pub user_id: Option<String>,
    pub key: IdempotencyKey,
}

impl Command for SubmitPromptOnce {
    type Entity = Session;
    type Output = Once<Submitted>;
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<Once<Submitted>> {
        validate::text("text", &self.text)?;
        let key = s.key.clone();
        let before = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<Recorded> {
            let now = idempotency::now_ms();
            idempotency::prune(tx.conn(), now)?;
            let before = idempotency::lookup(tx.conn(), &self.key, now)?;
            if before == Recorded::Absent {
                super::messages::record_user_message(&key, tx, &self.text, self.user_id.as_deref())?;
                // Where the prompt went is decided after this commit; an unanswered replay re-reads it.
                idempotency::record(tx.conn(), &self.key, "null", now)?;
            }
            Ok(before)
        })?;
        match before {
            Recorded::Absent => {
                Ok(Once::Applied(if s.run_queue(ctx)? { Submitted::Started } else { Submitted::Queued }))
            }
            Recorded::Created { answer: Some(answer), .. } => {
                Ok(Once::Replayed { output: Submitted::Queued, answer: Some(answer) })
            }
            // Recorded, never answered (the first request was cut off): make sure the prompt runs, and say where it is.
            Recorded::Created { answer: None, .. } => {
                let started = s.run_queue(ctx)?;
                let waiting = schema::queued(ctx.db())? > 0;
                let output = if started || !waiting { Submitted::Started } else { Submitted::Queued };
                Ok(Once::Replayed { output, answer: None })
            }
            Recorded::Mismatch => Ok(Once::KeyReused),
            Recorded::Pending => Ok(Once::InProgress),
        }
    }
}

/// Starts queued prompts if no turn is running (after the first prompt arrived with the session, or when an agent
/// backend became available).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct RunQueue;

impl Command for RunQueue {
    type Entity = Session;
    type Output = bool;
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<bool> {
        let m = schema::require_meta(ctx.db(), &s.key.session)?;
        super::messages::refuse_if_suspended(&s.key, &m)?;
        s.run_queue(ctx)
    }
}

/// Guidance for the turn running in this session (and only this one).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Steer {
    pub guidance: String,
    pub user_id: Option<String>,
}

impl Command for Steer {
    type Entity = Session;
    type Output = ();
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<()> {
        validate::text("guidance", &self.guidance)?;
        let m = schema::require_meta(ctx.db(), &s.key.session)?;
        super::messages::refuse_if_suspended(&s.key, &m)?;
        let Some(turn) = &s.turn else {
            return Err(DomainError::Unprocessable("no turn is running in this session".into()));
        };
        if turn.steer.send(self.guidance.clone()).is_err() {
            return Err(DomainError::Unprocessable("the running turn no longer takes guidance".into()));
        }
        let key = s.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<()> {
            publishing(&key, tx, |tx| {
                schema::append(tx.conn(), "steer", "user", &self.guidance, self.user_id.as_deref(), now_ms())
            })?;
            let payload = serde_json::json!({ "chars": self.guidance.chars().count() });
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.steered", payload)
        })
    }
}

/// Cancels the turn running in this session (and only this one), including a tool call in progress. Queued
/// follow-ups then run, or are dropped if `drop_queued`.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Interrupt {
    pub drop_queued: bool,
    pub user_id: Option<String>,
}

impl Command for Interrupt {
    type Entity = Session;
    /// Follow-ups dropped.
    type Output = usize;
    type Error = DomainError;
    fn run(self, s: &mut Session, ctx: &mut EntityCtx<'_, Session>) -> DomainResult<usize> {
        let Some(turn) = s.turn.take() else {
            return Err(DomainError::Unprocessable("no turn is running in this session".into()));
        };
        ctx.cancel(turn.handle);
        let key = s.key.clone();
        let dropped = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<usize> {
            let dropped = publishing(&key, tx, |tx| {
                let now = now_ms();
                schema::flush_partial(tx.conn(), now)?;
                schema::append(tx.conn(), "status", "system", "interrupted", self.user_id.as_deref(), now)?;
                let dropped = if self.drop_queued { schema::clear_queue(tx.conn())? } else { 0 };
                schema::set_status(tx.conn(), SessionStatus::Idle, now)?;
                push_summary(&key, tx)?;
                Ok(dropped)
            })?;
            let payload = serde_json::json!({ "droppedFollowUps": dropped });
            Audit::session(&key).by(self.user_id.as_deref()).append(tx, "task.session.stopped", payload)?;
            Ok(dropped)
        })?;
        s.run_queue(ctx)?;
        Ok(dropped)
    }
}

crate::actors::remote::remote_messages! {
    super::Session;
    mutations: StartOwedTurn;
    commands: LoadHistory, ApplyTurnEvents, FinishTurn, SubmitPrompt, SubmitPromptOnce, RunQueue, Steer, Interrupt;
}
