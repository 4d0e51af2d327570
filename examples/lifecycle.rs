//! Actor lifecycle: a `job` kind seeds its database in `on_create` (once per actor), counts its wake-ups in
//! `on_wake`, notes why it sleeps in `on_sleep`, stays awake while background work runs (`keep_awake`), and is
//! destroyed: its database deleted, the key then recreated fresh.
//!
//! Run: `cargo run --example lifecycle` (data goes to a temporary directory).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Command, EmbeddedMigrations, Entity, EntityCtx, HookResult, KindConfig, Read, Runtime,
    RuntimeConfig, SleepReason, Tx,
};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Job;

/// The counter row holds how many times the actor woke; `on_create` starts it at 100 to show it ran.
fn bump(conn: &mut SqliteConnection, by: i64) -> QueryResult<()> {
    diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + by)).execute(conn).map(drop)
}

impl Entity for Job {
    type Key = String;
    const KIND: &'static str = "job";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Job)
    }

    fn config() -> KindConfig {
        KindConfig { idle_timeout: Duration::from_millis(200), ..KindConfig::default() }
    }

    /// Once per actor, in the transaction that creates its database.
    fn on_create(key: &String, tx: &mut Tx<'_>) -> HookResult {
        println!("{key}: on_create");
        bump(tx.conn(), 100)?;
        Ok(())
    }

    /// After every activation.
    fn on_wake(&mut self, ctx: &mut EntityCtx<'_, Self>) {
        let _ = ctx.write(|tx| bump(tx.conn(), 1));
    }

    /// Before passivation or shutdown, with the database still open.
    fn on_sleep(&mut self, ctx: &mut EntityCtx<'_, Self>, reason: SleepReason) {
        println!("{}: on_sleep ({reason:?})", ctx.key());
    }

    /// In the transaction that marks the actor destroyed (an error would refuse the destroy).
    fn on_destroy(&self, _: &mut Tx<'_>) -> HookResult {
        println!("on_destroy");
        Ok(())
    }
}

struct GetWakeups;

impl Read for GetWakeups {
    type Entity = Job;
    type Output = i64;
    type Error = diesel::result::Error;
    fn read(self, _: &Job, db: &mut SqliteConnection) -> QueryResult<i64> {
        counter::table.select(counter::value).find(1).first(db)
    }
}

/// Background work the actor must not sleep through.
struct Work {
    ms: u64,
}

impl Command for Work {
    type Entity = Job;
    type Output = ();
    type Error = diesel::result::Error;
    fn run(self, _: &mut Job, ctx: &mut EntityCtx<'_, Job>) -> QueryResult<()> {
        ctx.keep_awake(tokio::time::sleep(Duration::from_millis(self.ms)));
        Ok(())
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let rt = Runtime::start(RuntimeConfig::new(dir.path()))?;
    let jobs = rt.registry::<Job>();
    let key = "build-42".to_owned();

    println!("counter after creation: {}", jobs.read(&key, GetWakeups).await?);
    jobs.exec(&key, Work { ms: 600 }).await?;
    tokio::time::sleep(Duration::from_millis(400)).await;
    println!("idle for 400 ms with work running: live = {}", jobs.is_live(&key));
    tokio::time::sleep(Duration::from_millis(700)).await;
    println!("after the work and the idle timeout: live = {}", jobs.is_live(&key));
    println!("counter after a second activation: {}", jobs.read(&key, GetWakeups).await?);

    jobs.destroy(&key).await?;
    let file = dir.path().join("job").join(format!("{key}.sqlite3"));
    println!("destroyed: database exists = {}", file.exists());
    println!("recreated fresh: counter {}", jobs.read(&key, GetWakeups).await?);
    rt.shutdown().await;
    Ok(())
}
