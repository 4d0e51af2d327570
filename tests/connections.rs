//! Connections and events in the runtime, with a test kind `room` whose hooks log what they see: `before_connect`
//! refusing (nothing recorded, no hook run), `on_connect` / `on_disconnect` once each per connection (a dropped
//! handle, an actor that passivated in between, a panicking `on_connect`, shutdown), per-connection state the actor lists and changes, events
//! after commit in commit order with their payload (to all or to one connection), nothing from a rolled-back
//! mutation, and a slow subscriber that loses events (bounded, told how many, then the snapshot) while a fast one gets
//! every event and the actor keeps committing.

mod support;

use std::sync::{Arc, Mutex};

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::connection::MAX_QUEUED_EVENTS;
use foundry::runtime::{
    embed_migrations, CallError, Command, Connect, ConnectError, Connection, ConnectionId, ConnectionInfo,
    ConnectionItem, EmbeddedMigrations, Entity, EntityCtx, Mutation, Refusal, SnapshotError, TopicFrame, Tx,
};
use serde_json::{json, Value};
use support::{eventually, runtime};

diesel::table! {
    tally (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// What the hooks saw, in order.
#[derive(Default)]
struct HookLog(Mutex<Vec<String>>);

impl HookLog {
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
    fn count(&self, prefix: &str) -> usize {
        self.lines().iter().filter(|l| l.starts_with(prefix)).count()
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

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<Value, SnapshotError> {
        if topic != TOPIC {
            return Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() });
        }
        Ok(json!({ "value": tally::table.select(tally::value).find(1).first::<i64>(db)? }))
    }

    /// Refuses `mallory` and anyone whose params say `deny`; the state remembers who came and how.
    fn before_connect(&self, req: &Connect, _: &mut SqliteConnection) -> Result<Value, Refusal> {
        if req.caller.as_deref() == Some("mallory") || req.params["deny"] == true {
            return Err(Refusal::new("forbidden", "not in this room"));
        }
        Ok(json!({ "caller": req.caller, "via": req.params["via"] }))
    }

    fn on_connect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        let log = ctx.service::<HookLog>().unwrap();
        let listed = ctx.connections().iter().any(|c| c.id == conn.id);
        log.0.lock().unwrap().push(format!("connect {} {:?} listed={listed}", conn.id, conn.caller));
        if conn.caller.as_deref() == Some("crash") {
            panic!("on_connect failed");
        }
        ctx.emit_to(conn.id, "welcome", &json!({ "id": conn.id })).unwrap();
    }

    fn on_disconnect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        let log = ctx.service::<HookLog>().unwrap();
        let listed = ctx.connections().iter().any(|c| c.id == conn.id);
        log.0.lock().unwrap().push(format!("disconnect {} {:?} listed={listed}", conn.id, conn.caller));
    }
}

/// Adds one to the tally and emits `said` with the text; writes, emits, then refuses when `fail` (so the refusal
/// must roll back both).
struct Say {
    text: String,
    fail: bool,
}

fn say(text: impl Into<String>) -> Say {
    Say { text: text.into(), fail: false }
}

impl Mutation for Say {
    type Entity = Room;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Room, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(tally::table.find(1)).set(tally::value.eq(tally::value + 1)).execute(tx.conn())?;
        tx.touch(TOPIC);
        tx.emit(TOPIC, "said", &json!({ "text": self.text }))?;
        if self.fail {
            return Err(diesel::result::Error::RollbackTransaction);
        }
        Ok(())
    }
}

/// The actor's own view of its connections.
struct ListConnections;

impl Command for ListConnections {
    type Entity = Room;
    type Output = Vec<ConnectionInfo>;
    type Error = std::convert::Infallible;
    fn run(self, _: &mut Room, ctx: &mut EntityCtx<'_, Room>) -> Result<Vec<ConnectionInfo>, Self::Error> {
        Ok(ctx.connections())
    }
}

struct SetState(ConnectionId, Value);

impl Command for SetState {
    type Entity = Room;
    type Output = bool;
    type Error = std::convert::Infallible;
    fn run(self, _: &mut Room, ctx: &mut EntityCtx<'_, Room>) -> Result<bool, Self::Error> {
        Ok(ctx.set_connection_state(self.0, self.1))
    }
}

