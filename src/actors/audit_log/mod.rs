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

/// Every event kind the log accepts: the list of domain rule 7 (task lifecycle, sessions, messages, model and title
/// changes, pull request, file revert, archive/kill, push/merge), and the rest of what changes shared state or
/// access: steering, suspension; organizations, repositories, membership and roles; the GitHub connection and each
/// sync's start, end or failure; admin recovery operations; sandbox processes; sign-in and sign-out. Appending any
/// other kind is refused as invalid input (and a refused delivery is dead-lettered: add a kind here before using it).
pub const AUDIT_KINDS: &[&str] = &[
    "task.created",
    "task.switch",
    "task.session.created",
    "task.session.closed",
    "task.session.stopped",
    "task.session.renamed",
    "task.session.steered",
    "task.session.suspended",
    "task.session.resumed",
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
    "task.workspace.provisioned",
    "repository.added",
    "organization.created",
    "member.added",
    "member.role_changed",
    "member.removed",
    "github.connected",
    "github.account_renamed",
    "github.sync.started",
    "github.sync.finished",
    "github.sync.failed",
    "github.cleared",
    "admin.full_sync",
    "admin.clear_github",
    "admin.rebuild",
    "sandbox.process.started",
    "sandbox.process.stopped",
    "sandbox.process.killed",
    "sandbox.process.deleted",
    "auth.signed_in",
    "auth.signed_out",
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
        // Cluster mode: calls from other nodes (see `crate::actors::remote`).
        messages::accept_remote(deliveries);
    }
}
