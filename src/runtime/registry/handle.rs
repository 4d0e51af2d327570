//! The type-erased view of a kind's registry ([`KindHandle`]) that runtime-wide work goes through: shutdown,
//! eviction across kinds, outbox recovery, schedule wake-ups, metrics, the inspector.

use tokio::sync::oneshot;

use super::super::actor::{ConnectTopic, Inspect, Probe, Probed};
use super::super::connection::{Connect, ConnectError, Connection};
use super::super::entity::{Entity, KindConfig};
use super::super::error::{ActivationError, CallError};
use super::super::inspect::{InspectError, LiveActor};
use super::super::key::EntityKey;
use super::super::placement::ShardId;
use super::super::shards::ShardMask;
use super::super::topic::lock;
use super::{Backpressure, KindStats, Open, Registry, ShardSweep};

/// How long an inspection of one actor waits for room in a full mailbox (then `CallError::Timeout`).
const INSPECT_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Type-erased view of a registry, for runtime-wide work (shutdown, eviction, recovery, metrics).
pub(crate) trait KindHandle: Send + Sync {
    fn kind(&self) -> &'static str;
    fn live(&self) -> usize;
    fn shutdown_all(&self) -> Vec<oneshot::Receiver<()>>;
    fn oldest_idle(&self, now_ms: u64, park_pending: bool) -> Option<u64>;
    fn evict_oldest(&self, now_ms: u64, park_pending: bool) -> futures_util::future::BoxFuture<'static, bool>;
    fn recover(&self, encoded_key: String) -> futures_util::future::BoxFuture<'static, Result<(), ActivationError>>;
    fn stats(&self) -> &KindStats;
    fn in_flight_total(&self) -> u64;
    /// Whether the actor of this encoded key is live (an undecodable key is not).
    fn is_live_encoded(&self, encoded_key: &str) -> bool;
    /// Activates an existing actor (never creates one) and asks it to fire its due schedules; `false`: no such actor.
    fn wake_schedules(
        &self,
        encoded_key: String,
    ) -> futures_util::future::BoxFuture<'static, Result<bool, ActivationError>>;
    fn config(&self) -> &KindConfig;
    /// The live actors, unordered (the inspector).
    fn live_actors(&self) -> Vec<LiveActor>;
    /// The actor of this encoded key if it is live.
    fn live_actor(&self, encoded_key: &str) -> Option<LiveActor>;
    /// Cluster mode: asks the live actors of `mask`'s shards to stop (see `Registry::stop_in`).
    fn stop_in(&self, mask: &ShardMask) -> ShardSweep;
    /// Makes a connection of the actor of this encoded key on this node's path only (serving another node's
    /// subscriber: never linked or forwarded again).
    fn connect_here(
        &self,
        encoded_key: String,
        request: Connect,
        existing: bool,
    ) -> futures_util::future::BoxFuture<'static, Result<Connection, CallError<ConnectError>>>;
    /// The shard of an encoded key (`None`: it does not decode).
    fn shard_of_encoded(&self, encoded_key: &str) -> Option<ShardId>;
    /// Whether the encoded key names an actor (live, or a database on disk), activating nothing.
    fn exists_encoded(&self, encoded_key: &str) -> Result<bool, CallError<InspectError>>;
    /// Asks the actor of this encoded key for `probe`. `live_only`: only a live actor is asked (`None` otherwise,
    /// nothing activated). Else an existing actor is activated and a key naming none is `CallError::NotFound`.
    fn inspect(
        &self,
        encoded_key: String,
        probe: Probe,
        live_only: bool,
    ) -> futures_util::future::BoxFuture<'static, Option<Result<Probed, CallError<InspectError>>>>;
}

