//! Cluster mode under faults (issue 15, the in-process variant of the harness): three nodes in this process on a real
//! PostgreSQL and a real NATS, a bounded load of appends to a handful of ledgers sent through random nodes, and nodes
//! killed at random under that load — each restarted with its data directory deleted, as a replaced machine. Then:
//! every acknowledged append is present exactly once (read through a node, and independently rebuilt straight from
//! the commit log in PostgreSQL), nothing was applied twice, and per actor the log's entries were written by one
//! owner at a time (epochs never go back, and each entry's epoch belongs to the node that wrote it).

mod cluster_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::{nats::NatsServer, postgres::PgServer};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::cluster::{self, LeaseHooks, Leases, NatsTransport, PgLog};
use foundry::runtime::durable::{restore, CommitLog, LogKey};
use foundry::runtime::{
    embed_migrations, shard_of, Accepts, EmbeddedMigrations, Entity, KindConfig, Mutation, Read, Registry, Remote,
    Runtime, RuntimeConfig, Tx,
};
use serde::{Deserialize, Serialize};

diesel::table! {
    entries (id) {
        id -> Integer,
        note -> Text,
    }
}

/// An append-only list of operation ids. Appends are not idempotent on purpose: an operation applied twice shows.
struct Ledger;

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("{0}")]
struct LedgerError(String);

impl From<diesel::result::Error> for LedgerError {
    fn from(e: diesel::result::Error) -> Self {
        LedgerError(e.to_string())
    }
}

impl Entity for Ledger {
    type Key = String;
    const KIND: &'static str = "ledger";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Ledger)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.remote_mutation::<Append>().remote_read::<Entries>();
    }
}

#[derive(Serialize, Deserialize)]
struct Append {
    op: String,
}

impl Mutation for Append {
    type Entity = Ledger;
    type Output = ();
    type Error = LedgerError;
    fn apply(self, _: &Ledger, tx: &mut Tx<'_>) -> Result<(), LedgerError> {
        diesel::insert_into(entries::table).values(entries::note.eq(self.op)).execute(tx.conn())?;
        Ok(())
    }
}

impl Remote for Append {
    const NAME: &'static str = "Append";
}

#[derive(Serialize, Deserialize)]
struct Entries;

impl Read for Entries {
    type Entity = Ledger;
    type Output = Vec<String>;
    type Error = LedgerError;
    fn read(self, _: &Ledger, conn: &mut SqliteConnection) -> Result<Vec<String>, LedgerError> {
        Ok(entries::table.select(entries::note).order(entries::id).load(conn)?)
    }
}

impl Remote for Entries {
    const NAME: &'static str = "Entries";
}

const NODES: [&str; 3] = ["n1", "n2", "n3"];
const LEDGERS: usize = 12;

struct Node {
    leases: Option<Leases>,
    rt: Runtime,
    ledgers: Registry<Ledger>,
    serving: tokio::task::JoinHandle<()>,
    transport: NatsTransport,
}

impl Node {
    async fn start(pg: &str, nats: &str, id: &str, dir: &Path) -> Node {
        let cfg = cluster_support::short_leases(id, pg.to_owned());
        let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("lease manager starts");
        let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("commit log starts");
        let transport = NatsTransport::connect(nats, id).await.expect("NATS reachable");
        let mut rc = RuntimeConfig::new(dir);
        rc.arbiters = 1;
        rc.router = Some(Arc::new(leases.view()));
        rc.commit_log = Some(Arc::new(log));
        rc.transport = Some(Arc::new(transport.clone()));
        let rt = Runtime::start(rc).expect("runtime starts");
        let ledgers = rt.register::<Ledger>(KindConfig::default());
        let serving = transport.serve(rt.clone(), leases.view());
        Node { leases: Some(leases), rt, ledgers, serving, transport }
    }

    /// A machine dying: its connections go, its leases are neither renewed nor released.
    async fn kill(mut self) {
        self.serving.abort();
        self.transport.close().await;
        drop(self.leases.take());
        self.rt.shutdown().await;
    }
}

/// Small deterministic generator (no crate needed for a test's choices).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

#[derive(Default)]
struct Journal {
    acked: BTreeMap<String, Vec<String>>,
    attempted: BTreeSet<String>,
    failed: usize,
}

fn dir_of(base: &Path, i: usize) -> PathBuf {
    base.join(NODES[i])
}

