//! Calls to actors another node serves (cluster mode): the [`Transport`] seam, the messages that may cross it
//! ([`Remote`]: a stable name and serde, as outbox deliveries already have), the wire format, and the serving side
//! ([`super::Runtime::serve_remote`]). The runtime knows no transport: `cluster::transport` implements it on NATS.
//!
//! A request is addressed to a shard, not a node: whichever node serves the shard answers. The serving node runs
//! it on its local path only (never forwarding again), so a request that reaches a node that just lost the shard
//! answers `not_owner` and the caller tries again until its deadline — that is how a call waits out a failover.
//!
//! A mutation carries a request id, the same on every attempt, and its owner runs it at most once per id (the record
//! commits with it: see `idempotency::RemoteOnce`), so an attempt whose answer was lost is asked again rather than
//! reported as a timeout; see [`CallClass`] for what each kind of call does then.

use std::fmt;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::error::{ActivationError, ActivationFailure, CallError};
use super::outbox::{DeliveryOutcome, Source};
use super::placement::ShardId;

/// How long a routed call keeps trying (no node serves the shard yet, or the one asked just lost it).
pub const ROUTED_DEADLINE: Duration = Duration::from_secs(15);

/// Carries requests to the node serving a shard and brings the answer back.
pub trait Transport: Send + Sync + fmt::Debug + 'static {
    /// Sends `body` to whichever node serves `shard`, waiting at most `timeout` for one to answer.
    fn request(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>>;

    /// [`Transport::request`] for a request that is safe to send again (a read, a mutation with its request id, an
    /// outbox delivery): it may give up early with [`TransportError::Moved`] when another node announces it serves
    /// the shard, rather than wait out a previous owner that may never answer.
    fn request_movable(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        self.request(shard, body, timeout)
    }

    /// This node's address for pushes: the frames and events of the actors other nodes serve, for this node's
    /// connections to them (`runtime::links`). `None`: the transport carries no pushes, and a connection to another
    /// node's actor answers `not_owner`.
    fn inbox(&self) -> Option<String> {
        None
    }

    /// Sends `body` to the node whose [`Transport::inbox`] is `inbox` and waits at most `timeout` for its answer.
    fn push(
        &self,
        inbox: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let _ = (body, timeout);
        let inbox = inbox.to_owned();
        Box::pin(async move { Err(TransportError::Unreachable(inbox)) })
    }

    /// Resolves once a node announces that it serves `shard` (a failover ended), so a caller backing off asks again
    /// at once. Never resolves if the transport hears no announcements.
    fn announced(&self, shard: ShardId) -> BoxFuture<'static, ()> {
        let _ = shard;
        Box::pin(std::future::pending())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum TransportError {
    /// Nobody serves the shard right now (between an owner's loss and the next one's acquisition): try again.
    #[error("no node serves shard {0} right now")]
    NoResponders(ShardId),
    /// Sent, but no answer came in time: the request may or may not have run.
    #[error("no answer from the node serving shard {0} in time")]
    Timeout(ShardId),
    /// Given up on the node asked: another node announced it serves the shard now, so the one asked was a previous
    /// owner (perhaps cut off) that will not answer. Like `Timeout`, the request may or may not have run.
    #[error("shard {0} moved to another node while its previous owner was asked")]
    Moved(ShardId),
    #[error("transport failed: {0}")]
    Failed(String),
    /// Nobody listens at a node's inbox any more (that node is gone).
    #[error("nobody listens at {0}")]
    Unreachable(String),
}

/// A message other nodes may send to this kind: a stable wire name (renaming it breaks mixed-version clusters) and
/// serde for the message, its output and its error.
pub trait Remote: Serialize + DeserializeOwned + Send + 'static {
    const NAME: &'static str;
}

