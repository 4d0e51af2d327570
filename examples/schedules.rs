//! Durable schedules (alarms): a `reminder` kind schedules a message for itself inside a mutation's transaction;
//! the runtime applies it when due, also after the actor passivated or the process restarted.
//!
//! Run: `cargo run --example schedules` (data goes to a temporary directory).

use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use foundry::runtime::{
    embed_migrations, Accepts, CancelSchedule, EmbeddedMigrations, Entity, ListSchedules, Mutation, Read, Runtime,
    RuntimeConfig, ScheduleId, Scheduled, Tx,
};
use serde::{Deserialize, Serialize};

diesel::table! {
    counter (id) {
        id -> Integer,
        value -> BigInt,
    }
}

struct Reminder;

impl Entity for Reminder {
    type Key = String;
    const KIND: &'static str = "reminder";
    const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/counter");

    fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
        Ok(Reminder)
    }

    /// The messages this kind may schedule for itself.
    fn accepts(a: &mut Accepts<Self>) {
        a.schedule::<Ring>();
    }
}

/// The scheduled message: a mutation (it runs in its own transaction, which also removes its schedule row).
#[derive(Serialize, Deserialize)]
struct Ring {
    by: i64,
}

impl Mutation for Ring {
    type Entity = Reminder;
    type Output = ();
    type Error = diesel::result::Error;
    fn apply(self, _: &Reminder, tx: &mut Tx<'_>) -> QueryResult<()> {
        diesel::update(counter::table.find(1)).set(counter::value.eq(counter::value + self.by)).execute(tx.conn())?;
        Ok(())
    }
}

impl Scheduled for Ring {
    /// Stored in the schedule row: keep it stable.
    const NAME: &'static str = "reminder.ring";
}

/// Sets a one-off reminder and a repeating one, atomically with whatever else the mutation writes.
struct SetReminders;

impl Mutation for SetReminders {
    type Entity = Reminder;
    type Output = (ScheduleId, ScheduleId);
    type Error = diesel::result::Error;
    fn apply(self, _: &Reminder, tx: &mut Tx<'_>) -> QueryResult<(ScheduleId, ScheduleId)> {
        let once = tx.schedule_after(Duration::from_millis(300), &Ring { by: 100 })?;
        let every = tx.schedule_every(Duration::from_millis(200), &Ring { by: 1 })?;
        Ok((once, every))
    }
}

struct GetValue;

impl Read for GetValue {
    type Entity = Reminder;
    type Output = i64;
    type Error = diesel::result::Error;
    fn read(self, _: &Reminder, db: &mut SqliteConnection) -> QueryResult<i64> {
        counter::table.select(counter::value).find(1).first(db)
    }
}

#[actix_rt::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let rt = Runtime::start(RuntimeConfig::new(dir.path()))?;
    let reminders = rt.registry::<Reminder>();
    let key = "alice".to_owned();

    let (_once, every) = reminders.mutate(&key, SetReminders).await?;
    for s in reminders.read(&key, ListSchedules::new()).await? {
        println!("schedule {} {} due at {} every {:?}", s.id, s.message, s.due_at_ms, s.every_ms);
    }

    // Passivate the actor: its schedules stay in its database, and the runtime's due index wakes it when due.
    reminders.passivate(&key).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    println!("after 1 s: value {}, live again: {}", reminders.read(&key, GetValue).await?, reminders.is_live(&key));

    let cancelled = reminders.mutate(&key, CancelSchedule::new(every)).await?;
    println!("repeating schedule cancelled: {cancelled}");
    println!("schedules left: {}", reminders.read(&key, ListSchedules::new()).await?.len());
    rt.shutdown().await;
    Ok(())
}
