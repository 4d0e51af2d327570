//! Cluster mode, slice 2 (issue 15): shard ownership in a real PostgreSQL. Three lease managers in this process,
//! each reaching Postgres through its own fault-injecting proxy, with short leases (3 s). Every test also checks,
//! from the nodes' own events, that no shard was ever served by two nodes at once.

mod cluster_support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use cluster_support::{postgres::PgServer, proxy::Proxy};
use foundry::cluster::store::{HistoryRow, ShardRow, Store};
use foundry::cluster::{
    self, rendezvous, ClusterConfig, ClusterError, Drain, Epoch, LeaseEvent, LeaseHooks, LeaseView, Leases, LostReason,
    NoDrain,
};
use foundry::runtime::{Route, Router, ShardId, SHARD_COUNT};
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

const TTL: Duration = Duration::from_secs(3);
const RENEW: Duration = Duration::from_secs(1);
const TICK: Duration = Duration::from_millis(250);

/// One PostgreSQL and three lease threads per test: run the tests one at a time, so that a loaded 2-core machine
/// does not starve the lease threads of the test that is running.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    SERIAL.lock().await
}

fn config(node: &str, url: String) -> ClusterConfig {
    ClusterConfig {
        ttl: TTL,
        renew_every: RENEW,
        margin: Duration::from_secs(1),
        tick: TICK,
        call_timeout: Duration::from_millis(750),
        drain_timeout: Duration::from_secs(2),
        ..ClusterConfig::new(node, url)
    }
}

/// A lease manager under test, its event log and the proxy it reaches Postgres through.
struct Node {
    id: String,
    owner: String,
    leases: Option<Leases>,
    view: LeaseView,
    events: mpsc::UnboundedReceiver<LeaseEvent>,
    log: Vec<LeaseEvent>,
    proxy: Proxy,
}

impl Node {
    async fn start(pg: &PgServer, id: &str) -> Node {
        Node::start_with(pg, id, Arc::new(NoDrain)).await
    }

    async fn start_with(pg: &PgServer, id: &str, drain: Arc<dyn Drain>) -> Node {
        let proxy = Proxy::start(pg.addr());
        let (tx, events) = mpsc::unbounded_channel();
        let hooks = LeaseHooks { drain, events: Some(tx), ..LeaseHooks::default() };
        let leases = cluster::start(config(id, pg.url_via(proxy.addr())), hooks).await.expect("lease manager starts");
        Node {
            id: id.to_owned(),
            owner: leases.owner(),
            view: leases.view(),
            leases: Some(leases),
            events,
            log: Vec::new(),
            proxy,
        }
    }

    fn collect(&mut self) -> &[LeaseEvent] {
        while let Ok(e) = self.events.try_recv() {
            self.log.push(e);
        }
        &self.log
    }

    fn serving(&self) -> BTreeMap<ShardId, Epoch> {
        self.view.serving().into_iter().collect()
    }

    fn leases(&mut self) -> Leases {
        self.leases.take().expect("the node is running")
    }

    /// The node's acquisition of `shard` at `epoch`, if it made it.
    fn acquired(&mut self, shard: ShardId, epoch: Epoch) -> Option<Instant> {
        self.collect().iter().find_map(|e| match *e {
            LeaseEvent::Acquired { shard: s, epoch: ep, at, .. } if s == shard && ep == epoch => Some(at),
            _ => None,
        })
    }

    /// When the node stopped serving `shard` at `epoch`, and why.
    fn lost(&mut self, shard: ShardId, epoch: Epoch) -> Option<(LostReason, Instant)> {
        self.collect().iter().find_map(|e| match *e {
            LeaseEvent::Lost { shard: s, epoch: ep, reason, serving_until } if s == shard && ep == epoch => {
                Some((reason, serving_until))
            }
            _ => None,
        })
    }
}

async fn start_pg() -> Option<PgServer> {
    PgServer::start().await
}

