//! What a keyed actor kind implements: the [`Entity`] trait, and its three kinds of messages — [`Read`] (read-only
//! query), [`Mutation`] (one transaction, group-committable) and [`Command`] (actor-context work such as starting or
//! cancelling background tasks). [`Delivery`] marks a mutation that other actors may send through their outbox;
//! [`super::schedule::Scheduled`] one an actor may schedule for itself ([`Tx::schedule_after`]).

use std::future::Future;
use std::time::{Duration, SystemTime};

use actix::prelude::*;
use diesel::sqlite::SqliteConnection;
use diesel_migrations::EmbeddedMigrations;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::actor::{Core, EntityActor};
use super::connection::{Connect, ConnectionId, ConnectionInfo, PendingEvent, Refusal};
use super::key::EntityKey;
use super::outbox;
use super::patch::PatchOp;
use super::schedule::{self, ScheduleId, ScheduleInfo, Scheduled};

/// Per-kind tuning. Defaults suit a domain actor; benchmarks and tests override them.
#[derive(Debug, Clone)]
pub struct KindConfig {
    /// Calls in flight (queued or running) per actor. A full mailbox makes callers wait, or fail with `Overloaded`.
    pub mailbox_capacity: usize,
    /// An actor that handled nothing for this long passivates (closes its database, leaves the registry).
    pub idle_timeout: Duration,
    /// Largest number of mutations committed in one transaction.
    pub max_batch: usize,
    /// Whether mutations waiting together in the mailbox share one transaction.
    pub group_commit: bool,
}

impl Default for KindConfig {
    fn default() -> Self {
        KindConfig { mailbox_capacity: 256, idle_timeout: Duration::from_secs(300), max_batch: 256, group_commit: true }
    }
}

