//! Cluster mode (issue 15, in progress): shard ownership in PostgreSQL. Knows shards, nodes, leases and the
//! runtime's shard-level operations; no actor kinds and no domain.
//!
//! - [`store`]: the schema (`fdy_node`, `fdy_shard`, `fdy_shard_history`) and the lease statements.
//! - [`rendezvous`]: which live node should own each of the 1,024 shards.
//! - [`leases`]: the lease manager, a task on its own thread that heartbeats, acquires, renews and releases, and the
//!   [`Leases`] handle (`is_serving(shard) -> Option<Epoch>`, a [`LeaseView`] that is a `runtime::Router`, events,
//!   [`LeaseStats`]).
//! - [`node`]: a runtime taking part in a cluster (`foundry serve --cluster`): the runtime as the lease manager's
//!   [`Drain`], its live actors stopped whenever this node stops serving their shard, readiness.
//!
//! - [`log`]: the commit log on PostgreSQL (`PgLog`, a `runtime::durable::CommitLog` fenced by the leases).
//! - [`transport`]: requests between nodes on NATS core (`NatsTransport`, a `runtime::Transport`).
//!
//! Single-node mode never touches this module.

pub mod leases;
pub mod log;
pub mod node;
mod ownership;
pub mod rendezvous;
pub mod store;
pub mod tls;
pub mod transport;

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

pub use leases::{start, Drain, LeaseHooks, Leases, NoDrain, Nudger, OnReleased, ShutdownReport};
pub use log::{LogStats, PgLog};
pub use node::{ClusterNode, ClusterStatus, Readiness};
pub use ownership::{Held, LeaseEvent, LeaseStats, LeaseView, LostReason, Ownership};
pub use store::{Store, StoreError};
pub use transport::{NatsTransport, OnPeerRelease, TransportStats};

/// A shard's lease generation: bumped by every acquisition, never reused. Later slices fence durable writes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a node takes part in a cluster. `ClusterConfig::new(node_id, postgres_url)` gives the design's timings.
#[derive(Clone)]
pub struct ClusterConfig {
    /// Stable name of this node (`[A-Za-z0-9._-]`, 1 to 64 characters); shards are assigned by it, so a restarted
    /// node gets the same shards back.
    pub node_id: String,
    /// `postgresql://user:password@host:port/db` or the key/value form. Never logged (it may hold a password).
    pub postgres_url: String,
    /// Where other nodes reach this one, recorded in `fdy_node` (the transport of a later slice will use it).
    pub addr: Option<String>,
    /// Lease length, counted by Postgres from each acquisition or renewal. Also how long a node counts as live after
    /// its last heartbeat.
    pub ttl: Duration,
    /// How often held leases are renewed (one statement for all of them).
    pub renew_every: Duration,
    /// A node stops serving a shard at `(sent time of the last successful renewal) + ttl - margin` on its own
    /// monotonic clock: the margin absorbs clock-rate differences and scheduling delays.
    pub margin: Duration,
    /// How often the manager heartbeats and recomputes which shards it should own.
    pub tick: Duration,
    /// Bound on each Postgres call (also the server-side statement timeout); a call that takes longer is abandoned
    /// with its connection.
    pub call_timeout: Duration,
    /// How long the drain hook may take for a shard before its lease is released anyway.
    pub drain_timeout: Duration,
    /// A CA certificate (PEM) the NATS server's certificate must chain to, besides the system's roots; given, the
    /// NATS connection requires TLS (a `tls://` URL requires it too).
    pub nats_ca_file: Option<std::path::PathBuf>,
    /// PostgreSQL connections of the commit log: how many batches of appends may be in flight at once. One batch is
    /// one round trip (pipelined) plus PostgreSQL's commit, so more help only when that commit is slow (a synchronous
    /// standby far away); otherwise they split batches into more transactions, each with its own flush.
    pub log_connections: usize,
}

impl fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("node_id", &self.node_id)
            .field("postgres_url", &"<redacted>")
            .field("addr", &self.addr)
            .field("ttl", &self.ttl)
            .field("renew_every", &self.renew_every)
            .field("margin", &self.margin)
            .field("tick", &self.tick)
            .field("call_timeout", &self.call_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("nats_ca_file", &self.nats_ca_file)
            .field("log_connections", &self.log_connections)
            .finish()
    }
}

impl ClusterConfig {
    /// The design's defaults: 10 s leases renewed every 3 s, serving stops 2 s before expiry, a tick every second.
    pub fn new(node_id: impl Into<String>, postgres_url: impl Into<String>) -> Self {
        ClusterConfig {
            node_id: node_id.into(),
            postgres_url: postgres_url.into(),
            addr: None,
            ttl: Duration::from_secs(10),
            renew_every: Duration::from_secs(3),
            margin: Duration::from_secs(2),
            tick: Duration::from_secs(1),
            call_timeout: Duration::from_secs(2),
            drain_timeout: Duration::from_secs(30),
            nats_ca_file: None,
            log_connections: 1,
        }
    }

