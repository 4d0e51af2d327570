//! Topics: what the subscribers of (kind, key, topic) receive — the full snapshot first, then every committed change
//! as a patch (or, for a change its producer did not describe as one, a fresh full snapshot).
//!
//! Per topic the hub keeps one `State`, shared by its subscriptions: the latest version, the newest full snapshot it
//! holds (serialised once), and a ring of the recent patches (each serialised once) covering every version after
//! that snapshot. A full snapshot of the latest version is materialised only when one is needed (a new subscriber,
//! one that fell behind the ring, a reader of full snapshots): the cached one is parsed, the newer patches applied,
//! the result serialised and cached. The ring holds at most as many bytes as the snapshot itself (at least
//! `MIN_RING_BYTES`); before it would drop a patch the cached snapshot does not include yet, the snapshot is brought
//! up to date. So a producer's cost per change is its patch (materialising is amortised to O(1) per patch byte), and
//! memory stays within about twice the snapshot.
//!
//! Subscribers are woken through a `watch` channel and each remembers the last version it received: it gets the
//! contiguous patches after it while the ring still holds them, else a full snapshot of the latest version — never
//! a gap, never a version going backwards. The hub lives beside the registries, not inside an actor, so
//! subscriptions survive the owner's passivation and restarts.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::Serialize;
use serde_json::value::RawValue;
use tokio::sync::watch;

use super::key::placement_hash;
use super::patch::{self, PatchOp};

const SHARDS: usize = 32;
/// The ring of a small topic still holds this many bytes of recent patches, for subscribers a little behind.
const MIN_RING_BYTES: usize = 64 * 1024;
/// What a patch costs beyond its operations (its frame's envelope), so a ring of tiny patches stays bounded too.
const PATCH_OVERHEAD: usize = 64;

