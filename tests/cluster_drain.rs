//! Cluster mode: a node stops the live actors of a shard it stops serving. `Runtime::stop_shard` stops exactly the
//! shard's actors, as shutdown does (calls in flight finish and commit), waiting for activations that were under
//! way; a shard gained again resumes its outboxes and schedules (`Runtime::recover_shards`), and its schedules are
//! not woken while it is served elsewhere. Against a private PostgreSQL, a shard handed to another node is drained
//! before its lease is released, and a lease lost without a drain (Postgres out of reach: self-expiry) stops its
//! actors on this node by itself.

mod cluster_support;
mod support;

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use cluster_support::{postgres::PgServer, proxy::Proxy};
use foundry::cluster::store::Store;
use foundry::cluster::{self, rendezvous, ClusterConfig, ClusterNode, LeaseHooks, Readiness};
use foundry::runtime::{
    embed_migrations, shard_of, Accepts, ActivationFailure, CallError, EmbeddedMigrations, Entity, Mutation, Read,
    Registry, Route, Router, Runtime, RuntimeConfig, Scheduled, ShardId, Tx,
};
use serde::{Deserialize, Serialize};
use support::{Add, AddAndForward, Gate, GetValue, Tally, TallyError};

/// Serves every shard but the refused ones.
#[derive(Debug, Default)]
struct Refusing(Mutex<HashSet<ShardId>>);

impl Refusing {
    fn refuse(&self, shard: ShardId) {
        self.0.lock().unwrap().insert(shard);
    }

    fn serve_all(&self) {
        self.0.lock().unwrap().clear();
    }
}

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

impl Router for Refusing {
    fn route(&self, shard: ShardId) -> Route {
        if self.0.lock().unwrap().contains(&shard) {
            Route::Remote
        } else {
            Route::Local
        }
    }
}

/// `n` tally keys placed in `shard`.
fn keys_in(shard: ShardId, n: usize) -> Vec<String> {
    (0..).map(|i| format!("k{i}")).filter(|k| shard_of(k) == shard).take(n).collect()
}

fn routed_runtime(dir: &std::path::Path, router: Arc<dyn Router>, max_live: usize) -> Runtime {
    let mut config = RuntimeConfig::new(dir);
    config.arbiters = 1;
    config.max_live = max_live;
    config.router = Some(router);
    Runtime::start(config).unwrap()
}

fn is_not_owner<T: std::fmt::Debug, E: std::fmt::Debug>(res: &Result<T, CallError<E>>, shard: ShardId) -> bool {
    matches!(res, Err(CallError::Activation(e)) if matches!(e.reason, ActivationFailure::NotOwner(s) if s == shard))
}

#[actix_rt::test]
async fn stopping_a_shard_stops_its_actors_after_their_calls_and_no_others() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Refusing::default());
    let rt = routed_runtime(dir.path(), router.clone(), 64);
    let reg = rt.registry::<Tally>();
    let a = shard_of("k0");
    let (in_a, other) = (keys_in(a, 2), (1..).map(|i| format!("k{i}")).find(|k| shard_of(k) != a).unwrap());
    for key in in_a.iter().chain([&other]) {
        reg.mutate(key, Add::new(1)).await.unwrap();
    }

    // A call in flight on the first actor of shard A: an addition queued behind a gate that holds its mailbox.
    let (release, gate) = tokio::sync::oneshot::channel();
    reg.exec(&in_a[0], Gate { release: gate }).await.unwrap();
    let queued = actix_rt::spawn({
        let (reg, key) = (reg.clone(), in_a[0].clone());
        async move { reg.mutate(&key, Add::new(10)).await }
    });
    support::eventually("the addition is queued", || reg.mailbox_depth(&in_a[0]) == 1).await;

    router.refuse(a);
    let mut stop = Box::pin(rt.stop_shard(a));
    assert!(
        tokio::time::timeout(Duration::from_millis(300), &mut stop).await.is_err(),
        "the stop waits for the calls in flight"
    );
    release.send(()).unwrap();
    let stopped = tokio::time::timeout(Duration::from_secs(20), stop).await.expect("the stop ends");
    assert_eq!(stopped, 2, "both actors of shard A were asked to stop");
    assert_eq!(queued.await.unwrap().unwrap(), 11, "the queued call ran and committed before the actor stopped");

    for key in &in_a {
        assert!(!reg.is_live(key), "{key} stopped");
        let res = reg.read(key, GetValue).await;
        assert!(is_not_owner(&res, a), "{key} is not activated again: {res:?}");
    }
    // Closed, so readable from the file itself: the addition is there.
    let path = dir.path().join("tally").join(format!("{}.sqlite3", in_a[0]));
    assert_eq!(support::current(&mut support::open_file(&path)).unwrap(), 11);
    assert!(reg.is_live(&other), "an actor of another shard is untouched");
    assert_eq!(reg.read(&other, GetValue).await.unwrap(), 1);
    assert_eq!(rt.stop_shard(a).await, 0, "nothing left to stop");
    rt.shutdown().await;
}

