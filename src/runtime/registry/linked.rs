//! The gateway's side of a link (cluster mode, see `runtime::links`): making the subscriber's connection, finding
//! it an upstream (here or on the node serving the actor), and the driver task that keeps one while the shard moves.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::links::{Link, Source, WireConnectError, SILENCE};
use super::{Backpressure, Open, Registry};
use crate::runtime::actor::ConnectTopic;
use crate::runtime::connection::{Connect, ConnectError, Connection, ConnectionId, ConnectionItem, Refusal};
use crate::runtime::entity::{Entity, SnapshotError};
use crate::runtime::error::{ActivationError, ActivationFailure, CallError};
use crate::runtime::key::EntityKey;
use crate::runtime::remote::{static_name, Reply, Request, Transport, TransportError, WireCode, ROUTED_DEADLINE};

/// One attempt to reach the owner waits at most this long.
const ATTEMPT: Duration = Duration::from_secs(5);
/// How often a driver with a remote upstream checks that it still hears from it.
const WATCH_EVERY: Duration = Duration::from_secs(1);

/// What feeds a link now.
enum Up {
    Local(Connection),
    Remote { transport: Arc<dyn Transport>, shard: crate::runtime::ShardId, inbox: String, gen: u64 },
}

/// Why a driver left its upstream.
enum Left {
    /// The topic's channel closed here: the actor was destroyed, or the runtime is shutting down.
    Gone,
    /// Link again (the shard moved, the owner went silent), or the subscriber left.
    Relink,
}

impl<E: Entity> Registry<E> {
    /// [`Registry::connect`] in cluster mode (see the module doc of `links`): the first upstream is found before
    /// this answers, so a refusal or a missing actor is the caller's error, as for a local connection.
    pub(crate) async fn connect_linked(
        &self,
        key: &E::Key,
        request: Connect,
        existing: bool,
    ) -> Result<Connection, CallError<ConnectError>> {
        let shared = &self.inner.shared;
        let encoded = key.encode();
        // A channel nobody holds may keep the versions of an actor since destroyed on its node: start afresh.
        let _ = shared.hub.has_subscribers(E::KIND, &encoded, &request.topic);
        let sub = shared.hub.subscribe(E::KIND, &encoded, &request.topic);
        let id = shared.conns.next_id();
        let link = shared.links.insert(id.0, E::KIND, encoded, request.topic.clone(), self.shard_of(key));
        let deadline = Instant::now() + ROUTED_DEADLINE;
        let up = match self.upstream(key, &link, &request, existing, Some(deadline)).await {
            Ok(Some(up)) => up,
            // Nobody has the connection yet, so only a shutdown stops the search.
            Ok(None) => {
                shared.links.remove(link.id);
                return Err(CallError::ShuttingDown);
            }
            Err(e) => {
                shared.links.remove(link.id);
                return Err(e);
            }
        };
        let driver = self.clone().drive(key.clone(), link.clone(), request, existing, up);
        actix_rt::spawn(driver);
        let links = shared.clone();
        let ended = link.clone();
        let on_drop = Box::new(move || {
            ended.closed.store(true, std::sync::atomic::Ordering::Release);
            ended.relink.notify_one();
            links.links.remove(ended.id);
        });
        Ok(Connection::new(ConnectionId(link.id), sub, link.queue.clone(), on_drop))
    }

    /// Keeps the link fed until the subscriber leaves or no upstream can be had any more.
    async fn drive(self, key: E::Key, link: Arc<Link>, request: Connect, existing: bool, mut up: Up) {
        let shared = self.inner.shared.clone();
        loop {
            let left = match &mut up {
                Up::Local(conn) => pump(&link, conn).await,
                Up::Remote { .. } => watch(&link, &shared).await,
            };
            let relink = matches!(left, Left::Relink) && !link.is_closed() && !shared.is_shutting_down();
            let gone = matches!(left, Left::Gone);
            release(up, link.id);
            if !relink {
                if gone {
                    link.queue.close();
                }
                shared.links.remove(link.id);
                return;
            }
            match self.upstream(&key, &link, &request, existing, None).await {
                Ok(Some(next)) => up = next,
                Ok(None) => {
                    shared.links.remove(link.id);
                    return;
                }
                Err(e) => {
                    tracing::info!(kind = E::KIND, key = %link.key, topic = %link.topic, error = %e, "a connection could not follow its actor; it ends");
                    link.queue.close();
                    shared.links.remove(link.id);
                    return;
                }
            }
        }
    }

