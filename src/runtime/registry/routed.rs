//! Routing (cluster mode): a call for an actor whose shard another node serves goes there through the transport,
//! when its message is registered as remote (`Accepts::remote_mutation` / `remote_read` / `remote_command`); otherwise it answers
//! `not_owner` as before. Without a transport (single-node mode) nothing here runs: one `Option` check per call.

use std::sync::Arc;
use std::time::Instant;

use super::super::entity::Entity;
use super::super::error::CallError;
use super::super::key::EntityKey;
use super::super::placement::ShardId;
use super::super::remote::{call_remote, new_request_id, CallClass, CallTarget, Codec, Transport, ROUTED_DEADLINE};
use super::Registry;

/// A call on its way to another node: everything owned (the message already encoded), so the caller's future holds
/// no reference to the message across the wait.
pub(super) struct RemoteLeg<M, O, Er> {
    transport: Arc<dyn Transport>,
    codec: Arc<Codec<M, O, Er>>,
    shard: ShardId,
    kind: &'static str,
    key: String,
    existing: bool,
    class: CallClass,
    /// A mutation's request id, made once per call: every attempt carries it (see `remote::CallClass`).
    id: Option<String>,
    payload: Result<String, String>,
}

impl<E: Entity> Registry<E> {
    /// The call's remote leg, if it has one: `None` when the key's shard is served here, or when the message cannot
    /// travel — the local path then runs (and answers `not_owner` if need be).
    pub(super) fn remote_leg<M: 'static, O: 'static, Er: 'static>(
        &self,
        key: &E::Key,
        msg: &M,
        existing: bool,
        class: CallClass,
    ) -> Option<RemoteLeg<M, O, Er>> {
        let shared = &self.inner.shared;
        let (transport, shard) = shared.remote_route::<E>(key)?;
        let codec = shared.codec::<M, O, Er>()?;
        let mut payload = (codec.encode)(msg).map_err(|e| format!("the message does not encode: {e}"));
        let mut id = None;
        if class == CallClass::Mutation {
            match new_request_id() {
                Ok(made) => id = Some(made),
                Err(e) => payload = Err(e),
            }
        }
        Some(RemoteLeg { transport, codec, shard, kind: E::KIND, key: key.encode(), existing, class, id, payload })
    }
}

impl<E: Entity> Registry<E> {
    /// A mutation on this node's path only, never forwarded (serving another node's request: forwarding again
    /// could send it in circles while the shard moves).
    pub(crate) async fn mutate_here<M: super::super::entity::Mutation<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
        existing: bool,
    ) -> Result<M::Output, CallError<M::Error>> {
        let open = if existing { super::Open::IfExists } else { super::Open::OrCreate };
        self.call(key, open, super::Backpressure::Wait, |reply| super::super::actor::Mutate { msg, reply }).await
    }

    /// A command on this node's path only (see [`Registry::mutate_here`]).
    pub(crate) async fn exec_here<C: super::super::entity::Command<Entity = E>>(
        &self,
        key: &E::Key,
        cmd: C,
        existing: bool,
    ) -> Result<C::Output, CallError<C::Error>> {
        let open = if existing { super::Open::IfExists } else { super::Open::OrCreate };
        self.call(key, open, super::Backpressure::Wait, |reply| super::super::actor::Exec { cmd, reply }).await
    }

    /// A read on this node's path only (see [`Registry::mutate_here`]).
    pub(crate) async fn read_here<M: super::super::entity::Read<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
        existing: bool,
    ) -> Result<M::Output, CallError<M::Error>> {
        let open = if existing { super::Open::IfExists } else { super::Open::OrCreate };
        self.call(key, open, super::Backpressure::Wait, |reply| super::super::actor::Query { msg, reply }).await
    }
}

impl<M, O, Er> RemoteLeg<M, O, Er> {
    pub(super) async fn run(self) -> Result<O, CallError<Er>> {
        let payload =
            self.payload.map_err(|message| CallError::Storage { kind: self.kind, key: self.key.clone(), message })?;
        let deadline = Instant::now() + ROUTED_DEADLINE;
        let (shard, kind, key, existing, class) = (self.shard, self.kind, self.key.as_str(), self.existing, self.class);
        let target = CallTarget { shard, kind, key, existing, deadline, class, id: self.id };
        call_remote(self.transport.as_ref(), &self.codec, target, payload).await
    }
}
