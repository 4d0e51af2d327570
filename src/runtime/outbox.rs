//! Durable cross-actor delivery: the outbox rows a mutation writes, the inbox that makes redelivery a no-op, the table
//! of message types each kind accepts (and schedules for itself), and the SQL behind them.
//!
//! Protocol: a mutation calls `Tx::send`, which inserts an outbox row in the sender's transaction. After commit the
//! sender delivers its rows oldest first, one at a time, as a `Deliver` mutation on the receiver; the receiver applies
//! it and records `(source, seq)` in its `_foundry_inbox` in the same transaction, and skips any seq it has already
//! recorded. Only when the receiver replied does the sender delete the row. A crash anywhere leaves either the row (it
//! is sent again and deduplicated) or nothing to do. Senders with rows are listed in the runtime's recovery index so a
//! restarted process resumes their delivery without waiting for someone to call them.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::Arc;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel::sqlite::SqliteConnection;
use futures_util::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::actor::Deliver;
use super::entity::{Command, Delivery, Entity, Mutation, Read};
use super::error::CallError;
use super::idempotency::{IdempotencyKey, Once, RemoteOnce};
use super::key::EntityKey;
use super::remote::{codec, deliver_remote, remote_key, Remote, RemoteCall, Reply, Request, WireError};
use super::schedule::{fire_fn, FireFn, Scheduled};
use super::system::Shared;

/// Who sent an outbox message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub kind: String,
    pub key: String,
    /// The sender's database incarnation: sequences restart only with a new one.
    pub incarnation: String,
}

/// What happened to one delivery attempt.
#[derive(Debug)]
pub enum DeliveryOutcome {
    Applied,
    Duplicate,
    /// The receiver refused it (a domain error, an undecodable payload): dead-letter it rather than retry forever.
    Rejected(String),
    /// Transient (receiver overloaded, shutting down, activation failed): try again later.
    Retry(String),
    /// The receiver panicked applying it: retried a few times, then dead-lettered.
    Panicked(String),
}

/// Delivers one outbox row to its receiver: on this node, or (cluster mode, `forward`) through the transport to the
/// node serving the receiver's shard. The serving side of a forwarded delivery calls it with `forward = false`.
pub(crate) type DeliverFn =
    Arc<dyn Fn(Arc<Shared>, String, Source, i64, String, bool) -> BoxFuture<'static, DeliveryOutcome> + Send + Sync>;

/// How a remote message runs on the serving node: its kind's local call path, never forwarding again, with
/// `existing` and (a mutation's) request id as its idempotency key.
type LocalRun<E, M> =
    fn(super::Registry<E>, <E as Entity>::Key, M, bool, Option<IdempotencyKey>) -> BoxFuture<'static, Reply>;

/// A registered remote message, run on this node for a caller on another (see `remote.rs`).
pub(crate) type RemoteFn = Arc<dyn Fn(Arc<Shared>, RemoteCall) -> BoxFuture<'static, Reply> + Send + Sync>;

/// Registration handle passed to `Entity::accepts`.
pub struct Accepts<E: Entity> {
    pub(crate) table: HashMap<String, DeliverFn>,
    /// The kind's [`Remote`] mutations and reads by wire name (cluster mode: callable from other nodes).
    pub(crate) remote: HashMap<String, RemoteFn>,
    /// Their codecs by message type, for the calling side (see `remote::Codec`).
    pub(crate) codecs: Vec<(std::any::TypeId, Arc<dyn std::any::Any + Send + Sync>)>,
    /// The kind's [`Scheduled`] messages by wire name.
    pub(crate) scheduled: HashMap<&'static str, FireFn<E>>,
    _kind: PhantomData<E>,
}

impl<E: Entity> Accepts<E> {
    pub(crate) fn new() -> Self {
        Accepts {
            table: HashMap::new(),
            remote: HashMap::new(),
            codecs: Vec::new(),
            scheduled: HashMap::new(),
            _kind: PhantomData,
        }
    }

    /// This kind accepts `M` from other actors' outboxes.
    pub fn accept<M>(&mut self) -> &mut Self
    where
        M: Delivery<Entity = E>,
        M::Error: std::fmt::Display,
    {
        self.table.insert(delivery_key(E::KIND, M::NAME), deliver_fn::<M>());
        self
    }

