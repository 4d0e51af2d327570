//! The `Runtime`: data directory, arbiters, the registries of every kind, the topic hub, the live-actor budget, the
//! recovery index of senders with undelivered outbox rows (whose file also holds the due index of schedules,
//! `due.rs`), and graceful shutdown.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool};
use diesel::sql_types::Text;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::db::Synchronous;
use super::entity::Entity;
use super::error::{ActivationError, ActivationFailure, RuntimeError};
use super::key::placement_hash;
use super::outbox::{Accepts, DeliverFn};
use super::registry::{KindHandle, KindStats, Registry};
use super::topic::{lock, TopicHub};

/// How the runtime runs. `RuntimeConfig::new(dir)` gives production defaults.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    pub data_dir: PathBuf,
    /// Arbiter threads actors are spread over by key hash. 0 runs every actor on the arbiter that activates it.
    pub arbiters: usize,
    /// Most actors open at once across all kinds (each holds two file descriptors: the database and its WAL). Beyond it, the
    /// least recently used idle actors are passivated to make room.
    pub max_live: usize,
    pub synchronous: Synchronous,
    /// How long an activation waits for a live slot before failing with `TooManyLive`.
    pub activation_wait: Duration,
    /// Overrides every kind's `KindConfig::idle_timeout` (kinds registered with an explicit configuration keep theirs).
    pub idle_timeout: Option<Duration>,
    /// Keep each connection `query_only` outside write batches, so a read handler that writes fails. Switching costs
    /// two PRAGMAs per write batch, and SQLite expires every prepared statement of the connection on each switch, so
    /// the next use of each one compiles it again (BENCHMARKS.md, section e). A read that writes is a bug in the
    /// kind's code: the guard is on in debug builds (tests) and off in release builds by default.
    pub guard_reads: bool,
    /// Cluster mode: which shards this process serves (`runtime::placement`). `None` (single-node mode): all of them,
    /// with no check at all.
    pub router: Option<Arc<dyn super::placement::Router>>,
    /// Cluster mode: where every commit is made durable before its reply, topics, events or outbox deliveries go
    /// out (see `durable.rs`). `None` (single-node mode): the local SQLite commit is the durable one.
    pub commit_log: Option<Arc<dyn super::durable::CommitLog>>,
    /// Cluster mode: how calls and outbox deliveries reach actors of shards another node serves (see `remote.rs`).
    /// `None`: such calls answer `not_owner`.
    pub transport: Option<Arc<dyn super::remote::Transport>>,
    /// Messages each live actor's trace keeps for the inspector (name, sort, outcome, duration, when); 0 turns
    /// tracing off. A ring of 32-byte entries in the actor, allocated on first use.
    pub trace_size: usize,
}

/// The default [`RuntimeConfig::trace_size`]: 1 KiB per busy actor, 4 MiB at 4,096 live actors.
pub const DEFAULT_TRACE_SIZE: usize = 32;

impl RuntimeConfig {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        let fds = raise_fd_limit();
        RuntimeConfig {
            data_dir: data_dir.into(),
            arbiters: std::thread::available_parallelism().map_or(2, |n| n.get()),
            // Two descriptors per live actor, within the fd limit; and no more than 4,096 by default, because SQLite
            // scans a process-wide list of open files on every open, so activations slow down as that list grows.
            max_live: (fds.saturating_sub(1024) / 2).clamp(64, 4096) as usize,
            synchronous: Synchronous::Normal,
            activation_wait: Duration::from_secs(10),
            idle_timeout: None,
            guard_reads: cfg!(debug_assertions),
            router: None,
            commit_log: None,
            transport: None,
            trace_size: DEFAULT_TRACE_SIZE,
        }
    }

    /// How actor connections are opened under this configuration.
    pub(crate) fn conn_options(&self) -> super::db::ConnOptions {
        super::db::ConnOptions {
            synchronous: self.synchronous,
            guard_reads: self.guard_reads,
            manual_checkpoints: self.commit_log.is_some(),
        }
    }
}

