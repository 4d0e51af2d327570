//! The coding agent a session talks to, behind a trait. A turn streams [`AgentEvent`]s (text deltas, tool calls and
//! their results, file changes) on a channel, takes guidance ("steer") while it runs, and is interrupted by dropping
//! its future. [`BuiltinAgent`] is the embedded deterministic agent (no network) used by default, in examples and in
//! tests; real model-backed agents implement the same trait.

pub mod builtin;
pub mod sandbox;

use std::sync::Arc;

use futures_util::future::BoxFuture;

pub use builtin::{BuiltinAgent, TurnGate};
pub use sandbox::SandboxAgent;

/// What a session asks its agent to do in one turn.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TurnRequest {
    /// The conversation this turn belongs to, unique within this install (the session's encoded key). Opaque to the
    /// backend: it only derives its own ids from it.
    pub session_id: String,
    /// The task's workspace (where the agent reads and edits files), or `None` when the task has none.
    pub cwd: Option<String>,
    /// The sandbox-agent server of this task's own sandbox, when each task has one (else the backend's own).
    pub agent_url: Option<String>,
    pub model: String,
    pub mode: String,
    pub thought_level: String,
    pub prompt: String,
    /// What the backend last saved for this conversation ([`AgentEvent::Checkpoint`]), if anything.
    pub resume: Option<serde_json::Value>,
    /// The conversation so far (oldest first), for a backend that must prime a new agent session with it.
    pub history: Vec<HistoryItem>,
    /// Where the conversation so far can be loaded from instead, when `history` is not given: loading a long
    /// transcript for every turn would be wasted on a backend that only needs it after losing its agent session.
    pub history_source: Option<HistorySource>,
}

impl TurnRequest {
    /// The conversation before this turn: `history` if given, else what `history_source` loads.
    pub async fn load_history(&self) -> Result<Vec<HistoryItem>, String> {
        match &self.history_source {
            Some(source) if self.history.is_empty() => source.load().await,
            _ => Ok(self.history.clone()),
        }
    }
}

type LoadHistory = dyn Fn() -> BoxFuture<'static, Result<Vec<HistoryItem>, String>> + Send + Sync;

/// Loads a conversation's earlier messages on demand (see [`TurnRequest::history_source`]).
#[derive(Clone)]
pub struct HistorySource(Arc<LoadHistory>);

impl HistorySource {
    pub fn new(
        load: impl Fn() -> BoxFuture<'static, Result<Vec<HistoryItem>, String>> + Send + Sync + 'static,
    ) -> Self {
        HistorySource(Arc::new(load))
    }

    pub async fn load(&self) -> Result<Vec<HistoryItem>, String> {
        (self.0)().await
    }
}

impl std::fmt::Debug for HistorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HistorySource(..)")
    }
}

/// Two sources are equal only if they are the same loader (a closure cannot be compared otherwise).
impl PartialEq for HistorySource {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// One earlier message of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct HistoryItem {
    /// `user` or `agent`.
    pub role: String,
    pub text: String,
}

/// One thing the agent produced during a turn (text arrives as deltas).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    TextDelta {
        text: String,
    },
    ToolCall {
        id: String,
        name: String,
        input: serde_json::Value,
    },
    ToolResult {
        id: String,
        output: String,
    },
    FileChange {
        path: String,
        added: u32,
        removed: u32,
    },
    /// Not output: state the backend needs to continue this conversation later (its ids, its event cursor). The
    /// session stores it in the same transaction as the events before it and hands it back as
    /// [`TurnRequest::resume`].
    Checkpoint {
        state: serde_json::Value,
    },
}

/// How a turn ended (an interrupt is the caller dropping the turn future; it never returns).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum TurnEnd {
    Completed,
    Failed(String),
}

/// An agent able to run turns for sessions.
pub trait AgentBackend: Send + Sync + 'static {
    /// Runs one turn. The turn sends its events on `events` (if the receiver is gone it stops early and returns
    /// `Completed`), reads guidance from `steer` while it runs and reflects it in the rest of the turn, and is
    /// cancelled by dropping the returned future (this is how interrupt works, including mid tool call).
    fn run_turn(
        &self,
        request: TurnRequest,
        events: tokio::sync::mpsc::Sender<AgentEvent>,
        steer: tokio::sync::mpsc::UnboundedReceiver<String>,
    ) -> futures_util::future::BoxFuture<'static, TurnEnd>;
}
