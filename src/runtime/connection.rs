//! Connections and events: a topic subscriber the actor knows (its id, the caller the web layer named, the connect
//! params and the state the actor's [`Entity::before_connect`](super::Entity::before_connect) hook gave it), and the
//! events (a name and a JSON payload) an actor emits to its subscribers besides the topic's snapshots.
//!
//! The table of connections lives beside the topic hub, outside the actors, like the subscriptions it wraps: a
//! connection lasts as long as its subscriber, across the actor's passivation and restarts, so the actor that wakes
//! up still knows who is attached (`EntityCtx::connections`). A [`Connection`] handle ends the connection when it is
//! dropped (socket closed, unsubscribe, client dropped as dead or too slow): its entry leaves the table at once and
//! `on_disconnect` runs in the actor, which is woken for it if it passivated meanwhile.
//!
//! Each connection has its own bounded queue of events ([`MAX_QUEUED_EVENTS`] events and [`MAX_QUEUED_BYTES`] of
//! payload, shared with other subscribers, never copied): an emit never waits, so a slow subscriber never slows the
//! actor or the other subscribers. When a queue is full the events that do not fit are counted, not kept, and the
//! subscriber reads, in order, the events it was sent, a [`ConnectionItem::Lagged`] marker saying how many it lost,
//! then a fresh full snapshot of the topic, then the events after the gap. An event is yielded only once the
//! subscriber has received the topic at the version the event's transaction committed (or a later one), so a client
//! never hears of a change before it can see it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::ops::{Deref, DerefMut};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::entity::SnapshotError;
use super::key::placement_hash;
use super::topic::{lock, Subscription, TopicFrame};

/// Events one connection may hold unread before it lags.
pub const MAX_QUEUED_EVENTS: usize = 256;
/// Payload bytes one connection may hold unread before it lags (an event larger than this alone is still queued
/// when the queue is empty, so every event can be delivered to a subscriber that keeps up).
pub const MAX_QUEUED_BYTES: usize = 256 * 1024;
/// What an event costs in a queue beyond its payload, so a flood of empty events stays bounded by bytes too.
const EVENT_OVERHEAD: usize = 64;
const SHARDS: usize = 32;

/// A connection's id, unique in the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ConnectionId(pub u64);

impl std::fmt::Display for ConnectionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "c{}", self.0)
    }
}

/// What a subscriber asks for: a topic, who it is (plain data from the web layer: `None` is a subscriber inside the
/// process, such as a test or a flow waiting for a state) and free-form connect params (JSON).
#[derive(Debug, Clone, PartialEq)]
pub struct Connect {
    pub topic: String,
    pub caller: Option<String>,
    pub params: serde_json::Value,
}

impl Connect {
    pub fn new(topic: impl Into<String>) -> Self {
        Connect { topic: topic.into(), caller: None, params: serde_json::Value::Null }
    }

    pub fn caller(mut self, caller: impl Into<String>) -> Self {
        self.caller = Some(caller.into());
        self
    }

    pub fn params(mut self, params: serde_json::Value) -> Self {
        self.params = params;
        self
    }
}

/// `Entity::before_connect` refusing a subscriber: a stable code (lowercase, `_`-separated; the web layer sends it
/// as the error frame's code, so it must be listed in docs/API.md) and a message for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Refusal { code, message: message.into() }
    }
}

/// Why a subscriber did not become a connection.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The actor's `before_connect` refused it: nothing was recorded, no hook ran.
    #[error("connection refused: {0}")]
    Refused(Refusal),
    /// The topic has no snapshot (an unknown topic, or building it failed).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
}

/// A connection as its actor sees it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    pub id: ConnectionId,
    pub topic: String,
    pub caller: Option<String>,
    pub params: serde_json::Value,
    /// What `before_connect` returned, or what the actor set since (`EntityCtx::set_connection_state`).
    pub state: serde_json::Value,
}

/// One emitted event, shared (not copied) by every subscriber it reaches.
#[derive(Debug)]
pub struct Event {
    pub topic: String,
    pub name: String,
    /// The payload, serialised once.
    pub payload: Arc<RawValue>,
    /// The topic's version as of the transaction that emitted it: subscribers get it after the frame that brings them
    /// to this version.
    pub version: u64,
}