/// An event to one connection, outside any transaction.
struct Whisper(ConnectionId, &'static str);

impl Command for Whisper {
    type Entity = Room;
    type Output = ();
    type Error = std::convert::Infallible;
    fn run(self, _: &mut Room, ctx: &mut EntityCtx<'_, Room>) -> Result<(), Self::Error> {
        ctx.emit_to(self.0, "whisper", &json!({ "text": self.1 })).unwrap();
        Ok(())
    }
}

fn start() -> (foundry::runtime::Runtime, tempfile::TempDir, Arc<HookLog>) {
    let (rt, dir) = runtime(0);
    let log = Arc::new(HookLog::default());
    rt.provide(log.clone());
    (rt, dir, log)
}

fn as_alice() -> Connect {
    Connect::new(TOPIC).caller("alice").params(json!({ "via": "test" }))
}

/// The next item, within 10 s.
async fn next(conn: &mut Connection) -> ConnectionItem {
    let item = tokio::time::timeout(std::time::Duration::from_secs(10), conn.next_item(true)).await;
    item.expect("an item within 10 s").expect("the runtime is running")
}

/// An event's name, seq and payload.
fn event(item: &ConnectionItem) -> Option<(String, u64, Value)> {
    match item {
        ConnectionItem::Event { seq, event } => {
            Some((event.name.clone(), *seq, serde_json::from_str(event.payload.get()).unwrap()))
        }
        _ => None,
    }
}

/// Reads the first snapshot and the `welcome` every connection gets from `on_connect`.
async fn joined(conn: &mut Connection) {
    assert!(matches!(next(conn).await, ConnectionItem::Frame(TopicFrame::Full(_))), "the snapshot first");
    let (name, seq, payload) = event(&next(conn).await).expect("then the welcome");
    assert_eq!((name.as_str(), seq, payload), ("welcome", 1, json!({ "id": conn.id() })));
}

#[actix_rt::test]
async fn a_refused_subscriber_gets_the_hooks_refusal_and_nothing_is_recorded() {
    let (rt, _dir, log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let refused = rooms.connect(&k, Connect::new(TOPIC).caller("mallory")).await.unwrap_err();
    let CallError::Handler(ConnectError::Refused(r)) = refused else { panic!("{refused:?}") };
    assert_eq!((r.code, r.message.as_str()), ("forbidden", "not in this room"));
    let by_params = rooms.connect(&k, as_alice().params(json!({ "deny": true }))).await.unwrap_err();
    assert!(matches!(by_params, CallError::Handler(ConnectError::Refused(_))), "{by_params:?}");
    // A topic without a snapshot is no connection either, though the hook accepted it.
    let unknown = rooms.connect(&k, Connect::new("nope").caller("alice")).await.unwrap_err();
    assert!(matches!(unknown, CallError::Handler(ConnectError::Snapshot(_))), "{unknown:?}");
    assert!(rooms.connections(&k).is_empty());
    assert!(rooms.exec(&k, ListConnections).await.unwrap().is_empty(), "the actor knows of none");
    assert_eq!(rt.connection_count(), 0);
    assert!(log.lines().is_empty(), "no hook ran: {:?}", log.lines());
    // Whoever is accepted is a connection.
    let conn = rooms.connect(&k, as_alice()).await.unwrap();
    assert_eq!(rooms.connections(&k).iter().map(|c| c.id).collect::<Vec<_>>(), [conn.id()]);
}

#[actix_rt::test]
async fn on_connect_and_on_disconnect_run_once_each_and_the_actor_sees_each_connections_state() {
    let (rt, _dir, log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let mut alice = rooms.connect(&k, as_alice()).await.unwrap();
    joined(&mut alice).await;
    let bob = rooms.subscribe(&k, TOPIC).await.unwrap();
    assert_eq!(
        log.lines(),
        [
            format!("connect {} Some(\"alice\") listed=true", alice.id()),
            format!("connect {} None listed=true", bob.id())
        ]
    );

    // The actor lists its connections with what `before_connect` gave them, and may change a state.
    let listed = rooms.exec(&k, ListConnections).await.unwrap();
    assert_eq!(listed.len(), 2);
    assert_eq!(
        listed[0],
        ConnectionInfo {
            id: alice.id(),
            topic: TOPIC.into(),
            caller: Some("alice".into()),
            params: json!({ "via": "test" }),
            state: json!({ "caller": "alice", "via": "test" }),
        }
    );
    assert_eq!(listed[1].state, json!({ "caller": null, "via": null }));
    assert!(rooms.exec(&k, SetState(alice.id(), json!({ "typing": true }))).await.unwrap());
    assert_eq!(rooms.exec(&k, ListConnections).await.unwrap()[0].state, json!({ "typing": true }));
    assert_eq!(rooms.connections(&k), rooms.exec(&k, ListConnections).await.unwrap(), "the registry lists the same");

    // A dropped handle ends its connection at once, and `on_disconnect` runs once, no longer listing it.
    let bob_id = bob.id();
    drop(bob);
    assert_eq!(rooms.connections(&k).len(), 1);
    eventually("bob's on_disconnect", || log.count("disconnect") == 1).await;
    assert_eq!(log.lines()[2], format!("disconnect {bob_id} None listed=false"));
    assert!(!rooms.exec(&k, SetState(bob_id, json!(1))).await.unwrap(), "an ended connection has no state");

    // Connections outlive the actor's passivation; one that ends meanwhile wakes the actor for its hook.
    assert!(rooms.passivate(&k).await, "subscribers do not keep an actor awake");
    eventually("passivated", || !rooms.is_live(&k)).await;
    assert_eq!(rooms.connections(&k).len(), 1, "still connected");
    rooms.mutate(&k, say("after the nap")).await.unwrap();
    assert!(matches!(next(&mut alice).await, ConnectionItem::Frame(_)));
    assert_eq!(event(&next(&mut alice).await).unwrap().2, json!({ "text": "after the nap" }));
    assert!(rooms.passivate(&k).await);
    eventually("passivated again", || !rooms.is_live(&k)).await;
    let alice_id = alice.id();
    drop(alice);
    eventually("alice's on_disconnect", || log.count("disconnect") == 2).await;
    assert!(rooms.is_live(&k), "woken to run it");
    assert_eq!(log.lines().last().unwrap(), &format!("disconnect {alice_id} Some(\"alice\") listed=false"));
    assert!(rooms.connections(&k).is_empty());
    // Nothing runs twice.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    assert_eq!((log.count("connect"), log.count("disconnect")), (2, 2), "{:?}", log.lines());
    assert_eq!(rt.connection_count(), 0);
}

#[actix_rt::test]
async fn events_arrive_after_their_commit_in_commit_order_and_rolled_back_ones_never() {
    let (rt, _dir, _log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let mut a = rooms.connect(&k, as_alice()).await.unwrap();
    joined(&mut a).await;
    let mut b = rooms.connect(&k, Connect::new(TOPIC).caller("bob")).await.unwrap();
    joined(&mut b).await;

    // Sequential and concurrent (one group commit) mutations; one of them refuses after emitting.
    rooms.mutate(&k, say("one")).await.unwrap();
    assert!(rooms.mutate(&k, Say { text: "never".into(), fail: true }).await.is_err());
    let (r2, r3, r4) = tokio::join!(
        rooms.mutate(&k, say("two")),
        rooms.mutate(&k, Say { text: "never either".into(), fail: true }),
        rooms.mutate(&k, say("three")),
    );
    assert!(r2.is_ok() && r3.is_err() && r4.is_ok());
    rooms.exec(&k, Whisper(b.id(), "psst")).await.unwrap();
    rooms.mutate(&k, say("four")).await.unwrap();

    for (conn, whispered) in [(&mut a, false), (&mut b, true)] {
        let mut events = Vec::new();
        let mut version = 0;
        while events.len() < 4 + usize::from(whispered) {
            match next(conn).await {
                ConnectionItem::Frame(f) => version = f.version(),
                item => {
                    let (name, seq, payload) = event(&item).unwrap();
                    let ConnectionItem::Event { event, .. } = &item else { unreachable!() };
                    assert!(version >= event.version, "{name} came before the change it follows");
                    events.push((name, seq, payload["text"].as_str().unwrap().to_owned()));
                }
            }
        }
        let mut want = vec![
            ("said".to_owned(), 2, "one".to_owned()),
            ("said".into(), 3, "two".into()),
            ("said".into(), 4, "three".into()),
        ];
        if whispered {
            want.push(("whisper".into(), 5, "psst".into()));
        }
        let n = want.len() as u64 + 2;
        want.push(("said".into(), n, "four".into()));
        assert_eq!(events, want, "in commit order, contiguous, the whisper only to its connection");
        assert!(conn.try_next_item(true).is_none(), "nothing from the refused mutations");
    }
}

#[actix_rt::test]
async fn a_slow_subscriber_loses_events_and_is_told_while_a_fast_one_gets_every_one() {
    let (rt, _dir, _log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let mut slow = rooms.connect(&k, Connect::new(TOPIC).caller("slow")).await.unwrap();
    joined(&mut slow).await;
    let mut fast = rooms.connect(&k, Connect::new(TOPIC).caller("fast")).await.unwrap();
    joined(&mut fast).await;
    let heard = Arc::new(Mutex::new(Vec::<(u64, String)>::new()));
    let reader = {
        let heard = heard.clone();
        actix_rt::spawn(async move {
            while let Some(item) = fast.next_item(true).await {
                if let ConnectionItem::Event { seq, event } = item {
                    let text: Value = serde_json::from_str(event.payload.get()).unwrap();
                    heard.lock().unwrap().push((seq, text["text"].as_str().unwrap().to_owned()));
                }
            }
        })
    };
    const N: usize = 2_000;
    for i in 0..N {
        // The actor never waits for the slow subscriber: if an emit did, this would stop once its queue filled.
        rooms.mutate(&k, say(format!("m{i}"))).await.unwrap();
        if i % 100 == 99 {
            eventually("the fast subscriber keeps up", || heard.lock().unwrap().len() == i + 1).await;
        }
    }
    let heard = heard.lock().unwrap().clone();
    let want: Vec<(u64, String)> = (0..N).map(|i| (i as u64 + 2, format!("m{i}"))).collect();
    assert_eq!(heard, want, "the fast subscriber got every event, in order");
    reader.abort();

    // The slow one holds a bounded queue: what it holds, then how many it lost, then the current state.
    assert_eq!(slow.queued_events(), MAX_QUEUED_EVENTS);
    let mut got = Vec::new();
    let missed = loop {
        match next(&mut slow).await {
            ConnectionItem::Event { seq, .. } => got.push(seq),
            ConnectionItem::Lagged { missed } => break missed,
            ConnectionItem::Frame(f) => assert!(f.version() <= N as u64, "{f:?}"),
        }
    };
    assert_eq!(got, (2..2 + MAX_QUEUED_EVENTS as u64).collect::<Vec<_>>());
    assert_eq!(got.len() as u64 + missed, N as u64, "every event is either delivered or counted lost");
    match next(&mut slow).await {
        ConnectionItem::Frame(TopicFrame::Full(snapshot)) => {
            assert_eq!(snapshot.snapshot_as::<Value>().unwrap(), json!({ "value": N }), "the current state");
        }
        other => panic!("expected the snapshot after the gap, got {other:?}"),
    }
    assert!(slow.try_next_item(true).is_none());
    rooms.mutate(&k, say("later")).await.unwrap();
    assert!(matches!(next(&mut slow).await, ConnectionItem::Frame(f) if f.version() == N as u64 + 1));
    let (_, seq, _) = event(&next(&mut slow).await).unwrap();
    assert_eq!(seq, N as u64 + 2, "seq counted the lost events");
}

#[actix_rt::test]
async fn connections_end_when_the_runtime_shuts_down() {
    let (rt, _dir, log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let mut conn = rooms.connect(&k, as_alice()).await.unwrap();
    joined(&mut conn).await;
    rt.shutdown().await;
    assert!(conn.next_item(true).await.is_none(), "the stream ends");
    assert_eq!(rt.connection_count(), 0);
    drop(conn);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(log.count("disconnect"), 0, "no hook runs at shutdown");
}

#[actix_rt::test]
async fn a_kind_without_an_on_disconnect_is_not_woken_by_subscribers_leaving() {
    let (rt, _dir) = runtime(0);
    let tallies = rt.registry::<support::Tally>();
    let k = "quiet".to_owned();
    // The first disconnect runs the default hook, which tells the runtime there is nothing to run.
    drop(tallies.subscribe(&k, "tally").await.unwrap());
    let sub = tallies.subscribe(&k, "tally").await.unwrap();
    let activations = || tallies.stats().activations.load(std::sync::atomic::Ordering::Relaxed);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert!(tallies.passivate(&k).await);
    eventually("passivated", || !tallies.is_live(&k)).await;
    let before = activations();
    drop(sub);
    assert!(tallies.connections(&k).is_empty(), "the connection ended");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!tallies.is_live(&k), "not woken");
    assert_eq!(activations(), before);
}

#[actix_rt::test]
async fn a_panicking_on_connect_refuses_the_subscriber_and_still_ends_its_connection() {
    let (rt, _dir, log) = start();
    let rooms = rt.registry::<Room>();
    let k = "lobby".to_owned();
    let err = rooms.connect(&k, Connect::new(TOPIC).caller("crash")).await.unwrap_err();
    assert!(matches!(err, CallError::Panicked { message: "on_connect", .. }), "{err:?}");
    assert!(rooms.connections(&k).is_empty(), "no connection is left behind");
    // Its on_disconnect runs once, in the actor restarted from its database, which serves the next subscriber.
    eventually("on_disconnect of the failed connection", || log.count("disconnect") == 1).await;
    let mut alice = rooms.connect(&k, as_alice()).await.unwrap();
    joined(&mut alice).await;
    assert_eq!(rooms.stats().restarts.load(std::sync::atomic::Ordering::Relaxed), 1);
}
