//! What a node holds, as its lease manager publishes it: the [`Ownership`] snapshot behind a `watch` channel, read
//! through a [`LeaseView`] (`is_serving`, and `runtime::Router` for the registry), the [`LeaseEvent`]s that
//! accompany each change, and the manager's counters ([`LeaseStats`]: readiness and metrics).
//!
//! Serving is decided at the moment of the question: a held shard is served until its `valid_until` on the local
//! monotonic clock, whether or not the manager's task is running, so a node whose renewals are stuck stops serving
//! on time by itself.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::{mpsc, watch};

use super::Epoch;
use crate::runtime::{Route, Router, ShardId, SHARD_COUNT};

/// One lease this node holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    pub epoch: Epoch,
    /// Sent time of the last successful acquisition or renewal + `ttl - margin`: serving stops here.
    pub valid_until: Instant,
    /// Since when the shard is being handed to another node (drained, then released): no longer served.
    pub draining: Option<Instant>,
}

impl Held {
    /// Whether the shard is served at `now`.
    pub fn serves_at(&self, now: Instant) -> bool {
        self.draining.is_none() && now < self.valid_until
    }

    /// The last moment this lease was (or will be) served, if it ends at `now`.
    pub fn served_until(&self, now: Instant) -> Instant {
        let end = self.valid_until.min(now);
        self.draining.map_or(end, |d| end.min(d))
    }
}

/// Every lease a node holds, by shard.
#[derive(Debug, Clone)]
pub struct Ownership {
    held: Vec<Option<Held>>,
    stopped: Option<LostReason>,
}

impl Ownership {
    pub(crate) fn empty() -> Self {
        Ownership { held: vec![None; usize::from(SHARD_COUNT)], stopped: None }
    }

    /// The lease on `shard`, served or not.
    pub fn held(&self, shard: ShardId) -> Option<Held> {
        self.held.get(usize::from(shard.0)).copied().flatten()
    }

    /// The epoch `shard` is served under at `now`, if it is.
    pub fn serving_at(&self, shard: ShardId, now: Instant) -> Option<Epoch> {
        self.held(shard).filter(|h| h.serves_at(now)).map(|h| h.epoch)
    }

    /// Every held lease, by shard.
    pub fn iter(&self) -> impl Iterator<Item = (ShardId, Held)> + '_ {
        self.held.iter().enumerate().filter_map(|(i, h)| h.map(|h| (ShardId(i as u16), h)))
    }

    /// The shards served at `now`, with their epochs.
    pub fn serving(&self, now: Instant) -> Vec<(ShardId, Epoch)> {
        self.iter().filter(|(_, h)| h.serves_at(now)).map(|(s, h)| (s, h.epoch)).collect()
    }

    /// Why the manager stopped, once it has (its leases are then all gone from this snapshot).
    pub fn stopped(&self) -> Option<LostReason> {
        self.stopped
    }
}

/// A change of what a node holds, for metrics and the later slices (routing, restore on acquisition).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseEvent {
    Acquired {
        shard: ShardId,
        epoch: Epoch,
        /// When Postgres' answer arrived: serving starts after this.
        at: Instant,
        /// Postgres' `now()` of the acquisition (as in `fdy_shard_history`).
        acquired_at: SystemTime,
    },
    Lost {
        shard: ShardId,
        epoch: Epoch,
        reason: LostReason,
        /// The last moment the shard was served under this epoch (`is_serving` answered `None` from then on).
        serving_until: Instant,
    },
}

/// Why a lease was given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LostReason {
    /// Drained and handed back (another live node should own it, or this node is stopping).
    Released,
    /// Not renewed in time: serving stopped at `valid_until`.
    Expired,
    /// Postgres no longer had it as this node's at this epoch (a renewal or release answered without it).
    Refused,
    /// A newer process registered with this node id.
    Superseded,
    /// The manager was stopped without releasing (dropped or killed): the leases expire in Postgres.
    Stopped,
}

/// A read-only view of a node's leases; cheap to clone. As a `runtime::Router` it routes the shards this node
/// serves locally and every other shard away.
#[derive(Clone)]
pub struct LeaseView {
    rx: watch::Receiver<Ownership>,
}

impl LeaseView {
    /// The epoch `shard` is served under now, if this node serves it.
    pub fn is_serving(&self, shard: ShardId) -> Option<Epoch> {
        self.rx.borrow().serving_at(shard, Instant::now())
    }

    /// A copy of the current holdings.
    pub fn snapshot(&self) -> Ownership {
        self.rx.borrow().clone()
    }

    /// The shards served now, with their epochs.
    pub fn serving(&self) -> Vec<(ShardId, Epoch)> {
        self.rx.borrow().serving(Instant::now())
    }

