//! Cluster mode, slice 4 (issue 15): the transport between nodes on a real NATS server, with the fenced commit log
//! in a real PostgreSQL. Two nodes in this process split the shards by rendezvous; a call (of a message registered
//! as remote) runs on the node serving its actor, an outbox delivery crosses to the node serving its receiver, and when a node dies a routed call
//! waits ("no responders", then retries) until the survivor serves the shard, rebuilt from the log.

mod cluster_support;

use std::path::Path;
use std::time::Duration;

use cluster_support::node::{key_of, TestNode};
use cluster_support::{nats::NatsServer, postgres::PgServer};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Accepts, ActivationFailure, CallError, Command, Delivery, EmbeddedMigrations, Entity, EntityCtx,
    KindConfig, Mutation, Read, Registry, Remote, Tx,
};
use serde::{Deserialize, Serialize};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// A balance that other nodes can credit, read, and forward credits from.
struct Account;

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
enum AccountError {
    #[error("amounts must be positive")]
    NotPositive,
    #[error("storage: {0}")]
    Db(String),
}

impl From<diesel::result::Error> for AccountError {
    fn from(e: diesel::result::Error) -> Self {
        AccountError::Db(e.to_string())
    }
}

impl Entity for Account {
    type Key = String;
    const KIND: &'static str = "account";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Account)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.accept::<Credit>()
            .remote_mutation::<Credit>()
            .remote_mutation::<CreditAndForward>()
            .remote_read::<Balance>()
            .remote_command::<Audit>();
    }
}

fn balance(conn: &mut SqliteConnection) -> QueryResult<i64> {
    counter::table.select(counter::value).find(1).first(conn)
}

#[derive(Serialize, Deserialize)]
struct Credit {
    amount: i64,
}

impl Mutation for Credit {
    type Entity = Account;
    type Output = i64;
    type Error = AccountError;
    fn apply(self, _: &Account, tx: &mut Tx<'_>) -> Result<i64, AccountError> {
        if self.amount <= 0 {
            return Err(AccountError::NotPositive);
        }
        diesel::update(counter::table.find(1))
            .set(counter::value.eq(counter::value + self.amount))
            .execute(tx.conn())?;
        Ok(balance(tx.conn())?)
    }
}

impl Remote for Credit {
    const NAME: &'static str = "Credit";
}

impl Delivery for Credit {
    const NAME: &'static str = "Credit";
}

/// Credits here, and the same amount to `target` through the outbox.
#[derive(Serialize, Deserialize)]
struct CreditAndForward {
    amount: i64,
    target: String,
}

impl Mutation for CreditAndForward {
    type Entity = Account;
    type Output = i64;
    type Error = AccountError;
    fn apply(self, a: &Account, tx: &mut Tx<'_>) -> Result<i64, AccountError> {
        tx.send(&self.target, &Credit { amount: self.amount })?;
        Credit { amount: self.amount }.apply(a, tx)
    }
}

impl Remote for CreditAndForward {
    const NAME: &'static str = "CreditAndForward";
}

/// A command: reads the balance and writes it down (`EntityCtx::write`), answering both.
#[derive(Serialize, Deserialize)]
struct Audit;

impl Command for Audit {
    type Entity = Account;
    type Output = (i64, i64);
    type Error = AccountError;
    fn run(self, _: &mut Account, ctx: &mut EntityCtx<'_, Account>) -> Result<(i64, i64), AccountError> {
        ctx.write(|tx| {
            let b = balance(tx.conn())?;
            diesel::update(counter::table.find(1)).set(counter::value.eq(b * 2)).execute(tx.conn())?;
            Ok((b, b * 2))
        })
    }
}

impl Remote for Audit {
    const NAME: &'static str = "Audit";
}

/// Not registered as remote: calls of it for another node's actor answer `not_owner`.
struct Reset;

impl Mutation for Reset {
    type Entity = Account;
    type Output = ();
    type Error = AccountError;
    fn apply(self, _: &Account, tx: &mut Tx<'_>) -> Result<(), AccountError> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(0)).execute(tx.conn())?;
        Ok(())
    }
}

#[derive(Serialize, Deserialize)]
struct Balance;

impl Read for Balance {
    type Entity = Account;
    type Output = i64;
    type Error = AccountError;
    fn read(self, _: &Account, conn: &mut SqliteConnection) -> Result<i64, AccountError> {
        Ok(balance(conn)?)
    }
}

impl Remote for Balance {
    const NAME: &'static str = "Balance";
}

