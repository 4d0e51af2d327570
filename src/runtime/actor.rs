//! `EntityActor<E>`: the actix actor that hosts one entity instance and its database.
//!
//! It owns the supervision (panics are caught per handler, the actor reloads itself from its database and backs off on
//! repeated failure), group commit (mutations that arrive together share one IMMEDIATE transaction with a savepoint
//! each), topic publishing after commit, outbox delivery, idle passivation and the drain-then-close shutdown.

use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use diesel::connection::Connection;
use diesel::sqlite::SqliteConnection;
use futures_util::FutureExt;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::batch::{BatchOutcome, DeliverItem, ItemFailed, ItemResult, MutationItem, PendingItem};
use super::db;
use super::entity::{message_name, Command, Delivery, Effects, Entity, EntityCtx, Mutation, Read, SnapshotError, Tx};
use super::error::{ActivationFailure, CallError};
use super::outbox::{self, DeliveryOutcome, OutboxRow, Source};
use super::publish::{stage_effects, Change};
use super::registry::{Registry, Slot};
use super::topic::Subscription;

pub(crate) type Reply<T, E> = oneshot::Sender<Result<T, CallError<E>>>;

/// A read-only query for the actor (see [`Read`]).
pub struct Query<M: Read> {
    pub(crate) msg: M,
    pub(crate) reply: Reply<M::Output, M::Error>,
}
impl<M: Read> Message for Query<M> {
    type Result = ();
}

/// A mutation for the actor (see [`Mutation`]).
pub struct Mutate<M: Mutation> {
    pub(crate) msg: M,
    pub(crate) reply: Reply<M::Output, M::Error>,
}
impl<M: Mutation> Message for Mutate<M> {
    type Result = ();
}

/// A command for the actor (see [`Command`]).
pub struct Exec<C: Command> {
    pub(crate) cmd: C,
    pub(crate) reply: Reply<C::Output, C::Error>,
}
impl<C: Command> Message for Exec<C> {
    type Result = ();
}

/// An outbox message from another actor; applied at most once per (source, seq).
pub struct Deliver<M: Mutation> {
    pub(crate) source: Source,
    pub(crate) seq: i64,
    pub(crate) msg: M,
    /// `true` if applied now, `false` if it was a duplicate.
    pub(crate) reply: Reply<bool, M::Error>,
}
impl<M: Mutation> Message for Deliver<M> {
    type Result = ();
}

/// Subscribe to a topic: publishes the current snapshot to the new subscriber.
pub struct SubscribeTopic {
    pub(crate) topic: String,
    pub(crate) reply: Reply<Subscription, SnapshotError>,
}
impl Message for SubscribeTopic {
    type Result = ();
}

/// Passivate now if idle (registry eviction, admin).
pub(crate) struct Passivate {
    pub(crate) done: Option<oneshot::Sender<bool>>,
    /// Eviction with no idle actor left: passivate even with outbox rows still to deliver. They are durable (rows
    /// in the actor's database, its marker in the recovery index) and the runtime reactivates the actor to deliver
    /// them as soon as there is room. Without this, a full live set of actors waiting to deliver to actors that are
    /// not live could never make room for them.
    pub(crate) park_pending: bool,
}
impl Message for Passivate {
    type Result = ();
}

/// Drain calls in flight, then close the database and stop (runtime shutdown).
pub(crate) struct Shutdown {
    pub(crate) done: oneshot::Sender<()>,
}
impl Message for Shutdown {
    type Result = ();
}

/// The actor was activated by `Runtime::recover` because the recovery index lists it: it owns that marker now and
/// clears it once its outbox is empty, even if it opened with no rows left.
pub(crate) struct Recovered;
impl Message for Recovered {
    type Result = ();
}

/// Commit the mutations gathered so far (sent to self once the mailbox has been drained).
struct Flush;
impl Message for Flush {
    type Result = ();
}

/// How long an actor's outbox stays empty before its recovery marker is cleared.
const UNMARK_AFTER: Duration = Duration::from_secs(2);