/// One request on the wire (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub(crate) enum Request {
    /// An outbox delivery, deduplicated by the receiver like a local one.
    Deliver {
        kind: String,
        key: String,
        message: String,
        source_kind: String,
        source_key: String,
        incarnation: String,
        seq: i64,
        payload: String,
    },
    /// A registered [`Remote`] mutation, read or command; `existing`: only if the actor exists (`*_existing` calls).
    Call {
        kind: String,
        key: String,
        message: String,
        payload: String,
        #[serde(default)]
        existing: bool,
        /// A mutation's request id, the same on every attempt of one call: the owner runs it at most once per id
        /// (see [`REMOTE_SCOPE`]). Absent on reads and commands, and from nodes that predate it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<String>,
    },
    /// Make the sender's connection `link` a connection of the actor's topic (`runtime::links`): the frames and events
    /// are pushed to `inbox`, stamped with `gen` (the link's attempt, so the pushes of an older one are refused).
    Connect {
        kind: String,
        key: String,
        topic: String,
        caller: Option<String>,
        params: serde_json::Value,
        existing: bool,
        inbox: String,
        link: u64,
        gen: u64,
    },
    /// The sender's connection `link` ended (or moved on from attempt `gen`).
    Disconnect { inbox: String, link: u64, gen: u64 },
    /// A registered procedure (`runtime::procedure`), for the node serving `shard`.
    Procedure { name: String, shard: u16, payload: String },
}

/// A [`Request::Call`] as its kind's registered [`super::outbox::RemoteFn`] receives it.
pub(crate) struct RemoteCall {
    pub kind: String,
    pub key: String,
    pub message: String,
    pub payload: String,
    pub existing: bool,
    pub id: Option<String>,
}