/// The test's own connection, straight to Postgres (after a node has created the schema).
async fn direct(pg: &PgServer) -> Store {
    Store::connect(&pg.url(), "cluster_leases test", Duration::from_secs(10)).await.expect("direct connection")
}

fn shard_rows(rows: &[ShardRow]) -> BTreeMap<ShardId, &ShardRow> {
    rows.iter().map(|r| (r.shard, r)).collect()
}

fn history_of(history: &[HistoryRow], shard: ShardId, epoch: Epoch) -> &HistoryRow {
    history
        .iter()
        .find(|h| h.shard == shard && h.epoch == epoch)
        .unwrap_or_else(|| panic!("no history row {shard}@{epoch}"))
}

/// Waits until the shards are split by rendezvous over exactly the nodes `live` (indices into `nodes`): each shard
/// served by its desired owner alone, under the epoch and owner Postgres has, with a live lease; every other node
/// serves nothing.
async fn wait_stable(store: &Store, nodes: &[&Node], live: &[usize]) {
    let ids: Vec<&str> = live.iter().map(|&i| nodes[i].id.as_str()).collect();
    let desired = rendezvous::assign(&ids);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = store.shards().await.unwrap();
        let mut wrong = Vec::new();
        for row in &rows {
            let want = nodes[live[desired[usize::from(row.shard.0)].unwrap()]];
            let serving: Vec<(&str, Epoch)> =
                nodes.iter().filter_map(|n| n.view.is_serving(row.shard).map(|e| (n.id.as_str(), e))).collect();
            let ok =
                serving == [(want.id.as_str(), row.epoch)] && row.owner.as_deref() == Some(&want.owner) && row.live;
            if !ok {
                wrong.push(format!(
                    "{}: want {} got {serving:?} / table {:?}@{}",
                    row.shard, want.id, row.owner, row.epoch
                ));
            }
        }
        if wrong.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not stable over {ids:?} after 30 s; {} shards off, e.g. {:?}",
            wrong.len(),
            &wrong[..wrong.len().min(5)]
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// From every node's events: for each shard, the serving intervals of all nodes are disjoint and their epochs
/// increase with time. An interval runs from the acquisition's answer (serving starts after it) to the `Lost`
/// event's last serving moment; one still open ends now.
fn assert_never_served_twice(nodes: &mut [&mut Node]) {
    let now = Instant::now();
    let mut intervals: BTreeMap<ShardId, Vec<(Instant, Instant, Epoch, String)>> = BTreeMap::new();
    for node in nodes.iter_mut() {
        let owner = node.owner.clone();
        let mut open: BTreeMap<ShardId, (Instant, Epoch)> = BTreeMap::new();
        for e in node.collect().to_vec() {
            match e {
                LeaseEvent::Acquired { shard, epoch, at, .. } => {
                    assert!(open.insert(shard, (at, epoch)).is_none(), "{owner} acquired {shard} twice");
                }
                LeaseEvent::Lost { shard, epoch, serving_until, .. } => {
                    let (start, e) = open.remove(&shard).unwrap_or_else(|| panic!("{owner} lost {shard} unheld"));
                    assert_eq!(e, epoch, "{owner} lost {shard} under another epoch");
                    intervals.entry(shard).or_default().push((start, serving_until.max(start), epoch, owner.clone()));
                }
            }
        }
        for (shard, (start, epoch)) in open {
            let end = node.view.snapshot().held(shard).map_or(now, |h| h.served_until(now));
            intervals.entry(shard).or_default().push((start, end, epoch, owner.clone()));
        }
    }
    for (shard, mut list) in intervals {
        list.sort();
        for pair in list.windows(2) {
            let ((_, end, e1, o1), (start, _, e2, o2)) = (&pair[0], &pair[1]);
            assert!(end <= start, "shard {shard} served by {o1} (epoch {e1}) and {o2} (epoch {e2}) at once");
            assert!(e1 < e2, "shard {shard}: epoch {e2} of {o2} followed epoch {e1} of {o1}");
        }
    }
}

fn as_wall_clock(t: Instant) -> SystemTime {
    let now = Instant::now();
    SystemTime::now() - now.saturating_duration_since(t) + t.saturating_duration_since(now)
}

async fn three_nodes(pg: &PgServer) -> (Node, Node, Node, Store) {
    let a = Node::start(pg, "node-a").await;
    let store = direct(pg).await;
    let b = Node::start(pg, "node-b").await;
    let c = Node::start(pg, "node-c").await;
    wait_stable(&store, &[&a, &b, &c], &[0, 1, 2]).await;
    (a, b, c, store)
}

#[tokio::test]
async fn three_nodes_split_the_shards_by_rendezvous_and_each_shard_has_one_owner() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let (mut a, mut b, mut c, store) = three_nodes(&pg).await;

    let rows = store.shards().await.unwrap();
    assert_eq!(rows.len(), usize::from(SHARD_COUNT));
    let history = store.history().await.unwrap();
    let mut per_node = BTreeMap::new();
    for row in &rows {
        // The lease in the table is the one recorded when it was acquired.
        let h = history_of(&history, row.shard, row.epoch);
        assert_eq!(Some(&h.owner), row.owner.as_ref());
        assert!(row.expires_at.unwrap() > h.acquired_at);
        *per_node.entry(row.owner.clone().unwrap()).or_insert(0) += 1;
    }
    // Spread: every node got about a third (rendezvous over three names; exact counts checked in the unit tests).
    for n in [&a, &b, &c] {
        let count = per_node[&n.owner];
        assert!((256..=427).contains(&count), "{} holds {count} shards", n.id);
        assert_eq!(n.serving().len(), count);
    }
    let nodes = store.nodes().await.unwrap();
    let registered: Vec<(&str, &str)> = nodes.iter().map(|n| (n.node_id.as_str(), n.boot_id.as_str())).collect();
    let booted: Vec<(&str, &str)> =
        [&a, &b, &c].iter().map(|n| (n.id.as_str(), n.leases.as_ref().unwrap().boot_id())).collect();
    assert_eq!(registered, booted);
    // The view is the runtime's router: local exactly where the node serves.
    for s in 0..SHARD_COUNT {
        let shard = ShardId(s);
        let local: Vec<bool> = [&a, &b, &c].iter().map(|n| n.view.route(shard) == Route::Local).collect();
        assert_eq!(local.iter().filter(|l| **l).count(), 1, "shard {shard}: {local:?}");
    }
    assert_never_served_twice(&mut [&mut a, &mut b, &mut c]);
}