    /// Cluster mode: `M` may be called on this kind from other nodes, and calls of it (`Registry::mutate`,
    /// `mutate_existing`) for an actor another node serves go there through the transport instead of answering
    /// `not_owner`. A call carrying a request id runs as `RemoteOnce` (an [`super::Idempotent`] kept ten minutes)
    /// under it (scope `remote::REMOTE_SCOPE`): the record commits with the mutation, so a caller that lost the
    /// answer and asks again, of this node or of the shard's next owner, gets the first output instead of a second
    /// run. A refusal records nothing (its savepoint rolls back), so asking again runs it again.
    pub fn remote_mutation<M>(&mut self) -> &mut Self
    where
        M: Mutation<Entity = E> + Remote,
        M::Output: Serialize + DeserializeOwned,
        M::Error: Serialize + DeserializeOwned,
    {
        self.remote_call::<M, M::Output, M::Error>(|r, k, m, existing, once| {
            Box::pin(async move {
                let Some(key) = once else { return returned(r.mutate_here(&k, m, existing).await) };
                let id = key.key.clone();
                match r.mutate_here(&k, RemoteOnce { key, msg: m }, existing).await {
                    Ok(Once::Applied(output)) => returned::<_, M::Error>(Ok(output)),
                    Ok(Once::Replayed { output, .. }) => {
                        tracing::debug!(kind = E::KIND, message = M::NAME, %id, "routed mutation replayed");
                        returned::<_, M::Error>(Ok(output))
                    }
                    Ok(Once::KeyReused) => Reply::Failed { error: WireError::id_reused(&id) },
                    // Nothing reserves keys in the remote scope; an id another scope's reservation holds cannot be.
                    Ok(Once::InProgress) => {
                        Reply::Failed { error: WireError::bad_request(format!("request id {id} is reserved")) }
                    }
                    Err(e) => returned::<M::Output, _>(Err(e)),
                }
            })
        })
    }

    /// Cluster mode: as [`Accepts::remote_mutation`], for the command `C` (`Registry::exec`, `exec_existing`). Its
    /// reply travels once the command returns (after its writes are durable, as for a local caller).
    pub fn remote_command<C>(&mut self) -> &mut Self
    where
        C: Command<Entity = E> + Remote,
        C::Output: Serialize + DeserializeOwned,
        C::Error: Serialize + DeserializeOwned,
    {
        // A request id (none is sent for commands) would change nothing: a command is not one transaction.
        self.remote_call::<C, C::Output, C::Error>(|r, k, c, existing, _| {
            Box::pin(async move { returned(r.exec_here(&k, c, existing).await) })
        })
    }

    /// Cluster mode: as [`Accepts::remote_mutation`], for the read `M` (`Registry::read`, `read_existing`).
    pub fn remote_read<M>(&mut self) -> &mut Self
    where
        M: Read<Entity = E> + Remote,
        M::Output: Serialize + DeserializeOwned,
        M::Error: Serialize + DeserializeOwned,
    {
        self.remote_call::<M, M::Output, M::Error>(|r, k, m, existing, _| {
            Box::pin(async move { returned(r.read_here(&k, m, existing).await) })
        })
    }

    /// Registers the serving side (decode, run on this node's path with `run`, encode the answer) and the calling
    /// side's codec of the remote message `M`.
    fn remote_call<M, O, Er>(&mut self, run: LocalRun<E, M>) -> &mut Self
    where
        M: Remote,
        O: Serialize + DeserializeOwned + 'static,
        Er: Serialize + DeserializeOwned + 'static,
    {
        let f: RemoteFn = Arc::new(move |shared: Arc<Shared>, call: RemoteCall| {
            Box::pin(async move {
                let (key, msg) = match decode_call::<E, M>(&call.key, &call.payload) {
                    Ok(v) => v,
                    Err(reply) => return reply,
                };
                let once = call.id.map(|id| remote_key(&call.kind, &call.message, &call.payload, id));
                run(shared.registry::<E>(), key, msg, call.existing, once).await
            }) as BoxFuture<'static, Reply>
        });
        self.remote.insert(delivery_key(E::KIND, M::NAME), f);
        self.codecs.push((std::any::TypeId::of::<M>(), Arc::new(codec::<M, O, Er>())));
        self
    }

