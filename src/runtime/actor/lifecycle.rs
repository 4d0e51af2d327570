//! Lifecycle: idle passivation, eviction (with parking of actors whose outbox waits), and the drain-then-close
//! shutdown that commits what is pending, closes the database off the arbiter and leaves the registry.

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::entity::Entity;
use super::{EntityActor, Passivate, Recovered, Shutdown};

pub(super) enum StopState {
    Running,
    /// Shutdown requested: retired, draining calls in flight; these wait for the database to close.
    Draining(Vec<oneshot::Sender<()>>),
    Stopped,
}

impl<E: Entity> EntityActor<E> {
    pub(super) fn check_idle(&mut self, ctx: &mut Context<Self>) {
        let idle = self.core.registry.inner.config.idle_timeout;
        let since = Duration::from_millis(self.shared().clock_ms().saturating_sub(self.core.last_activity_ms));
        if since >= idle && self.try_passivate(ctx, false) {
            return;
        }
        let next = if since >= idle { idle } else { idle - since };
        ctx.run_later(next, |act, ctx| act.check_idle(ctx));
    }

    /// Passivates if nothing is in flight and nothing keeps the actor busy.
    pub(super) fn try_passivate(&mut self, ctx: &mut Context<Self>, park_pending: bool) -> bool {
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

    pub(super) fn drain_then_stop(&mut self, ctx: &mut Context<Self>) {
        if self.core.slot.in_flight() == 0 {
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
        for (_, h) in self.core.bg.drain() {
            ctx.cancel_future(h);
        }
        if self.core.is_open() && self.core.dirty_marked && !self.core.outbox.pending && !self.entity.owes_work() {
            if let Err(e) = self.shared().index.unmark(E::KIND, &self.core.encoded) {
                tracing::warn!(error = %e, "could not clear recovery marker");
            }
        }
        if self.core.indexed != super::schedules::Indexed::Absent {
            // Its schedules are the due scanner's now: let it recompute when to look next.
            self.shared().due_changed.notify_one();
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
