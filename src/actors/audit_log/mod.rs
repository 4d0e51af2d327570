//! The organization's audit log (domain rule 7): one actor per organization (key: the org id), owning the
//! append-only `events` table (id, kind, repo id, task id, session id, user id, payload json, at).
//!
//! - Appending: [`AppendAuditEvent`], a [`Mutation`](crate::runtime::Mutation) and
//!   [`Delivery`](crate::runtime::Delivery) (`audit.append`). Other actors append in their own transaction with
//!   `tx.send(&org_id, &AppendAuditEvent { .. })`: fire-and-forget for the caller, yet never lost (the outbox delivers
//!   it if and only if the caller's transaction commits, exactly once in effect). The kind must be one of
//!   [`AUDIT_KINDS`] (check with [`is_audit_kind`] before sending: a refused delivery is dead-lettered). Two identical
//!   appends are two events; deduplicating redeliveries is the runtime's job (outbox sequence), not this actor's.
//! - Listing: [`ListAuditEvents`], a read returning an [`AuditPage`] newest first (by id), optionally filtered by
//!   repository or by repository + task, paginated with `before_id` / `next_before`. One SQL query per page.
//!
//! The log publishes no topic: appends touch nothing, so they cost subscribers nothing.

pub mod messages;
pub mod schema;

use diesel::sqlite::SqliteConnection;
use diesel::QueryResult;

use crate::runtime::{embed_migrations, Accepts, EmbeddedMigrations, Entity};

pub use messages::{AppendAuditEvent, AuditEvent, AuditPage, ListAuditEvents, MAX_PAGE};

/// Every event kind the log accepts. The list of domain rule 7 (task lifecycle, sessions, messages, model and title
/// changes, pull request, file revert, archive/kill, push/merge) plus `task.unread.marked`, `repository.added` and
/// `organization.created`. Appending any other kind is refused as invalid input.
pub const AUDIT_KINDS: &[&str] = &[
    "task.created",
    "task.switch",
    "task.session.created",
    "task.session.closed",
    "task.session.stopped",
    "task.session.renamed",
    "task.message.sent",
    "task.model.changed",
    "task.title.changed",
    "task.pr.published",
    "task.file.reverted",
    "task.archived",
    "task.killed",
    "task.unarchived",
    "task.pushed",
    "task.merged",
    "task.unread.marked",
    "repository.added",
    "organization.created",
];

/// Whether `kind` is one of [`AUDIT_KINDS`].
pub fn is_audit_kind(kind: &str) -> bool {
    AUDIT_KINDS.contains(&kind)
}

/// The audit log of one organization. Holds only its key; every event lives in SQLite.
pub struct AuditLog {
    pub org_id: String,
}

impl Entity for AuditLog {
    type Key = String;
    const KIND: &'static str = "audit_log";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/audit_log");

    fn load(key: &String, _db: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(AuditLog { org_id: key.clone() })
    }

    fn accepts(deliveries: &mut Accepts<Self>) {
        deliveries.accept::<AppendAuditEvent>();
    }
}
