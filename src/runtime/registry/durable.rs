//! Cluster mode at activation: the actor's file made to match its commit log before it is opened.

use std::sync::Arc;

use super::super::entity::Entity;
use super::super::error::ActivationFailure;
use super::{Open, Registry};

impl<E: Entity> Registry<E> {
    /// Cluster mode: makes `path` hold the actor as its commit log has it, before it is opened. A file closed cleanly
    /// at the log's head is kept (the common case); any other is rebuilt from the log, or removed when the log has
    /// no such actor (`None` then for `Open::IfExists`: the key names nothing).
    pub(super) async fn prepare_durable(
        &self,
        log: &Arc<dyn super::super::durable::CommitLog>,
        key: &E::Key,
        encoded: &str,
        path: &std::path::Path,
        open: Open,
    ) -> Result<Option<super::super::durable::Durable>, ActivationFailure> {
        use super::super::durable::{self, LogError, LogKey};
        let shard = self.shard_of(key);
        let log_failure = |e: LogError| match e {
            LogError::Fenced(shard) => ActivationFailure::NotOwner(shard),
            LogError::Unavailable(why) => ActivationFailure::StoreUnavailable(why),
            corrupt @ LogError::Corrupt(_) => ActivationFailure::Load(corrupt.to_string()),
        };
        self.inner.shared.wait_closed(path).await;
        let actor = LogKey { kind: E::KIND, key: encoded.to_owned(), shard };
        let head = log.head(&actor).await.map_err(log_failure)?;
        let history = match head {
            Some(h) if durable::read_marker(path) == Some(h.txid) && path.exists() => None,
            Some(_) => Some(log.history(&actor).await.map_err(log_failure)?.ok_or_else(|| {
                ActivationFailure::Load("the commit log lost the actor while it was being restored".into())
            })?),
            None if open == Open::IfExists => {
                let p = path.to_owned();
                let _ = actix_rt::task::spawn_blocking(move || super::super::db::remove_actor_files(&p)).await;
                return Ok(None);
            }
            None => None,
        };
        let p = path.to_owned();
        let prepared = actix_rt::task::spawn_blocking(move || -> std::io::Result<()> {
            match (head, history) {
                (Some(_), Some(history)) => durable::restore(&p, &history)?,
                // Nothing durable: whatever is here was never acknowledged (or belongs to a destroyed actor).
                (None, _) => super::super::db::remove_actor_files(&p)?,
                (Some(_), None) => {}
            }
            // From now on the file may change without its commits being shipped: untrusted until closed cleanly.
            durable::clear_marker(&p)
        })
        .await
        .map_err(|e| ActivationFailure::Load(format!("preparing the actor's file: {e}")))?;
        prepared
            .map_err(|e| ActivationFailure::Load(format!("preparing the actor's file from its commit log: {e}")))?;
        Ok(Some(durable::Durable::new(log.clone(), actor, head)))
    }
}