/// Raises the soft open-files limit to the hard limit and returns the new soft limit. Each live actor holds three
/// descriptors, so the default soft limit (often 1024) would cap a process at ~300 actors.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read/write the struct we pass, which lives on this stack frame.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let want = libc::rlimit { rlim_cur: lim.rlim_max, rlim_max: lim.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &want) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

/// State shared by the runtime, its registries and actors.
pub struct Shared {
    pub(crate) config: RuntimeConfig,
    arbiters: Vec<ArbiterHandle>,
    owned_arbiters: Mutex<Vec<Arbiter>>,
    pub(crate) hub: TopicHub,
    /// Every topic subscriber an actor knows, beside the hub (see `connection.rs`).
    pub(crate) conns: super::connection::ConnectionTable,
    /// Cluster mode: this node's subscribers' links, and the connections it serves for other nodes' (`links`).
    pub(crate) links: super::links::Links,
    pub(crate) upstreams: super::links::Upstreams,
    /// Cluster mode: procedures this node runs for callers on other nodes (`procedure`).
    pub(crate) procedures: super::procedure::Procedures,
    /// `on_disconnect` calls of connections that ended, run by one runtime task (a drop cannot await).
    disconnects: tokio::sync::mpsc::UnboundedSender<super::connection::DisconnectJob>,
    kinds: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    handles: RwLock<Vec<Arc<dyn KindHandle>>>,
    deliveries: RwLock<HashMap<String, DeliverFn>>,
    /// Registered remote mutations and reads (`Accepts::remote_*`), by kind and wire name.
    remote_calls: RwLock<HashMap<String, super::outbox::RemoteFn>>,
    /// Their codecs by message type (`remote::Codec`), for the registry's call paths.
    codecs: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    /// Services actors reach through `EntityCtx::service` (agent backends, git hosts, ...), by type.
    services: RwLock<HashMap<TypeId, Arc<dyn Any + Send + Sync>>>,
    pub(crate) index: RecoveryIndex,
    live: Arc<Semaphore>,
    /// Actors passivated under pressure with outbox rows still to deliver (kind, encoded key): reactivated by the
    /// reviver as soon as a live slot is free.
    parked: Mutex<std::collections::BTreeSet<(&'static str, String)>>,
    parked_changed: tokio::sync::Notify,
    /// An actor with schedules passivated: the due scanner looks again at once (its next wake may be earlier).
    pub(crate) due_changed: tokio::sync::Notify,
    /// Bounds concurrent database opens: beyond a few per core they only contend on SQLite's global open lock.
    pub(crate) opening: Semaphore,
    shutting_down: AtomicBool,
    /// Cluster mode: actor files whose connection is closing (shipping its last commits); activation waits.
    closing: Mutex<std::collections::HashSet<PathBuf>>,
    closed: tokio::sync::Notify,
    epoch: Instant,
    clock_ms: AtomicU64,
    me: Weak<Shared>,
}

impl Shared {
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Milliseconds since the runtime started, ticking every [`CLOCK_TICK`]: cheap enough to read per message.
    pub(crate) fn clock_ms(&self) -> u64 {
        self.clock_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn arbiter_for(&self, encoded_key: &str) -> ArbiterHandle {
        if self.arbiters.is_empty() {
            return Arbiter::current();
        }
        self.arbiters[(placement_hash(encoded_key) % self.arbiters.len() as u64) as usize].clone()
    }

    /// The registry of kind `E`, created (directory, accepted deliveries) on first use.
    pub(crate) fn registry<E: Entity>(&self) -> Registry<E> {
        self.registry_with::<E>(None)
    }

    pub(crate) fn registry_with<E: Entity>(&self, config: Option<super::entity::KindConfig>) -> Registry<E> {
        let id = TypeId::of::<E>();
        if let Some(r) = self.kinds.read().unwrap_or_else(|p| p.into_inner()).get(&id) {
            if let Some(r) = r.downcast_ref::<Registry<E>>() {
                return r.clone();
            }
        }
        let mut kinds = self.kinds.write().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = kinds.get(&id).and_then(|r| r.downcast_ref::<Registry<E>>()) {
            return r.clone();
        }
        // `me` is set by `Arc::new_cyclic` before any method can run, so the upgrade succeeds while `self` is alive.
        let shared = self.me.upgrade().expect("Shared is alive while its methods run");
        let config = config.unwrap_or_else(|| {
            let mut c = E::config();
            c.idle_timeout = self.config.idle_timeout.unwrap_or(c.idle_timeout);
            c
        });
        let mut accepts = Accepts::<E>::new();
        E::accepts(&mut accepts);
        // Every kind's idempotency records are reachable from other nodes (cluster mode; unused otherwise).
        accepts
            .remote_read::<super::idempotency::LookupIdempotency<E>>()
            .remote_mutation::<super::idempotency::ReserveIdempotency<E>>()
            .remote_mutation::<super::idempotency::AnswerIdempotency<E>>()
            .remote_mutation::<super::idempotency::ReleaseIdempotency<E>>();
        let registry = Registry::<E>::new(shared, config, std::mem::take(&mut accepts.scheduled));
        let dir = self.config.data_dir.join(E::KIND);
        if let Err(e) = std::fs::create_dir_all(&dir) {
            tracing::error!(kind = E::KIND, dir = %dir.display(), error = %e, "cannot create kind directory");
        }
        let mut handles = self.handles.write().unwrap_or_else(|p| p.into_inner());
        if handles.iter().any(|h| h.kind() == E::KIND) {
            tracing::error!(kind = E::KIND, "two entity types share one KIND; their databases would collide");
        }
        handles.push(Arc::new(registry.clone()));
        self.deliveries.write().unwrap_or_else(|p| p.into_inner()).extend(accepts.table);
        self.remote_calls.write().unwrap_or_else(|p| p.into_inner()).extend(accepts.remote);
        self.codecs.write().unwrap_or_else(|p| p.into_inner()).extend(accepts.codecs);
        kinds.insert(id, Arc::new(registry.clone()));
        registry
    }

    pub(crate) fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        let services = self.services.read().unwrap_or_else(|p| p.into_inner());
        services.get(&TypeId::of::<T>()).cloned().and_then(|s| s.downcast::<T>().ok())
    }

