//! Routed calls (cluster mode): a [`Remote`] mutation or read that runs wherever its actor's shard is served — here
//! through the usual path, on another node through the transport. Without a transport (single-node mode) they are
//! the plain calls.

use std::time::Instant;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::entity::{Entity, Mutation, Read};
use super::super::error::{ActivationError, ActivationFailure, CallError};
use super::super::key::EntityKey;
use super::super::remote::{call_remote, Remote, ROUTED_DEADLINE};
use super::Registry;

impl<E: Entity> Registry<E> {
    /// [`Registry::mutate`] on whichever node serves `key`'s shard (the kind registers `M` with
    /// `Accepts::remote_mutation`). A call that finds the shard moving keeps trying for a while (`ROUTED_DEADLINE`).
    pub async fn mutate_routed<M>(&self, key: &E::Key, msg: M) -> Result<M::Output, CallError<M::Error>>
    where
        M: Mutation<Entity = E> + Remote,
        M::Output: Serialize + DeserializeOwned,
        M::Error: Serialize + DeserializeOwned,
    {
        let deadline = Instant::now() + ROUTED_DEADLINE;
        let payload = self.routed_payload(key, &msg)?;
        let Some(payload) = payload else { return self.mutate(key, msg).await };
        match self.inner.shared.remote_route::<E>(key) {
            None => match self.mutate(key, msg).await {
                // The shard moved away between the check and the activation: go where it went.
                Err(e) if is_not_owner(&e) => {
                    self.remote_leg::<M::Output, M::Error>(key, M::NAME, payload, deadline).await
                }
                other => other,
            },
            Some(_) => self.remote_leg::<M::Output, M::Error>(key, M::NAME, payload, deadline).await,
        }
    }

    /// [`Registry::read`] on whichever node serves `key`'s shard (registered with `Accepts::remote_read`).
    pub async fn read_routed<M>(&self, key: &E::Key, msg: M) -> Result<M::Output, CallError<M::Error>>
    where
        M: Read<Entity = E> + Remote,
        M::Output: Serialize + DeserializeOwned,
        M::Error: Serialize + DeserializeOwned,
    {
        let deadline = Instant::now() + ROUTED_DEADLINE;
        let payload = self.routed_payload(key, &msg)?;
        let Some(payload) = payload else { return self.read(key, msg).await };
        match self.inner.shared.remote_route::<E>(key) {
            None => match self.read(key, msg).await {
                Err(e) if is_not_owner(&e) => {
                    self.remote_leg::<M::Output, M::Error>(key, M::NAME, payload, deadline).await
                }
                other => other,
            },
            Some(_) => self.remote_leg::<M::Output, M::Error>(key, M::NAME, payload, deadline).await,
        }
    }

    /// The message's JSON when it may have to travel (a transport is configured), `None` otherwise.
    fn routed_payload<M: Serialize, Err>(&self, key: &E::Key, msg: &M) -> Result<Option<String>, CallError<Err>> {
        if self.inner.shared.config.transport.is_none() {
            return Ok(None);
        }
        serde_json::to_string(msg).map(Some).map_err(|e| CallError::Storage {
            kind: E::KIND,
            key: key.encode(),
            message: format!("the message does not encode: {e}"),
        })
    }

    async fn remote_leg<T: DeserializeOwned, Err: DeserializeOwned>(
        &self,
        key: &E::Key,
        name: &'static str,
        payload: String,
        deadline: Instant,
    ) -> Result<T, CallError<Err>> {
        let encoded = key.encode();
        let Some(transport) = self.inner.shared.config.transport.clone() else {
            let reason = ActivationFailure::NotOwner(self.shard_of(key));
            return Err(CallError::Activation(ActivationError { kind: E::KIND, key: encoded, reason }));
        };
        let shard = self.shard_of(key);
        let output = call_remote::<Err>(transport.as_ref(), shard, E::KIND, &encoded, name, payload, deadline).await?;
        serde_json::from_str(&output).map_err(|e| CallError::Storage {
            kind: E::KIND,
            key: encoded,
            message: format!("the owning node's answer does not decode: {e}"),
        })
    }
}

fn is_not_owner<Err>(e: &CallError<Err>) -> bool {
    matches!(e, CallError::Activation(ActivationError { reason: ActivationFailure::NotOwner(_), .. }))
}
