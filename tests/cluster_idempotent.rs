//! Cluster mode, slice 4 (issue 15): routed mutations are exactly-once across lost answers and failovers. Two nodes
//! in this process on a real NATS and PostgreSQL; the calling node's transport is the real NATS one wrapped in
//! [`Faulty`], which can lose exactly one answer (the request reaches the owner and runs; the caller hears
//! `Timeout`) or send a call under another call's request id. The caller retries a mutation under its id; the owner
//! records the id with the commit and replays the recorded output for a repeat, on this node or the next owner.

mod cluster_support;

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cluster_support::{nats::NatsServer, postgres::PgServer};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::cluster::{self, rendezvous, LeaseHooks, Leases, NatsTransport, PgLog};
use foundry::runtime::{
    embed_migrations, shard_of, Accepts, CallError, EmbeddedMigrations, Entity, KindConfig, Mutation, Read, Registry,
    Remote, Runtime, RuntimeConfig, ShardId, Transport, TransportError, Tx,
};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// One PostgreSQL and NATS per test and lease threads that must stay on time: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Account;

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
enum AccountError {
    #[error("amounts must be positive")]
    NotPositive,
    #[error("balance {0} is too low")]
    Insufficient(i64),
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
        a.remote_mutation::<Credit>().remote_mutation::<Withdraw>().remote_read::<Balance>();
    }
}

/// How many routed mutations' request ids the actor remembers (the runtime's own table, read as is).
struct RemoteRecords;

impl Read for RemoteRecords {
    type Entity = Account;
    type Output = i64;
    type Error = AccountError;
    fn read(self, _: &Account, conn: &mut SqliteConnection) -> Result<i64, AccountError> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = diesel::sql_types::BigInt)]
            n: i64,
        }
        let rows: Vec<Count> =
            diesel::sql_query("SELECT count(*) AS n FROM _foundry_idempotency WHERE scope = 'fdy.remote'")
                .load(conn)?;
        Ok(rows.first().map_or(0, |c| c.n))
    }
}

fn balance(conn: &mut SqliteConnection) -> QueryResult<i64> {
    counter::table.select(counter::value).find(1).first(conn)
}

fn add(tx: &mut Tx<'_>, amount: i64) -> Result<i64, AccountError> {
    diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + amount)).execute(tx.conn())?;
    Ok(balance(tx.conn())?)
}

/// Adds `amount`; answers the new balance.
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
        add(tx, self.amount)
    }
}

impl Remote for Credit {
    const NAME: &'static str = "Credit";
}

/// Takes `amount` away if the balance covers it (refused otherwise); answers the new balance.
#[derive(Serialize, Deserialize)]
struct Withdraw {
    amount: i64,
}

impl Mutation for Withdraw {
    type Entity = Account;
    type Output = i64;
    type Error = AccountError;
    fn apply(self, _: &Account, tx: &mut Tx<'_>) -> Result<i64, AccountError> {
        let now = balance(tx.conn())?;
        if now < self.amount {
            return Err(AccountError::Insufficient(now));
        }
        add(tx, -self.amount)
    }
}

impl Remote for Withdraw {
    const NAME: &'static str = "Withdraw";
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

/// What [`Faulty`] does to the next mutation (a call carrying a request id) it carries.
enum Fault {
    /// Sends it and waits for the owner's answer, then loses that answer: the caller hears `Timeout`. With a hook,
    /// the answer is handed to the test first and the caller hears nothing until the test says go.
    LoseAnswer(Option<(oneshot::Sender<Vec<u8>>, oneshot::Receiver<()>)>),
    /// Sends it under this request id instead of its own.
    ReuseId(String),
}

/// The real NATS transport with faults injected on the calling side, recording every mutation request it carries.
#[derive(Clone)]
struct Faulty {
    inner: NatsTransport,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    sent: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl std::fmt::Debug for Faulty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Faulty").finish_non_exhaustive()
    }
}

impl Faulty {
    fn inject(&self, fault: Fault) {
        self.faults.lock().unwrap().push_back(fault);
    }

    /// The request ids of the mutations sent so far, one per attempt.
    fn ids(&self) -> Vec<String> {
        self.sent.lock().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect()
    }
}