struct Node {
    node: TestNode,
    accounts: Registry<Account>,
}

impl Node {
    async fn start(pg: &PgServer, nats: &NatsServer, id: &str, dir: &Path) -> Node {
        let mut accounts = None;
        let node = TestNode::start(pg, nats, id, dir, 2, |rt| {
            accounts = Some(rt.register::<Account>(KindConfig::default()));
        })
        .await;
        Node { node, accounts: accounts.unwrap() }
    }

    fn serves(&self, key: &str) -> bool {
        self.node.serves(key)
    }

    async fn crash(self) {
        self.node.crash().await
    }
}

async fn both_settled(a: &Node, b: &Node, ka: &str, kb: &str) {
    for _ in 0..600 {
        if a.serves(ka) && b.serves(kb) && !a.serves(kb) && !b.serves(ka) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the two nodes did not split the shards");
}

#[actix_rt::test]
async fn calls_and_deliveries_reach_the_node_serving_the_actor_and_wait_out_its_failover() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(&pg, &nats, "node-a", dir_a.path()).await;
    let b = Node::start(&pg, &nats, "node-b", dir_b.path()).await;
    let nodes = ["node-a", "node-b"];
    let (ka, kb) = (key_of(&nodes, "node-a", "alice-"), key_of(&nodes, "node-b", "bob-"));
    both_settled(&a, &b, &ka, &kb).await;

    // A routed call from b for an actor a serves runs on a: a's disk has it, b's has nothing of it.
    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 5 }).await.unwrap(), 5);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 5, "applied on the serving node");
    assert!(dir_a.path().join("account").join(format!("{ka}.sqlite3")).exists());
    assert!(!dir_b.path().join("account").join(format!("{ka}.sqlite3")).exists(), "nothing of it opened on b");
    assert_eq!(b.accounts.read(&ka, Balance).await.unwrap(), 5);
    // A command crosses too (its writes durable before its answer), and back.
    assert_eq!(b.accounts.exec(&ka, Audit).await.unwrap(), (5, 10));
    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 5 }).await.unwrap(), 15);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 15);
    // The handler's own error crosses typed.
    match b.accounts.mutate(&ka, Credit { amount: -1 }).await {
        Err(CallError::Handler(AccountError::NotPositive)) => {}
        other => panic!("expected the handler's refusal, got {other:?}"),
    }
    // A message its kind did not register as remote cannot travel: refused as before.
    match b.accounts.mutate(&ka, Reset).await {
        Err(CallError::Activation(e)) => assert!(matches!(e.reason, ActivationFailure::NotOwner(_)), "{e}"),
        other => panic!("expected not_owner, got {:?}", other.map_err(|e| e.to_string())),
    }
    // `*_existing` keeps its meaning across nodes: nothing created on the serving node.
    let ghost = key_of(&nodes, "node-a", "ghost-");
    assert!(matches!(b.accounts.read_existing(&ghost, Balance).await, Err(CallError::NotFound { .. })));
    assert!(!dir_a.path().join("account").join(format!("{ghost}.sqlite3")).exists());
    assert!(b.node.transport.stats().sent.load(std::sync::atomic::Ordering::Relaxed) >= 3);

    // An outbox delivery from a's actor to one b serves crosses over, deduplicated like a local one.
    assert_eq!(a.accounts.mutate(&ka, CreditAndForward { amount: 7, target: kb.clone() }).await.unwrap(), 22);
    let mut delivered = 0;
    for _ in 0..400 {
        delivered = b.accounts.read(&kb, Balance).await.unwrap();
        if delivered == 7 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(delivered, 7, "the credit reached the node serving its receiver");

    // a dies (its disk too): b's routed calls find nobody serving a's shards, retry, and succeed once b has taken
    // them over and rebuilt the actor from the commit log.
    a.crash().await;
    drop(dir_a);
    let after = b.accounts.mutate(&ka, Credit { amount: 1 }).await.expect("served after the failover");
    assert_eq!(after, 23, "every acknowledged change survived: (5 doubled) + 5 + 7 + 1");
    assert!(b.serves(&ka), "b took a's shard over");
    assert!(b.node.transport.stats().no_responders.load(std::sync::atomic::Ordering::Relaxed) > 0, "it waited it out");
    b.crash().await;
}