    /// This kind's actors may schedule `M` for themselves (`Tx::schedule_after` and friends).
    pub fn schedule<M>(&mut self) -> &mut Self
    where
        M: Scheduled<Entity = E>,
        M::Error: std::fmt::Display,
    {
        self.scheduled.insert(M::NAME, fire_fn::<M>);
        self
    }
}

pub(crate) fn delivery_key(kind: &str, message: &str) -> String {
    format!("{kind}\u{0}{message}")
}

fn decode_call<E: Entity, M: DeserializeOwned>(key: &str, payload: &str) -> Result<(E::Key, M), Reply> {
    let key = E::Key::decode(key).map_err(|e| Reply::Failed { error: WireError::bad_request(e.to_string()) })?;
    let msg = serde_json::from_str(payload)
        .map_err(|e| Reply::Failed { error: WireError::bad_request(format!("payload does not decode: {e}")) })?;
    Ok((key, msg))
}

fn returned<T: Serialize, Err: Serialize>(res: Result<T, CallError<Err>>) -> Reply {
    match res {
        Ok(v) => match serde_json::to_string(&v) {
            Ok(output) => Reply::Returned { output },
            Err(e) => Reply::Failed { error: WireError::bad_request(format!("the output does not encode: {e}")) },
        },
        Err(e) => Reply::Failed { error: WireError::from_call(e) },
    }
}

fn deliver_fn<M>() -> DeliverFn
where
    M: Delivery,
    M::Error: std::fmt::Display,
{
    Arc::new(|shared: Arc<Shared>, encoded: String, source: Source, seq: i64, payload: String, forward: bool| {
        Box::pin(async move {
            let key = match <M::Entity as Entity>::Key::decode(&encoded) {
                Ok(k) => k,
                Err(e) => return DeliveryOutcome::Rejected(e.to_string()),
            };
            if forward {
                if let Some((transport, shard)) = shared.remote_route::<M::Entity>(&key) {
                    let kind = <M::Entity as Entity>::KIND;
                    let request = Request::deliver(kind, &encoded, M::NAME, &source, seq, &payload);
                    return deliver_remote(transport.as_ref(), shard, request).await;
                }
            }
            let msg: M = match serde_json::from_str(&payload) {
                Ok(m) => m,
                Err(e) => return DeliveryOutcome::Rejected(format!("payload does not decode: {e}")),
            };
            let registry = shared.registry::<M::Entity>();
            let res = registry.deliver_envelope(&key, |reply| Deliver { source, seq, msg, reply }).await;
            match res {
                Ok(true) => DeliveryOutcome::Applied,
                Ok(false) => DeliveryOutcome::Duplicate,
                Err(CallError::Handler(e)) if M::is_retryable(&e) => DeliveryOutcome::Retry(e.to_string()),
                Err(CallError::Handler(e)) => DeliveryOutcome::Rejected(e.to_string()),
                Err(p @ CallError::Panicked { .. }) => DeliveryOutcome::Panicked(p.to_string()),
                Err(other) => DeliveryOutcome::Retry(other.to_string()),
            }
        }) as BoxFuture<'static, DeliveryOutcome>
    })
}

