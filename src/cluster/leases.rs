//! The lease manager: one per node, owner `<node id>/<boot id>`. Every tick it heartbeats (and learns the live
//! nodes), renews what it holds (every `renew_every`, one statement), computes each shard's desired owner by
//! rendezvous over the live nodes, acquires the shards it should own that are free or expired, and hands off the
//! ones another live node should own (drain hook, then an epoch-checked release). [`Leases`] is its handle.
//!
//! It runs on its own thread with a current-thread tokio runtime rather than on an actix arbiter: actor handlers run
//! synchronous SQLite work inline (milliseconds for an activation), and a renewal delayed behind them would make the
//! node drop shards under load for no reason. Safety never depends on this thread being on time: serving is bounded
//! by each lease's `valid_until`, checked when asked (`ownership.rs`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::ownership::{Held, LeaseEvent, LeaseStats, LeaseView, LostReason, Publisher};
use super::store::{Store, StoreError};
use super::{rendezvous, ClusterConfig, ClusterError, Epoch};
use crate::runtime::{ShardId, SHARD_COUNT};

/// Stops a shard's live actors before its lease is released, so the next owner finds nobody still serving it.
/// `foundry serve --cluster` drains through the runtime (`cluster::node`); [`NoDrain`], for a manager with no actors
/// behind it, answers at once.
pub trait Drain: Send + Sync + 'static {
    /// Resolves when nothing of `shard` runs here any more. Bounded by `ClusterConfig::drain_timeout`, after which
    /// the lease is released anyway (the shard stopped being served when its drain began).
    fn drain(&self, shard: ShardId, epoch: Epoch) -> BoxFuture<'static, ()>;
}

/// Nothing to drain.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoDrain;

impl Drain for NoDrain {
    fn drain(&self, _shard: ShardId, _epoch: Epoch) -> BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

/// Told which shards' leases were just released (committed in Postgres), so the nodes taking them over can be
/// told at once (`foundry serve --cluster` announces them on NATS). Awaited, bounded by [`ANNOUNCE_WITHIN`].
pub type OnReleased = Arc<dyn Fn(Vec<ShardId>) -> BoxFuture<'static, ()> + Send + Sync>;

/// How long a release announcement may hold the manager up.
const ANNOUNCE_WITHIN: Duration = Duration::from_millis(500);

/// What the embedding process plugs into the manager.
#[derive(Clone)]
pub struct LeaseHooks {
    pub drain: Arc<dyn Drain>,
    /// Receives every [`LeaseEvent`] in order. Unbounded: at most a few events per shard per ownership change.
    pub events: Option<mpsc::UnboundedSender<LeaseEvent>>,
    pub released: Option<OnReleased>,
}

impl Default for LeaseHooks {
    fn default() -> Self {
        LeaseHooks { drain: Arc::new(NoDrain), events: None, released: None }
    }
}

/// Makes a lease manager run its round now rather than at its next tick: another node released shards this one may
/// be due to take over. Cheap to clone; does nothing once the manager has stopped.
#[derive(Clone)]
pub struct Nudger(mpsc::UnboundedSender<Command>);

impl Nudger {
    pub fn nudge(&self) {
        let _ = self.0.send(Command::Nudge);
    }
}

/// What a graceful stop did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Leases handed back, each taken over by another node without waiting for expiry.
    pub released: usize,
    /// Leases still held when the stop's deadline passed (or Postgres could not be reached): they expire.
    pub left_to_expire: usize,
}

enum Command {
    Shutdown(oneshot::Sender<ShutdownReport>),
    Nudge,
}

/// The handle of a running lease manager. Dropping it stops the node at once without releasing (as a crash would:
/// its leases expire in Postgres); [`Leases::shutdown`] is the graceful stop.
pub struct Leases {
    node_id: String,
    boot_id: String,
    view: LeaseView,
    stats: Arc<LeaseStats>,
    publisher: Arc<Publisher>,
    commands: mpsc::UnboundedSender<Command>,
    /// Dropping it cancels the manager's task wherever it is.
    cancel: Option<oneshot::Sender<()>>,
    /// Resolves once the manager's runtime (and so its connection) is gone.
    done: Option<oneshot::Receiver<()>>,
}

