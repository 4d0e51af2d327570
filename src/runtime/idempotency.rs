//! Idempotency keys: a creation a client may retry happens once. The key is recorded in the actor's own
//! `_foundry_idempotency` table **in the transaction of the creation it stands for**, so a retry finds either nothing
//! (the creation did not commit: it may run now) or the record with the creation's output (it replays that). The
//! actor's mailbox serialises the check and the creation, so two concurrent requests with one key create once.
//!
//! A record is scoped (`scope`: who asks for which operation) and carries a fingerprint of the request: the same key
//! with another request is refused ([`Recorded::Mismatch`]). Records expire after [`KEY_TTL`]; every keyed creation
//! deletes up to [`PRUNE_BATCH`] expired rows (an index range scan), so the table holds at most a day of keys.
//!
//! Creations whose first step happens outside the database (a process started on a sandbox host) reserve the key
//! first (`pending`), and turn the reservation into the record in the transaction that stores the outside result; a
//! reservation older than [`PENDING_LEASE`] counts as abandoned (the server stopped in between).
//!
//! The runtime knows nothing of what a creation is: [`Idempotent`] wraps any mutation whose output serialises, and
//! commands that write through `EntityCtx::write` call [`lookup`] and [`record`] in their own transaction.
//!
//! Cluster mode uses the same table for routed mutations ([`RemoteOnce`], scope `remote::REMOTE_SCOPE`, the
//! caller's request id as the key, kept [`REMOTE_TTL`]): the record commits, and so is in the commit log, with the
//! mutation, so a caller that lost the answer gets the first output from this node or the shard's next owner.

use std::marker::PhantomData;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::sqlite::SqliteConnection;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::entity::{Entity, Mutation, Read, Tx};

/// A storage failure of the idempotency messages, as text: it crosses nodes (cluster mode) like any handler error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[error("idempotency record: {0}")]
pub struct RecordError(pub String);

impl From<diesel::result::Error> for RecordError {
    fn from(e: diesel::result::Error) -> Self {
        RecordError(e.to_string())
    }
}

/// How long a key is remembered.
pub const KEY_TTL: Duration = Duration::from_secs(24 * 3600);
/// How long a reservation holds while its outside step runs; after that a retry may take the key over.
pub const PENDING_LEASE: Duration = Duration::from_secs(120);
/// Expired rows deleted per keyed creation: bounded work per request, and more than one per request keeps up.
pub const PRUNE_BATCH: i64 = 16;
/// How long a routed mutation's request id is remembered (cluster mode, [`RemoteOnce`]). Its caller stops asking
/// after `remote::ROUTED_DEADLINE` (15 s); the rest covers a retry queued behind a busy mailbox or a failover, and
/// the wall clocks of the owner that recorded it and the next one disagreeing. A day of ids, as for clients' keys,
/// would keep a busy actor's every routed call for a day.
pub const REMOTE_TTL: Duration = Duration::from_secs(10 * 60);

/// A key as recorded: who and what (`scope`), the client's key, and the request's fingerprint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub scope: String,
    pub key: String,
    pub fingerprint: String,
}

/// What an actor has recorded for a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Recorded {
    /// Nothing live: never used, expired, or an abandoned reservation.
    Absent,
    /// Used with a different request.
    Mismatch,
    /// Reserved by a request whose outside step is still running.
    Pending,
    /// Created: the creation's output (JSON) and, once given, the route's whole answer (JSON).
    Created { output: String, answer: Option<String> },
}

/// The result of a keyed creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Once<T> {
    /// Created now; the key is recorded with it.
    Applied(T),
    /// Created before under this key: the recorded output, and the answer if it was given.
    Replayed { output: T, answer: Option<String> },
    /// The key was used with a different request.
    KeyReused,
    /// The key is reserved by a request that is still running.
    InProgress,
}

