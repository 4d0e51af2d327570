//! The smallest foundry program: a keyed `counter` kind with its own SQLite file per key, driven through the Registry.
//!
//! Run: `cargo run --example counter` (data goes to a temporary directory).

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{embed_migrations, EmbeddedMigrations, Entity, Mutation, Read, Runtime, RuntimeConfig, Tx};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

/// One counter per key. The struct holds only its identity; the value lives in `<data>/counter/<key>.sqlite3`.
struct Counter;

impl Entity for Counter {
    type Key = String;
    const KIND: &'static str = "counter";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_key: &String, _db: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Counter)
    }
}

/// A mutation: runs in one transaction, replies after commit.
struct Increment {
    by: i64,
}

impl Mutation for Increment {
    type Entity = Counter;
    type Output = i64;
    type Error = diesel::result::Error;

    fn apply(self, _: &Counter, tx: &mut Tx<'_>) -> QueryResult<i64> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + self.by)).execute(tx.conn())?;
        counter::table.select(counter::value).find(1).first(tx.conn())
    }
}

/// A read: runs read-only.
struct GetCount;

impl Read for GetCount {
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

    for key in ["apples", "pears", "apples"] {
        let value = counters.mutate(&key.to_string(), Increment { by: 1 }).await?;
        println!("{key}: {value}");
    }
    println!("apples now reads {}", counters.read(&"apples".to_string(), GetCount).await?);
    println!("live counters: {}", counters.live_count());

    runtime.shutdown().await;
    println!(
        "files: {:?}",
        std::fs::read_dir(dir.path().join("counter"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<Vec<_>, _>>()?
    );
    Ok(())
}
