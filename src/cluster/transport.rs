//! The transport between nodes on NATS core (spec §4.4): `runtime::Transport` as request/reply on the subject
//! `fdy.rpc.<shard>`. A node subscribes to the subjects of the shards it serves, in the queue group `fdy` (so during
//! a hand-over, when two nodes briefly listen, each request still reaches one of them), and unsubscribes when it
//! stops serving one. NATS answers "no responders" at once when nobody listens: the caller backs off and retries
//! until its deadline, which is how a call waits out a failover. Losing NATS costs availability, never safety: the
//! fence is in PostgreSQL.
//!
//! Requests are served on the actix system (the runtime activates actors there), each as its own task.
//!
//! Connections to another node's actors (`runtime::links`) add two subjects: each node's inbox `fdy.gw.<node id in
//! hex>`, where the nodes serving its subscribers' actors push their frames and events (request/reply: the answer is
//! the acknowledgement), and `fdy.gained`, where a node announces the shards it has just started serving so the
//! other nodes move their connections to it at once.
//!
//! **Owner hints.** The queue group alone has a blind spot: a node cut off from NATS without its connection closing
//! (a partition, a frozen process) stays a member of its shards' groups on the server until the server's pings give
//! up on it (minutes by default), so once its shards have a new owner the server still hands it about half of their
//! requests, each lost for a whole attempt. So every node also listens on `<inbox>.rpc.*`, and callers address the
//! node they last heard serves a shard there: from its `fdy.gained` announcement, or from the `Fdy-Node` header of an
//! answer that came through the queue group. A node asked directly for a shard it does not serve answers with an
//! empty body, and the caller falls back to the queue group at once. An announcement that the shard moved ends a
//! request still waiting on the previous owner ([`TransportError::Moved`]), and wakes callers backing off
//! ([`Transport::announced`]), so a call follows a failover as soon as the next owner says so.
//!
//! Releases are announced too (`fdy.released`, after the release committed in PostgreSQL): the nodes that should
//! take the shards over run their lease round at once instead of at their next tick.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{ClusterError, LeaseView};
use crate::runtime::{Runtime, ShardId, Transport, TransportError};

/// The queue group every node's shard subscriptions join.
const QUEUE: &str = "fdy";

/// Where nodes announce the shards they just started serving.
const GAINED: &str = "fdy.gained";

/// Where nodes announce the shards they just released (the lease row is free in PostgreSQL).
const RELEASED: &str = "fdy.released";

/// The header naming the node that answered (its inbox), so the caller addresses it directly next time.
const NODE_HEADER: &str = "Fdy-Node";

/// How long a request still waits for the previous owner's answer after a new owner announced itself: an answer the
/// previous owner sent before it released the shard may be on its way.
const MOVED_GRACE: Duration = Duration::from_millis(100);

/// How often the served shards are compared with the subscriptions at the latest (they are at once when the
/// published ownership changes; a lapse on this node's clock changes nothing published).
const FOLLOW_EVERY: Duration = Duration::from_millis(100);

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct TransportStats {
    /// Requests this node sent to another.
    pub sent: AtomicU64,
    /// Of those, answered "nobody serves this shard" (retried).
    pub no_responders: AtomicU64,
    /// Requests from other nodes this node served.
    pub served: AtomicU64,
    /// Requests sent straight to the node last heard serving the shard (a subset of `sent`).
    pub direct: AtomicU64,
    /// Of those, answered "not served here" or unanswered: the hint was stale.
    pub stale_hints: AtomicU64,
    /// Requests given up on the node asked because another announced it serves the shard now.
    pub moved: AtomicU64,
}

/// Which node serves each shard, as last heard (a hint: the owner decides, and answers otherwise if it is stale).
#[derive(Debug)]
struct Owners {
    by_shard: Mutex<HashMap<u16, Hint>>,
    /// Bumped by every announcement that gives a shard a new owner, to wake whoever waits on one.
    announcements: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Clone)]
