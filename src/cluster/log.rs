//! The commit log on PostgreSQL: `runtime::durable::CommitLog` for a node, fenced by its shard leases (spec §4.2).
//!
//! An append is one statement that locks the shard's lease row `FOR SHARE` at the epoch this node holds and moves
//! the actor's head from `txid - 1` to `txid`: a takeover's `UPDATE fdy_shard … epoch + 1` and the append serialise
//! on that row, and under Read Committed a waiter re-checks its condition against the newest row, so an append
//! either commits before the takeover (and the new owner restores it) or finds the epoch moved and appends nothing.
//! `txid = head + 1` also refuses a stale writer whose file fell behind.
//!
//! The wake index (`fdy_actor_wake`: when each actor must next run without a caller) is written by the same
//! statement as the entry that changed it (the `_WAKE` variants), or alone at the current head (`SET_WAKE`), and
//! read per shard by a node gaining shards (`CommitLog::wakes`).
//!
//! Appends of all the node's actors are batched into Postgres transactions (two round trips each: the pipelined
//! statements, then `COMMIT`; see `run_writes`) by pumps on their own thread, as the lease manager has, so actor arbiters never wait on Postgres
//! themselves. With `ClusterConfig::log_connections` above 1, that many pumps, each with its own connection, take
//! turns at the queue: while one batch commits, the appends that arrive meanwhile go out on another connection
//! instead of waiting for it. Order needs no more than that: an actor has one write in flight at a time.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::{join_all, BoxFuture};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use super::store::{Store, StoreError};
use super::{ClusterConfig, ClusterError, Epoch, LeaseView};
use crate::runtime::durable::{Append, CommitLog, Entry, Head, History, LogError, LogKey, Wake};
use crate::runtime::ShardId;

/// At most this many appends share one Postgres transaction.
const MAX_BATCH: usize = 256;

/// The wake-state CTEs appended to a fenced write (after its `lease` and `head`): the actor's row in
/// `fdy_actor_wake` set to the parameter `$p` (`NULL`: deleted), only if `head` says the write applied.
macro_rules! wake_ctes {
    ($p:tt) => {
        concat!(
            ", wake_set AS (
        INSERT INTO fdy_actor_wake (kind, key, shard, wake_at_ms) SELECT $4, $5, $1::int, ",
            $p,
            "::bigint FROM head
         WHERE ",
            $p,
            "::bigint IS NOT NULL
        ON CONFLICT (kind, key) DO UPDATE SET shard = excluded.shard, wake_at_ms = excluded.wake_at_ms),
     wake_del AS (
        DELETE FROM fdy_actor_wake WHERE kind = $4 AND key = $5 AND ",
            $p,
            "::bigint IS NULL AND EXISTS (SELECT 1 FROM head))"
        )
    };
}

/// Entry `txid` after `txid - 1`, if the lease holds at this epoch (`$wake`: the wake-state CTEs, or nothing).
macro_rules! append_pages {
    ($wake:expr) => {
        concat!("WITH lease AS (
        SELECT 1 FROM fdy_shard WHERE shard = $1::int AND owner = $2::text AND epoch = $3::bigint FOR SHARE),
     head AS (
        UPDATE fdy_actor_head SET txid = $6::bigint, epoch = $3::bigint, log_bytes = log_bytes + octet_length($7::bytea)
         WHERE kind = $4 AND key = $5 AND shard = $1::int AND txid = $6::bigint - 1 AND EXISTS (SELECT 1 FROM lease)
        RETURNING 1)", $wake, "
     INSERT INTO fdy_actor_log (kind, key, txid, epoch, owner, frames) SELECT $4, $5, $6::bigint, $3::bigint, $2::text, $7::bytea FROM head")
    };
}

