//! The Registry's connection paths: a subscriber becomes a connection of `key`'s actor (`connect`, or `subscribe`
//! for one inside the process), the actor's connections are listed without a message, and a dropped connection's
//! `on_disconnect` is sent to the actor, activating it if it passivated since.

use super::super::actor::{ConnectTopic, Disconnected};
use super::super::connection::{Connect, ConnectError, Connection, ConnectionId, ConnectionInfo};
use super::super::entity::Entity;
use super::super::error::CallError;
use super::super::key::EntityKey;
use super::{Backpressure, Open, Registry};

impl<E: Entity> Registry<E> {
    /// Makes the caller a connection of `request.topic` of `key` (activating or creating the actor): the actor's
    /// `before_connect` accepts or refuses it, then `on_connect` runs. The connection's first item is the topic's
    /// current snapshot; it ends when the returned handle is dropped.
    pub async fn connect(&self, key: &E::Key, request: Connect) -> Result<Connection, CallError<ConnectError>> {
        if self.links_enabled() {
            return self.connect_linked(key, request, false).await;
        }
        self.call(key, Open::OrCreate, Backpressure::Wait, |reply| ConnectTopic { request, reply }).await
    }

    /// [`Registry::connect`] on an existing key only (`CallError::NotFound` otherwise, nothing created).
    pub async fn connect_existing(
        &self,
        key: &E::Key,
        request: Connect,
    ) -> Result<Connection, CallError<ConnectError>> {
        if self.links_enabled() {
            return self.connect_linked(key, request, true).await;
        }
        self.call(key, Open::IfExists, Backpressure::Wait, |reply| ConnectTopic { request, reply }).await
    }

    /// Cluster mode with a transport that carries pushes: every connection is a link (`runtime::links`), so it
    /// reaches an actor another node serves and follows the actor when its shard moves.
    fn links_enabled(&self) -> bool {
        self.inner.shared.config.transport.as_ref().is_some_and(|t| t.inbox().is_some())
    }

    /// Subscribes to `topic` of `key` as a subscriber inside the process (a connection with no caller and no
    /// params): the first `next()` yields the current snapshot, then one per change.
    pub async fn subscribe(&self, key: &E::Key, topic: &str) -> Result<Connection, CallError<ConnectError>> {
        self.connect(key, Connect::new(topic)).await
    }

    /// [`Registry::subscribe`] on an existing key only (`CallError::NotFound` otherwise, nothing created).
    pub async fn subscribe_existing(&self, key: &E::Key, topic: &str) -> Result<Connection, CallError<ConnectError>> {
        self.connect_existing(key, Connect::new(topic)).await
    }

    /// The connections of `key`'s actor, oldest first, read from the runtime's table (no message to the actor; an
    /// actor that passivated keeps its connections).
    pub fn connections(&self, key: &E::Key) -> Vec<ConnectionInfo> {
        self.inner.shared.conns.list(E::KIND, &key.encode())
    }

    /// A connection's handle was dropped: it leaves the table at once, and its actor runs `on_disconnect` (woken for
    /// it if it passivated; not if its database is gone or the runtime is shutting down).
    pub(crate) fn connection_ended(&self, key: E::Key, id: ConnectionId) {
        let shared = &self.inner.shared;
        let Some(info) = shared.conns.remove(E::KIND, &key.encode(), id) else { return };
        if shared.is_shutting_down() || !shared.conns.has_disconnect_hook(E::KIND) {
            return;
        }
        let registry = self.clone();
        shared.end_connection(Box::new(move || {
            Box::pin(async move {
                let call =
                    registry.call(&key, Open::IfExists, Backpressure::Wait, |reply| Disconnected { info, reply });
                if let Err(e) = call.await {
                    tracing::debug!(kind = E::KIND, key = %key.encode(), error = %e, "on_disconnect did not run");
                }
            })
        }));
    }
}