#[tokio::test]
async fn a_killed_node_s_shards_are_taken_over_after_expiry_with_the_next_epoch() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let (mut a, mut b, mut c, store) = three_nodes(&pg).await;
    let before: BTreeMap<ShardId, Epoch> = store.shards().await.unwrap().iter().map(|r| (r.shard, r.epoch)).collect();
    let held = b.serving();

    // As a crash: the task is dropped without releasing anything; serving stops at once.
    b.leases().kill().await;
    assert!(b.serving().is_empty());
    wait_stable(&store, &[&a, &b, &c], &[0, 2]).await;

    let rows = store.shards().await.unwrap();
    let history = store.history().await.unwrap();
    let desired = rendezvous::assign(&["node-a", "node-c"]);
    for (shard, &epoch) in &held {
        let row = shard_rows(&rows)[shard];
        assert_eq!(row.epoch, Epoch(epoch.0 + 1), "shard {shard}");
        let h = history_of(&history, *shard, row.epoch);
        let heir = [&a.owner, &c.owner][desired[usize::from(shard.0)].unwrap()];
        assert_eq!(&h.owner, heir);
        // Taken from the dead node (not released by it), and only once its lease had expired.
        assert_eq!(h.prev_owner.as_ref(), Some(&b.owner), "shard {shard}");
        assert!(h.acquired_at > h.prev_expires_at.unwrap(), "shard {shard} taken before its lease expired");
        assert_eq!(history_of(&history, *shard, epoch).released_at, None);
    }
    for row in &rows {
        if !held.contains_key(&row.shard) {
            assert_eq!(row.epoch, before[&row.shard], "shard {} of a surviving node moved", row.shard);
        }
    }
    assert_never_served_twice(&mut [&mut a, &mut b, &mut c]);
}

