//! The model catalog: which agents and models a session may use. The agent backend's live catalog
//! (`GET /v1/agents?config=true`) arrives with the agent-session work; until then, and as its fallback, this built-in
//! catalog is the source of truth for validating model ids.

use serde::Serialize;

/// One selectable model.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ModelInfo {
    pub id: &'static str,
    pub label: &'static str,
    /// The agent that runs it (`claude`, `codex`, `mock`).
    pub agent: &'static str,
}

const BUILTIN: &[ModelInfo] = &[
    ModelInfo { id: "claude-sonnet-4", label: "Claude Sonnet 4", agent: "claude" },
    ModelInfo { id: "claude-opus-4", label: "Claude Opus 4", agent: "claude" },
    ModelInfo { id: "gpt-5.3-codex", label: "GPT-5.3 Codex", agent: "codex" },
    ModelInfo { id: "gpt-5-mini", label: "GPT-5 mini", agent: "codex" },
    ModelInfo { id: "builtin-echo", label: "Built-in deterministic agent", agent: "mock" },
];

/// Modes and thought levels a session may select.
pub const MODES: &[&str] = &["default", "plan", "accept-edits", "full-access"];
pub const THOUGHT_LEVELS: &[&str] = &["low", "medium", "high"];
/// The thought level new sessions start with.
pub const DEFAULT_THOUGHT_LEVEL: &str = "medium";

/// The model new sessions use when neither the request nor the user's profile names one.
pub const DEFAULT_MODEL: &str = "gpt-5.3-codex";

/// The built-in catalog.
pub fn builtin() -> &'static [ModelInfo] {
    BUILTIN
}

/// Whether `id` names a model of the catalog.
pub fn is_known_model(id: &str) -> bool {
    BUILTIN.iter().any(|m| m.id == id)
}
