//! The actor's side of durable schedules: one in-memory timer for the earliest row of `_foundry_schedules`, armed on
//! activation, after a restart and after every commit that changed schedules; firing each due row in a transaction
//! of its own; and keeping the runtime's due index exact once committed (it is only ever lowered before a commit).

use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;

use super::super::entity::Entity;
use super::super::inspect::{TraceKind, TraceOutcome};
use super::super::schedule::{self, FireError, ScheduleInfo};
use super::lifecycle::StopState;
use super::EntityActor;

/// Rows fired per round; more due rows continue in the next round, after the mailbox had its turn.
const FIRE_BATCH: i64 = 64;
/// Longest a timer is armed for: a far schedule re-arms on the way instead of holding one huge sleep.
const MAX_ARM: Duration = Duration::from_secs(3600);

/// The due index asks this actor to fire what is due and to write its true earliest due there (the index may hold
/// a stale, earlier time: a cancelled or rolled-back schedule, a crash between a commit and the index write).
pub(crate) struct WakeSchedules;
impl Message for WakeSchedules {
    type Result = ();
}

/// What the due index holds for this actor, as far as the actor knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Indexed {
    /// Possibly anything (a wake said so, or an index write failed): the next sync writes the truth.
    Unknown,
    Absent,
    At(i64),
}

impl Indexed {
    /// A due time the index is known to hold (at most): a schedule due later needs no index write before commit.
    pub(crate) fn known_at(self) -> Option<i64> {
        match self {
            Indexed::At(at) => Some(at),
            Indexed::Unknown | Indexed::Absent => None,
        }
    }
}

/// Why the actor reads its earliest schedule again, which says what it knows of its due-index entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Arming {
    /// Just activated: an actor with schedules writes its entry once; one without is assumed to have none.
    Activated,
    /// Woken by the due index: the entry may be stale, so it is written (or removed) whatever it holds.
    Woken,
    /// After firing or a restart: what the actor knows of its entry still holds.
    Again,
}

pub(crate) struct ScheduleTimer {
    pub(super) handle: SpawnHandle,
    /// The due time it was armed for.
    due: i64,
}

impl<E: Entity> Handler<WakeSchedules> for EntityActor<E> {
    type Result = ();
    fn handle(&mut self, _: WakeSchedules, ctx: &mut Context<Self>) {
        self.arm_from_db(ctx, Arming::Woken);
        // What is due fires before the answer, so the scanner's wake-up covers the firing: at the live cap, an actor
        // woken for its schedule is otherwise evicted to make room for the next wake-up before its timer ran, and
        // woken again (measured: 10,000 due at once on passivated actors fired at 41/s, some actors woken 270 times).
        if self.core.timer.as_ref().is_some_and(|t| t.due <= schedule::now_ms()) {
            if let Some(timer) = self.core.timer.take() {
                ctx.cancel_future(timer.handle);
            }
            self.fire_due(ctx);
        }
    }
}

impl<E: Entity> EntityActor<E> {
    /// Reads the earliest schedule, corrects the due index and arms the timer.
    pub(super) fn arm_from_db(&mut self, ctx: &mut Context<Self>, why: Arming) {
        if !self.core.is_open() || !matches!(self.core.stop, StopState::Running) {
            return;
        }
        match schedule::earliest(self.core.conn()) {
            Ok(earliest) => {
                if why == Arming::Woken || (why == Arming::Activated && earliest.is_some()) {
                    self.core.indexed = Indexed::Unknown;
                }
                self.sync_index(earliest);
                self.arm(ctx, earliest);
                // Cluster mode: the log's wake state learns the truth too (it may have been stale, or unknown since
                // activation).
                self.wake_changed(ctx, |w| w.earliest = Some(earliest));
            }
            Err(e) => {
                tracing::error!(kind = E::KIND, key = %self.core.encoded, error = %e, "reading schedules failed");
                self.arm(ctx, Some(schedule::now_ms() + 1_000));
            }
        }
    }

    /// After a commit that changed schedules: `earliest` as of that commit.
    pub(super) fn schedules_committed(&mut self, ctx: &mut Context<Self>, earliest: Option<i64>) {
        self.sync_index(earliest);
        if !self.core.firing {
            self.arm(ctx, earliest);
        }
    }

    /// Makes the due index hold exactly `earliest` for this actor (the committed truth).
    fn sync_index(&mut self, earliest: Option<i64>) {
        let want = earliest.map_or(Indexed::Absent, Indexed::At);
        if self.core.indexed == want {
            return;
        }
        let index = &self.core.registry.inner.shared.index;
        let res = match earliest {
            Some(due) => index.set_due(E::KIND, &self.core.encoded, due),
            None => index.remove_due(E::KIND, &self.core.encoded),
        };
        self.core.indexed = match res {
            Ok(()) => want,
            Err(e) => {
                tracing::warn!(kind = E::KIND, key = %self.core.encoded, error = %e, "could not update the due index");
                Indexed::Unknown
            }
        };
    }