/// The first entry of an actor: a snapshot that creates its head (refused if the actor already has one).
macro_rules! create {
    ($wake:expr) => {
        concat!("WITH lease AS (
        SELECT 1 FROM fdy_shard WHERE shard = $1::int AND owner = $2::text AND epoch = $3::bigint FOR SHARE),
     head AS (
        INSERT INTO fdy_actor_head (kind, key, shard, txid, epoch, snapshot_txid)
        SELECT $4, $5, $1::int, $6::bigint, $3::bigint, $6::bigint WHERE $6::bigint = 1 AND EXISTS (SELECT 1 FROM lease)
        ON CONFLICT (kind, key) DO NOTHING
        RETURNING 1)", $wake, "
     INSERT INTO fdy_actor_snapshot (kind, key, txid, epoch, owner, bytes) SELECT $4, $5, $6::bigint, $3::bigint, $2::text, $7::bytea FROM head")
    };
}

/// A later snapshot (compaction): moves the head, stores the snapshot and deletes what it replaces.
macro_rules! compact {
    ($wake:expr) => {
        concat!("WITH lease AS (
        SELECT 1 FROM fdy_shard WHERE shard = $1::int AND owner = $2::text AND epoch = $3::bigint FOR SHARE),
     head AS (
        UPDATE fdy_actor_head SET txid = $6::bigint, epoch = $3::bigint, snapshot_txid = $6::bigint, log_bytes = 0
         WHERE kind = $4 AND key = $5 AND shard = $1::int AND txid = $6::bigint - 1 AND EXISTS (SELECT 1 FROM lease)
        RETURNING 1),
     snap AS (
        INSERT INTO fdy_actor_snapshot (kind, key, txid, epoch, owner, bytes) SELECT $4, $5, $6::bigint, $3::bigint, $2::text, $7::bytea FROM head
        RETURNING 1),
     old_log AS (
        DELETE FROM fdy_actor_log WHERE kind = $4 AND key = $5 AND txid < $6::bigint AND EXISTS (SELECT 1 FROM head)),
     old_snap AS (
        DELETE FROM fdy_actor_snapshot WHERE kind = $4 AND key = $5 AND txid < $6::bigint AND EXISTS (SELECT 1 FROM head))", $wake, "
     SELECT count(*) FROM snap")
    };
}

// Most entries leave the wake state as it was: their statements are exactly those without it.
const APPEND_PAGES: &str = append_pages!("");
const APPEND_PAGES_WAKE: &str = append_pages!(wake_ctes!("$8"));
const CREATE: &str = create!("");
const CREATE_WAKE: &str = create!(wake_ctes!("$8"));
const COMPACT: &str = compact!("");
const COMPACT_WAKE: &str = compact!(wake_ctes!("$8"));

/// The wake state alone, at the head the owner knows (nothing was committed since its last entry).
const SET_WAKE: &str = concat!(
    "WITH lease AS (
        SELECT 1 FROM fdy_shard WHERE shard = $1::int AND owner = $2::text AND epoch = $3::bigint FOR SHARE),
     head AS (
        SELECT 1 FROM fdy_actor_head
         WHERE kind = $4 AND key = $5 AND shard = $1::int AND txid = $6::bigint AND EXISTS (SELECT 1 FROM lease))",
    wake_ctes!("$7"),
    "
     SELECT count(*) FROM head"
);

/// Where an actor's log stands, with its wake state.
const READ_HEAD: &str = "SELECT h.txid, h.snapshot_txid, h.log_bytes, w.wake_at_ms
       FROM fdy_actor_head h LEFT JOIN fdy_actor_wake w ON w.kind = h.kind AND w.key = h.key
      WHERE h.kind = $1 AND h.key = $2";

/// A destroyed actor's log and wake state, at the head its owner knows.
const FORGET: &str = "WITH lease AS (
        SELECT 1 FROM fdy_shard WHERE shard = $1::int AND owner = $2::text AND epoch = $3::bigint FOR SHARE),
     head AS (
        DELETE FROM fdy_actor_head
         WHERE kind = $4 AND key = $5 AND shard = $1::int AND txid = $6::bigint AND EXISTS (SELECT 1 FROM lease)
        RETURNING 1),
     old_log AS (DELETE FROM fdy_actor_log WHERE kind = $4 AND key = $5 AND EXISTS (SELECT 1 FROM head)),
     old_snap AS (DELETE FROM fdy_actor_snapshot WHERE kind = $4 AND key = $5 AND EXISTS (SELECT 1 FROM head)),
     old_wake AS (DELETE FROM fdy_actor_wake WHERE kind = $4 AND key = $5 AND EXISTS (SELECT 1 FROM head))
     SELECT count(*) FROM head";