impl<T> Once<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Once<U> {
        match self {
            Once::Applied(v) => Once::Applied(f(v)),
            Once::Replayed { output, answer } => Once::Replayed { output: f(output), answer },
            Once::KeyReused => Once::KeyReused,
            Once::InProgress => Once::InProgress,
        }
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(sql_type = Text)]
    fingerprint: String,
    #[diesel(sql_type = Text)]
    state: String,
    #[diesel(sql_type = Nullable<Text>)]
    output: Option<String>,
    #[diesel(sql_type = Nullable<Text>)]
    answer: Option<String>,
    #[diesel(sql_type = BigInt)]
    created_at_ms: i64,
}

/// The live record of `key` at `now`.
pub fn lookup(conn: &mut SqliteConnection, key: &IdempotencyKey, now: i64) -> QueryResult<Recorded> {
    let rows: Vec<Row> = diesel::sql_query(
        "SELECT fingerprint, state, output, answer, created_at_ms FROM _foundry_idempotency WHERE scope = ? AND key = ?",
    )
    .bind::<Text, _>(&key.scope)
    .bind::<Text, _>(&key.key)
    .load(conn)?;
    let Some(row) = rows.into_iter().next() else { return Ok(Recorded::Absent) };
    let age = now.saturating_sub(row.created_at_ms);
    let pending = row.state == "pending";
    if age >= KEY_TTL.as_millis() as i64 || (pending && age >= PENDING_LEASE.as_millis() as i64) {
        return Ok(Recorded::Absent);
    }
    if row.fingerprint != key.fingerprint {
        return Ok(Recorded::Mismatch);
    }
    Ok(match row.output {
        Some(output) if !pending => Recorded::Created { output, answer: row.answer },
        _ => Recorded::Pending,
    })
}

/// Records `key` as created with `output` (JSON), replacing an expired row or this key's reservation. Call it in
/// the creation's own transaction, after [`lookup`] found the key [`Recorded::Absent`] or pending.
pub fn record(conn: &mut SqliteConnection, key: &IdempotencyKey, output: &str, now: i64) -> QueryResult<()> {
    upsert(conn, key, "created", Some(output), now)
}

/// [`record`] for a key that lives `ttl` (shorter than [`KEY_TTL`]): stamped as if made `KEY_TTL - ttl` earlier,
/// so the one age-ordered [`prune`] and [`lookup`]'s expiry treat it by its own lifetime, with no second index.
fn record_for(
    conn: &mut SqliteConnection,
    key: &IdempotencyKey,
    output: &str,
    now: i64,
    ttl: Duration,
) -> QueryResult<()> {
    let early = KEY_TTL.saturating_sub(ttl).as_millis() as i64;
    upsert(conn, key, "created", Some(output), now - early)
}

/// Reserves `key` for a creation whose first step runs outside this database (see [`PENDING_LEASE`]).
pub fn reserve(conn: &mut SqliteConnection, key: &IdempotencyKey, now: i64) -> QueryResult<()> {
    upsert(conn, key, "pending", None, now)
}

fn upsert(
    conn: &mut SqliteConnection,
    key: &IdempotencyKey,
    state: &str,
    output: Option<&str>,
    now: i64,
) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO _foundry_idempotency (scope, key, fingerprint, state, output, answer, created_at_ms) \
         VALUES (?, ?, ?, ?, ?, NULL, ?) ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
         state = excluded.state, output = excluded.output, answer = NULL, created_at_ms = excluded.created_at_ms",
    )
    .bind::<Text, _>(&key.scope)
    .bind::<Text, _>(&key.key)
    .bind::<Text, _>(&key.fingerprint)
    .bind::<Text, _>(state)
    .bind::<Nullable<Text>, _>(output)
    .bind::<BigInt, _>(now)
    .execute(conn)?;
    Ok(())
}