pub(crate) fn insert<M: Serialize>(
    conn: &mut SqliteConnection,
    target_kind: &str,
    target_key: &str,
    message: &str,
    msg: &M,
) -> QueryResult<()> {
    let payload = serde_json::to_string(msg).map_err(|e| diesel::result::Error::SerializationError(Box::new(e)))?;
    diesel::sql_query(
        "INSERT INTO _foundry_outbox (target_kind, target_key, message, payload, created_at_ms) VALUES (?, ?, ?, ?, ?)",
    )
    .bind::<Text, _>(target_kind)
    .bind::<Text, _>(target_key)
    .bind::<Text, _>(message)
    .bind::<Text, _>(payload)
    .bind::<BigInt, _>(now_ms())
    .execute(conn)?;
    Ok(())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

#[derive(QueryableByName, Debug, Clone)]
pub(crate) struct OutboxRow {
    #[diesel(sql_type = BigInt)]
    pub seq: i64,
    #[diesel(sql_type = Text)]
    pub target_kind: String,
    #[diesel(sql_type = Text)]
    pub target_key: String,
    #[diesel(sql_type = Text)]
    pub message: String,
    #[diesel(sql_type = Text)]
    pub payload: String,
}

pub(crate) fn head(conn: &mut SqliteConnection) -> QueryResult<Option<OutboxRow>> {
    let rows: Vec<OutboxRow> = diesel::sql_query(
        "SELECT seq, target_kind, target_key, message, payload FROM _foundry_outbox ORDER BY seq LIMIT 1",
    )
    .load(conn)?;
    Ok(rows.into_iter().next())
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

pub(crate) fn has_rows(conn: &mut SqliteConnection) -> QueryResult<bool> {
    let rows: Vec<Count> = diesel::sql_query("SELECT EXISTS (SELECT 1 FROM _foundry_outbox) AS n").load(conn)?;
    Ok(rows.first().is_some_and(|c| c.n != 0))
}

/// Rows waiting in an actor's outbox (for tests and admin reads).
pub fn pending_count(conn: &mut SqliteConnection) -> QueryResult<i64> {
    let rows: Vec<Count> = diesel::sql_query("SELECT COUNT(*) AS n FROM _foundry_outbox").load(conn)?;
    Ok(rows.first().map_or(0, |c| c.n))
}

pub(crate) fn delete(conn: &mut SqliteConnection, seq: i64) -> QueryResult<()> {
    diesel::sql_query("DELETE FROM _foundry_outbox WHERE seq = ?").bind::<BigInt, _>(seq).execute(conn)?;
    Ok(())
}

pub(crate) fn dead_letter(conn: &mut SqliteConnection, row: &OutboxRow, error: &str) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT OR REPLACE INTO _foundry_dead_letters (seq, target_kind, target_key, message, payload, error, failed_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind::<BigInt, _>(row.seq)
    .bind::<Text, _>(&row.target_kind)
    .bind::<Text, _>(&row.target_key)
    .bind::<Text, _>(&row.message)
    .bind::<Text, _>(&row.payload)
    .bind::<Text, _>(error)
    .bind::<BigInt, _>(now_ms())
    .execute(conn)?;
    delete(conn, row.seq)
}

#[derive(QueryableByName)]
struct LastSeq {
    #[diesel(sql_type = Text)]
    source_incarnation: String,
    #[diesel(sql_type = BigInt)]
    last_seq: i64,
}

pub(crate) fn already_applied(conn: &mut SqliteConnection, source: &Source, seq: i64) -> QueryResult<bool> {
    let rows: Vec<LastSeq> = diesel::sql_query(
        "SELECT source_incarnation, last_seq FROM _foundry_inbox WHERE source_kind = ? AND source_key = ?",
    )
    .bind::<Text, _>(&source.kind)
    .bind::<Text, _>(&source.key)
    .load(conn)?;
    Ok(rows.first().is_some_and(|r| r.source_incarnation == source.incarnation && r.last_seq >= seq))
}

pub(crate) fn record_applied(conn: &mut SqliteConnection, source: &Source, seq: i64) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO _foundry_inbox (source_kind, source_key, source_incarnation, last_seq) VALUES (?, ?, ?, ?) \
         ON CONFLICT (source_kind, source_key) DO UPDATE \
         SET source_incarnation = excluded.source_incarnation, last_seq = excluded.last_seq",
    )
    .bind::<Text, _>(&source.kind)
    .bind::<Text, _>(&source.key)
    .bind::<Text, _>(&source.incarnation)
    .bind::<BigInt, _>(seq)
    .execute(conn)?;
    Ok(())
}

#[derive(QueryableByName)]
struct TopicVersion {
    #[diesel(sql_type = Text)]
    topic: String,
    #[diesel(sql_type = BigInt)]
    version: i64,
}

pub(crate) fn load_versions(conn: &mut SqliteConnection) -> QueryResult<HashMap<String, u64>> {
    let rows: Vec<TopicVersion> = diesel::sql_query("SELECT topic, version FROM _foundry_topics").load(conn)?;
    Ok(rows.into_iter().map(|r| (r.topic, r.version as u64)).collect())
}

