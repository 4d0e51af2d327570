//! The per-kind Registry: get-or-create one live actor per key, bounded in-flight calls, typed call paths.
//!
//! Lookups go through a sharded map under short std mutexes, never through an actor's mailbox, so a hot registry is
//! not a bottleneck. Cold keys are activated once even when many callers race (a `OnceCell` per slot); opening and
//! migrating the database runs on the blocking pool, then the actor starts on the arbiter its key hashes to.
//!
//! Every call holds a permit of the slot's semaphore (the mailbox bound) and an in-flight count. An actor passivates
//! only by atomically swapping an in-flight count of zero for the RETIRED bit, and a caller only sends after it
//! incremented the count while RETIRED was clear; so no message is ever sent to an actor that is going away.
//!
//! Submodules: `calls` (the typed call paths), `routed` (cluster mode: a call's remote leg), `durable` (cluster
//! mode: the actor's file prepared from its commit log at activation), `shards` (a shard's live actors stopped),
//! `connect` (connections to actors), `handle` (the kind-erased handle the runtime keeps).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use tokio::sync::{oneshot, Notify, OnceCell};

use super::actor::{EntityActor, Passivate, Shutdown};
use super::entity::Entity;
use super::error::{ActivationError, ActivationFailure, CallError};
use super::key::EntityKey;
use super::system::Shared;
use super::topic::lock;

mod calls;
mod connect;
mod durable;
mod handle;
mod linked;
mod routed;
mod shards;
pub(crate) use handle::KindHandle;
pub(crate) use shards::ShardSweep;

const SHARDS: usize = 64;
const RETIRED: u64 = 1 << 63;

/// How long a caller waits for a mailbox slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backpressure {
    /// Wait as long as it takes (the default).
    Wait,
    /// Fail with `CallError::Overloaded` at once when the mailbox is full.
    FailFast,
    /// Wait up to this long, then fail with `CallError::Timeout` (the message is never sent).
    WaitUpTo(Duration),
}

/// One key's place in the registry.
pub(crate) struct Slot<E: Entity> {
    pub(crate) cell: OnceCell<Addr<EntityActor<E>>>,
    /// Most calls in flight (the mailbox bound).
    capacity: u64,
    /// In-flight calls in the low bits, [`RETIRED`] in the top bit: admission, the mailbox bound and retirement are
    /// one compare-and-swap.
    state: AtomicU64,
    /// Callers waiting for room; `leave` wakes one only when there are any, so the fast path takes no lock.
    waiters: AtomicU64,
    room: Notify,
    pub(crate) last_used_ms: AtomicU64,
    pub(crate) evict_requested: AtomicBool,
    /// When the actor last refused to passivate for eviction (runtime clock ms; 0: never). Eviction passes over it
    /// for [`EVICT_REFUSAL_BACKOFF_MS`]: an actor with an outbox to deliver or a turn running cannot make room, and
    /// asking it again and again is what kept a full runtime from evicting anyone else.
    pub(crate) evict_refused_ms: AtomicU64,
    /// The actor is being destroyed: callers wait for [`Slot::release_destroyed`] instead of activating the key's
    /// file again under a new actor.
    destroying: AtomicBool,
    released: Notify,
    /// An activation of this slot began and did not fail or get abandoned by its caller (kept once it succeeded):
    /// with `cell`, it tells a shard's stop whether an actor is, or is about to be, live here (`shards.rs`).
    activating: AtomicBool,
}

/// An eviction candidate: when it was last used, its slot and its address.
type Candidate<E> = (u64, Arc<Slot<E>>, Addr<EntityActor<E>>);

/// How long eviction passes over an actor that refused to passivate.
pub(crate) const EVICT_REFUSAL_BACKOFF_MS: u64 = 1_000;

enum Admission {
    Admitted,
    Full,
    Retired,
}

/// Whether a lookup may create the actor's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    /// Activate, creating the database if there is none (`get_or_create`, `read`, `mutate`, ...).
    OrCreate,
    /// Activate only a key that has a live actor or a database on disk (`get_existing`, `read_existing`, ...).
    IfExists,
}

/// Why initialising a slot produced no actor.
enum InitError {
    Failed(ActivationError),
    /// `Open::IfExists` and the key has no database: nothing was created.
    Missing,
    /// The slot was removed from the map before this initialisation began (an earlier one failed): look again.
    Stale,
}