/// Counters of the pump, for `/metrics` and the benchmarks.
#[derive(Debug, Default)]
pub struct LogStats {
    /// Entries appended (pages and snapshots).
    pub appends: AtomicU64,
    /// Postgres transactions that carried them.
    pub batches: AtomicU64,
    /// Bytes of entries appended.
    pub bytes: AtomicU64,
    /// Appends refused by the fence.
    pub fenced: AtomicU64,
    /// Appends that failed for another reason (Postgres unreachable, an error, a timeout).
    pub failed: AtomicU64,
    /// Sum of the batches' round trips, in microseconds (with `batches`: the mean append latency).
    pub batch_micros: AtomicU64,
    /// Writes that changed an actor's wake state (with an entry or alone).
    pub wake_writes: AtomicU64,
    /// Of those, writes of the wake state alone (no entry).
    pub wake_only: AtomicU64,
}

/// A node's commit log: cheap to clone into the runtime's config.
#[derive(Clone)]
pub struct PgLog {
    requests: mpsc::UnboundedSender<Request>,
    view: LeaseView,
    owner: String,
    stats: Arc<LogStats>,
}

impl std::fmt::Debug for PgLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgLog").field("owner", &self.owner).finish()
    }
}

type Reply<T> = oneshot::Sender<Result<T, LogError>>;

enum Request {
    Head(LogKey, Reply<Option<Head>>),
    History(LogKey, Reply<Option<History>>),
    Wakes(Vec<ShardId>, Reply<Vec<Wake>>),
    Write(Write, Reply<()>),
}

/// A fenced write, with the epoch this node held when it was asked for.
struct Write {
    actor: LogKey,
    epoch: Epoch,
    txid: u64,
    op: WriteOp,
    /// The actor's new wake state, if it changed (see `Append::wake`).
    wake: Option<Option<i64>>,
}

enum WriteOp {
    Pages(Vec<u8>),
    Snapshot(Vec<u8>),
    Forget,
    /// Only the wake state (in `Write::wake`), at head `txid`.
    Wake,
}

impl PgLog {
    /// Connects (migrating the schema if needed) and starts the pump thread. `view` and `owner` are the node's
    /// lease manager's (`Leases::view`, `Leases::owner`): appends are fenced by what it holds.
    pub async fn start(config: &ClusterConfig, view: LeaseView, owner: String) -> Result<PgLog, ClusterError> {
        let (requests, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(LogStats::default());
        let (ready_tx, ready_rx) = oneshot::channel();
        let (url, timeout, pump_stats) = (config.postgres_url.clone(), config.call_timeout, stats.clone());
        let connections = config.log_connections.max(1);
        let pump_owner = owner.clone();
        let name = format!("commit-log-{}", config.node_id);
        std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(ClusterError::Thread(e)));
                        return;
                    }
                };
                rt.block_on(async move {
                    let pump = |url: &String| Pump {
                        url: url.clone(),
                        owner: pump_owner.clone(),
                        timeout,
                        store: None,
                        stats: pump_stats.clone(),
                    };
                    let mut first = pump(&url);
                    // The first connection migrates the schema; the others connect on their first batch.
                    match first.connect().await {
                        Ok(()) => {
                            let _ = ready_tx.send(Ok(()));
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(ClusterError::from(e)));
                            return;
                        }
                    }
                    let queue = Arc::new(tokio::sync::Mutex::new(rx));
                    let mut pumps = vec![tokio::spawn(first.run(queue.clone()))];
                    pumps.extend((1..connections).map(|_| tokio::spawn(pump(&url).run(queue.clone()))));
                    join_all(pumps).await;
                });
            })
            .map_err(ClusterError::Thread)?;
        ready_rx.await.map_err(|_| ClusterError::Stopped)??;
        Ok(PgLog { requests, view, owner, stats })
    }

    pub fn stats(&self) -> &LogStats {
        &self.stats
    }

    /// The counters, shared (for `/metrics`).
    pub fn stats_handle(&self) -> Arc<LogStats> {
        self.stats.clone()
    }

    fn ask<T: Send + 'static>(
        &self,
        make: impl FnOnce(Reply<T>) -> Request,
    ) -> BoxFuture<'static, Result<T, LogError>> {
        let (tx, rx) = oneshot::channel();
        let sent = self.requests.send(make(tx)).is_ok();
        Box::pin(async move {
            if !sent {
                return Err(LogError::Unavailable("the commit log has stopped".into()));
            }
            rx.await.unwrap_or_else(|_| Err(LogError::Unavailable("the commit log has stopped".into())))
        })
    }

    fn write(
        &self,
        actor: LogKey,
        txid: u64,
        op: WriteOp,
        wake: Option<Option<i64>>,
    ) -> BoxFuture<'static, Result<(), LogError>> {
        // Not serving the shard (any more): refused here, without a round trip. Postgres' fence is what makes it
        // safe; this only spares it writes that would fail.
        let Some(epoch) = self.view.is_serving(actor.shard) else {
            self.stats.fenced.fetch_add(1, Ordering::Relaxed);
            return Box::pin(std::future::ready(Err(LogError::Fenced(actor.shard))));
        };
        self.ask(|reply| Request::Write(Write { actor, epoch, txid, op, wake }, reply))
    }
}

