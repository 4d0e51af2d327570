//! The type-erased view of a kind's registry ([`KindHandle`]) that runtime-wide work goes through: shutdown,
//! eviction across kinds, outbox recovery, schedule wake-ups, metrics.

use tokio::sync::oneshot;

use super::super::entity::Entity;
use super::super::error::ActivationError;
use super::super::key::EntityKey;
use super::{KindStats, Registry};

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
}
