//! The model catalog: which models, modes and thought levels a session may use. `ModelCatalog` is a runtime service
//! holding the agent backend's live catalog (`GET /v1/agents?config=true` of a sandbox-agent server, refreshed on
//! demand); the built-in lists below are its fallback and what is used when no catalog service is provided.

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

/// Modes and thought levels a session may select (built-in). `default` (the first mode) is always allowed: it means
/// the agent's own default mode, whatever the agent calls it.
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
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CatalogModel {
    pub id: String,
    pub label: String,
    pub agent: String,
}

/// What a live catalog says besides its models (the built-in catalog has none of it).
#[derive(Debug, Clone, Default)]
struct LiveOptions {
    /// The agent's own default model (its `currentValue`).
    default_model: Option<String>,
    modes: Vec<String>,
    thought_levels: Vec<String>,
}

/// The models sessions may use, as a runtime service (`Runtime::provide(Arc::new(ModelCatalog::builtin()))`).
#[derive(Debug)]
pub struct ModelCatalog {
    models: RwLock<Vec<CatalogModel>>,
    source: RwLock<String>,
    live: RwLock<Option<LiveOptions>>,
}

impl ModelCatalog {
    /// The built-in catalog.
    pub fn builtin() -> Self {
        let models = BUILTIN
            .iter()
            .map(|m| CatalogModel { id: m.id.to_owned(), label: m.label.to_owned(), agent: m.agent.to_owned() })
            .collect();
        ModelCatalog { models: RwLock::new(models), source: RwLock::new("builtin".to_owned()), live: RwLock::new(None) }
    }

    /// A catalog of the given models (another backend's list, tests).
    pub fn from_models(models: Vec<CatalogModel>, source: &str) -> Self {
        ModelCatalog { models: RwLock::new(models), source: RwLock::new(source.to_owned()), live: RwLock::new(None) }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.models.read().unwrap_or_else(|p| p.into_inner()).iter().any(|m| m.id == id)
    }

