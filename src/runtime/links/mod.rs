//! Connections across nodes (cluster mode): a subscriber on this node (a WebSocket client, a flow waiting for a
//! state) connected to an actor another node serves, and kept connected while the actor's shard moves.
//!
//! Every connection made in cluster mode is a **link**: the subscriber's [`Connection`](super::Connection) reads this
//! node's topic hub and an event queue of its own, and a driver task (`registry/linked.rs`) keeps one *upstream*
//! feeding them
//! — a connection of the actor itself, made on whichever node serves it:
//! - served here: an ordinary local connection; its frames reach the shared hub directly, the driver moves its
//!   events to the link's queue;
//! - served elsewhere: a `Connect` request to the shard's subject makes the connection on the owner, which pushes
//!   its frames and events to this node's inbox (`upstream.rs`), one push at a time, each acknowledged. The
//!   acknowledgement is the flow control (a slow gateway makes the owner's connection fall behind, which coalesces
//!   into a full snapshot as for a slow local subscriber) and the owner's liveness check of the gateway (nobody at
//!   the inbox: the connection ends there and `on_disconnect` runs).
//!
//! A link moves to a new upstream when its shard moves: a node that gains shards announces it (the transport's
//! notice reaches [`Runtime::shards_gained`](super::Runtime::shards_gained)), a node that stops serving shards tells
//! its own links (`relink_in`) and its upstreams' gateways (`Closed { gone: false }`), and a remote upstream silent
//! for [`SILENCE`] (it pings every [`PING_EVERY`]) is replaced. Topic versions never go backwards across a move: a
//! version is pushed only after its commit is in the commit log, so the next owner restores at least that version,
//! and the hub ignores a snapshot not newer than what it holds. Events emitted while a link is between upstreams are
//! not delivered (as for a client that was disconnected); the state they describe arrives with the next snapshot.
//!
//! Each push carries the link's attempt number (`gen`): a push of an upstream the link has moved on from is answered
//! `Unknown`, and that upstream ends.

mod upstream;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::sync::Notify;

use super::connection::{Event, EventQueue};
use super::patch::PatchOp;
use super::placement::ShardId;
use super::shards::ShardMask;
use super::system::Shared;
use super::topic::{lock, TopicEvent};

pub(crate) use upstream::{serve_connect, Upstream, Upstreams, WireConnectError};

/// An owner pushes at least this often (a `Ping` when nothing else happened).
pub(crate) const PING_EVERY: Duration = Duration::from_secs(10);
/// A remote upstream not heard from for this long is replaced.
pub(crate) const SILENCE: Duration = Duration::from_secs(30);
/// How long an owner waits for a gateway to take one push (then the connection ends there).
pub(crate) const PUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// One push from an owner to a gateway (JSON).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Push {
    pub link: u64,
    pub gen: u64,
    pub item: PushItem,
}

/// Externally tagged: the raw JSON values inside cannot be read through an internally tagged enum's buffering.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PushItem {
    Full {
        version: u64,
        snapshot: Box<RawValue>,
    },
    Patch {
        version: u64,
        ops: Box<RawValue>,
    },
    Event {
        topic: String,
        name: String,
        version: u64,
        payload: Box<RawValue>,
    },
    Lagged {
        missed: u64,
    },
    Ping,
    /// The upstream ended: `gone`, its actor was destroyed (the link ends too); else it left the owner (link again).
    Closed {
        gone: bool,
    },
}

/// A gateway's answer to a push.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) enum PushAck {
    Ok,
    /// A patch that does not follow what this node holds: send a full snapshot next.
    NeedFull,
    /// No such link (or not at this attempt): end the upstream.
    Unknown,
}

/// Where a link's frames come from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// Being (re)established.
    None,
    Local,
    /// Pushed by the node with this inbox.
    Remote(String),
}

struct LinkState {
    gen: u64,
    source: Source,
    heard: Instant,
}

/// One subscriber's link (see the module doc).
pub(crate) struct Link {
    pub id: u64,
    pub kind: &'static str,
    pub key: String,
    pub topic: String,
    pub shard: ShardId,
    pub queue: Arc<EventQueue>,
    state: Mutex<LinkState>,
    /// Asks the driver to move to a new upstream (or, with `closed`, to end).
    pub(crate) relink: Notify,
    /// The subscriber dropped its connection.
    pub(crate) closed: AtomicBool,
    /// The actor is gone (destroyed on its node): the driver ends the link.
    pub(crate) gone: AtomicBool,
}

impl Link {
    /// Starts attempt `gen + 1` (pushes of earlier ones are refused from now on).
    pub(crate) fn next_gen(&self) -> u64 {
        let mut st = lock(&self.state);
        st.gen += 1;
        st.source = Source::None;
        st.heard = Instant::now();
        st.gen
    }

    pub(crate) fn set_source(&self, gen: u64, source: Source) {
        let mut st = lock(&self.state);
        if st.gen == gen {
            st.source = source;
            st.heard = Instant::now();
        }
    }

