//! Cluster mode (issue 15, slice 4): connections to actors another node serves (`runtime::links`), on a real NATS
//! server with the fenced commit log in a real PostgreSQL. A subscriber on one node gets the actor's snapshot,
//! patches and events from the node serving it, with its hooks run there (refusals cross back with their code);
//! when the serving node dies with its disk, the subscription follows the actor to its next owner with versions that
//! never go backwards; dropping it runs `on_disconnect` on the owner; destroying the actor ends it.

mod cluster_support;

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster_support::node::{self, key_of, TestNode};
use cluster_support::{nats::NatsServer, postgres::PgServer};
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::cluster::rendezvous;
use foundry::runtime::{
    embed_migrations, shard_of, Accepts, CallError, Command, Connect, ConnectError, Connection, ConnectionInfo,
    ConnectionItem, EmbeddedMigrations, Entity, EntityCtx, KindConfig, Mutation, Refusal, Registry, Remote,
    SnapshotError, TopicFrame, Tx,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

diesel::table! {
    tally (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// What the hooks saw on one node.
#[derive(Default)]
struct HookLog(Mutex<Vec<String>>);

impl HookLog {
    fn count(&self, prefix: &str) -> usize {
        self.0.lock().unwrap().iter().filter(|l| l.starts_with(prefix)).count()
    }
}

struct Room;
const TOPIC: &str = "room";

impl Entity for Room {
    type Key = String;
    const KIND: &'static str = "room";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("tests/fixtures/migrations/tally");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Room)
    }

    fn accepts(a: &mut Accepts<Self>) {
        a.remote_mutation::<Say>().remote_command::<ListConnections>();
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<Value, SnapshotError> {
        if topic != TOPIC {
            return Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() });
        }
        Ok(json!({ "value": tally::table.select(tally::value).find(1).first::<i64>(db)? }))
    }

    fn before_connect(&self, req: &Connect, _: &mut SqliteConnection) -> Result<Value, Refusal> {
        if req.caller.as_deref() == Some("mallory") {
            return Err(Refusal::new("forbidden", "not in this room"));
        }
        Ok(json!({ "caller": req.caller }))
    }

    fn on_connect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        ctx.service::<HookLog>().unwrap().0.lock().unwrap().push(format!("connect {:?}", conn.caller));
        ctx.emit_to(conn.id, "welcome", &json!({ "caller": conn.caller })).unwrap();
    }

    fn on_disconnect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        ctx.service::<HookLog>().unwrap().0.lock().unwrap().push(format!("disconnect {:?}", conn.caller));
    }
}

#[derive(Debug, thiserror::Error, Serialize, Deserialize)]
#[error("storage: {0}")]
struct RoomError(String);

impl From<diesel::result::Error> for RoomError {
    fn from(e: diesel::result::Error) -> Self {
        RoomError(e.to_string())
    }
}

/// Adds one to the tally and tells the room.
#[derive(Serialize, Deserialize)]
struct Say(String);

impl Mutation for Say {
    type Entity = Room;
    type Output = i64;
    type Error = RoomError;
    fn apply(self, _: &Room, tx: &mut Tx<'_>) -> Result<i64, RoomError> {
        diesel::update(tally::table.find(1)).set(tally::value.eq(tally::value + 1)).execute(tx.conn())?;
        tx.touch(TOPIC);
        tx.emit(TOPIC, "said", &json!({ "text": self.0 })).map_err(|e| RoomError(e.to_string()))?;
        Ok(tally::table.select(tally::value).find(1).first(tx.conn())?)
    }
}

impl Remote for Say {
    const NAME: &'static str = "Say";
}

/// Who is connected, as the actor sees it.
#[derive(Serialize, Deserialize)]
struct ListConnections;

impl Command for ListConnections {
    type Entity = Room;
    type Output = Vec<Option<String>>;
    type Error = RoomError;
    fn run(self, _: &mut Room, ctx: &mut EntityCtx<'_, Room>) -> Result<Vec<Option<String>>, RoomError> {
        Ok(ctx.connections().into_iter().map(|c| c.caller).collect())
    }
}

impl Remote for ListConnections {
    const NAME: &'static str = "ListConnections";
}

struct Node {
    node: TestNode,
    rooms: Registry<Room>,
    log: Arc<HookLog>,
}

