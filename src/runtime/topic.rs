//! Topics: the latest full snapshot of (kind, key, topic), fanned out to subscribers.
//!
//! Each topic is a `tokio::sync::watch` channel holding the newest event. Publishing replaces the value, so a slow
//! subscriber never queues: it wakes to the latest snapshot (intermediate versions may be skipped) and, because a
//! publish only replaces an older version, never sees a version go backwards. The hub lives beside the registries,
//! not inside an actor, so subscriptions survive the owner's passivation and restarts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;
use tokio::sync::watch;

use super::key::placement_hash;

const SHARDS: usize = 32;

/// One `{topic}Updated` event: the full replacement snapshot at `version`.
#[derive(Debug)]
pub struct TopicEvent {
    pub kind: &'static str,
    pub key: String,
    pub topic: String,
    /// Grows by one per committed change that touched the topic, stored with the actor so it survives restarts.
    pub version: u64,
    /// The snapshot, serialised once for every subscriber.
    pub snapshot: Arc<serde_json::value::RawValue>,
    /// One derived encoding shared by every subscriber (e.g. the web layer's wire frame), built by the first that asks.
    memo: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl TopicEvent {
    pub fn new(
        kind: &'static str,
        key: String,
        topic: String,
        version: u64,
        snapshot: Arc<serde_json::value::RawValue>,
    ) -> Self {
        TopicEvent { kind, key, topic, version, snapshot, memo: std::sync::OnceLock::new() }
    }

    /// `build()` once per event, shared by all who ask for a `T`: a thousand subscribers of one snapshot then cost
    /// one encoding. `None` if the memo already holds another type (one derived encoding per event).
    pub fn memo<T: Clone + Send + Sync + 'static>(&self, build: impl FnOnce() -> T) -> Option<T> {
        self.memo.get_or_init(|| Box::new(build())).downcast_ref::<T>().cloned()
    }

    /// `{topic}Updated`, the event's name on the wire.
    pub fn event_name(&self) -> String {
        format!("{}Updated", self.topic)
    }

    /// The wire frame `{"type": "{topic}Updated", "key", "version", "snapshot"}`.
    pub fn to_frame(&self) -> String {
        #[derive(Serialize)]
        struct Frame<'a> {
            #[serde(rename = "type")]
            kind: String,
            key: &'a str,
            version: u64,
            snapshot: &'a serde_json::value::RawValue,
        }
        // Serialising a struct of strings, an integer and already-valid JSON cannot fail.
        serde_json::to_string(&Frame {
            kind: self.event_name(),
            key: &self.key,
            version: self.version,
            snapshot: &self.snapshot,
        })
        .unwrap_or_default()
    }

    /// The snapshot parsed into `T`.
    pub fn snapshot_as<T: serde::de::DeserializeOwned>(&self) -> serde_json::Result<T> {
        serde_json::from_str(self.snapshot.get())
    }
}

type Slot = Option<Arc<TopicEvent>>;

#[derive(Clone, PartialEq, Eq, Hash)]
struct TopicId {
    kind: &'static str,
    key: String,
    topic: String,
}

/// Every topic channel of the process.
pub struct TopicHub {
    shards: Vec<Mutex<HashMap<TopicId, watch::Sender<Slot>>>>,
}

impl Default for TopicHub {
    fn default() -> Self {
        TopicHub { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl TopicHub {
    fn shard(&self, key: &str, topic: &str) -> &Mutex<HashMap<TopicId, watch::Sender<Slot>>> {
        let h = placement_hash(key) ^ placement_hash(topic).rotate_left(17);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    /// True if someone listens to this topic; publishers skip building snapshots nobody will read.
    pub fn has_subscribers(&self, kind: &'static str, key: &str, topic: &str) -> bool {
        let id = TopicId { kind, key: key.to_owned(), topic: topic.to_owned() };
        let mut map = lock(self.shard(key, topic));
        match map.get(&id) {
            Some(tx) if tx.receiver_count() > 0 => true,
            Some(_) => {
                map.remove(&id);
                false
            }
            None => false,
        }
    }

    /// Adds a subscriber. The receiver starts unseen, so its first `next()` yields the current value once the owner
    /// has published it (the registry publishes the current snapshot right after subscribing).
    pub fn subscribe(&self, kind: &'static str, key: &str, topic: &str) -> Subscription {
        let id = TopicId { kind, key: key.to_owned(), topic: topic.to_owned() };
        let mut map = lock(self.shard(key, topic));
        let tx = map.entry(id).or_insert_with(|| watch::channel(None).0);
        let mut rx = tx.subscribe();
        rx.mark_changed();
        Subscription { rx }
    }

    /// The latest snapshot of a topic someone subscribes to, without subscribing or touching the actor. While a topic
    /// has subscribers every committed change is published to it before the change's callers get their replies, so
    /// this is the current committed snapshot; `None` when nobody subscribes (or before the first publish).
    pub fn latest(&self, kind: &'static str, key: &str, topic: &str) -> Option<Arc<TopicEvent>> {
        let id = TopicId { kind, key: key.to_owned(), topic: topic.to_owned() };
        let map = lock(self.shard(key, topic));
        let tx = map.get(&id)?;
        if tx.receiver_count() == 0 {
            return None;
        }
        let latest = tx.borrow().clone();
        latest
    }

    /// Publishes `event` unless the channel already holds the same or a newer version.
    pub fn publish(&self, event: TopicEvent) {
        let map = lock(self.shard(&event.key, &event.topic));
        let id = TopicId { kind: event.kind, key: event.key.clone(), topic: event.topic.clone() };
        if let Some(tx) = map.get(&id) {
            let event = Arc::new(event);
            tx.send_if_modified(|slot| match slot {
                Some(cur) if cur.version >= event.version => false,
                _ => {
                    *slot = Some(event);
                    true
                }
            });
        }
    }

    /// Number of topic channels currently held (for metrics and tests of cleanup).
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Drops every channel: subscribers see the end of their stream.
    pub fn close_all(&self) {
        for shard in &self.shards {
            lock(shard).clear();
        }
    }
}

/// Locks a mutex, ignoring poisoning: the maps hold plain data whose invariants a panicking holder cannot break midway.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// A subscriber's view of one topic.
pub struct Subscription {
    rx: watch::Receiver<Slot>,
}

impl Subscription {
    /// Waits for the next snapshot newer than the last one returned. `None` once the runtime has shut down.
    pub async fn next(&mut self) -> Option<Arc<TopicEvent>> {
        loop {
            self.rx.changed().await.ok()?;
            if let Some(ev) = self.rx.borrow_and_update().clone() {
                return Some(ev);
            }
        }
    }

    /// The latest snapshot, without waiting.
    pub fn latest(&self) -> Option<Arc<TopicEvent>> {
        self.rx.borrow().clone()
    }
}
