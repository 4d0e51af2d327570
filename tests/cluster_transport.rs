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
