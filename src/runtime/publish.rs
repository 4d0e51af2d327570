//! Topic versions and publishing: a transaction's touched topics get their next version inside it; once it has
//! committed, each change reaches the hub as the patch the transaction described, or as a full snapshot built from
//! the database when it described none (or the hub cannot take the patch: nothing held yet, a failed publish).

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use diesel::sqlite::SqliteConnection;

use super::actor::{panic_text, EntityActor};
use super::entity::{Effects, Entity, SnapshotError};
use super::outbox;
use super::patch::PatchOp;
use super::topic::TopicEvent;

/// One committed change of a topic, waiting to be published.
pub(crate) struct Change {
    pub topic: String,
    pub version: u64,
    /// `None`: publish a full snapshot.
    pub ops: Option<Vec<PatchOp>>,
}

/// Inside a write transaction, after the writes: bumps the versions of touched topics; if outbox rows were
/// written, marks the actor in the recovery index (before the commit, so a crash right after it still resumes
/// delivery); if schedules changed, notes the earliest one and lowers the actor's entry in the due index to it unless
/// the index is known to hold an earlier time (`indexed_at`), so the index never says later than the truth once this
/// commits, even if the process dies right after. Returns the changes with their new versions, to apply in memory and
/// publish once committed.
pub(crate) fn stage_effects(
    conn: &mut SqliteConnection,
    shared: &super::system::Shared,
    kind: &str,
    encoded: &str,
    versions: &HashMap<String, u64>,
    (dirty_marked, indexed_at): (bool, Option<i64>),
    effects: &mut Effects,
) -> diesel::QueryResult<Vec<Change>> {
    let mut changes = Vec::with_capacity(effects.touched.len());
    for t in std::mem::take(&mut effects.touched) {
        let version = versions.get(&t.topic).copied().unwrap_or(0) + 1;
        outbox::store_version(conn, &t.topic, version)?;
        changes.push(Change { topic: t.topic, version, ops: t.ops });
    }
    if (effects.outbox_written || effects.work_owed) && !dirty_marked {
        shared
            .index
            .mark(kind, encoded)
            .map_err(|e| diesel::result::Error::QueryBuilderError(format!("recovery index: {e}").into()))?;
    }
    if effects.schedules_changed {
        let earliest = super::schedule::earliest(conn)?;
        effects.earliest_due = earliest;
        if let Some(due) = earliest.filter(|due| indexed_at.is_none_or(|at| *due < at)) {
            shared
                .index
                .lower_due(kind, encoded, due)
                .map_err(|e| diesel::result::Error::QueryBuilderError(format!("due index: {e}").into()))?;
        }
    }
    Ok(changes)
}

impl<E: Entity> EntityActor<E> {
    /// Publishes committed changes in commit order, to topics someone listens to. Errors are logged: subscribers keep
    /// the last good state.
    pub(crate) fn publish_changes(&mut self, changes: Vec<Change>) {
        // Topics already published as a full snapshot of their current version, which covers their later changes.
        let mut settled: Vec<String> = Vec::new();
        for c in changes {
            if settled.contains(&c.topic) {
                continue;
            }
            let shared = self.core.shared();
            let encoded = &self.core.encoded;
            if !shared.hub.has_subscribers(E::KIND, encoded, &c.topic) {
                settled.push(c.topic);
                continue;
            }
            if let Some(ops) = &c.ops {
                if shared.hub.publish_patch(E::KIND, encoded, &c.topic, c.version, ops).is_ok() {
                    continue;
                }
            }
            if let Err(e) = self.publish_snapshot(&c.topic) {
                tracing::error!(kind = E::KIND, key = %self.core.encoded, topic = c.topic, error = %e, "snapshot failed");
            }
            settled.push(c.topic);
        }
    }

    /// Makes sure the hub holds `topic` at its current version, for a new subscriber's first frame: the snapshot is
    /// built from the database only if the hub does not hold that version already (a thousand subscribers joining a
    /// topic cost one snapshot, not a thousand).
    pub(crate) fn publish_current(&mut self, topic: &str) -> Result<(), SnapshotError> {
        let version = self.core.version(topic);
        if self.core.shared().hub.version(E::KIND, &self.core.encoded, topic) == Some(version) {
            return Ok(());
        }
        self.publish_snapshot(topic)
    }

    /// Builds `topic`'s full snapshot from the database and publishes it at the current version.
    fn publish_snapshot(&mut self, topic: &str) -> Result<(), SnapshotError> {
        let version = self.core.version(topic);
        let EntityActor { entity, core } = self;
        let conn = core.conn();
        let value = match catch_unwind(AssertUnwindSafe(|| entity.snapshot(topic, conn))) {
            Ok(v) => v?,
            Err(p) => return Err(SnapshotError::Serialize(serde::ser::Error::custom(panic_text(&p)))),
        };
        let raw = serde_json::value::to_raw_value(&value)?;
        let event = TopicEvent::new(E::KIND, core.encoded.clone(), topic.to_owned(), version, Arc::from(raw));
        core.shared().hub.publish(event);
        Ok(())
    }
}
