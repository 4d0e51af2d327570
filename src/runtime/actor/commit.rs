//! Group commit: the mutations gathered while the mailbox drained share one IMMEDIATE transaction (a savepoint
//! each when more than one); `EntityCtx::write` is one transaction of its own. After commit: topic versions in
//! memory, publishing, outbox delivery, replies.

use std::sync::atomic::Ordering;

use actix::prelude::*;
use diesel::connection::Connection;

use super::super::batch::{BatchOutcome, ItemFailed, PendingItem};
use super::super::db;
use super::super::durable::LogError;
use super::super::entity::{Effects, Entity, Tx};
use super::super::publish::{stage_effects, Change};
use super::{Core, EntityActor};

/// Commit the mutations gathered so far (sent to self once the mailbox has been drained).
struct Flush;
impl Message for Flush {
    type Result = ();
}

impl<E: Entity> Core<E> {
    /// One write transaction from a command or a background callback (see `EntityCtx::write`).
    pub(crate) fn write<T, Err>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, Err>) -> Result<T, Err>
    where
        Err: From<diesel::result::Error>,
    {
        let shared = self.registry.inner.shared.clone();
        let mut effects = Effects::default();
        let mut changes = Vec::new();
        let (versions, marks, encoded) = (&self.versions, (self.dirty_marked, self.indexed.known_at()), &self.encoded);
        let conn = self.conn.as_mut().expect("commands and callbacks only run while the database is open");
        let res = db::writable(conn, shared.config.guard_reads, |conn| {
            conn.immediate_transaction::<T, Err, _>(|conn| {
                let out = f(&mut Tx { conn, effects: &mut effects, runtime: &shared, kind: E::KIND })?;
                changes = stage_effects(conn, &shared, E::KIND, encoded, versions, marks, &mut effects)?;
                Ok(out)
            })
        });
        if res.is_ok() {
            self.registry.inner.stats.transactions.fetch_add(1, Ordering::Relaxed);
            // Each write is its own version: its patch is published in order with the others of the command.
            for c in &changes {
                self.versions.insert(c.topic.clone(), c.version);
            }
            self.written.extend(changes);
            for ev in std::mem::take(&mut effects.events) {
                self.emitted(ev);
            }
            self.dirty_marked |= effects.work_owed;
            if effects.outbox_written {
                self.dirty_marked = true;
                self.outbox.pending = true;
                self.written_outbox = true;
            }
            if effects.schedules_changed {
                self.written_schedules = Some(effects.earliest_due);
            }
            if let Some(d) = self.durable.as_mut() {
                d.wake.committed(
                    effects.outbox_written || effects.work_owed,
                    effects.schedules_changed.then_some(effects.earliest_due),
                );
            }
        }
        res
    }
}

