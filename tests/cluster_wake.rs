//! Cluster mode (issue 15): the wake index in PostgreSQL (`fdy_actor_wake`). An actor that must run without a caller
//! (undelivered outbox rows, a schedule) says so in the same fenced write as the commit that made it so; a node that
//! gains its shard after the owner was lost with its disk wakes it from there, with no call. Commits that leave the
//! wake state as it was write nothing more. Runtimes in this process against a real PostgreSQL, each a "node" with
//! its own lease manager, commit log pump and data directory, resuming gained shards as `ClusterNode` does.

mod cluster_support;
mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::{Deserialize, Serialize};

use cluster_support::postgres::PgServer;
use foundry::cluster::{self, LeaseHooks, Leases, PgLog};
use foundry::runtime::{
    embed_migrations, Accepts, EmbeddedMigrations, Entity, KindConfig, Mutation, Read, Registry, Runtime,
    RuntimeConfig, Scheduled, ShardId, Tx, SHARD_COUNT,
};
use support::{Add, AddAndForward, GetEntryCount, GetValue, Tally, TallyError};

/// One PostgreSQL per test and lease threads that must stay on time: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A kind with one durable schedule: `Ring` adds one to its tally row.
struct Bell;

impl Entity for Bell {
    type Key = String;
    const KIND: &'static str = "bell";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Bell)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<Ring>();
    }
}

#[derive(Serialize, Deserialize)]
struct Ring;

impl Mutation for Ring {
    type Entity = Bell;
    type Output = ();
    type Error = TallyError;
    fn apply(self, _: &Bell, tx: &mut Tx<'_>) -> Result<(), TallyError> {
        diesel::sql_query("UPDATE tally SET value = value + 1 WHERE id = 1").execute(tx.conn())?;
        Ok(())
    }
}

impl Scheduled for Ring {
    const NAME: &'static str = "bell.ring";
}

/// Schedules a `Ring` this long from now.
struct RingAfter(Duration);

impl Mutation for RingAfter {
    type Entity = Bell;
    type Output = ();
    type Error = TallyError;
    fn apply(self, _: &Bell, tx: &mut Tx<'_>) -> Result<(), TallyError> {
        tx.schedule_after(self.0, &Ring)?;
        Ok(())
    }
}

struct Rings;

impl Read for Rings {
    type Entity = Bell;
    type Output = i64;
    type Error = TallyError;
    fn read(self, _: &Bell, db: &mut SqliteConnection) -> Result<i64, TallyError> {
        Ok(support::current(db)?)
    }
}

struct Node {
    leases: Option<Leases>,
    log: PgLog,
    rt: Runtime,
    tallies: Registry<Tally>,
    bells: Registry<Bell>,
}

impl Node {
    /// A node alone in the cluster once the others' leases are gone: it serves every shard, then resumes them as
    /// `ClusterNode` does when it gains shards (`Runtime::recover_shards`).
    async fn start(pg: &PgServer, id: &str, dir: &Path) -> Node {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let cfg = cluster_support::short_leases(id, pg.url());
        let leases = cluster::start(cfg.clone(), LeaseHooks::default()).await.expect("lease manager starts");
        let view = leases.view();
        support::eventually_some("the node serves every shard", || {
            let n = view.serving().len();
            async move { (n == usize::from(SHARD_COUNT)).then_some(()) }
        })
        .await;
        let log = PgLog::start(&cfg, leases.view(), leases.owner()).await.expect("commit log starts");
        let mut rc = RuntimeConfig::new(dir);
        rc.arbiters = 2;
        rc.router = Some(Arc::new(leases.view()));
        rc.commit_log = Some(Arc::new(log.clone()));
        let rt = Runtime::start(rc).expect("runtime starts");
        let tallies = rt.register::<Tally>(KindConfig::default());
        let bells = rt.register::<Bell>(KindConfig::default());
        let report = rt.recover_shards((0..SHARD_COUNT).map(ShardId)).await;
        assert!(report.failed.is_empty() && report.unknown_kinds.is_empty(), "{report:?}");
        Node { leases: Some(leases), log, rt, tallies, bells }
    }

    /// Machine loss: the lease manager stops without releasing (its leases expire) and the runtime goes away; the
    /// caller then deletes the data directory.
    async fn crash(mut self) {
        drop(self.leases.take());
        self.rt.shutdown().await;
    }