/// What a connection yields next.
#[derive(Debug, Clone)]
pub enum ConnectionItem {
    /// A full snapshot or a patch of the topic.
    Frame(TopicFrame),
    /// An event; `seq` counts the events emitted to this connection (1, 2, ...), lost ones included, so after a
    /// [`ConnectionItem::Lagged`] the next `seq` is higher by the number it reported plus one.
    Event { seq: u64, event: Arc<Event> },
    /// The queue overflowed: `missed` events were dropped here. The next frame is a full snapshot.
    Lagged { missed: u64 },
}

/// An event waiting to be published after its transaction commits.
pub(crate) struct PendingEvent {
    /// `None` for an event to one connection (its topic is the connection's, looked up when published).
    pub topic: Option<String>,
    pub to: Option<ConnectionId>,
    pub name: String,
    pub payload: Arc<RawValue>,
}

impl PendingEvent {
    pub(crate) fn new(
        topic: Option<&str>,
        to: Option<ConnectionId>,
        name: &str,
        payload: &impl Serialize,
    ) -> serde_json::Result<Self> {
        let payload = Arc::from(serde_json::value::to_raw_value(payload)?);
        Ok(PendingEvent { topic: topic.map(str::to_owned), to, name: name.to_owned(), payload })
    }
}

enum Queued {
    Event { seq: u64, event: Arc<Event> },
    Gap { missed: u64 },
}

#[derive(Default)]
struct QueueState {
    items: VecDeque<Queued>,
    events: usize,
    bytes: usize,
    /// The `seq` of the next event emitted to this connection.
    next_seq: u64,
}

/// One connection's events waiting to be read.
#[derive(Default)]
pub(crate) struct EventQueue {
    state: Mutex<QueueState>,
    wake: Notify,
    /// The connection was ended from its producer's side (cluster mode: its link to the actor's node failed for
    /// good); the subscriber's stream ends.
    closed: std::sync::atomic::AtomicBool,
}

impl EventQueue {
    /// Queues `event`, or counts it lost if the queue is full; never waits.
    pub(crate) fn push(&self, event: Arc<Event>) {
        let mut q = lock(&self.state);
        q.next_seq += 1;
        let seq = q.next_seq;
        let cost = event.payload.get().len() + EVENT_OVERHEAD;
        let full = q.events >= MAX_QUEUED_EVENTS || (q.events > 0 && q.bytes + cost > MAX_QUEUED_BYTES);
        if full {
            match q.items.back_mut() {
                Some(Queued::Gap { missed }) => *missed += 1,
                _ => q.items.push_back(Queued::Gap { missed: 1 }),
            }
        } else {
            q.events += 1;
            q.bytes += cost;
            q.items.push_back(Queued::Event { seq, event });
        }
        drop(q);
        // A stored permit if the reader is not waiting right now: it cannot miss this push.
        self.wake.notify_one();
    }

    /// Counts `missed` events as lost here, as an overflow does (a connection linked to another node's actor hears
    /// of that node's overflow this way).
    pub(crate) fn push_gap(&self, missed: u64) {
        let mut q = lock(&self.state);
        q.next_seq += missed;
        match q.items.back_mut() {
            Some(Queued::Gap { missed: m }) => *m += missed,
            _ => q.items.push_back(Queued::Gap { missed }),
        }
        drop(q);
        self.wake.notify_one();
    }

    /// Ends the stream of the connection reading this queue.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Events held unread (for tests of the bound).
    pub(crate) fn len(&self) -> usize {
        lock(&self.state).events
    }
}

/// A connection's entry in the table.
pub(crate) struct Entry {
    pub info: Mutex<ConnectionInfo>,
    pub queue: Arc<EventQueue>,
}

