//! One cluster node in the test process, as `serve --cluster` assembles one: a lease manager (short leases), the
//! fenced commit log and the NATS transport on the given servers, a runtime routed by the leases, and the transport
//! serving the node's shards, its inbox and the shard announcements.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use foundry::cluster::{self, rendezvous, LeaseHooks, Leases, NatsTransport, PgLog};
use foundry::runtime::{shard_of, Runtime, RuntimeConfig};

use super::{nats::NatsServer, postgres::PgServer};

pub struct TestNode {
    pub leases: Option<Leases>,
    pub rt: Runtime,
    pub serving: tokio::task::JoinHandle<()>,
    pub transport: NatsTransport,
}

impl TestNode {
    /// Starts the node `id` with its data in `dir`; `prepare` registers kinds and services before it serves.
    pub async fn start(
        pg: &PgServer,
        nats: &NatsServer,
        id: &str,
        dir: &Path,
        arbiters: usize,
        prepare: impl FnOnce(&Runtime),
    ) -> TestNode {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cfg = super::short_leases(id, pg.url());
        let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("lease manager starts");
        let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("commit log starts");
        let transport = NatsTransport::connect(&nats.url(), id).await.expect("NATS reachable");
        let mut rc = RuntimeConfig::new(dir);
        rc.arbiters = arbiters;
        rc.router = Some(Arc::new(leases.view()));
        rc.commit_log = Some(Arc::new(log));
        rc.transport = Some(Arc::new(transport.clone()));
        let rt = Runtime::start(rc).expect("runtime starts");
        prepare(&rt);
        let serving = transport.serve(rt.clone(), leases.view());
        TestNode { leases: Some(leases), rt, serving, transport }
    }

    /// Whether this node serves the shard of `placement` now.
    pub fn serves(&self, placement: &str) -> bool {
        self.leases.as_ref().is_some_and(|l| l.is_serving(shard_of(placement)).is_some())
    }

    /// As a machine dying: its NATS connection goes (the server drops its subscriptions), its leases are neither
    /// renewed nor released, and nothing of it runs any more.
    pub async fn crash(mut self) {
        self.serving.abort();
        self.transport.close().await;
        drop(self.leases.take());
        self.rt.shutdown().await;
    }
}

/// A key whose shard rendezvous gives to `node` among `nodes`.
pub fn key_of(nodes: &[&str], node: &str, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| rendezvous::owner_of(nodes, shard_of(k)) == Some(node))
        .expect("some key lands on every node")
}

/// Waits until `owner` serves `key` and `other` does not, then for the transport to follow (it subscribes within
/// 100 ms of a lease).
pub async fn settled(owner: &TestNode, other: &TestNode, key: &str) {
    for _ in 0..600 {
        if owner.serves(key) && !other.serves(key) {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the nodes did not split the shards");
}