/// Starts a lease manager: connects, brings the schema up to date, registers the node, then ticks on its own thread.
/// Errors here (bad configuration, Postgres unreachable, a schema from a newer build) mean nothing was started.
pub async fn start(config: ClusterConfig, hooks: LeaseHooks) -> Result<Leases, ClusterError> {
    config.validate()?;
    let boot_id = new_boot_id();
    let stats = Arc::new(LeaseStats::default());
    let (publisher, view) = Publisher::new(hooks.events.clone(), stats.clone());
    let publisher = Arc::new(publisher);
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (cancel, cancelled) = oneshot::channel::<()>();
    let (ready_tx, ready) = oneshot::channel();
    let (done_tx, done) = oneshot::channel();
    let node_id = config.node_id.clone();
    let manager = Manager::new(config, boot_id.clone(), hooks, publisher.clone(), stats.clone());
    std::thread::Builder::new()
        .name(format!("leases-{node_id}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(ClusterError::Thread(e)));
                    return;
                }
            };
            rt.block_on(async move {
                tokio::select! {
                    _ = cancelled => {}
                    _ = manager.run(ready_tx, command_rx) => {}
                }
            });
            // The runtime owns the Postgres connection: only once it is gone is this node really silent.
            drop(rt);
            let _ = done_tx.send(());
        })
        .map_err(ClusterError::Thread)?;
    match ready.await {
        Ok(Ok(())) => {
            Ok(Leases { node_id, boot_id, view, stats, publisher, commands, cancel: Some(cancel), done: Some(done) })
        }
        Ok(Err(e)) => Err(e),
        Err(_) => Err(ClusterError::Stopped),
    }
}

impl Leases {
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Unique to this process: a restart gets a new one.
    pub fn boot_id(&self) -> &str {
        &self.boot_id
    }

    /// The owner string stored in `fdy_shard.owner`.
    pub fn owner(&self) -> String {
        owner_of(&self.node_id, &self.boot_id)
    }

    /// The epoch `shard` is served under now, if this node serves it.
    pub fn is_serving(&self, shard: ShardId) -> Option<Epoch> {
        self.view.is_serving(shard)
    }

    /// A read-only view (also a `runtime::Router`).
    pub fn view(&self) -> LeaseView {
        self.view.clone()
    }

    /// A handle that makes the manager run its round at once (see [`Nudger`]).
    pub fn nudger(&self) -> Nudger {
        Nudger(self.commands.clone())
    }

    /// The manager's counters (rounds, readiness, renewal round trips, leases acquired and lost).
    pub fn stats(&self) -> Arc<LeaseStats> {
        self.stats.clone()
    }

    /// Graceful stop: leaves the node list at once (so peers take each shard as soon as it is released), drains and
    /// releases every lease, then stops. Bounded by `drain_timeout + ttl`.
    pub async fn shutdown(mut self) -> Result<ShutdownReport, ClusterError> {
        let (reply, answer) = oneshot::channel();
        let report = match self.commands.send(Command::Shutdown(reply)) {
            Ok(()) => answer.await.ok(),
            Err(_) => None,
        };
        // Even without an answer, make sure nothing is served and the thread is gone before returning.
        let stopped = self.publisher.stopped();
        self.stop_now().await;
        match (report, stopped) {
            (Some(report), _) => Ok(report),
            (None, Some(LostReason::Superseded)) => Err(ClusterError::Superseded(self.node_id.clone())),
            (None, _) => Err(ClusterError::Stopped),
        }
    }

    /// Stops at once without releasing anything, as a crash would: serving stops now, the leases expire in Postgres.
    pub async fn kill(mut self) {
        self.stop_now().await;
    }

    async fn stop_now(&mut self) {
        self.publisher.stop(LostReason::Stopped);
        self.cancel.take();
        if let Some(done) = self.done.take() {
            let _ = done.await;
        }
    }
}

impl Drop for Leases {
    fn drop(&mut self) {
        self.publisher.stop(LostReason::Stopped);
        // Dropping `cancel` ends the manager's task; its thread then exits by itself.
    }
}

fn owner_of(node_id: &str, boot_id: &str) -> String {
    format!("{node_id}/{boot_id}")
}