    fn arm(&mut self, ctx: &mut Context<Self>, earliest: Option<i64>) {
        if self.core.timer.as_ref().map(|t| t.due) == earliest {
            return;
        }
        if let Some(old) = self.core.timer.take() {
            ctx.cancel_future(old.handle);
        }
        let Some(due) = earliest else { return };
        let wait = Duration::from_millis(due.saturating_sub(schedule::now_ms()).max(0) as u64).min(MAX_ARM);
        let handle = ctx.run_later(wait, |act, ctx| {
            act.core.timer = None;
            act.fire_due(ctx);
        });
        self.core.timer = Some(ScheduleTimer { handle, due });
    }

    /// Fires the rows due now, oldest first, each in its own transaction, then arms for the next.
    fn fire_due(&mut self, ctx: &mut Context<Self>) {
        if !self.core.is_open() || !matches!(self.core.stop, StopState::Running) {
            return;
        }
        // Mutations that arrived before the alarm commit first: the scheduled message sees them.
        self.flush(ctx);
        if !self.core.is_open() {
            return; // the flush's restart failed and stopped the actor
        }
        let now = schedule::now_ms();
        let rows = match schedule::due(self.core.conn(), now, FIRE_BATCH) {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(kind = E::KIND, key = %self.core.encoded, error = %e, "reading due schedules failed");
                self.arm(ctx, Some(now + 1_000));
                return;
            }
        };
        self.core.firing = true;
        for row in rows {
            if !self.fire_one(ctx, row, now) {
                // Restarted (which re-armed) or stopping.
                self.core.firing = false;
                return;
            }
        }
        self.core.firing = false;
        self.arm_from_db(ctx, Arming::Again);
    }

    /// Applies one due row; `false` if the actor restarted or stopped meanwhile.
    fn fire_one(&mut self, ctx: &mut Context<Self>, row: ScheduleInfo, now: i64) -> bool {
        let since = self.core.trace.start();
        let known = self.core.registry.inner.scheduled.get_key_value(row.message.as_str());
        let (name, fire) = known.map_or(("(unknown scheduled message)", None), |(name, fire)| (*name, Some(*fire)));
        let span = tracing::debug_span!("schedule", kind = E::KIND, key = %self.core.encoded, message = %row.message);
        let _enter = span.enter();
        let res = self.with_ctx(ctx, |entity, c| {
            let fired = c.write(|tx| {
                if !schedule::unchanged(tx.conn, &row)? {
                    return Ok(None);
                }
                let Some(fire) = fire else {
                    return Err(FireError::Failed(format!("{} has no scheduled message {:?}", E::KIND, row.message)));
                };
                let after = fire(entity, tx, &row.payload)?;
                schedule::complete(tx.conn, &row, now)?;
                tx.effects.schedules_changed = true;
                Ok(Some(after))
            })?;
            let Some(after) = fired else { return Ok(false) };
            // A panic here is not the scheduled mutation's (it committed): it is caught and logged like one in
            // `Entity::on_wake`, and the actor carries on.
            let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| after(entity, c)));
            if let Err(p) = caught {
                tracing::error!(panic = %super::panic_text(&p), "scheduled message's after-commit step panicked");
            }
            Ok::<bool, FireError>(true)
        });
        let stats = &self.core.registry.inner.stats;
        let failure = match res {
            Ok(true) => {
                stats.schedules_fired.fetch_add(1, Ordering::Relaxed);
                self.traced(name, TraceKind::Schedule, TraceOutcome::Ok, since);
                return true;
            }
            Ok(false) => return true,
            Err(e) => e,
        };
        stats.schedule_failures.fetch_add(1, Ordering::Relaxed);
        let outcome = match &failure {
            FireError::Failed(_) if fire.is_some() => TraceOutcome::Refused,
            FireError::Panicked(_) => TraceOutcome::Panicked,
            FireError::Failed(_) | FireError::Db(_) => TraceOutcome::Failed,
        };
        self.traced(name, TraceKind::Schedule, outcome, since);
        tracing::warn!(id = row.id, attempts = row.attempts + 1, error = %failure, "scheduled message failed; will retry");
        let text = failure.to_string();
        if let Err(e) = self.write_now(|c| schedule::record_failure(c, &row, now, &text)) {
            tracing::error!(error = %e, "recording a failed schedule attempt failed");
        }
        if let FireError::Panicked(p) = &failure {
            self.restart(ctx, p);
            return false;
        }
        true
    }
}
