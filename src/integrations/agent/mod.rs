//! The coding agent a session talks to, behind a trait. A turn streams [`AgentEvent`]s (text deltas, tool calls and
//! their results, file changes) on a channel, takes guidance ("steer") while it runs, and is interrupted by dropping
//! its future. [`BuiltinAgent`] is the embedded deterministic agent (no network) used by default, in examples and in
//! tests; real model-backed agents implement the same trait.

pub mod builtin;
pub mod sandbox;

pub use builtin::{BuiltinAgent, TurnGate};
pub use sandbox::SandboxAgent;

/// What a session asks its agent to do in one turn.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnRequest {
    pub session: crate::actors::SessionKey,
    pub model: String,
    pub mode: String,
    pub thought_level: String,
    pub prompt: String,
}

/// One thing the agent produced during a turn (text arrives as deltas).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AgentEvent {
    TextDelta { text: String },
    ToolCall { id: String, name: String, input: serde_json::Value },
    ToolResult { id: String, output: String },
    FileChange { path: String, added: u32, removed: u32 },
}

/// How a turn ended (an interrupt is the caller dropping the turn future; it never returns).
#[derive(Debug, Clone, PartialEq)]
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
