//! The sandbox-agent server's agent catalog (`GET /v1/agents?config=true`): each agent's config options (model,
//! mode, thought level) and how foundry's settings map to an agent's own values.

use serde::Serialize;
use serde_json::Value;

/// One agent of the server's catalog, with its selectable options.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogAgent {
    pub id: String,
    pub installed: bool,
    pub models: Vec<CatalogOption>,
    pub modes: Vec<CatalogOption>,
    pub thought_levels: Vec<CatalogOption>,
    /// The config options the lists above come from.
    pub settings: Vec<CatalogSetting>,
}

impl CatalogAgent {
    /// The config option of `category` (`model`, `mode`, `thought_level`), if the agent has one.
    pub fn setting(&self, category: &str) -> Option<&CatalogSetting> {
        self.settings.iter().find(|s| s.category == category)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogOption {
    pub value: String,
    pub name: String,
}

/// One config option of an agent (`configOptions[]`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CatalogSetting {
    /// What `session/set_config_option` names it by (`configId`).
    pub id: String,
    pub category: String,
    /// The agent's own default (`currentValue`).
    pub current: Option<String>,
    pub options: Vec<CatalogOption>,
}

impl CatalogSetting {
    /// The agent's value for foundry's `wanted`: the same value, else the option whose value or name matches
    /// ignoring case and punctuation (`accept-edits` is claude's `acceptEdits`, `default` is codex's `auto`, named
    /// "Default"), else for `default` the agent's own default. `None` if the agent offers nothing like it.
    pub fn pick(&self, wanted: &str) -> Option<String> {
        if let Some(o) = self.options.iter().find(|o| o.value == wanted) {
            return Some(o.value.clone());
        }
        let norm = |s: &str| s.chars().filter(char::is_ascii_alphanumeric).collect::<String>().to_ascii_lowercase();
        let w = norm(wanted);
        if let Some(o) = self.options.iter().find(|o| norm(&o.value) == w || norm(&o.name) == w) {
            return Some(o.value.clone());
        }
        if wanted == "default" {
            return self.current.clone().or_else(|| self.options.first().map(|o| o.value.clone()));
        }
        None
    }
}

/// Options may nest in groups (`{name, options: [...]}`).
pub(super) fn collect_options(list: &Value, out: &mut Vec<CatalogOption>) {
    for o in list.as_array().into_iter().flatten() {
        if let Some(value) = o["value"].as_str() {
            out.push(CatalogOption { value: value.to_owned(), name: o["name"].as_str().unwrap_or(value).to_owned() });
        } else {
            collect_options(&o["options"], out);
        }
    }
}

pub(super) fn parse_agent(a: &Value) -> CatalogAgent {
    let settings: Vec<CatalogSetting> = a["configOptions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| {
            let category = c["category"].as_str()?.to_owned();
            let mut options = Vec::new();
            collect_options(&c["options"], &mut options);
            Some(CatalogSetting {
                // Older servers name no id: the category is what they accept.
                id: c["id"].as_str().unwrap_or(&category).to_owned(),
                current: c["currentValue"].as_str().map(str::to_owned),
                category,
                options,
            })
        })
        .collect();
    let options = |category: &str| -> Vec<CatalogOption> {
        settings.iter().filter(|s| s.category == category).flat_map(|s| s.options.clone()).collect()
    };
    CatalogAgent {
        id: a["id"].as_str().unwrap_or_default().to_owned(),
        installed: a["installed"].as_bool().unwrap_or(false),
        models: options("model"),
        modes: options("mode"),
        thought_levels: options("thought_level"),
        settings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn catalog_options_flatten_groups() {
        let agent = json!({"id":"codex","installed":true,"configOptions":[
            {"category":"model","options":[{"value":"a","name":"A"},{"name":"group","options":[{"value":"b","name":"B"}]}]},
            {"category":"thought_level","options":[{"value":"high","name":"High"}]}]});
        let parsed = parse_agent(&agent);
        assert_eq!(parsed.models.iter().map(|o| o.value.as_str()).collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(parsed.thought_levels.len(), 1);
        assert!(parsed.modes.is_empty());
        assert_eq!(parsed.setting("model").map(|s| s.id.as_str()), Some("model"), "the category when no id");
        let mock = parse_agent(&json!({"id":"mock","configOptions":[
            {"category":"mode","id":"mode","currentValue":"normal","options":[{"value":"normal","name":"Normal"}]}]}));
        assert_eq!(mock.setting("mode").and_then(|s| s.current.as_deref()), Some("normal"));
    }
}
