//! `EntityActor<E>`: the actix actor that hosts one entity instance and its database: its messages, its per-actor
//! state ([`Core`]) and its start and stop hooks. The concerns live in the submodules:
//!
//! - `commit`: group commit (mutations that arrive together share one IMMEDIATE transaction with a savepoint each)
//!   and `EntityCtx::write`.
//! - `outbox_pump`: outbox delivery, one row at a time in order, and clearing the recovery marker once settled.
//! - `supervise`: panics caught per handler, reload from the database, back-off on repeated failure.
//! - `lifecycle`: idle passivation, eviction, parking, keep-awake, `on_sleep` and the drain-then-close shutdown.
//! - `destroy`: destroying an actor (outbox settled first, then its database deleted), resumed after a crash.
//! - `durable`: cluster mode's output gate: commits reach the commit log before anything reveals them.
//! - `handlers`: one actix `Handler` per message type.
//! - `inspect`: the inspector's questions to a live actor (state, trace, a copy of its database).

mod commit;
mod connections;
mod destroy;
mod durable;
mod handlers;
mod inspect;
mod lifecycle;
mod outbox_pump;
mod schedules;
mod supervise;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use actix::prelude::*;
use diesel::sqlite::SqliteConnection;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::batch::PendingItem;
use super::entity::{Command, Entity, EntityCtx, Mutation, Read};
use super::error::CallError;
use super::outbox::Source;
use super::publish::Change;
use super::registry::{Registry, Slot};

pub use connections::ConnectTopic;
pub(crate) use connections::{Disconnected, Outgoing};
pub(crate) use inspect::{Inspect, Probe, Probed};
pub(crate) use lifecycle::DestroyReply;
use lifecycle::StopState;
use outbox_pump::OutboxState;
pub(crate) use schedules::WakeSchedules;
use schedules::{Indexed, ScheduleTimer};
pub use supervise::restart_backoff;
pub(crate) use supervise::{guard_panics, open_entity, panic_text};

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

/// Destroy the actor (see `destroy`); `reply` answers once its database is deleted.
pub(crate) struct Destroy {
    pub(crate) reply: Option<DestroyReply>,
}
impl Message for Destroy {
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
    pub destroying: bool,
    pub live_permit: OwnedSemaphorePermit,
    /// Cluster mode: the actor's place in its commit log.
    pub durable: Option<super::durable::Durable>,
}

/// Background work started through `EntityCtx`, cancelled when the actor stops.
struct Background {
    handle: SpawnHandle,
    keeps_awake: bool,
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
    bg: HashMap<u64, Background>,
    next_bg: u64,
    /// The database says a destroy was accepted: the actor resumes it as soon as it starts.
    resume_destroy: bool,
    stop: StopState,
    live_permit: Option<OwnedSemaphorePermit>,
    /// Topic changes of `EntityCtx::write`s, in commit order, waiting to be published once the command or callback
    /// returns.
    written: Vec<Change>,
    /// Events of `EntityCtx::write`s and `EntityCtx::emit`, in order, published after `written`.
    written_events: Vec<Outgoing>,
    written_outbox: bool,
    /// An `EntityCtx::write` changed schedules: the earliest due as of its commit, to sync and arm once the command
    /// or callback returns.
    written_schedules: Option<Option<i64>>,
    /// What the runtime's due index holds for this actor, as far as it knows.
    indexed: Indexed,
    /// The in-memory timer armed for the earliest schedule.
    timer: Option<ScheduleTimer>,
    /// Due schedules are being fired: commits sync the due index but leave arming to the end of the round.
    firing: bool,
    /// The last messages handled (`RuntimeConfig::trace_size` of them), for the inspector.
    pub(crate) trace: super::inspect::Trace,
    /// Cluster mode: where the actor stands in its commit log (see `durable`).
    durable: Option<super::durable::Durable>,
    /// Work waiting for the append in flight, in order.
    after_ship: Vec<durable::AfterShip<E>>,
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

    pub(crate) fn track(&mut self, id: u64, handle: SpawnHandle, keeps_awake: bool) {
        self.bg.insert(id, Background { handle, keeps_awake });
    }

    pub(crate) fn untrack_id(&mut self, id: u64) {
        self.bg.remove(&id);
    }

