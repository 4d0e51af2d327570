//! Outbox delivery: the oldest row is sent as a `Deliver` to its receiver and the next only once it was
//! acknowledged (strict order); refusals are dead-lettered, transient failures retried with back-off; the recovery
//! marker is cleared once the outbox stayed empty.

use std::time::Duration;

use actix::prelude::*;
use diesel::sqlite::SqliteConnection;

use super::super::db;
use super::super::entity::Entity;
use super::super::outbox::{self, DeliveryOutcome, OutboxRow, Source};
use super::lifecycle::StopState;
use super::EntityActor;

/// How long an actor's outbox stays empty before its recovery marker is cleared.
const UNMARK_AFTER: Duration = Duration::from_secs(2);

#[derive(Default)]
pub(super) struct OutboxState {
    /// Rows may be waiting.
    pub(super) pending: bool,
    /// A delivery is on its way; the next starts when it is acknowledged.
    pub(super) in_flight: bool,
    pub(super) backoff: Duration,
    /// Panics of the receiver on the head row so far.
    pub(super) panics: u32,
}

/// A delivery the receiver keeps panicking on is dead-lettered after this many attempts.
const MAX_DELIVERY_PANICS: u32 = 5;

impl<E: Entity> EntityActor<E> {
    /// Clears the recovery marker once the outbox has stayed empty for [`UNMARK_AFTER`] and the entity has nothing
    /// running, so a crash recovers only actors with something pending (not every actor that was live): recovery
    /// costs what is pending, not what exists. The delay keeps a busy actor from re-marking on every write; the next
    /// outbox write after an unmark marks again inside its transaction, before the commit.
    pub(super) fn schedule_unmark(&mut self, ctx: &mut Context<Self>) {
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
                Ok(()) => {
                    act.core.dirty_marked = false;
                    act.wake_changed(ctx, |w| w.marked = false);
                }
                Err(e) => tracing::warn!(error = %e, "could not clear recovery marker"),
            }
        });
    }

    /// Sends the oldest outbox row; the next one goes when this one is acknowledged, which keeps delivery in order.
    pub(super) fn pump_outbox(&mut self, ctx: &mut Context<Self>) {
        if self.core.outbox.in_flight || !self.core.is_open() || !self.core.stop.delivers() {
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
        let fut = deliver(shared, row.target_key.clone(), source, row.seq, row.payload.clone(), true);
        ctx.spawn(
            actix::fut::wrap_future(fut).map(move |outcome, act: &mut Self, ctx| act.on_delivered(row, outcome, ctx)),
        );
    }

    pub(super) fn on_delivered(&mut self, row: OutboxRow, outcome: DeliveryOutcome, ctx: &mut Context<Self>) {
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

    pub(super) fn retry_outbox_later(&mut self, ctx: &mut Context<Self>) {
        let b = &mut self.core.outbox.backoff;
        *b = (*b * 2).clamp(Duration::from_millis(10), Duration::from_secs(5));
        self.core.outbox.in_flight = true;
        ctx.run_later(*b, |act, ctx| {
            act.core.outbox.in_flight = false;
            act.pump_outbox(ctx);
        });
    }

    /// A small write outside any mutation (outbox acknowledgements).
    pub(super) fn write_now(
        &mut self,
        f: impl FnOnce(&mut SqliteConnection) -> diesel::QueryResult<()>,
    ) -> diesel::QueryResult<()> {
        let guard = self.shared().config.guard_reads;
        db::writable(self.core.conn(), guard, |conn| conn.immediate_transaction(f))
    }
}