/// Stores the route's answer for a created (or reserved) key unless one is stored already; returns the stored one,
/// so concurrent finishers of one creation all answer alike (the first answer wins).
pub fn answer(conn: &mut SqliteConnection, scope: &str, key: &str, answer: &str) -> QueryResult<Option<String>> {
    diesel::sql_query(
        "UPDATE _foundry_idempotency SET state = 'created', output = COALESCE(output, 'null'), answer = ? \
         WHERE scope = ? AND key = ? AND answer IS NULL",
    )
    .bind::<Text, _>(answer)
    .bind::<Text, _>(scope)
    .bind::<Text, _>(key)
    .execute(conn)?;
    #[derive(QueryableByName)]
    struct Stored {
        #[diesel(sql_type = Nullable<Text>)]
        answer: Option<String>,
    }
    let rows: Vec<Stored> = diesel::sql_query("SELECT answer FROM _foundry_idempotency WHERE scope = ? AND key = ?")
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .load(conn)?;
    Ok(rows.into_iter().next().and_then(|r| r.answer))
}

/// Forgets a key whose creation was refused or failed before anything was created (a reservation, or a record that
/// was never answered), so the client may retry under it.
pub fn release(conn: &mut SqliteConnection, scope: &str, key: &str) -> QueryResult<()> {
    diesel::sql_query("DELETE FROM _foundry_idempotency WHERE scope = ? AND key = ? AND answer IS NULL")
        .bind::<Text, _>(scope)
        .bind::<Text, _>(key)
        .execute(conn)?;
    Ok(())
}

/// Deletes up to [`PRUNE_BATCH`] expired records, oldest first.
pub fn prune(conn: &mut SqliteConnection, now: i64) -> QueryResult<usize> {
    diesel::sql_query(
        "DELETE FROM _foundry_idempotency WHERE (scope, key) IN (SELECT scope, key FROM _foundry_idempotency \
         WHERE created_at_ms < ? ORDER BY created_at_ms LIMIT ?)",
    )
    .bind::<BigInt, _>(now - KEY_TTL.as_millis() as i64)
    .bind::<BigInt, _>(PRUNE_BATCH)
    .execute(conn)
}

fn to_json<T: Serialize>(value: &T) -> QueryResult<String> {
    serde_json::to_string(value).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))
}

fn from_json<T: DeserializeOwned>(text: &str) -> QueryResult<T> {
    serde_json::from_str(text).map_err(|e| diesel::result::Error::DeserializationError(Box::new(e)))
}

/// `msg`, applied at most once per key: the key's record and the creation commit in one transaction. A recorded key
/// replays the recorded output without applying `msg`; a refused `msg` records nothing (its savepoint rolls back).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Idempotent<M> {
    pub key: IdempotencyKey,
    pub msg: M,
}

impl<M> Mutation for Idempotent<M>
where
    M: Mutation,
    M::Output: Serialize + DeserializeOwned,
{
    type Entity = M::Entity;
    type Output = Once<M::Output>;
    type Error = M::Error;
    fn apply(self, entity: &M::Entity, tx: &mut Tx<'_>) -> Result<Once<M::Output>, M::Error> {
        apply_once(self.key, self.msg, KEY_TTL, entity, tx)
    }
}

/// [`Idempotent`] for a routed mutation (cluster mode): the key is the caller's request id, remembered
/// [`REMOTE_TTL`]. Built by the serving side of `Accepts::remote_mutation` only.
pub(crate) struct RemoteOnce<M> {
    pub key: IdempotencyKey,
    pub msg: M,
}

impl<M> Mutation for RemoteOnce<M>
where
    M: Mutation,
    M::Output: Serialize + DeserializeOwned,
{
    type Entity = M::Entity;
    type Output = Once<M::Output>;
    type Error = M::Error;
    fn apply(self, entity: &M::Entity, tx: &mut Tx<'_>) -> Result<Once<M::Output>, M::Error> {
        apply_once(self.key, self.msg, REMOTE_TTL, entity, tx)
    }
}