impl<E: Entity> EntityActor<E> {
    pub(super) fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        let cfg = &self.core.registry.inner.config;
        if !cfg.group_commit || self.core.pending.len() >= cfg.max_batch {
            self.flush(ctx);
        } else if !self.core.flush_scheduled {
            self.core.flush_scheduled = true;
            ctx.notify(Flush);
        }
    }

    /// Commits every pending mutation in one IMMEDIATE transaction, one savepoint per mutation (when more than one),
    /// then bumps topic versions, publishes snapshots, starts outbox delivery and replies.
    pub(super) fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.core.pending.is_empty() || !self.core.is_open() {
            return;
        }
        let mut batch = std::mem::take(&mut self.core.pending);
        if let Some(failed) = self.core.durable.as_ref().and_then(|d| d.failure()) {
            // The file holds commits the log refused: nothing more is committed on it (the actor is stopping).
            let outcome = BatchOutcome::NotDurable(failed);
            for item in batch {
                item.finish(&outcome, E::KIND, &self.core.encoded);
            }
            return;
        }
        let span = tracing::debug_span!("commit", kind = E::KIND, key = %self.core.encoded, batch = batch.len());
        let _enter = span.enter();
        let EntityActor { entity, core } = self;
        let shared = core.registry.inner.shared.clone();
        let single = batch.len() == 1;
        let mut effects = Effects::default();
        let mut panicked: Option<String> = None;
        // A savepoint that itself failed (not the mutation): that caller must not hear "committed".
        let mut item_errors: Vec<Option<String>> = vec![None; batch.len()];
        let mut changes: Vec<Change> = Vec::new();
        let (versions, marks, encoded) = (&core.versions, (core.dirty_marked, core.indexed.known_at()), &core.encoded);
        let conn = core.conn.as_mut().expect("checked is_open above");
        let result = db::writable(conn, shared.config.guard_reads, |conn| {
            conn.immediate_transaction::<_, diesel::result::Error, _>(|conn| {
                for (i, item) in batch.iter_mut().enumerate() {
                    let item_span = tracing::debug_span!("apply", msg = item.name());
                    let _item_enter = item_span.enter();
                    let mut eff = Effects::default();
                    let res = if single {
                        item.apply(entity, &mut Tx { conn, effects: &mut eff, runtime: &shared, kind: E::KIND })
                    } else {
                        conn.transaction::<_, ItemFailed, _>(|conn| {
                            item.apply(entity, &mut Tx { conn, effects: &mut eff, runtime: &shared, kind: E::KIND })
                        })
                    };
                    match res {
                        Ok(()) => effects.merge(eff),
                        Err(ItemFailed::Db(e)) if single => return Err(e),
                        Err(failed) => {
                            match failed {
                                ItemFailed::Panicked(p) => panicked = Some(p),
                                ItemFailed::Db(e) => item_errors[i] = Some(e.to_string()),
                                ItemFailed::Handler => {}
                            }
                            if single {
                                // A lone mutation has no savepoint: undo its writes by aborting the transaction.
                                return Err(diesel::result::Error::RollbackTransaction);
                            }
                        }
                    }
                }
                changes = stage_effects(conn, &shared, E::KIND, encoded, versions, marks, &mut effects)?;
                Ok(())
            })
        });
        let stats = &core.registry.inner.stats;
        let outcome = match result {
            Ok(()) => {
                stats.transactions.fetch_add(1, Ordering::Relaxed);
                stats.committed_mutations.fetch_add(batch.len() as u64, Ordering::Relaxed);
                BatchOutcome::Committed
            }
            // A lone mutation's own failure rolled the transaction back: its reply carries its own error.
            Err(diesel::result::Error::RollbackTransaction) => BatchOutcome::Committed,
            Err(e) => {
                changes.clear();
                effects = Effects::default();
                tracing::error!(error = %e, "commit failed");
                BatchOutcome::StorageFailed(e.to_string())
            }
        };
        if let (BatchOutcome::Committed, Some(d)) = (&outcome, core.durable.as_mut()) {
            // The entry shipping this commit carries the wake state it leaves.
            d.wake.committed(
                effects.outbox_written || effects.work_owed,
                effects.schedules_changed.then_some(effects.earliest_due),
            );
        }
        let committed = Committed { batch, item_errors, outcome, changes, effects, panicked };
        if matches!(committed.outcome, BatchOutcome::Committed) {
            // Cluster mode: nobody hears of the batch before the commit log has it (at once in single-node mode).
            self.after_durable(ctx, move |act, ctx, shipped| act.release(ctx, committed, shipped));
        } else {
            self.release(ctx, committed, Ok(()));
        }
    }

    /// The batch's commit is durable (or failed to become so): versions, publishing, replies, outbox, schedules.
    fn release(&mut self, ctx: &mut Context<Self>, committed: Committed<E>, shipped: Result<(), LogError>) {
        let Committed { batch, item_errors, mut outcome, mut changes, mut effects, panicked } = committed;
        if let Err(e) = shipped {
            // Not durable: nothing of the batch may be seen. The actor discards its file right after.
            outcome = BatchOutcome::NotDurable(e);
            changes.clear();
            effects = Effects::default();
        }
        let core = &mut self.core;
        for c in &changes {
            core.versions.insert(c.topic.clone(), c.version);
        }
        let events: Vec<_> = std::mem::take(&mut effects.events).into_iter().filter_map(|e| core.stamp(e)).collect();
        core.dirty_marked |= effects.work_owed;
        if effects.outbox_written {
            core.dirty_marked = true;
            core.outbox.pending = true;
        }
        self.publish_changes(changes);
        self.publish_events(events);
        // One clock read for the whole batch: its mutations end together, at their replies.
        let (end, clock) = (self.core.trace.start(), self.core.shared().clock_ms());
        for (item, err) in batch.into_iter().zip(item_errors) {
            let (name, kind, since) = item.traced();
            let traced = match (err, &outcome) {
                (Some(e), BatchOutcome::Committed) => {
                    item.finish(&BatchOutcome::StorageFailed(e), E::KIND, &self.core.encoded)
                }
                _ => item.finish(&outcome, E::KIND, &self.core.encoded),
            };
            self.core.trace.record(name, kind, traced, since, end, clock);
        }
        if effects.outbox_written {
            self.pump_outbox(ctx);
        }
        if effects.schedules_changed {
            self.schedules_committed(ctx, effects.earliest_due);
        }
        match panicked {
            Some(p) => self.restart(ctx, &p),
            None => self.core.failures = 0,
        }
    }
}

/// A batch committed locally, waiting to be released (see `EntityActor::release`).
struct Committed<E: Entity> {
    batch: Vec<Box<dyn PendingItem<E>>>,
    item_errors: Vec<Option<String>>,
    outcome: BatchOutcome,
    changes: Vec<Change>,
    effects: Effects,
    panicked: Option<String>,
}

impl<E: Entity> Handler<Flush> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.core.flush_scheduled = false;
        self.flush(ctx);
    }
}
