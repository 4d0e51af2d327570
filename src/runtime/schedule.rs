//! Durable schedules (alarms): messages an actor sets for itself, stored in its own `_foundry_schedules` table in the
//! transaction of the mutation that set them, and applied as mutations of that actor when due, even after
//! passivation or a crash.
//!
//! - A kind declares the messages it may schedule ([`Scheduled`], registered with `Accepts::schedule` in
//!   `Entity::accepts`); a row names one by its wire name and holds its JSON.
//! - `Tx::schedule_after` / `Tx::schedule_at` / `Tx::schedule_every` / `Tx::cancel_schedule` write rows;
//!   [`ListSchedules`] and [`CancelSchedule`] are generic messages every kind accepts.
//! - A live actor arms one timer for its earliest row (`actor/schedules.rs`). When it fires, each due row runs in a
//!   transaction of its own that also deletes it (or moves a repeating one on): at least once, and exactly once in
//!   effect on the actor's database. A refusal or panic rolls back and records a failed attempt, which delays the
//!   next one by [`retry_backoff`].
//! - A passivated actor is woken by the runtime's due index (`due.rs`).

use std::marker::PhantomData;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::{Duration, SystemTime};

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::actor::panic_text;
use super::entity::{Entity, EntityCtx, Mutation, Read, Tx};

/// A mutation an actor of its kind may schedule for itself (see [`super::Tx::schedule_after`]).
pub trait Scheduled: Mutation + Serialize + DeserializeOwned
where
    Self::Error: std::fmt::Display,
{
    /// Stable wire name, stored in schedule rows: renaming it strands schedules already set (they fail and are
    /// retried with back-off until a handler of that name exists again).
    const NAME: &'static str;

    /// Runs in the actor's context once the scheduled mutation committed: starts what the committed state calls for
    /// and a transaction cannot (background work such as a sync or an agent turn). Not durable by itself: a crash
    /// between the commit and this call skips it, so the mutation must leave a durable trace the actor's
    /// `Entity::on_wake` acts on (as it must for any background work cut by a crash).
    fn committed(output: Self::Output, entity: &mut Self::Entity, ctx: &mut EntityCtx<'_, Self::Entity>) {
        let _ = (output, entity, ctx);
    }
}

/// A schedule's id in its actor's database; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScheduleId(pub i64);

/// A schedule as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, QueryableByName)]
#[serde(rename_all = "camelCase")]
pub struct ScheduleInfo {
    #[diesel(sql_type = BigInt)]
    pub id: i64,
    /// The [`Scheduled::NAME`] of its message.
    #[diesel(sql_type = Text)]
    pub message: String,
    /// The message as JSON.
    #[diesel(sql_type = Text)]
    pub payload: String,
    /// When it is due next (unix ms).
    #[diesel(sql_type = BigInt)]
    pub due_at_ms: i64,
    /// The period of a repeating schedule.
    #[diesel(sql_type = Nullable<BigInt>)]
    pub every_ms: Option<i64>,
    /// Failed attempts in a row.
    #[diesel(sql_type = BigInt)]
    pub attempts: i64,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
}

impl ScheduleInfo {
    /// The message, decoded as `M` (`None` if it is another message or does not decode).
    pub fn decode<M>(&self) -> Option<M>
    where
        M: Scheduled,
        M::Error: std::fmt::Display,
    {
        (self.message == M::NAME).then(|| serde_json::from_str(&self.payload).ok()).flatten()
    }
}

/// Wall-clock unix milliseconds: schedules must mean the same instant after a restart.
pub fn now_ms() -> i64 {
    to_unix_ms(SystemTime::now())
}