/// Records each drain: the shard, its epoch, and whether the node still served it when its drain began.
#[derive(Default)]
struct RecordingDrain {
    view: OnceLock<LeaseView>,
    calls: Mutex<Vec<(ShardId, Epoch, bool)>>,
}

impl Drain for RecordingDrain {
    fn drain(&self, shard: ShardId, epoch: Epoch) -> BoxFuture<'static, ()> {
        let served = self.view.get().is_some_and(|v| v.is_serving(shard).is_some());
        self.calls.lock().unwrap().push((shard, epoch, served));
        Box::pin(tokio::time::sleep(Duration::from_millis(50)))
    }
}

#[tokio::test]
async fn a_graceful_stop_drains_and_releases_and_peers_take_over_without_waiting_for_expiry() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let mut a = Node::start(&pg, "node-a").await;
    let store = direct(&pg).await;
    let drain = Arc::new(RecordingDrain::default());
    let mut b = Node::start_with(&pg, "node-b", drain.clone()).await;
    drain.view.set(b.view.clone()).unwrap();
    let mut c = Node::start(&pg, "node-c").await;
    wait_stable(&store, &[&a, &b, &c], &[0, 1, 2]).await;
    drain.calls.lock().unwrap().clear();
    let held = b.serving();
    // A lower bound of each lease's expiry: renewals only push it later.
    let expiry: BTreeMap<ShardId, SystemTime> =
        store.shards().await.unwrap().iter().filter_map(|r| Some((r.shard, r.expires_at?))).collect();

    let report = b.leases().shutdown().await.expect("graceful stop");
    assert_eq!(report.released, held.len());
    assert_eq!(report.left_to_expire, 0);
    assert!(b.serving().is_empty());
    let drained: BTreeMap<ShardId, Epoch> = drain.calls.lock().unwrap().iter().map(|(s, e, _)| (*s, *e)).collect();
    assert_eq!(drained, held, "every held shard drained, each once, under its epoch");
    assert!(
        drain.calls.lock().unwrap().iter().all(|(_, _, served)| !served),
        "a shard was still served while draining"
    );
    assert!(store.nodes().await.unwrap().iter().all(|n| n.node_id != "node-b"), "the node left the node list");

    wait_stable(&store, &[&a, &b, &c], &[0, 2]).await;
    let history = store.history().await.unwrap();
    for (shard, &epoch) in &held {
        assert!(matches!(b.lost(*shard, epoch), Some((LostReason::Released, _))), "shard {shard}");
        let released = history_of(&history, *shard, epoch).released_at.expect("release recorded");
        let next = history_of(&history, *shard, Epoch(epoch.0 + 1));
        assert_eq!(next.prev_owner, None, "shard {shard} was free when taken");
        assert!(next.acquired_at >= released);
        assert!(next.acquired_at < expiry[shard], "shard {shard} waited for the expiry of a released lease");
    }
    assert_never_served_twice(&mut [&mut a, &mut b, &mut c]);
}