/// Back-off before the actor processes messages again after its `failures`-th consecutive failure: none for an
/// isolated panic, then 10 ms doubling up to 5 s, so a poison message cannot make an actor spin.
pub fn restart_backoff(failures: u32) -> Duration {
    if failures <= 1 {
        return Duration::ZERO;
    }
    let ms = 10u64.saturating_mul(1u64 << (failures - 2).min(20));
    Duration::from_millis(ms.min(5_000))
}

pub(crate) struct Opened<E> {
    pub conn: SqliteConnection,
    pub incarnation: String,
    pub entity: E,
    pub versions: HashMap<String, u64>,
    pub outbox_pending: bool,
}

/// Opens, migrates and loads an entity; runs on the blocking pool at activation and inline on restart.
pub(crate) fn open_entity<E: Entity>(
    key: &E::Key,
    path: &Path,
    encoded: &str,
    opts: db::ConnOptions,
    fresh: bool,
) -> Result<Opened<E>, ActivationFailure> {
    let mut conn = db::open_actor_db(path, E::KIND, encoded, E::MIGRATIONS, opts, fresh)?;
    let load = |e: diesel::result::Error| ActivationFailure::Load(e.to_string());
    let versions = outbox::load_versions(&mut conn).map_err(load)?;
    let outbox_pending = outbox::has_rows(&mut conn).map_err(load)?;
    let incarnation = db::incarnation(&mut conn).map_err(load)?;
    let entity = E::load(key, &mut conn).map_err(load)?;
    Ok(Opened { conn, incarnation, entity, versions, outbox_pending })
}

/// Logs instead of unwinding: a panic in background work must not take the arbiter thread (and every actor on it)
/// down.
pub(crate) fn guard_panics<F: Future<Output = ()>>(fut: F) -> impl Future<Output = ()> {
    AssertUnwindSafe(fut).catch_unwind().map(|res| {
        if let Err(p) = res {
            tracing::error!(panic = %panic_text(&p), "background work panicked");
        }
    })
}