impl Node {
    async fn start(pg: &PgServer, nats: &NatsServer, id: &str, dir: &Path) -> Node {
        let log = Arc::new(HookLog::default());
        let mut rooms = None;
        let node = TestNode::start(pg, nats, id, dir, 1, |rt| {
            rt.provide(log.clone());
            rooms = Some(rt.register::<Room>(KindConfig::default()));
        })
        .await;
        Node { node, rooms: rooms.unwrap(), log }
    }

    fn serves(&self, key: &str) -> bool {
        self.node.serves(key)
    }

    fn links(&self) -> (usize, usize) {
        self.node.rt.link_counts()
    }

    async fn crash(self) {
        self.node.crash().await
    }
}

async fn settled(a: &Node, b: &Node, kb: &str) {
    node::settled(&b.node, &a.node, kb).await
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..400 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what}: not within 10 s");
}

/// What a subscriber reads, as text: `full{version}:{value}`, `v{version}` (a patch) or `{event}@{seq}`.
async fn next(conn: &mut Connection, within: Duration) -> String {
    let item = tokio::time::timeout(within, conn.next_item(true)).await.expect("an item in time");
    match item.expect("the stream goes on") {
        ConnectionItem::Frame(TopicFrame::Full(ev)) => {
            let v: Value = serde_json::from_str(ev.snapshot.get()).unwrap();
            format!("full{}:{}", ev.version, v["value"])
        }
        ConnectionItem::Frame(TopicFrame::Patch(p)) => format!("v{}", p.version),
        ConnectionItem::Event { seq, event } => format!("{}@{seq}", event.name),
        ConnectionItem::Lagged { missed } => format!("lagged{missed}"),
    }
}

fn version(item: &str) -> Option<u64> {
    let digits = item.strip_prefix("full").or_else(|| item.strip_prefix('v'))?;
    digits.split(':').next()?.parse().ok()
}

#[actix_rt::test]
async fn a_subscriber_on_one_node_follows_an_actor_another_node_serves() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(&pg, &nats, "node-a", dir_a.path()).await;
    let b = Node::start(&pg, &nats, "node-b", dir_b.path()).await;
    let kb = key_of(&["node-a", "node-b"], "node-b", "room-");
    settled(&a, &b, &kb).await;
    let alice = || Connect::new(TOPIC).caller("alice");

    // The hooks run on the owner; a refusal and an unknown topic come back typed, and nothing is left behind.
    let refused = a.rooms.connect(&kb, Connect::new(TOPIC).caller("mallory")).await.unwrap_err();
    let CallError::Handler(ConnectError::Refused(r)) = refused else { panic!("{refused:?}") };
    assert_eq!((r.code, r.message.as_str()), ("forbidden", "not in this room"));
    let unknown = a.rooms.connect(&kb, Connect::new("nope").caller("alice")).await.unwrap_err();
    assert!(matches!(unknown, CallError::Handler(ConnectError::Snapshot(SnapshotError::UnknownTopic { .. }))));
    assert_eq!(a.links(), (0, 0), "refused links are gone");
    assert!(!dir_a.path().join("room").join(format!("{kb}.sqlite3")).exists(), "the actor lives on b only");

    let mut conn = a.rooms.connect(&kb, alice()).await.expect("connected through b");
    let quick = Duration::from_secs(5);
    assert_eq!(next(&mut conn, quick).await, "full0:0");
    assert_eq!(next(&mut conn, quick).await, "welcome@1", "on_connect ran on b and its event crossed");
    assert_eq!(b.log.count("connect"), 1);
    assert_eq!(a.log.count("connect"), 0);
    assert_eq!(b.rooms.exec(&kb, ListConnections).await.unwrap(), [Some("alice".to_owned())]);
    assert_eq!((a.links().0, b.links().1), (1, 1));

    // Changes committed on b, whoever asks for them, reach a's subscriber in order, each event after its frame.
    assert_eq!(a.rooms.mutate(&kb, Say("hello".into())).await.unwrap(), 1);
    assert_eq!([next(&mut conn, quick).await, next(&mut conn, quick).await], ["full1:1", "said@2"]);
    assert_eq!(b.rooms.mutate(&kb, Say("again".into())).await.unwrap(), 2);
    assert_eq!([next(&mut conn, quick).await, next(&mut conn, quick).await], ["full2:2", "said@3"]);

    // Dropping it ends the connection on b: on_disconnect runs there, the upstream goes.
    drop(conn);
    eventually("on_disconnect on the owner", || b.log.count("disconnect") == 1).await;
    eventually("the upstream ends", || b.links().1 == 0 && a.links().0 == 0).await;
    assert!(b.rooms.exec(&kb, ListConnections).await.unwrap().is_empty());

    // Destroying the actor ends its subscribers' streams on other nodes too.
    let mut conn = a.rooms.connect(&kb, alice()).await.unwrap();
    assert_eq!(next(&mut conn, quick).await, "full2:2");
    assert_eq!(next(&mut conn, quick).await, "welcome@1");
    b.rooms.destroy(&kb).await.expect("destroyed on its owner");
    let end = tokio::time::timeout(quick, conn.next_item(true)).await.expect("the stream ends in time");
    assert!(end.is_none(), "the stream ends: {end:?}");
    eventually("nothing is left", || a.links() == (0, 0) && b.links() == (0, 0)).await;

    a.crash().await;
    b.crash().await;
}