#[tokio::test]
async fn a_paused_node_stops_serving_before_anyone_can_acquire_and_its_late_calls_are_refused() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let (mut a, mut b, mut c, store) = three_nodes(&pg).await;
    let held = b.serving();

    // Its Postgres connection freezes: heartbeats, renewals and everything after are held in the proxy.
    b.proxy.pause();
    wait_stable(&store, &[&a, &b, &c], &[0, 2]).await;
    // `is_serving` turned false by itself at each deadline; the stuck manager reports it at its next tick.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !held.iter().all(|(s, e)| b.lost(*s, *e).is_some()) {
        assert!(Instant::now() < deadline, "the paused node's manager never reported its expired leases");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let history = store.history().await.unwrap();
    for (&shard, &epoch) in &held {
        let next = Epoch(epoch.0 + 1);
        let (reason, serving_until) = b.lost(shard, epoch).expect("the paused node gave the shard up by itself");
        assert_eq!(reason, LostReason::Expired, "shard {shard}");
        let heir = if a.acquired(shard, next).is_some() { &mut a } else { &mut c };
        let acquired = heir.acquired(shard, next).unwrap_or_else(|| panic!("nobody acquired {shard}@{next}"));
        // Both on this machine's monotonic clock: the old owner stopped before the new one's acquisition answered…
        assert!(serving_until < acquired, "shard {shard}: served until after the takeover");
        // …and, on the wall clock Postgres shares here, before Postgres let the new owner in.
        let h = history_of(&history, shard, next);
        assert!(as_wall_clock(serving_until) < h.acquired_at, "shard {shard}: served until after Postgres' takeover");
        assert_eq!(h.prev_owner.as_ref(), Some(&b.owner));
        assert!(b.view.is_serving(shard).is_none());
    }

    // Its late renewal and release (as if they arrived now) are refused: the owner and epoch moved on.
    let late: Vec<(ShardId, Epoch)> = held.iter().map(|(s, e)| (*s, *e)).collect();
    assert_eq!(store.renew(&b.owner, &late, TTL).await.unwrap(), vec![]);
    assert_eq!(store.release(&b.owner, &late).await.unwrap(), vec![]);
    let rows = store.shards().await.unwrap();
    for (shard, epoch) in &held {
        let row = shard_rows(&rows)[shard];
        assert_eq!(row.epoch, Epoch(epoch.0 + 1));
        assert!(row.owner.as_ref().is_some_and(|o| *o == a.owner || *o == c.owner));
    }

    // Unfrozen, its held statements reach Postgres late and change nothing; it rejoins and gets its shards back
    // through handoffs, under new epochs.
    b.proxy.resume();
    wait_stable(&store, &[&a, &b, &c], &[0, 1, 2]).await;
    let rows = store.shards().await.unwrap();
    for (shard, epoch) in &held {
        assert_eq!(shard_rows(&rows)[shard].epoch, Epoch(epoch.0 + 2), "shard {shard}");
    }
    assert_never_served_twice(&mut [&mut a, &mut b, &mut c]);
}

#[tokio::test]
async fn a_restarted_node_never_renews_its_predecessors_leases() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let (mut a, mut b, mut c, store) = three_nodes(&pg).await;
    let held = b.serving();
    let old_owner = b.owner.clone();
    b.leases().kill().await;

    let mut b2 = Node::start(&pg, "node-b").await;
    assert_ne!(b2.owner, old_owner, "a new boot id");
    // Renewing the predecessor's leases as the new boot is refused (owner differs), whatever their state.
    let mine: Vec<(ShardId, Epoch)> = held.iter().map(|(s, e)| (*s, *e)).collect();
    assert_eq!(store.renew(&b2.owner, &mine, TTL).await.unwrap(), vec![]);

    // Same node id, so the same shards: it gets them only once the old leases expired, each under a new epoch.
    wait_stable(&store, &[&a, &b2, &c], &[0, 1, 2]).await;
    let history = store.history().await.unwrap();
    for (&shard, &epoch) in &held {
        let next = Epoch(epoch.0 + 1);
        assert!(b2.acquired(shard, epoch).is_none(), "shard {shard}: served under the predecessor's epoch");
        assert!(b2.acquired(shard, next).is_some(), "shard {shard}");
        let h = history_of(&history, shard, next);
        assert_eq!(h.owner, b2.owner);
        assert_eq!(h.prev_owner.as_ref(), Some(&old_owner));
        assert!(h.acquired_at > h.prev_expires_at.unwrap(), "shard {shard} taken before its lease expired");
    }
    assert_never_served_twice(&mut [&mut a, &mut b, &mut b2, &mut c]);
}