impl CommitLog for PgLog {
    fn head(&self, actor: &LogKey) -> BoxFuture<'static, Result<Option<Head>, LogError>> {
        self.ask(|reply| Request::Head(actor.clone(), reply))
    }

    fn history(&self, actor: &LogKey) -> BoxFuture<'static, Result<Option<History>, LogError>> {
        self.ask(|reply| Request::History(actor.clone(), reply))
    }

    fn append(&self, append: Append) -> BoxFuture<'static, Result<(), LogError>> {
        let op = match append.entry {
            Entry::Pages(b) => WriteOp::Pages(b),
            Entry::Snapshot(b) => WriteOp::Snapshot(b),
        };
        self.write(append.actor, append.txid, op, append.wake)
    }

    fn forget(&self, actor: &LogKey, txid: u64) -> BoxFuture<'static, Result<(), LogError>> {
        if txid == 0 {
            // Never appended: there is nothing to forget.
            return Box::pin(std::future::ready(Ok(())));
        }
        self.write(actor.clone(), txid, WriteOp::Forget, None)
    }

    fn set_wake(&self, actor: &LogKey, txid: u64, wake_at_ms: Option<i64>) -> BoxFuture<'static, Result<(), LogError>> {
        self.write(actor.clone(), txid, WriteOp::Wake, Some(wake_at_ms))
    }

    fn wakes(&self, shards: Vec<ShardId>) -> BoxFuture<'static, Result<Vec<Wake>, LogError>> {
        self.ask(|reply| Request::Wakes(shards, reply))
    }
}

struct Pump {
    url: String,
    /// This node's lease owner (`<node id>/<boot id>`), which the fence compares with `fdy_shard.owner`.
    owner: String,
    timeout: Duration,
    /// The connection and its prepared statements (none: reconnect before the next batch).
    store: Option<(Store, Statements)>,
    stats: Arc<LogStats>,
}

/// The write statements and the head read, prepared once per connection: each use is then one Bind/Execute in the
/// batch's pipeline rather than a Parse round trip first (and Postgres plans them once).
struct Statements {
    append_pages: Statement,
    append_pages_wake: Statement,
    create: Statement,
    create_wake: Statement,
    compact: Statement,
    compact_wake: Statement,
    forget: Statement,
    set_wake: Statement,
    head: Statement,
}