impl Transport for Faulty {
    fn request(
        &self,
        shard: ShardId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let mut request: serde_json::Value = serde_json::from_slice(&body).expect("requests are JSON");
        let keyed = request["t"] == "call" && request.get("id").is_some();
        let fault = if keyed { self.faults.lock().unwrap().pop_front() } else { None };
        let mut body = body;
        if let Some(Fault::ReuseId(id)) = &fault {
            request["id"] = serde_json::Value::String(id.clone());
            body = serde_json::to_vec(&request).unwrap();
        }
        if keyed {
            self.sent.lock().unwrap().push(request);
        }
        let (inner, faults) = (self.inner.clone(), self.faults.clone());
        Box::pin(async move {
            let answer = inner.request(shard, body, timeout).await;
            let Some(Fault::LoseAnswer(hook)) = fault else { return answer };
            let Ok(bytes) = answer else {
                // It never reached an owner: nothing to lose yet.
                faults.lock().unwrap().push_front(Fault::LoseAnswer(hook));
                return answer;
            };
            if let Some((answered, go)) = hook {
                let _ = answered.send(bytes);
                let _ = go.await;
            }
            Err(TransportError::Timeout(shard))
        })
    }
}

struct Node {
    leases: Option<Leases>,
    rt: Runtime,
    accounts: Registry<Account>,
    serving: tokio::task::JoinHandle<()>,
    nats: NatsTransport,
    transport: Faulty,
}

impl Node {
    async fn start(pg: &PgServer, nats: &NatsServer, id: &str, dir: &Path) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cfg = cluster_support::short_leases(id, pg.url());
        let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("lease manager starts");
        let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("commit log starts");
        let nats = NatsTransport::connect(&nats.url(), id).await.expect("NATS reachable");
        let transport = Faulty { inner: nats.clone(), faults: Arc::default(), sent: Arc::default() };
        let mut rc = RuntimeConfig::new(dir);
        rc.arbiters = 2;
        rc.router = Some(Arc::new(leases.view()));
        rc.commit_log = Some(Arc::new(log));
        rc.transport = Some(Arc::new(transport.clone()));
        let rt = Runtime::start(rc).expect("runtime starts");
        let accounts = rt.register::<Account>(KindConfig::default());
        let serving = nats.serve(rt.clone(), leases.view());
        Node { leases: Some(leases), rt, accounts, serving, nats, transport }
    }

    fn serves(&self, key: &str) -> bool {
        self.leases.as_ref().is_some_and(|l| l.is_serving(shard_of(key)).is_some())
    }

    /// As a machine dying: its NATS connection goes, its leases are neither renewed nor released, nothing of it
    /// runs any more (the caller then deletes its disk).
    async fn crash(mut self) {
        self.serving.abort();
        self.nats.close().await;
        drop(self.leases.take());
        self.rt.shutdown().await;
    }
}

/// A key whose shard rendezvous gives to `node` among `nodes`.
fn key_of(nodes: &[&str], node: &str, prefix: &str) -> String {
    (0..)
        .map(|i| format!("{prefix}{i}"))
        .find(|k| rendezvous::owner_of(nodes, shard_of(k)) == Some(node))
        .expect("some key lands on every node")
}

