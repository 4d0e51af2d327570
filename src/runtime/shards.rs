//! Shard-level operations for cluster mode: [`Runtime::stop_shards`] stops every live actor of some shards across all
//! kinds, as shutdown stops them (used when this node stops serving a shard: handed off, lost or expired), and
//! [`Runtime::recover_shards`] resumes the outbox delivery of the actors this node marked in shards it gained (and
//! has the schedule scanner look again: it skips shards this node does not serve). Single-node mode never calls
//! them.

use std::future::Future;
use std::time::{Duration, Instant};

use super::durable::{CommitLog, Wake};
use super::placement::{Route, ShardId, SHARD_COUNT};
use super::registry::KindHandle;
use super::system::{RecoveryReport, Runtime, Shared};

/// How long a stop waits, beyond the activation timeout, for activations of its shards that were under way.
const ACTIVATING_GRACE: Duration = Duration::from_secs(5);

/// How often a stop looks again while activations of its shards are under way.
const ACTIVATING_POLL: Duration = Duration::from_millis(5);

/// A set of shards (one bit each).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShardMask([u64; SHARD_COUNT as usize / 64]);

impl ShardMask {
    pub(crate) fn of(shards: impl IntoIterator<Item = ShardId>) -> Self {
        let mut bits = [0u64; SHARD_COUNT as usize / 64];
        for ShardId(s) in shards {
            if s < SHARD_COUNT {
                bits[usize::from(s / 64)] |= 1 << (s % 64);
            }
        }
        ShardMask(bits)
    }

    pub(crate) fn contains(&self, ShardId(s): ShardId) -> bool {
        s < SHARD_COUNT && self.0[usize::from(s / 64)] & (1 << (s % 64)) != 0
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

impl Shared {
    /// Whether this node serves the shard of `handle`'s encoded key (always, in single-node mode; a key that does not
    /// decode counts as served, so the caller's own path reports it).
    pub(crate) fn serves_encoded(&self, handle: &dyn KindHandle, encoded_key: &str) -> bool {
        match (&self.config.router, handle.shard_of_encoded(encoded_key)) {
            (Some(router), Some(shard)) => router.route(shard) == Route::Local,
            _ => true,
        }
    }
}

impl Runtime {
    /// Stops every live actor placed in `shards`, across all registered kinds, the way shutdown stops them: no new
    /// call is admitted, the calls in flight finish, pending writes commit, `on_sleep` runs (with
    /// `SleepReason::Shutdown`: for the actor, this node is going away), the database is closed. Resolves once all
    /// of them are closed; answers how many were asked to stop.
    ///
    /// The caller must first make the router refuse these shards (the lease manager publishes a shard as not served
    /// before its drain hook runs): otherwise new calls would activate the actors again. Activations that were
    /// already under way are waited for (at most the activation timeout and a few seconds) and stopped too. Actors of
    /// these shards parked with undelivered outbox rows are no longer revived here (their recovery mark stays:
    /// [`Runtime::recover_shards`] resumes them if this node gains the shard again).
    ///
    /// The future is `Send` and needs only a tokio runtime with timers (the lease manager's thread runs it).
    pub fn stop_shards(
        &self,
        shards: impl IntoIterator<Item = ShardId>,
    ) -> impl Future<Output = usize> + Send + 'static {
        let mask = ShardMask::of(shards);
        let shared = self.shared().clone();
        async move {
            if mask.is_empty() {
                return 0;
            }
            let patience = Instant::now() + shared.config.activation_wait + ACTIVATING_GRACE;
            let mut stopped = 0;
            loop {
                let (mut waits, mut activating) = (Vec::new(), 0);
                for handle in shared.handles() {
                    let sweep = handle.stop_in(&mask);
                    waits.extend(sweep.waits);
                    activating += sweep.activating;
                }
                if waits.is_empty() && activating == 0 {
                    break;
                }
                if waits.is_empty() && Instant::now() >= patience {
                    tracing::warn!(
                        activating,
                        "activations in stopped shards did not finish in time; not waiting longer"
                    );
                    break;
                }
                stopped += waits.len();
                for wait in waits {
                    // An actor that was already stopping answers when it has closed, or drops the sender.
                    let _ = wait.await;
                }
                if activating > 0 {
                    tokio::time::sleep(ACTIVATING_POLL).await;
                }
            }
            // Connections to these actors move to the next owner: this node's subscribers' links, and the
            // gateways of the connections it served for other nodes.
            shared.links.relink_in(&mask);
            shared.upstreams.end_in(&mask);
            let handles = shared.handles();
            shared.unpark_where(|kind, key| {
                handles
                    .iter()
                    .find(|h| h.kind() == kind)
                    .and_then(|h| h.shard_of_encoded(key))
                    .is_some_and(|s| mask.contains(s))
            });
            stopped
        }
    }

    /// [`Runtime::stop_shards`] for one shard.
    pub fn stop_shard(&self, shard: ShardId) -> impl Future<Output = usize> + Send + 'static {
        self.stop_shards([shard])
    }