fn apply_once<M>(
    key: IdempotencyKey,
    msg: M,
    ttl: Duration,
    entity: &M::Entity,
    tx: &mut Tx<'_>,
) -> Result<Once<M::Output>, M::Error>
where
    M: Mutation,
    M::Output: Serialize + DeserializeOwned,
{
    let now = now_ms();
    prune(tx.conn(), now)?;
    match lookup(tx.conn(), &key, now)? {
        Recorded::Absent => {
            let output = msg.apply(entity, tx)?;
            record_for(tx.conn(), &key, &to_json(&output)?, now, ttl)?;
            Ok(Once::Applied(output))
        }
        Recorded::Created { output, answer } => Ok(Once::Replayed { output: from_json(&output)?, answer }),
        Recorded::Mismatch => Ok(Once::KeyReused),
        // Only a reservation's own completion writes over it; a plain mutation waits its turn like a retry.
        Recorded::Pending => Ok(Once::InProgress),
    }
}

/// Reads the record of a key (expired and abandoned ones read as absent).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct LookupIdempotency<E> {
    key: IdempotencyKey,
    #[serde(skip)]
    _kind: PhantomData<fn() -> E>,
}

impl<E> LookupIdempotency<E> {
    pub fn new(key: IdempotencyKey) -> Self {
        LookupIdempotency { key, _kind: PhantomData }
    }
}

impl<E: Entity> Read for LookupIdempotency<E> {
    type Entity = E;
    type Output = Recorded;
    type Error = RecordError;
    fn read(self, _: &E, db: &mut SqliteConnection) -> Result<Recorded, RecordError> {
        Ok(lookup(db, &self.key, now_ms())?)
    }
}

/// Claims a key unless it is recorded: with `output`, as created (a creation another actor carries out, whose own
/// record makes it exactly-once); without, as a pending reservation. Replies with what was recorded before
/// ([`Recorded::Absent`]: claimed now).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ReserveIdempotency<E> {
    key: IdempotencyKey,
    output: Option<String>,
    #[serde(skip)]
    _kind: PhantomData<fn() -> E>,
}

impl<E> ReserveIdempotency<E> {
    pub fn pending(key: IdempotencyKey) -> Self {
        ReserveIdempotency { key, output: None, _kind: PhantomData }
    }

    pub fn created(key: IdempotencyKey, output: String) -> Self {
        ReserveIdempotency { key, output: Some(output), _kind: PhantomData }
    }
}

impl<E: Entity> Mutation for ReserveIdempotency<E> {
    type Entity = E;
    type Output = Recorded;
    type Error = RecordError;
    fn apply(self, _: &E, tx: &mut Tx<'_>) -> Result<Recorded, RecordError> {
        let now = now_ms();
        prune(tx.conn(), now)?;
        let before = lookup(tx.conn(), &self.key, now)?;
        if before == Recorded::Absent {
            match &self.output {
                Some(output) => record(tx.conn(), &self.key, output, now)?,
                None => reserve(tx.conn(), &self.key, now)?,
            }
        }
        Ok(before)
    }
}

/// Stores the route's answer for a key (the first one wins) and replies with the stored answer.
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct AnswerIdempotency<E> {
    key: IdempotencyKey,
    answer: String,
    #[serde(skip)]
    _kind: PhantomData<fn() -> E>,
}

impl<E> AnswerIdempotency<E> {
    pub fn new(key: IdempotencyKey, answer: String) -> Self {
        AnswerIdempotency { key, answer, _kind: PhantomData }
    }
}

impl<E: Entity> Mutation for AnswerIdempotency<E> {
    type Entity = E;
    type Output = Option<String>;
    type Error = RecordError;
    fn apply(self, _: &E, tx: &mut Tx<'_>) -> Result<Option<String>, RecordError> {
        Ok(answer(tx.conn(), &self.key.scope, &self.key.key, &self.answer)?)
    }
}

/// Forgets an unanswered key after its creation was refused or its outside step failed (see [`release`]).
#[derive(Serialize, Deserialize)]
#[serde(bound = "")]
pub struct ReleaseIdempotency<E> {
    key: IdempotencyKey,
    #[serde(skip)]
    _kind: PhantomData<fn() -> E>,
}

impl<E> ReleaseIdempotency<E> {
    pub fn new(key: IdempotencyKey) -> Self {
        ReleaseIdempotency { key, _kind: PhantomData }
    }
}