    /// How many shards are served now.
    pub fn serving_count(&self) -> usize {
        let now = Instant::now();
        self.rx.borrow().iter().filter(|(_, h)| h.serves_at(now)).count()
    }

    /// Why the manager stopped, once it has.
    pub fn stopped(&self) -> Option<LostReason> {
        self.rx.borrow().stopped
    }

    /// Waits for the next change of the holdings; `false` once the manager is gone.
    pub async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// A copy of the current holdings, marked as seen: [`LeaseView::changed`] then waits for a newer one.
    pub fn snapshot_and_mark_seen(&mut self) -> Ownership {
        self.rx.borrow_and_update().clone()
    }
}

impl fmt::Debug for LeaseView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.rx.borrow();
        f.debug_struct("LeaseView").field("held", &o.iter().count()).field("stopped", &o.stopped).finish()
    }
}

impl Router for LeaseView {
    fn route(&self, shard: ShardId) -> Route {
        match self.is_serving(shard) {
            Some(_) => Route::Local,
            None => Route::Remote,
        }
    }
}

/// A lease manager's counters, written by its thread and read anywhere (readiness, `/metrics`).
#[derive(Debug, Default)]
pub struct LeaseStats {
    /// Rounds (ticks) in which the heartbeat, the renewal and the acquisition all answered.
    rounds: AtomicU64,
    /// Set once a completed round found this node holding every shard rendezvous assigns it; never cleared.
    settled: AtomicBool,
    /// Whether the manager's last attempt reached Postgres (true from its start, which had to).
    store_ok: AtomicBool,
    /// Successful renewal round trips, their total duration and the latest one (microseconds).
    renewals: AtomicU64,
    renew_micros: AtomicU64,
    last_renew_micros: AtomicU64,
    /// Renewal calls that failed (an error, or no answer within the call timeout).
    renew_failures: AtomicU64,
    acquired: AtomicU64,
    lost: AtomicU64,
}

impl LeaseStats {
    /// Rounds in which the manager reached Postgres for everything it had to do.
    pub fn rounds(&self) -> u64 {
        self.rounds.load(Ordering::Relaxed)
    }

    /// Whether the node has, at least once, held every shard rendezvous assigns it (the end of its start-up).
    pub fn settled(&self) -> bool {
        self.settled.load(Ordering::Relaxed)
    }

    /// Whether the manager's last attempt reached Postgres.
    pub fn store_ok(&self) -> bool {
        self.store_ok.load(Ordering::Relaxed)
    }

    /// Successful renewal round trips and their total duration.
    pub fn renewals(&self) -> (u64, Duration) {
        (self.renewals.load(Ordering::Relaxed), Duration::from_micros(self.renew_micros.load(Ordering::Relaxed)))
    }

    /// The latest successful renewal's round trip (zero before the first).
    pub fn last_renewal(&self) -> Duration {
        Duration::from_micros(self.last_renew_micros.load(Ordering::Relaxed))
    }

    pub fn renew_failures(&self) -> u64 {
        self.renew_failures.load(Ordering::Relaxed)
    }

    /// Leases acquired since start ([`LeaseEvent::Acquired`] events).
    pub fn acquired(&self) -> u64 {
        self.acquired.load(Ordering::Relaxed)
    }

    /// Leases given up or lost since start, for any reason ([`LeaseEvent::Lost`] events).
    pub fn lost(&self) -> u64 {
        self.lost.load(Ordering::Relaxed)
    }

    pub(crate) fn round_done(&self, settled: bool) {
        self.rounds.fetch_add(1, Ordering::Relaxed);
        self.store_ok.store(true, Ordering::Relaxed);
        if settled {
            self.settled.store(true, Ordering::Relaxed);
        }
    }

    pub(crate) fn store_reached(&self) {
        self.store_ok.store(true, Ordering::Relaxed);
    }

    pub(crate) fn store_failed(&self) {
        self.store_ok.store(false, Ordering::Relaxed);
    }

