//! A runtime taking part in a cluster (`foundry serve --cluster`): the lease manager started with the runtime as its
//! [`Drain`] hook, a task that stops the live actors of every shard this node stops serving and resumes the outboxes
//! of every shard it gains, and the node's readiness ([`ClusterStatus`]) for `/readyz` and `/metrics`.
//!
//! Stopping follows the published ownership rather than the lease events: a shard stops being served when it is
//! handed off (published before its drain), released, refused, lost with the manager, or when its lease lapses on
//! this node's clock (`valid_until`), which no event announces if the manager's thread is stuck. The task sleeps
//! until the next lapse or the next change, so a lapsed shard's actors are stopped at their deadline, not at the
//! manager's next tick. (The router refuses new activations of those shards from the same instant, by itself.)

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use futures_util::future::BoxFuture;

use super::leases::{Drain, LeaseHooks, Leases, OnReleased, ShutdownReport};
use super::ownership::{LeaseStats, LeaseView};
use super::{ClusterConfig, ClusterError, Epoch};
use crate::runtime::{Router, Runtime, ShardId};

/// Whether a cluster node should get traffic, as `/readyz` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// Started, and not yet holding every shard rendezvous assigns it (a peer hands them over at its next tick, or
    /// they expire within the peer's lease): 503.
    AcquiringShards,
    Ready,
    /// Postgres has not answered since this node's leases lapsed: it serves nothing until it reaches Postgres
    /// again. 503.
    StoreUnreachable,
    /// The lease manager stopped (shut down, or superseded by a newer process with this node id): 503.
    Stopped,
}

impl Readiness {
    /// The `status` of `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Readiness::AcquiringShards => "acquiring_shards",
            Readiness::Ready => "ready",
            Readiness::StoreUnreachable => "store_unreachable",
            Readiness::Stopped => "stopped",
        }
    }
}

/// A read-only handle on a cluster node's state, for the web layer. Cheap to clone.
#[derive(Clone)]
pub struct ClusterStatus {
    node_id: String,
    view: LeaseView,
    stats: Arc<LeaseStats>,
    log: Arc<super::LogStats>,
    transport: Option<Arc<super::TransportStats>>,
}

impl ClusterStatus {
    /// The transport's counters (requests sent, "no responders" answers, requests served), with `--nats-url`.
    pub fn transport_stats(&self) -> Option<&super::TransportStats> {
        self.transport.as_deref()
    }

    /// The commit log's counters (appends, Postgres transactions, bytes, fence refusals, failures, round trips).
    pub fn log_stats(&self) -> &super::LogStats {
        &self.log
    }

    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Ready once the node has held every shard rendezvous assigns it (the end of its start-up), and from then on
    /// while it reaches Postgres or still serves a shard. Readiness is not withdrawn while a node takes over a
    /// failed peer's shards: every survivor would otherwise leave the load balancer at once.
    pub fn readiness(&self) -> Readiness {
        if self.view.stopped().is_some() {
            Readiness::Stopped
        } else if !self.stats.store_ok() && self.view.serving_count() == 0 {
            Readiness::StoreUnreachable
        } else if !self.stats.settled() {
            Readiness::AcquiringShards
        } else {
            Readiness::Ready
        }
    }

    /// Shards this node serves now.
    pub fn shards_served(&self) -> usize {
        self.view.serving_count()
    }

    pub fn stats(&self) -> &LeaseStats {
        &self.stats
    }

    /// The ownership this node publishes (also its runtime's router).
    pub fn view(&self) -> &LeaseView {
        &self.view
    }
}

/// The runtime as the lease manager's drain hook: a shard handed off is released only once its live actors have
/// stopped. Bound once the runtime exists (it needs the router to start); before that nothing can be live.
struct RuntimeDrain(Arc<OnceLock<Runtime>>);

impl Drain for RuntimeDrain {
    fn drain(&self, shard: ShardId, epoch: Epoch) -> BoxFuture<'static, ()> {
        let Some(runtime) = self.0.get() else { return Box::pin(std::future::ready(())) };
        let stop = runtime.stop_shard(shard);
        Box::pin(async move {
            let stopped = stop.await;
            if stopped > 0 {
                tracing::debug!(%shard, %epoch, actors = stopped, "drained the shard's live actors");
            }
        })
    }
}

/// This process's membership of the cluster: the lease manager and the runtime bound to it.
pub struct ClusterNode {
    leases: Leases,
    log: super::PgLog,
    transport: Option<super::NatsTransport>,
    serving: Option<tokio::task::JoinHandle<()>>,
    status: ClusterStatus,
    runtime: Arc<OnceLock<Runtime>>,
    follower: Option<tokio::task::JoinHandle<()>>,
}

impl ClusterNode {
    /// Starts the lease manager (see [`super::start`]): the node registers and starts acquiring at once. Start the
    /// runtime with [`ClusterNode::router`], then [`ClusterNode::attach`] it.
    pub async fn start(config: ClusterConfig, nats_url: Option<&str>) -> Result<ClusterNode, ClusterError> {
        let runtime = Arc::new(OnceLock::new());
        // Releases are announced on NATS once connected (the lease manager starts first: it checks the store).
        let announcer: Arc<OnceLock<super::NatsTransport>> = Arc::new(OnceLock::new());
        let released: OnReleased = {
            let announcer = announcer.clone();
            Arc::new(move |shards| {
                let transport = announcer.get().cloned();
                Box::pin(async move {
                    if let Some(t) = transport {
                        t.announce_released(shards).await;
                    }
                })
            })
        };
        let hooks =
            LeaseHooks { drain: Arc::new(RuntimeDrain(runtime.clone())), events: None, released: Some(released) };
        // NATS first: a joining node must hear the releases its peers make for it as soon as its manager starts.
        let transport = match nats_url {
            Some(url) => {
                let ca = config.nats_ca_file.as_deref();
                let transport = super::NatsTransport::connect_with(url, &config.node_id, ca).await?;
                let _ = announcer.set(transport.clone());
                Some(transport)
            }
            None => None,
        };
        let leases = super::start(config.clone(), hooks).await?;
        if let Some(transport) = &transport {
            // Another node released shards: this one may be their next owner, so it runs its round now.
            let nudger = leases.nudger();
            transport.on_released(Arc::new(move || nudger.nudge()));
        }
        let log = super::PgLog::start(&config, leases.view(), leases.owner()).await?;
        let status = ClusterStatus {
            node_id: leases.node_id().to_owned(),
            view: leases.view(),
            stats: leases.stats(),
            log: log.stats_handle(),
            transport: transport.as_ref().map(|t| t.stats()),
        };
        Ok(ClusterNode { leases, log, transport, serving: None, status, runtime, follower: None })
    }