    fn wake_writes(&self) -> (u64, u64, u64) {
        let s = self.log.stats();
        (s.appends.load(Ordering::Relaxed), s.wake_writes.load(Ordering::Relaxed), s.wake_only.load(Ordering::Relaxed))
    }
}

async fn sql(pg: &PgServer) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.expect("direct connection");
    tokio::spawn(conn);
    client
}

/// The actor's wake row: its time, and the row version (`xmin`: changes with every write of the row).
async fn wake_row(client: &tokio_postgres::Client, kind: &str, key: &str) -> Option<(i64, String)> {
    client
        .query_opt("SELECT wake_at_ms, xmin::text FROM fdy_actor_wake WHERE kind = $1 AND key = $2", &[&kind, &key])
        .await
        .unwrap()
        .map(|r| (r.get(0), r.get(1)))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn wipe(dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    std::fs::create_dir_all(dir).unwrap();
}

/// (a) A message queued by an acknowledged commit, that its receiver cannot take yet, is delivered by the node that
/// takes over after the sender's node was lost with its disk: exactly once, and nobody calls the sender.
#[actix_rt::test]
async fn an_outbox_message_of_a_lost_node_is_delivered_by_the_next_owner_without_a_call() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let client = sql(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&pg, "node-a", dir.path()).await;
    let (sender, receiver) = ("sender".to_owned(), "receiver".to_owned());
    // 777 is refused with "retry later" while the receiver holds less than 10.
    a.tallies.mutate(&sender, AddAndForward { by: 777, target: receiver.clone() }).await.expect("acknowledged");
    let (at, _) = wake_row(&client, "tally", "sender").await.expect("the acknowledged commit wrote its wake row");
    assert_eq!(at, 0, "undelivered outbox rows: at once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(a.tallies.read(&receiver, GetValue).await.unwrap(), 0, "refused so far");
    assert!(wake_row(&client, "tally", "sender").await.is_some(), "still pending");

    a.crash().await;
    wipe(dir.path());
    let b_dir = tempfile::tempdir().unwrap();
    let b = Node::start(&pg, "node-b", b_dir.path()).await;
    // Only the receiver is called: it can take the message now.
    assert_eq!(b.tallies.mutate(&receiver, Add::new(10)).await.unwrap(), 10);
    support::eventually_some("the message reached the receiver", || {
        let t = b.tallies.clone();
        let r = receiver.clone();
        async move { (t.read(&r, GetValue).await.ok()? == 787).then_some(()) }
    })
    .await;
    assert!(b.tallies.is_live(&sender), "the sender was woken by the wake index");
    // Delivered, and the marker cleared once the outbox stayed empty: the wake row goes with it.
    support::eventually_some("the sender's wake row is cleared", || {
        let c = &client;
        async move { wake_row(c, "tally", "sender").await.is_none().then_some(()) }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.tallies.read(&receiver, GetValue).await.unwrap(), 787, "delivered once");
    assert_eq!(b.tallies.read(&receiver, GetEntryCount).await.unwrap(), 2, "the +10 and one delivery");
    b.crash().await;
}

/// (b) Schedules armed on a node lost with its disk before they fired fire on the new owner, each once: one already
/// overdue when the shard is gained, one due later (handed to the due scanner, not fired early).
#[actix_rt::test]
async fn schedules_of_a_lost_node_fire_on_the_next_owner_once() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let client = sql(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&pg, "node-a", dir.path()).await;
    let (soon, later) = ("soon".to_owned(), "later".to_owned());
    let armed = now_ms();
    a.bells.mutate(&soon, RingAfter(Duration::from_secs(2))).await.unwrap();
    a.bells.mutate(&later, RingAfter(Duration::from_secs(9))).await.unwrap();
    let started = Instant::now();
    for (key, after) in [("soon", 2_000), ("later", 9_000)] {
        let (at, _) = wake_row(&client, "bell", key).await.expect("the schedule's commit wrote its wake row");
        assert!((armed + after..=now_ms() + after).contains(&at), "{key}: due at {at}, armed at {armed}");
    }
    a.crash().await;
    wipe(dir.path());

    let b_dir = tempfile::tempdir().unwrap();
    let b = Node::start(&pg, "node-b", b_dir.path()).await;
    assert!(started.elapsed() < Duration::from_secs(8), "node b took over before the later schedule was due");
    support::eventually_some("the overdue schedule fired on node b", || {
        let bells = b.bells.clone();
        async move { bells.is_live(&"soon".to_owned()).then_some(()) }
    })
    .await;
    assert!(!b.bells.is_live(&later), "not woken before its time");
    support::eventually_some("the later schedule fired on node b", || {
        let bells = b.bells.clone();
        async move { bells.is_live(&"later".to_owned()).then_some(()) }
    })
    .await;
    assert!(started.elapsed() >= Duration::from_millis(8_500), "fired at its time, not before");
    for key in ["soon", "later"] {
        support::eventually_some("its wake row is gone once nothing is due", || {
            let c = &client;
            async move { wake_row(c, "bell", key).await.is_none().then_some(()) }
        })
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(b.bells.read(&soon, Rings).await.unwrap(), 1, "fired once");
    assert_eq!(b.bells.read(&later, Rings).await.unwrap(), 1, "fired once");
    b.crash().await;
}

/// (c) An actor with nothing pending has no wake row, and commits that leave the wake state as it was cost no write
/// of it (the same statement as without the index: one per entry); a delivered outbox clears the row, and so does a
/// destroy.
#[actix_rt::test]
async fn commits_that_change_nothing_write_no_wake_state() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let client = sql(&pg).await;
    let dir = tempfile::tempdir().unwrap();
    let a = Node::start(&pg, "node-a", dir.path()).await;
    let quiet = "quiet".to_owned();
    let before = a.wake_writes();
    for i in 1..=20 {
        assert_eq!(a.tallies.mutate(&quiet, Add::new(1)).await.unwrap(), i);
    }
    let after = a.wake_writes();
    assert!(wake_row(&client, "tally", "quiet").await.is_none(), "nothing pending: no row");
    assert_eq!((after.1 - before.1, after.2 - before.2), (0, 0), "no wake state written");
    let entries = after.0 - before.0;
    assert!((20..=21).contains(&entries), "one entry per commit (and the first snapshot): {entries}");
    eprintln!("20 plain mutations: {entries} entries (one statement each), 0 wake writes");

    // A schedule far away: one wake write; further schedules later than it change nothing.
    let bell = "far".to_owned();
    a.bells.mutate(&bell, RingAfter(Duration::from_secs(3600))).await.unwrap();
    let (at, xmin) = wake_row(&client, "bell", "far").await.expect("the schedule wrote its wake row");
    let base = a.wake_writes();
    for h in 2..=6 {
        a.bells.mutate(&bell, RingAfter(Duration::from_secs(3600 * h))).await.unwrap();
    }
    let now = a.wake_writes();
    assert_eq!((now.1 - base.1, now.2 - base.2), (0, 0), "the earliest did not move");
    assert_eq!(now.0 - base.0, 5, "one entry per commit");
    assert_eq!(wake_row(&client, "bell", "far").await, Some((at, xmin)), "the row was not written again");
    // An earlier schedule moves it, in the entry of that commit.
    a.bells.mutate(&bell, RingAfter(Duration::from_secs(1800))).await.unwrap();
    let moved = wake_row(&client, "bell", "far").await.expect("still there").0;
    assert!(moved < at - 1_000_000, "moved earlier: {moved} < {at}");
    assert_eq!(a.wake_writes().2 - now.2, 0, "carried by the entry, not a write of its own");

    // A delivered outbox: the row says "at once" while it is pending, and is gone once the outbox stayed empty.
    let sender = "sends".to_owned();
    a.tallies.mutate(&sender, AddAndForward { by: 1, target: "gets".into() }).await.unwrap();
    support::eventually_some("the delivery", || {
        let t = a.tallies.clone();
        async move { (t.read(&"gets".to_owned(), GetValue).await.ok()? == 1).then_some(()) }
    })
    .await;
    support::eventually_some("the sender's wake row is cleared", || {
        let c = &client;
        async move { wake_row(c, "tally", "sends").await.is_none().then_some(()) }
    })
    .await;
    let cleared = a.wake_writes();
    for _ in 0..5 {
        a.tallies.mutate(&sender, Add::new(1)).await.unwrap();
    }
    assert_eq!(a.wake_writes().1, cleared.1, "plain commits after it write no wake state");

    // A destroy deletes the row with the log.
    a.bells.destroy(&bell).await.expect("destroyed");
    assert!(wake_row(&client, "bell", "far").await.is_none(), "gone with the log");
    a.crash().await;
}