pub fn to_unix_ms(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Delay before the next attempt after `attempts` failed ones in a row: 100 ms doubling up to 5 minutes, so a
/// handler that keeps failing is neither dropped nor run in a hot loop.
pub fn retry_backoff(attempts: i64) -> Duration {
    let doublings = attempts.saturating_sub(1).clamp(0, 20) as u32;
    Duration::from_millis(100u64.saturating_mul(1u64 << doublings).min(300_000))
}

/// Why a due schedule did not apply.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FireError {
    #[error(transparent)]
    Db(#[from] diesel::result::Error),
    /// The handler refused, the payload did not decode, or no handler has the row's name.
    #[error("{0}")]
    Failed(String),
    #[error("panicked: {0}")]
    Panicked(String),
}

/// What runs after a fired schedule committed ([`Scheduled::committed`] with the mutation's output).
pub(crate) type AfterFire<E> = Box<dyn FnOnce(&mut E, &mut EntityCtx<'_, E>)>;

/// Applies one due row's message (decoded by name) inside the fire's transaction.
pub(crate) type FireFn<E> = fn(&E, &mut Tx<'_>, &str) -> Result<AfterFire<E>, FireError>;

pub(crate) fn fire_fn<M>(entity: &M::Entity, tx: &mut Tx<'_>, payload: &str) -> Result<AfterFire<M::Entity>, FireError>
where
    M: Scheduled,
    M::Error: std::fmt::Display,
{
    let msg: M = serde_json::from_str(payload)
        .map_err(|e| FireError::Failed(format!("{} payload does not decode: {e}", M::NAME)))?;
    match catch_unwind(AssertUnwindSafe(|| msg.apply(entity, tx))) {
        Ok(Ok(out)) => {
            Ok(Box::new(move |e: &mut M::Entity, ctx: &mut EntityCtx<'_, M::Entity>| M::committed(out, e, ctx)))
        }
        Ok(Err(e)) => Err(FireError::Failed(e.to_string())),
        Err(p) => Err(FireError::Panicked(panic_text(&p))),
    }
}

pub(crate) fn insert(
    conn: &mut SqliteConnection,
    message: &str,
    payload: &str,
    due_at_ms: i64,
    every_ms: Option<i64>,
) -> QueryResult<ScheduleId> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = BigInt)]
        id: i64,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "INSERT INTO _foundry_schedules (message, payload, due_at_ms, every_ms, created_at_ms) \
         VALUES (?, ?, ?, ?, ?) RETURNING id",
    )
    .bind::<Text, _>(message)
    .bind::<Text, _>(payload)
    .bind::<BigInt, _>(due_at_ms)
    .bind::<Nullable<BigInt>, _>(every_ms)
    .bind::<BigInt, _>(now_ms())
    .load(conn)?;
    rows.first().map(|r| ScheduleId(r.id)).ok_or(diesel::result::Error::NotFound)
}

/// Deletes one schedule; whether it existed.
pub(crate) fn cancel(conn: &mut SqliteConnection, id: ScheduleId) -> QueryResult<bool> {
    let n = diesel::sql_query("DELETE FROM _foundry_schedules WHERE id = ?").bind::<BigInt, _>(id.0).execute(conn)?;
    Ok(n > 0)
}

/// Deletes every schedule of one message name; how many.
pub(crate) fn cancel_message(conn: &mut SqliteConnection, message: &str) -> QueryResult<usize> {
    diesel::sql_query("DELETE FROM _foundry_schedules WHERE message = ?").bind::<Text, _>(message).execute(conn)
}

const COLUMNS: &str = "id, message, payload, due_at_ms, every_ms, attempts, last_error";

/// The actor's schedules, earliest first.
pub fn list(conn: &mut SqliteConnection) -> QueryResult<Vec<ScheduleInfo>> {
    diesel::sql_query(format!("SELECT {COLUMNS} FROM _foundry_schedules ORDER BY due_at_ms, id")).load(conn)
}

/// When the actor's earliest schedule is due, if it has any.
pub(crate) fn earliest(conn: &mut SqliteConnection) -> QueryResult<Option<i64>> {
    #[derive(QueryableByName)]
    struct Min {
        #[diesel(sql_type = Nullable<BigInt>)]
        due: Option<i64>,
    }
    let rows: Vec<Min> = diesel::sql_query("SELECT MIN(due_at_ms) AS due FROM _foundry_schedules").load(conn)?;
    Ok(rows.first().and_then(|r| r.due))
}

/// Up to `limit` rows due at `now`, in due order.
pub(crate) fn due(conn: &mut SqliteConnection, now: i64, limit: i64) -> QueryResult<Vec<ScheduleInfo>> {
    diesel::sql_query(format!(
        "SELECT {COLUMNS} FROM _foundry_schedules WHERE due_at_ms <= ? ORDER BY due_at_ms, id LIMIT ?"
    ))
    .bind::<BigInt, _>(now)
    .bind::<BigInt, _>(limit)
    .load(conn)
}

/// Whether `row` is still stored as it was read (an earlier handler of the same round may have cancelled or moved it).
pub(crate) fn unchanged(conn: &mut SqliteConnection, row: &ScheduleInfo) -> QueryResult<bool> {
    let rows: Vec<ScheduleInfo> = diesel::sql_query(format!("SELECT {COLUMNS} FROM _foundry_schedules WHERE id = ?"))
        .bind::<BigInt, _>(row.id)
        .load(conn)?;
    Ok(rows.first().is_some_and(|r| r.due_at_ms == row.due_at_ms))
}

/// In the fire's transaction: removes a one-off row, or moves a repeating one to its next period (skipping periods
/// missed while nothing ran, so a long outage yields one catch-up run, not a burst).
pub(crate) fn complete(conn: &mut SqliteConnection, row: &ScheduleInfo, now: i64) -> QueryResult<()> {
    match row.every_ms.filter(|e| *e > 0) {
        None => cancel(conn, ScheduleId(row.id)).map(|_| ()),
        Some(every) => {
            let mut next = row.due_at_ms.saturating_add(every);
            if next <= now {
                next = now.saturating_add(every);
            }
            diesel::sql_query(
                "UPDATE _foundry_schedules SET due_at_ms = ?, attempts = 0, last_error = NULL WHERE id = ?",
            )
            .bind::<BigInt, _>(next)
            .bind::<BigInt, _>(row.id)
            .execute(conn)
            .map(|_| ())
        }
    }
}

/// After a failed attempt (its transaction rolled back): counts it and delays the row by [`retry_backoff`].
pub(crate) fn record_failure(
    conn: &mut SqliteConnection,
    row: &ScheduleInfo,
    now: i64,
    error: &str,
) -> QueryResult<()> {
    let attempts = row.attempts + 1;
    let due = now.saturating_add(retry_backoff(attempts).as_millis() as i64);
    diesel::sql_query("UPDATE _foundry_schedules SET attempts = ?, due_at_ms = ?, last_error = ? WHERE id = ?")
        .bind::<BigInt, _>(attempts)
        .bind::<BigInt, _>(due)
        .bind::<Text, _>(error)
        .bind::<BigInt, _>(row.id)
        .execute(conn)
        .map(|_| ())
}

/// Lists an actor's schedules, earliest first. Every kind accepts it.
pub struct ListSchedules<E> {
    _kind: PhantomData<fn() -> E>,
}

impl<E> ListSchedules<E> {
    pub fn new() -> Self {
        ListSchedules { _kind: PhantomData }
    }
}

impl<E> Default for ListSchedules<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E: Entity> Read for ListSchedules<E> {
    type Entity = E;
    type Output = Vec<ScheduleInfo>;
    type Error = diesel::result::Error;
    fn read(self, _: &E, db: &mut SqliteConnection) -> QueryResult<Vec<ScheduleInfo>> {
        list(db)
    }
}

/// Cancels one of an actor's schedules; replies whether it was still set. Every kind accepts it.
pub struct CancelSchedule<E> {
    id: ScheduleId,
    _kind: PhantomData<fn() -> E>,
}

impl<E> CancelSchedule<E> {
    pub fn new(id: ScheduleId) -> Self {
        CancelSchedule { id, _kind: PhantomData }
    }
}

impl<E: Entity> Mutation for CancelSchedule<E> {
    type Entity = E;
    type Output = bool;
    type Error = diesel::result::Error;
    fn apply(self, _: &E, tx: &mut Tx<'_>) -> QueryResult<bool> {
        tx.cancel_schedule(self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::retry_backoff;
    use std::time::Duration;

    #[test]
    fn retry_backoff_doubles_and_is_capped() {
        assert_eq!(retry_backoff(1), Duration::from_millis(100));
        assert_eq!(retry_backoff(2), Duration::from_millis(200));
        assert_eq!(retry_backoff(4), Duration::from_millis(800));
        assert_eq!(retry_backoff(1_000), Duration::from_secs(300));
    }
}