/// One answer on the wire (JSON).
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "camelCase")]
pub(crate) enum Reply {
    Delivered {
        outcome: WireOutcome,
        detail: String,
    },
    Returned {
        output: String,
    },
    Failed {
        error: WireError,
    },
    /// A `Connect` became a connection on the node whose inbox is `owner`; its pushes follow.
    Connected {
        owner: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum WireOutcome {
    Applied,
    Duplicate,
    Rejected,
    Retry,
    Panicked,
}

/// A `CallError` from another node. The handler's own error travels as its JSON; the rest as a code and a message.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WireError {
    code: WireCode,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    handler: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    capacity: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum WireCode {
    Handler,
    NotOwner,
    NotFound,
    Overloaded,
    ShuttingDown,
    /// The actor stopped before answering (its commit refused as the shard moved, say) or the store of record did
    /// not answer its activation: asking again may work. The caller answers `Unavailable`, as a local call would.
    Unavailable,
    /// Anything else (storage, panic, activation, timeout on that node): retried by nobody, reported as storage.
    Failed,
    /// The request itself was not understood (unknown kind or message, bad payload).
    BadRequest,
    /// The request id was used before with another request: refused, nothing applied.
    IdReused,
}

impl WireError {
    pub(crate) fn bad_request(message: String) -> WireError {
        WireError { code: WireCode::BadRequest, message, handler: None, shard: None, capacity: None }
    }

    pub(crate) fn code(&self) -> WireCode {
        self.code
    }

    pub(crate) fn not_owner(shard: ShardId) -> WireError {
        WireError {
            code: WireCode::NotOwner,
            message: String::new(),
            handler: None,
            shard: Some(shard.0),
            capacity: None,
        }
    }

    pub(crate) fn failed(message: String) -> WireError {
        WireError { code: WireCode::Failed, message, handler: None, shard: None, capacity: None }
    }

    pub(crate) fn id_reused(id: &str) -> WireError {
        let message = format!("request id {id} was used before with another request; not applied");
        WireError { code: WireCode::IdReused, message, handler: None, shard: None, capacity: None }
    }

    pub(crate) fn from_call<E: Serialize>(e: CallError<E>) -> WireError {
        let mut w =
            WireError { code: WireCode::Failed, message: String::new(), handler: None, shard: None, capacity: None };
        match e {
            CallError::Handler(h) => {
                w.code = WireCode::Handler;
                w.handler = Some(serde_json::to_string(&h).unwrap_or_default());
            }
            CallError::Activation(ActivationError { reason: ActivationFailure::NotOwner(shard), .. }) => {
                w.code = WireCode::NotOwner;
                w.shard = Some(shard.0);
            }
            CallError::NotFound { .. } => w.code = WireCode::NotFound,
            CallError::Overloaded { capacity, .. } => {
                w.code = WireCode::Overloaded;
                w.capacity = Some(capacity);
            }
            CallError::ShuttingDown => w.code = WireCode::ShuttingDown,
            unavailable @ (CallError::Unavailable { .. }
            | CallError::Activation(ActivationError {
                reason: ActivationFailure::StoreUnavailable(_),
                ..
            })) => {
                w.code = WireCode::Unavailable;
                w.message = unavailable.map_handler(|_| std::fmt::Error).to_string();
            }
            // The handler variant was taken above; the rest display without it.
            other => w.message = other.map_handler(|_| std::fmt::Error).to_string(),
        }
        w
    }

    /// Back into the caller's terms. `None`: the owner was not the owner after all (try again).
    pub(crate) fn into_call<E: DeserializeOwned>(self, kind: &'static str, key: &str) -> Option<CallError<E>> {
        let key = key.to_owned();
        Some(match self.code {
            // Not (or no longer) serving it, or leaving: the shard is about to be served elsewhere.
            WireCode::NotOwner | WireCode::ShuttingDown => return None,
            WireCode::Handler => match self.handler.as_deref().map(serde_json::from_str::<E>) {
                Some(Ok(h)) => CallError::Handler(h),
                _ => CallError::Storage { kind, key, message: "the owning node's error did not decode".into() },
            },
            WireCode::NotFound => CallError::NotFound { kind, key },
            WireCode::Overloaded => CallError::Overloaded { kind, key, capacity: self.capacity.unwrap_or(0) },
            WireCode::Unavailable => CallError::Unavailable { kind, key },
            WireCode::Failed | WireCode::BadRequest | WireCode::IdReused => {
                CallError::Storage { kind, key, message: format!("on the node serving it: {}", self.message) }
            }
        })
    }
}

impl Reply {
    pub(crate) fn encode(&self) -> Vec<u8> {
        // Plain data with string fields: serialising cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn delivered(outcome: DeliveryOutcome) -> Reply {
        let (outcome, detail) = match outcome {
            DeliveryOutcome::Applied => (WireOutcome::Applied, String::new()),
            DeliveryOutcome::Duplicate => (WireOutcome::Duplicate, String::new()),
            DeliveryOutcome::Rejected(d) => (WireOutcome::Rejected, d),
            DeliveryOutcome::Retry(d) => (WireOutcome::Retry, d),
            DeliveryOutcome::Panicked(d) => (WireOutcome::Panicked, d),
        };
        Reply::Delivered { outcome, detail }
    }
}

impl Request {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn deliver(kind: &str, key: &str, message: &str, source: &Source, seq: i64, payload: &str) -> Request {
        Request::Deliver {
            kind: kind.to_owned(),
            key: key.to_owned(),
            message: message.to_owned(),
            source_kind: source.kind.clone(),
            source_key: source.key.clone(),
            incarnation: source.incarnation.clone(),
            seq,
            payload: payload.to_owned(),
        }
    }
}

/// Sends an outbox delivery to the node serving `shard` and waits for the outcome (any failure: retry later).
pub(crate) async fn deliver_remote(transport: &dyn Transport, shard: ShardId, request: Request) -> DeliveryOutcome {
    let body = request.encode();
    match transport.request_movable(shard, body, ROUTED_DEADLINE).await {
        Err(e) => DeliveryOutcome::Retry(e.to_string()),
        Ok(bytes) => match serde_json::from_slice::<Reply>(&bytes) {
            Ok(Reply::Delivered { outcome, detail }) => match outcome {
                WireOutcome::Applied => DeliveryOutcome::Applied,
                WireOutcome::Duplicate => DeliveryOutcome::Duplicate,
                WireOutcome::Rejected => DeliveryOutcome::Rejected(detail),
                WireOutcome::Retry => DeliveryOutcome::Retry(detail),
                WireOutcome::Panicked => DeliveryOutcome::Panicked(detail),
            },
            Ok(Reply::Failed { error }) => DeliveryOutcome::Retry(format!("{:?}: {}", error.code, error.message)),
            Ok(other) => DeliveryOutcome::Retry(format!("unexpected answer {other:?}")),
            Err(e) => DeliveryOutcome::Retry(format!("answer does not decode: {e}")),
        },
    }
}

/// How a registered remote message crosses, built where its serde bounds are known (`Accepts::remote_*`) and used by
/// the registry's call paths, which are generic over every message and have no such bounds.
pub(crate) struct Codec<M, O, Er> {
    pub name: &'static str,
    pub encode: fn(&M) -> serde_json::Result<String>,
    pub decode: fn(&str) -> serde_json::Result<O>,
    pub decode_err: fn(WireError, &'static str, &str) -> Option<CallError<Er>>,
}

pub(crate) fn codec<M, O, Er>() -> Codec<M, O, Er>
where
    M: Remote,
    O: DeserializeOwned,
    Er: DeserializeOwned,
{
    Codec {
        name: M::NAME,
        encode: |m| serde_json::to_string(m),
        decode: |s| serde_json::from_str(s),
        decode_err: |w, kind, key| w.into_call::<Er>(kind, key),
    }
}

/// What a routed call is: it decides what an attempt that got no answer means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallClass {
    /// Tried again: it may have reached a node as it died, and running it twice changes nothing.
    Read,
    /// Tried again with the same request id, which the owner runs at most once: the retry gets the first run's
    /// output if there was one.
    Mutation,
    /// Reported as `Timeout`: a command runs outside one transaction and may have effects outside the database, so
    /// the runtime cannot know whether it ran or make a second run harmless.
    Command,
}

/// What a call to a remote actor needs besides its message.
pub(crate) struct CallTarget<'a> {
    pub shard: ShardId,
    pub kind: &'static str,
    pub key: &'a str,
    pub existing: bool,
    pub deadline: Instant,
    pub class: CallClass,
    /// A mutation's request id (see [`Request::Call`]); `None` for reads and commands.
    pub id: Option<String>,
}

/// One attempt waits at most this long for an answer before reads and mutations try again (see [`CallClass`]).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

/// A fresh request id: 128 random bits, hex. No fallback: ids made from the clock could repeat across nodes, and a
/// repeated id would replay another call's output.
pub(crate) fn new_request_id() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    getrandom::getrandom(&mut bytes).map_err(|e| format!("no randomness for a request id: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The owner's record of a routed mutation: scope [`REMOTE_SCOPE`], the request id as the key, and a fingerprint
/// of what was asked (kind, message, SHA-256 of the payload), so the id reused with another request is refused.
pub(crate) fn remote_key(kind: &str, message: &str, payload: &str, id: String) -> super::idempotency::IdempotencyKey {
    use sha2::{Digest, Sha256};
    let digest: String = Sha256::digest(payload.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    super::idempotency::IdempotencyKey {
        scope: REMOTE_SCOPE.to_owned(),
        key: id,
        fingerprint: format!("{kind}/{message}/{digest}"),
    }
}

/// The idempotency scope of routed mutations in the owner's `_foundry_idempotency`.
pub const REMOTE_SCOPE: &str = "fdy.remote";

/// A call's remote leg: sends the message (already JSON) to whichever node serves the shard, until one answers (or
/// the deadline passes), and decodes its answer.
pub(crate) async fn call_remote<M, O, Er>(
    transport: &dyn Transport,
    codec: &Codec<M, O, Er>,
    target: CallTarget<'_>,
    payload: String,
) -> Result<O, CallError<Er>> {
    let (kind, key) = (target.kind, target.key);
    let storage = |message: String| CallError::Storage { kind, key: key.to_owned(), message };
    let output = call_remote_raw(transport, codec.decode_err, codec.name, target, payload).await?;
    (codec.decode)(&output).map_err(|e| storage(format!("the owning node's answer does not decode: {e}")))
}

async fn call_remote_raw<Er>(
    transport: &dyn Transport,
    decode_err: fn(WireError, &'static str, &str) -> Option<CallError<Er>>,
    name: &str,
    target: CallTarget<'_>,
    payload: String,
) -> Result<String, CallError<Er>> {
    let CallTarget { shard, kind, key, existing, deadline, class, id } = target;
    let body =
        Request::Call { kind: kind.to_owned(), key: key.to_owned(), message: name.to_owned(), payload, existing, id }
            .encode();
    exchange(transport, decode_err, body, Exchange { shard, kind, key, deadline, class }).await
}

/// Where a request goes and how its attempts are retried (see [`exchange`]).
pub(crate) struct Exchange<'a> {
    pub shard: ShardId,
    /// Named in the caller's errors.
    pub kind: &'static str,
    pub key: &'a str,
    pub deadline: Instant,
    pub class: CallClass,
}

/// Sends an encoded request to whichever node serves the shard until one answers (or the deadline passes) and
/// returns its output.
pub(crate) async fn exchange<Er>(
    transport: &dyn Transport,
    decode_err: fn(WireError, &'static str, &str) -> Option<CallError<Er>>,
    body: Vec<u8>,
    to: Exchange<'_>,
) -> Result<String, CallError<Er>> {
    let Exchange { shard, kind, key, deadline, class } = to;
    let retry_unanswered = class != CallClass::Command;
    // A mutation attempt went unanswered: it may have run, so running out of time is a timeout, not `not_owner`.
    let mut maybe_ran = false;
    let mut pause = Duration::from_millis(50);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            if maybe_ran {
                return Err(CallError::Timeout(ROUTED_DEADLINE));
            }
            let reason = ActivationFailure::NotOwner(shard);
            return Err(CallError::Activation(ActivationError { kind, key: key.to_owned(), reason }));
        }
        let sent = if retry_unanswered {
            transport.request_movable(shard, body.clone(), left.min(ATTEMPT_TIMEOUT))
        } else {
            transport.request(shard, body.clone(), left)
        };
        match sent.await {
            Ok(bytes) => match serde_json::from_slice::<Reply>(&bytes) {
                Ok(Reply::Returned { output }) => return Ok(output),
                // The actor stopped under the call (its shard moving, most often) or could not be loaded: reads and
                // mutations (under their request id) ask again, as after `not_owner`.
                Ok(Reply::Failed { error }) if retry_unanswered && error.code() == WireCode::Unavailable => {
                    maybe_ran |= class == CallClass::Mutation;
                }
                Ok(Reply::Failed { error }) => {
                    if let Some(e) = decode_err(error, kind, key) {
                        return Err(e);
                    }
                }
                Ok(other) => {
                    let message = format!("unexpected answer from the owning node: {other:?}");
                    return Err(CallError::Storage { kind, key: key.to_owned(), message });
                }
                Err(e) => {
                    let message = format!("the owning node's answer does not decode: {e}");
                    return Err(CallError::Storage { kind, key: key.to_owned(), message });
                }
            },
            Err(TransportError::NoResponders(_)) => {}
            // The shard has a new owner already: ask it now.
            Err(TransportError::Moved(_)) if retry_unanswered => {
                maybe_ran |= class == CallClass::Mutation;
                continue;
            }
            Err(TransportError::Timeout(_)) if retry_unanswered => maybe_ran |= class == CallClass::Mutation,
            Err(TransportError::Timeout(_) | TransportError::Moved(_)) => {
                return Err(CallError::Timeout(ROUTED_DEADLINE))
            }
            Err(e @ (TransportError::Failed(_) | TransportError::Unreachable(_))) => {
                return Err(CallError::Storage { kind, key: key.to_owned(), message: e.to_string() });
            }
        }
        // Nobody serves the shard, the node asked no longer does, or (reads, mutations) it did not answer or its actor
        // was unavailable: wait for the next owner (until it announces itself, or the pause ends). A mutation goes
        // again under the same id, so the owner replays it if it ran.
        let announced = transport.announced(shard);
        tokio::select! {
            () = tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))) => {}
            () = announced => {}
        }
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

impl super::Runtime {
    /// Runs one request from another node on this node's local path (never forwarding it again) and encodes the
    /// answer. Call it inside the actix system (activation spawns there).
    pub fn serve_remote(&self, body: &[u8]) -> BoxFuture<'static, Vec<u8>> {
        let shared = self.shared().clone();
        let request = serde_json::from_slice::<Request>(body);
        Box::pin(async move {
            let reply = match request {
                Err(e) => Reply::Failed { error: WireError::bad_request(format!("request does not decode: {e}")) },
                Ok(Request::Deliver { kind, key, message, source_kind, source_key, incarnation, seq, payload }) => {
                    match shared.delivery_fn(&kind, &message) {
                        None => {
                            Reply::Failed { error: WireError::bad_request(format!("{kind} does not accept {message}")) }
                        }
                        Some(deliver) => {
                            let source = Source { kind: source_kind, key: source_key, incarnation };
                            Reply::delivered(deliver(shared.clone(), key, source, seq, payload, false).await)
                        }
                    }
                }
                Ok(Request::Call { kind, key, message, payload, existing, id }) => {
                    match shared.remote_fn(&kind, &message) {
                        None => Reply::Failed {
                            error: WireError::bad_request(format!("{kind} takes no remote message {message}")),
                        },
                        Some(call) => {
                            call(shared.clone(), RemoteCall { kind, key, message, payload, existing, id }).await
                        }
                    }
                }
                Ok(Request::Connect { kind, key, topic, caller, params, existing, inbox, link, gen }) => {
                    let request = super::connection::Connect { topic, caller, params };
                    let upstream = super::links::Upstream { inbox, link, gen };
                    super::links::serve_connect(&shared, &kind, key, request, existing, upstream).await
                }
                Ok(Request::Procedure { name, shard, payload }) => {
                    super::procedure::serve(&shared, &name, shard, payload).await
                }
                Ok(Request::Disconnect { inbox, link, gen }) => {
                    shared.upstreams.end(&super::links::Upstream { inbox, link, gen });
                    Reply::Returned { output: "null".into() }
                }
            };
            reply.encode()
        })
    }
}

/// Most distinct names [`static_name`] keeps; past it a name reads as `"value"`. The names are literals of the code
/// on the other side (a domain error's `"organization"`, `"name"`, a refusal's code), a few dozen, so the cap only
/// bounds what a misbehaving peer could leak.
const MAX_INTERNED: usize = 1024;

/// The `&'static str` for a name received from another node (a domain error's `what`/`field`, a connection
/// refusal's code). Those are `&'static str` because code matches on them (`NotFound { what: "repository", .. }`); each distinct name is
/// leaked once and reused, so the memory is bounded by the set of names, not by the number of errors.
pub fn static_name(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    // A poisoned lock still holds a valid set (insertions cannot half-happen): keep using it.
    let mut names = NAMES.get_or_init(Default::default).lock().unwrap_or_else(|p| p.into_inner());
    if let Some(known) = names.get(name) {
        return known;
    }
    if names.len() >= MAX_INTERNED {
        return "value";
    }
    let leaked: &'static str = Box::leak(name.to_owned().into_boxed_str());
    names.insert(leaked);
    leaked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_without_a_request_id_stays_on_the_wire_as_before() {
        // From a node that predates request ids: decodes, with none.
        let old = br#"{"t":"call","kind":"k","key":"a","message":"M","payload":"{}","existing":false}"#;
        let Ok(Request::Call { id, .. }) = serde_json::from_slice::<Request>(old) else { panic!("decodes") };
        assert_eq!(id, None);
        // Reads and commands carry none and write none.
        let call = |id| Request::Call {
            kind: "k".into(),
            key: "a".into(),
            message: "M".into(),
            payload: "{}".into(),
            existing: false,
            id,
        };
        assert_eq!(call(None).encode(), old.to_vec());
        let keyed = String::from_utf8(call(Some("00ff".into())).encode()).unwrap();
        assert!(keyed.ends_with(r#","id":"00ff"}"#), "{keyed}");
    }

    #[test]
    fn unavailable_crosses_nodes_as_unavailable_not_as_a_storage_failure() {
        let store = ActivationError {
            kind: "tally",
            key: "a".into(),
            reason: ActivationFailure::StoreUnavailable("no answer from PostgreSQL within 2s".into()),
        };
        for e in [CallError::<String>::Unavailable { kind: "tally", key: "a".into() }, CallError::Activation(store)] {
            let wire = WireError::from_call(e);
            assert_eq!(wire.code(), WireCode::Unavailable);
            let back: WireError = serde_json::from_slice(&serde_json::to_vec(&wire).unwrap()).unwrap();
            match back.into_call::<String>("tally", "a") {
                Some(CallError::Unavailable { kind: "tally", key }) => assert_eq!(key, "a"),
                other => panic!("expected Unavailable, got {other:?}"),
            }
        }
        // A storage failure stays one (the outcome is unknown: nobody retries it).
        let storage = CallError::<String>::Storage { kind: "tally", key: "a".into(), message: "disk full".into() };
        assert_eq!(WireError::from_call(storage).code(), WireCode::Failed);
    }

    #[test]
    fn request_ids_are_fresh_and_fingerprints_tell_requests_apart() {
        let (a, b) = (new_request_id().unwrap(), new_request_id().unwrap());
        assert_ne!(a, b);
        assert!(a.len() == 32 && a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        let k = remote_key("account", "Credit", r#"{"amount":5}"#, a.clone());
        assert_eq!((k.scope.as_str(), k.key.as_str()), (REMOTE_SCOPE, a.as_str()));
        assert_eq!(k, remote_key("account", "Credit", r#"{"amount":5}"#, a.clone()));
        for (kind, message, payload) in [
            ("account", "Credit", r#"{"amount":6}"#),
            ("account", "Withdraw", r#"{"amount":5}"#),
            ("other", "Credit", r#"{"amount":5}"#),
        ] {
            assert_ne!(k.fingerprint, remote_key(kind, message, payload, a.clone()).fingerprint);
        }
    }
}
