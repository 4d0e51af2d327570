//! The domain actors on the runtime: organization -> repository -> task -> session (a strict coordinator hierarchy),
//! plus user (per-user state, auth sessions, OAuth accounts), audit log and the app-level auth directory. Each kind
//! lives in its own folder with its state, messages, handlers and snapshot; its migrations are in
//! `migrations/<kind>/`.

pub mod audit_log;
pub mod auth_directory;
pub mod domain;
pub mod error;
pub mod github_data;
pub mod keys;
pub mod models;
pub mod organization;
mod remote;
pub mod repository;
pub mod session;
pub mod summary;
pub mod task;
pub mod user;
pub mod validate;
pub mod workspace_flow;

pub use domain::{Domain, DomainCallError, TaskView};
pub use error::{DomainError, DomainResult};
pub use keys::{RepoKey, SessionKey, TaskKey};

use crate::runtime::{SnapshotError, Tx};

/// A topic snapshot built by a domain read: `build` runs only for `expected`, and domain refusals become snapshot
/// errors (a database error keeps its type).
pub(crate) fn topic_snapshot<T: serde::Serialize>(
    kind: &'static str,
    topic: &str,
    expected: &str,
    build: impl FnOnce() -> DomainResult<T>,
) -> Result<serde_json::Value, SnapshotError> {
    if topic != expected {
        return Err(SnapshotError::UnknownTopic { kind, topic: topic.to_owned() });
    }
    match build() {
        Ok(v) => Ok(serde_json::to_value(v)?),
        Err(DomainError::Db(e)) => Err(e.into()),
        Err(other) => Err(SnapshotError::Serialize(serde::ser::Error::custom(other.to_string()))),
    }
}

/// Where an audit event belongs. Appends go through the sender's outbox (rule 7: fire-and-forget for the caller,
/// never lost, never duplicated).
#[derive(Debug, Clone, Copy)]
pub struct Audit<'a> {
    pub org: &'a str,
    pub repo: Option<&'a str>,
    pub task: Option<&'a str>,
    pub session: Option<&'a str>,
    pub user: Option<&'a str>,
}

impl<'a> Audit<'a> {
    pub fn org(org: &'a str) -> Self {
        Audit { org, repo: None, task: None, session: None, user: None }
    }

    pub fn task(key: &'a TaskKey) -> Self {
        Audit { repo: Some(&key.repo), task: Some(&key.task), ..Audit::org(&key.org) }
    }

    pub fn session(key: &'a SessionKey) -> Self {
        Audit { repo: Some(&key.repo), task: Some(&key.task), session: Some(&key.session), ..Audit::org(&key.org) }
    }

    pub fn by(self, user: Option<&'a str>) -> Self {
        Audit { user, ..self }
    }

    /// Queues the event in `tx`'s outbox for the organization's audit log.
    pub fn append(self, tx: &mut Tx<'_>, kind: &str, payload: serde_json::Value) -> DomainResult<()> {
        let event = audit_log::AppendAuditEvent {
            kind: kind.to_owned(),
            repo_id: self.repo.map(str::to_owned),
            task_id: self.task.map(str::to_owned),
            session_id: self.session.map(str::to_owned),
            user_id: self.user.map(str::to_owned),
            payload,
            at: now_ms(),
        };
        tx.send(&self.org.to_owned(), &event)?;
        Ok(())
    }
}

/// Milliseconds since the Unix epoch: the domain's timestamp unit.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