#[actix_rt::test]
async fn an_activation_under_way_when_its_shard_stops_is_waited_for_and_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Refusing::default());
    // Room for four actors, all busy (a call queued behind a gate): the next activation waits for one to be idle.
    let rt = routed_runtime(dir.path(), router.clone(), 4);
    let reg = rt.registry::<Tally>();
    let target = "k0".to_owned();
    let a = shard_of(&target);
    let fillers: Vec<String> = (1..).map(|i| format!("k{i}")).filter(|k| shard_of(k) != a).take(4).collect();
    let mut releases = Vec::new();
    let mut queued = Vec::new();
    for key in &fillers {
        let (release, gate) = tokio::sync::oneshot::channel();
        releases.push(release);
        reg.exec(key, Gate { release: gate }).await.unwrap();
        let (reg, key) = (reg.clone(), key.clone());
        queued.push(actix_rt::spawn(async move { reg.mutate(&key, Add::new(1)).await }));
    }
    for key in &fillers {
        support::eventually("filler busy", || reg.mailbox_depth(key) == 1).await;
    }
    let call = actix_rt::spawn({
        let (reg, key) = (reg.clone(), target.clone());
        async move { reg.mutate(&key, Add::new(5)).await }
    });
    // Past the router's checks and waiting for a live slot (nothing observable tells it; a second is plenty).
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!reg.is_live(&target));

    router.refuse(a);
    let stop = actix_rt::spawn(rt.stop_shard(a));
    // Room appears: the activation under way completes, and the stop must catch its actor.
    drop(releases.remove(0));
    let res = tokio::time::timeout(Duration::from_secs(20), call).await.expect("the call ends").unwrap();
    assert!(res.is_ok() || is_not_owner(&res, a), "served before the stop, or refused: {res:?}");
    tokio::time::timeout(Duration::from_secs(20), stop).await.expect("the stop ends").unwrap();
    assert!(!reg.is_live(&target), "no actor of the stopped shard is left live");
    drop(releases);
    for call in queued {
        call.await.unwrap().unwrap();
    }
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_shard_gained_again_resumes_its_outboxes_and_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let router = Arc::new(Refusing::default());
    let rt = routed_runtime(dir.path(), router.clone(), 64);
    let (tallies, bells) = (rt.registry::<Tally>(), rt.registry::<Bell>());
    let sender = "k0".to_owned();
    let s = shard_of(&sender);
    let target = (1..).map(|i| format!("k{i}")).find(|k| shard_of(k) != s).unwrap();

    // The sender's delivery cannot reach its target's shard; a bell in the sender's shard is due shortly.
    router.refuse(shard_of(&target));
    tallies.mutate(&sender, AddAndForward { by: 3, target: target.clone() }).await.unwrap();
    bells.mutate(&sender, RingAfter(Duration::from_millis(200))).await.unwrap();
    // Then the sender's shard goes elsewhere: both stop with their work still to do.
    router.refuse(s);
    assert_eq!(rt.stop_shard(s).await, 2);
    assert!(!tallies.is_live(&sender) && !bells.is_live(&sender));

    // Overdue while its shard is served elsewhere: the scanner does not even try to wake the bell here.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!bells.is_live(&sender));
    assert_eq!(bells.stats().activation_failures.load(Ordering::SeqCst), 0, "no wake was attempted");

    router.serve_all();
    let report = rt.recover_shards([s]).await;
    assert_eq!(report.resumed, 1, "the sender had an outbox to deliver: {report:?}");
    support::eventually_some("the delivery arrived", || async {
        (tallies.read(&target, GetValue).await.ok() == Some(3)).then_some(())
    })
    .await;
    support::eventually_some("the bell rang", || async {
        (bells.read(&sender, Rings).await.ok() == Some(1)).then_some(())
    })
    .await;
    rt.shutdown().await;
}

