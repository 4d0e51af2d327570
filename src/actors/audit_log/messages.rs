//! The audit log's messages: [`AppendAuditEvent`] (mutation, also deliverable through other actors' outboxes) and
//! [`ListAuditEvents`] (read, one page newest first).

use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use super::schema::{self, EventRow, NewEvent, PageQuery};
use super::{is_audit_kind, AuditLog};
use crate::actors::keys::{RepoKey, SessionKey, TaskKey};
use crate::actors::{DomainError, DomainResult};
use crate::runtime::{Delivery, Mutation, Read, Tx};

/// Largest page [`ListAuditEvents`] serves.
pub const MAX_PAGE: u32 = 500;

/// Appends one event; returns its id. Refuses a kind outside [`AUDIT_KINDS`](super::AUDIT_KINDS) (nothing stored).
/// Touches no topic. Other actors send it with `tx.send(&org_id, &AppendAuditEvent { .. })`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppendAuditEvent {
    pub kind: String,
    pub repo_id: Option<String>,
    pub task_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    /// Milliseconds since the Unix epoch, when the operation happened (not when it was appended).
    pub at: i64,
}

impl AppendAuditEvent {
    /// An event of `kind` at `at` with no subject ids and an empty object payload; add them with the `with_*` methods.
    pub fn new(kind: impl Into<String>, at: i64) -> Self {
        AppendAuditEvent {
            kind: kind.into(),
            repo_id: None,
            task_id: None,
            session_id: None,
            user_id: None,
            payload: serde_json::Value::Object(Default::default()),
            at,
        }
    }

    /// About a repository.
    pub fn with_repo(mut self, repo: &RepoKey) -> Self {
        self.repo_id = Some(repo.repo.clone());
        self
    }

    /// About a task (sets repository and task).
    pub fn with_task(mut self, task: &TaskKey) -> Self {
        self.repo_id = Some(task.repo.clone());
        self.task_id = Some(task.task.clone());
        self
    }

    /// About a session (sets repository, task and session).
    pub fn with_session(mut self, session: &SessionKey) -> Self {
        self.repo_id = Some(session.repo.clone());
        self.task_id = Some(session.task.clone());
        self.session_id = Some(session.session.clone());
        self
    }

    /// Done by `user_id`.
    pub fn with_user(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    pub fn with_payload(mut self, payload: serde_json::Value) -> Self {
        self.payload = payload;
        self
    }
}

impl Mutation for AppendAuditEvent {
    type Entity = AuditLog;
    type Output = i64;
    type Error = DomainError;

    fn apply(self, _: &AuditLog, tx: &mut Tx<'_>) -> DomainResult<i64> {
        if !is_audit_kind(&self.kind) {
            return Err(DomainError::invalid("kind", format!("unknown audit event kind {:?}", self.kind)));
        }
        let row = NewEvent {
            kind: &self.kind,
            repo_id: self.repo_id.as_deref(),
            task_id: self.task_id.as_deref(),
            session_id: self.session_id.as_deref(),
            user_id: self.user_id.as_deref(),
            payload: self.payload.to_string(),
            at: self.at,
        };
        Ok(schema::insert(tx.conn(), &row)?)
    }
}

impl Delivery for AppendAuditEvent {
    const NAME: &'static str = "audit.append";
}

/// One page of events, newest first. `task_id` requires `repo_id` (task ids are per repository); `limit` is
/// 1..=[`MAX_PAGE`]. Pass the page's `next_before` as `before_id` to get the next (older) page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListAuditEvents {
    pub repo_id: Option<String>,
    pub task_id: Option<String>,
    /// Only events with an id below this one.
    pub before_id: Option<i64>,
    pub limit: u32,
}

/// A stored event (camelCase on the wire, like every other reply).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub id: i64,
    pub kind: String,
    pub repo_id: Option<String>,
    pub task_id: Option<String>,
    pub session_id: Option<String>,
    pub user_id: Option<String>,
    pub payload: serde_json::Value,
    pub at: i64,
}

/// A page of [`ListAuditEvents`] (`{events, nextBefore}` on the wire).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuditPage {
    /// Newest first.
    pub events: Vec<AuditEvent>,
    /// The `before_id` of the next page; `None` when there are no older matching events.
    pub next_before: Option<i64>,
}

impl TryFrom<EventRow> for AuditEvent {
    type Error = DomainError;

    fn try_from(row: EventRow) -> DomainResult<AuditEvent> {
        let payload = serde_json::from_str(&row.payload)
            .map_err(|e| DomainError::Db(diesel::result::Error::DeserializationError(Box::new(e))))?;
        Ok(AuditEvent {
            id: row.id,
            kind: row.kind,
            repo_id: row.repo_id,
            task_id: row.task_id,
            session_id: row.session_id,
            user_id: row.user_id,
            payload,
            at: row.at,
        })
    }
}

impl Read for ListAuditEvents {
    type Entity = AuditLog;
    type Output = AuditPage;
    type Error = DomainError;

    fn read(self, _: &AuditLog, db: &mut SqliteConnection) -> DomainResult<AuditPage> {
        if self.limit == 0 || self.limit > MAX_PAGE {
            return Err(DomainError::invalid("limit", format!("must be 1..={MAX_PAGE}, got {}", self.limit)));
        }
        if self.task_id.is_some() && self.repo_id.is_none() {
            return Err(DomainError::invalid(
                "task_id",
                "filtering by task requires repo_id (task ids are per repository)",
            ));
        }
        let limit = self.limit as usize;
        // One query: fetch one row more than the page to learn whether an older page exists.
        let mut rows = schema::page(
            db,
            PageQuery {
                repo_id: self.repo_id.as_deref(),
                task_id: self.task_id.as_deref(),
                before_id: self.before_id,
                fetch: limit as i64 + 1,
            },
        )?;
        let more = rows.len() > limit;
        rows.truncate(limit);
        let events = rows.into_iter().map(AuditEvent::try_from).collect::<DomainResult<Vec<_>>>()?;
        let next_before = if more { events.last().map(|e| e.id) } else { None };
        Ok(AuditPage { events, next_before })
    }
}

crate::actors::remote::remote_messages! {
    super::AuditLog;
    mutations: AppendAuditEvent;
    reads: ListAuditEvents;
}