impl Statements {
    async fn prepare(client: &tokio_postgres::Client) -> Result<Statements, tokio_postgres::Error> {
        // Polled together, so the nine Parse messages share one round trip.
        let (append_pages, append_pages_wake, create, create_wake, compact, compact_wake, forget, set_wake, head) = tokio::try_join!(
            client.prepare(APPEND_PAGES),
            client.prepare(APPEND_PAGES_WAKE),
            client.prepare(CREATE),
            client.prepare(CREATE_WAKE),
            client.prepare(COMPACT),
            client.prepare(COMPACT_WAKE),
            client.prepare(FORGET),
            client.prepare(SET_WAKE),
            client.prepare(READ_HEAD),
        )?;
        Ok(Statements {
            append_pages,
            append_pages_wake,
            create,
            create_wake,
            compact,
            compact_wake,
            forget,
            set_wake,
            head,
        })
    }
}

impl Pump {
    async fn connect(&mut self) -> Result<(), StoreError> {
        let mut store = Store::connect(&self.url, "foundry-commit-log", self.timeout).await?;
        store.migrate().await?;
        let statements = Statements::prepare(store.client()).await.map_err(StoreError::from)?;
        self.store = Some((store, statements));
        Ok(())
    }

    /// Takes what is queued (the queue is shared with the other pumps: whoever holds it waits for the next
    /// request) and writes it, until the log is dropped.
    async fn run(mut self, queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Request>>>) {
        loop {
            let mut writes = Vec::new();
            let mut reads = Vec::new();
            {
                let mut rx = queue.lock().await;
                let Some(first) = rx.recv().await else { return };
                let mut next = Some(first);
                while let Some(req) = next.take() {
                    match req {
                        Request::Write(w, reply) => writes.push((w, reply)),
                        other => reads.push(other),
                    }
                    if writes.len() < MAX_BATCH {
                        next = rx.try_recv().ok();
                    }
                }
            }
            if self.store.is_none() {
                if let Err(e) = self.connect().await {
                    let failed = LogError::Unavailable(e.to_string());
                    self.stats.failed.fetch_add(writes.len() as u64, Ordering::Relaxed);
                    for (_, reply) in writes {
                        let _ = reply.send(Err(failed.clone()));
                    }
                    for r in reads {
                        fail_read(r, &failed);
                    }
                    continue;
                }
            }
            if !writes.is_empty() {
                self.write_batch(writes).await;
            }
            self.read_heads(&mut reads).await;
            for r in reads {
                self.read(r).await;
            }
        }
    }