#[tokio::test]
async fn a_paused_node_replaced_by_a_new_boot_stops_for_good_when_it_resumes() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let (mut a, mut b, mut c, store) = three_nodes(&pg).await;
    let held = b.serving();
    b.proxy.pause();
    let mut b2 = Node::start(&pg, "node-b").await;
    wait_stable(&store, &[&a, &b, &b2, &c], &[0, 2, 3]).await;
    for (&shard, &epoch) in &held {
        assert!(b2.acquired(shard, Epoch(epoch.0 + 1)).is_some(), "shard {shard}");
    }
    let epochs: Vec<(ShardId, Epoch)> = store.shards().await.unwrap().iter().map(|r| (r.shard, r.epoch)).collect();

    b.proxy.resume();
    let deadline = Instant::now() + Duration::from_secs(20);
    while b.view.snapshot().stopped().is_none() {
        assert!(Instant::now() < deadline, "the old boot did not notice it was replaced");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(b.view.snapshot().stopped(), Some(LostReason::Superseded));
    assert!(matches!(b.leases().shutdown().await, Err(ClusterError::Superseded(id)) if id == "node-b"));
    // Nothing moved: the new boot keeps its row and every shard keeps its owner and epoch.
    tokio::time::sleep(TICK * 4).await;
    wait_stable(&store, &[&a, &b, &b2, &c], &[0, 2, 3]).await;
    let after: Vec<(ShardId, Epoch)> = store.shards().await.unwrap().iter().map(|r| (r.shard, r.epoch)).collect();
    assert_eq!(after, epochs);
    let row = store.nodes().await.unwrap().into_iter().find(|n| n.node_id == "node-b").unwrap();
    assert_eq!(row.boot_id, b2.leases.as_ref().unwrap().boot_id());
    assert_never_served_twice(&mut [&mut a, &mut b, &mut b2, &mut c]);
}

#[tokio::test]
async fn a_bad_configuration_or_an_unreachable_postgres_starts_nothing() {
    let _serial = serial().await;
    let bad =
        ClusterConfig { node_id: "a/b".into(), ..config("x", "postgresql://postgres@127.0.0.1:1/postgres".into()) };
    assert!(matches!(cluster::start(bad, LeaseHooks::default()).await, Err(ClusterError::Config(_))));
    // Nothing listens on port 1: refused at once, with the store's error.
    let unreachable = config("node-x", "postgresql://postgres@127.0.0.1:1/postgres".into());
    assert!(matches!(cluster::start(unreachable, LeaseHooks::default()).await, Err(ClusterError::Store(_))));
}