struct Hint {
    inbox: String,
    /// The announcement count when this shard's owner was last announced (0: learned from an answer only).
    announced: u64,
}

impl Owners {
    fn new() -> Self {
        Owners { by_shard: Mutex::new(HashMap::new()), announcements: tokio::sync::watch::channel(0).0 }
    }

    fn get(&self, shard: ShardId) -> Option<Hint> {
        self.by_shard.lock().ok()?.get(&shard.0).cloned()
    }

    /// `inbox` announced it serves `shards` now.
    fn announced(&self, inbox: &str, shards: impl IntoIterator<Item = u16>) {
        let Ok(mut map) = self.by_shard.lock() else { return };
        let next = *self.announcements.borrow() + 1;
        let mut changed = false;
        for shard in shards {
            if map.get(&shard).is_none_or(|h| h.inbox != inbox || h.announced == 0) {
                map.insert(shard, Hint { inbox: inbox.to_owned(), announced: next });
                changed = true;
            }
        }
        drop(map);
        if changed {
            self.announcements.send_modify(|n| *n = next);
        }
    }

    /// `inbox` answered a request for `shard`: the hint for the next one, announcing nothing (that node may have
    /// served it all along).
    fn answered(&self, inbox: &str, shard: ShardId) {
        if let Ok(mut map) = self.by_shard.lock() {
            match map.get_mut(&shard.0) {
                Some(h) if h.inbox == inbox => {}
                Some(h) => h.inbox = inbox.to_owned(),
                None => drop(map.insert(shard.0, Hint { inbox: inbox.to_owned(), announced: 0 })),
            }
        }
    }

    /// The hint `inbox` for `shard` proved stale (unless it was replaced meanwhile).
    fn forget(&self, shard: ShardId, inbox: &str) {
        if let Ok(mut map) = self.by_shard.lock() {
            if map.get(&shard.0).is_some_and(|h| h.inbox == inbox) {
                map.remove(&shard.0);
            }
        }
    }

    /// Resolves once a node other than `asked` (any node, if `None`) is announced to serve `shard` after this call.
    fn moved(self: Arc<Self>, shard: ShardId, asked: Option<String>) -> BoxFuture<'static, ()> {
        let mut announcements = self.announcements.subscribe();
        let since = *announcements.borrow_and_update();
        Box::pin(async move {
            loop {
                if announcements.changed().await.is_err() {
                    return std::future::pending().await;
                }
                let hint = self.get(shard);
                if hint.is_some_and(|h| h.announced > since && Some(&h.inbox) != asked.as_ref()) {
                    return;
                }
            }
        })
    }
}

/// A node's announcement on [`GAINED`] or [`RELEASED`]: `node` is its inbox.
#[derive(serde::Serialize, serde::Deserialize)]
struct Gained {
    node: String,
    shards: Vec<u16>,
}

/// What a node does when another announces it released shards: run its lease round now (see
/// `Leases::nudger`). Set with [`NatsTransport::on_released`].
pub type OnPeerRelease = Arc<dyn Fn() + Send + Sync>;

/// A node's NATS connection, as the runtime's transport.
#[derive(Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    stats: Arc<TransportStats>,
    /// This node's inbox subject (see the module doc).
    inbox: String,
    owners: Arc<Owners>,
    on_released: Arc<Mutex<PeerReleases>>,
}

/// What to do when another node announces a release, and whether one was heard before that was set (a node joining
/// hears its peers' releases from the moment it connects, before its lease manager exists).
#[derive(Default)]
struct PeerReleases {
    hook: Option<OnPeerRelease>,
    heard: bool,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport").finish_non_exhaustive()
    }
}

fn subject(shard: ShardId) -> String {
    format!("fdy.rpc.{}", shard.0)
}

/// Where the node with `inbox` takes requests for `shard` addressed to it.
fn direct_subject(inbox: &str, shard: ShardId) -> String {
    format!("{inbox}.rpc.{}", shard.0)
}