    pub(crate) fn ensure_kind<E: Entity>(&self) {
        let _ = self.registry::<E>();
    }

    /// Cluster mode: the transport and the shard, when `key`'s shard is served by another node (or none).
    pub(crate) fn remote_route<E: Entity>(
        &self,
        key: &E::Key,
    ) -> Option<(Arc<dyn super::remote::Transport>, super::placement::ShardId)> {
        let (transport, router) = (self.config.transport.as_ref()?, self.config.router.as_ref()?);
        let shard = super::placement::shard_of(&E::placement_key(key));
        (router.route(shard) != super::placement::Route::Local).then(|| (transport.clone(), shard))
    }

    /// The codec of the remote message `M` (with its output `O` and error `Er`), if its kind registered it.
    pub(crate) fn codec<M: 'static, O: 'static, Er: 'static>(&self) -> Option<Arc<super::remote::Codec<M, O, Er>>> {
        let codecs = self.codecs.read().unwrap_or_else(|p| p.into_inner());
        codecs.get(&TypeId::of::<M>()).cloned()?.downcast::<super::remote::Codec<M, O, Er>>().ok()
    }

    pub(crate) fn remote_fn(&self, kind: &str, message: &str) -> Option<super::outbox::RemoteFn> {
        let key = super::outbox::delivery_key(kind, message);
        self.remote_calls.read().unwrap_or_else(|p| p.into_inner()).get(&key).cloned()
    }