/// The committed version of one of the actor's topics (0 if never touched), for reads that tell a client where a
/// topic stands: a later `{topic}Updated` frame with a higher version is newer than what the read saw.
pub fn topic_version(conn: &mut SqliteConnection, topic: &str) -> QueryResult<u64> {
    #[derive(QueryableByName)]
    struct Version {
        #[diesel(sql_type = BigInt)]
        version: i64,
    }
    let rows: Vec<Version> =
        diesel::sql_query("SELECT version FROM _foundry_topics WHERE topic = ?").bind::<Text, _>(topic).load(conn)?;
    Ok(rows.first().map_or(0, |r| r.version as u64))
}

pub(crate) fn store_version(conn: &mut SqliteConnection, topic: &str, version: u64) -> QueryResult<()> {
    diesel::sql_query(
        "INSERT INTO _foundry_topics (topic, version) VALUES (?, ?) \
         ON CONFLICT (topic) DO UPDATE SET version = excluded.version",
    )
    .bind::<Text, _>(topic)
    .bind::<BigInt, _>(version as i64)
    .execute(conn)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::{EmbeddedMigrations, Mutation, Runtime, RuntimeConfig, Tx};
    use diesel::sql_types::BigInt;

    struct Sink;

    impl Entity for Sink {
        type Key = String;
        const KIND: &'static str = "sink";
        const MIGRATIONS: EmbeddedMigrations = diesel_migrations::embed_migrations!("tests/fixtures/migrations/tally");
        fn load(_: &String, _: &mut SqliteConnection) -> QueryResult<Self> {
            Ok(Sink)
        }
    }

    #[derive(Serialize, serde::Deserialize)]
    struct Bump(i64);

    impl Mutation for Bump {
        type Entity = Sink;
        type Output = ();
        type Error = diesel::result::Error;
        fn apply(self, _: &Sink, tx: &mut Tx<'_>) -> QueryResult<()> {
            diesel::sql_query("UPDATE tally SET value = value + ? WHERE id = 1")
                .bind::<BigInt, _>(self.0)
                .execute(tx.conn())?;
            Ok(())
        }
    }

    impl Delivery for Bump {
        const NAME: &'static str = "sink.bump";
    }

    #[derive(QueryableByName)]
    struct Value {
        #[diesel(sql_type = BigInt)]
        value: i64,
    }

    struct GetValue;

    impl crate::runtime::Read for GetValue {
        type Entity = Sink;
        type Output = i64;
        type Error = diesel::result::Error;
        fn read(self, _: &Sink, db: &mut SqliteConnection) -> QueryResult<i64> {
            let rows: Vec<Value> = diesel::sql_query("SELECT value FROM tally WHERE id = 1").load(db)?;
            Ok(rows[0].value)
        }
    }

    #[actix_rt::test]
    async fn a_redelivered_message_is_applied_once() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = RuntimeConfig::new(dir.path());
        config.arbiters = 0;
        let rt = Runtime::start(config).unwrap();
        let reg = rt.registry::<Sink>();
        let key = "s".to_string();
        let source = |k: &str| Source { kind: "sender".into(), key: k.into(), incarnation: "i1".into() };
        let deliver = |src: Source, seq: i64, by: i64| {
            let reg = reg.clone();
            let key = key.clone();
            async move { reg.deliver_envelope(&key, |reply| Deliver { source: src, seq, msg: Bump(by), reply }).await }
        };
        assert!(deliver(source("a"), 1, 1).await.unwrap());
        assert!(!deliver(source("a"), 1, 1).await.unwrap(), "same seq again is a duplicate");
        assert!(deliver(source("a"), 2, 10).await.unwrap());
        assert!(!deliver(source("a"), 1, 1).await.unwrap(), "an older seq is a duplicate too");
        // Sequences are per sender.
        assert!(deliver(source("b"), 1, 100).await.unwrap());
        assert_eq!(reg.read(&key, GetValue).await.unwrap(), 111);
        // The inbox survives a restart.
        rt.shutdown().await;
        let rt = Runtime::start(RuntimeConfig { arbiters: 0, ..RuntimeConfig::new(dir.path()) }).unwrap();
        let reg = rt.registry::<Sink>();
        let res =
            reg.deliver_envelope(&key, |reply| Deliver { source: source("a"), seq: 2, msg: Bump(10), reply }).await;
        assert!(!res.unwrap());
        assert_eq!(reg.read(&key, GetValue).await.unwrap(), 111);
    }
}