impl NatsTransport {
    /// Connects to NATS (`nats://host:port`, comma-separated for a cluster). The client reconnects by itself.
    pub async fn connect(url: &str, node_id: &str) -> Result<NatsTransport, ClusterError> {
        NatsTransport::connect_with(url, node_id, None).await
    }

    /// [`NatsTransport::connect`], over TLS verified against `ca_file` (PEM) and the system's roots when it is given
    /// (a `tls://` URL asks for TLS with the system's roots alone).
    pub async fn connect_with(
        url: &str,
        node_id: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<NatsTransport, ClusterError> {
        let mut options = async_nats::ConnectOptions::new();
        if let Some(ca) = ca_file {
            options = options.add_root_certificates(ca.to_path_buf()).require_tls(true);
        }
        let client = options
            .name(format!("foundry {node_id}"))
            // Our callers bound each request themselves (`Transport::request`'s timeout).
            .request_timeout(None)
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .map_err(|e| ClusterError::Transport(e.to_string()))?;
        // Hex keeps any node id a single subject token.
        let hex: String = node_id.bytes().map(|b| format!("{b:02x}")).collect();
        let this = NatsTransport {
            client,
            stats: Arc::new(TransportStats::default()),
            inbox: format!("fdy.gw.{hex}"),
            owners: Arc::new(Owners::new()),
            on_released: Arc::new(Mutex::new(PeerReleases::default())),
        };
        // From now on, not only once serving: a joining node must hear the releases its peers make for it while its
        // lease manager starts. The task ends with the connection.
        match this.client.subscribe(RELEASED).await {
            Ok(sub) => drop(tokio::spawn(this.clone().hear_releases(sub))),
            Err(e) => tracing::warn!(error = %e, "cannot subscribe to release announcements"),
        }
        Ok(this)
    }

    /// Runs `hook` whenever another node announces it released shards (the lease manager's nudge), and once now if
    /// one was announced since this transport connected.
    pub fn on_released(&self, hook: OnPeerRelease) {
        let heard = match self.on_released.lock() {
            Ok(mut slot) => {
                slot.hook = Some(hook.clone());
                std::mem::take(&mut slot.heard)
            }
            Err(_) => false,
        };
        if heard {
            hook();
        }
    }

    /// Tells every node that these shards' leases were just released, so their next owner acquires them at once.
    pub async fn announce_released(&self, shards: Vec<ShardId>) {
        let body = Gained { node: self.inbox.clone(), shards: shards.into_iter().map(|s| s.0).collect() };
        let body = serde_json::to_vec(&body).unwrap_or_default();
        if let Err(e) = self.client.publish(RELEASED, body.into()).await {
            tracing::debug!(error = %e, "could not announce released shards (peers acquire at their next tick)");
        }
    }

    /// Leaves NATS: every subscription is removed on the server (requests go to the shards' next owners), then the
    /// connection closes. For a graceful stop after the node stopped serving; a crash gets the same from the server
    /// when the connection drops.
    pub async fn close(&self) {
        if let Err(e) = self.client.drain().await {
            tracing::debug!(error = %e, "closing the NATS connection");
        }
    }

    pub fn stats(&self) -> Arc<TransportStats> {
        self.stats.clone()
    }

    /// Serves, for as long as the returned task runs, the shards `view` says this node serves: one subscription per
    /// shard, each request answered by `runtime` on its local path. Spawn inside the actix system.
    pub fn serve(&self, runtime: Runtime, mut view: LeaseView) -> tokio::task::JoinHandle<()> {
        let this = self.clone();
        actix_rt::spawn(async move {
            let mut subscribed = Subscriptions::default();
            // Pushes for this node's links, and other nodes' announcements: for as long as this task runs.
            let mut side = AbortOnDrop::default();
            match this.client.subscribe(this.inbox.clone()).await {
                Ok(sub) => side.0.push(actix_rt::spawn(this.clone().take_pushes(sub, runtime.clone()))),
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to this node's inbox: no links to other nodes"),
            }
            match this.client.subscribe(GAINED).await {
                Ok(sub) => side.0.push(actix_rt::spawn(this.clone().hear_gains(sub, runtime.clone()))),
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to shard announcements"),
            }
            match this.client.subscribe(format!("{}.rpc.*", this.inbox)).await {
                Ok(sub) => side.0.push(actix_rt::spawn(this.clone().answer_direct(sub, runtime.clone(), view.clone()))),
                Err(e) => tracing::warn!(error = %e, "cannot subscribe to requests addressed to this node"),
            }
            loop {
                let served: BTreeMap<ShardId, ()> = view.serving().into_iter().map(|(s, _)| (s, ())).collect();
                subscribed.0.retain(|shard, task| {
                    let keep = served.contains_key(shard) && !task.is_finished();
                    if !keep {
                        task.abort();
                    }
                    keep
                });
                let mut gained = Vec::new();
                for shard in served.keys() {
                    if subscribed.0.contains_key(shard) {
                        continue;
                    }
                    match this.client.queue_subscribe(subject(*shard), QUEUE.to_owned()).await {
                        Ok(sub) => {
                            subscribed.0.insert(*shard, actix_rt::spawn(this.clone().answer(sub, runtime.clone())));
                            gained.push(shard.0);
                        }
                        Err(e) => tracing::warn!(%shard, error = %e, "cannot subscribe to the shard's requests"),
                    }
                }
                if !gained.is_empty() {
                    this.announce(gained).await;
                }
                if view.stopped().is_some() {
                    return;
                }
                tokio::select! {
                    changed = view.changed() => if !changed {
                        tokio::time::sleep(FOLLOW_EVERY).await;
                    },
                    () = tokio::time::sleep(FOLLOW_EVERY) => {}
                }
            }
        })
    }

    /// Tells every node (this one too) that these shards are served here now.
    async fn announce(&self, shards: Vec<u16>) {
        let body = serde_json::to_vec(&Gained { node: self.inbox.clone(), shards }).unwrap_or_default();
        if let Err(e) = self.client.publish(GAINED, body.into()).await {
            tracing::debug!(error = %e, "could not announce gained shards (connections follow after a silence)");
        }
    }

    async fn take_pushes(self, mut sub: async_nats::Subscriber, runtime: Runtime) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            // Answered in order, here: a link's pushes come one at a time anyway, and taking one never waits.
            let ack = runtime.serve_push(&msg.payload);
            if let Err(e) = self.client.publish(reply, ack.into()).await {
                tracing::debug!(error = %e, "could not acknowledge a push");
            }
        }
    }

    async fn hear_gains(self, mut sub: async_nats::Subscriber, runtime: Runtime) {
        while let Some(msg) = sub.next().await {
            match serde_json::from_slice::<Gained>(&msg.payload) {
                Ok(g) => {
                    self.owners.announced(&g.node, g.shards.iter().copied());
                    runtime.shards_gained(&g.node, &g.shards.into_iter().map(ShardId).collect::<Vec<_>>())
                }
                Err(e) => tracing::warn!(error = %e, "an announcement that does not decode"),
            }
        }
    }

    async fn hear_releases(self, mut sub: async_nats::Subscriber) {
        while let Some(msg) = sub.next().await {
            match serde_json::from_slice::<Gained>(&msg.payload) {
                Ok(r) if r.node != self.inbox => {
                    let hook = match self.on_released.lock() {
                        Ok(mut slot) => {
                            slot.heard |= slot.hook.is_none();
                            slot.hook.clone()
                        }
                        Err(_) => None,
                    };
                    if let Some(hook) = hook {
                        hook();
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "a release announcement that does not decode"),
            }
        }
    }

    async fn answer(self, mut sub: async_nats::Subscriber, runtime: Runtime) {
        while let Some(msg) = sub.next().await {
            self.serve_one(msg, &runtime);
        }
    }

    /// Requests addressed to this node (`<inbox>.rpc.<shard>`): served if this node serves the shard, else answered
    /// with an empty body so the caller turns to the queue group at once.
    async fn answer_direct(self, mut sub: async_nats::Subscriber, runtime: Runtime, view: LeaseView) {
        while let Some(msg) = sub.next().await {
            let shard = msg.subject.rsplit('.').next().and_then(|s| s.parse::<u16>().ok()).map(ShardId);
            if shard.is_some_and(|s| view.is_serving(s).is_some()) {
                self.serve_one(msg, &runtime);
            } else if let Some(reply) = msg.reply {
                if let Err(e) = self.client.publish(reply, bytes::Bytes::new()).await {
                    tracing::debug!(error = %e, "could not answer a request for a shard not served here");
                }
            }
        }
    }

    /// Runs one request on its own task and answers it, naming this node (see [`NODE_HEADER`]).
    fn serve_one(&self, msg: async_nats::Message, runtime: &Runtime) {
        let Some(reply) = msg.reply else { return };
        self.stats.served.fetch_add(1, Ordering::Relaxed);
        let (client, runtime, inbox) = (self.client.clone(), runtime.clone(), self.inbox.clone());
        actix_rt::spawn(async move {
            let answer = runtime.serve_remote(&msg.payload).await;
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(NODE_HEADER, inbox.as_str());
            if let Err(e) = client.publish_with_headers(reply, headers, answer.into()).await {
                tracing::warn!(error = %e, "could not send an answer back");
            }
        });
    }

    /// What ends a request early (see [`TransportError::Moved`]): only for requests safe to send again.
    fn moved(&self, shard: ShardId, asked: Option<String>, movable: bool) -> BoxFuture<'static, ()> {
        if movable {
            self.owners.clone().moved(shard, asked)
        } else {
            Box::pin(std::future::pending())
        }
    }

    /// Sends a request for `shard`: to the node last heard serving it, else (or if that hint is stale) to the
    /// shard's queue group.
    fn send(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
        movable: bool,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let this = self.clone();
        Box::pin(async move {
            this.stats.sent.fetch_add(1, Ordering::Relaxed);
            let deadline = tokio::time::Instant::now() + timeout;
            let body = bytes::Bytes::from(body);
            if let Some(hint) = this.owners.get(shard) {
                if let Some(answer) = this.ask_direct(hint.inbox, shard, body.clone(), deadline, movable).await? {
                    return Ok(answer);
                }
            }
            this.ask_group(shard, body, deadline, movable).await
        })
    }

    /// One request to the node last heard serving `shard`: `Ok(None)` when the hint was stale (that node answered
    /// "not served here", or nobody listens there any more), so the caller asks the queue group instead.
    async fn ask_direct(
        &self,
        inbox: String,
        shard: ShardId,
        body: bytes::Bytes,
        deadline: tokio::time::Instant,
        movable: bool,
    ) -> Result<Option<Vec<u8>>, TransportError> {
        self.stats.direct.fetch_add(1, Ordering::Relaxed);
        let ask = tokio::time::timeout_at(deadline, self.client.request(direct_subject(&inbox, shard), body));
        let moved = self.moved(shard, Some(inbox.clone()), movable);
        let outcome = tokio::select! {
            answer = ask => answer,
            () = moved_then_grace(moved, deadline) => {
                self.stats.moved.fetch_add(1, Ordering::Relaxed);
                return Err(TransportError::Moved(shard));
            }
        };
        let stale = || {
            self.stats.stale_hints.fetch_add(1, Ordering::Relaxed);
            self.owners.forget(shard, &inbox);
        };
        match outcome {
            Ok(Ok(msg)) if msg.payload.is_empty() => {
                stale();
                Ok(None)
            }
            Ok(Ok(msg)) => Ok(Some(msg.payload.to_vec())),
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
                stale();
                Ok(None)
            }
            Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::TimedOut => {
                stale();
                Err(TransportError::Timeout(shard))
            }
            Ok(Err(e)) => Err(TransportError::Failed(e.to_string())),
            Err(_) => {
                stale();
                Err(TransportError::Timeout(shard))
            }
        }
    }

    /// One request to the shard's queue group; the node that answers becomes the shard's hint.
    async fn ask_group(
        &self,
        shard: ShardId,
        body: bytes::Bytes,
        deadline: tokio::time::Instant,
        movable: bool,
    ) -> Result<Vec<u8>, TransportError> {
        let ask = tokio::time::timeout_at(deadline, self.client.request(subject(shard), body));
        // A node announcing the shard while this waits: the member asked may be a cut-off previous owner.
        let moved = self.moved(shard, None, movable);
        let outcome = tokio::select! {
            answer = ask => answer,
            () = moved_then_grace(moved, deadline) => {
                self.stats.moved.fetch_add(1, Ordering::Relaxed);
                return Err(TransportError::Moved(shard));
            }
        };
        match outcome {
            Err(_) => Err(TransportError::Timeout(shard)),
            Ok(Ok(msg)) => {
                if let Some(node) = msg.headers.as_ref().and_then(|h| h.get(NODE_HEADER)) {
                    self.owners.answered(node.as_str(), shard);
                }
                Ok(msg.payload.to_vec())
            }
            Ok(Err(e)) => match e.kind() {
                async_nats::RequestErrorKind::NoResponders => {
                    self.stats.no_responders.fetch_add(1, Ordering::Relaxed);
                    Err(TransportError::NoResponders(shard))
                }
                async_nats::RequestErrorKind::TimedOut => Err(TransportError::Timeout(shard)),
                _ => Err(TransportError::Failed(e.to_string())),
            },
        }
    }
}