impl<E: Entity> Slot<E> {
    fn new(capacity: usize) -> Self {
        Slot {
            cell: OnceCell::new(),
            capacity: capacity.max(1) as u64,
            state: AtomicU64::new(0),
            waiters: AtomicU64::new(0),
            room: Notify::new(),
            last_used_ms: AtomicU64::new(0),
            evict_requested: AtomicBool::new(false),
            evict_refused_ms: AtomicU64::new(0),
            destroying: AtomicBool::new(false),
            released: Notify::new(),
            activating: AtomicBool::new(false),
        }
    }

    /// Retires the slot for a destroy: it stays in the map (so the key cannot be activated) until released.
    pub(crate) fn mark_destroying(&self) {
        self.destroying.store(true, Ordering::SeqCst);
        self.force_retire();
    }

    /// The destroyed actor's file is gone (or the destroy ended otherwise): waiting callers look the key up again.
    pub(crate) fn release_destroyed(&self) {
        if self.destroying.swap(false, Ordering::SeqCst) {
            self.released.notify_waiters();
        }
    }

    async fn wait_released(&self) {
        let released = self.released.notified();
        tokio::pin!(released);
        released.as_mut().enable();
        if self.destroying.load(Ordering::SeqCst) {
            released.await;
        }
    }

    fn try_enter(&self) -> Admission {
        let mut cur = self.state.load(Ordering::SeqCst);
        loop {
            if cur & RETIRED != 0 {
                return Admission::Retired;
            }
            if cur >= self.capacity {
                return Admission::Full;
            }
            match self.state.compare_exchange_weak(cur, cur + 1, Ordering::SeqCst, Ordering::SeqCst) {
                Ok(_) => return Admission::Admitted,
                Err(actual) => cur = actual,
            }
        }
    }

    /// Waits for room in the mailbox. `Retired` means the actor is going away: look the key up again.
    async fn enter_waiting(&self) -> Admission {
        loop {
            match self.try_enter() {
                Admission::Full => {}
                other => return other,
            }
            let notified = self.room.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let _waiting = Waiting::new(&self.waiters);
            // Room may have appeared between the first try and registering: try again before sleeping.
            match self.try_enter() {
                Admission::Full => notified.await,
                other => return other,
            }
        }
    }

    fn leave(&self) {
        self.state.fetch_sub(1, Ordering::SeqCst);
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.room.notify_one();
        }
    }

    /// Retires the slot if nobody is in flight (idle passivation, eviction).
    pub(crate) fn try_retire(&self) -> bool {
        let retired = self.state.compare_exchange(0, RETIRED, Ordering::SeqCst, Ordering::SeqCst).is_ok();
        if retired {
            self.room.notify_waiters();
        }
        retired
    }

    /// Retires the slot regardless; the actor then drains the calls already in flight (shutdown).
    pub(crate) fn force_retire(&self) {
        self.state.fetch_or(RETIRED, Ordering::SeqCst);
        self.room.notify_waiters();
    }

    pub(crate) fn in_flight(&self) -> u64 {
        self.state.load(Ordering::SeqCst) & !RETIRED
    }

    fn is_retired(&self) -> bool {
        self.state.load(Ordering::SeqCst) & RETIRED != 0
    }
}

/// Counters per kind, for metrics and benchmarks.
#[derive(Debug, Default)]
pub struct KindStats {
    pub live: AtomicUsize,
    pub activations: AtomicU64,
    pub passivations: AtomicU64,
    pub restarts: AtomicU64,
    pub messages: AtomicU64,
    pub transactions: AtomicU64,
    pub committed_mutations: AtomicU64,
    pub activation_failures: AtomicU64,
    /// Scheduled messages applied (their transaction committed).
    pub schedules_fired: AtomicU64,
    /// Attempts of scheduled messages that failed (refused, panicked, not decodable) and were put back with back-off.
    pub schedule_failures: AtomicU64,
    /// Actors destroyed (their database deleted).
    pub destroyed: AtomicU64,
    /// Milliseconds of the latest restart back-off (0 when the last restart needed none).
    pub last_backoff_ms: AtomicU64,
}