/// An error building a topic snapshot.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{kind} has no topic {topic:?}")]
    UnknownTopic { kind: &'static str, topic: String },
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    #[error("snapshot does not serialise: {0}")]
    Serialize(#[from] serde_json::Error),
}

/// A keyed actor kind. The runtime hosts it in an [`EntityActor`]: one instance per key, with its own database at
/// `<data>/<KIND>/<key>.sqlite3`, migrated with [`Entity::MIGRATIONS`] on activation.
///
/// The entity value itself should hold only its identity (and runtime handles such as background work): all state
/// lives in SQLite, which is what makes restarts and rollbacks exact.
pub trait Entity: Sized + Unpin + Send + 'static {
    type Key: EntityKey;
    /// Directory name and label in logs and metrics.
    const KIND: &'static str;
    /// `embed_migrations!("migrations/<kind>")`.
    const MIGRATIONS: EmbeddedMigrations;

    /// Builds the actor from its freshly opened (read-only) database: on activation and after a restart.
    fn load(key: &Self::Key, db: &mut SqliteConnection) -> diesel::QueryResult<Self>;

    fn config() -> KindConfig {
        KindConfig::default()
    }

    /// The key that places this actor in a shard (`runtime::placement`): actors with one placement key always live
    /// together. The default is the key itself; a kind whose actors belong to a larger whole (a task to its
    /// organization) answers that whole's key. Must depend on the key only, and never change for a stored actor.
    fn placement_key(key: &Self::Key) -> std::borrow::Cow<'_, str> {
        std::borrow::Cow::Owned(key.encode())
    }

    /// The full snapshot of `topic`, as published to subscribers. Runs read-only.
    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        let _ = db;
        Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() })
    }

    /// Called once per actor, when an activation creates its database (`get_or_create` of a new key, an outbox
    /// delivery to one): initial rows, first schedules. It runs in the transaction that records the file's owner, so
    /// exactly once per database even across crashes; an error refuses that activation and leaves no file behind
    /// (`ActivationFailure::Create`). Topics it touches publish nothing: nobody subscribes to an actor yet to exist.
    fn on_create(key: &Self::Key, tx: &mut Tx<'_>) -> HookResult {
        let _ = (key, tx);
        Ok(())
    }

    /// Called each time the actor starts running: after every activation (the first included) and after a restart
    /// from its database. Resume background work here (a job the database says was running).
    fn on_wake(&mut self, ctx: &mut EntityCtx<'_, Self>) {
        let _ = ctx;
    }

    /// Called before the actor stops with its database still open: idle passivation, eviction to make room, runtime
    /// shutdown (not after a failed restart, nor when destroyed). No call is in flight or can arrive. Writes through
    /// `ctx.write` commit and publish; background work is cancelled right after.
    fn on_sleep(&mut self, ctx: &mut EntityCtx<'_, Self>, reason: SleepReason) {
        let _ = (ctx, reason);
    }

    /// Called when the actor is destroyed (`Registry::destroy`, `EntityCtx::destroy`), in the transaction that marks
    /// it destroyed: tell others through the outbox (`tx.send`), which is delivered before the database is deleted.
    /// An error refuses the destroy and changes nothing.
    fn on_destroy(&self, tx: &mut Tx<'_>) -> HookResult {
        let _ = tx;
        Ok(())
    }

    /// Whether the actor may passivate now even though it is idle (e.g. not while a long job runs in the background).
    /// Work started with [`EntityCtx::keep_awake`] holds the actor awake without this.
    fn can_passivate(&self) -> bool {
        true
    }

    /// Whether the actor owes work it has not started (recorded with [`Tx::owe_work`]): it may passivate, but its
    /// recovery mark is kept, so a restart reactivates it and [`Entity::on_wake`] can pick the work up.
    fn owes_work(&self) -> bool {
        false
    }

    /// Declares the [`Delivery`] messages this kind accepts from other actors' outboxes, and the
    /// [`Scheduled`] messages it may schedule for itself (`Accepts::schedule`).
    fn accepts(deliveries: &mut outbox::Accepts<Self>) {
        let _ = deliveries;
    }

    /// Decides whether a subscriber of `request.topic` becomes a connection, before anything is recorded: `Ok` with
    /// the connection's state (JSON, listed by `EntityCtx::connections`), or a [`Refusal`] the web layer sends as an
    /// error frame. Runs read-only in the actor; the default accepts everyone with a `null` state.
    fn before_connect(&self, request: &Connect, db: &mut SqliteConnection) -> Result<serde_json::Value, Refusal> {
        let _ = (request, db);
        Ok(serde_json::Value::Null)
    }

    /// A subscriber became a connection (it is in `ctx.connections()` already, and its first frame is the snapshot
    /// as of after this hook). May write through `ctx` like a command, e.g. to publish presence.
    fn on_connect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        let _ = (ctx, conn);
    }

    /// A connection ended (its subscriber dropped it: socket closed, unsubscribe, client dropped); it is no longer in
    /// `ctx.connections()`. Runs once per connection whose `on_connect` ran, waking the actor if it passivated
    /// meanwhile; not at runtime shutdown or after a crash, so what a hook derives from connections is rebuilt from
    /// `ctx.connections()` in [`Entity::on_wake`], not trusted from the database.
    fn on_disconnect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        let _ = conn;
        // Nothing to do, so the runtime stops sending this kind's disconnects (and waking its actors for them).
        ctx.core.shared().conns.default_disconnect_hook(Self::KIND);
    }
}

/// What the `on_create` and `on_destroy` hooks answer: an error (any, diesel's included) refuses.
pub type HookResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

/// Why an actor is going to sleep ([`Entity::on_sleep`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SleepReason {
    /// It handled nothing for its kind's `idle_timeout`.
    Idle,
    /// The runtime needed its live slot (the live cap) or an operator asked.
    Evicted,
    /// The runtime is shutting down.
    Shutdown,
}

/// A read-only query. Runs against the committed state, with writes refused by the connection.
pub trait Read: Send + 'static {
    type Entity: Entity;
    type Output: Send + 'static;
    type Error: Send + 'static;
    fn read(self, entity: &Self::Entity, db: &mut SqliteConnection) -> Result<Self::Output, Self::Error>;
}

/// A state change. Runs inside one transaction (a savepoint of a group commit); an `Err` rolls back everything it
/// wrote, and the caller's reply is sent only after the transaction committed.
pub trait Mutation: Send + 'static {
    type Entity: Entity;
    type Output: Send + 'static;
    type Error: Send + 'static + From<diesel::result::Error>;
    fn apply(self, entity: &Self::Entity, tx: &mut Tx<'_>) -> Result<Self::Output, Self::Error>;
}