/// Nodes `a` (owner of the returned key) and `b` (the caller), settled.
async fn two_nodes(pg: &PgServer, nats: &NatsServer, a: &Path, b: &Path) -> (Node, Node, String) {
    let a = Node::start(pg, nats, "node-a", a).await;
    let b = Node::start(pg, nats, "node-b", b).await;
    let nodes = ["node-a", "node-b"];
    let (ka, kb) = (key_of(&nodes, "node-a", "acct-"), key_of(&nodes, "node-b", "acct-"));
    for _ in 0..600 {
        if a.serves(&ka) && b.serves(&kb) && !a.serves(&kb) && !b.serves(&ka) {
            return (a, b, ka);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the two nodes did not split the shards");
}

fn wipe(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir_all(dir).unwrap();
}

/// A lost answer costs neither the output nor a second run: the owner ran the credit, the caller heard `Timeout`,
/// asked again under the same id and got the first run's output; the balance moved once.
#[actix_rt::test]
async fn a_mutation_whose_answer_is_lost_is_retried_under_its_id_and_applied_once() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, ka) = two_nodes(&pg, &nats, dir_a.path(), dir_b.path()).await;

    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 3 }).await.unwrap(), 3);
    let (answered, lost) = oneshot::channel();
    let (go, wait) = oneshot::channel();
    b.transport.inject(Fault::LoseAnswer(Some((answered, wait))));
    let call = {
        let accounts = b.accounts.clone();
        let ka = ka.clone();
        actix_rt::spawn(async move { accounts.mutate(&ka, Credit { amount: 5 }).await })
    };
    let first = lost.await.expect("the request reached the owner");
    assert!(
        String::from_utf8_lossy(&first).contains("\"output\":\"8\""),
        "it ran: {}",
        String::from_utf8_lossy(&first)
    );
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 8, "committed on the owner before the answer was lost");
    go.send(()).unwrap();

    assert_eq!(call.await.unwrap().expect("the retry gets the first output"), 8);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 8, "applied once: 3 + 5");
    let ids = b.transport.ids();
    assert_eq!(ids.len(), 3, "one call, then the lost one and its retry: {ids:?}");
    assert_eq!(ids[1], ids[2], "the retry carries the same id");
    assert_ne!(ids[0], ids[1], "each logical call has its own id");
    assert_eq!(ids[1].len(), 32, "128 bits, hex");
    // A plain later call is a new one.
    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 1 }).await.unwrap(), 9);
    b.crash().await;
    a.crash().await;
}

/// The owner commits and dies with its disk before its answer reaches the caller. The retry waits out the failover
/// and lands on the next owner (here the caller's own node), which restored the actor from PostgreSQL, found the
/// id's record there and replayed the first output: applied once.
#[actix_rt::test]
async fn a_retry_after_the_owner_died_is_replayed_by_the_next_owner_from_the_log() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, ka) = two_nodes(&pg, &nats, dir_a.path(), dir_b.path()).await;

    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 5 }).await.unwrap(), 5);
    let (answered, lost) = oneshot::channel();
    let (go, wait) = oneshot::channel();
    b.transport.inject(Fault::LoseAnswer(Some((answered, wait))));
    let call = {
        let accounts = b.accounts.clone();
        let ka = ka.clone();
        actix_rt::spawn(async move { accounts.mutate(&ka, Credit { amount: 7 }).await })
    };
    let first = lost.await.expect("the request reached the owner");
    assert!(String::from_utf8_lossy(&first).contains("\"output\":\"12\""), "{}", String::from_utf8_lossy(&first));
    a.crash().await;
    wipe(dir_a.path());
    go.send(()).unwrap();

    let retried = tokio::time::timeout(Duration::from_secs(20), call).await.expect("the call ends by its deadline");
    assert_eq!(retried.unwrap().expect("replayed by the next owner"), 12);
    assert!(b.serves(&ka), "b took the shard over");
    assert!(dir_b.path().join("account").join(format!("{ka}.sqlite3")).exists(), "restored on b");
    assert_eq!(b.accounts.read(&ka, Balance).await.unwrap(), 12, "applied once: 5 + 7");
    let ids = b.transport.ids();
    assert!(ids.len() >= 3, "the retry went out (after no responders, maybe): {ids:?}");
    assert!(ids[1..].iter().all(|id| *id == ids[1]), "every attempt under the call's id: {ids:?}");
    b.crash().await;
}

/// A request id used again with another request is refused and nothing is applied; used again with the same request
/// it replays.
#[actix_rt::test]
async fn a_request_id_reused_with_another_payload_is_refused_not_applied() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, ka) = two_nodes(&pg, &nats, dir_a.path(), dir_b.path()).await;

    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 5 }).await.unwrap(), 5);
    let id = b.transport.ids()[0].clone();
    b.transport.inject(Fault::ReuseId(id.clone()));
    match b.accounts.mutate(&ka, Credit { amount: 6 }).await {
        Err(CallError::Storage { message, .. }) => assert!(message.contains("used before"), "{message}"),
        other => panic!("expected the id's reuse refused, got {other:?}"),
    }
    // Another message under the id is another request too.
    b.transport.inject(Fault::ReuseId(id.clone()));
    assert!(matches!(b.accounts.mutate(&ka, Withdraw { amount: 5 }).await, Err(CallError::Storage { .. })));
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 5, "neither was applied");
    // The same request under the id is a repeat: the first output, not a second credit.
    b.transport.inject(Fault::ReuseId(id));
    assert_eq!(b.accounts.mutate(&ka, Credit { amount: 5 }).await.unwrap(), 5);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 5);
    b.crash().await;
    a.crash().await;
}