const TTL: Duration = Duration::from_secs(3);

/// One PostgreSQL and lease threads per test: one at a time, so a loaded machine does not starve the lease threads.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn config(node: &str, url: String) -> ClusterConfig {
    ClusterConfig { drain_timeout: Duration::from_secs(20), ..ClusterConfig::new(node, url).with_ttl(TTL) }
}

/// A runtime taking part in the cluster as `node`, the way `foundry serve --cluster` runs one.
async fn cluster_runtime(dir: &std::path::Path, node: &str, url: String) -> (ClusterNode, Runtime, Registry<Tally>) {
    let mut node = ClusterNode::start(config(node, url), None).await.expect("the node joins");
    let rt = routed_runtime(dir, node.router(), 64);
    let reg = rt.registry::<Tally>();
    node.attach(&rt);
    let status = node.status();
    support::eventually("the node holds its shards", || status.readiness() == Readiness::Ready).await;
    (node, rt, reg)
}

#[actix_rt::test]
async fn a_shard_handed_to_another_node_is_released_only_after_its_actors_stopped() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let (node, rt, reg) = cluster_runtime(dir.path(), "a", pg.url()).await;
    assert_eq!(node.status().shards_served(), 1024, "alone, the node serves every shard");

    // Once "b" joins, rendezvous gives it `moving`; `staying` remains with "a".
    let desired = rendezvous::assign(&["a", "b"]);
    let mine = |want: usize| (0..).map(|i| format!("k{i}")).find(|k| desired[usize::from(shard_of(k).0)] == Some(want));
    let (staying, moving) = (mine(0).unwrap(), mine(1).unwrap());
    let moving_shard = shard_of(&moving);
    for key in [&staying, &moving] {
        reg.mutate(key, Add::new(1)).await.unwrap();
    }
    let (release, gate) = tokio::sync::oneshot::channel();
    reg.exec(&moving, Gate { release: gate }).await.unwrap();
    let gated = actix_rt::spawn({
        let (reg, key) = (reg.clone(), moving.clone());
        async move { reg.mutate(&key, Add::new(1)).await }
    });
    support::eventually("a call in flight", || reg.mailbox_depth(&moving) == 1).await;

    let b = cluster::start(config("b", pg.url()), LeaseHooks::default()).await.expect("b joins");
    let b_view = b.view();
    let theirs: Vec<ShardId> = (0..1024).map(ShardId).filter(|s| desired[usize::from(s.0)] == Some(1)).collect();
    // Every other shard of b's arrives; the gated one cannot: its drain waits for the call in flight.
    support::eventually("b holds its shards but the one being drained", || {
        theirs.iter().all(|s| (*s == moving_shard) != b_view.is_serving(*s).is_some())
    })
    .await;
    let store = Store::connect(&pg.url(), "cluster_drain test", Duration::from_secs(10)).await.unwrap();
    let row = store.shards().await.unwrap().into_iter().find(|r| r.shard == moving_shard).unwrap();
    assert!(row.owner.as_deref().is_some_and(|o| o.starts_with("a/")), "still a's while draining: {row:?}");
    assert!(reg.is_live(&moving), "the actor with a call in flight is still live");
    assert_eq!(node.status().view().is_serving(moving_shard), None, "but its shard is no longer served");

    release.send(()).unwrap();
    assert_eq!(gated.await.unwrap().unwrap(), 2, "the call in flight finished");
    support::eventually("b takes the drained shard over", || b_view.is_serving(moving_shard).is_some()).await;
    assert!(!reg.is_live(&moving), "stopped before its lease was released");
    let history = store.history().await.unwrap();
    let handed = history.iter().filter(|h| h.shard == moving_shard).collect::<Vec<_>>();
    let [first, second] = handed.as_slice() else { panic!("two acquisitions of the moved shard: {handed:?}") };
    assert!(first.owner.starts_with("a/") && first.released_at.is_some(), "released by a: {first:?}");
    assert!(second.owner.starts_with("b/") && second.prev_owner.is_none(), "taken free by b: {second:?}");
    assert!(reg.is_live(&staying), "the shard a keeps is untouched");
    let res = reg.read(&moving, GetValue).await;
    assert!(is_not_owner(&res, moving_shard), "{res:?}");

    b.shutdown().await.unwrap();
    node.shutdown().await.unwrap();
    rt.shutdown().await;
}