/// A mutation other actors can send durably through their outbox (see [`Tx::send`]).
pub trait Delivery: Mutation + Serialize + DeserializeOwned
where
    Self::Error: std::fmt::Display,
{
    /// Stable wire name, stored in outbox rows: renaming it strands undelivered messages.
    const NAME: &'static str;

    /// Whether a refusal is temporary (e.g. the receiver is not initialised yet): the sender then retries with
    /// back-off instead of dead-lettering the message.
    fn is_retryable(error: &Self::Error) -> bool {
        let _ = error;
        false
    }
}

/// Work on the actor itself rather than its database: start, inspect or cancel scoped background work.
pub trait Command: Send + 'static {
    type Entity: Entity;
    type Output: Send + 'static;
    type Error: Send + 'static;
    fn run(self, entity: &mut Self::Entity, ctx: &mut EntityCtx<'_, Self::Entity>)
        -> Result<Self::Output, Self::Error>;
}

/// A short, readable message name for spans and errors (`Increment`, not `my_crate::counter::Increment`).
pub fn message_name<T: ?Sized>() -> &'static str {
    // Single-character searches (memchr), not substring ones: this runs for every handled message.
    let full = std::any::type_name::<T>();
    let base = &full[..full.find('<').unwrap_or(full.len())];
    base.rfind(':').map_or(base, |i| &base[i + 1..])
}

/// The side effects a mutation asked for besides its SQL; kept only if the mutation commits.
#[derive(Default)]
pub(crate) struct Effects {
    pub touched: Vec<Touched>,
    pub outbox_written: bool,
    /// The transaction recorded work the actor owes (see [`Tx::owe_work`]).
    pub work_owed: bool,
    /// The transaction set, cancelled or fired a schedule.
    pub schedules_changed: bool,
    /// With `schedules_changed`: the actor's earliest due schedule as of this transaction (set when it is staged).
    pub earliest_due: Option<i64>,
    /// Events to publish once committed, in the order emitted.
    pub events: Vec<PendingEvent>,
}

/// A topic a transaction changed, and how subscribers learn of it.
pub(crate) struct Touched {
    pub topic: String,
    /// The change as patch operations, in order; `None`: publish a full snapshot (some write did not describe its
    /// change, e.g. a structural one).
    pub ops: Option<Vec<PatchOp>>,
}

impl Effects {
    /// Records a change of `topic`. Patches of one transaction concatenate; a change without a patch makes the whole
    /// transaction's change a full snapshot.
    pub(crate) fn touch(&mut self, topic: &str, ops: Option<Vec<PatchOp>>) {
        match self.touched.iter_mut().find(|t| t.topic == topic) {
            Some(t) => match (&mut t.ops, ops) {
                (Some(have), Some(more)) => have.extend(more),
                (ops @ Some(_), None) => *ops = None,
                (None, _) => {}
            },
            None => self.touched.push(Touched { topic: topic.to_owned(), ops }),
        }
    }

    /// Adds what a later mutation of the same transaction did.
    pub(crate) fn merge(&mut self, later: Effects) {
        for t in later.touched {
            self.touch(&t.topic, t.ops);
        }
        self.outbox_written |= later.outbox_written;
        self.work_owed |= later.work_owed;
        self.schedules_changed |= later.schedules_changed;
        self.events.extend(later.events);
    }
}

/// A mutation's view of its transaction.
pub struct Tx<'a> {
    pub(crate) conn: &'a mut SqliteConnection,
    pub(crate) effects: &'a mut Effects,
    pub(crate) runtime: &'a super::system::Shared,
    /// The kind of the actor whose transaction this is: schedules are only ever the actor's own.
    pub(crate) kind: &'static str,
}

impl<'a> Tx<'a> {
    /// The connection, inside the open transaction.
    pub fn conn(&mut self) -> &mut SqliteConnection {
        self.conn
    }