pub(crate) fn panic_text(p: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = p.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[derive(Default)]
struct OutboxState {
    /// Rows may be waiting.
    pending: bool,
    /// A delivery is on its way; the next starts when it is acknowledged.
    in_flight: bool,
    backoff: Duration,
    /// Panics of the receiver on the head row so far.
    panics: u32,
}

/// A delivery the receiver keeps panicking on is dead-lettered after this many attempts.
const MAX_DELIVERY_PANICS: u32 = 5;

enum StopState {
    Running,
    /// Shutdown requested: retired, draining calls in flight; these wait for the database to close.
    Draining(Vec<oneshot::Sender<()>>),
    Stopped,
}

pub(crate) struct CoreParts<E: Entity> {
    pub key: E::Key,
    pub encoded: String,
    pub path: PathBuf,
    pub opened_conn: SqliteConnection,
    pub incarnation: String,
    pub slot: Arc<Slot<E>>,
    pub registry: Registry<E>,
    pub versions: HashMap<String, u64>,
    pub outbox_pending: bool,
    pub live_permit: OwnedSemaphorePermit,
}

/// Everything the runtime keeps per actor besides the entity value.
pub struct Core<E: Entity> {
    pub(crate) key: E::Key,
    pub(crate) encoded: String,
    incarnation: String,
    path: PathBuf,
    conn: Option<SqliteConnection>,
    slot: Arc<Slot<E>>,
    registry: Registry<E>,
    versions: HashMap<String, u64>,
    pending: Vec<Box<dyn PendingItem<E>>>,
    flush_scheduled: bool,
    outbox: OutboxState,
    dirty_marked: bool,
    /// A check that clears this actor's recovery marker once its outbox has stayed empty is scheduled.
    unmark_scheduled: bool,
    failures: u32,
    /// Coarse runtime clock (ms) at the last handled message.
    last_activity_ms: u64,
    bg: HashMap<u64, SpawnHandle>,
    next_bg: u64,
    stop: StopState,
    live_permit: Option<OwnedSemaphorePermit>,
    /// Topic changes of `EntityCtx::write`s, in commit order, waiting to be published once the command or callback
    /// returns.
    written: Vec<Change>,
    written_outbox: bool,
}

impl<E: Entity> Core<E> {
    /// The open connection. Handlers check `is_open()` first; the connection is only taken when the actor stops, after
    /// which it handles nothing.
    pub(crate) fn conn(&mut self) -> &mut SqliteConnection {
        self.conn.as_mut().expect("connection is open while the actor handles messages")
    }

    fn is_open(&self) -> bool {
        self.conn.is_some()
    }

    pub(crate) fn next_bg_id(&mut self) -> u64 {
        self.next_bg += 1;
        self.next_bg
    }

    pub(crate) fn track(&mut self, id: u64, handle: SpawnHandle) {
        self.bg.insert(id, handle);
    }

    pub(crate) fn untrack_id(&mut self, id: u64) {
        self.bg.remove(&id);
    }

    pub(crate) fn shared(&self) -> &super::system::Shared {
        &self.registry.inner.shared
    }

    /// One write transaction from a command or a background callback (see `EntityCtx::write`).
    pub(crate) fn write<T, Err>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, Err>) -> Result<T, Err>
    where
        Err: From<diesel::result::Error>,
    {
        let shared = self.registry.inner.shared.clone();
        let mut effects = Effects::default();
        let mut changes = Vec::new();
        let (versions, dirty_marked, encoded) = (&self.versions, self.dirty_marked, &self.encoded);
        let conn = self.conn.as_mut().expect("commands and callbacks only run while the database is open");
        let res = db::writable(conn, shared.config.guard_reads, |conn| {
            conn.immediate_transaction::<T, Err, _>(|conn| {
                let out = f(&mut Tx { conn, effects: &mut effects, runtime: &shared })?;
                changes = stage_effects(conn, &shared, E::KIND, encoded, versions, dirty_marked, &mut effects)?;
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
            self.dirty_marked |= effects.work_owed;
            if effects.outbox_written {
                self.dirty_marked = true;
                self.outbox.pending = true;
                self.written_outbox = true;
            }
        }
        res
    }

    /// Background tasks started through `EntityCtx` that have not finished.
    pub(crate) fn background_count(&self) -> usize {
        self.bg.len()
    }

    /// The committed version of `topic` (0 if never touched).
    pub(crate) fn version(&self, topic: &str) -> u64 {
        self.versions.get(topic).copied().unwrap_or(0)
    }

    pub(crate) fn untrack_handle(&mut self, handle: SpawnHandle) {
        self.bg.retain(|_, h| *h != handle);
    }

    fn stats(&self) -> &super::registry::KindStats {
        &self.registry.inner.stats
    }
}

/// The actix actor hosting one entity of kind `E`.
pub struct EntityActor<E: Entity> {
    pub(super) entity: E,
    pub(super) core: Core<E>,
}

impl<E: Entity> EntityActor<E> {
    pub(crate) fn new(entity: E, p: CoreParts<E>) -> Self {
        let now_ms = p.registry.inner.shared.clock_ms();
        EntityActor {
            entity,
            core: Core {
                key: p.key,
                encoded: p.encoded,
                incarnation: p.incarnation,
                path: p.path,
                conn: Some(p.opened_conn),
                slot: p.slot,
                registry: p.registry,
                versions: p.versions,
                pending: Vec::new(),
                flush_scheduled: false,
                outbox: OutboxState { pending: p.outbox_pending, ..Default::default() },
                dirty_marked: p.outbox_pending,
                unmark_scheduled: false,
                failures: 0,
                last_activity_ms: now_ms,
                bg: HashMap::new(),
                next_bg: 0,
                stop: StopState::Running,
                live_permit: Some(p.live_permit),
                written: Vec::new(),
                written_outbox: false,
            },
        }
    }

    /// Runs `f` with the entity and its context, then publishes what its writes touched and starts outbox delivery.
    pub(crate) fn with_ctx<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut E, &mut EntityCtx<'_, E>) -> R,
    ) -> R {
        let EntityActor { entity, core } = self;
        let out = f(entity, &mut EntityCtx { core, ctx });
        let written = std::mem::take(&mut self.core.written);
        self.publish_changes(written);
        if std::mem::take(&mut self.core.written_outbox) {
            self.pump_outbox(ctx);
        }
        out
    }

    pub(crate) fn core_mut(&mut self) -> &mut Core<E> {
        &mut self.core
    }

    fn shared(&self) -> &super::system::Shared {
        &self.core.registry.inner.shared
    }

    /// Common prologue: refuses if the database is closed, records activity.
    fn begin(&mut self) -> bool {
        if !self.core.is_open() {
            return false;
        }
        // The coarse clock is one relaxed load, not a clock read: it serves the idle timer and LRU eviction.
        let ms = self.shared().clock_ms();
        self.core.last_activity_ms = ms;
        self.core.slot.last_used_ms.store(ms, Ordering::Relaxed);
        self.core.stats().messages.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn unavailable<Err>(&self) -> CallError<Err> {
        if self.shared().is_shutting_down() {
            CallError::ShuttingDown
        } else {
            CallError::Unavailable { kind: E::KIND, key: self.core.encoded.clone() }
        }
    }

    fn call_started(&mut self, ctx: &mut Context<Self>) {
        let res = catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| e.started(c))));
        if let Err(p) = res {
            tracing::error!(kind = E::KIND, key = %self.core.encoded, panic = %panic_text(&p), "started hook panicked");
        }
    }

    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
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
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.core.pending.is_empty() || !self.core.is_open() {
            return;
        }
        let mut batch = std::mem::take(&mut self.core.pending);
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
        let (versions, dirty_marked, encoded) = (&core.versions, core.dirty_marked, &core.encoded);
        let conn = core.conn.as_mut().expect("checked is_open above");
        let result = db::writable(conn, shared.config.guard_reads, |conn| {
            conn.immediate_transaction::<_, diesel::result::Error, _>(|conn| {
                for (i, item) in batch.iter_mut().enumerate() {
                    let item_span = tracing::debug_span!("apply", msg = item.name());
                    let _item_enter = item_span.enter();
                    let mut eff = Effects::default();
                    let res = if single {
                        item.apply(entity, &mut Tx { conn, effects: &mut eff, runtime: &shared })
                    } else {
                        conn.transaction::<_, ItemFailed, _>(|conn| {
                            item.apply(entity, &mut Tx { conn, effects: &mut eff, runtime: &shared })
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
                changes = stage_effects(conn, &shared, E::KIND, encoded, versions, dirty_marked, &mut effects)?;
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
        for c in &changes {
            core.versions.insert(c.topic.clone(), c.version);
        }
        core.dirty_marked |= effects.work_owed;
        if effects.outbox_written {
            core.dirty_marked = true;
            core.outbox.pending = true;
        }
        self.publish_changes(changes);
        for (item, err) in batch.into_iter().zip(item_errors) {
            match (err, &outcome) {
                (Some(e), BatchOutcome::Committed) => {
                    item.finish(&BatchOutcome::StorageFailed(e), E::KIND, &self.core.encoded)
                }
                _ => item.finish(&outcome, E::KIND, &self.core.encoded),
            }
        }
        if effects.outbox_written {
            self.pump_outbox(ctx);
        }
        match panicked {
            Some(p) => self.restart(ctx, &p),
            None => self.core.failures = 0,
        }
    }

    /// Reloads the entity from its database after a panic: background work is cancelled, the connection (and any
    /// transaction it had open) is closed and reopened, and repeated failures back off.
    fn restart(&mut self, ctx: &mut Context<Self>, why: &str) {
        self.core.failures += 1;
        self.core.stats().restarts.fetch_add(1, Ordering::Relaxed);
        for (_, h) in self.core.bg.drain() {
            ctx.cancel_future(h);
        }
        self.core.conn = None;
        let opts = self.shared().config.conn_options();
        let reopened = catch_unwind(AssertUnwindSafe(|| {
            open_entity::<E>(&self.core.key, &self.core.path, &self.core.encoded, opts, false)
        }))
        .unwrap_or_else(|p| Err(ActivationFailure::Load(format!("load panicked: {}", panic_text(&p)))));
        match reopened {
            Ok(opened) => {
                self.entity = opened.entity;
                self.core.conn = Some(opened.conn);
                self.core.incarnation = opened.incarnation;
                self.core.versions = opened.versions;
                self.core.outbox.pending |= opened.outbox_pending;
            }
            Err(e) => {
                tracing::error!(kind = E::KIND, key = %self.core.encoded, error = %e, "restart failed; stopping");
                self.finish_stop(ctx, "restart failed");
                return;
            }
        }
        let backoff = restart_backoff(self.core.failures);
        self.core.stats().last_backoff_ms.store(backoff.as_millis() as u64, Ordering::Relaxed);
        tracing::warn!(
            kind = E::KIND,
            key = %self.core.encoded,
            failures = self.core.failures,
            backoff_ms = backoff.as_millis() as u64,
            panic = why,
            "actor restarted from its database"
        );
        if !backoff.is_zero() {
            ctx.wait(actix::fut::wrap_future(actix_rt::time::sleep(backoff)));
        }
        self.call_started(ctx);
        if self.core.outbox.pending {
            self.pump_outbox(ctx);
        }
    }

    fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.core.registry.inner.config.idle_timeout;
        let since = Duration::from_millis(self.shared().clock_ms().saturating_sub(self.core.last_activity_ms));
        if since >= idle && self.try_passivate(ctx, false) {
            return;
        }
        let next = if since >= idle { idle } else { idle - since };
        ctx.run_later(next, |act, ctx| act.check_idle(ctx));
    }

    /// Passivates if nothing is in flight and nothing keeps the actor busy.
    fn try_passivate(&mut self, ctx: &mut Context<Self>, park_pending: bool) -> bool {
        if !matches!(self.core.stop, StopState::Running) || !self.core.is_open() {
            return false;
        }
        self.flush(ctx);
        let pending = self.core.outbox.pending;
        // Parking also drops a delivery in flight (typically waiting for its target to get a live slot): the row
        // stays in the outbox and is delivered again later, and receivers ignore a sequence number they applied.
        let delivering = self.core.outbox.in_flight && !park_pending;
        if !self.entity.can_passivate() || (pending && !park_pending) || delivering {
            return false;
        }
        if !self.core.slot.try_retire() {
            return false;
        }
        self.finish_stop(ctx, if pending { "parked with outbox rows to deliver" } else { "passivated" });
        if pending {
            self.shared().park(E::KIND, &self.core.encoded);
        }
        true
    }

    fn drain_then_stop(&mut self, ctx: &mut Context<Self>) {
        if self.core.slot.in_flight() == 0 {
            self.finish_stop(ctx, "shut down");
        } else {
            ctx.run_later(Duration::from_millis(1), |act, ctx| act.drain_then_stop(ctx));
        }
    }

    /// Commits what is pending, closes the database, leaves the registry and stops the actix actor.
    fn finish_stop(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        if matches!(self.core.stop, StopState::Stopped) {
            return;
        }
        self.flush(ctx);
        for (_, h) in self.core.bg.drain() {
            ctx.cancel_future(h);
        }
        if self.core.is_open() && self.core.dirty_marked && !self.core.outbox.pending && !self.entity.owes_work() {
            if let Err(e) = self.shared().index.unmark(E::KIND, &self.core.encoded) {
                tracing::warn!(error = %e, "could not clear recovery marker");
            }
        }
        self.core.slot.force_retire();
        self.core.registry.remove_slot(&self.core.key, &self.core.slot);
        tracing::debug!(kind = E::KIND, key = %self.core.encoded, reason, "actor stopped");
        let waiters = match std::mem::replace(&mut self.core.stop, StopState::Stopped) {
            StopState::Draining(waiters) => waiters,
            _ => Vec::new(),
        };
        // Closing the last connection checkpoints the WAL into the database file (fsyncs): do it on the blocking pool
        // so the arbiter's other actors keep committing. The live slot, the count and shutdown waiters are released
        // only once the file is closed, which keeps open descriptors within `max_live`.
        let (conn, permit, registry) =
            (self.core.conn.take(), self.core.live_permit.take(), self.core.registry.clone());
        let close = move || {
            drop(conn);
            let stats = &registry.inner.stats;
            // Counted out before the slot is handed on, so the live count never exceeds `max_live` either.
            stats.live.fetch_sub(1, Ordering::Relaxed);
            drop(permit);
            stats.passivations.fetch_add(1, Ordering::Relaxed);
            for w in waiters {
                let _ = w.send(());
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(close)),
            Err(_) => close(),
        }
        ctx.stop();
    }

    /// Clears the recovery marker once the outbox has stayed empty for [`UNMARK_AFTER`] and the entity has nothing
    /// running, so a crash recovers only actors with something pending (not every actor that was live): recovery
    /// costs what is pending, not what exists. The delay keeps a busy actor from re-marking on every write; the next
    /// outbox write after an unmark marks again inside its transaction, before the commit.
    fn schedule_unmark(&mut self, ctx: &mut Context<Self>) {
        if !self.core.dirty_marked || self.core.unmark_scheduled {
            return;
        }
        self.core.unmark_scheduled = true;
        ctx.run_later(UNMARK_AFTER, |act, ctx| {
            act.core.unmark_scheduled = false;
            let settled = act.core.dirty_marked && !act.core.outbox.pending && !act.core.outbox.in_flight;
            if !settled || !act.core.is_open() || !matches!(act.core.stop, StopState::Running) {
                return;
            }
            if !act.entity.can_passivate() || act.entity.owes_work() {
                // Work in flight (a turn) or owed (a queued one) must be resumed after a crash: keep the marker and
                // look again later.
                act.schedule_unmark(ctx);
                return;
            }
            match act.shared().index.unmark(E::KIND, &act.core.encoded) {
                Ok(()) => act.core.dirty_marked = false,
                Err(e) => tracing::warn!(error = %e, "could not clear recovery marker"),
            }
        });
    }

    /// Sends the oldest outbox row; the next one goes when this one is acknowledged, which keeps delivery in order.
    fn pump_outbox(&mut self, ctx: &mut Context<Self>) {
        if self.core.outbox.in_flight || !self.core.is_open() || !matches!(self.core.stop, StopState::Running) {
            return;
        }
        let row = match outbox::head(self.core.conn()) {
            Ok(Some(row)) => row,
            Ok(None) => {
                self.core.outbox.pending = false;
                self.schedule_unmark(ctx);
                return;
            }
            Err(e) => {
                tracing::error!(error = %e, "reading outbox failed");
                self.retry_outbox_later(ctx);
                return;
            }
        };
        let shared = self.core.registry.inner.shared.clone();
        let Some(deliver) = shared.delivery_fn(&row.target_kind, &row.message) else {
            tracing::warn!(target_kind = %row.target_kind, message = %row.message, "no receiver registered for outbox message; will retry");
            self.retry_outbox_later(ctx);
            return;
        };
        self.core.outbox.in_flight = true;
        let source = Source {
            kind: E::KIND.to_owned(),
            key: self.core.encoded.clone(),
            incarnation: self.core.incarnation.clone(),
        };
        let fut = deliver(shared, row.target_key.clone(), source, row.seq, row.payload.clone());
        ctx.spawn(
            actix::fut::wrap_future(fut).map(move |outcome, act: &mut Self, ctx| act.on_delivered(row, outcome, ctx)),
        );
    }

    fn on_delivered(&mut self, row: OutboxRow, outcome: DeliveryOutcome, ctx: &mut Context<Self>) {
        self.core.outbox.in_flight = false;
        if !self.core.is_open() {
            return;
        }
        let written = match &outcome {
            DeliveryOutcome::Applied | DeliveryOutcome::Duplicate => self.write_now(|c| outbox::delete(c, row.seq)),
            DeliveryOutcome::Panicked(err) if self.core.outbox.panics + 1 < MAX_DELIVERY_PANICS => {
                self.core.outbox.panics += 1;
                tracing::warn!(seq = row.seq, error = %err, "receiver panicked on outbox message; will retry");
                self.retry_outbox_later(ctx);
                return;
            }
            DeliveryOutcome::Rejected(err) | DeliveryOutcome::Panicked(err) => {
                tracing::warn!(seq = row.seq, target_kind = %row.target_kind, error = %err, "outbox message rejected; dead-lettered");
                self.write_now(|c| outbox::dead_letter(c, &row, err))
            }
            DeliveryOutcome::Retry(err) => {
                tracing::debug!(seq = row.seq, error = %err, "outbox delivery will be retried");
                self.retry_outbox_later(ctx);
                return;
            }
        };
        match written {
            Ok(()) => {
                self.core.outbox.backoff = Duration::ZERO;
                self.core.outbox.panics = 0;
                self.pump_outbox(ctx);
            }
            Err(e) => {
                tracing::error!(error = %e, "acknowledging outbox row failed");
                self.retry_outbox_later(ctx);
            }
        }
    }

    fn retry_outbox_later(&mut self, ctx: &mut Context<Self>) {
        let b = &mut self.core.outbox.backoff;
        *b = (*b * 2).clamp(Duration::from_millis(10), Duration::from_secs(5));
        self.core.outbox.in_flight = true;
        ctx.run_later(*b, |act, ctx| {
            act.core.outbox.in_flight = false;
            act.pump_outbox(ctx);
        });
    }

    /// A small write outside any mutation (outbox acknowledgements).
    fn write_now(
        &mut self,
        f: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()>,
    ) -> diesel::QueryResult<()> {
        let guard = self.shared().config.guard_reads;
        db::writable(self.core.conn(), guard, |conn| conn.immediate_transaction(f))
    }
}

impl<E: Entity> Actor for EntityActor<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let idle = self.core.registry.inner.config.idle_timeout;
        ctx.run_later(idle, |act, ctx| act.check_idle(ctx));
        self.call_started(ctx);
        if self.core.outbox.pending {
            self.pump_outbox(ctx);
        }
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        // Stopped from outside (arbiter or system shutting down): still commit and close cleanly.
        if !matches!(self.core.stop, StopState::Stopped) {
            self.finish_stop(ctx, "stopped by the system");
        }
    }
}

macro_rules! span {
    ($self:ident, $msg:ty) => {
        tracing::debug_span!("message", kind = E::KIND, key = %$self.core.encoded, msg = message_name::<$msg>())
    };
}

impl<E: Entity, M: Read<Entity = E>> Handler<Query<M>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, q: Query<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = q.reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        let Query { msg, reply } = q;
        let EntityActor { entity, core } = self;
        let conn = core.conn();
        match catch_unwind(AssertUnwindSafe(|| msg.read(entity, conn))) {
            Ok(r) => {
                self.core.failures = 0;
                let _ = reply.send(r.map_err(CallError::Handler));
            }
            Err(p) => {
                let panic = panic_text(&p);
                let key = self.core.encoded.clone();
                let _ = reply.send(Err(CallError::Panicked {
                    kind: E::KIND,
                    key,
                    message: message_name::<M>(),
                    panic: panic.clone(),
                }));
                self.restart(ctx, &panic);
            }
        }
    }
}

impl<E: Entity, M: Mutation<Entity = E>> Handler<Mutate<M>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, m: Mutate<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = m.reply.send(Err(self.unavailable()));
            return;
        }
        self.core.pending.push(Box::new(MutationItem { msg: Some(m.msg), result: ItemResult::NotRun, reply: m.reply }));
        self.schedule_flush(ctx);
    }
}

