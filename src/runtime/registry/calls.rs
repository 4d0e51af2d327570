//! The typed call paths: reads, mutations and commands, with or without creating the actor (`*_existing`), and the
//! envelope outbox deliveries use. Each is one `Registry::call` (cluster mode: after the routing check, see
//! `routed.rs`).

use actix::prelude::*;
use tokio::sync::oneshot;

use super::super::actor::{EntityActor, Exec, Mutate, Query};
use super::super::entity::{Command, Entity, Mutation, Read};
use super::super::error::CallError;
use super::super::remote::CallClass;
use super::{Backpressure, Open, Registry};

impl<E: Entity> Registry<E> {
    /// Runs a read-only query on `key`'s actor.
    pub async fn read<M: Read<Entity = E>>(&self, key: &E::Key, msg: M) -> Result<M::Output, CallError<M::Error>> {
        self.read_with(key, msg, Backpressure::Wait).await
    }

    pub async fn read_with<M: Read<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
        bp: Backpressure,
    ) -> Result<M::Output, CallError<M::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<M, M::Output, M::Error>(key, &msg, false, CallClass::Read) {
                return leg.run().await;
            }
        }
        self.call(key, Open::OrCreate, bp, |reply| Query { msg, reply }).await
    }

    /// Applies a mutation on `key`'s actor; the reply arrives after its transaction committed.
    pub async fn mutate<M: Mutation<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
    ) -> Result<M::Output, CallError<M::Error>> {
        self.mutate_with(key, msg, Backpressure::Wait).await
    }

    pub async fn mutate_with<M: Mutation<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
        bp: Backpressure,
    ) -> Result<M::Output, CallError<M::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<M, M::Output, M::Error>(key, &msg, false, CallClass::Mutation) {
                return leg.run().await;
            }
        }
        self.call(key, Open::OrCreate, bp, |reply| Mutate { msg, reply }).await
    }

    /// Runs a command in `key`'s actor context.
    pub async fn exec<C: Command<Entity = E>>(&self, key: &E::Key, cmd: C) -> Result<C::Output, CallError<C::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<C, C::Output, C::Error>(key, &cmd, false, CallClass::Command) {
                return leg.run().await;
            }
        }
        self.call(key, Open::OrCreate, Backpressure::Wait, |reply| Exec { cmd, reply }).await
    }

    /// [`Registry::read`] on an existing key only (see [`Registry::get_existing`]): `CallError::NotFound`, and
    /// nothing created, when the key has neither a live actor nor a database.
    pub async fn read_existing<M: Read<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
    ) -> Result<M::Output, CallError<M::Error>> {
        self.read_existing_with(key, msg, Backpressure::Wait).await
    }

    pub async fn read_existing_with<M: Read<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
        bp: Backpressure,
    ) -> Result<M::Output, CallError<M::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<M, M::Output, M::Error>(key, &msg, true, CallClass::Read) {
                return leg.run().await;
            }
        }
        self.call(key, Open::IfExists, bp, |reply| Query { msg, reply }).await
    }

    /// [`Registry::mutate`] on an existing key only (`CallError::NotFound` otherwise, nothing created).
    pub async fn mutate_existing<M: Mutation<Entity = E>>(
        &self,
        key: &E::Key,
        msg: M,
    ) -> Result<M::Output, CallError<M::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<M, M::Output, M::Error>(key, &msg, true, CallClass::Mutation) {
                return leg.run().await;
            }
        }
        self.call(key, Open::IfExists, Backpressure::Wait, |reply| Mutate { msg, reply }).await
    }

    /// [`Registry::exec`] on an existing key only (`CallError::NotFound` otherwise, nothing created).
    pub async fn exec_existing<C: Command<Entity = E>>(
        &self,
        key: &E::Key,
        cmd: C,
    ) -> Result<C::Output, CallError<C::Error>> {
        if self.inner.shared.config.transport.is_some() {
            if let Some(leg) = self.remote_leg::<C, C::Output, C::Error>(key, &cmd, true, CallClass::Command) {
                return leg.run().await;
            }
        }
        self.call(key, Open::IfExists, Backpressure::Wait, |reply| Exec { cmd, reply }).await
    }

    pub(crate) async fn deliver_envelope<T, Err, Msg>(
        &self,
        key: &E::Key,
        make: impl FnOnce(oneshot::Sender<Result<T, CallError<Err>>>) -> Msg,
    ) -> Result<T, CallError<Err>>
    where
        Msg: Message<Result = ()> + Send + 'static,
        EntityActor<E>: Handler<Msg>,
        <EntityActor<E> as Actor>::Context: actix::dev::ToEnvelope<EntityActor<E>, Msg>,
    {
        self.call(key, Open::OrCreate, Backpressure::Wait, make).await
    }
}