    /// A service provided to the runtime (`Runtime::provide`), e.g. the model catalog.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<std::sync::Arc<T>> {
        self.runtime.service::<T>()
    }

    /// Marks `topic` changed: after commit its version grows by one and subscribers get the new full snapshot.
    /// For structural or rare changes; a frequent one should describe itself with [`Tx::patch`].
    pub fn touch(&mut self, topic: &str) {
        self.effects.touch(topic, None);
    }

    /// Marks `topic` changed by `ops` (applied to the snapshot as of before this transaction, after any earlier
    /// patches of the same transaction): after commit its version grows by one and subscribers get the patch instead
    /// of the whole snapshot. The operations must turn the snapshot [`Entity::snapshot`] built before into exactly
    /// the one it builds after. No operations change nothing (and bump no version).
    pub fn patch(&mut self, topic: &str, ops: Vec<PatchOp>) {
        if !ops.is_empty() {
            self.effects.touch(topic, Some(ops));
        }
    }

    /// Emits `event` with `payload` to the connections of `topic`, if and only if this transaction commits: after
    /// the commit, in commit order, each after the topic frame of this transaction's version (see
    /// [`super::connection`] for the bounds: a subscriber that cannot keep up loses events and is told how many).
    pub fn emit(&mut self, topic: &str, event: &str, payload: &impl Serialize) -> Result<(), diesel::result::Error> {
        let ev = PendingEvent::new(Some(topic), None, event, payload).map_err(serialization)?;
        self.effects.events.push(ev);
        Ok(())
    }

    /// [`Tx::emit`] to one connection of this actor (nothing if it has ended by the commit).
    pub fn emit_to(
        &mut self,
        conn: ConnectionId,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<(), diesel::result::Error> {
        let ev = PendingEvent::new(None, Some(conn), event, payload).map_err(serialization)?;
        self.effects.events.push(ev);
        Ok(())
    }

    /// Records, in this transaction, that the actor now owes work it must carry out even after a crash (a queued
    /// job, such as a prompt waiting for its turn): the actor is marked in the recovery index before the commit, and
    /// the mark stays while [`Entity::owes_work`] says so, so a restart reactivates it.
    pub fn owe_work(&mut self) {
        self.effects.work_owed = true;
    }

    /// Schedules `msg` for this actor `delay` from now, in this transaction: if and only if it commits, `msg` is
    /// applied (as a mutation, in a transaction of its own) once due, even if the actor passivated or the process
    /// restarted meanwhile. `M` must be declared with `Accepts::schedule` by this actor's kind.
    pub fn schedule_after<M>(&mut self, delay: Duration, msg: &M) -> Result<ScheduleId, diesel::result::Error>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        let due = schedule::now_ms().saturating_add(delay.as_millis() as i64);
        self.add_schedule(due, None, msg)
    }

    /// Schedules `msg` for this actor at wall-clock time `at` (at once if that has passed); see
    /// [`Tx::schedule_after`].
    pub fn schedule_at<M>(&mut self, at: SystemTime, msg: &M) -> Result<ScheduleId, diesel::result::Error>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        self.add_schedule(schedule::to_unix_ms(at), None, msg)
    }

    /// Schedules `msg` for this actor every `every`, the first time `every` from now, until cancelled. A period
    /// missed while nothing ran yields one run, not a burst.
    pub fn schedule_every<M>(&mut self, every: Duration, msg: &M) -> Result<ScheduleId, diesel::result::Error>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        let every_ms = (every.as_millis() as i64).max(1);
        self.add_schedule(schedule::now_ms().saturating_add(every_ms), Some(every_ms), msg)
    }

    fn add_schedule<M>(&mut self, due: i64, every: Option<i64>, msg: &M) -> Result<ScheduleId, diesel::result::Error>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        let refuse = |why: String| diesel::result::Error::QueryBuilderError(why.into());
        if <M::Entity as Entity>::KIND != self.kind {
            return Err(refuse(format!(
                "{} cannot schedule {} for {}: an actor schedules only its own messages",
                self.kind,
                M::NAME,
                <M::Entity as Entity>::KIND
            )));
        }
        if !self.runtime.registry::<M::Entity>().inner.scheduled.contains_key(M::NAME) {
            return Err(refuse(format!("{} does not declare {} (Accepts::schedule)", self.kind, M::NAME)));
        }
        let payload = serde_json::to_string(msg).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
        let id = schedule::insert(self.conn, M::NAME, &payload, due, every)?;
        self.effects.schedules_changed = true;
        Ok(id)
    }

    /// Cancels one of this actor's schedules in this transaction; whether it was still set.
    pub fn cancel_schedule(&mut self, id: ScheduleId) -> Result<bool, diesel::result::Error> {
        let found = schedule::cancel(self.conn, id)?;
        self.effects.schedules_changed |= found;
        Ok(found)
    }

    /// Cancels every schedule of message `M` of this actor; how many were set.
    pub fn cancel_schedules<M>(&mut self) -> Result<usize, diesel::result::Error>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        let n = schedule::cancel_message(self.conn, M::NAME)?;
        self.effects.schedules_changed |= n > 0;
        Ok(n)
    }

    /// This actor's schedules as this transaction sees them, earliest first.
    pub fn schedules(&mut self) -> Result<Vec<ScheduleInfo>, diesel::result::Error> {
        schedule::list(self.conn)
    }

    /// Queues `msg` for the actor `key` of kind `M::Entity`, in this transaction: it is delivered (in order, exactly
    /// once in effect) if and only if this mutation commits.
    pub fn send<M>(&mut self, key: &<M::Entity as Entity>::Key, msg: &M) -> Result<(), diesel::result::Error>
    where
        M: Delivery,
        M::Error: std::fmt::Display,
    {
        self.runtime.ensure_kind::<M::Entity>();
        outbox::insert(self.conn, <M::Entity as Entity>::KIND, &key.encode(), M::NAME, msg)?;
        self.effects.outbox_written = true;
        Ok(())
    }
}

