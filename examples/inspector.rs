//! The runtime inspector: a `counter` kind gets a few messages (one refused), then the program prints what an operator
//! sees through `Runtime::inspector()` (the same views `/v1/admin/...` serves to server admins): the kinds, the live
//! actors with their topics, one actor's tables, a read-only query, a refused write, and the actor's trace.
//!
//! Run: `cargo run --example inspector` (data goes to a temporary directory).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, CallError, EmbeddedMigrations, Entity, Mutation, Read, Runtime, RuntimeConfig, SnapshotError, Tx,
};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Counter;

impl Entity for Counter {
    type Key = String;
    const KIND: &'static str = "counter";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Counter)
    }

    fn snapshot(&self, topic: &str, db: &mut SqliteConnection) -> Result<serde_json::Value, SnapshotError> {
        let value: i64 = counter::table.select(counter::value).find(1).first(db)?;
        Ok(serde_json::json!({ "topic": topic, "value": value }))
    }
}

#[derive(Debug, thiserror::Error)]
enum CounterError {
    #[error("counters only go up")]
    Negative,
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
}

/// Adds `by`, touching the `value` topic; a negative amount is refused (and its write rolled back).
struct Add(i64);

impl Mutation for Add {
    type Entity = Counter;
    type Output = i64;
    type Error = CounterError;
    fn apply(self, _: &Counter, tx: &mut Tx<'_>) -> Result<i64, CounterError> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + self.0)).execute(tx.conn())?;
        if self.0 < 0 {
            return Err(CounterError::Negative);
        }
        tx.touch("value");
        Ok(counter::table.select(counter::value).find(1).first(tx.conn())?)
    }
}

struct Get;

impl Read for Get {
    type Entity = Counter;
    type Output = i64;
    type Error = diesel::result::Error;
    fn read(self, _: &Counter, db: &mut SqliteConnection) -> QueryResult<i64> {
        counter::table.select(counter::value).find(1).first(db)
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let runtime = Runtime::start(RuntimeConfig::new(dir.path()))?;
    let counters = runtime.registry::<Counter>();
    let apples = "apples".to_owned();
    for by in [3, 4] {
        counters.mutate(&apples, Add(by)).await?;
    }
    counters.mutate(&"pears".to_owned(), Add(1)).await?;
    if let Err(CallError::Handler(e)) = counters.mutate(&apples, Add(-1)).await {
        println!("refused: {e}");
    }
    println!("apples reads {}", counters.read(&apples, Get).await?);
    let _watching = counters.subscribe(&apples, "value").await?;

    let inspector = runtime.inspector();
    let overview = inspector.runtime();
    println!(
        "\nlive actors: {} of at most {}; trace size {}",
        overview.live_actors, overview.max_live, overview.trace_size
    );
    for k in &overview.kinds {
        println!(
            "  kind {}: {} live, {} messages, {} committed mutations",
            k.kind, k.live, k.messages, k.committed_mutations
        );
    }

    println!("\nlive counters:");
    for a in inspector.actors("counter", None, 100).await?.actors {
        let Some(s) = a.state else { continue };
        let topics: Vec<String> =
            s.topics.iter().map(|t| format!("{} v{} ({} subscribed)", t.topic, t.version, t.subscribers)).collect();
        println!(
            "  {}: mailbox {}, outbox {}, schedules {}, topics {}",
            a.key,
            a.mailbox_depth,
            s.outbox_pending,
            s.schedules,
            topics.join(", ")
        );
    }

    let detail = inspector.actor("counter", "apples").await?;
    println!("\napples' tables ({} bytes):", detail.database_bytes);
    for t in detail.tables.iter().filter(|t| !t.runtime) {
        println!("  {}: {} rows", t.name, t.rows);
    }
    let answer = inspector.query("counter", "apples", "SELECT value FROM counter", 10, Duration::from_secs(1)).await?;
    println!("SELECT value FROM counter -> {:?} {}", answer.columns, serde_json::to_string(&answer.rows)?);
    if let Err(CallError::Handler(e)) =
        inspector.query("counter", "apples", "UPDATE counter SET value = 0", 10, Duration::from_secs(1)).await
    {
        println!("UPDATE refused: {e}");
    }

    println!("\napples' trace, newest first:");
    for e in inspector.trace("counter", "apples").await?.entries {
        println!("  {:?} {} -> {:?} in {} us", e.kind, e.message, e.outcome, e.duration_us);
    }
    runtime.shutdown().await;
    Ok(())
}