    /// Finds the link an upstream: here if this node serves the key, else on the node that does, trying until
    /// `deadline` (`None`: while the link lives; `Ok(None)` once it does not).
    async fn upstream(
        &self,
        key: &E::Key,
        link: &Link,
        request: &Connect,
        existing: bool,
        deadline: Option<Instant>,
    ) -> Result<Option<Up>, CallError<ConnectError>> {
        let shared = &self.inner.shared;
        let mut pause = Duration::from_millis(50);
        loop {
            if link.is_closed() || shared.is_shutting_down() {
                return Ok(None);
            }
            let gen = link.next_gen();
            let attempt = match shared.remote_route::<E>(key) {
                None => {
                    let open = if existing { Open::IfExists } else { Open::OrCreate };
                    let make = |reply| ConnectTopic { request: request.clone(), reply };
                    match self.call(key, open, Backpressure::Wait, make).await {
                        Ok(conn) => {
                            link.set_source(gen, Source::Local);
                            return Ok(Some(Up::Local(conn)));
                        }
                        Err(CallError::Activation(ActivationError {
                            reason: ActivationFailure::NotOwner(_), ..
                        })) => None,
                        Err(e) => Some(e),
                    }
                }
                Some((transport, shard)) => {
                    match remote_connect::<E>(&transport, shard, link, request, existing, gen).await {
                        Ok(Some(owner)) => {
                            link.set_source(gen, Source::Remote(owner));
                            let inbox = transport.inbox().unwrap_or_default();
                            return Ok(Some(Up::Remote { transport, shard, inbox, gen }));
                        }
                        Ok(None) => None,
                        Err(e) => Some(e),
                    }
                }
            };
            if let Some(e) = attempt {
                return Err(e);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                let reason = ActivationFailure::NotOwner(link.shard);
                return Err(CallError::Activation(ActivationError { kind: E::KIND, key: link.key.clone(), reason }));
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }
}

/// Asks the node serving `shard` to make the connection. `Ok(Some(owner inbox))`, `Ok(None)`: try again (nobody
/// serves it right now, or the node asked no longer does), `Err`: the answer for the caller.
async fn remote_connect<E: Entity>(
    transport: &Arc<dyn Transport>,
    shard: crate::runtime::ShardId,
    link: &Link,
    request: &Connect,
    existing: bool,
    gen: u64,
) -> Result<Option<String>, CallError<ConnectError>> {
    let key = link.key.clone();
    let storage = |message: String| CallError::Storage { kind: E::KIND, key: key.clone(), message };
    let Some(inbox) = transport.inbox() else {
        let reason = ActivationFailure::NotOwner(shard);
        return Err(CallError::Activation(ActivationError { kind: E::KIND, key: link.key.clone(), reason }));
    };
    let body = Request::Connect {
        kind: E::KIND.to_owned(),
        key: link.key.clone(),
        topic: request.topic.clone(),
        caller: request.caller.clone(),
        params: request.params.clone(),
        existing,
        inbox,
        link: link.id,
        gen,
    }
    .encode();
    let answer = match transport.request_movable(shard, body, ATTEMPT).await {
        Ok(answer) => answer,
        // A `Connect` that timed out may have made a connection there: its pushes carry this attempt, which the
        // next one supersedes, so it ends at its first push.
        Err(TransportError::NoResponders(_) | TransportError::Timeout(_) | TransportError::Moved(_)) => {
            return Ok(None)
        }
        Err(e) => return Err(storage(e.to_string())),
    };
    match serde_json::from_slice::<Reply>(&answer) {
        Ok(Reply::Connected { owner }) => Ok(Some(owner)),
        Ok(Reply::Failed { error }) => match error.code() {
            WireCode::NotOwner | WireCode::ShuttingDown => Ok(None),
            _ => Err(decode_refusal::<E>(error, &link.key)),
        },
        Ok(other) => Err(storage(format!("unexpected answer from the owning node: {other:?}"))),
        Err(e) => Err(storage(format!("the owning node's answer does not decode: {e}"))),
    }
}

fn decode_refusal<E: Entity>(error: crate::runtime::remote::WireError, key: &str) -> CallError<ConnectError> {
    match error.into_call::<WireConnectError>(E::KIND, key) {
        Some(e) => e.map_handler(|h| match h {
            WireConnectError::Refused { code, message } => {
                ConnectError::Refused(Refusal { code: static_name(&code), message })
            }
            WireConnectError::UnknownTopic { topic } => {
                ConnectError::Snapshot(SnapshotError::UnknownTopic { kind: E::KIND, topic })
            }
        }),
        None => CallError::Storage { kind: E::KIND, key: key.to_owned(), message: "the owning node let go".into() },
    }
}

/// A local upstream: its frames reach the shared hub by themselves; its events go to the link's queue.
async fn pump(link: &Link, conn: &mut Connection) -> Left {
    loop {
        tokio::select! {
            item = conn.next_item(true) => match item {
                Some(ConnectionItem::Event { event, .. }) => link.queue.push(event),
                Some(ConnectionItem::Lagged { missed }) => link.queue.push_gap(missed),
                Some(ConnectionItem::Frame(_)) => {}
                None => return Left::Gone,
            },
            _ = link.relink.notified() => return Left::Relink,
        }
    }
}

/// A remote upstream: its pushes arrive through [`crate::runtime::Runtime::serve_push`]; this waits for a reason to move on.
async fn watch(link: &Link, shared: &crate::runtime::system::Shared) -> Left {
    loop {
        tokio::select! {
            _ = link.relink.notified() => {
                return if link.gone.load(std::sync::atomic::Ordering::Acquire) { Left::Gone } else { Left::Relink };
            }
            _ = tokio::time::sleep(WATCH_EVERY) => {
                if shared.is_shutting_down() {
                    return Left::Gone;
                }
                if link.silent_for() > SILENCE {
                    tracing::info!(kind = link.kind, key = %link.key, "the node serving a connection went silent: linking again");
                    return Left::Relink;
                }
            }
        }
    }
}

/// Lets go of an upstream: a local connection is dropped (its `on_disconnect` runs), a remote one is told (if the
/// word is lost, its next push or ping is refused, which ends it).
fn release(up: Up, link: u64) {
    match up {
        Up::Local(conn) => drop(conn),
        Up::Remote { transport, shard, inbox, gen } => {
            let body = Request::Disconnect { inbox, link, gen }.encode();
            actix_rt::spawn(async move {
                let _ = transport.request(shard, body, ATTEMPT).await;
            });
        }
    }
}
