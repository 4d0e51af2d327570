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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::StreamExt;

use super::{ClusterError, LeaseView};
use crate::runtime::{Runtime, ShardId, Transport, TransportError};

/// The queue group every node's shard subscriptions join.
const QUEUE: &str = "fdy";

/// Where nodes announce the shards they just started serving.
const GAINED: &str = "fdy.gained";

/// How often the served shards are compared with the subscriptions (a shard just acquired is served within this;
/// callers meanwhile get "no responders" and retry).
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
}

/// A node's NATS connection, as the runtime's transport.
#[derive(Clone)]
pub struct NatsTransport {
    client: async_nats::Client,
    stats: Arc<TransportStats>,
    /// This node's inbox subject (see the module doc).
    inbox: String,
}

/// A node's announcement on [`GAINED`].
#[derive(serde::Serialize, serde::Deserialize)]
struct Gained {
    node: String,
    shards: Vec<u16>,
}

impl std::fmt::Debug for NatsTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsTransport").finish_non_exhaustive()
    }
}

fn subject(shard: ShardId) -> String {
    format!("fdy.rpc.{}", shard.0)
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
        Ok(NatsTransport { client, stats: Arc::new(TransportStats::default()), inbox: format!("fdy.gw.{hex}") })
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
    pub fn serve(&self, runtime: Runtime, view: LeaseView) -> tokio::task::JoinHandle<()> {
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
                tokio::time::sleep(FOLLOW_EVERY).await;
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
                Ok(g) => runtime.shards_gained(&g.node, &g.shards.into_iter().map(ShardId).collect::<Vec<_>>()),
                Err(e) => tracing::warn!(error = %e, "an announcement that does not decode"),
            }
        }
    }

    async fn answer(self, mut sub: async_nats::Subscriber, runtime: Runtime) {
        while let Some(msg) = sub.next().await {
            let Some(reply) = msg.reply else { continue };
            self.stats.served.fetch_add(1, Ordering::Relaxed);
            let (client, runtime) = (self.client.clone(), runtime.clone());
            actix_rt::spawn(async move {
                let answer = runtime.serve_remote(&msg.payload).await;
                if let Err(e) = client.publish(reply, answer.into()).await {
                    tracing::warn!(error = %e, "could not send an answer back");
                }
            });
        }
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
        let (client, stats) = (self.client.clone(), self.stats.clone());
        Box::pin(async move {
            stats.sent.fetch_add(1, Ordering::Relaxed);
            match tokio::time::timeout(timeout, client.request(subject(shard), body.into())).await {
                Err(_) => Err(TransportError::Timeout(shard)),
                Ok(Ok(msg)) => Ok(msg.payload.to_vec()),
                Ok(Err(e)) => match e.kind() {
                    async_nats::RequestErrorKind::NoResponders => {
                        stats.no_responders.fetch_add(1, Ordering::Relaxed);
                        Err(TransportError::NoResponders(shard))
                    }
                    async_nats::RequestErrorKind::TimedOut => Err(TransportError::Timeout(shard)),
                    _ => Err(TransportError::Failed(e.to_string())),
                },
            }
        })
    }
}