    pub(crate) fn delivery_fn(&self, kind: &str, message: &str) -> Option<DeliverFn> {
        let key = super::outbox::delivery_key(kind, message);
        self.deliveries.read().unwrap_or_else(|p| p.into_inner()).get(&key).cloned()
    }

    pub(crate) fn handles(&self) -> Vec<Arc<dyn KindHandle>> {
        self.handles.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Remembers an actor that passivated with outbox rows to deliver, for the reviver.
    pub(crate) fn park(&self, kind: &'static str, key: &str) {
        lock(&self.parked).insert((kind, key.to_owned()));
        self.parked_changed.notify_one();
    }

    /// Forgets the parked actors `which` picks (cluster mode: their shard is no longer served here, and a revival
    /// refused again and again would hold up the ones behind it). Their recovery marks stay.
    pub(crate) fn unpark_where(&self, which: impl Fn(&str, &str) -> bool) {
        lock(&self.parked).retain(|(kind, key)| !which(kind, key));
    }

    /// Takes one of `max_live` slots. While none is free, the least recently used idle actor of any kind is asked
    /// to passivate (recency compared across kinds); one that refuses (an outbox to deliver, a turn running) is
    /// passed over and the next is asked at once, so a few busy actors never stall every activation.
    pub(crate) async fn acquire_live_slot(&self) -> Result<OwnedSemaphorePermit, ActivationFailure> {
        if let Ok(p) = self.live.clone().try_acquire_owned() {
            return Ok(p);
        }
        let deadline = Instant::now() + self.config.activation_wait;
        let handles = self.handles();
        loop {
            // Idle actors first; only when none agrees, actors whose outbox waits (parked: see `Passivate`).
            'ask: for park_pending in [false, true] {
                for _ in 0..EVICT_ASKS_PER_ROUND {
                    let now = self.clock_ms();
                    let oldest = handles
                        .iter()
                        .filter_map(|h| h.oldest_idle(now, park_pending).map(|t| (t, h)))
                        .min_by_key(|(t, _)| *t);
                    let Some((_, handle)) = oldest else { break };
                    if handle.evict_oldest(now, park_pending).await {
                        break 'ask;
                    }
                }
            }
            match tokio::time::timeout(Duration::from_millis(20), self.live.clone().acquire_owned()).await {
                Ok(Ok(p)) => return Ok(p),
                Ok(Err(_)) => return Err(ActivationFailure::ShuttingDown),
                Err(_) if Instant::now() >= deadline => {
                    return Err(ActivationFailure::TooManyLive(self.config.activation_wait))
                }
                Err(_) => {}
            }
        }
    }
}

/// Most actors one waiting activation asks to passivate before waiting for a slot again (refusals are cheap: one
/// mailbox round trip each).
const EVICT_ASKS_PER_ROUND: usize = 8;

/// The runtime. Create it inside an actix `System`; clone it freely.
#[derive(Clone)]
pub struct Runtime {
    shared: Arc<Shared>,
}

/// What `Runtime::recover` did.
#[derive(Debug, Default)]
pub struct RecoveryReport {
    /// Actors reactivated to resume delivering their outbox.
    pub resumed: usize,
    pub failed: Vec<ActivationError>,
    /// Markers of kinds this runtime has no registry for (register them before recovering).
    pub unknown_kinds: Vec<String>,
    /// Cluster mode (`Runtime::recover_shards`): actors the commit log says must run without a caller, handed to the
    /// schedule scanner.
    pub wakes: usize,
}