    /// The design's timings scaled to leases of `ttl` (10 s gives [`ClusterConfig::new`]'s): renewals every 3/10 of
    /// it, serving stops 1/5 of it before the lease ends, each Postgres call is bounded by 1/5 of it, and a tick
    /// every second (every renewal, if that is more often). The drain timeout is kept.
    pub fn with_ttl(self, ttl: Duration) -> Self {
        let renew_every = ttl * 3 / 10;
        ClusterConfig {
            ttl,
            renew_every,
            margin: ttl / 5,
            call_timeout: ttl / 5,
            tick: renew_every.min(Duration::from_secs(1)),
            ..self
        }
    }

    /// How long after sending a successful acquisition or renewal this node may serve the shard.
    pub fn serving_window(&self) -> Duration {
        self.ttl.saturating_sub(self.margin)
    }

    /// Refuses a configuration that could not keep its leases or that names the node ambiguously.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let id = &self.node_id;
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
            return Err(ConfigError::NodeId(id.clone()));
        }
        let url = tls::PgTls::parse(&self.postgres_url);
        tokio_postgres::Config::from_str(&url.url).map_err(|e| ConfigError::PostgresUrl(e.to_string()))?;
        if url.tls {
            url.connector().map_err(ConfigError::PostgresUrl)?;
        }
        if !(1..=64).contains(&self.log_connections) {
            return Err(ConfigError::LogConnections(self.log_connections));
        }
        if self.tick.is_zero() || self.renew_every.is_zero() || self.call_timeout.is_zero() {
            return Err(ConfigError::Timing("tick, renew_every and call_timeout must be positive"));
        }
        if self.margin.is_zero() || self.margin >= self.ttl {
            return Err(ConfigError::Timing("margin must be positive and shorter than ttl"));
        }
        if self.tick > self.renew_every {
            return Err(ConfigError::Timing("tick must not be longer than renew_every"));
        }
        // A renewal sent on schedule must answer (or time out, leaving time for a retry) before serving stops.
        if self.renew_every + self.call_timeout >= self.serving_window() {
            return Err(ConfigError::Timing("renew_every + call_timeout must be shorter than ttl - margin"));
        }
        Ok(())
    }
}

/// A [`ClusterConfig`] that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("node id {0:?} must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_' or '-'")]
    NodeId(String),
    #[error("the PostgreSQL URL is invalid: {0}")]
    PostgresUrl(String),
    #[error("lease timings: {0}")]
    Timing(&'static str),
    #[error("{0} commit-log connections: 1 to 64")]
    LogConnections(usize),
}

/// Why the lease manager could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A newer process registered with this node id: this one gave up every shard and stopped.
    #[error("node {0} was restarted elsewhere; this process stopped serving")]
    Superseded(String),
    #[error("cannot start the lease thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The lease manager is gone (killed, or its thread ended) before answering.
    #[error("the lease manager has stopped")]
    Stopped,
    /// NATS could not be reached (the transport between nodes).
    #[error("cannot connect to NATS: {0}")]
    Transport(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_bad_configurations_are_refused() {
        let ok = ClusterConfig::new("node-1", "postgresql://u@127.0.0.1:5432/db");
        assert_eq!(ok.validate(), Ok(()));
        assert_eq!(ok.serving_window(), Duration::from_secs(8));
        for bad in ["", "a/b", "n 1", &"x".repeat(65)] {
            let c = ClusterConfig { node_id: bad.to_owned(), ..ok.clone() };
            assert!(matches!(c.validate(), Err(ConfigError::NodeId(_))), "{bad:?}");
        }
        let c = ClusterConfig { postgres_url: "postgresql://[::1".into(), ..ok.clone() };
        assert!(matches!(c.validate(), Err(ConfigError::PostgresUrl(_))));
        let c = ClusterConfig { margin: Duration::from_secs(10), ..ok.clone() };
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
        let c = ClusterConfig { renew_every: Duration::from_secs(7), ..ok.clone() };
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
        let c = ClusterConfig { tick: Duration::from_secs(4), ..ok.clone() };
        assert!(matches!(c.validate(), Err(ConfigError::Timing(_))));
        let scaled = ok.clone().with_ttl(Duration::from_secs(10));
        assert_eq!(
            (scaled.renew_every, scaled.margin, scaled.call_timeout, scaled.tick),
            (ok.renew_every, ok.margin, ok.call_timeout, ok.tick),
            "10 s leases scale to the defaults"
        );
        for secs in [2, 3, 7, 60, 600] {
            let c = ok.clone().with_ttl(Duration::from_secs(secs));
            assert_eq!(c.validate(), Ok(()), "{secs} s leases");
            assert_eq!(c.ttl, Duration::from_secs(secs));
        }
        let secret = format!("{:?}", ClusterConfig::new("n", "postgresql://u:hunter2@h/db"));
        assert!(!secret.contains("hunter2"), "{secret}");
    }
}