impl<E: Entity, M: Delivery<Entity = E>> Handler<Deliver<M>> for EntityActor<E>
where
    M::Error: std::fmt::Display,
{
    type Result = ();
    fn handle(&mut self, d: Deliver<M>, ctx: &mut Context<Self>) {
        let span = span!(self, M);
        let _enter = span.enter();
        if !self.begin() {
            let _ = d.reply.send(Err(self.unavailable()));
            return;
        }
        self.core.pending.push(Box::new(DeliverItem {
            source: d.source,
            seq: d.seq,
            msg: Some(d.msg),
            result: ItemResult::NotRun,
            reply: d.reply,
        }));
        self.schedule_flush(ctx);
    }
}

impl<E: Entity, C: Command<Entity = E>> Handler<Exec<C>> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, x: Exec<C>, ctx: &mut Context<Self>) {
        let span = span!(self, C);
        let _enter = span.enter();
        if !self.begin() {
            let _ = x.reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        let Exec { cmd, reply } = x;
        match catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| cmd.run(e, c)))) {
            Ok(r) => {
                let _ = reply.send(r.map_err(CallError::Handler));
            }
            Err(p) => {
                let panic = panic_text(&p);
                let key = self.core.encoded.clone();
                let _ = reply.send(Err(CallError::Panicked {
                    kind: E::KIND,
                    key,
                    message: message_name::<C>(),
                    panic: panic.clone(),
                }));
                self.restart(ctx, &panic);
            }
        }
    }
}

