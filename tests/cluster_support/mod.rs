//! Test harness for cluster mode: a private PostgreSQL server (`postgres.rs`), a private NATS server (`nats.rs`),
//! a fault-injecting TCP proxy (`proxy.rs`) to put between a node and a server, `foundry serve --cluster` processes
//! behind such proxies (`procs.rs`), and the load and checker of the multi-process fault harness (`chaos.rs`).
#![allow(dead_code)]

pub mod chaos;
pub mod nats;
pub mod postgres;
pub mod procs;
pub mod proxy;

/// A node's configuration with short leases (3 s, renewed every second, a tick every 200 ms): takeovers within
/// seconds, for the tests that run nodes in process.
pub fn short_leases(node: &str, postgres_url: String) -> foundry::cluster::ClusterConfig {
    use std::time::Duration;
    foundry::cluster::ClusterConfig {
        ttl: Duration::from_secs(3),
        renew_every: Duration::from_secs(1),
        margin: Duration::from_secs(1),
        tick: Duration::from_millis(200),
        call_timeout: Duration::from_millis(750),
        drain_timeout: Duration::from_secs(2),
        ..foundry::cluster::ClusterConfig::new(node, postgres_url)
    }
}