type KeyId = (&'static str, String);

/// Every connection of the process, by (kind, key).
pub(crate) struct ConnectionTable {
    shards: Vec<Mutex<HashMap<KeyId, Vec<Arc<Entry>>>>>,
    next_id: AtomicU64,
    /// Kinds whose `on_disconnect` is the default (which does nothing): learned the first time it runs, after which
    /// their connections end without a message, so leaving never wakes one of their actors for nothing.
    no_disconnect_hook: std::sync::RwLock<std::collections::HashSet<&'static str>>,
}

impl Default for ConnectionTable {
    fn default() -> Self {
        ConnectionTable {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            next_id: AtomicU64::new(0),
            no_disconnect_hook: Default::default(),
        }
    }
}

impl ConnectionTable {
    fn shard(&self, key: &str) -> &Mutex<HashMap<KeyId, Vec<Arc<Entry>>>> {
        &self.shards[(placement_hash(key) % SHARDS as u64) as usize]
    }

    pub(crate) fn next_id(&self) -> ConnectionId {
        ConnectionId(self.next_id.fetch_add(1, Ordering::Relaxed) + 1)
    }

    pub(crate) fn insert(&self, kind: &'static str, key: &str, entry: Arc<Entry>) {
        lock(self.shard(key)).entry((kind, key.to_owned())).or_default().push(entry);
    }

    /// Takes a connection out of the table; its info if it was there.
    pub(crate) fn remove(&self, kind: &'static str, key: &str, id: ConnectionId) -> Option<ConnectionInfo> {
        let mut map = lock(self.shard(key));
        let id_key = (kind, key.to_owned());
        let list = map.get_mut(&id_key)?;
        let at = list.iter().position(|e| lock(&e.info).id == id)?;
        let entry = list.swap_remove(at);
        if list.is_empty() {
            map.remove(&id_key);
        }
        drop(map);
        let info = lock(&entry.info).clone();
        Some(info)
    }

    fn entries(&self, kind: &'static str, key: &str) -> Vec<Arc<Entry>> {
        lock(self.shard(key)).get(&(kind, key.to_owned())).cloned().unwrap_or_default()
    }

    /// The connections of one actor, oldest first.
    pub(crate) fn list(&self, kind: &'static str, key: &str) -> Vec<ConnectionInfo> {
        let mut all: Vec<ConnectionInfo> = self.entries(kind, key).iter().map(|e| lock(&e.info).clone()).collect();
        all.sort_by_key(|c| c.id);
        all
    }

    pub(crate) fn get(&self, kind: &'static str, key: &str, id: ConnectionId) -> Option<Arc<Entry>> {
        self.entries(kind, key).into_iter().find(|e| lock(&e.info).id == id)
    }

    /// Replaces a connection's state; whether it is still connected.
    pub(crate) fn set_state(&self, kind: &'static str, key: &str, id: ConnectionId, state: serde_json::Value) -> bool {
        match self.get(kind, key, id) {
            Some(e) => {
                lock(&e.info).state = state;
                true
            }
            None => false,
        }
    }

    /// The queues of one actor's connections to `topic`.
    pub(crate) fn queues(&self, kind: &'static str, key: &str, topic: &str) -> Vec<Arc<EventQueue>> {
        self.entries(kind, key).iter().filter(|e| lock(&e.info).topic == topic).map(|e| e.queue.clone()).collect()
    }

    /// The default `on_disconnect` of `kind` ran: it has none of its own.
    pub(crate) fn default_disconnect_hook(&self, kind: &'static str) {
        if !self.has_disconnect_hook(kind) {
            return;
        }
        self.no_disconnect_hook.write().unwrap_or_else(|p| p.into_inner()).insert(kind);
    }

    /// Whether `kind` may have an `on_disconnect` of its own (until its default one was seen running).
    pub(crate) fn has_disconnect_hook(&self, kind: &'static str) -> bool {
        !self.no_disconnect_hook.read().unwrap_or_else(|p| p.into_inner()).contains(kind)
    }

    /// Every connection of the process (for metrics and tests).
    pub(crate) fn count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).values().map(Vec::len).sum::<usize>()).sum()
    }

    /// Forgets one actor's connections (it was destroyed: their streams end with its topic channels, and no
    /// `on_disconnect` runs for an actor that no longer exists).
    pub(crate) fn remove_actor(&self, kind: &'static str, key: &str) -> usize {
        lock(self.shard(key)).remove(&(kind, key.to_owned())).map_or(0, |list| list.len())
    }

    /// Forgets every connection (runtime shutdown: their streams end with the hub's).
    pub(crate) fn clear(&self) {
        for shard in &self.shards {
            lock(shard).clear();
        }
    }
}

/// Work a dropped connection leaves for the runtime's disconnect task: run `on_disconnect` in its actor.
pub(crate) type DisconnectJob = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()>>> + Send>;

