//! Test harness for cluster mode: a private PostgreSQL server (`postgres.rs`), a private NATS server (`nats.rs`),
//! a fault-injecting TCP proxy (`proxy.rs`) to put between a node and a server, `foundry serve --cluster` processes
//! behind such proxies (`procs.rs`), and the load and checker of the multi-process fault harness (`chaos.rs`, with
//! `effects.rs` and `rebuild.rs` for outbox effects and summaries, `topics.rs` for topic versions).
#![allow(dead_code)]

pub mod chaos;
pub mod effects;
pub mod nats;
pub mod node;
pub mod postgres;
pub mod procs;
pub mod proxy;
pub mod rebuild;
pub mod topics;

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

/// With `openssl`, in `dir`: a CA (`ca.crt`) and a server certificate for 127.0.0.1 and localhost signed by it
/// (`server.crt`, `server.key`), for the servers the TLS tests start.
pub fn make_certificates(dir: &std::path::Path) {
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).current_dir(dir).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    let ca = ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2"];
    openssl(&[&ca[..], &["-subj", "/CN=foundry test CA"]].concat());
    let csr = ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr"];
    openssl(&[&csr[..], &["-subj", "/CN=127.0.0.1"]].concat());
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1,DNS:localhost\n").unwrap();
    let sign = ["x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial"];
    openssl(&[&sign[..], &["-out", "server.crt", "-days", "2", "-extfile", "san.ext"]].concat());
}