#[actix_rt::test]
async fn a_subscription_follows_its_actor_when_the_serving_node_dies_and_versions_never_go_back() {
    let Some(pg) = PgServer::start().await else { return };
    let Some(nats) = NatsServer::start() else { return };
    let (dir_a, dir_b, dir_c) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = Node::start(&pg, &nats, "node-a", dir_a.path()).await;
    let b = Node::start(&pg, &nats, "node-b", dir_b.path()).await;
    let c = Node::start(&pg, &nats, "node-c", dir_c.path()).await;
    let nodes = ["node-a", "node-b", "node-c"];
    // A key b serves now and c would serve without b: a's subscriber crosses to b, then to c.
    let kb = (0..)
        .map(|i| format!("room-{i}"))
        .find(|k| {
            rendezvous::owner_of(&nodes, shard_of(k)) == Some("node-b")
                && rendezvous::owner_of(&["node-a", "node-c"], shard_of(k)) == Some("node-c")
        })
        .unwrap();
    settled(&a, &b, &kb).await;
    eventually("c up", || !c.serves(&kb)).await;

    let mut conn = a.rooms.connect(&kb, Connect::new(TOPIC).caller("alice")).await.unwrap();
    let quick = Duration::from_secs(5);
    let mut seen = vec![next(&mut conn, quick).await, next(&mut conn, quick).await];
    for i in 0..5 {
        a.rooms.mutate(&kb, Say(format!("m{i}"))).await.unwrap();
    }
    // A subscriber behind gets the latest snapshot (full snapshots here), and every event after its frame.
    while seen.last().map(String::as_str) != Some("said@6") {
        seen.push(next(&mut conn, quick).await);
    }
    assert!(seen.contains(&"full5:5".to_owned()), "{seen:?}");

    // b dies with its disk. Once c holds the shard (after the lease expires) the link moves to c, announced.
    let crashed = Instant::now();
    b.crash().await;
    drop(dir_b);
    eventually("c takes the shard over", || c.serves(&kb)).await;
    let value = a.rooms.mutate(&kb, Say("after".into())).await.expect("served by c");
    assert_eq!(value, 6, "every acknowledged change survived");
    let mut after = Vec::new();
    while !after.iter().any(|s: &String| s.starts_with("said")) {
        after.push(next(&mut conn, Duration::from_secs(15)).await);
    }
    let moved_in = crashed.elapsed();
    seen.extend(after.iter().cloned());
    let versions: Vec<u64> = seen.iter().filter_map(|s| version(s)).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]), "versions strictly increase: {seen:?}");
    assert!(after.iter().any(|s| s == "full6:6"), "the change made on c arrived: {after:?}");
    assert_eq!(c.log.count("connect"), 1, "the connection was made again on c");
    assert_eq!(c.rooms.exec(&kb, ListConnections).await.unwrap(), [Some("alice".to_owned())]);
    eprintln!("subscription moved to the next owner {moved_in:?} after the crash (3 s leases)");
    assert!(moved_in < Duration::from_secs(10), "within the lease and a few seconds: {moved_in:?}");

    drop(conn);
    eventually("on_disconnect on c", || c.log.count("disconnect") == 1).await;
    a.crash().await;
    c.crash().await;
}