impl<E: Entity> Handler<SubscribeTopic> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, s: SubscribeTopic, ctx: &mut Context<Self>) {
        if !self.begin() {
            let _ = s.reply.send(Err(self.unavailable()));
            return;
        }
        self.flush(ctx);
        let sub = self.shared().hub.subscribe(E::KIND, &self.core.encoded, &s.topic);
        let res = self.publish_current(&s.topic).map(|()| sub).map_err(CallError::Handler);
        let _ = s.reply.send(res);
    }
}

impl<E: Entity> Handler<Passivate> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, p: Passivate, ctx: &mut Context<Self>) {
        let done = self.try_passivate(ctx, p.park_pending);
        self.core.slot.evict_requested.store(false, Ordering::Relaxed);
        if let Some(tx) = p.done {
            let _ = tx.send(done);
        }
    }
}

impl<E: Entity> Handler<Shutdown> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, s: Shutdown, ctx: &mut Context<Self>) {
        match &mut self.core.stop {
            StopState::Stopped => {
                let _ = s.done.send(());
            }
            StopState::Draining(waiters) => waiters.push(s.done),
            StopState::Running => {
                self.core.slot.force_retire();
                self.core.stop = StopState::Draining(vec![s.done]);
                self.drain_then_stop(ctx);
            }
        }
    }
}

impl<E: Entity> Handler<Recovered> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, _: Recovered, _: &mut Context<Self>) {
        self.core.dirty_marked = true;
    }
}

impl<E: Entity> Handler<Flush> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, _: Flush, ctx: &mut Context<Self>) {
        self.core.flush_scheduled = false;
        self.flush(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::restart_backoff;
    use std::time::Duration;

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(restart_backoff(1), Duration::ZERO);
        assert_eq!(restart_backoff(2), Duration::from_millis(10));
        assert_eq!(restart_backoff(3), Duration::from_millis(20));
        assert!(restart_backoff(6) > restart_backoff(5));
        assert_eq!(restart_backoff(40), Duration::from_secs(5));
    }
}