/// A node cut off from NATS without its connection closing (a partition, a frozen process) stays in its shards'
/// queue groups on the server for minutes; here a client that joined `fdy.rpc.<shard>` and never answers plays it.
/// Once the shard's next owner has announced itself, every call goes straight to it: none is handed to the silent
/// member and lost for a whole attempt (5 s), as about half of them would be through the queue group alone.
#[actix_rt::test]
async fn a_cut_off_previous_owner_left_in_the_queue_group_holds_no_call_up() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let nodes = ["node-a", "node-b"];
    let kb = key_of(&nodes, "node-b", "bob-");
    let a = Node::start(&pg, &nats, "node-a", dir_a.path()).await;
    for _ in 0..400 {
        if a.serves(&kb) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(a.serves(&kb), "alone, a serves every shard");
    let zombie = async_nats::connect(nats.url()).await.expect("NATS reachable");
    let shard = foundry::runtime::shard_of(&kb);
    let _silent = zombie.queue_subscribe(format!("fdy.rpc.{}", shard.0), "fdy".to_owned()).await.unwrap();
    zombie.flush().await.unwrap();

    let b = Node::start(&pg, &nats, "node-b", dir_b.path()).await;
    let ka = key_of(&nodes, "node-a", "alice-");
    both_settled(&a, &b, &ka, &kb).await;
    // b subscribes and announces within 100 ms of its lease.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut slowest = Duration::ZERO;
    for n in 1..=20 {
        let started = std::time::Instant::now();
        assert_eq!(a.accounts.mutate(&kb, Credit { amount: 1 }).await.unwrap(), n);
        slowest = slowest.max(started.elapsed());
    }
    assert!(slowest < Duration::from_secs(2), "a call waited on the silent member: {slowest:?}");
    let stats = a.node.transport.stats();
    assert!(stats.direct.load(std::sync::atomic::Ordering::Relaxed) >= 20, "addressed to b directly");
    assert_eq!(b.accounts.read(&kb, Balance).await.unwrap(), 20, "each applied once");
    a.crash().await;
    b.crash().await;
}

/// A cluster node as `foundry serve --cluster` wires one (`ClusterNode`: release announcements on NATS nudge the
/// peers' lease managers), with the account kind.
async fn cluster_node(
    cfg: foundry::cluster::ClusterConfig,
    nats: &NatsServer,
    dir: &Path,
) -> (foundry::cluster::ClusterNode, foundry::runtime::Runtime) {
    let mut node = foundry::cluster::ClusterNode::start(cfg, Some(&nats.url())).await.expect("the node joins");
    let mut rc = foundry::runtime::RuntimeConfig::new(dir);
    rc.arbiters = 1;
    rc.router = Some(node.router());
    rc.commit_log = Some(node.commit_log());
    rc.transport = node.transport();
    let rt = foundry::runtime::Runtime::start(rc).expect("runtime starts");
    rt.register::<Account>(KindConfig::default());
    node.attach(&rt);
    (node, rt)
}

/// A node releasing shards announces it, and the node due to take them over acquires them at once rather than at its
/// next lease round: here "b" runs its rounds only every 18 s, yet holds its shards well within that of joining,
/// the handover ("a" drains, releases, announces) happening after b's first round found them still held.
#[actix_rt::test]
async fn a_released_shard_is_taken_over_at_once_not_at_the_next_round() {
    use foundry::cluster::{ClusterConfig, Readiness};
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, rt_a) = cluster_node(cluster_support::short_leases("node-a", pg.url()), &nats, dir_a.path()).await;
    for _ in 0..400 {
        if a.status().readiness() == Readiness::Ready {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(a.status().shards_served(), 1024, "alone, a serves every shard");

    let slow = ClusterConfig {
        ttl: Duration::from_secs(60),
        renew_every: Duration::from_secs(18),
        tick: Duration::from_secs(18),
        margin: Duration::from_secs(12),
        call_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(2),
        ..ClusterConfig::new("node-b", pg.url())
    };
    let joined = std::time::Instant::now();
    let (b, rt_b) = cluster_node(slow, &nats, dir_b.path()).await;
    while b.status().readiness() != Readiness::Ready && joined.elapsed() < Duration::from_secs(17) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let took = joined.elapsed();
    assert_eq!(b.status().readiness(), Readiness::Ready, "b did not take its shards over before its next round");
    assert!(took < Duration::from_secs(6), "b took {took:?} to hold its shards");
    let kb = key_of(&["node-a", "node-b"], "node-b", "bob-");
    assert_eq!(rt_a.registry::<Account>().mutate(&kb, Credit { amount: 2 }).await.unwrap(), 2, "served by b");
    b.shutdown().await.unwrap();
    a.shutdown().await.unwrap();
    rt_b.shutdown().await;
    rt_a.shutdown().await;
}