    pub(crate) fn silent_for(&self) -> Duration {
        lock(&self.state).heard.elapsed()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The links of this node's subscribers, by id.
#[derive(Default)]
pub(crate) struct Links {
    map: Mutex<HashMap<u64, Arc<Link>>>,
}

impl Links {
    pub(crate) fn insert(&self, id: u64, kind: &'static str, key: String, topic: String, shard: ShardId) -> Arc<Link> {
        let link = Arc::new(Link {
            id,
            kind,
            key,
            topic,
            shard,
            queue: Arc::default(),
            state: Mutex::new(LinkState { gen: 0, source: Source::None, heard: Instant::now() }),
            relink: Notify::new(),
            closed: AtomicBool::new(false),
            gone: AtomicBool::new(false),
        });
        lock(&self.map).insert(id, link.clone());
        link
    }

    pub(crate) fn remove(&self, id: u64) {
        lock(&self.map).remove(&id);
    }

    fn get(&self, id: u64) -> Option<Arc<Link>> {
        lock(&self.map).get(&id).cloned()
    }

    /// Links open now (metrics, tests).
    pub(crate) fn len(&self) -> usize {
        lock(&self.map).len()
    }

    fn matching(&self, mut pred: impl FnMut(&Link) -> bool) -> Vec<Arc<Link>> {
        lock(&self.map).values().filter(|l| pred(l)).cloned().collect()
    }

    /// This node stopped serving `mask`'s shards: its links to actors there move on.
    pub(crate) fn relink_in(&self, mask: &ShardMask) {
        for link in self.matching(|l| mask.contains(l.shard)) {
            link.relink.notify_one();
        }
    }

    /// The node with inbox `by` (this one too) now serves `shards`: links fed from anywhere else move to it.
    fn gained(&self, by: &str, me: Option<&str>, shards: &ShardMask) {
        let moved = |l: &Link| {
            shards.contains(l.shard)
                && match &lock(&l.state).source {
                    Source::Remote(owner) => owner != by,
                    Source::Local => me != Some(by),
                    Source::None => false,
                }
        };
        for link in self.matching(moved) {
            link.relink.notify_one();
        }
    }
}

impl Shared {
    /// Takes one push for a link of this node (see [`Push`]); answers its acknowledgement.
    pub(crate) fn take_push(&self, push: Push) -> PushAck {
        let Some(link) = self.links.get(push.link) else { return PushAck::Unknown };
        {
            let mut st = lock(&link.state);
            if st.gen != push.gen || link.is_closed() {
                return PushAck::Unknown;
            }
            st.heard = Instant::now();
        }
        let (kind, key, topic) = (link.kind, link.key.as_str(), link.topic.as_str());
        match push.item {
            PushItem::Full { version, snapshot } => {
                self.hub.publish(TopicEvent::new(kind, key.to_owned(), topic.to_owned(), version, Arc::from(snapshot)));
            }
            PushItem::Patch { version, ops } => {
                if self.hub.version(kind, key, topic).is_some_and(|held| held >= version) {
                    return PushAck::Ok;
                }
                let Ok(ops) = serde_json::from_str::<Vec<PatchOp>>(ops.get()) else { return PushAck::NeedFull };
                if self.hub.publish_patch(kind, key, topic, version, &ops).is_err() {
                    return PushAck::NeedFull;
                }
            }
            PushItem::Event { topic, name, version, payload } => {
                link.queue.push(Arc::new(Event { topic, name, payload: Arc::from(payload), version }));
            }
            PushItem::Lagged { missed } => link.queue.push_gap(missed),
            PushItem::Ping => {}
            PushItem::Closed { gone: true } => {
                // The actor is gone: so is every subscription to its topic here, and the versions held for it.
                self.hub.close_topic(kind, key, topic);
                link.queue.close();
                link.gone.store(true, Ordering::Release);
                link.relink.notify_one();
            }
            PushItem::Closed { gone: false } => link.relink.notify_one(),
        }
        PushAck::Ok
    }
}

impl super::Runtime {
    /// Takes a push from the node serving the actor of one of this node's links (the transport calls it for each
    /// message at [`Transport::inbox`](super::Transport::inbox)); answers the acknowledgement to send back.
    pub fn serve_push(&self, body: &[u8]) -> Vec<u8> {
        let ack = match serde_json::from_slice::<Push>(body) {
            Ok(push) => self.shared().take_push(push),
            Err(e) => {
                tracing::warn!(error = %e, "a push that does not decode");
                PushAck::Unknown
            }
        };
        serde_json::to_vec(&ack).unwrap_or_default()
    }

    /// The node whose inbox is `by` (this one included) now serves `shards`: links to actors there that another
    /// node fed move to it at once, instead of waiting for their old upstream's silence.
    pub fn shards_gained(&self, by: &str, shards: &[ShardId]) {
        let shared = self.shared();
        let me = shared.config.transport.as_ref().and_then(|t| t.inbox());
        shared.links.gained(by, me.as_deref(), &ShardMask::of(shards.iter().copied()));
    }

    /// Connections of this node's subscribers that are links (cluster mode), and connections this node serves for
    /// other nodes' subscribers: `(links, upstreams)`.
    pub fn link_counts(&self) -> (usize, usize) {
        (self.shared().links.len(), self.shared().upstreams.len())
    }
}