impl Runtime {
    /// Prepares the data directory and starts the arbiters. Must run inside an actix `System`.
    pub fn start(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|source| RuntimeError::DataDir { path: config.data_dir.display().to_string(), source })?;
        let index = RecoveryIndex::open(&config.data_dir.join("_foundry_index.sqlite3"))?;
        let owned: Vec<Arbiter> = (0..config.arbiters).map(|_| Arbiter::new()).collect();
        let arbiters = owned.iter().map(|a| a.handle()).collect();
        let live = Arc::new(Semaphore::new(config.max_live));
        let (disconnects, ended) = tokio::sync::mpsc::unbounded_channel();
        let shared = Arc::new_cyclic(|me| Shared {
            config,
            arbiters,
            owned_arbiters: Mutex::new(owned),
            hub: TopicHub::default(),
            conns: Default::default(),
            links: Default::default(),
            upstreams: Default::default(),
            procedures: Default::default(),
            disconnects,
            kinds: RwLock::new(HashMap::new()),
            handles: RwLock::new(Vec::new()),
            deliveries: RwLock::new(HashMap::new()),
            remote_calls: RwLock::new(HashMap::new()),
            codecs: RwLock::new(HashMap::new()),
            services: RwLock::new(HashMap::new()),
            index,
            live,
            parked: Mutex::new(std::collections::BTreeSet::new()),
            parked_changed: tokio::sync::Notify::new(),
            due_changed: tokio::sync::Notify::new(),
            opening: Semaphore::new(4 * std::thread::available_parallelism().map_or(2, |n| n.get())),
            shutting_down: AtomicBool::new(false),
            closing: Mutex::new(std::collections::HashSet::new()),
            closed: tokio::sync::Notify::new(),
            epoch: Instant::now(),
            clock_ms: AtomicU64::new(0),
            me: me.clone(),
        });
        start_clock(&shared);
        actix_rt::spawn(revive_parked(Arc::downgrade(&shared)));
        actix_rt::spawn(trim_after_passivations(Arc::downgrade(&shared)));
        actix_rt::spawn(super::due::scan(Arc::downgrade(&shared)));
        actix_rt::spawn(run_disconnects(ended));
        tracing::info!(data_dir = %shared.config.data_dir.display(), arbiters = shared.config.arbiters, max_live = shared.config.max_live, "runtime started");
        Ok(Runtime { shared })
    }

    /// The registry of kind `E` (registered with `E::config()` on first call).
    pub fn registry<E: Entity>(&self) -> Registry<E> {
        self.shared.registry::<E>()
    }

    /// Registers kind `E` with an explicit configuration (e.g. idle timeout from the command line). If the kind is
    /// already registered, the existing registry is returned unchanged.
    pub fn register<E: Entity>(&self, config: super::entity::KindConfig) -> Registry<E> {
        self.shared.registry_with::<E>(Some(config))
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.shared.config
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The read-only view of this runtime for operators (see [`super::inspect`]).
    pub fn inspector(&self) -> super::inspect::Inspector {
        super::inspect::Inspector { shared: self.shared.clone() }
    }

    /// Makes `service` available to every actor through `EntityCtx::service::<T>()` (one value per type; a later
    /// call replaces it for actors that look it up afterwards).
    pub fn provide<T: Send + Sync + 'static>(&self, service: Arc<T>) {
        self.shared.services.write().unwrap_or_else(|p| p.into_inner()).insert(TypeId::of::<T>(), service);
    }

    /// The service of type `T`, if one was provided.
    pub fn service<T: Send + Sync + 'static>(&self) -> Option<Arc<T>> {
        self.shared.service::<T>()
    }

    pub fn data_dir(&self) -> &Path {
        &self.shared.config.data_dir
    }

    /// Number of topic channels held by the hub.
    pub fn topic_channels(&self) -> usize {
        self.shared.hub.channel_count()
    }

    /// Number of open connections (topic subscribers) across all actors.
    pub fn connection_count(&self) -> usize {
        self.shared.conns.count()
    }

    /// Live actors across all kinds.
    pub fn live_actors(&self) -> usize {
        self.shared.handles().iter().map(|h| h.live()).sum()
    }

    /// Calls `f` with each registered kind's name, counters and current mailbox depth (calls in flight).
    pub fn for_each_kind(&self, mut f: impl FnMut(&'static str, &KindStats, u64)) {
        for h in self.shared.handles() {
            f(h.kind(), h.stats(), h.in_flight_total());
        }
    }

    /// Actors listed in the due index (actors with schedules, plus stale entries not yet corrected by a wake).
    pub fn scheduled_actors(&self) -> Result<i64, RuntimeError> {
        self.shared.index.due_count().map_err(RuntimeError::Index)
    }

    /// True once `shutdown` has begun.
    pub fn is_shutting_down(&self) -> bool {
        self.shared.is_shutting_down()
    }

    /// Reactivates every actor that had undelivered outbox rows when the process last stopped, so their delivery
    /// resumes. Register every kind (`registry::<E>()`) before calling this.
    pub async fn recover(&self) -> RecoveryReport {
        let mut report = RecoveryReport::default();
        let marked = match self.shared.index.list() {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot read recovery index");
                return report;
            }
        };
        let handles = self.shared.handles();
        for (kind, key) in marked {
            let Some(h) = handles.iter().find(|h| h.kind() == kind) else {
                report.unknown_kinds.push(kind);
                continue;
            };
            match h.recover(key).await {
                Ok(()) => report.resumed += 1,
                Err(e) => report.failed.push(e),
            }
        }
        tracing::info!(resumed = report.resumed, failed = report.failed.len(), "outbox recovery done");
        report
    }

    /// Stops accepting calls, lets every actor finish the calls already in flight, commits, closes every database and
    /// stops the arbiters. Idempotent.
    pub async fn shutdown(&self) {
        if self.shared.shutting_down.swap(true, Ordering::SeqCst) {
            return;
        }
        tracing::info!("runtime shutting down");
        // Activations that were already past the shutdown check may add actors while we drain: sweep until none is left.
        for _ in 0..50 {
            let waits: Vec<_> = self.shared.handles().iter().flat_map(|h| h.shutdown_all()).collect();
            if waits.is_empty() && self.live_actors() == 0 {
                break;
            }
            for w in waits {
                let _ = w.await;
            }
            if self.live_actors() > 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        self.shared.live.close();
        self.shared.hub.close_all();
        self.shared.conns.clear();
        self.shared.index.close();
        let arbiters: Vec<Arbiter> = std::mem::take(&mut *lock(&self.shared.owned_arbiters));
        for a in &arbiters {
            a.stop();
        }
        let _ = actix_rt::task::spawn_blocking(move || {
            for a in arbiters {
                let _ = a.join();
            }
        })
        .await;
        tracing::info!("runtime stopped");
    }
}