/// Straight against the store, without managers: what each lease statement accepts and refuses.
#[tokio::test]
async fn the_lease_statements_fence_by_owner_epoch_and_expiry() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let mut store = direct(&pg).await;
    store.migrate().await.unwrap();
    let (x, y) = ("x/1", "y/1");
    let (s1, s2) = (ShardId(1), ShardId(2));
    let short = Duration::from_secs(1);

    let got = store.acquire(x, &[s1, s2], short).await.unwrap();
    assert_eq!(got.iter().map(|a| (a.shard, a.epoch)).collect::<Vec<_>>(), [(s1, Epoch(1)), (s2, Epoch(1))]);
    assert_eq!(store.acquire(y, &[s1, s2], TTL).await.unwrap(), vec![], "held and live: not acquirable");
    assert_eq!(store.renew(y, &[(s1, Epoch(1))], TTL).await.unwrap(), vec![], "another owner cannot renew");
    assert_eq!(store.renew(x, &[(s1, Epoch(2))], TTL).await.unwrap(), vec![], "nor the owner at another epoch");
    assert_eq!(store.release(y, &[(s1, Epoch(1))]).await.unwrap(), vec![], "nor release");
    assert_eq!(store.release(x, &[(s1, Epoch(0))]).await.unwrap(), vec![]);
    assert_eq!(store.renew(x, &[(s1, Epoch(1))], short).await.unwrap(), [(s1, Epoch(1))]);

    // Let both expire (on Postgres' clock) without anyone taking them.
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.shards().await.unwrap()[1..=2].iter().any(|r| r.live) {
        assert!(Instant::now() < deadline, "the leases never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(store.renew(x, &[(s1, Epoch(1)), (s2, Epoch(1))], TTL).await.unwrap(), vec![], "expired: lost");
    let taken = store.acquire(y, &[s1], TTL).await.unwrap();
    assert_eq!(taken.iter().map(|a| (a.shard, a.epoch)).collect::<Vec<_>>(), [(s1, Epoch(2))]);
    assert_eq!(store.release(x, &[(s1, Epoch(1))]).await.unwrap(), vec![], "a late release changes nothing");
    assert_eq!(store.release(y, &[(s1, Epoch(2))]).await.unwrap(), [(s1, Epoch(2))]);
    let again = store.acquire(x, &[s1], TTL).await.unwrap();
    assert_eq!(again.iter().map(|a| (a.shard, a.epoch)).collect::<Vec<_>>(), [(s1, Epoch(3))]);

    let rows = store.shards().await.unwrap();
    assert_eq!((rows[1].owner.as_deref(), rows[1].epoch, rows[1].live), (Some(x), Epoch(3), true));
    assert_eq!((rows[2].owner.as_deref(), rows[2].epoch, rows[2].live), (Some(x), Epoch(1), false));
    assert!(rows.iter().filter(|r| r.shard.0 > 2).all(|r| r.owner.is_none() && r.epoch == Epoch(0)));
    let history: Vec<(u16, u64, String, Option<String>, bool, bool)> = store
        .history()
        .await
        .unwrap()
        .into_iter()
        .map(|h| (h.shard.0, h.epoch.0, h.owner, h.prev_owner, h.prev_expires_at.is_some(), h.released_at.is_some()))
        .collect();
    assert_eq!(
        history,
        [
            (1, 1, x.to_owned(), None, false, false),
            (1, 2, y.to_owned(), Some(x.to_owned()), true, true),
            (1, 3, x.to_owned(), None, false, false),
            (2, 1, x.to_owned(), None, false, false),
        ]
    );
}

#[tokio::test]
async fn the_schema_is_created_once_by_nodes_starting_together_and_a_newer_schema_is_refused() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let mut stores = Vec::new();
    for _ in 0..3 {
        stores.push(direct(&pg).await);
    }
    let [s1, s2, s3] = &mut stores[..] else { unreachable!() };
    let (r1, r2, r3) = tokio::join!(s1.migrate(), s2.migrate(), s3.migrate());
    for r in [r1, r2, r3] {
        r.expect("concurrent migration");
    }
    stores[0].migrate().await.unwrap();
    assert_eq!(stores[0].shards().await.unwrap().len(), usize::from(SHARD_COUNT));

    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    let versions: Vec<i32> =
        client.query("SELECT version FROM fdy_schema_version", &[]).await.unwrap().iter().map(|r| r.get(0)).collect();
    assert_eq!(versions, [1, 2, 3], "each migration applied once");
    client.execute("INSERT INTO fdy_schema_version (version) VALUES (99)", &[]).await.unwrap();
    let err = stores[0].migrate().await.unwrap_err();
    assert!(matches!(err, foundry::cluster::StoreError::SchemaTooNew { found: 99, known: 3 }), "{err}");
    // A node of this build refuses to start on it, saying why.
    let refused = cluster::start(config("node-a", pg.url()), LeaseHooks::default()).await;
    assert!(matches!(refused, Err(ClusterError::Store(foundry::cluster::StoreError::SchemaTooNew { .. }))));
}