#[actix_rt::test]
async fn no_acknowledged_append_is_lost_or_applied_twice_while_nodes_die() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (pg_url, nats_url) = (pg.url(), nats.url());
    let base = tempfile::tempdir().unwrap();
    let mut started = Vec::new();
    for (i, id) in NODES.iter().enumerate() {
        started.push(Some(Node::start(&pg_url, &nats_url, id, &dir_of(base.path(), i)).await));
    }
    let nodes: Arc<Mutex<Vec<Option<Node>>>> = Arc::new(Mutex::new(started));
    // Every shard served before the load starts.
    tokio::time::sleep(Duration::from_secs(1)).await;

    let journal = Arc::new(Mutex::new(Journal::default()));
    let load_until = Instant::now() + Duration::from_secs(14);
    let mut workers = Vec::new();
    for w in 0..4u64 {
        let (nodes, journal) = (nodes.clone(), journal.clone());
        workers.push(actix_rt::spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
            let mut n = 0;
            while Instant::now() < load_until {
                let pick = rng.below(NODES.len());
                let ledgers = nodes.lock().unwrap()[pick].as_ref().map(|node| node.ledgers.clone());
                let Some(ledgers) = ledgers else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let key = format!("ledger-{}", rng.below(LEDGERS));
                let op = format!("w{w}-{n}");
                n += 1;
                journal.lock().unwrap().attempted.insert(op.clone());
                match ledgers.mutate(&key, Append { op: op.clone() }).await {
                    Ok(()) => journal.lock().unwrap().acked.entry(key).or_default().push(op),
                    Err(_) => journal.lock().unwrap().failed += 1,
                }
                tokio::time::sleep(Duration::from_millis(15)).await;
            }
        }));
    }

    // The faults: every ~4 s a random node dies; a second later it is back with an empty data directory.
    let mut rng = Rng(42);
    let mut kills = 0;
    while Instant::now() + Duration::from_secs(4) < load_until {
        tokio::time::sleep(Duration::from_secs(3)).await;
        let victim = rng.below(NODES.len());
        let node = nodes.lock().unwrap()[victim].take();
        if let Some(node) = node {
            node.kill().await;
            kills += 1;
            std::fs::remove_dir_all(dir_of(base.path(), victim)).unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            let fresh = Node::start(&pg_url, &nats_url, NODES[victim], &dir_of(base.path(), victim)).await;
            nodes.lock().unwrap()[victim] = Some(fresh);
        }
    }
    for w in workers {
        w.await.unwrap();
    }
    assert!(kills >= 2, "the run killed nodes under load ({kills})");
    let journal = std::mem::take(&mut *journal.lock().unwrap());
    let acked_total: usize = journal.acked.values().map(Vec::len).sum();
    assert!(acked_total > 100, "the load got through between the faults ({acked_total} acknowledged)");
    eprintln!(
        "{kills} nodes killed; {} appends sent, {acked_total} acknowledged, {} refused or unanswered",
        journal.attempted.len(),
        journal.failed
    );

    // Through a node (after the takeovers settle: reads wait out a moving shard by themselves).
    let reader = nodes.lock().unwrap()[0].as_ref().unwrap().ledgers.clone();
    let mut through_node = BTreeMap::new();
    for i in 0..LEDGERS {
        let key = format!("ledger-{i}");
        let ops = reader.read(&key, Entries).await.expect("every ledger readable");
        through_node.insert(key, ops);
    }
    check(&journal, &through_node, "read through a node");

    // Straight from PostgreSQL: each ledger rebuilt from its snapshot and log, with no node involved.
    let (client, conn) = tokio_postgres::connect(&pg_url, tokio_postgres::NoTls).await.unwrap();
    actix_rt::spawn(async move {
        let _ = conn.await;
    });
    let view = nodes.lock().unwrap()[0].as_ref().unwrap().leases.as_ref().unwrap().view();
    let probe_cfg = cluster_support::short_leases("probe", pg_url.clone());
    let log = PgLog::start(&probe_cfg, view, "probe/0".into()).await.unwrap();
    let restored_dir = tempfile::tempdir().unwrap();
    let mut from_log = BTreeMap::new();
    for i in 0..LEDGERS {
        let key = format!("ledger-{i}");
        let actor = LogKey { kind: "ledger", key: key.clone(), shard: shard_of(&key) };
        let history = log.history(&actor).await.unwrap().expect("every ledger is in the log");
        let path = restored_dir.path().join(format!("{key}.sqlite3"));
        restore(&path, &history).unwrap();
        let mut conn = SqliteConnection::establish(path.to_str().unwrap()).unwrap();
        let ops: Vec<String> = entries::table.select(entries::note).order(entries::id).load(&mut conn).unwrap();
        from_log.insert(key, ops);
    }
    check(&journal, &from_log, "rebuilt from PostgreSQL");
    assert_eq!(through_node, from_log, "the node and the log agree");

    // One writer at a time: per actor, epochs never go back along the log, and each entry's epoch is the lease its
    // writer held (the history says who acquired that epoch of the shard).
    let rows = client
        .query(
            "SELECT l.key, l.txid, l.epoch, l.owner, h.owner
               FROM fdy_actor_log l
               JOIN fdy_actor_head a ON a.kind = l.kind AND a.key = l.key
               LEFT JOIN fdy_shard_history h ON h.shard = a.shard AND h.epoch = l.epoch
              WHERE l.kind = 'ledger' ORDER BY l.key, l.txid",
            &[],
        )
        .await
        .unwrap();
    assert!(!rows.is_empty());
    let mut last: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for r in rows {
        let (key, txid, epoch, writer, holder): (String, i64, i64, String, Option<String>) =
            (r.get(0), r.get(1), r.get(2), r.get(3), r.get(4));
        assert_eq!(holder.as_deref(), Some(writer.as_str()), "{key} entry {txid}: written under another's lease");
        if let Some((prev_txid, prev_epoch)) = last.get(&key) {
            assert_eq!(txid, prev_txid + 1, "{key}: entries contiguous");
            assert!(epoch >= *prev_epoch, "{key}: epoch went back at entry {txid}");
        }
        last.insert(key, (txid, epoch));
    }

    let all: Vec<Node> = nodes.lock().unwrap().iter_mut().filter_map(Option::take).collect();
    for node in all {
        node.kill().await;
    }
}

fn check(journal: &Journal, state: &BTreeMap<String, Vec<String>>, how: &str) {
    for (key, ops) in state {
        let unique: BTreeSet<&String> = ops.iter().collect();
        assert_eq!(unique.len(), ops.len(), "{how}: {key} has an operation applied twice");
        for op in ops {
            assert!(journal.attempted.contains(op), "{how}: {key} holds {op}, which nobody sent");
        }
    }
    for (key, acked) in &journal.acked {
        let present: BTreeSet<&String> = state.get(key).map(|v| v.iter().collect()).unwrap_or_default();
        for op in acked {
            assert!(present.contains(op), "{how}: acknowledged {op} lost from {key}");
        }
    }
}