    pub(crate) fn renewed(&self, took: Duration) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.renewals.fetch_add(1, Ordering::Relaxed);
        self.renew_micros.fetch_add(micros, Ordering::Relaxed);
        self.last_renew_micros.store(micros, Ordering::Relaxed);
    }

    pub(crate) fn renew_failed(&self) {
        self.renew_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// The writing side, shared by the manager (publishes) and its handle (stops): both go through the channel's lock,
/// so once the handle has stopped the node, nothing the manager does afterwards can make a shard served again, and
/// every event is delivered in the order of the snapshots.
pub(crate) struct Publisher {
    tx: watch::Sender<Ownership>,
    events: Option<mpsc::UnboundedSender<LeaseEvent>>,
    stats: Arc<LeaseStats>,
}

impl Publisher {
    pub(crate) fn new(
        events: Option<mpsc::UnboundedSender<LeaseEvent>>,
        stats: Arc<LeaseStats>,
    ) -> (Publisher, LeaseView) {
        let (tx, rx) = watch::channel(Ownership::empty());
        (Publisher { tx, events, stats }, LeaseView { rx })
    }

    /// Every event goes out through here, so the counters agree with what the events' consumer sees.
    fn emit(&self, events: impl IntoIterator<Item = LeaseEvent>) {
        for e in events {
            let counter = match e {
                LeaseEvent::Acquired { .. } => &self.stats.acquired,
                LeaseEvent::Lost { .. } => &self.stats.lost,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(sink) = &self.events {
                // A consumer that went away loses nothing it asked for.
                let _ = sink.send(e);
            }
        }
    }

    /// Publishes the manager's holdings and the events that led there. `false` (and nothing published) once the
    /// node has been stopped.
    pub(crate) fn publish(&self, held: &BTreeMap<ShardId, Held>, events: Vec<LeaseEvent>) -> bool {
        let mut published = false;
        self.tx.send_if_modified(|o| {
            if o.stopped.is_some() {
                return false;
            }
            o.held.iter_mut().for_each(|h| *h = None);
            for (shard, h) in held {
                if let Some(slot) = o.held.get_mut(usize::from(shard.0)) {
                    *slot = Some(*h);
                }
            }
            self.emit(events);
            published = true;
            true
        });
        published
    }

    /// Stops serving everything at once (a `Lost` event per lease) and refuses every later publish.
    pub(crate) fn stop(&self, reason: LostReason) {
        self.tx.send_if_modified(|o| {
            if o.stopped.is_some() {
                return false;
            }
            let now = Instant::now();
            let lost: Vec<LeaseEvent> = o
                .iter()
                .map(|(shard, h)| LeaseEvent::Lost {
                    shard,
                    epoch: h.epoch,
                    reason,
                    serving_until: h.served_until(now),
                })
                .collect();
            o.held.iter_mut().for_each(|h| *h = None);
            o.stopped = Some(reason);
            self.emit(lost);
            true
        });
    }

    pub(crate) fn stopped(&self) -> Option<LostReason> {
        self.tx.borrow().stopped
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_lease_stops_being_served_at_its_deadline_without_a_new_snapshot() {
        let (publisher, view) = Publisher::new(None, Arc::default());
        let now = Instant::now();
        let soon = now + Duration::from_millis(30);
        let later = now + Duration::from_secs(60);
        let held = BTreeMap::from([
            (ShardId(1), Held { epoch: Epoch(4), valid_until: soon, draining: None }),
            (ShardId(2), Held { epoch: Epoch(5), valid_until: later, draining: None }),
            (ShardId(3), Held { epoch: Epoch(6), valid_until: later, draining: Some(now) }),
        ]);
        assert!(publisher.publish(&held, Vec::new()));
        let o = view.snapshot();
        assert_eq!(o.serving_at(ShardId(1), now), Some(Epoch(4)));
        assert_eq!(o.serving_at(ShardId(1), soon), None, "served strictly before valid_until");
        assert_eq!(o.serving_at(ShardId(3), now), None, "a draining shard is not served");
        assert_eq!(o.held(ShardId(3)).map(|h| h.epoch), Some(Epoch(6)));
        std::thread::sleep(Duration::from_millis(40));
        assert_eq!(view.is_serving(ShardId(1)), None, "no republish needed");
        assert_eq!(view.serving(), vec![(ShardId(2), Epoch(5))]);
        assert_eq!(view.route(ShardId(2)), Route::Local);
        assert_eq!(view.route(ShardId(1)), Route::Remote);
    }

    #[test]
    fn once_stopped_nothing_is_served_and_later_publishes_are_refused() {
        let (tx, mut events) = mpsc::unbounded_channel();
        let stats = Arc::new(LeaseStats::default());
        let (publisher, view) = Publisher::new(Some(tx), stats.clone());
        let until = Instant::now() + Duration::from_secs(60);
        let held = BTreeMap::from([(ShardId(7), Held { epoch: Epoch(1), valid_until: until, draining: None })]);
        publisher.publish(&held, Vec::new());
        publisher.stop(LostReason::Stopped);
        assert_eq!(view.is_serving(ShardId(7)), None);
        assert!(matches!(
            events.try_recv(),
            Ok(LeaseEvent::Lost { shard: ShardId(7), epoch: Epoch(1), reason: LostReason::Stopped, .. })
        ));
        assert!(!publisher.publish(&held, Vec::new()), "a manager still running cannot serve again");
        assert_eq!(view.is_serving(ShardId(7)), None);
        assert_eq!(view.snapshot().stopped(), Some(LostReason::Stopped));
        assert_eq!((stats.acquired(), stats.lost()), (0, 1), "the counters follow the events");
    }
}