    pub fn models(&self) -> Vec<CatalogModel> {
        self.models.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The modes a session may select: `default` and the live agent's modes, else the built-in list.
    pub fn modes(&self) -> Vec<String> {
        match &*self.live.read().unwrap_or_else(|p| p.into_inner()) {
            Some(live) if !live.modes.is_empty() => {
                let mut modes = vec![MODES[0].to_owned()];
                modes.extend(live.modes.iter().filter(|m| m.as_str() != MODES[0]).cloned());
                modes
            }
            _ => MODES.iter().map(|m| (*m).to_owned()).collect(),
        }
    }

    /// The thought levels a session may select: the live agent's (and [`DEFAULT_THOUGHT_LEVEL`], which new sessions
    /// start with), else the built-in list.
    pub fn thought_levels(&self) -> Vec<String> {
        match &*self.live.read().unwrap_or_else(|p| p.into_inner()) {
            Some(live) if !live.thought_levels.is_empty() => {
                let mut levels = live.thought_levels.clone();
                if !levels.iter().any(|l| l == DEFAULT_THOUGHT_LEVEL) {
                    levels.push(DEFAULT_THOUGHT_LEVEL.to_owned());
                }
                levels
            }
            _ => THOUGHT_LEVELS.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    /// The model new sessions get when nobody chose one: the live agent's own default, else [`DEFAULT_MODEL`] if
    /// listed, else the first model listed.
    pub fn default_model(&self) -> String {
        let models = self.models.read().unwrap_or_else(|p| p.into_inner());
        let live = self.live.read().unwrap_or_else(|p| p.into_inner());
        let agent_default = live.as_ref().and_then(|l| l.default_model.as_deref());
        agent_default
            .filter(|d| models.iter().any(|m| m.id == *d))
            .or_else(|| models.iter().any(|m| m.id == DEFAULT_MODEL).then_some(DEFAULT_MODEL))
            .or_else(|| models.first().map(|m| m.id.as_str()))
            .unwrap_or(DEFAULT_MODEL)
            .to_owned()
    }

    /// Where the current list came from (`builtin`, or the sandbox-agent agent it was read from).
    pub fn source(&self) -> String {
        self.source.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the lists with `agent_id`'s models, modes and thought levels from the sandbox-agent server. Keeps
    /// the current lists (and says why) when the server fails or offers no model for that agent. Returns the number
    /// of models now listed.
    pub async fn refresh_from(&self, server: &SandboxAgent, agent_id: &str) -> Result<usize, SandboxError> {
        let catalog = server.catalog().await?;
        let Some(agent) = catalog.iter().find(|a| a.id == agent_id) else {
            return Err(SandboxError::Protocol(format!("agent {agent_id:?} offers no models")));
        };
        let models: Vec<CatalogModel> = agent
            .models
            .iter()
            .map(|o| CatalogModel { id: o.value.clone(), label: o.name.clone(), agent: agent.id.clone() })
            .collect();
        if models.is_empty() {
            return Err(SandboxError::Protocol(format!("agent {agent_id:?} offers no models")));
        }
        let values = |options: &[crate::integrations::agent::sandbox::CatalogOption]| {
            options.iter().map(|o| o.value.clone()).collect::<Vec<_>>()
        };
        let live = LiveOptions {
            default_model: agent.setting("model").and_then(|s| s.current.clone()),
            modes: values(&agent.modes),
            thought_levels: values(&agent.thought_levels),
        };
        let n = models.len();
        *self.models.write().unwrap_or_else(|p| p.into_inner()) = models;
        *self.live.write().unwrap_or_else(|p| p.into_inner()) = Some(live);
        *self.source.write().unwrap_or_else(|p| p.into_inner()) = format!("sandbox-agent:{agent_id}");
        Ok(n)
    }
}

/// The model a new session (or a new user) gets when nobody chose one: see [`ModelCatalog::default_model`];
/// [`DEFAULT_MODEL`] without a catalog service.
pub fn default_for(tx: &Tx<'_>) -> String {
    match tx.service::<ModelCatalog>() {
        Some(catalog) => catalog.default_model(),
        None => DEFAULT_MODEL.to_owned(),
    }
}

/// Whether a mutation may use model `id`: the provided catalog service, else the built-in list.
pub fn is_allowed(tx: &Tx<'_>, id: &str) -> bool {
    match tx.service::<ModelCatalog>() {
        Some(catalog) => catalog.contains(id),
        None => is_known_model(id),
    }
}

/// Whether a mutation may select `mode`: the provided catalog's modes, else the built-in list.
pub fn is_mode_allowed(tx: &Tx<'_>, mode: &str) -> bool {
    match tx.service::<ModelCatalog>() {
        Some(catalog) => catalog.modes().iter().any(|m| m == mode),
        None => MODES.contains(&mode),
    }
}

/// Whether a mutation may select thought level `level`: the provided catalog's, else the built-in list.
pub fn is_thought_level_allowed(tx: &Tx<'_>, level: &str) -> bool {
    match tx.service::<ModelCatalog>() {
        Some(catalog) => catalog.thought_levels().iter().any(|l| l == level),
        None => THOUGHT_LEVELS.contains(&level),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(id: &str) -> CatalogModel {
        CatalogModel { id: id.to_owned(), label: id.to_owned(), agent: "mock".to_owned() }
    }

    #[test]
    fn live_options_replace_the_builtin_lists() {
        let catalog = ModelCatalog::builtin();
        assert_eq!(catalog.default_model(), DEFAULT_MODEL);
        assert_eq!(catalog.modes(), MODES);
        let catalog = ModelCatalog::from_models(vec![model("mock"), model("mock-fast")], "test");
        assert_eq!(catalog.default_model(), "mock", "the first model when the default is not listed");
        *catalog.live.write().unwrap() = Some(LiveOptions {
            default_model: Some("mock-fast".into()),
            modes: vec!["normal".into(), "plan".into()],
            thought_levels: vec!["low".into(), "high".into()],
        });
        assert_eq!(catalog.default_model(), "mock-fast");
        assert_eq!(catalog.modes(), ["default", "normal", "plan"]);
        assert_eq!(catalog.thought_levels(), ["low", "high", DEFAULT_THOUGHT_LEVEL]);
    }
}