/// Keys come from users (organization, task ids), so hashing stays seeded; foldhash is a fraction of SipHash's cost
/// on the hot lookup path.
type KeyHasher = foldhash::fast::RandomState;
type Shard<E> = Mutex<HashMap<<E as Entity>::Key, Arc<Slot<E>>, KeyHasher>>;

pub(crate) struct RegistryInner<E: Entity> {
    shards: Vec<Shard<E>>,
    hasher: KeyHasher,
    pub(crate) shared: Arc<Shared>,
    pub(crate) config: super::entity::KindConfig,
    pub(crate) stats: KindStats,
    /// The kind's scheduled messages by wire name (`Accepts::schedule`).
    pub(crate) scheduled: HashMap<&'static str, super::schedule::FireFn<E>>,
    /// Bytes of a migrated empty database for this kind (see `db::build_template`); `None` if it could not be built.
    template: std::sync::OnceLock<Option<Arc<Vec<u8>>>>,
}

/// The typed handle to one kind's actors. Cheap to clone; get one with `Runtime::registry`.
pub struct Registry<E: Entity> {
    pub(crate) inner: Arc<RegistryInner<E>>,
}

impl<E: Entity> Clone for Registry<E> {
    fn clone(&self) -> Self {
        Registry { inner: self.inner.clone() }
    }
}

/// A resolved live actor: its address at the time of the lookup (it goes stale if the actor passivates later).
pub struct EntityRef<E: Entity> {
    addr: Addr<EntityActor<E>>,
}

impl<E: Entity> EntityRef<E> {
    /// The live actix address (for code that wants to send its own actix messages).
    pub fn addr(&self) -> &Addr<EntityActor<E>> {
        &self.addr
    }
}

