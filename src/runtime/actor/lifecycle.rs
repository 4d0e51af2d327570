//! Lifecycle: idle passivation, eviction (with parking of actors whose outbox waits), keep-awake, the `on_sleep`
//! hook, and the drain-then-close shutdown that commits what is pending, closes the database off the arbiter and
//! leaves the registry. Destruction is in `destroy`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::entity::{Entity, SleepReason};
use super::super::error::{CallError, DestroyRefused};
use super::{panic_text, EntityActor, Passivate, Recovered, Shutdown};

/// The answer to a caller of `Registry::destroy` (an `on_destroy` refusal is `CallError::Handler`).
pub(crate) type DestroyReply = oneshot::Sender<Result<(), CallError<DestroyRefused>>>;

pub(super) enum StopState {
    Running,
    /// Shutdown requested: retired, draining calls in flight; these wait for the database to close.
    Draining(Vec<oneshot::Sender<()>>),
    /// Being destroyed (see `destroy`): retired; the outbox still delivers; these wait for the file to be deleted.
    Destroying(Vec<DestroyReply>),
    Stopped,
}

impl StopState {
    /// Whether the outbox keeps delivering: while running, and while destroying (a destroy waits for it to settle).
    pub(super) fn delivers(&self) -> bool {
        matches!(self, StopState::Running | StopState::Destroying(_))
    }
}

impl<E: Entity> EntityActor<E> {
    pub(super) fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.core.registry.inner.config.idle_timeout;
        let since = Duration::from_millis(self.shared().clock_ms().saturating_sub(self.core.last_activity_ms));
        if since >= idle && self.try_passivate(ctx, false, SleepReason::Idle) {
            return;
        }
        let next = if since >= idle { idle } else { idle - since };
        ctx.run_later(next, |act, ctx| act.check_idle(ctx));
    }

    /// Passivates if nothing is in flight and nothing keeps the actor busy (`can_passivate`, keep-awake work).
    pub(super) fn try_passivate(&mut self, ctx: &mut Context<Self>, park_pending: bool, why: SleepReason) -> bool {
        if !matches!(self.core.stop, StopState::Running) || !self.core.is_open() {
            return false;
        }
        self.flush(ctx);
        // Parking also drops a delivery in flight (typically waiting for its target to get a live slot): the row
        // stays in the outbox and is delivered again later, and receivers ignore a sequence number they applied.
        let delivering = self.core.outbox.in_flight && !park_pending;
        let busy = !self.entity.can_passivate() || self.core.kept_awake();
        if busy || (self.core.outbox.pending && !park_pending) || delivering {
            return false;
        }
        if !self.core.slot.try_retire() {
            return false;
        }
        self.call_on_sleep(ctx, why);
        // `on_sleep` may have written outbox rows: they are parked like any others (durable, delivered later).
        let pending = self.core.outbox.pending;
        self.finish_stop(ctx, if pending { "parked with outbox rows to deliver" } else { "passivated" });
        if pending {
            self.shared().park(E::KIND, &self.core.encoded);
        }
        true
    }

    /// Runs `Entity::on_sleep` (the slot is retired: no call is in flight or can arrive). Its writes commit and
    /// publish like a command's; its background work is cancelled with the rest right after.
    fn call_on_sleep(&mut self, ctx: &mut Context<Self>, why: SleepReason) {
        let res = catch_unwind(AssertUnwindSafe(|| self.with_ctx(ctx, |e, c| e.on_sleep(c, why))));
        if let Err(p) = res {
            tracing::error!(kind = E::KIND, key = %self.core.encoded, panic = %panic_text(&p), "on_sleep hook panicked");
        }
    }

    pub(super) fn drain_then_stop(&mut self, ctx: &mut Context<Self>) {
        if self.core.slot.in_flight() == 0 {
            if self.core.is_open() {
                self.flush(ctx);
                self.call_on_sleep(ctx, SleepReason::Shutdown);
            }
            self.finish_stop(ctx, "shut down");
        } else {
            ctx.run_later(Duration::from_millis(1), |act, ctx| act.drain_then_stop(ctx));
        }
    }

    /// Commits what is pending, closes the database, leaves the registry and stops the actix actor.
    pub(super) fn finish_stop(&mut self, ctx: &mut Context<Self>, reason: &'static str) {
        if matches!(self.core.stop, StopState::Stopped) {
            return;
        }
        self.flush(ctx);
        if self.shipping() {
            // Cluster mode: the last batch's append is in flight; stop once it has landed (or failed).
            self.after_durable(ctx, move |act, ctx, _| act.finish_stop(ctx, reason));
            return;
        }
        for (_, b) in self.core.bg.drain() {
            ctx.cancel_future(b.handle);
        }
        if self.core.is_open() && self.core.dirty_marked && !self.core.outbox.pending && !self.entity.owes_work() {
            if let Err(e) = self.shared().index.unmark(E::KIND, &self.core.encoded) {
                tracing::warn!(error = %e, "could not clear recovery marker");
            }
            if let Some(d) = self.core.durable.as_mut() {
                // Shipped by the close: the log's wake state falls back to the earliest schedule.
                d.wake.marked = false;
                if let (None, Some(conn)) = (d.wake.earliest, self.core.conn.as_mut()) {
                    d.wake.earliest = super::super::schedule::earliest(conn).ok();
                }
            }
        }
        if self.core.indexed != super::schedules::Indexed::Absent {
            // Its schedules are the due scanner's now: let it recompute when to look next.
            self.shared().due_changed.notify_one();
        }
        self.core.slot.force_retire();
        self.core.registry.remove_slot(&self.core.key, &self.core.slot);
        // A destroy cut short (shutdown, a refusal) releases callers waiting for the key; its mark, if committed,
        // makes the next activation resume it.
        self.core.slot.release_destroyed();
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
        let durable = self.core.durable.take().map(|d| {
            // Until the file is closed (and marked or deleted), a new activation of the key must not touch it.
            registry.inner.shared.closing_started(&self.core.path);
            (d, self.core.path.clone())
        });
        let close = move || {
            match durable {
                Some((d, path)) => {
                    super::durable::close_durable(conn, d, &path);
                    registry.inner.shared.closing_done(&path);
                }
                None => drop(conn),
            }
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
}

impl<E: Entity> Handler<Passivate> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, p: Passivate, ctx: &mut Context<Self>) {
        let done = self.try_passivate(ctx, p.park_pending, SleepReason::Evicted);
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
            StopState::Destroying(waiters) => {
                // The destroy resumes after the restart (its mark is durable); its callers learn why it did not end.
                for w in waiters.drain(..) {
                    let _ = w.send(Err(CallError::ShuttingDown));
                }
                self.core.stop = StopState::Draining(vec![s.done]);
                self.finish_stop(ctx, "shut down while destroying");
            }
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
