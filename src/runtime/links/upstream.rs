//! The owner's side of a link: a `Connect` from another node becomes an ordinary connection of the actor here,
//! and a forwarder task pushes its items to the gateway's inbox, one acknowledged push at a time, until the
//! gateway lets go (`Disconnect`, `Unknown`, or nobody at its inbox), the actor is destroyed, or this node stops
//! serving the shard.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{Push, PushAck, PushItem, PING_EVERY, PUSH_TIMEOUT};
use crate::runtime::connection::{Connect, ConnectError, Connection, ConnectionItem};
use crate::runtime::entity::SnapshotError;
use crate::runtime::error::CallError;
use crate::runtime::placement::{Route, ShardId};
use crate::runtime::remote::{Reply, Transport, WireError};
use crate::runtime::shards::ShardMask;
use crate::runtime::system::Shared;
use crate::runtime::topic::{lock, TopicFrame};

/// Which gateway connection an upstream serves: the gateway's inbox, its link id and attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Upstream {
    pub inbox: String,
    pub link: u64,
    pub gen: u64,
}

struct Running {
    gen: u64,
    shard: ShardId,
    stop: Arc<Notify>,
}

/// The connections this node serves for other nodes' subscribers, by (gateway inbox, link).
#[derive(Default)]
pub(crate) struct Upstreams {
    map: Mutex<HashMap<(String, u64), Running>>,
}

impl Upstreams {
    /// The gateway let go of this link (at this attempt or an earlier one).
    pub(crate) fn end(&self, up: &Upstream) {
        let mut map = lock(&self.map);
        let key = (up.inbox.clone(), up.link);
        if map.get(&key).is_some_and(|r| r.gen <= up.gen) {
            if let Some(r) = map.remove(&key) {
                r.stop.notify_one();
            }
        }
    }

    /// This node stopped serving `mask`'s shards: their upstreams end, telling their gateways to link again.
    pub(crate) fn end_in(&self, mask: &ShardMask) {
        for r in lock(&self.map).values().filter(|r| mask.contains(r.shard)) {
            r.stop.notify_one();
        }
    }

    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    fn start(&self, up: &Upstream, shard: ShardId) -> Arc<Notify> {
        let stop = Arc::new(Notify::new());
        let running = Running { gen: up.gen, shard, stop: stop.clone() };
        // A newer attempt of the same link replaces an older one (whose pushes the gateway refuses anyway).
        if let Some(old) = lock(&self.map).insert((up.inbox.clone(), up.link), running) {
            old.stop.notify_one();
        }
        stop
    }

    fn finished(&self, up: &Upstream) {
        let mut map = lock(&self.map);
        let key = (up.inbox.clone(), up.link);
        if map.get(&key).is_some_and(|r| r.gen == up.gen) {
            map.remove(&key);
        }
    }
}

/// A connection refused on the owner, as it crosses back.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum WireConnectError {
    Refused { code: String, message: String },
    UnknownTopic { topic: String },
}

/// Serves a `Connect`: the connection is made on this node's path only (never forwarded again); its forwarder starts.
pub(crate) async fn serve_connect(
    shared: &Arc<Shared>,
    kind: &str,
    key: String,
    request: Connect,
    existing: bool,
    up: Upstream,
) -> Reply {
    let Some(transport) = shared.config.transport.clone() else {
        return Reply::Failed { error: WireError::bad_request("this node has no transport".into()) };
    };
    let Some(owner) = transport.inbox() else {
        return Reply::Failed { error: WireError::bad_request("this node takes no connections".into()) };
    };
    let Some(handle) = shared.handles().into_iter().find(|h| h.kind() == kind) else {
        return Reply::Failed { error: WireError::bad_request(format!("unknown kind {kind}")) };
    };
    let Some(shard) = handle.shard_of_encoded(&key) else {
        return Reply::Failed { error: WireError::bad_request(format!("{kind} key {key:?} does not decode")) };
    };
    let conn = match handle.connect_here(key, request, existing).await {
        Ok(conn) => conn,
        Err(e) => return Reply::Failed { error: connect_error(e) },
    };
    let stop = shared.upstreams.start(&up, shard);
    let shared = shared.clone();
    actix_rt::spawn(async move {
        forward(&shared, transport.as_ref(), &up, shard, conn, &stop).await;
        shared.upstreams.finished(&up);
    });
    Reply::Connected { owner }
}

fn connect_error(e: CallError<ConnectError>) -> WireError {
    match e {
        CallError::Handler(ConnectError::Refused(r)) => {
            let refused = WireConnectError::Refused { code: r.code.to_owned(), message: r.message };
            WireError::from_call(CallError::Handler(refused))
        }
        CallError::Handler(ConnectError::Snapshot(SnapshotError::UnknownTopic { topic, .. })) => {
            WireError::from_call(CallError::Handler(WireConnectError::UnknownTopic { topic }))
        }
        CallError::Handler(ConnectError::Snapshot(e)) => WireError::failed(format!("the topic's snapshot failed: {e}")),
        // Every handler error was matched above: the closure never runs.
        other => WireError::from_call(other.map_handler(|_| WireConnectError::UnknownTopic { topic: String::new() })),
    }
}

/// Pushes the connection's items to the gateway until one side lets go.
async fn forward(
    shared: &Shared,
    transport: &dyn Transport,
    up: &Upstream,
    shard: ShardId,
    mut conn: Connection,
    stop: &Notify,
) {
    loop {
        let item = tokio::select! {
            item = conn.next_item(true) => match item {
                Some(item) => push_item(item),
                // The hub dropped the topic: the actor was destroyed, or this runtime is shutting down (the actor
                // then lives on elsewhere).
                None => PushItem::Closed { gone: !shared.is_shutting_down() && serves(shared, shard) },
            },
            _ = stop.notified() => PushItem::Closed { gone: false },
            _ = tokio::time::sleep(PING_EVERY) => PushItem::Ping,
        };
        let last = matches!(item, PushItem::Closed { .. });
        let body = serde_json::to_vec(&Push { link: up.link, gen: up.gen, item }).unwrap_or_default();
        match transport.push(&up.inbox, body, PUSH_TIMEOUT).await {
            Ok(answer) => match serde_json::from_slice::<PushAck>(&answer) {
                Ok(PushAck::Ok) => {}
                // The gateway missed a version: the next frame is a full snapshot.
                Ok(PushAck::NeedFull) => conn.resync(),
                Ok(PushAck::Unknown) | Err(_) => return,
            },
            Err(e) => {
                tracing::debug!(inbox = %up.inbox, link = up.link, error = %e, "gateway unreachable: connection ends");
                return;
            }
        }
        if last {
            return;
        }
    }
}

fn serves(shared: &Shared, shard: ShardId) -> bool {
    shared.config.router.as_ref().is_none_or(|r| r.route(shard) == Route::Local)
}

fn push_item(item: ConnectionItem) -> PushItem {
    match item {
        ConnectionItem::Frame(TopicFrame::Full(ev)) => {
            PushItem::Full { version: ev.version, snapshot: ev.snapshot.as_ref().to_owned() }
        }
        ConnectionItem::Frame(TopicFrame::Patch(p)) => {
            PushItem::Patch { version: p.version, ops: p.ops.as_ref().to_owned() }
        }
        ConnectionItem::Event { event, .. } => PushItem::Event {
            topic: event.topic.clone(),
            name: event.name.clone(),
            version: event.version,
            payload: event.payload.as_ref().to_owned(),
        },
        ConnectionItem::Lagged { missed } => PushItem::Lagged { missed },
    }
}
