//! Cluster mode over TLS to PostgreSQL (`src/cluster/tls.rs`), against a private server that takes TCP connections
//! over TLS only, with a certificate signed by a CA of the test's own: `sslmode=require` with `sslrootcert` naming
//! that CA connects (and the server sees an encrypted session), a node's lease manager and commit log run over it,
//! while a plain connection, an untrusted certificate (the system roots do not know the CA) or a certificate for
//! another name are refused. The same for NATS: a server taking TLS only, reached with `--nats-ca-file`'s CA.

mod cluster_support;

use std::time::Duration;

use cluster_support::{nats::NatsServer, postgres::PgServer};
use foundry::cluster::store::{Store, StoreError};
use foundry::cluster::{self, LeaseHooks, NatsTransport, PgLog};
use foundry::runtime::{Transport, TransportError};

const PATIENCE: Duration = Duration::from_secs(5);

#[actix_rt::test]
async fn the_store_speaks_tls_when_asked_and_checks_the_servers_certificate() {
    let Some(pg) = PgServer::start_tls().await else { return };
    let ca = pg.ca_file();
    let tls_url = format!("{}?sslmode=require&sslrootcert={}", pg.url(), ca.display());

    let mut store = Store::connect(&tls_url, "foundry-tls-test", PATIENCE).await.expect("connects over TLS");
    store.migrate().await.expect("statements run over it");
    assert_eq!(store.shards().await.unwrap().len(), 1024);

    // A node's lease manager and commit log over TLS: it acquires every shard.
    let cfg = cluster_support::short_leases("tls-node", tls_url.clone());
    let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("the lease manager starts over TLS");
    let _log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("the commit log starts over TLS");
    let mut held = 0;
    for _ in 0..200 {
        held = store
            .shards()
            .await
            .unwrap()
            .iter()
            .filter(|r| r.owner.as_deref().is_some_and(|o| o.starts_with("tls-node/")))
            .count();
        if held == 1024 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held, 1024, "the node holds its shards through a TLS connection");
    drop(leases);

    // In the clear: the server refuses (hostnossl reject), as it would anything not encrypted.
    let plain = Store::connect(&pg.url(), "foundry-tls-test", PATIENCE).await;
    assert!(matches!(plain, Err(StoreError::Connect(_))), "{:?}", plain.err());
    // TLS without the CA: the system's roots do not vouch for this certificate.
    let untrusted = Store::connect(&format!("{}?sslmode=require", pg.url()), "foundry-tls-test", PATIENCE).await;
    let e = untrusted.err().expect("an untrusted certificate is refused");
    assert!(format!("{e:?}").contains("certificate") || format!("{e:?}").contains("UnknownIssuer"), "{e:?}");
    // The right CA but another name than the certificate's (it is for 127.0.0.1 and localhost).
    let url_by_other_name = format!(
        "postgresql://postgres@db.example:{}/postgres?hostaddr=127.0.0.1&sslmode=require&sslrootcert={}",
        pg.addr().port(),
        ca.display()
    );
    let wrong_name = Store::connect(&url_by_other_name, "foundry-tls-test", PATIENCE).await;
    let e = wrong_name.err().expect("a certificate for another name is refused");
    assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    // A root certificate file that cannot be read is a clear error before any connection.
    let missing = format!("{}?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", pg.url());
    match Store::connect(&missing, "foundry-tls-test", PATIENCE).await {
        Err(StoreError::Tls(m)) => assert!(m.contains("/nonexistent/ca.pem"), "{m}"),
        other => panic!("expected a TLS settings error, got {:?}", other.err()),
    }
}

#[actix_rt::test]
async fn the_transport_speaks_tls_to_nats_with_the_given_ca() {
    let certs = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start_tls(certs.path()) else { return };
    let ca = certs.path().join("ca.crt");
    let transport =
        NatsTransport::connect_with(&nats.tls_url(), "tls-node", Some(&ca)).await.expect("connects over TLS");
    // A request through the server: nobody listens at that inbox, which only a working connection can tell.
    let answer = transport.push("fdy.gw.nobody", b"{}".to_vec(), Duration::from_secs(5)).await;
    assert!(matches!(answer, Err(TransportError::Unreachable(_))), "{answer:?}");
    transport.close().await;
    // Without the CA the server's certificate is not trusted; in the clear the server does not talk.
    assert!(NatsTransport::connect_with(&nats.tls_url(), "tls-node", None).await.is_err(), "untrusted certificate");
    assert!(NatsTransport::connect(&nats.url(), "tls-node").await.is_err(), "a plain connection to a TLS-only server");
}
