//! Connections and events: a `room` kind whose topic subscribers are connections it knows. `before_connect` decides
//! who gets in (and what state their connection keeps), `on_connect` / `on_disconnect` see them come and go, and
//! `Tx::emit` sends an event with a payload to every subscriber once its transaction commits (`emit_to`: to one).
//!
//! Run: `cargo run --example connections` (data goes to a temporary directory).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Connect, ConnectError, Connection, ConnectionInfo, ConnectionItem, EmbeddedMigrations, Entity,
    EntityCtx, Mutation, Refusal, Runtime, RuntimeConfig, SnapshotError, TopicFrame, Tx,
};
use serde_json::{json, Value};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// A chat room: its snapshot counts the messages; the messages themselves are events.
struct Room;

impl Entity for Room {
    type Key = String;
    const KIND: &'static str = "room";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Room)
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<Value, SnapshotError> {
        let messages: i64 = counter::table.select(counter::value).find(1).first(db)?;
        match topic {
            "chat" => Ok(json!({ "messages": messages })),
            _ => Err(SnapshotError::UnknownTopic { kind: Self::KIND, topic: topic.to_owned() }),
        }
    }

    /// The authorisation hook: runs in the actor before anything is recorded. The caller is whatever the web layer
    /// (here: the program) says; the state is kept with the connection.
    fn before_connect(&self, req: &Connect, _: &mut SqliteConnection) -> Result<Value, Refusal> {
        match req.caller.as_deref() {
            Some("mallory") => Err(Refusal::new("forbidden", "mallory is banned from this room")),
            Some(name) => Ok(json!({ "name": name, "color": req.params["color"] })),
            None => Err(Refusal::new("forbidden", "say who you are")),
        }
    }

    fn on_connect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        let here: Vec<Value> = ctx.connections().into_iter().map(|c| c.state["name"].clone()).collect();
        println!("[room] {} joined; here now: {}", name(conn), Value::from(here.clone()));
        let _ = ctx.emit_to(conn.id, "welcome", &json!({ "here": here }));
        let _ = ctx.emit("chat", "joined", &json!({ "name": conn.state["name"] }));
    }

    fn on_disconnect(&mut self, ctx: &mut EntityCtx<'_, Self>, conn: &ConnectionInfo) {
        println!("[room] {} left; {} still here", name(conn), ctx.connections().len());
        let _ = ctx.emit("chat", "left", &json!({ "name": conn.state["name"] }));
    }
}

fn name(conn: &ConnectionInfo) -> &str {
    conn.state["name"].as_str().unwrap_or("?")
}

/// A message: counted in the snapshot, told as an event, both only if the transaction commits.
struct Post {
    from: &'static str,
    text: &'static str,
}

impl Mutation for Post {
    type Entity = Room;
    type Output = ();
    type Error = diesel::result::Error;

    fn apply(self, _: &Room, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + 1)).execute(tx.conn())?;
        tx.touch("chat");
        tx.emit("chat", "message", &json!({ "from": self.from, "text": self.text }))
    }
}

/// Prints what a connection receives, in order (snapshot frames and events), until an event named `until`.
async fn follow(who: &str, conn: &mut Connection, until: &str) {
    while let Some(item) = conn.next_item(false).await {
        match item {
            ConnectionItem::Frame(TopicFrame::Full(s)) => println!("{who} <- snapshot v{} {}", s.version, s.snapshot),
            ConnectionItem::Frame(TopicFrame::Patch(p)) => println!("{who} <- patch v{}", p.version),
            ConnectionItem::Event { seq, event } => {
                println!("{who} <- event #{seq} {} {}", event.name, event.payload);
                if event.name == until {
                    return;
                }
            }
            ConnectionItem::Lagged { missed } => println!("{who} <- lost {missed} events"),
        }
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::start(RuntimeConfig::new(dir.path()))?;
    let rooms = runtime.registry::<Room>();
    let lobby = "lobby".to_string();

    let mut alice =
        rooms.connect(&lobby, Connect::new("chat").caller("alice").params(json!({ "color": "teal" }))).await?;
    match rooms.connect(&lobby, Connect::new("chat").caller("mallory")).await {
        Err(foundry::runtime::CallError::Handler(ConnectError::Refused(r))) => println!("mallory refused: {r}"),
        other => return Err(format!("mallory should have been refused: {other:?}").into()),
    }
    let bob = rooms.connect(&lobby, Connect::new("chat").caller("bob")).await?;
    rooms.mutate(&lobby, Post { from: "bob", text: "hi alice" }).await?;
    rooms.mutate(&lobby, Post { from: "alice", text: "hi bob" }).await?;

    let states: Vec<Value> = rooms.connections(&lobby).into_iter().map(|c| c.state).collect();
    println!("connections (their state): {}", Value::from(states));
    // Dropping a connection ends it; the actor's `on_disconnect` runs a moment later, and alice hears of it.
    drop(bob);
    follow("alice", &mut alice, "left").await;

    runtime.shutdown().await;
    Ok(())
}