impl<E: Entity> KindHandle for Registry<E> {
    fn kind(&self) -> &'static str {
        E::KIND
    }
    fn live(&self) -> usize {
        self.live_count()
    }
    fn shutdown_all(&self) -> Vec<oneshot::Receiver<()>> {
        Registry::shutdown_all(self)
    }
    fn oldest_idle(&self, now_ms: u64, park_pending: bool) -> Option<u64> {
        Registry::oldest_idle(self, now_ms, park_pending)
    }
    fn evict_oldest(&self, now_ms: u64, park_pending: bool) -> futures_util::future::BoxFuture<'static, bool> {
        let this = self.clone();
        Box::pin(async move { this.evict_oldest(now_ms, park_pending).await })
    }
    fn recover(&self, encoded_key: String) -> futures_util::future::BoxFuture<'static, Result<(), ActivationError>> {
        let this = self.clone();
        Box::pin(async move {
            let key = E::Key::decode(&encoded_key).map_err(|e| ActivationError {
                kind: E::KIND,
                key: encoded_key.clone(),
                reason: e.into(),
            })?;
            // Never creates: an entry whose file is gone (a destroy deleted it just before a crash) names nothing.
            match this.get_existing(&key).await? {
                Some(target) => target.addr.do_send(super::super::actor::Recovered),
                None => {
                    if let Err(e) = this.inner.shared.index.unmark(E::KIND, &encoded_key) {
                        tracing::warn!(kind = E::KIND, key = %encoded_key, error = %e, "could not clear a stale recovery marker");
                    }
                }
            }
            Ok(())
        })
    }
    fn stats(&self) -> &KindStats {
        &self.inner.stats
    }
    fn in_flight_total(&self) -> u64 {
        Registry::in_flight_total(self)
    }
    fn is_live_encoded(&self, encoded_key: &str) -> bool {
        E::Key::decode(encoded_key).is_ok_and(|k| self.is_live(&k))
    }
    fn wake_schedules(
        &self,
        encoded_key: String,
    ) -> futures_util::future::BoxFuture<'static, Result<bool, ActivationError>> {
        let this = self.clone();
        Box::pin(async move {
            // A key that no longer decodes names no actor: its index entry is dropped like a missing file's.
            let Ok(key) = E::Key::decode(&encoded_key) else { return Ok(false) };
            match this.get_existing(&key).await? {
                Some(target) => {
                    // Answered once what was due has fired (an actor that stopped meanwhile keeps its entry, which
                    // the scanner finds again).
                    let _ = target.addr.send(super::super::actor::WakeSchedules).await;
                    Ok(true)
                }
                None => Ok(false),
            }
        })
    }
    fn config(&self) -> &KindConfig {
        &self.inner.config
    }
    fn live_actors(&self) -> Vec<LiveActor> {
        let mut out = Vec::new();
        for shard in &self.inner.shards {
            for (key, slot) in lock(shard).iter() {
                if slot.cell.initialized() && !slot.is_retired() {
                    out.push(LiveActor { key: key.encode(), in_flight: slot.in_flight() });
                }
            }
        }
        out
    }
    fn live_actor(&self, encoded_key: &str) -> Option<LiveActor> {
        let key = E::Key::decode(encoded_key).ok()?;
        let slot = lock(self.shard(&key)).get(&key).cloned()?;
        (slot.cell.initialized() && !slot.is_retired())
            .then(|| LiveActor { key: encoded_key.to_owned(), in_flight: slot.in_flight() })
    }
    fn stop_in(&self, mask: &ShardMask) -> ShardSweep {
        Registry::stop_in(self, mask)
    }
    fn connect_here(
        &self,
        encoded_key: String,
        request: Connect,
        existing: bool,
    ) -> futures_util::future::BoxFuture<'static, Result<Connection, CallError<ConnectError>>> {
        let this = self.clone();
        Box::pin(async move {
            let key = E::Key::decode(&encoded_key).map_err(|e| {
                CallError::Activation(ActivationError { kind: E::KIND, key: encoded_key.clone(), reason: e.into() })
            })?;
            let open = if existing { Open::IfExists } else { Open::OrCreate };
            this.call(&key, open, Backpressure::Wait, |reply| ConnectTopic { request, reply }).await
        })
    }
    fn shard_of_encoded(&self, encoded_key: &str) -> Option<ShardId> {
        E::Key::decode(encoded_key).ok().map(|k| self.shard_of(&k))
    }
    fn exists_encoded(&self, encoded_key: &str) -> Result<bool, CallError<InspectError>> {
        let key =
            E::Key::decode(encoded_key).map_err(|e| CallError::Handler(InspectError::InvalidKey(e.to_string())))?;
        Ok(self.exists(&key)?)
    }
    fn inspect(
        &self,
        encoded_key: String,
        probe: Probe,
        live_only: bool,
    ) -> futures_util::future::BoxFuture<'static, Option<Result<Probed, CallError<InspectError>>>> {
        let this = self.clone();
        Box::pin(async move {
            let key = match E::Key::decode(&encoded_key) {
                Ok(key) => key,
                Err(e) => return Some(Err(CallError::Handler(InspectError::InvalidKey(e.to_string())))),
            };
            if live_only {
                this.call_if_live(&key, |reply| Inspect { probe, reply }).await
            } else {
                let wait = Backpressure::WaitUpTo(INSPECT_WAIT);
                Some(this.call(&key, Open::IfExists, wait, |reply| Inspect { probe, reply }).await)
            }
        })
    }
}