impl<E: Entity> Mutation for ReleaseIdempotency<E> {
    type Entity = E;
    type Output = ();
    type Error = RecordError;
    fn apply(self, _: &E, tx: &mut Tx<'_>) -> Result<(), RecordError> {
        Ok(release(tx.conn(), &self.key.scope, &self.key.key)?)
    }
}

// Cluster mode: the HTTP layer's idempotency steps reach the actor that owns a creation on whichever node serves it
// (every kind registers them, see `Shared::registry_with`).
impl<E: Entity> super::remote::Remote for LookupIdempotency<E> {
    const NAME: &'static str = "LookupIdempotency";
}
impl<E: Entity> super::remote::Remote for ReserveIdempotency<E> {
    const NAME: &'static str = "ReserveIdempotency";
}
impl<E: Entity> super::remote::Remote for AnswerIdempotency<E> {
    const NAME: &'static str = "AnswerIdempotency";
}
impl<E: Entity> super::remote::Remote for ReleaseIdempotency<E> {
    const NAME: &'static str = "ReleaseIdempotency";
}

/// A remote mutation whose keyed form ([`Idempotent`]) may travel too: its wire name (`remote_messages!` in the
/// domain gives every remote mutation one).
pub trait RemoteIdempotent: super::remote::Remote + Mutation {
    const IDEMPOTENT_NAME: &'static str;
}