/// `moved`, then [`MOVED_GRACE`] more (never past `deadline`, after which the request's own timeout answers).
async fn moved_then_grace(moved: BoxFuture<'static, ()>, deadline: tokio::time::Instant) {
    moved.await;
    tokio::time::sleep_until(deadline.min(tokio::time::Instant::now() + MOVED_GRACE)).await;
    if tokio::time::Instant::now() >= deadline {
        std::future::pending::<()>().await;
    }
}

/// The shards' answering tasks; each holds its subscription. Aborted together when serving ends (the serving task
/// returned or was aborted), so a node that stops serving stops answering at once.
#[derive(Default)]
struct Subscriptions(BTreeMap<ShardId, tokio::task::JoinHandle<()>>);

/// Tasks that end with their holder.
#[derive(Default)]
struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for task in self.0.values() {
            task.abort();
        }
    }
}

impl Transport for NatsTransport {
    fn inbox(&self) -> Option<String> {
        Some(self.inbox.clone())
    }

    fn push(
        &self,
        inbox: &str,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let (client, inbox) = (self.client.clone(), inbox.to_owned());
        Box::pin(async move {
            let late = || TransportError::Failed(format!("no answer from {inbox} in time"));
            match tokio::time::timeout(timeout, client.request(inbox.clone(), body.into())).await {
                Err(_) => Err(late()),
                Ok(Ok(msg)) => Ok(msg.payload.to_vec()),
                Ok(Err(e)) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => Err(TransportError::Unreachable(inbox)),
                    async_nats::RequestErrorKind::TimedOut => Err(late()),
                    _ => Err(TransportError::Failed(e.to_string())),
                },
            }
        })
    }

    fn request(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        self.send(shard, body, timeout, false)
    }

    fn request_movable(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        self.send(shard, body, timeout, true)
    }

    fn announced(&self, shard: ShardId) -> BoxFuture<'static, ()> {
        self.owners.clone().moved(shard, None)
    }
}