    /// The runtime's transport (`RuntimeConfig::transport`), with a NATS URL: routed calls and outbox deliveries
    /// reach actors of shards other nodes serve.
    pub fn transport(&self) -> Option<Arc<dyn crate::runtime::Transport>> {
        self.transport.clone().map(|t| Arc::new(t) as Arc<dyn crate::runtime::Transport>)
    }

    /// The runtime's commit log (`RuntimeConfig::commit_log`): every commit is durable in PostgreSQL, fenced by
    /// this node's leases, before anyone hears of it; a shard's actors are rebuilt from it on whichever node
    /// serves the shard next.
    pub fn commit_log(&self) -> Arc<dyn crate::runtime::durable::CommitLog> {
        Arc::new(self.log.clone())
    }

    /// The runtime's router (`RuntimeConfig::router`): only the shards this node serves are activated here.
    pub fn router(&self) -> Arc<dyn Router> {
        Arc::new(self.leases.view())
    }

    /// Binds the runtime started with [`ClusterNode::router`]: shards handed off are drained through it, the live
    /// actors of every shard no longer served are stopped, and the outbox of every shard gained (the ones held now
    /// included) is resumed. Call it inside the actix system, once every kind is registered (recovery looks kinds
    /// up) and before anything calls an actor. A second call changes nothing.
    pub fn attach(&mut self, runtime: &Runtime) {
        if self.runtime.set(runtime.clone()).is_err() {
            tracing::warn!("the cluster node already has a runtime");
            return;
        }
        self.follower = Some(actix_rt::spawn(follow_ownership(self.leases.view(), runtime.clone())));
        if let Some(transport) = &self.transport {
            self.serving = Some(transport.serve(runtime.clone(), self.leases.view()));
        }
    }

    pub fn status(&self) -> ClusterStatus {
        self.status.clone()
    }

    /// Graceful stop (`Leases::shutdown`): leaves the node list, then per shard publishes it as not served, stops its
    /// live actors (the drain hook) and releases it, so peers take each shard over without waiting for its expiry.
    /// Call it after the HTTP server has drained and before `Runtime::shutdown`, which then finds nothing of these
    /// shards live.
    pub async fn shutdown(mut self) -> Result<ShutdownReport, ClusterError> {
        let report = self.leases.shutdown().await;
        // Every shard was drained (or the runtime's own shutdown comes next): nothing left to follow.
        if let Some(follower) = self.follower.take() {
            follower.abort();
        }
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
        if let Some(transport) = &self.transport {
            transport.close().await;
        }
        report
    }
}

/// Follows what this node serves: stops the live actors of each shard that stopped being served (or changed epoch),
/// and resumes the outboxes of each shard that started being served. Ends when the lease manager is gone.
async fn follow_ownership(mut view: LeaseView, runtime: Runtime) {
    let mut active: BTreeMap<ShardId, Epoch> = BTreeMap::new();
    loop {
        let ownership = view.snapshot_and_mark_seen();
        let served: BTreeMap<ShardId, Epoch> = ownership.serving(Instant::now()).into_iter().collect();
        let ended: Vec<ShardId> = active.iter().filter(|(s, e)| served.get(s) != Some(e)).map(|(s, _)| *s).collect();
        let gained: Vec<ShardId> = served.iter().filter(|(s, e)| active.get(s) != Some(e)).map(|(s, _)| *s).collect();
        stop(&runtime, ended);
        if !gained.is_empty() {
            let runtime = runtime.clone();
            actix_rt::spawn(async move {
                let count = gained.len();
                let report = runtime.recover_shards(gained).await;
                if report.resumed > 0 || !report.failed.is_empty() {
                    tracing::info!(
                        shards = count,
                        resumed = report.resumed,
                        failed = report.failed.len(),
                        "resumed outboxes of gained shards"
                    );
                }
            });
        }
        // The next lease to lapse on this node's clock with no new snapshot.
        let lapse = ownership.iter().filter(|(s, _)| served.contains_key(s)).map(|(_, h)| h.valid_until).min();
        active = served;
        let sleep = async {
            match lapse {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = view.changed() => {
                if !changed {
                    stop(&runtime, active.into_keys().collect());
                    return;
                }
            }
            () = sleep => {}
        }
    }
}

/// Stops the live actors of `shards` in the background.
fn stop(runtime: &Runtime, shards: Vec<ShardId>) {
    if shards.is_empty() {
        return;
    }
    let stopping = runtime.stop_shards(shards.iter().copied());
    actix_rt::spawn(async move {
        let stopped = stopping.await;
        if stopped > 0 {
            tracing::info!(
                shards = shards.len(),
                actors = stopped,
                "stopped the live actors of shards no longer served here"
            );
        }
    });
}