    /// Background work ended (it was untracked): the idle clock restarts from now if it kept the actor awake.
    pub(crate) fn background_done(&mut self, kept_awake: bool) {
        if kept_awake {
            self.last_activity_ms = self.shared().clock_ms();
        }
    }

    /// Keep-awake work is running (`EntityCtx::keep_awake`): the actor neither passivates nor is evicted.
    pub(crate) fn kept_awake(&self) -> bool {
        self.bg.values().any(|b| b.keeps_awake)
    }

    pub(crate) fn shared(&self) -> &super::system::Shared {
        &self.registry.inner.shared
    }

    /// One write transaction from a command or a background callback (see `EntityCtx::write`).
    /// Background tasks started through `EntityCtx` that have not finished.
    pub(crate) fn background_count(&self) -> usize {
        self.bg.len()
    }

    /// The committed version of `topic` (0 if never touched).
    pub(crate) fn version(&self, topic: &str) -> u64 {
        self.versions.get(topic).copied().unwrap_or(0)
    }

    pub(crate) fn untrack_handle(&mut self, handle: SpawnHandle) {
        self.bg.retain(|_, b| b.handle != handle);
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
        let trace = super::inspect::Trace::new(p.registry.inner.shared.config.trace_size);
        let mut durable = p.durable;
        // Cluster mode: an actor the log says must run at once is treated as recovered (its marker is cleared once
        // it has nothing pending), and undelivered outbox rows mark it.
        let marked = match durable.as_mut() {
            Some(d) => {
                d.wake.marked |= p.outbox_pending;
                d.wake.marked
            }
            None => p.outbox_pending,
        };
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
                dirty_marked: marked,
                unmark_scheduled: false,
                failures: 0,
                last_activity_ms: now_ms,
                bg: HashMap::new(),
                next_bg: 0,
                resume_destroy: p.destroying,
                stop: StopState::Running,
                live_permit: Some(p.live_permit),
                written: Vec::new(),
                written_events: Vec::new(),
                written_outbox: false,
                written_schedules: None,
                // Corrected (one index write) by the first arming if the actor has schedules; an actor without any
                // is assumed to have no entry, so activations of such actors cost no index write.
                indexed: Indexed::Absent,
                timer: None,
                firing: false,
                trace,
                durable,
                after_ship: Vec::new(),
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
        let events = std::mem::take(&mut self.core.written_events);
        let outbox = std::mem::take(&mut self.core.written_outbox);
        let schedules = self.core.written_schedules.take();
        if written.is_empty() && events.is_empty() && !outbox && schedules.is_none() {
            return out;
        }
        self.after_durable(ctx, move |act, ctx, shipped| {
            if shipped.is_err() {
                // Nothing of these writes may be seen; the actor is stopping and its file will be discarded.
                return;
            }
            act.publish_changes(written);
            act.publish_events(events);
            if outbox {
                act.pump_outbox(ctx);
            }
            if let Some(earliest) = schedules {
                act.schedules_committed(ctx, earliest);
            }
        });
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
}

impl<E: Entity> Actor for EntityActor<E> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        if self.core.resume_destroy {
            // No `on_wake`, no schedules: the actor only settles its outbox and deletes itself.
            self.begin_destroy(ctx, None, true);
            if self.core.outbox.pending {
                self.pump_outbox(ctx);
            }
            return;
        }
        // Cluster mode: a new actor's first snapshot (or the pages its migrations wrote) is durable before `on_wake`
        // or its outbox can reveal it.
        self.after_durable(ctx, |act, ctx, shipped| {
            if shipped.is_ok() {
                act.wake(ctx);
            }
        });
    }

    fn stopped(&mut self, ctx: &mut Context<Self>) {
        // Stopped from outside (arbiter or system shutting down): still commit and close cleanly.
        if !matches!(self.core.stop, StopState::Stopped) {
            self.finish_stop(ctx, "stopped by the system");
        }
    }
}

impl<E: Entity> EntityActor<E> {
    fn wake(&mut self, ctx: &mut Context<Self>) {
        let idle = self.core.registry.inner.config.idle_timeout;
        ctx.run_later(idle, |act, ctx| act.check_idle(ctx));
        self.call_on_wake(ctx);
        if self.core.outbox.pending {
            self.pump_outbox(ctx);
        }
        self.arm_from_db(ctx, schedules::Arming::Activated);
    }
}