impl<E: Entity> Registry<E> {
    pub(crate) fn new(
        shared: Arc<Shared>,
        config: super::entity::KindConfig,
        scheduled: HashMap<&'static str, super::schedule::FireFn<E>>,
    ) -> Self {
        Registry {
            inner: Arc::new(RegistryInner {
                shards: (0..SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
                hasher: Default::default(),
                shared,
                config,
                stats: KindStats::default(),
                scheduled,
                template: std::sync::OnceLock::new(),
            }),
        }
    }

    fn shard(&self, key: &E::Key) -> &Shard<E> {
        let h = self.inner.hasher.hash_one(key);
        &self.inner.shards[(h % SHARDS as u64) as usize]
    }

    fn slot(&self, key: &E::Key) -> Arc<Slot<E>> {
        let mut map = lock(self.shard(key));
        if let Some(slot) = map.get(key) {
            return slot.clone();
        }
        let slot = Arc::new(Slot::new(self.inner.config.mailbox_capacity));
        map.insert(key.clone(), slot.clone());
        slot
    }

    /// Removes `key`'s slot if it is still `slot` (a newer activation may already have replaced it).
    pub(crate) fn remove_slot(&self, key: &E::Key, slot: &Arc<Slot<E>>) {
        let mut map = lock(self.shard(key));
        if map.get(key).is_some_and(|s| Arc::ptr_eq(s, slot)) {
            map.remove(key);
        }
    }

    /// Returns the live actor for `key`, activating it (open, migrate, load) on first use.
    pub async fn get_or_create(&self, key: &E::Key) -> Result<EntityRef<E>, ActivationError> {
        let slot = self.live_slot(key, Open::OrCreate).await?;
        // `Open::OrCreate` never answers "missing", and `live_slot` returns only initialised slots.
        let addr = slot.and_then(|s| s.cell.get().cloned()).expect("live slot is initialised");
        Ok(EntityRef { addr })
    }

    /// Returns `key`'s actor only if it exists: live, or with a database on disk (then it is activated). `None`
    /// means the key names nothing; no file, actor or slot was created for it. Reads and requests that may be refused
    /// use this (or the `*_existing` call paths) so that bad input never creates state.
    pub async fn get_existing(&self, key: &E::Key) -> Result<Option<EntityRef<E>>, ActivationError> {
        let slot = self.live_slot(key, Open::IfExists).await?;
        Ok(slot.and_then(|s| s.cell.get().cloned()).map(|addr| EntityRef { addr }))
    }

    /// Destroys `key`'s actor (never creating one: `NotFound` if it does not exist). It stops admitting calls, lets
    /// the ones in flight finish, commits `Entity::on_destroy` with a durable mark, waits for its outbox to settle
    /// (every row delivered or dead-lettered), deletes its database and releases the key; the answer comes once the
    /// file is gone. Afterwards the key names nothing: `*_existing` calls answer `NotFound`, and `get_or_create`
    /// (like an outbox delivery addressed to it) creates a fresh actor. Callers that arrive meanwhile wait for that.
    /// A refusal of `on_destroy` is `CallError::Handler` and changes nothing. A crash after the mark resumes the
    /// destruction when the actor is next activated (recovery activates it).
    pub async fn destroy(&self, key: &E::Key) -> Result<(), CallError<super::error::DestroyRefused>> {
        if self.inner.shared.is_shutting_down() {
            return Err(CallError::ShuttingDown);
        }
        for _ in 0..16 {
            let Some(target) = self.get_existing(key).await? else {
                return Err(CallError::NotFound { kind: E::KIND, key: key.encode() });
            };
            let (tx, rx) = oneshot::channel();
            // Past the mailbox bound on purpose: the destroy retires the slot, so callers queue behind it anyway.
            if target.addr.send(super::actor::Destroy { reply: Some(tx) }).await.is_err() {
                continue; // It passivated meanwhile: activate it again.
            }
            match rx.await {
                Ok(answer) => return answer,
                Err(_) => continue,
            }
        }
        Err(CallError::Unavailable { kind: E::KIND, key: key.encode() })
    }

    /// The shard `key`'s actor is placed in (`Entity::placement_key`).
    pub fn shard_of(&self, key: &E::Key) -> super::placement::ShardId {
        super::placement::shard_of(&E::placement_key(key))
    }

    /// Whether `key` exists (a live actor or a database on disk), without activating it.
    pub fn exists(&self, key: &E::Key) -> Result<bool, ActivationError> {
        if self.is_live(key) {
            return Ok(true);
        }
        self.may_exist_on_disk(key)
    }

    /// `false` only when `key`'s database file is certainly absent; an unreadable directory counts as "may exist",
    /// so that activation reports the real error instead of a misleading "not found".
    fn may_exist_on_disk(&self, key: &E::Key) -> Result<bool, ActivationError> {
        if self.inner.shared.config.commit_log.is_some() {
            // Cluster mode: the commit log decides, at activation.
            return Ok(true);
        }
        let path = super::db::actor_path(&self.inner.shared.config.data_dir, E::KIND, &key.encode())
            .map_err(|reason| self.activation_error(key, reason))?;
        Ok(!matches!(path.try_exists(), Ok(false)))
    }

    /// The slot of `key`'s live actor, activating it if needed (`None`: `Open::IfExists` and the key has no
    /// database). The common case (already live) is one shard lock, one hash lookup and one `Arc` clone.
    async fn live_slot(&self, key: &E::Key, open: Open) -> Result<Option<Arc<Slot<E>>>, ActivationError> {
        {
            let map = lock(self.shard(key));
            if let Some(slot) = map.get(key) {
                if slot.cell.get().is_some_and(|a| a.connected()) && !slot.is_retired() {
                    return Ok(Some(slot.clone()));
                }
            }
        }
        // Not live here: in cluster mode, only a shard this node serves may be opened (or even looked for on disk).
        self.refuse_unserved(key)?;
        loop {
            let slot = match open {
                Open::OrCreate => self.slot(key),
                Open::IfExists => {
                    let existing = lock(self.shard(key)).get(key).cloned();
                    match existing {
                        // Someone is activating (or just activated) the key: join that activation.
                        Some(slot) => slot,
                        // Checked before a slot is inserted, so an unknown key leaves no trace in the map either.
                        None if !self.may_exist_on_disk(key)? => return Ok(None),
                        None => self.slot(key),
                    }
                }
            };
            if slot.is_retired() {
                // A destroyed actor's key is released only once its file is deleted.
                slot.wait_released().await;
                // The old actor is on its way out; step past it to a fresh slot.
                self.remove_slot(key, &slot);
                continue;
            }
            let res = slot.cell.get_or_try_init(|| self.init_slot(key, &slot, open)).await;
            match res {
                Ok(addr) if addr.connected() => return Ok(Some(slot)),
                Ok(_) => {
                    // The actor died without retiring (its arbiter stopped): forget it and activate anew.
                    self.remove_slot(key, &slot);
                    if self.inner.shared.is_shutting_down() {
                        return Err(self.activation_error(key, ActivationFailure::ShuttingDown));
                    }
                }
                Err(InitError::Stale) => {}
                Err(InitError::Missing) => return Ok(None),
                Err(InitError::Failed(e)) => return Err(e),
            }
        }
    }

    /// Activates `key` into `slot`, which must still be the key's slot in the map.
    ///
    /// A failed activation removes its slot before returning, while it still holds the cell's initialisation
    /// permit. A caller that was waiting on the same cell (it may want `Open::OrCreate` where this one wanted
    /// `Open::IfExists`) then finds the slot gone and starts over on a fresh one, instead of activating into a slot
    /// nobody can find, which would let a later caller start a second actor on the same database.
    async fn init_slot(
        &self,
        key: &E::Key,
        slot: &Arc<Slot<E>>,
        open: Open,
    ) -> Result<Addr<EntityActor<E>>, InitError> {
        let current = lock(self.shard(key)).get(key).is_some_and(|s| Arc::ptr_eq(s, slot));
        if !current {
            return Err(InitError::Stale);
        }
        // Cluster mode: marked, then the router asked again now that the slot is in the map (see `refuse_unserved`).
        let activating = shards::Activating::start(&slot.activating);
        if let Err(e) = self.refuse_unserved(key) {
            self.remove_slot(key, slot);
            return Err(InitError::Failed(e));
        }
        let res = self.activate(key.clone(), slot.clone(), open).await;
        match &res {
            Ok(_) => activating.succeeded(),
            Err(_) => self.remove_slot(key, slot),
        }
        res
    }

    fn activation_error(&self, key: &E::Key, reason: ActivationFailure) -> ActivationError {
        ActivationError { kind: E::KIND, key: key.encode(), reason }
    }

    async fn activate(&self, key: E::Key, slot: Arc<Slot<E>>, open: Open) -> Result<Addr<EntityActor<E>>, InitError> {
        let shared = &self.inner.shared;
        let fail = |reason: ActivationFailure| {
            self.inner.stats.activation_failures.fetch_add(1, Ordering::Relaxed);
            // Counted in `/metrics`; said here with the key and the reason, which the counter cannot tell.
            if !matches!(reason, ActivationFailure::ShuttingDown) {
                tracing::warn!(kind = E::KIND, key = %key.encode(), error = %reason, "activation failed");
            }
            InitError::Failed(self.activation_error(&key, reason))
        };
        if shared.is_shutting_down() {
            return Err(fail(ActivationFailure::ShuttingDown));
        }
        let encoded = key.encode();
        let path = super::db::actor_path(&shared.config.data_dir, E::KIND, &encoded).map_err(fail)?;
        // Cluster mode: the commit log, not the local disk, says whether the actor exists and what its file holds.
        let durable = match &shared.config.commit_log {
            Some(log) => match self.prepare_durable(log, &key, &encoded, &path, open).await {
                Ok(Some(d)) => Some(d),
                Ok(None) => return Err(InitError::Missing),
                Err(reason) => return Err(fail(reason)),
            },
            None => None,
        };
        // Before taking a live permit: making room may passivate another actor, which an unknown key must not cause.
        if open == Open::IfExists && durable.is_none() && matches!(path.try_exists(), Ok(false)) {
            return Err(InitError::Missing);
        }
        let live_permit = shared.acquire_live_slot().await.map_err(fail)?;
        let started = std::time::Instant::now();
        let (k, p, enc) = (key.clone(), path.clone(), encoded.clone());
        let _opening = shared.opening.acquire().await.map_err(|_| fail(ActivationFailure::ShuttingDown))?;
        let this = self.clone();
        let opened = actix_rt::task::spawn_blocking(move || {
            let fresh = !p.exists();
            if fresh {
                if open == Open::IfExists {
                    return Ok(None);
                }
                this.create_from_template(&p);
            }
            let opened = super::actor::open_entity::<E>(&k, &p, &enc, &this.inner.shared, fresh);
            if fresh && matches!(opened, Err(ActivationFailure::Create(_))) {
                // `on_create` refused: no file is left behind, so the key still names nothing (`get_existing`).
                if let Err(e) = super::db::remove_actor_files(&p) {
                    tracing::warn!(kind = E::KIND, path = %p.display(), error = %e, "could not remove an uncreated actor");
                }
            }
            opened.map(Some)
        })
        .await
        .map_err(|e| fail(ActivationFailure::Load(format!("activation task failed: {e}"))))?;
        let Some(opened) = opened.map_err(fail)? else {
            return Err(InitError::Missing);
        };
        let registry = self.clone();
        let arbiter = shared.arbiter_for(&encoded);
        let capacity = self.inner.config.mailbox_capacity;
        let span_key = encoded.clone();
        // The channel is created with its final capacity before the address exists: `start_in_arbiter` would hand
        // out the address while actix's default capacity (16) still applies, and early `try_send`s would fail.
        // Our admission is the real bound; actix's own limit is set above it so it never is what refuses.
        let (tx, rx) = actix::dev::channel::channel::<EntityActor<E>>(capacity * 2 + 16);
        let parts = super::actor::CoreParts {
            key,
            encoded,
            path,
            opened_conn: opened.conn,
            incarnation: opened.incarnation,
            slot,
            registry,
            versions: opened.versions,
            outbox_pending: opened.outbox_pending,
            destroying: opened.destroying,
            live_permit,
            durable,
        };
        let entity = opened.entity;
        let spawned = arbiter.spawn_fn(move || {
            let ctx = Context::with_receiver(rx);
            actix_rt::spawn(ctx.into_future(EntityActor::new(entity, parts)));
        });
        if !spawned {
            self.inner.stats.activation_failures.fetch_add(1, Ordering::Relaxed);
            let reason = ActivationFailure::Load("the actor's arbiter has stopped".into());
            return Err(InitError::Failed(ActivationError { kind: E::KIND, key: span_key, reason }));
        }
        let addr = Addr::new(tx);
        self.inner.stats.activations.fetch_add(1, Ordering::Relaxed);
        self.inner.stats.live.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(kind = E::KIND, key = %span_key, ms = started.elapsed().as_secs_f64() * 1e3, "activated");
        Ok(addr)
    }

    /// Creates a missing actor file as a copy of the kind's template (built once per process). Best effort: on any
    /// failure the normal path creates and migrates the file, and reports errors with their migration names.
    fn create_from_template(&self, path: &std::path::Path) {
        if path.exists() {
            return;
        }
        let template = self.inner.template.get_or_init(|| {
            let dir = self.inner.shared.config.data_dir.join(E::KIND);
            super::db::build_template(&dir, E::KIND, E::MIGRATIONS)
                .map(Arc::new)
                .inspect_err(
                    |e| tracing::warn!(kind = E::KIND, error = %e, "no template database; creating files one by one"),
                )
                .ok()
        });
        if let Some(bytes) = template {
            if let Err(e) = super::db::create_from_template(path, bytes) {
                tracing::warn!(kind = E::KIND, path = %path.display(), error = %e, "copying the template failed");
            }
        }
    }

    /// Sends one envelope: resolves the actor, takes a mailbox slot (per `bp`), sends, and waits for the reply.
    async fn call<T, Err, Msg>(
        &self,
        key: &E::Key,
        open: Open,
        bp: Backpressure,
        make: impl FnOnce(oneshot::Sender<Result<T, CallError<Err>>>) -> Msg,
    ) -> Result<T, CallError<Err>>
    where
        Msg: Message<Result = ()> + Send + 'static,
        EntityActor<E>: Handler<Msg>,
        <EntityActor<E> as Actor>::Context: actix::dev::ToEnvelope<EntityActor<E>, Msg>,
    {
        if self.inner.shared.is_shutting_down() {
            return Err(CallError::ShuttingDown);
        }
        let mut make = Some(make);
        for _ in 0..16 {
            let Some(slot) = self.live_slot(key, open).await? else {
                return Err(CallError::NotFound { kind: E::KIND, key: key.encode() });
            };
            let admission = match (slot.try_enter(), bp) {
                (Admission::Full, Backpressure::Wait) => slot.enter_waiting().await,
                (Admission::Full, Backpressure::FailFast) => {
                    return Err(CallError::Overloaded {
                        kind: E::KIND,
                        key: key.encode(),
                        capacity: self.inner.config.mailbox_capacity,
                    })
                }
                (Admission::Full, Backpressure::WaitUpTo(d)) => {
                    match tokio::time::timeout(d, slot.enter_waiting()).await {
                        Ok(a) => a,
                        Err(_) => return Err(CallError::Timeout(d)),
                    }
                }
                (other, _) => other,
            };
            if !matches!(admission, Admission::Admitted) {
                continue;
            }
            let _in_flight = InFlight(&slot);
            let Some(addr) = slot.cell.get() else { continue };
            let (tx, rx) = oneshot::channel();
            // `make` is taken only here, after the slot admitted us: the loop above never consumes the message.
            let Some(make) = make.take() else { break };
            if addr.try_send(make(tx)).is_err() {
                return Err(CallError::Unavailable { kind: E::KIND, key: key.encode() });
            }
            return match rx.await {
                Ok(reply) => reply,
                Err(_) if self.inner.shared.is_shutting_down() => Err(CallError::ShuttingDown),
                Err(_) => Err(CallError::Unavailable { kind: E::KIND, key: key.encode() }),
            };
        }
        Err(CallError::Unavailable { kind: E::KIND, key: key.encode() })
    }

    /// Sends one envelope to `key`'s actor only if it is live now, activating nothing: `None` when it is not live
    /// (or is passivating). A full mailbox answers `Overloaded` at once (the inspector lists busy actors without
    /// waiting on them).
    pub(crate) async fn call_if_live<T, Err, Msg>(
        &self,
        key: &E::Key,
        make: impl FnOnce(oneshot::Sender<Result<T, CallError<Err>>>) -> Msg,
    ) -> Option<Result<T, CallError<Err>>>
    where
        Msg: Message<Result = ()> + Send + 'static,
        EntityActor<E>: Handler<Msg>,
        <EntityActor<E> as Actor>::Context: actix::dev::ToEnvelope<EntityActor<E>, Msg>,
    {
        let slot = lock(self.shard(key)).get(key).cloned()?;
        let addr = slot.cell.get().filter(|a| a.connected())?.clone();
        match slot.try_enter() {
            Admission::Admitted => {}
            Admission::Retired => return None,
            Admission::Full => {
                let capacity = self.inner.config.mailbox_capacity;
                return Some(Err(CallError::Overloaded { kind: E::KIND, key: key.encode(), capacity }));
            }
        }
        let _in_flight = InFlight(&slot);
        let (tx, rx) = oneshot::channel();
        if addr.try_send(make(tx)).is_err() {
            return None;
        }
        Some(rx.await.unwrap_or_else(|_| Err(CallError::Unavailable { kind: E::KIND, key: key.encode() })))
    }

    /// The latest published snapshot of `topic` of `key` if someone subscribes to it (see [`super::topic::TopicHub::latest`]):
    /// a read served without a message to the actor. Cluster mode: `None` for an actor another node serves (this
    /// node's copy of its topic arrives after the commit's reply, so it could miss the caller's own last write).
    pub fn latest_snapshot(&self, key: &E::Key, topic: &str) -> Option<Arc<super::TopicEvent>> {
        if self.inner.shared.remote_route::<E>(key).is_some() {
            return None;
        }
        self.inner.shared.hub.latest(E::KIND, &key.encode(), topic)
    }

    /// Whether `key` currently has a live actor.
    pub fn is_live(&self, key: &E::Key) -> bool {
        lock(self.shard(key)).get(key).is_some_and(|s| s.cell.initialized() && !s.is_retired())
    }

    /// Asks `key`'s actor to passivate now if it is idle. Returns whether a live actor was asked; the actor declines if
    /// calls are in flight or it cannot passivate yet.
    pub async fn passivate(&self, key: &E::Key) -> bool {
        let slot = lock(self.shard(key)).get(key).cloned();
        let Some(addr) = slot.and_then(|s| s.cell.get().cloned()) else { return false };
        let (tx, rx) = oneshot::channel();
        addr.do_send(Passivate { done: Some(tx), park_pending: false });
        rx.await.unwrap_or(false)
    }

    /// Calls in flight to `key`'s actor (queued in its mailbox or running): its mailbox depth.
    pub fn mailbox_depth(&self, key: &E::Key) -> usize {
        lock(self.shard(key)).get(key).map_or(0, |s| s.in_flight() as usize)
    }

    /// Calls in flight to all live actors of this kind (the sum of their mailbox depths).
    pub fn in_flight_total(&self) -> u64 {
        self.inner.shards.iter().map(|s| lock(s).values().map(|slot| slot.in_flight()).sum::<u64>()).sum()
    }

    /// Number of live actors of this kind.
    pub fn live_count(&self) -> usize {
        self.inner.stats.live.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> &KindStats {
        &self.inner.stats
    }

    pub fn config(&self) -> &super::entity::KindConfig {
        &self.inner.config
    }

    /// Asks every live actor to stop after draining; returns receivers that resolve when each has closed its database.
    pub(crate) fn shutdown_all(&self) -> Vec<oneshot::Receiver<()>> {
        let mut waits = Vec::new();
        for shard in &self.inner.shards {
            let slots: Vec<_> = lock(shard).values().cloned().collect();
            for slot in slots {
                if let Some(addr) = slot.cell.get() {
                    let (tx, rx) = oneshot::channel();
                    addr.do_send(Shutdown { done: tx });
                    waits.push(rx);
                }
            }
        }
        waits
    }

    /// The idle live actor of this kind used least recently that eviction may ask to passivate: nothing in flight,
    /// not already asked, not refusing lately.
    fn eviction_candidate(&self, now_ms: u64, park_pending: bool) -> Option<Candidate<E>> {
        let mut best: Option<Candidate<E>> = None;
        for shard in self.inner.shards.iter() {
            for slot in lock(shard).values() {
                if slot.in_flight() != 0 || slot.is_retired() || slot.evict_requested.load(Ordering::Relaxed) {
                    continue;
                }
                let refused = slot.evict_refused_ms.load(Ordering::Relaxed);
                if !park_pending && refused != 0 && now_ms < refused + EVICT_REFUSAL_BACKOFF_MS {
                    continue;
                }
                let Some(addr) = slot.cell.get().filter(|a| a.connected()) else { continue };
                let used = slot.last_used_ms.load(Ordering::Relaxed);
                if best.as_ref().is_none_or(|(t, _, _)| used < *t) {
                    best = Some((used, slot.clone(), addr.clone()));
                }
            }
        }
        best
    }

    /// When this kind's best eviction candidate was last used, if it has one.
    pub(crate) fn oldest_idle(&self, now_ms: u64, park_pending: bool) -> Option<u64> {
        self.eviction_candidate(now_ms, park_pending).map(|(used, _, _)| used)
    }

    /// Asks this kind's best eviction candidate to passivate and waits for its answer: `true` if it is going away
    /// (its live slot is returned once its database is closed). A refusal is remembered on the slot.
    pub(crate) async fn evict_oldest(&self, now_ms: u64, park_pending: bool) -> bool {
        let Some((_, slot, addr)) = self.eviction_candidate(now_ms, park_pending) else { return false };
        if slot.evict_requested.swap(true, Ordering::SeqCst) {
            return false; // another activation asked it a moment ago
        }
        let (tx, rx) = oneshot::channel();
        addr.do_send(Passivate { done: Some(tx), park_pending });
        // A busy actor answers after the message it is handling; one that stopped meanwhile drops the sender.
        let done = matches!(tokio::time::timeout(Duration::from_secs(1), rx).await, Ok(Ok(true)));
        if !done {
            slot.evict_refused_ms.store(now_ms.max(1), Ordering::Relaxed);
            slot.evict_requested.store(false, Ordering::Relaxed);
        }
        done
    }
}

/// Counts a caller waiting for room, also when its future is dropped mid-wait.
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(count: &'a AtomicU64) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Waiting(count)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Decrements the slot's in-flight count when a call ends, also when the caller's future is dropped mid-call.
struct InFlight<'a, E: Entity>(&'a Slot<E>);

impl<E: Entity> Drop for InFlight<'_, E> {
    fn drop(&mut self) {
        self.0.leave();
    }
}