    /// One transaction for the whole batch; each write learns whether its fence held. The statements run in shard
    /// order, so the lease rows are locked in the order renewals lock them (no deadlock); a deadlock or
    /// serialization failure all the same (another client) is retried once.
    async fn write_batch(&mut self, mut writes: Vec<(Write, Reply<()>)>) {
        let Some((store, statements)) = self.store.as_ref() else { return };
        writes.sort_by_key(|(w, _)| w.actor.shard);
        let started = Instant::now();
        let client = store.client();
        let mut res = tokio::time::timeout(self.timeout, run_writes(client, statements, &self.owner, &writes)).await;
        let retry = matches!(&res, Ok(Err(e)) if e.code().is_some_and(|c| {
            *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
        }));
        if retry {
            res = tokio::time::timeout(self.timeout, run_writes(client, statements, &self.owner, &writes)).await;
        }
        let outcome = match res {
            Ok(Ok(applied)) => Ok(applied),
            Ok(Err(e)) => Err(LogError::Unavailable(pg_error(&e))),
            Err(_) => Err(LogError::Unavailable(format!("no answer from PostgreSQL within {:?}", self.timeout))),
        };
        if outcome.is_err() {
            // The connection may be mid-statement or broken: start over on a new one.
            self.store = None;
        }
        let stats = &self.stats;
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.batch_micros.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
        match outcome {
            Ok(applied) => {
                for ((w, reply), ok) in writes.into_iter().zip(applied) {
                    let answer = if ok {
                        if !matches!(w.op, WriteOp::Wake) {
                            stats.appends.fetch_add(1, Ordering::Relaxed);
                        }
                        if w.wake.is_some() {
                            stats.wake_writes.fetch_add(1, Ordering::Relaxed);
                        }
                        if matches!(w.op, WriteOp::Wake) {
                            stats.wake_only.fetch_add(1, Ordering::Relaxed);
                        }
                        stats.bytes.fetch_add(w.op.len() as u64, Ordering::Relaxed);
                        Ok(())
                    } else {
                        stats.fenced.fetch_add(1, Ordering::Relaxed);
                        Err(LogError::Fenced(w.actor.shard))
                    };
                    let _ = reply.send(answer);
                }
            }
            Err(e) => {
                stats.failed.fetch_add(writes.len() as u64, Ordering::Relaxed);
                for (_, reply) in writes {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// Answers the head reads among `reads` (taking them out), pipelined: one round trip for all of them.
    async fn read_heads(&mut self, reads: &mut Vec<Request>) {
        let (heads, others): (Vec<Request>, Vec<Request>) =
            std::mem::take(reads).into_iter().partition(|r| matches!(r, Request::Head(..)));
        *reads = others;
        let Some((store, statements)) = self.store.as_ref() else {
            let failed = LogError::Unavailable("no connection to PostgreSQL".into());
            return heads.into_iter().for_each(|r| fail_read(r, &failed));
        };
        let timeout = self.timeout;
        let answers = heads.into_iter().filter_map(|r| match r {
            Request::Head(actor, reply) => Some(async move {
                let res = tokio::time::timeout(timeout, read_head(store, statements, &actor)).await;
                let answer = res
                    .map_err(|_| LogError::Unavailable(format!("no answer from PostgreSQL within {timeout:?}")))
                    .and_then(|r| r.map_err(unavailable));
                let failed = answer.is_err();
                let _ = reply.send(answer);
                failed
            }),
            _ => None,
        });
        if join_all(answers).await.into_iter().any(|failed| failed) {
            self.store = None;
        }
    }

    async fn read(&mut self, req: Request) {
        let Some((store, _)) = self.store.as_mut() else { return };
        let timeout = self.timeout;
        let slow = || LogError::Unavailable(format!("no answer from PostgreSQL within {timeout:?}"));
        match req {
            Request::Head(actor, reply) => {
                // Taken out by `read_heads`; answered the same way if one gets here.
                let _ = reply.send(Err(LogError::Unavailable(format!("head of {:?} read out of turn", actor.key))));
            }
            Request::History(actor, reply) => {
                let res = tokio::time::timeout(timeout, read_history(store, &actor)).await;
                let answer = res.map_err(|_| slow()).and_then(|r| r);
                if matches!(answer, Err(LogError::Unavailable(_))) {
                    self.store = None;
                }
                let _ = reply.send(answer);
            }
            Request::Wakes(shards, reply) => {
                let res = tokio::time::timeout(timeout, read_wakes(store, &shards)).await;
                let answer = res.map_err(|_| slow()).and_then(|r| r);
                if matches!(answer, Err(LogError::Unavailable(_))) {
                    self.store = None;
                }
                let _ = reply.send(answer);
            }
            Request::Write(_, reply) => {
                let _ = reply.send(Err(LogError::Unavailable("a write was routed as a read".into())));
            }
        }
    }
}

impl WriteOp {
    fn len(&self) -> usize {
        match self {
            WriteOp::Pages(b) | WriteOp::Snapshot(b) => b.len(),
            WriteOp::Forget | WriteOp::Wake => 0,
        }
    }
}

fn fail_read(req: Request, e: &LogError) {
    match req {
        Request::Head(_, reply) => drop(reply.send(Err(e.clone()))),
        Request::History(_, reply) => drop(reply.send(Err(e.clone()))),
        Request::Wakes(_, reply) => drop(reply.send(Err(e.clone()))),
        Request::Write(_, reply) => drop(reply.send(Err(e.clone()))),
    }
}

fn unavailable(e: tokio_postgres::Error) -> LogError {
    LogError::Unavailable(pg_error(&e))
}

/// The server's own message when there is one (`Display` of a database error says only "db error").
fn pg_error(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.code().code(), db.message()),
        None => e.to_string(),
    }
}

fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The batch as one transaction: `BEGIN` and each write's prepared statement sent in one pipeline (polled together,
/// so they leave in that order), then `COMMIT` once they have answered — two round trips. `COMMIT` is not pipelined
/// with them on purpose: bytes held up on the way (a stalled network) and delivered after this node gave up on the
/// batch must not commit it; without their `COMMIT`, Postgres rolls them back when the dropped connection ends, or,
/// when it cannot see the connection end, once the transaction idled past the call timeout (`Store::connect`'s
/// `idle_in_transaction_session_timeout`). Whether each write applied (its fence held).
async fn run_writes(
    client: &tokio_postgres::Client,
    st: &Statements,
    owner: &str,
    writes: &[(Write, Reply<()>)],
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let statements = writes.iter().map(|(w, _)| async move {
        let shard = i32::from(w.actor.shard.0);
        let (epoch, txid) = (as_i64(w.epoch.0), as_i64(w.txid));
        let (kind, key) = (w.actor.kind, w.actor.key.as_str());
        // `$8` of the `_WAKE` statements: the new wake time, `NULL` to clear it.
        let wake: Option<i64> = w.wake.flatten();
        let count = |row: tokio_postgres::Row| row.try_get::<_, i64>(0).map(|n| n == 1);
        match (&w.op, w.wake.is_some()) {
            (WriteOp::Pages(b), false) => {
                client.execute(&st.append_pages, &[&shard, &owner, &epoch, &kind, &key, &txid, b]).await.map(|n| n == 1)
            }
            (WriteOp::Pages(b), true) => {
                let p: [&(dyn ToSql + Sync); 8] = [&shard, &owner, &epoch, &kind, &key, &txid, b, &wake];
                client.execute(&st.append_pages_wake, &p).await.map(|n| n == 1)
            }
            (WriteOp::Snapshot(b), false) if w.txid == 1 => {
                client.execute(&st.create, &[&shard, &owner, &epoch, &kind, &key, &txid, b]).await.map(|n| n == 1)
            }
            (WriteOp::Snapshot(b), true) if w.txid == 1 => {
                let p: [&(dyn ToSql + Sync); 8] = [&shard, &owner, &epoch, &kind, &key, &txid, b, &wake];
                client.execute(&st.create_wake, &p).await.map(|n| n == 1)
            }
            (WriteOp::Snapshot(b), false) => {
                let p: [&(dyn ToSql + Sync); 7] = [&shard, &owner, &epoch, &kind, &key, &txid, b];
                client.query_one(&st.compact, &p).await.and_then(count)
            }
            (WriteOp::Snapshot(b), true) => {
                let p: [&(dyn ToSql + Sync); 8] = [&shard, &owner, &epoch, &kind, &key, &txid, b, &wake];
                client.query_one(&st.compact_wake, &p).await.and_then(count)
            }
            (WriteOp::Forget, _) => {
                let p: [&(dyn ToSql + Sync); 6] = [&shard, &owner, &epoch, &kind, &key, &txid];
                client.query_one(&st.forget, &p).await.and_then(count)
            }
            (WriteOp::Wake, _) => {
                let p: [&(dyn ToSql + Sync); 7] = [&shard, &owner, &epoch, &kind, &key, &txid, &wake];
                client.query_one(&st.set_wake, &p).await.and_then(count)
            }
        }
    });
    let (begun, applied) = futures_util::future::join(client.batch_execute("BEGIN"), join_all(statements)).await;
    let applied = begun.and_then(|()| applied.into_iter().collect::<Result<Vec<bool>, _>>());
    match applied {
        Ok(applied) => {
            client.batch_execute("COMMIT").await?;
            Ok(applied)
        }
        Err(e) => {
            // Ready for a retry on this connection (a deadlock): the aborted transaction ends here.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

async fn read_head(
    store: &Store,
    statements: &Statements,
    actor: &LogKey,
) -> Result<Option<Head>, tokio_postgres::Error> {
    let row = store.client().query_opt(&statements.head, &[&actor.kind, &actor.key]).await?;
    row.map(|r| {
        Ok(Head {
            txid: r.try_get::<_, i64>(0)? as u64,
            snapshot_txid: r.try_get::<_, i64>(1)? as u64,
            log_bytes: r.try_get::<_, i64>(2)? as u64,
            wake_at_ms: r.try_get(3)?,
        })
    })
    .transpose()
}

/// The head, its snapshot and the entries after it, read in one repeatable-read transaction (one consistent view).
async fn read_history(store: &mut Store, actor: &LogKey) -> Result<Option<History>, LogError> {
    let tx = store
        .client_mut()
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .await
        .map_err(unavailable)?;
    let key = (&actor.kind, &actor.key);
    let head = tx
        .query_opt("SELECT txid, snapshot_txid FROM fdy_actor_head WHERE kind = $1 AND key = $2", &[key.0, key.1])
        .await
        .map_err(unavailable)?;
    let Some(head) = head else { return Ok(None) };
    let (txid, snapshot_txid): (i64, i64) =
        (head.try_get(0).map_err(unavailable)?, head.try_get(1).map_err(unavailable)?);
    let snapshot = tx
        .query_opt(
            "SELECT bytes FROM fdy_actor_snapshot WHERE kind = $1 AND key = $2 AND txid = $3",
            &[key.0, key.1, &snapshot_txid],
        )
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            LogError::Corrupt(format!("{} {:?}: snapshot {snapshot_txid} is missing", actor.kind, actor.key))
        })?
        .try_get::<_, Vec<u8>>(0)
        .map_err(unavailable)?;
    let rows = tx
        .query(
            "SELECT txid, frames FROM fdy_actor_log WHERE kind = $1 AND key = $2 AND txid > $3 AND txid <= $4
              ORDER BY txid",
            &[key.0, key.1, &snapshot_txid, &txid],
        )
        .await
        .map_err(unavailable)?;
    let mut entries = Vec::with_capacity(rows.len());
    for r in rows {
        entries.push((
            r.try_get::<_, i64>(0).map_err(unavailable)? as u64,
            r.try_get::<_, Vec<u8>>(1).map_err(unavailable)?,
        ));
    }
    if entries.len() as i64 != txid - snapshot_txid {
        return Err(LogError::Corrupt(format!(
            "{} {:?}: {} entries after snapshot {snapshot_txid}, head {txid}",
            actor.kind,
            actor.key,
            entries.len()
        )));
    }
    tx.commit().await.map_err(unavailable)?;
    Ok(Some(History { snapshot_txid: snapshot_txid as u64, snapshot, entries }))
}

/// The wake states of `shards`' actors, soonest first.
async fn read_wakes(store: &Store, shards: &[ShardId]) -> Result<Vec<Wake>, LogError> {
    let shards: Vec<i32> = shards.iter().map(|s| i32::from(s.0)).collect();
    let rows = store
        .client()
        .query(
            "SELECT kind, key, wake_at_ms FROM fdy_actor_wake WHERE shard = ANY($1::int[]) ORDER BY wake_at_ms",
            &[&shards],
        )
        .await
        .map_err(unavailable)?;
    rows.into_iter()
        .map(|r| {
            Ok(Wake {
                kind: r.try_get(0).map_err(unavailable)?,
                key: r.try_get(1).map_err(unavailable)?,
                at_ms: r.try_get(2).map_err(unavailable)?,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_that_keep_the_wake_state_use_the_statements_without_it() {
        for plain in [APPEND_PAGES, CREATE, COMPACT] {
            assert!(!plain.contains("fdy_actor_wake") && !plain.contains("$8"), "{plain}");
        }
        for (plain, with_wake) in [(APPEND_PAGES, APPEND_PAGES_WAKE), (CREATE, CREATE_WAKE), (COMPACT, COMPACT_WAKE)] {
            assert!(
                with_wake.contains("INSERT INTO fdy_actor_wake") && with_wake.contains("DELETE FROM fdy_actor_wake")
            );
            // The same statement with the wake CTEs spliced in after `head`: nothing else differs.
            let spliced = with_wake.replace(wake_ctes!("$8"), "");
            assert_eq!(spliced, plain);
        }
        assert!(SET_WAKE.contains("$7::bigint") && !SET_WAKE.contains("$8"));
        assert!(FORGET.contains("DELETE FROM fdy_actor_wake"));
    }
}