/// Reactivates parked actors (see `Shared::park`) one at a time while a live slot is free, so their outboxes are
/// delivered without waiting for a restart's recovery. Never evicts to do so: it only takes free room.
/// Returns freed heap memory to the operating system once many actors passivated and activity has calmed down.
/// Closing a database frees its page cache and statements, but glibc's allocator keeps freed pages in its arenas:
/// measured with the load bench, RSS stayed at 784 MiB of a 930 MiB peak with no actor live (111 MiB with this).
/// `malloc_trim` hands whole free pages back (`madvise`) in every arena, holding each arena's lock while it walks it,
/// so it runs only in a quiet period — no activation for 10 s — after at least 64 passivations, on the blocking pool:
/// trimming during load (each eviction at the live cap is a passivation) cost ~40% of the load bench's throughput.
async fn trim_after_passivations(weak: Weak<Shared>) {
    const EVERY: Duration = Duration::from_secs(10);
    const AFTER_PASSIVATIONS: u64 = 64;
    let (mut trimmed_at, mut activations_seen) = (0u64, 0u64);
    loop {
        tokio::time::sleep(EVERY).await;
        let Some(shared) = weak.upgrade() else { return };
        if shared.is_shutting_down() {
            return;
        }
        let sum = |f: fn(&KindStats) -> u64| shared.handles().iter().map(|h| f(h.stats())).sum::<u64>();
        let passivations = sum(|s| s.passivations.load(Ordering::Relaxed));
        let activations = sum(|s| s.activations.load(Ordering::Relaxed));
        drop(shared);
        let quiet = activations == activations_seen;
        activations_seen = activations;
        if quiet && passivations >= trimmed_at + AFTER_PASSIVATIONS {
            trimmed_at = passivations;
            let _ = actix_rt::task::spawn_blocking(trim_heap).await;
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap() {
    // SAFETY: malloc_trim only walks the allocator's own arenas, under their locks; any thread may call it.
    unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() {}

impl Shared {
    /// Cluster mode: `path`'s connection is closing (see `wait_closed`).
    pub(crate) fn closing_started(&self, path: &Path) {
        lock(&self.closing).insert(path.to_owned());
    }

    pub(crate) fn closing_done(&self, path: &Path) {
        lock(&self.closing).remove(path);
        self.closed.notify_waiters();
    }

    /// Waits until no connection to `path` is closing: its last commits are shipped and its marker written, so an
    /// activation can trust (or rebuild) the file without racing the old connection's checkpoint.
    pub(crate) async fn wait_closed(&self, path: &Path) {
        loop {
            // Registered before the check, so a close finishing in between still wakes this wait.
            let closed = self.closed.notified();
            if !lock(&self.closing).contains(path) {
                return;
            }
            closed.await;
        }
    }

    /// Queues a dropped connection's `on_disconnect` for the runtime's disconnect task.
    pub(crate) fn end_connection(&self, job: super::connection::DisconnectJob) {
        // The receiver lives as long as the runtime's system: a send fails only when it is gone, and then so are
        // the actors the hook would have run in.
        let _ = self.disconnects.send(job);
    }
}

/// Runs each ended connection's `on_disconnect` call as a task of its own, so a slow or passivated actor delays only
/// its own hooks.
async fn run_disconnects(mut ended: tokio::sync::mpsc::UnboundedReceiver<super::connection::DisconnectJob>) {
    while let Some(job) = ended.recv().await {
        actix_rt::spawn(job());
    }
}

async fn revive_parked(weak: Weak<Shared>) {
    loop {
        let next = {
            let Some(shared) = weak.upgrade() else { return };
            if shared.is_shutting_down() {
                return;
            }
            let free = shared.live.available_permits() > 0;
            let next = if free { lock(&shared.parked).pop_first() } else { None };
            match next {
                Some((kind, key)) => shared.handles().into_iter().find(|h| h.kind() == kind).map(|h| (h, kind, key)),
                None => None,
            }
        };
        match next {
            Some((handle, kind, key)) => {
                if let Err(e) = handle.recover(key.clone()).await {
                    tracing::debug!(kind, key = %key, error = %e, "parked actor not revived yet");
                    let Some(shared) = weak.upgrade() else { return };
                    lock(&shared.parked).insert((kind, key));
                    drop(shared);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
            None => {
                let Some(shared) = weak.upgrade() else { return };
                // Room appears without a notification (any passivation): look again shortly either way. Holding
                // `shared` for those 50 ms delays its drop by as much at most.
                let _ = tokio::time::timeout(Duration::from_millis(50), shared.parked_changed.notified()).await;
            }
        }
    }
}

/// Resolution of the runtime's coarse clock.
const CLOCK_TICK: Duration = Duration::from_millis(2);

/// Advances `Shared::clock_ms` until the runtime shuts down or is dropped (the thread holds only a weak reference).
fn start_clock(shared: &Arc<Shared>) {
    let weak = Arc::downgrade(shared);
    let spawned = std::thread::Builder::new().name("foundry-clock".into()).spawn(move || loop {
        std::thread::sleep(CLOCK_TICK);
        let Some(shared) = weak.upgrade() else { break };
        shared.clock_ms.store(shared.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        if shared.is_shutting_down() {
            break;
        }
    });
    if let Err(e) = spawned {
        tracing::error!(error = %e, "cannot start the runtime clock; idle passivation will not advance");
    }
}

#[derive(Debug)]
struct IndexPragmas;

impl CustomizeConnection<SqliteConnection, diesel::r2d2::Error> for IndexPragmas {
    fn on_acquire(&self, conn: &mut SqliteConnection) -> Result<(), diesel::r2d2::Error> {
        conn.batch_execute("PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// `<data>/_foundry_index.sqlite3`: which actors have outbox rows to deliver. Shared by all arbiter threads, hence a
/// small r2d2 pool (one shared maintenance thread) rather than a per-actor connection.
pub(crate) struct RecoveryIndex {
    /// `None` once closed at shutdown (dropping the pool closes its connections, so SQLite removes the WAL files).
    pool: Mutex<Option<Pool<ConnectionManager<SqliteConnection>>>>,
}

pub(crate) type IndexConn = r2d2::PooledConnection<ConnectionManager<SqliteConnection>>;

#[derive(QueryableByName)]
struct Marker {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    key: String,
}

impl RecoveryIndex {
    fn open(path: &Path) -> Result<Self, RuntimeError> {
        let url = path.to_str().ok_or_else(|| RuntimeError::Index("path is not UTF-8".into()))?;
        let pool = Pool::builder()
            .max_size(2)
            .min_idle(Some(1))
            .test_on_check_out(false)
            .connection_timeout(Duration::from_secs(5))
            .thread_pool(Arc::new(scheduled_thread_pool::ScheduledThreadPool::new(1)))
            .connection_customizer(Box::new(IndexPragmas))
            .build(ConnectionManager::<SqliteConnection>::new(url))
            .map_err(|e| RuntimeError::Index(e.to_string()))?;
        let mut conn = pool.get().map_err(|e| RuntimeError::Index(e.to_string()))?;
        conn.batch_execute(
            "CREATE TABLE IF NOT EXISTS outbox_pending (kind TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID;",
        )
        .and_then(|()| conn.batch_execute(super::due::SCHEMA))
        .map_err(|e| RuntimeError::Index(e.to_string()))?;
        drop(conn);
        Ok(RecoveryIndex { pool: Mutex::new(Some(pool)) })
    }

    pub(crate) fn conn(&self) -> Result<IndexConn, String> {
        let pool = lock(&self.pool).clone().ok_or_else(|| "the recovery index is closed".to_owned())?;
        pool.get().map_err(|e| e.to_string())
    }

    /// Checkpoints and closes the index (at shutdown, once every actor has stopped).
    fn close(&self) {
        let Some(pool) = lock(&self.pool).take() else { return };
        if let Ok(mut conn) = pool.get() {
            if let Err(e) = conn.batch_execute("PRAGMA wal_checkpoint(TRUNCATE)") {
                tracing::warn!(error = %e, "recovery index checkpoint failed");
            }
        }
        drop(pool);
    }

    pub(crate) fn mark(&self, kind: &str, key: &str) -> Result<(), String> {
        let mut conn = self.conn()?;
        diesel::sql_query("INSERT OR IGNORE INTO outbox_pending (kind, key) VALUES (?, ?)")
            .bind::<Text, _>(kind)
            .bind::<Text, _>(key)
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub(crate) fn unmark(&self, kind: &str, key: &str) -> Result<(), String> {
        let mut conn = self.conn()?;
        diesel::sql_query("DELETE FROM outbox_pending WHERE kind = ? AND key = ?")
            .bind::<Text, _>(kind)
            .bind::<Text, _>(key)
            .execute(&mut conn)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    pub(crate) fn list(&self) -> Result<Vec<(String, String)>, String> {
        let mut conn = self.conn()?;
        let rows: Vec<Marker> = diesel::sql_query("SELECT kind, key FROM outbox_pending ORDER BY kind, key")
            .load(&mut conn)
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().map(|m| (m.kind, m.key)).collect())
    }
}