#[actix_rt::test]
async fn a_lease_lost_without_a_drain_stops_its_actors_here() {
    let _serial = SERIAL.lock().await;
    let Some(pg) = PgServer::start().await else { return };
    let proxy = Proxy::start(pg.addr());
    let dir = tempfile::tempdir().unwrap();
    let (node, rt, reg) = cluster_runtime(dir.path(), "a", pg.url_via(proxy.addr())).await;
    let keys: Vec<String> = (0..6).map(|i| format!("k{i}")).collect();
    for key in &keys {
        reg.mutate(key, Add::new(2)).await.unwrap();
    }
    // A delivery its receiver refuses for now (777 is taken only once it holds 10 more): the sender keeps it.
    let (sender, target) = ("fwd-sender".to_owned(), "fwd-target".to_owned());
    reg.mutate(&sender, AddAndForward { by: 777, target: target.clone() }).await.unwrap();

    // Postgres out of reach: renewals fail, and the leases lapse on this node's clock.
    proxy.pause();
    let status = node.status();
    support::eventually("the node gives its shards up", || status.readiness() == Readiness::StoreUnreachable).await;
    support::eventually("every actor stopped", || keys.iter().chain([&sender]).all(|k| !reg.is_live(k))).await;
    assert!(!rt.is_shutting_down(), "stopped shard by shard, not by a shutdown");
    let res = reg.mutate(&keys[0], Add::new(1)).await;
    assert!(is_not_owner(&res, shard_of(&keys[0])), "{res:?}");

    // Back in reach: the shards come back, and the actors with their state.
    proxy.resume();
    support::eventually("the node serves again", || status.readiness() == Readiness::Ready).await;
    support::eventually("every shard back", || status.shards_served() == 1024).await;
    for key in &keys {
        assert_eq!(reg.read(key, GetValue).await.unwrap(), 2, "{key}");
    }
    // The sender stopped with its delivery pending; gaining its shard back revived it, so the delivery goes on.
    assert!(!keys.contains(&sender));
    reg.mutate(&target, Add::new(10)).await.unwrap();
    support::eventually_some("the pending delivery arrived", || async {
        (reg.read(&target, GetValue).await.ok() == Some(787)).then_some(())
    })
    .await;
    node.shutdown().await.unwrap();
    rt.shutdown().await;
}
