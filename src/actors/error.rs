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