/// Rows of nodes that died without leaving are deleted once their heartbeat is over an hour old; a node dead for
/// less is kept (it may come back), and so is every live one.
#[tokio::test]
async fn rows_of_nodes_dead_for_over_an_hour_are_pruned() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let mut store = direct(&pg).await;
    store.migrate().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    for (node, age) in [("ghost", "2 hours"), ("dozing", "30 minutes")] {
        let sql = format!(
            "INSERT INTO fdy_node (node_id, boot_id, addr, started_at, heartbeat)
             VALUES ($1, 'b', NULL, now() - interval '{age}', now() - interval '{age}')"
        );
        client.execute(&sql, &[&node]).await.unwrap();
    }
    assert!(cluster::leases::NODE_DEAD_FOR <= Duration::from_secs(3600));
    let mut a = Node::start(&pg, "node-a").await;
    let names = || async { store.nodes().await.unwrap().into_iter().map(|n| n.node_id).collect::<Vec<_>>() };
    let deadline = Instant::now() + Duration::from_secs(10);
    while names().await.contains(&"ghost".to_owned()) {
        assert!(Instant::now() < deadline, "the ghost's row is still there");
        tokio::time::sleep(TICK).await;
    }
    assert_eq!(names().await, ["dozing", "node-a"], "dead for less than an hour, and live: kept");
    assert_never_served_twice(&mut [&mut a]);
}

/// A graceful stop tells the release hook (which `serve --cluster` announces on NATS, so peers acquire at once) each
/// shard it released, once, and only after the release committed in Postgres.
#[tokio::test]
async fn a_graceful_stop_announces_each_release_once_it_committed() {
    let _serial = serial().await;
    let Some(pg) = start_pg().await else { return };
    let a = Node::start(&pg, "node-a").await;
    let store = direct(&pg).await;
    let announced = Arc::new(Mutex::new(Vec::<(ShardId, bool)>::new()));
    let b_owner = Arc::new(OnceLock::<String>::new());
    // One connection, made before: the hook stays as quick as the NATS publish it stands for.
    let checker = Arc::new(tokio::sync::Mutex::new(direct(&pg).await));
    let hook: cluster::OnReleased = {
        let (announced, b_owner) = (announced.clone(), b_owner.clone());
        Arc::new(move |shards: Vec<ShardId>| {
            let (announced, b_owner, checker) = (announced.clone(), b_owner.clone(), checker.clone());
            Box::pin(async move {
                // Announced only once released: no row of these shards still names b (free, or a took it).
                let rows = checker.lock().await.shards().await.unwrap();
                for shard in shards {
                    let free = rows.iter().any(|r| r.shard == shard && r.owner.as_ref() != b_owner.get());
                    announced.lock().unwrap().push((shard, free));
                }
            })
        })
    };
    let hooks = LeaseHooks { released: Some(hook), ..LeaseHooks::default() };
    let b = cluster::start(config("node-b", pg.url()), hooks).await.expect("lease manager starts");
    b_owner.set(b.owner()).unwrap();
    let b_view = b.view();
    let b_node = Node {
        id: "node-b".into(),
        owner: b.owner(),
        leases: None,
        view: b_view.clone(),
        events: mpsc::unbounded_channel().1,
        log: Vec::new(),
        proxy: Proxy::start(pg.addr()),
    };
    wait_stable(&store, &[&a, &b_node], &[0, 1]).await;
    let held: BTreeMap<ShardId, Epoch> = b_view.serving().into_iter().collect();
    assert!(!held.is_empty());

    let report = b.shutdown().await.expect("graceful stop");
    assert!(b_view.stopped().is_some());
    assert_eq!((report.released, report.left_to_expire), (held.len(), 0));
    let announced = announced.lock().unwrap().clone();
    let named: BTreeMap<ShardId, Epoch> = announced.iter().map(|(s, _)| (*s, held[s])).collect();
    assert_eq!(named, held, "every released shard announced, once");
    assert_eq!(announced.len(), held.len());
    assert!(announced.iter().all(|(_, free)| *free), "announced before the release committed: {announced:?}");
    wait_stable(&store, &[&a], &[0]).await;
    assert_eq!(a.serving().len(), usize::from(foundry::runtime::SHARD_COUNT), "a took everything over");
}