fn serialization(e: serde_json::Error) -> diesel::result::Error {
    diesel::result::Error::SerializationError(Box::new(e))
}

/// A background task's way back into its own actor.
pub struct Myself<E: Entity> {
    addr: Addr<EntityActor<E>>,
}

impl<E: Entity> Clone for Myself<E> {
    fn clone(&self) -> Self {
        Myself { addr: self.addr.clone() }
    }
}

impl<E: Entity> Myself<E> {
    /// Runs `cmd` on the actor. Not subject to the registry's admission (the actor's own work must never be refused
    /// by its own mailbox bound); callers await one at a time, which keeps it bounded.
    pub async fn exec<C: Command<Entity = E>>(&self, cmd: C) -> Result<C::Output, super::error::CallError<C::Error>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let unavailable = || super::error::CallError::Unavailable { kind: E::KIND, key: String::new() };
        self.addr.send(super::actor::Exec { cmd, reply: tx }).await.map_err(|_| unavailable())?;
        rx.await.map_err(|_| unavailable())?
    }
}

/// The actor context given to [`Command`]s and [`Entity::on_wake`]: read access to the database and scoped background
/// work. Everything started here is cancelled when the actor stops, passivates or restarts.
pub struct EntityCtx<'a, E: Entity> {
    pub(crate) core: &'a mut Core<E>,
    pub(crate) ctx: &'a mut Context<EntityActor<E>>,
}

impl<'a, E: Entity> EntityCtx<'a, E> {
    pub fn key(&self) -> &E::Key {
        &self.core.key
    }

    /// The database, read-only.
    pub fn db(&mut self) -> &mut SqliteConnection {
        self.core.conn()
    }

