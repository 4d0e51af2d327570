//! The domain's error type: what every domain message can refuse with. Each variant has a stable code for the HTTP
//! layer; a refused mutation changes nothing (the runtime rolls its transaction back).

/// A domain refusal.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("{what} {id:?} not found")]
    NotFound { what: &'static str, id: String },
    #[error("{0}")]
    Conflict(String),
    #[error("invalid {field}: {message}")]
    Invalid { field: &'static str, message: String },
    #[error("{0}")]
    Unprocessable(String),
    /// The task is archived or killed: its sessions take no prompts (`task_archived`, 409).
    #[error("{0}")]
    TaskArchived(String),
    /// The task's workspace cannot do this now (`workspace_unavailable`, 409): not provisioned, failed, released.
    #[error("{0}")]
    WorkspaceUnavailable(String),
    /// The git host refused or failed (`git_failed`, 422 for a refusal, 502 when it could not be reached).
    #[error("{message}")]
    Git { message: String, unreachable: bool },
    #[error("storage: {0}")]
    Db(#[from] diesel::result::Error),
}

impl DomainError {
    pub fn not_found(what: &'static str, id: impl Into<String>) -> Self {
        DomainError::NotFound { what, id: id.into() }
    }

    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid { field, message: message.into() }
    }

    /// The same refusal reported against another field name.
    pub fn with_field(self, field: &'static str) -> Self {
        match self {
            DomainError::Invalid { message, .. } => DomainError::Invalid { field, message },
            other => other,
        }
    }

    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::NotFound { .. } => "not_found",
            DomainError::Conflict(_) => "conflict",
            DomainError::Invalid { .. } => "invalid_input",
            DomainError::Unprocessable(_) => "unprocessable",
            DomainError::TaskArchived(_) => "task_archived",
            DomainError::WorkspaceUnavailable(_) => "workspace_unavailable",
            DomainError::Git { .. } => "git_failed",
            DomainError::Db(_) => "storage",
        }
    }
}

/// Result of domain handlers.
pub type DomainResult<T> = Result<T, DomainError>;

/// `DomainError` as it crosses nodes (cluster mode): its code plus the fields of that variant.
#[derive(serde::Serialize, serde::Deserialize)]
struct WireDomainError {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    what: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    unreachable: bool,
}

impl serde::Serialize for DomainError {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut wire = WireDomainError {
            code: self.code().to_owned(),
            message: String::new(),
            what: None,
            id: None,
            field: None,
            unreachable: false,
        };
        match self {
            DomainError::NotFound { what, id } => {
                wire.what = Some((*what).to_owned());
                wire.id = Some(id.clone());
            }
            DomainError::Invalid { field, message } => {
                wire.field = Some((*field).to_owned());
                wire.message = message.clone();
            }
            DomainError::Git { message, unreachable } => {
                wire.message = message.clone();
                wire.unreachable = *unreachable;
            }
            DomainError::Conflict(m)
            | DomainError::Unprocessable(m)
            | DomainError::TaskArchived(m)
            | DomainError::WorkspaceUnavailable(m) => wire.message = m.clone(),
            DomainError::Db(e) => wire.message = e.to_string(),
        }
        wire.serialize(serializer)
    }
}

impl<'de> serde::Deserialize<'de> for DomainError {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let w = WireDomainError::deserialize(deserializer)?;
        Ok(match w.code.as_str() {
            "not_found" => DomainError::NotFound {
                what: static_name(w.what.as_deref().unwrap_or_default()),
                id: w.id.unwrap_or_default(),
            },
            "conflict" => DomainError::Conflict(w.message),
            "invalid_input" => {
                DomainError::Invalid { field: static_name(w.field.as_deref().unwrap_or_default()), message: w.message }
            }
            "unprocessable" => DomainError::Unprocessable(w.message),
            "task_archived" => DomainError::TaskArchived(w.message),
            "workspace_unavailable" => DomainError::WorkspaceUnavailable(w.message),
            "git_failed" => DomainError::Git { message: w.message, unreachable: w.unreachable },
            // The database error itself stays on the node that had it; its text travels, and the code (`storage`)
            // and HTTP mapping stay those of a local one.
            "storage" => DomainError::Db(diesel::result::Error::QueryBuilderError(w.message.into())),
            other => return Err(serde::de::Error::unknown_variant(other, CODES)),
        })
    }
}

const CODES: &[&str] = &[
    "not_found",
    "conflict",
    "invalid_input",
    "unprocessable",
    "task_archived",
    "workspace_unavailable",
    "git_failed",
    "storage",
];

pub(crate) use crate::runtime::remote::static_name;

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(e: DomainError) -> DomainError {
        let json = serde_json::to_string(&e).unwrap();
        serde_json::from_str(&json).unwrap()
    }

    #[test]
    fn every_variant_survives_the_wire_with_its_code_and_text() {
        let all = vec![
            DomainError::not_found("organization", "acme"),
            DomainError::Conflict("already exists".into()),
            DomainError::invalid("name", "is empty"),
            DomainError::Unprocessable("cannot".into()),
            DomainError::TaskArchived("task is archived".into()),
            DomainError::WorkspaceUnavailable("not provisioned".into()),
            DomainError::Git { message: "refused".into(), unreachable: false },
            DomainError::Git { message: "down".into(), unreachable: true },
            DomainError::Db(diesel::result::Error::NotFound),
        ];
        for e in all {
            let (code, text) = (e.code(), e.to_string());
            let back = round_trip(e);
            assert_eq!(back.code(), code);
            assert_eq!(back.to_string(), text, "{code}");
        }
    }

    #[test]
    fn fields_come_back_so_handlers_can_match_on_them() {
        assert!(matches!(
            round_trip(DomainError::not_found("repository", "r1")),
            DomainError::NotFound { what: "repository", id } if id == "r1"
        ));
        assert!(matches!(
            round_trip(DomainError::invalid("default_branch", "bad")),
            DomainError::Invalid { field: "default_branch", message } if message == "bad"
        ));
        assert!(matches!(
            round_trip(DomainError::Git { message: "down".into(), unreachable: true }),
            DomainError::Git { unreachable: true, .. }
        ));
        // The same name received twice is the same leaked string, not a second copy.
        assert!(std::ptr::eq(static_name("some_field_x"), static_name("some_field_x")));
    }

    #[test]
    fn an_unknown_code_does_not_decode() {
        assert!(serde_json::from_str::<DomainError>(r#"{"code":"exploded","message":"x"}"#).is_err());
    }
}