impl<M> super::remote::Remote for Idempotent<M>
where
    M: RemoteIdempotent,
    M::Output: Serialize + DeserializeOwned,
{
    const NAME: &'static str = M::IDEMPOTENT_NAME;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::db::{open_actor_db, set_writable, ConnOptions, Synchronous};

    const NONE: diesel_migrations::EmbeddedMigrations = diesel_migrations::embed_migrations!("migrations/runtime");

    fn db() -> (tempfile::TempDir, SqliteConnection) {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = open_actor_db(
            &dir.path().join("a.sqlite3"),
            "k",
            "a",
            NONE,
            ConnOptions { synchronous: Synchronous::Normal, guard_reads: true, manual_checkpoints: false },
            false,
        )
        .unwrap();
        set_writable(&mut conn, true).unwrap();
        (dir, conn)
    }

    fn key(k: &str, fingerprint: &str) -> IdempotencyKey {
        IdempotencyKey { scope: "u1 POST /things".into(), key: k.into(), fingerprint: fingerprint.into() }
    }

    #[test]
    fn a_record_replays_for_its_request_only_and_expires() {
        let (_dir, mut c) = db();
        let t0 = 1_000_000;
        assert_eq!(lookup(&mut c, &key("k1", "f"), t0).unwrap(), Recorded::Absent);
        record(&mut c, &key("k1", "f"), "{\"id\":1}", t0).unwrap();
        let created = Recorded::Created { output: "{\"id\":1}".into(), answer: None };
        assert_eq!(lookup(&mut c, &key("k1", "f"), t0 + 1).unwrap(), created);
        assert_eq!(lookup(&mut c, &key("k1", "other"), t0 + 1).unwrap(), Recorded::Mismatch);
        // Another scope is another key.
        let elsewhere = IdempotencyKey { scope: "u2 POST /things".into(), ..key("k1", "other") };
        assert_eq!(lookup(&mut c, &elsewhere, t0 + 1).unwrap(), Recorded::Absent);
        // The first answer is kept.
        assert_eq!(answer(&mut c, &key("k1", "f").scope, "k1", "A").unwrap().as_deref(), Some("A"));
        assert_eq!(answer(&mut c, &key("k1", "f").scope, "k1", "B").unwrap().as_deref(), Some("A"));
        let ttl = KEY_TTL.as_millis() as i64;
        assert!(matches!(lookup(&mut c, &key("k1", "f"), t0 + ttl - 1).unwrap(), Recorded::Created { .. }));
        assert_eq!(lookup(&mut c, &key("k1", "f"), t0 + ttl).unwrap(), Recorded::Absent);
    }

    #[test]
    fn a_reservation_holds_for_its_lease_and_can_be_released() {
        let (_dir, mut c) = db();
        let t0 = 5_000_000;
        reserve(&mut c, &key("k", "f"), t0).unwrap();
        assert_eq!(lookup(&mut c, &key("k", "f"), t0 + 10).unwrap(), Recorded::Pending);
        assert_eq!(lookup(&mut c, &key("k", "g"), t0 + 10).unwrap(), Recorded::Mismatch);
        let lease = PENDING_LEASE.as_millis() as i64;
        assert_eq!(lookup(&mut c, &key("k", "g"), t0 + lease).unwrap(), Recorded::Absent, "abandoned");
        // Completed in the outside step's transaction.
        record(&mut c, &key("k", "f"), "1", t0 + 20).unwrap();
        assert!(matches!(lookup(&mut c, &key("k", "f"), t0 + lease + 30).unwrap(), Recorded::Created { .. }));
        // A reservation answered directly becomes a record too.
        reserve(&mut c, &key("p", "f"), t0).unwrap();
        answer(&mut c, &key("p", "f").scope, "p", "A").unwrap();
        let done = Recorded::Created { output: "null".into(), answer: Some("A".into()) };
        assert_eq!(lookup(&mut c, &key("p", "f"), t0 + 1).unwrap(), done);
        // Release forgets only what was never answered.
        reserve(&mut c, &key("r", "f"), t0).unwrap();
        release(&mut c, &key("r", "f").scope, "r").unwrap();
        release(&mut c, &key("p", "f").scope, "p").unwrap();
        assert_eq!(lookup(&mut c, &key("r", "f"), t0 + 1).unwrap(), Recorded::Absent);
        assert_eq!(lookup(&mut c, &key("p", "f"), t0 + 1).unwrap(), done);
    }

    #[test]
    fn a_short_lived_record_expires_and_is_pruned_after_its_own_ttl() {
        let (_dir, mut c) = db();
        let t0 = 10 * KEY_TTL.as_millis() as i64;
        let ttl = REMOTE_TTL.as_millis() as i64;
        record_for(&mut c, &key("id", "f"), "7", t0, REMOTE_TTL).unwrap();
        record(&mut c, &key("client", "f"), "1", t0).unwrap();
        let created = Recorded::Created { output: "7".into(), answer: None };
        assert_eq!(lookup(&mut c, &key("id", "f"), t0 + ttl - 1).unwrap(), created);
        assert_eq!(lookup(&mut c, &key("id", "g"), t0 + ttl - 1).unwrap(), Recorded::Mismatch);
        assert_eq!(prune(&mut c, t0 + ttl - 1).unwrap(), 0);
        assert_eq!(lookup(&mut c, &key("id", "f"), t0 + ttl).unwrap(), Recorded::Absent);
        assert_eq!(prune(&mut c, t0 + ttl + 1).unwrap(), 1, "the short-lived one only");
        assert!(matches!(lookup(&mut c, &key("client", "f"), t0 + ttl + 1).unwrap(), Recorded::Created { .. }));
    }

    #[test]
    fn pruning_deletes_a_bounded_batch_of_expired_rows_oldest_first() {
        let (_dir, mut c) = db();
        let ttl = KEY_TTL.as_millis() as i64;
        for i in 0..(PRUNE_BATCH + 4) {
            record(&mut c, &key(&format!("old{i}"), "f"), "1", 1_000 + i).unwrap();
        }
        record(&mut c, &key("fresh", "f"), "1", 2 * ttl).unwrap();
        let now = 2 * ttl;
        assert_eq!(prune(&mut c, now).unwrap(), PRUNE_BATCH as usize);
        assert_eq!(prune(&mut c, now).unwrap(), 4);
        assert_eq!(prune(&mut c, now).unwrap(), 0);
        assert!(matches!(lookup(&mut c, &key("fresh", "f"), now).unwrap(), Recorded::Created { .. }));
    }
}
