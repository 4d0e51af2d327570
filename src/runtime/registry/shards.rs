//! One kind's part of the shard-level operations of cluster mode (`runtime/shards.rs`): stopping the live actors of
//! a set of shards, and the router check an activation repeats once its slot is in the map.

use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::oneshot;

use super::super::actor::Shutdown;
use super::super::entity::Entity;
use super::super::error::{ActivationError, ActivationFailure};
use super::super::key::EntityKey;
use super::super::placement::Route;
use super::super::shards::ShardMask;
use super::super::topic::lock;
use super::Registry;

/// What one sweep over a kind found in the shards being stopped.
#[derive(Default)]
pub(crate) struct ShardSweep {
    /// One per live actor asked to stop: resolves once its database is closed.
    pub(crate) waits: Vec<oneshot::Receiver<()>>,
    /// Keys of those shards whose activation is under way (it began before the shard stopped being served): their
    /// actor is about to be live, and the stop must wait for it.
    pub(crate) activating: usize,
}

impl<E: Entity> Registry<E> {
    /// Asks every live actor placed in `mask`'s shards to stop as at shutdown (no new calls; the calls in flight
    /// finish, pending writes commit, `on_sleep`, the database closes).
    pub(crate) fn stop_in(&self, mask: &ShardMask) -> ShardSweep {
        let mut sweep = ShardSweep::default();
        let mut addrs = Vec::new();
        for map in &self.inner.shards {
            for (key, slot) in lock(map).iter() {
                if !mask.contains(self.shard_of(key)) {
                    continue;
                }
                match slot.cell.get() {
                    Some(addr) if addr.connected() => addrs.push(addr.clone()),
                    // Its actor died without leaving the map (its arbiter stopped): nothing runs there.
                    Some(_) => {}
                    None if slot.activating.load(Ordering::SeqCst) => sweep.activating += 1,
                    // Nobody is activating it (a caller gave up mid-activation): no actor will appear.
                    None => {}
                }
            }
        }
        // Sent outside the map's lock: an actor that stops removes its own slot under that lock.
        for addr in addrs {
            let (done, wait) = oneshot::channel();
            addr.do_send(Shutdown { done });
            sweep.waits.push(wait);
        }
        sweep
    }

    /// Cluster mode: refuses `key` when this node does not serve its shard (right now). `live_slot` asks before it
    /// looks for the key's file; `init_slot` asks again once the key's slot is in the map, which closes the window
    /// in which a shard stops being served between the first check and the slot's insertion: a stop that sweeps
    /// after the insertion waits for that activation, and one that swept before it is seen by this second check.
    pub(crate) fn refuse_unserved(&self, key: &E::Key) -> Result<(), ActivationError> {
        let Some(router) = &self.inner.shared.config.router else { return Ok(()) };
        let shard = self.shard_of(key);
        if router.route(shard) == Route::Local {
            return Ok(());
        }
        self.inner.stats.activation_failures.fetch_add(1, Ordering::Relaxed);
        Err(ActivationError { kind: E::KIND, key: key.encode(), reason: ActivationFailure::NotOwner(shard) })
    }
}

/// Marks a slot's activation under way (`Slot::activating`) until it fails or its future is dropped.
pub(super) struct Activating<'a>(Option<&'a AtomicBool>);

impl<'a> Activating<'a> {
    /// Marked before the router is asked again, so a stop that sweeps after that question sees the activation.
    pub(super) fn start(flag: &'a AtomicBool) -> Self {
        flag.store(true, Ordering::SeqCst);
        Activating(Some(flag))
    }

    /// The actor is live: the mark stays (the slot's cell is set in the same poll, with no await in between).
    pub(super) fn succeeded(mut self) {
        self.0 = None;
    }
}

impl Drop for Activating<'_> {
    fn drop(&mut self) {
        if let Some(flag) = self.0 {
            flag.store(false, Ordering::SeqCst);
        }
    }
}