/// The handler's refusal is not recorded (nothing committed): the caller's retry under the same id, after the
/// condition changed, runs it again and succeeds; a repeat after that replays the success.
#[actix_rt::test]
async fn a_refused_mutation_is_not_recorded_and_its_retry_runs_again() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, ka) = two_nodes(&pg, &nats, dir_a.path(), dir_b.path()).await;

    let (answered, lost) = oneshot::channel();
    let (go, wait) = oneshot::channel();
    b.transport.inject(Fault::LoseAnswer(Some((answered, wait))));
    let call = {
        let accounts = b.accounts.clone();
        let ka = ka.clone();
        actix_rt::spawn(async move { accounts.mutate(&ka, Withdraw { amount: 10 }).await })
    };
    let first = String::from_utf8(lost.await.expect("the request reached the owner")).unwrap();
    assert!(first.contains("handler") && first.contains("Insufficient"), "refused on the owner: {first}");
    // While the caller has not heard back, the account gets the money (on the owner, no request id).
    assert_eq!(a.accounts.mutate(&ka, Credit { amount: 10 }).await.unwrap(), 10);
    go.send(()).unwrap();

    assert_eq!(call.await.unwrap().expect("the retry ran again and succeeded"), 0);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 0);
    let ids = b.transport.ids();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert_eq!(ids[0], ids[1]);
    // Now it is recorded: the same request again replays the success instead of withdrawing (and failing) again.
    b.transport.inject(Fault::ReuseId(ids[0].clone()));
    assert_eq!(b.accounts.mutate(&ka, Withdraw { amount: 10 }).await.unwrap(), 0);
    assert_eq!(a.accounts.read(&ka, Balance).await.unwrap(), 0);
    b.crash().await;
    a.crash().await;
}

/// What the record costs in the commit log: the log entries of routed (keyed) credits against local ones (no id)
/// on one owner. Prints the figures; the keyed entries carry the record's pages besides the counter's.
#[actix_rt::test]
async fn bytes_logged_per_routed_mutation_with_and_without_the_record() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, b, ka) = two_nodes(&pg, &nats, dir_a.path(), dir_b.path()).await;
    let local = format!("{ka}-local");
    let local = (0..).map(|i| format!("{local}{i}")).find(|k| a.serves(k)).expect("a serves some key");
    const N: i64 = 40;
    // The first entry of each actor is its snapshot; measure the ones after it.
    a.accounts.mutate(&local, Credit { amount: 1 }).await.unwrap();
    b.accounts.mutate(&ka, Credit { amount: 1 }).await.unwrap();
    for i in 0..N {
        a.accounts.mutate(&local, Credit { amount: 1 }).await.unwrap();
        assert_eq!(b.accounts.mutate(&ka, Credit { amount: 1 }).await.unwrap(), i + 2);
    }
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    actix_rt::spawn(conn);
    let mut per_entry = Vec::new();
    for key in [&local, &ka] {
        let row = client
            .query_one(
                "SELECT count(*), sum(octet_length(frames))::bigint FROM fdy_actor_log \
                 WHERE kind = 'account' AND key = $1 AND txid > 2",
                &[key],
            )
            .await
            .unwrap();
        let (entries, bytes): (i64, i64) = (row.get(0), row.get(1));
        assert_eq!(entries, N, "one entry per sequential mutation");
        per_entry.push(bytes / entries);
    }
    let (plain, keyed) = (per_entry[0], per_entry[1]);
    assert_eq!(a.accounts.read(&local, RemoteRecords).await.unwrap(), 0, "a local mutation records no id");
    assert_eq!(a.accounts.read(&ka, RemoteRecords).await.unwrap(), N + 1, "one record per routed mutation");
    eprintln!("bytes logged per mutation: local (no id) {plain}, routed with its record {keyed}");
    assert!(keyed > plain, "the record's pages ship with the mutation: {keyed} vs {plain}");
    b.crash().await;
    a.crash().await;
}