    /// Reactivates the actors of `shards` that this node's recovery index marks as having undelivered outbox rows
    /// (or owed work), so their delivery resumes: [`Runtime::recover`] for the shards a node has just gained. In
    /// cluster mode, also hands the actors the commit log says must run without a caller (undelivered outbox rows,
    /// owed work, schedules; written by whichever node owned them, whose disk may be gone) to the schedule scanner,
    /// which wakes each at its time, a bounded number at once; then asks it to look again, since schedules of those
    /// shards can now be woken here.
    pub async fn recover_shards(&self, shards: impl IntoIterator<Item = ShardId>) -> RecoveryReport {
        let mask = ShardMask::of(shards);
        let shared = self.shared();
        let mut report = RecoveryReport::default();
        if mask.is_empty() {
            return report;
        }
        let handles = shared.handles();
        if let Some(log) = &shared.config.commit_log {
            for wake in wakes_of(log.as_ref(), &mask).await {
                if !handles.iter().any(|h| h.kind() == wake.kind) {
                    report.unknown_kinds.push(wake.kind);
                    continue;
                }
                // Lowered, never raised: an entry this node already holds for an earlier time stays. A wake that
                // finds nothing to do corrects both indexes (`Arming::Woken`).
                match shared.index.lower_due(&wake.kind, &wake.key, wake.at_ms) {
                    Ok(()) => report.wakes += 1,
                    Err(e) => {
                        tracing::error!(kind = %wake.kind, key = %wake.key, error = %e, "cannot write the due index")
                    }
                }
            }
        }
        shared.due_changed.notify_one();
        let marked = match shared.index.list() {
            Ok(marked) => marked,
            Err(e) => {
                tracing::error!(error = %e, "cannot read recovery index");
                return report;
            }
        };
        for (kind, key) in marked {
            let Some(handle) = handles.iter().find(|h| h.kind() == kind) else {
                report.unknown_kinds.push(kind);
                continue;
            };
            if !handle.shard_of_encoded(&key).is_some_and(|s| mask.contains(s)) {
                continue;
            }
            match handle.recover(key).await {
                Ok(()) => report.resumed += 1,
                Err(e) => report.failed.push(e),
            }
        }
        report
    }
}

/// Attempts at reading the wake index of gained shards before giving up (the store may be failing over).
const WAKES_ATTEMPTS: u32 = 8;

/// The wake index of the shards in `mask`, retried with back-off while the store does not answer: a shard whose
/// wakes are not read has nothing else to wake its actors.
async fn wakes_of(log: &dyn CommitLog, mask: &ShardMask) -> Vec<Wake> {
    let shards: Vec<ShardId> = (0..SHARD_COUNT).map(ShardId).filter(|s| mask.contains(*s)).collect();
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=WAKES_ATTEMPTS {
        match log.wakes(shards.clone()).await {
            Ok(wakes) => return wakes,
            Err(e) if attempt == WAKES_ATTEMPTS => {
                tracing::error!(shards = shards.len(), error = %e, "cannot read the wake index of gained shards");
            }
            Err(e) => {
                tracing::warn!(error = %e, "reading the wake index of gained shards failed; will retry");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mask_holds_exactly_its_shards() {
        let mask = ShardMask::of([ShardId(0), ShardId(63), ShardId(64), ShardId(1023), ShardId(5000)]);
        for s in 0..SHARD_COUNT {
            assert_eq!(mask.contains(ShardId(s)), [0, 63, 64, 1023].contains(&s), "shard {s}");
        }
        assert!(!mask.contains(ShardId(5000)));
        assert!(ShardMask::of([]).is_empty());
        assert!(!mask.is_empty());
    }
}
