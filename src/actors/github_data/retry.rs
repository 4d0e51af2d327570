//! Automatic retry of a failed or interrupted sync, as a durable schedule of the github-data actor: `EndSync` with an
//! error (or `Entity::on_wake` finding a sync a restart cut short) schedules [`RetrySync`] in the transaction that
//! records the failure, after a delay that doubles per attempt ([`SyncRetry`]); when it fires and the failure is
//! still the latest state, the sync starts again. The schedule survives passivation and restarts, so an
//! organization whose sync failed at night is mirrored again without anyone asking. Any sync started meanwhile
//! cancels the pending retry, and after the last attempt the status stays `error` until someone syncs.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::schema;
use super::sync::start_sync;
use super::GitHubData;
use crate::actors::{DomainError, DomainResult};
use crate::runtime::{EntityCtx, Mutation, Scheduled, Tx};

/// When failed syncs are retried; a runtime service (`Runtime::provide(Arc::new(SyncRetry { .. }))`), else the
/// default: after 30 s, then 1, 2, 4 and 8 minutes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncRetry {
    /// Delay before the first retry; each next one waits twice as long (at most 30 minutes).
    pub first: Duration,
    /// Retries after one failed sync started by someone (or cut by a restart); 0 turns retrying off.
    pub max_attempts: u32,
}

impl Default for SyncRetry {
    fn default() -> Self {
        SyncRetry { first: Duration::from_secs(30), max_attempts: 5 }
    }
}

impl SyncRetry {
    /// The delay before retry number `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(16);
        self.first.saturating_mul(1 << doublings).min(Duration::from_secs(30 * 60))
    }
}

/// Starts sync `generation`'s retry number `attempt`, if that sync's failure is still the latest state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrySync {
    pub generation: i32,
    pub attempt: u32,
}

impl Mutation for RetrySync {
    type Entity = GitHubData;
    /// The attempt to start, if the failure still stands.
    type Output = Option<u32>;
    type Error = DomainError;
    fn apply(self, _: &GitHubData, tx: &mut Tx<'_>) -> DomainResult<Option<u32>> {
        let stands = schema::meta(tx.conn())?.is_some_and(|m| m.status == "error" && m.generation == self.generation);
        Ok(stands.then_some(self.attempt))
    }
}

impl Scheduled for RetrySync {
    const NAME: &'static str = "github_data.retry_sync";

    fn committed(attempt: Option<u32>, g: &mut GitHubData, ctx: &mut EntityCtx<'_, GitHubData>) {
        let Some(attempt) = attempt else { return };
        match start_sync(g, ctx, None, "retry") {
            Ok(_) => g.retry_attempt = attempt,
            // Another sync runs (it decides what follows), or no client is configured any more.
            Err(e) => tracing::warn!(org = %g.org, attempt, error = %e, "GitHub sync retry did not start"),
        }
    }
}

/// In the transaction recording sync `generation`'s failure: schedules retry number `attempt` (replacing any
/// pending one), unless the attempts are used up.
pub(super) fn schedule_retry(tx: &mut Tx<'_>, org: &str, generation: i32, attempt: u32) -> DomainResult<()> {
    let policy = tx.service::<SyncRetry>().map(|p| (*p).clone()).unwrap_or_default();
    tx.cancel_schedules::<RetrySync>()?;
    if attempt > policy.max_attempts {
        tracing::warn!(org, generation, "GitHub sync failed; retries used up, it stays failed until someone syncs");
        return Ok(());
    }
    tx.schedule_after(policy.delay(attempt), &RetrySync { generation, attempt })?;
    Ok(())
}

crate::actors::remote::remote_messages! {
    super::GitHubData;
    mutations: RetrySync;
}

#[cfg(test)]
mod tests {
    use super::SyncRetry;
    use std::time::Duration;

    #[test]
    fn retry_delays_double_and_are_capped() {
        let p = SyncRetry::default();
        assert_eq!(p.delay(1), Duration::from_secs(30));
        assert_eq!(p.delay(2), Duration::from_secs(60));
        assert_eq!(p.delay(5), Duration::from_secs(480));
        assert_eq!(p.delay(40), Duration::from_secs(1800));
    }
}