    /// Runs `f` in one write transaction, like a mutation: everything it wrote commits together or not at all, and
    /// topics it touched are published (and outbox rows delivered) once the command or callback returns.
    pub fn write<T, Err>(&mut self, f: impl FnOnce(&mut Tx<'_>) -> Result<T, Err>) -> Result<T, Err>
    where
        Err: From<diesel::result::Error>,
    {
        self.core.write(f)
    }

    /// A service provided to the runtime (`Runtime::provide`), e.g. the agent backend.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<std::sync::Arc<T>> {
        self.core.shared().service::<T>()
    }

    /// This actor's connections (every topic), oldest first.
    pub fn connections(&self) -> Vec<ConnectionInfo> {
        self.core.shared().conns.list(E::KIND, &self.core.encoded)
    }

    /// Replaces a connection's state; whether it is still connected.
    pub fn set_connection_state(&mut self, conn: ConnectionId, state: serde_json::Value) -> bool {
        self.core.shared().conns.set_state(E::KIND, &self.core.encoded, conn, state)
    }

    /// Emits `event` to the connections of `topic` once the command or callback returns, after what its writes
    /// published (see [`Tx::emit`]; inside [`EntityCtx::write`], `tx.emit` ties the event to that transaction).
    pub fn emit(&mut self, topic: &str, event: &str, payload: &impl Serialize) -> Result<(), serde_json::Error> {
        let ev = PendingEvent::new(Some(topic), None, event, payload)?;
        self.core.emitted(ev);
        Ok(())
    }

    /// [`EntityCtx::emit`] to one connection.
    pub fn emit_to(
        &mut self,
        conn: ConnectionId,
        event: &str,
        payload: &impl Serialize,
    ) -> Result<(), serde_json::Error> {
        let ev = PendingEvent::new(None, Some(conn), event, payload)?;
        self.core.emitted(ev);
        Ok(())
    }

    /// A handle background work can use to send commands back to this actor (each awaited one at a time).
    pub fn myself(&self) -> Myself<E> {
        Myself { addr: self.ctx.address() }
    }

    /// Runs `fut` as background work of this actor; dropped (cancelled) when the actor stops.
    pub fn spawn<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: Future<Output = ()> + 'static,
    {
        let id = self.core.next_bg_id();
        let fut = actix::fut::wrap_future::<_, EntityActor<E>>(super::actor::guard_panics(fut))
            .map(move |(), act, _| act.core_mut().untrack_id(id));
        let handle = self.ctx.spawn(fut);
        self.core.track(id, handle, false);
        handle
    }

    /// Runs `fut` as background work that keeps the actor awake: until it completes the actor neither passivates for
    /// idleness nor is evicted (its idle time counts from the end of the work). It is still cancelled by a restart,
    /// a destroy or a runtime shutdown: work that must survive those belongs in the database (`Tx::owe_work`, a
    /// durable schedule).
    pub fn keep_awake<F>(&mut self, fut: F) -> SpawnHandle
    where
        F: Future<Output = ()> + 'static,
    {
        let id = self.core.next_bg_id();
        let fut =
            actix::fut::wrap_future::<_, EntityActor<E>>(super::actor::guard_panics(fut)).map(move |(), act, _| {
                let core = act.core_mut();
                core.untrack_id(id);
                core.background_done(true);
            });
        let handle = self.ctx.spawn(fut);
        self.core.track(id, handle, true);
        handle
    }

    /// Destroys this actor once the current message is done (see `Registry::destroy`; nobody waits for the answer,
    /// a refusal of `on_destroy` is logged).
    pub fn destroy(&mut self) {
        self.ctx.notify(super::actor::Destroy { reply: None });
    }

    /// Runs `f` after `delay`, unless the actor stops first.
    pub fn run_later<F>(&mut self, delay: Duration, f: F) -> SpawnHandle
    where
        F: FnOnce(&mut E, &mut EntityCtx<'_, E>) + 'static,
    {
        let id = self.core.next_bg_id();
        let handle = self.ctx.run_later(delay, move |act, ctx| {
            act.core_mut().untrack_id(id);
            act.with_ctx(ctx, f)
        });
        self.core.track(id, handle, false);
        handle
    }

    /// Runs `f` every `every`, until cancelled or the actor stops.
    pub fn run_interval<F>(&mut self, every: Duration, mut f: F) -> SpawnHandle
    where
        F: FnMut(&mut E, &mut EntityCtx<'_, E>) + 'static,
    {
        let id = self.core.next_bg_id();
        let handle = self.ctx.run_interval(every, move |act, ctx| act.with_ctx(ctx, &mut f));
        self.core.track(id, handle, false);
        handle
    }

    /// Stops processing messages until `fut` completes (the mailbox keeps filling, up to its capacity).
    pub fn wait<F>(&mut self, fut: F)
    where
        F: Future<Output = ()> + 'static,
    {
        self.ctx.wait(actix::fut::wrap_future(super::actor::guard_panics(fut)));
    }

    /// Cancels background work started by this actor.
    pub fn cancel(&mut self, handle: SpawnHandle) -> bool {
        self.core.untrack_handle(handle);
        self.ctx.cancel_future(handle)
    }

    /// Background tasks started here that are still running or scheduled.
    pub fn background_count(&self) -> usize {
        self.core.background_count()
    }
}