/// A subscriber's handle on its connection: the topic's frames (it dereferences to its [`Subscription`], so
/// `next()` / `next_frame()` read the topic alone) and its events, in order, through [`Connection::next_item`].
/// Dropping it ends the connection.
pub struct Connection {
    id: ConnectionId,
    sub: Subscription,
    queue: Arc<EventQueue>,
    on_drop: Option<Box<dyn FnOnce() + Send>>,
}

impl Connection {
    pub(crate) fn new(
        id: ConnectionId,
        sub: Subscription,
        queue: Arc<EventQueue>,
        on_drop: Box<dyn FnOnce() + Send>,
    ) -> Self {
        Connection { id, sub, queue, on_drop: Some(on_drop) }
    }

    pub fn id(&self) -> ConnectionId {
        self.id
    }

    /// Waits for the next item: a topic frame (patches with `patches`, else the latest full snapshot), an event once
    /// the topic frame it follows was yielded, or a lag marker. `None` once the runtime has shut down (or, in
    /// cluster mode, the actor's node could not be reached again). Cancel-safe: an item counts as read only when it
    /// is returned.
    pub async fn next_item(&mut self, patches: bool) -> Option<ConnectionItem> {
        loop {
            if self.queue.is_closed() {
                return None;
            }
            self.sub.observe();
            if let Some(item) = self.try_next_item(patches) {
                return Some(item);
            }
            tokio::select! {
                _ = self.queue.wake.notified() => {}
                open = self.sub.changed() => if !open { return None },
            }
        }
    }

    /// The next item if one is ready now (see [`Connection::next_item`]).
    pub fn try_next_item(&mut self, patches: bool) -> Option<ConnectionItem> {
        if let Some(item) = self.due_event() {
            return Some(item);
        }
        let frame = if patches { self.sub.try_next_frame() } else { self.sub.try_next_full().map(TopicFrame::Full) };
        frame.map(ConnectionItem::Frame)
    }

    /// The next topic frame if one is ready and no event or lag marker comes before it: a subscriber behind takes
    /// the patches it missed one after another without passing an event.
    pub fn try_next_frame(&mut self) -> Option<TopicFrame> {
        if self.event_waiting() {
            return None;
        }
        self.sub.try_next_frame()
    }

    /// Whether an event or a lag marker is ready before any further topic frame.
    fn event_waiting(&self) -> bool {
        let q = lock(&self.queue.state);
        match q.items.front() {
            None => false,
            Some(Queued::Gap { .. }) => true,
            Some(Queued::Event { event, .. }) => self.follows_state(event.version),
        }
    }

    /// An event may go out once the subscriber holds the topic at its version, or when the hub holds no such
    /// version (a failed publish): waiting would then hold every later event back.
    fn follows_state(&self, version: u64) -> bool {
        self.sub.received().is_some_and(|r| r >= version) || self.sub.held_version().is_none_or(|l| l < version)
    }

    fn due_event(&mut self) -> Option<ConnectionItem> {
        let mut q = lock(&self.queue.state);
        let due = match q.items.front()? {
            Queued::Gap { .. } => true,
            Queued::Event { event, .. } => self.follows_state(event.version),
        };
        if !due {
            return None;
        }
        match q.items.pop_front()? {
            Queued::Gap { missed } => {
                drop(q);
                self.sub.resync();
                Some(ConnectionItem::Lagged { missed })
            }
            Queued::Event { seq, event } => {
                q.events -= 1;
                q.bytes -= event.payload.get().len() + EVENT_OVERHEAD;
                Some(ConnectionItem::Event { seq, event })
            }
        }
    }

    /// Events held unread.
    pub fn queued_events(&self) -> usize {
        self.queue.len()
    }
}

impl Deref for Connection {
    type Target = Subscription;
    fn deref(&self) -> &Subscription {
        &self.sub
    }
}