/// One `{topic}Updated` event: the full replacement snapshot at `version`.
#[derive(Debug)]
pub struct TopicEvent {
    pub kind: &'static str,
    pub key: String,
    pub topic: String,
    /// Grows by one per committed change that touched the topic, stored with the actor so it survives restarts.
    pub version: u64,
    /// The snapshot, serialised once for every subscriber.
    pub snapshot: Arc<RawValue>,
    /// One derived encoding shared by every subscriber (e.g. the web layer's wire frame), built by the first that asks.
    memo: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl TopicEvent {
    pub fn new(kind: &'static str, key: String, topic: String, version: u64, snapshot: Arc<RawValue>) -> Self {
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
            snapshot: &'a RawValue,
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

/// One `{topic}Patched` event: the operations that turn the snapshot at `version - 1` into the one at `version`.
#[derive(Debug)]
pub struct TopicPatch {
    pub kind: &'static str,
    pub key: String,
    pub topic: String,
    pub version: u64,
    /// The operations (a JSON array of [`PatchOp`]), serialised once for every subscriber.
    pub ops: Arc<RawValue>,
    memo: std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>,
}

impl TopicPatch {
    /// The version this patch applies to.
    pub fn base(&self) -> u64 {
        self.version - 1
    }

    /// See [`TopicEvent::memo`].
    pub fn memo<T: Clone + Send + Sync + 'static>(&self, build: impl FnOnce() -> T) -> Option<T> {
        self.memo.get_or_init(|| Box::new(build())).downcast_ref::<T>().cloned()
    }

    /// `{topic}Patched`, the event's name on the wire.
    pub fn event_name(&self) -> String {
        format!("{}Patched", self.topic)
    }

    /// The operations, parsed.
    pub fn ops(&self) -> serde_json::Result<Vec<PatchOp>> {
        serde_json::from_str(self.ops.get())
    }

    fn cost(&self) -> usize {
        self.ops.get().len() + PATCH_OVERHEAD
    }
}

/// What a subscription yields next: a full snapshot, or the patch to the next version.
#[derive(Debug, Clone)]
pub enum TopicFrame {
    Full(Arc<TopicEvent>),
    Patch(Arc<TopicPatch>),
}

impl TopicFrame {
    pub fn version(&self) -> u64 {
        match self {
            TopicFrame::Full(e) => e.version,
            TopicFrame::Patch(p) => p.version,
        }
    }
}

/// The producer's patch does not follow the version the hub holds (nothing published yet, a publish that failed, a
/// snapshot the hub had to drop): publish a full snapshot instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the topic needs a full snapshot")]
pub struct NeedFull;

/// One topic's published state. Invariant: `latest` and `full` are both set or both unset; `full.version <= latest`;
/// the ring is contiguous, ends at `latest` when not empty, and holds every version in `(full.version, latest]`.
#[derive(Default)]
struct State {
    latest: Option<u64>,
    full: Option<Arc<TopicEvent>>,
    ring: VecDeque<Arc<TopicPatch>>,
    ring_bytes: usize,
}

impl State {
    fn reset(&mut self) {
        *self = State::default();
    }

    /// The patch to version `v`, if the ring still holds it.
    fn patch_to(&self, v: u64) -> Option<Arc<TopicPatch>> {
        let first = self.ring.front()?.version;
        self.ring.get(usize::try_from(v.checked_sub(first)?).ok()?).cloned()
    }

    /// The full snapshot of the latest version, folded from the cached one and the ring if it is older (then cached).
    fn materialize(&mut self) -> Option<Arc<TopicEvent>> {
        let full = self.full.clone()?;
        if Some(full.version) == self.latest {
            return Some(full);
        }
        let newer: Vec<Arc<TopicPatch>> = self.ring.iter().filter(|p| p.version > full.version).cloned().collect();
        match fold(&full, &newer) {
            Ok(event) => {
                let event = Arc::new(event);
                self.full = Some(event.clone());
                Some(event)
            }
            Err(e) => {
                // A producer's patch that does not apply to its own snapshot is a bug; subscribers get a full snapshot
                // from the producer's next change (it finds the topic empty and publishes one).
                tracing::error!(kind = full.kind, key = %full.key, topic = %full.topic, error = %e, "patch does not apply");
                self.reset();
                None
            }
        }
    }

    /// Keeps the ring within its byte budget, first bringing the cached snapshot up to date if the oldest patch is not
    /// in it yet.
    fn trim(&mut self) {
        loop {
            let Some(full) = &self.full else { return };
            let budget = full.snapshot.get().len().max(MIN_RING_BYTES);
            if self.ring_bytes <= budget {
                return;
            }
            let Some(front) = self.ring.front() else { return };
            if front.version > full.version {
                if self.materialize().is_none() {
                    return;
                }
                continue;
            }
            self.ring_bytes -= front.cost();
            self.ring.pop_front();
        }
    }
}

/// The snapshot `full` with `patches` (its next versions, in order) applied.
fn fold(full: &TopicEvent, patches: &[Arc<TopicPatch>]) -> Result<TopicEvent, String> {
    let mut doc: serde_json::Value = serde_json::from_str(full.snapshot.get()).map_err(|e| e.to_string())?;
    let mut version = full.version;
    for p in patches {
        if p.version != version + 1 {
            return Err(format!("patch {} does not follow version {version}", p.version));
        }
        let ops = p.ops().map_err(|e| e.to_string())?;
        patch::apply(&mut doc, &ops).map_err(|e| format!("version {}: {e}", p.version))?;
        version = p.version;
    }
    let raw = serde_json::value::to_raw_value(&doc).map_err(|e| e.to_string())?;
    Ok(TopicEvent::new(full.kind, full.key.clone(), full.topic.clone(), version, Arc::from(raw)))
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct TopicId {
    kind: &'static str,
    key: String,
    topic: String,
}

/// A topic's state and the channel that wakes its subscribers. Dropping it (hub shutdown) ends their streams.
struct Channel {
    state: Arc<Mutex<State>>,
    wake: watch::Sender<()>,
}

/// Every topic channel of the process. A channel is taken out of its shard before its state is locked, so folding
/// one topic's snapshot never holds up the other topics of its shard.
pub struct TopicHub {
    shards: Vec<Mutex<HashMap<TopicId, Arc<Channel>>>>,
}

impl Default for TopicHub {
    fn default() -> Self {
        TopicHub { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() }
    }
}

impl TopicHub {
    fn shard(&self, key: &str, topic: &str) -> &Mutex<HashMap<TopicId, Arc<Channel>>> {
        let h = placement_hash(key) ^ placement_hash(topic).rotate_left(17);
        &self.shards[(h % SHARDS as u64) as usize]
    }

    fn id(kind: &'static str, key: &str, topic: &str) -> TopicId {
        TopicId { kind, key: key.to_owned(), topic: topic.to_owned() }
    }

    /// True if someone listens to this topic; publishers skip building snapshots nobody will read.
    pub fn has_subscribers(&self, kind: &'static str, key: &str, topic: &str) -> bool {
        let id = Self::id(kind, key, topic);
        let mut map = lock(self.shard(key, topic));
        match map.get(&id) {
            Some(ch) if ch.wake.receiver_count() > 0 => true,
            Some(_) => {
                map.remove(&id);
                false
            }
            None => false,
        }
    }

    /// Adds a subscriber. Its first `next()` / `next_frame()` yields the current snapshot once the owner has
    /// published one (the registry has the owner publish right after subscribing, unless the hub already holds the
    /// owner's current version).
    pub fn subscribe(&self, kind: &'static str, key: &str, topic: &str) -> Subscription {
        let mut map = lock(self.shard(key, topic));
        let ch = map
            .entry(Self::id(kind, key, topic))
            .or_insert_with(|| Arc::new(Channel { state: Arc::default(), wake: watch::channel(()).0 }));
        Subscription { state: ch.state.clone(), rx: ch.wake.subscribe(), seen: None, after: None }
    }

    /// The latest version published to a topic someone subscribes to.
    pub fn version(&self, kind: &'static str, key: &str, topic: &str) -> Option<u64> {
        let state = self.state(kind, key, topic)?;
        let latest = lock(&state).latest;
        latest
    }

    fn state(&self, kind: &'static str, key: &str, topic: &str) -> Option<Arc<Mutex<State>>> {
        let ch = self.channel(kind, key, topic)?;
        (ch.wake.receiver_count() > 0).then(|| ch.state.clone())
    }

    fn channel(&self, kind: &'static str, key: &str, topic: &str) -> Option<Arc<Channel>> {
        lock(self.shard(key, topic)).get(&Self::id(kind, key, topic)).cloned()
    }

    /// The latest snapshot of a topic someone subscribes to, without subscribing or touching the actor. While a topic
    /// has subscribers every committed change is published to it before the change's callers get their replies, so
    /// this is the current committed snapshot; `None` when nobody subscribes (or before the first publish).
    pub fn latest(&self, kind: &'static str, key: &str, topic: &str) -> Option<Arc<TopicEvent>> {
        let state = self.state(kind, key, topic)?;
        let full = lock(&state).materialize();
        full
    }

    /// Publishes a full snapshot unless the topic already holds the same or a newer version. Patches before it are
    /// dropped: a subscriber behind it gets this snapshot.
    pub fn publish(&self, event: TopicEvent) {
        let Some(ch) = self.channel(event.kind, &event.key, &event.topic) else { return };
        let mut state = lock(&ch.state);
        if state.latest.is_some_and(|v| v >= event.version) {
            return;
        }
        state.latest = Some(event.version);
        state.full = Some(Arc::new(event));
        state.ring.clear();
        state.ring_bytes = 0;
        drop(state);
        ch.wake.send_replace(());
    }

    /// Publishes the change to `version` as a patch. `NeedFull` if the topic does not hold `version - 1` (the
    /// producer then publishes a full snapshot); `Ok` without effect if nobody subscribes.
    pub fn publish_patch(
        &self,
        kind: &'static str,
        key: &str,
        topic: &str,
        version: u64,
        ops: &[PatchOp],
    ) -> Result<(), NeedFull> {
        let Some(ch) = self.channel(kind, key, topic) else { return Ok(()) };
        let raw = serde_json::value::to_raw_value(ops).map_err(|_| NeedFull)?;
        let mut state = lock(&ch.state);
        if version == 0 || state.latest != Some(version - 1) {
            return Err(NeedFull);
        }
        let patch = TopicPatch {
            kind,
            key: key.to_owned(),
            topic: topic.to_owned(),
            version,
            ops: Arc::from(raw),
            memo: std::sync::OnceLock::new(),
        };
        state.ring_bytes += patch.cost();
        state.ring.push_back(Arc::new(patch));
        state.latest = Some(version);
        state.trim();
        drop(state);
        ch.wake.send_replace(());
        Ok(())
    }

    /// The topics of `kind` (of one key, if given) that have subscribers: `(key, topic, subscribers)`. One pass over
    /// every channel, for the inspector (not for a hot path).
    pub fn subscribed(&self, kind: &str, key: Option<&str>) -> Vec<(String, String, usize)> {
        let mut out = Vec::new();
        for shard in &self.shards {
            for (id, ch) in lock(shard).iter() {
                let n = ch.wake.receiver_count();
                if n > 0 && id.kind == kind && key.is_none_or(|k| k == id.key) {
                    out.push((id.key.clone(), id.topic.clone(), n));
                }
            }
        }
        out
    }

    /// Number of topic channels currently held (for metrics and tests of cleanup).
    pub fn channel_count(&self) -> usize {
        self.shards.iter().map(|s| lock(s).len()).sum()
    }

    /// Drops the channels of one actor (it was destroyed): its subscribers see the end of their streams.
    pub fn close_actor(&self, kind: &'static str, key: &str) {
        for shard in &self.shards {
            lock(shard).retain(|id, _| !(id.kind == kind && id.key == key));
        }
    }

    /// Drops one topic's channel: its subscribers see the end of their stream (cluster mode: the actor another node
    /// served was destroyed; a channel left behind would hold versions its next incarnation starts below).
    pub fn close_topic(&self, kind: &'static str, key: &str, topic: &str) {
        lock(self.shard(key, topic)).remove(&Self::id(kind, key, topic));
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

/// A subscriber's view of one topic: the last version it received, and where to resume.
pub struct Subscription {
    state: Arc<Mutex<State>>,
    rx: watch::Receiver<()>,
    seen: Option<u64>,
    /// Versions up to this one count as received, though no snapshot was: the first frame is a full snapshot newer.
    after: Option<u64>,
}

impl Subscription {
    /// Treats versions up to `version` as already received (a client that knows the state at `version` exists but
    /// does not hold it): the first frame is then a full snapshot of a newer version.
    pub fn skip_through(&mut self, version: u64) {
        self.after = Some(version);
    }

    /// Waits for a full snapshot newer than the last version returned (intermediate versions are skipped). `None`
    /// once the runtime has shut down.
    pub async fn next(&mut self) -> Option<Arc<TopicEvent>> {
        loop {
            self.rx.borrow_and_update();
            if let Some(full) = self.try_next_full() {
                return Some(full);
            }
            self.rx.changed().await.ok()?;
        }
    }

    /// The latest full snapshot if it is newer than the last version returned, without waiting.
    pub fn try_next_full(&mut self) -> Option<Arc<TopicEvent>> {
        let mut state = lock(&self.state);
        let newer = state.latest.filter(|&v| self.wants_full(v));
        let full = newer.and_then(|_| state.materialize())?;
        self.seen = Some(full.version);
        Some(full)
    }

    /// Marks the current change notification as seen (before polling, so a change after the poll wakes `changed`).
    pub(crate) fn observe(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for the topic to change; `false` once the runtime has shut down.
    pub(crate) async fn changed(&mut self) -> bool {
        self.rx.changed().await.is_ok()
    }

    /// The version up to which this subscriber holds the topic (the last frame returned, or `skip_through`'s).
    pub(crate) fn received(&self) -> Option<u64> {
        self.seen.max(self.after)
    }

    /// The latest version the hub holds for this topic.
    pub(crate) fn held_version(&self) -> Option<u64> {
        lock(&self.state).latest
    }

    /// Forgets what was received: the next frame is a full snapshot of the latest version, even an unchanged one.
    pub(crate) fn resync(&mut self) {
        self.seen = None;
        self.after = None;
    }

    /// Waits for the next frame: a full snapshot first (newer than [`Subscription::skip_through`]'s version if set),
    /// then the patch to each next version, or a full snapshot of the latest version when the patches it missed are
    /// no longer held (or the change was published as a full snapshot). `None` once the runtime has shut down.
    /// Cancel-safe: a frame is only counted as received when it is returned.
    pub async fn next_frame(&mut self) -> Option<TopicFrame> {
        loop {
            self.rx.borrow_and_update();
            if let Some(frame) = self.poll_frame() {
                return Some(frame);
            }
            self.rx.changed().await.ok()?;
        }
    }

    /// The next frame if one is ready now (see [`Subscription::next_frame`]), without waiting: a subscriber that
    /// is behind takes the patches it missed one after another.
    pub fn try_next_frame(&mut self) -> Option<TopicFrame> {
        self.poll_frame()
    }

    fn wants_full(&self, latest: u64) -> bool {
        self.seen.is_none_or(|s| latest > s) && self.after.is_none_or(|a| latest > a)
    }

    fn poll_frame(&mut self) -> Option<TopicFrame> {
        let mut state = lock(&self.state);
        let latest = state.latest?;
        if let Some(seen) = self.seen {
            if seen >= latest {
                return None;
            }
            if let Some(p) = state.patch_to(seen + 1) {
                self.seen = Some(p.version);
                return Some(TopicFrame::Patch(p));
            }
        } else if !self.wants_full(latest) {
            return None;
        }
        let full = state.materialize()?;
        self.seen = Some(full.version);
        Some(TopicFrame::Full(full))
    }

    /// The latest snapshot, without waiting.
    pub fn latest(&self) -> Option<Arc<TopicEvent>> {
        lock(&self.state).materialize()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn full(version: u64, doc: serde_json::Value) -> TopicEvent {
        let raw = serde_json::value::to_raw_value(&doc).unwrap();
        TopicEvent::new("k", "key".into(), "t".into(), version, Arc::from(raw))
    }

    fn doc(frame: &TopicFrame) -> serde_json::Value {
        match frame {
            TopicFrame::Full(e) => e.snapshot_as().unwrap(),
            TopicFrame::Patch(p) => panic!("expected a full snapshot, got patch {}", p.version),
        }
    }

    fn append(hub: &TopicHub, version: u64, text: &str) -> Result<(), NeedFull> {
        hub.publish_patch("k", "key", "t", version, &[PatchOp::append("/text", text)])
    }

    #[tokio::test]
    async fn subscribers_get_a_full_snapshot_then_contiguous_patches() {
        let hub = TopicHub::default();
        let mut sub = hub.subscribe("k", "key", "t");
        assert_eq!(append(&hub, 1, "x"), Err(NeedFull), "nothing to patch yet");
        hub.publish(full(3, json!({ "text": "a" })));
        assert_eq!(append(&hub, 5, "x"), Err(NeedFull), "a gap");
        append(&hub, 4, "b").unwrap();
        append(&hub, 5, "c").unwrap();
        let first = sub.next_frame().await.unwrap();
        assert_eq!((first.version(), doc(&first)), (5, json!({ "text": "abc" })), "the latest, materialised");
        append(&hub, 6, "d").unwrap();
        match sub.next_frame().await.unwrap() {
            TopicFrame::Patch(p) => {
                assert_eq!((p.base(), p.version), (5, 6));
                assert_eq!(p.ops().unwrap(), vec![PatchOp::append("/text", "d")]);
            }
            other => panic!("expected a patch, got {other:?}"),
        }
        // A full snapshot (a structural change) reaches a patch subscriber as a full frame.
        hub.publish(full(7, json!({ "text": "new" })));
        assert_eq!(doc(&sub.next_frame().await.unwrap()), json!({ "text": "new" }));
        assert_eq!(hub.version("k", "key", "t"), Some(7));
    }

    #[tokio::test]
    async fn a_subscriber_behind_the_ring_gets_a_full_snapshot_never_a_gap() {
        let hub = TopicHub::default();
        let mut slow = hub.subscribe("k", "key", "t");
        hub.publish(full(1, json!({ "text": "" })));
        assert_eq!(slow.next_frame().await.unwrap().version(), 1);
        // Three ring budgets' worth of changes to a small snapshot while the subscriber reads nothing.
        let word = |v: u64| format!("{v}{}", "w".repeat(1000));
        let latest = 1 + (3 * MIN_RING_BYTES / 1000) as u64;
        for v in 2..=latest {
            hub.publish_patch("k", "key", "t", v, &[PatchOp::replace("/text", json!(word(v)))]).unwrap();
        }
        let state = hub.state("k", "key", "t").unwrap();
        let (bytes, oldest) = {
            let s = lock(&state);
            (s.ring_bytes, s.ring.front().unwrap().version)
        };
        assert!(bytes <= MIN_RING_BYTES && oldest > 2, "the ring keeps the recent patches only ({bytes} bytes)");
        let frame = slow.next_frame().await.unwrap();
        assert_eq!(frame.version(), latest);
        assert_eq!(doc(&frame), json!({ "text": word(latest) }), "the latest state, in one full snapshot");
        // A subscriber a few versions behind still gets the patches.
        let mut recent = hub.subscribe("k", "key", "t");
        recent.next_frame().await.unwrap();
        append(&hub, latest + 1, "y").unwrap();
        append(&hub, latest + 2, "z").unwrap();
        assert!(matches!(recent.next_frame().await, Some(TopicFrame::Patch(p)) if p.version == latest + 1));
        assert!(matches!(recent.next_frame().await, Some(TopicFrame::Patch(p)) if p.version == latest + 2));
    }

    #[tokio::test]
    async fn full_snapshot_readers_skip_to_the_latest_and_after_waits_for_newer() {
        let hub = TopicHub::default();
        let mut sub = hub.subscribe("k", "key", "t");
        let mut later = hub.subscribe("k", "key", "t");
        later.skip_through(2);
        hub.publish(full(1, json!({ "text": "a" })));
        append(&hub, 2, "b").unwrap();
        let ev = sub.next().await.unwrap();
        assert_eq!((ev.version, ev.snapshot_as::<serde_json::Value>().unwrap()), (2, json!({ "text": "ab" })));
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), later.next_frame()).await;
        assert!(waiting.is_err(), "nothing newer than 2 yet");
        append(&hub, 3, "c").unwrap();
        assert_eq!(doc(&later.next_frame().await.unwrap()), json!({ "text": "abc" }), "a full snapshot first");
        assert_eq!(hub.latest("k", "key", "t").unwrap().version, 3);
    }

    #[tokio::test]
    async fn a_patch_that_does_not_apply_makes_the_producer_publish_a_full_snapshot() {
        let hub = TopicHub::default();
        let mut sub = hub.subscribe("k", "key", "t");
        hub.publish(full(1, json!({ "text": "a" })));
        hub.publish_patch("k", "key", "t", 2, &[PatchOp::remove("/missing")]).unwrap();
        assert!(hub.latest("k", "key", "t").is_none(), "dropped, not served wrong");
        assert_eq!(append(&hub, 3, "x"), Err(NeedFull));
        hub.publish(full(3, json!({ "text": "fresh" })));
        assert_eq!(doc(&sub.next_frame().await.unwrap()), json!({ "text": "fresh" }));
    }

    #[tokio::test]
    async fn closing_the_hub_ends_every_stream() {
        let hub = TopicHub::default();
        let mut sub = hub.subscribe("k", "key", "t");
        hub.close_all();
        assert!(sub.next_frame().await.is_none());
        assert!(sub.next().await.is_none());
    }
}