/// 128 random bits, hex. The OS generator failing is next to impossible; the fallback (time and pid) is still unique
/// per process start, which is all a boot id must be.
fn new_boot_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::getrandom(&mut bytes).is_err() {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        bytes = (nanos ^ (u128::from(std::process::id()) << 96)).to_be_bytes();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A nudge brings the next round forward to this long after the last one (or now, if that has passed).
const MIN_NUDGE_GAP: Duration = Duration::from_millis(50);

/// A node whose heartbeat is older than this is dead for good: its row is deleted (`Store::prune_nodes`).
pub const NODE_DEAD_FOR: Duration = Duration::from_secs(3600);
/// How often a node prunes dead nodes' rows (every node does; the statement is idempotent).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Runs a store call within the configured bound.
async fn bounded<T>(limit: Duration, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    tokio::time::timeout(limit, call).await.unwrap_or(Err(StoreError::Timeout(limit)))
}

struct Leaving {
    reply: oneshot::Sender<ShutdownReport>,
    deadline: Instant,
    deregistered: bool,
    released: usize,
}

struct Manager {
    config: ClusterConfig,
    boot_id: String,
    owner: String,
    hooks: LeaseHooks,
    publisher: Arc<Publisher>,
    stats: Arc<LeaseStats>,
    store: Option<Store>,
    /// The truth of what this node holds; published after every change.
    held: BTreeMap<ShardId, Held>,
    /// Drained shards whose release has not gone through yet.
    to_release: BTreeMap<ShardId, Epoch>,
    drained: mpsc::UnboundedSender<(ShardId, Epoch)>,
    drained_rx: Option<mpsc::UnboundedReceiver<(ShardId, Epoch)>>,
    /// Sent time of the last renewal that succeeded, and whether the last attempt failed (then retried every tick).
    last_renewal: Option<Instant>,
    renew_failed: bool,
    /// Whether the store answered last time (to log transitions, not every failed tick).
    healthy: bool,
    events: Vec<LeaseEvent>,
    leaving: Option<Leaving>,
    superseded: bool,
    /// When dead nodes' rows were last pruned.
    last_prune: Option<Instant>,
}

impl Manager {
    fn new(
        config: ClusterConfig,
        boot_id: String,
        hooks: LeaseHooks,
        publisher: Arc<Publisher>,
        stats: Arc<LeaseStats>,
    ) -> Self {
        let (drained, drained_rx) = mpsc::unbounded_channel();
        Manager {
            owner: owner_of(&config.node_id, &boot_id),
            config,
            boot_id,
            hooks,
            publisher,
            stats,
            store: None,
            held: BTreeMap::new(),
            to_release: BTreeMap::new(),
            drained,
            drained_rx: Some(drained_rx),
            last_renewal: None,
            renew_failed: false,
            healthy: true,
            events: Vec::new(),
            leaving: None,
            superseded: false,
            last_prune: None,
        }
    }

    async fn run(
        mut self,
        ready: oneshot::Sender<Result<(), ClusterError>>,
        mut commands: mpsc::UnboundedReceiver<Command>,
    ) {
        if let Err(e) = self.init().await {
            let _ = ready.send(Err(e));
            return;
        }
        let _ = ready.send(Ok(()));
        tracing::info!(node = %self.config.node_id, boot = %self.boot_id, "cluster lease manager started");
        let Some(mut drained) = self.drained_rx.take() else { return };
        let mut next_tick = tokio::time::Instant::now();
        loop {
            tokio::select! {
                Some(command) = commands.recv() => match command {
                    Command::Shutdown(reply) => self.begin_leaving(reply).await,
                    // The next round is brought forward, to no sooner than MIN_NUDGE_GAP after the last one: a
                    // burst of announcements costs one round, not one each, and none is lost.
                    Command::Nudge => {
                        let last = next_tick.checked_sub(self.config.tick).unwrap_or(next_tick);
                        next_tick = next_tick.min(last + MIN_NUDGE_GAP);
                    }
                },
                Some((shard, epoch)) = drained.recv() => {
                    self.to_release.insert(shard, epoch);
                    // Every shard drained by now goes in the same release (and announcement).
                    while let Ok((shard, epoch)) = drained.try_recv() {
                        self.to_release.insert(shard, epoch);
                    }
                    self.release_drained().await;
                }
                _ = tokio::time::sleep_until(next_tick) => {
                    self.tick().await;
                    next_tick = tokio::time::Instant::now() + self.config.tick;
                }
            }
            self.publish();
            if self.superseded {
                tracing::error!(node = %self.config.node_id, "another process registered with this node id; stopped");
                self.publisher.stop(LostReason::Superseded);
                return;
            }
            if self.finish_leaving() {
                return;
            }
        }
    }

    async fn init(&mut self) -> Result<(), ClusterError> {
        let limit = self.config.call_timeout;
        let mut store = Store::connect(&self.config.postgres_url, &self.application_name(), limit).await?;
        // Several statements (each also bounded by the server's statement timeout), so a few call timeouts in all.
        bounded(limit * 4, store.migrate()).await?;
        bounded(limit, store.register(&self.config.node_id, &self.boot_id, self.config.addr.as_deref())).await?;
        self.store = Some(store);
        self.stats.store_reached();
        Ok(())
    }

    fn application_name(&self) -> String {
        format!("foundry-leases {}", self.config.node_id)
    }

    fn publish(&mut self) {
        let events = std::mem::take(&mut self.events);
        self.publisher.publish(&self.held, events);
    }

    fn lose(&mut self, shard: ShardId, reason: LostReason, now: Instant) {
        if let Some(h) = self.held.remove(&shard) {
            self.to_release.remove(&shard);
            self.events.push(LeaseEvent::Lost { shard, epoch: h.epoch, reason, serving_until: h.served_until(now) });
        }
    }

    fn connection_lost(&mut self, error: StoreError) {
        if self.healthy {
            tracing::warn!(node = %self.config.node_id, %error, "cluster store unreachable; retrying every tick");
        }
        self.healthy = false;
        self.stats.store_failed();
        self.renew_failed = true;
        // The connection may be mid-statement: start over on a fresh one.
        self.store = None;
    }

    async fn tick(&mut self) {
        let now = Instant::now();
        // Self-expiry: whatever happens to the calls below, a lease past its deadline is no longer ours to serve.
        let expired: Vec<ShardId> = self.held.iter().filter(|(_, h)| h.valid_until <= now).map(|(s, _)| *s).collect();
        if !expired.is_empty() {
            tracing::warn!(node = %self.config.node_id, count = expired.len(), "leases not renewed in time");
        }
        for shard in expired {
            self.lose(shard, LostReason::Expired, now);
        }
        let limit = self.config.call_timeout;
        if self.store.is_none() {
            match bounded(limit, Store::connect(&self.config.postgres_url, &self.application_name(), limit)).await {
                Ok(store) => self.store = Some(store),
                Err(e) => return self.connection_lost(e),
            }
        }
        let Some(live) = self.membership().await else { return };
        if !self.renew().await {
            return;
        }
        if !self.healthy {
            tracing::info!(node = %self.config.node_id, "cluster store reachable again");
            self.healthy = true;
        }
        let desired = rendezvous::assign(&live);
        let me = live.iter().position(|n| *n == self.config.node_id);
        if !self.acquire(&desired, me).await {
            return;
        }
        // What was acquired is served before readiness says so: `/readyz` (and a caller waiting on it) must never
        // see "ready" while the router still refuses the shards it names.
        self.publish();
        self.stats.round_done(self.holds_all(&desired, me));
        self.hand_off(&desired, me);
        self.release_drained().await;
        self.prune_dead_nodes().await;
    }

    /// Deletes the rows of nodes dead for more than [`NODE_DEAD_FOR`], at most every [`PRUNE_EVERY`].
    async fn prune_dead_nodes(&mut self) {
        let now = Instant::now();
        if self.leaving.is_some() || self.last_prune.is_some_and(|t| now < t + PRUNE_EVERY) {
            return;
        }
        let Some(store) = self.store.as_ref() else { return };
        self.last_prune = Some(now);
        match bounded(self.config.call_timeout, store.prune_nodes(NODE_DEAD_FOR)).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(nodes = n, "removed the rows of nodes dead for over an hour"),
            // Housekeeping, not ownership: a failure here must not cost this node its leases; the next round's own
            // statements tell whether the connection is still good.
            Err(e) => tracing::warn!(error = %e, "could not prune dead nodes' rows; trying again later"),
        }
    }

    /// Heartbeat and the live nodes; while leaving, only the pending deregistration (and nobody is live to us, so
    /// everything is handed off). `None` when the call failed or this process was superseded.
    async fn membership(&mut self) -> Option<Vec<String>> {
        let limit = self.config.call_timeout;
        let store = self.store.as_ref()?;
        if let Some(leaving) = &self.leaving {
            if leaving.deregistered {
                return Some(Vec::new());
            }
            return match bounded(limit, store.deregister(&self.config.node_id, &self.boot_id)).await {
                Ok(()) => {
                    if let Some(l) = self.leaving.as_mut() {
                        l.deregistered = true;
                    }
                    Some(Vec::new())
                }
                Err(e) => {
                    self.connection_lost(e);
                    None
                }
            };
        }
        let ttl = self.config.ttl;
        let addr = self.config.addr.as_deref();
        match bounded(limit, store.heartbeat(&self.config.node_id, &self.boot_id, addr, ttl)).await {
            Ok(Some(live)) => Some(live),
            Ok(None) => {
                self.superseded = true;
                let now = Instant::now();
                for shard in self.held.keys().copied().collect::<Vec<_>>() {
                    self.lose(shard, LostReason::Superseded, now);
                }
                None
            }
            Err(e) => {
                self.connection_lost(e);
                None
            }
        }
    }

    /// Renews every held lease when due; `false` when the store failed.
    async fn renew(&mut self) -> bool {
        let now = Instant::now();
        let due = self.renew_failed || self.last_renewal.is_none_or(|t| now >= t + self.config.renew_every);
        let Some(store) = self.store.as_ref() else { return false };
        if !due || self.held.is_empty() {
            return true;
        }
        let mine: Vec<(ShardId, Epoch)> = self.held.iter().map(|(s, h)| (*s, h.epoch)).collect();
        let sent = Instant::now();
        match bounded(self.config.call_timeout, store.renew(&self.owner, &mine, self.config.ttl)).await {
            Ok(kept) => {
                self.stats.renewed(sent.elapsed());
                let kept: BTreeMap<ShardId, Epoch> = kept.into_iter().collect();
                let until = sent + self.config.serving_window();
                let now = Instant::now();
                for (shard, epoch) in mine {
                    match self.held.get_mut(&shard) {
                        Some(h) if kept.get(&shard) == Some(&epoch) => h.valid_until = h.valid_until.max(until),
                        Some(_) => {
                            tracing::warn!(node = %self.config.node_id, %shard, %epoch, "lease renewal refused");
                            self.lose(shard, LostReason::Refused, now);
                        }
                        None => {}
                    }
                }
                self.last_renewal = Some(sent);
                self.renew_failed = false;
                true
            }
            Err(e) => {
                self.stats.renew_failed();
                self.connection_lost(e);
                false
            }
        }
    }

    /// Acquires the shards this node should own and does not hold; `false` when the store failed.
    async fn acquire(&mut self, desired: &[Option<usize>], me: Option<usize>) -> bool {
        let Some(store) = self.store.as_ref() else { return false };
        if me.is_none() || self.leaving.is_some() {
            return true;
        }
        let wanted: Vec<ShardId> = (0..SHARD_COUNT)
            .map(ShardId)
            .filter(|s| desired[usize::from(s.0)] == me && !self.held.contains_key(s))
            .collect();
        if wanted.is_empty() {
            return true;
        }
        let sent = Instant::now();
        match bounded(self.config.call_timeout, store.acquire(&self.owner, &wanted, self.config.ttl)).await {
            Ok(won) => {
                let at = Instant::now();
                if !won.is_empty() {
                    tracing::info!(node = %self.config.node_id, count = won.len(), "acquired shard leases");
                    let shards: Vec<u16> = won.iter().map(|a| a.shard.0).collect();
                    tracing::debug!(node = %self.config.node_id, ?shards, "acquired these shards");
                }
                for a in won {
                    let valid_until = sent + self.config.serving_window();
                    self.held.insert(a.shard, Held { epoch: a.epoch, valid_until, draining: None });
                    self.events.push(LeaseEvent::Acquired { shard: a.shard, epoch: a.epoch, at, acquired_at: a.at });
                }
                true
            }
            Err(e) => {
                self.connection_lost(e);
                false
            }
        }
    }

    /// Whether every shard rendezvous assigns this node is held and not being handed off.
    fn holds_all(&self, desired: &[Option<usize>], me: Option<usize>) -> bool {
        me.is_some()
            && self.leaving.is_none()
            && (0..SHARD_COUNT).all(|s| {
                desired[usize::from(s)] != me || self.held.get(&ShardId(s)).is_some_and(|h| h.draining.is_none())
            })
    }

    /// Starts draining every held shard another live node should own (all of them when leaving). The shards are
    /// published as not served before any drain hook runs, so nothing new starts on them while they drain.
    fn hand_off(&mut self, desired: &[Option<usize>], me: Option<usize>) {
        let now = Instant::now();
        let mut starting = Vec::new();
        for (shard, h) in self.held.iter_mut() {
            let mine = me.is_some() && desired[usize::from(shard.0)] == me && self.leaving.is_none();
            if !mine && h.draining.is_none() {
                h.draining = Some(now);
                starting.push((*shard, h.epoch));
            }
        }
        if starting.is_empty() {
            return;
        }
        tracing::info!(node = %self.config.node_id, count = starting.len(), "handing shard leases off");
        let shards: Vec<u16> = starting.iter().map(|(s, _)| s.0).collect();
        tracing::debug!(node = %self.config.node_id, ?shards, "handing these shards off");
        self.publish();
        for (shard, epoch) in starting {
            let (drained, limit) = (self.drained.clone(), self.config.drain_timeout);
            let drain = self.hooks.drain.drain(shard, epoch);
            tokio::spawn(async move {
                if tokio::time::timeout(limit, drain).await.is_err() {
                    tracing::warn!(%shard, %epoch, "drain did not finish in time; releasing the lease anyway");
                }
                let _ = drained.send((shard, epoch));
            });
        }
    }

    /// Releases the drained shards (epoch-checked), after publishing that they are not served.
    async fn release_drained(&mut self) {
        let held = &self.held;
        self.to_release.retain(|s, e| held.get(s).is_some_and(|h| h.epoch == *e));
        if self.to_release.is_empty() {
            return;
        }
        // Peers may acquire the moment the release commits: the "not served" snapshot must be out before.
        self.publish();
        let Some(store) = self.store.as_ref() else { return };
        let batch: Vec<(ShardId, Epoch)> = self.to_release.iter().map(|(s, e)| (*s, *e)).collect();
        match bounded(self.config.call_timeout, store.release(&self.owner, &batch)).await {
            Ok(released) => {
                let released: BTreeMap<ShardId, Epoch> = released.into_iter().collect();
                if let (Some(hook), false) = (&self.hooks.released, released.is_empty()) {
                    let announce = hook(released.keys().copied().collect());
                    if tokio::time::timeout(ANNOUNCE_WITHIN, announce).await.is_err() {
                        tracing::debug!("announcing released shards took too long; peers acquire at their next tick");
                    }
                }
                let now = Instant::now();
                for (shard, epoch) in batch {
                    let reason =
                        if released.get(&shard) == Some(&epoch) { LostReason::Released } else { LostReason::Refused };
                    self.lose(shard, reason, now);
                    if reason == LostReason::Released {
                        if let Some(l) = self.leaving.as_mut() {
                            l.released += 1;
                        }
                    }
                }
            }
            Err(e) => self.connection_lost(e),
        }
    }

    async fn begin_leaving(&mut self, reply: oneshot::Sender<ShutdownReport>) {
        let deadline = Instant::now() + self.config.drain_timeout + self.config.ttl;
        self.leaving = Some(Leaving { reply, deadline, deregistered: false, released: 0 });
        tracing::info!(node = %self.config.node_id, held = self.held.len(), "leaving the cluster");
        // Leave the node list first, so peers acquire each shard as soon as it is released; then hand off all.
        let _ = self.membership().await;
        let none = vec![None; usize::from(SHARD_COUNT)];
        self.hand_off(&none, None);
    }

    /// Answers the graceful stop once everything is released and the node row is gone (or the deadline passed).
    fn finish_leaving(&mut self) -> bool {
        let Some(leaving) = &self.leaving else { return false };
        let done = self.held.is_empty() && leaving.deregistered;
        if !done && Instant::now() < leaving.deadline {
            return false;
        }
        let Some(leaving) = self.leaving.take() else { return false };
        let report = ShutdownReport { released: leaving.released, left_to_expire: self.held.len() };
        tracing::info!(node = %self.config.node_id, released = report.released, left = report.left_to_expire, "left the cluster");
        self.publisher.stop(LostReason::Stopped);
        let _ = leaving.reply.send(report);
        true
    }
}
