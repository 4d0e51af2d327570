//! The model catalog: which models a session may use. `ModelCatalog` is a runtime service holding the agent
//! backend's live catalog (`GET /v1/agents?config=true` of a sandbox-agent server, refreshed on demand); the built-in
//! list below is its fallback and what is used when no catalog service is provided.

use std::sync::RwLock;

use serde::Serialize;

use crate::integrations::agent::sandbox::{SandboxAgent, SandboxError};
use crate::runtime::Tx;

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

/// One model of the live catalog.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogModel {
    pub id: String,
    pub label: String,
    pub agent: String,
}

/// The models sessions may use, as a runtime service (`Runtime::provide(Arc::new(ModelCatalog::builtin()))`).
#[derive(Debug)]
pub struct ModelCatalog {
    models: RwLock<Vec<CatalogModel>>,
    source: RwLock<String>,
}

impl ModelCatalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        let models = BUILTIN
            .iter()
            .map(|m| CatalogModel { id: m.id.to_owned(), label: m.label.to_owned(), agent: m.agent.to_owned() })
            .collect();
        ModelCatalog { models: RwLock::new(models), source: RwLock::new("builtin".to_owned()) }
    }

    /// A catalog of the given models (another backend's list, tests).
    pub fn from_models(models: Vec<CatalogModel>, source: &str) -> Self {
        ModelCatalog { models: RwLock::new(models), source: RwLock::new(source.to_owned()) }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.models.read().unwrap_or_else(|p| p.into_inner()).iter().any(|m| m.id == id)
    }

    pub fn models(&self) -> Vec<CatalogModel> {
        self.models.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Where the current list came from (`builtin`, or the sandbox-agent agent it was read from).
    pub fn source(&self) -> String {
        self.source.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the list with `agent_id`'s models from the sandbox-agent server. Keeps the current list (and says
    /// why) when the server fails or offers no model for that agent. Returns the number of models now listed.
    pub async fn refresh_from(&self, server: &SandboxAgent, agent_id: &str) -> Result<usize, SandboxError> {
        let catalog = server.catalog().await?;
        let models: Vec<CatalogModel> = catalog
            .iter()
            .filter(|a| a.id == agent_id)
            .flat_map(|a| {
                a.models.iter().map(|o| CatalogModel {
                    id: o.value.clone(),
                    label: o.name.clone(),
                    agent: a.id.clone(),
                })
            })
            .collect();
        if models.is_empty() {
            return Err(SandboxError::Protocol(format!("agent {agent_id:?} offers no models")));
        }
        let n = models.len();
        *self.models.write().unwrap_or_else(|p| p.into_inner()) = models;
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = format!("sandbox-agent:{agent_id}");
        Ok(n)
    }
}

/// The model a new session gets when nobody chose one: [`DEFAULT_MODEL`] if the catalog has it, else its first.
pub fn default_for(tx: &Tx<'_>) -> String {
    match tx.service::<ModelCatalog>() {
        Some(catalog) if !catalog.contains(DEFAULT_MODEL) => {
            catalog.models().first().map_or_else(|| DEFAULT_MODEL.to_owned(), |m| m.id.clone())
        }
        _ => DEFAULT_MODEL.to_owned(),
    }
}

/// Whether a mutation may use model `id`: the provided catalog service, else the built-in list.
pub fn is_allowed(tx: &Tx<'_>, id: &str) -> bool {
    match tx.service::<ModelCatalog>() {
        Some(catalog) => catalog.contains(id),
        None => is_known_model(id),
    }
}