impl DerefMut for Connection {
    fn deref_mut(&mut self) -> &mut Subscription {
        &mut self.sub
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(end) = self.on_drop.take() {
            end();
        }
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("id", &self.id).finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::topic::{TopicEvent, TopicHub};

    fn event(version: u64, n: usize) -> Arc<Event> {
        let payload = Arc::from(serde_json::value::to_raw_value(&n).unwrap());
        Arc::new(Event { topic: "t".into(), name: "e".into(), payload, version })
    }

    fn snapshot(hub: &TopicHub, version: u64) {
        let raw = serde_json::value::to_raw_value(&serde_json::json!({ "v": version })).unwrap();
        hub.publish(TopicEvent::new("k", "key".into(), "t".into(), version, Arc::from(raw)));
    }

    fn connection(hub: &TopicHub) -> Connection {
        Connection::new(ConnectionId(1), hub.subscribe("k", "key", "t"), Arc::default(), Box::new(|| {}))
    }

    fn kinds(conn: &mut Connection) -> Vec<String> {
        std::iter::from_fn(|| conn.try_next_item(true))
            .map(|i| match i {
                ConnectionItem::Frame(TopicFrame::Full(e)) => format!("full{}", e.version),
                ConnectionItem::Frame(TopicFrame::Patch(p)) => format!("v{}", p.version),
                ConnectionItem::Event { seq, event } => format!("e{seq}@{}", event.version),
                ConnectionItem::Lagged { missed } => format!("lagged {missed}"),
            })
            .collect()
    }

    #[test]
    fn events_follow_the_frame_of_their_version() {
        let hub = TopicHub::default();
        let mut conn = connection(&hub);
        snapshot(&hub, 1);
        conn.queue.push(event(1, 0));
        assert_eq!(kinds(&mut conn), ["full1", "e1@1"], "the snapshot first");
        // The actor publishes a transaction's topic change before its events; a subscriber behind takes the change
        // first.
        hub.publish_patch("k", "key", "t", 2, &[]).unwrap();
        conn.queue.push(event(2, 1));
        conn.queue.push(event(2, 2));
        hub.publish_patch("k", "key", "t", 3, &[]).unwrap();
        conn.queue.push(event(3, 3));
        assert_eq!(kinds(&mut conn), ["v2", "e2@2", "e3@2", "v3", "e4@3"]);
        // An event whose version the hub never got (its publish failed) is not held back for it.
        conn.queue.push(event(5, 4));
        assert_eq!(kinds(&mut conn), ["e5@5"]);
    }

    #[test]
    fn an_overflowing_queue_reports_the_gap_then_a_full_snapshot() {
        let hub = TopicHub::default();
        let mut conn = connection(&hub);
        snapshot(&hub, 1);
        assert!(matches!(conn.try_next_item(true), Some(ConnectionItem::Frame(TopicFrame::Full(_)))));
        for n in 0..MAX_QUEUED_EVENTS + 10 {
            conn.queue.push(event(1, n));
        }
        assert_eq!(conn.queued_events(), MAX_QUEUED_EVENTS, "bounded");
        hub.publish_patch("k", "key", "t", 2, &[]).unwrap();
        let got = kinds(&mut conn);
        assert_eq!(got.len(), MAX_QUEUED_EVENTS + 2, "{got:?}");
        assert_eq!(got[MAX_QUEUED_EVENTS - 1], format!("e{MAX_QUEUED_EVENTS}@1"), "what was queued, in order");
        assert_eq!(got[MAX_QUEUED_EVENTS..], ["lagged 10", "full2"], "then the gap and a full snapshot");
        conn.queue.push(event(2, 0));
        assert_eq!(kinds(&mut conn), [format!("e{}@2", MAX_QUEUED_EVENTS + 11)], "seq counts the lost events");
    }

    #[test]
    fn the_frame_after_a_gap_is_a_full_snapshot_and_large_events_are_bounded_by_bytes() {
        let hub = TopicHub::default();
        let mut conn = connection(&hub);
        snapshot(&hub, 1);
        conn.try_next_item(true).unwrap();
        let big = Arc::new(Event {
            topic: "t".into(),
            name: "e".into(),
            payload: Arc::from(serde_json::value::to_raw_value(&"x".repeat(MAX_QUEUED_BYTES)).unwrap()),
            version: 1,
        });
        conn.queue.push(big.clone());
        conn.queue.push(big);
        assert_eq!(conn.queued_events(), 1, "one oversized event fits an empty queue, not two");
        hub.publish_patch("k", "key", "t", 2, &[]).unwrap();
        let mut items = std::iter::from_fn(|| conn.try_next_item(true));
        assert!(matches!(items.next(), Some(ConnectionItem::Event { seq: 1, .. })));
        assert!(matches!(items.next(), Some(ConnectionItem::Lagged { missed: 1 })));
        assert!(matches!(items.next(), Some(ConnectionItem::Frame(TopicFrame::Full(e))) if e.version == 2));
    }
}
