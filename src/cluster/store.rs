//! The PostgreSQL side of cluster ownership: the schema (`fdy_node`, `fdy_shard` with one row per shard,
//! `fdy_shard_history`, and the commit log's tables with its wake index `fdy_actor_wake`, whose statements are in
//! `log.rs`) applied by versioned migrations at startup, and the lease statements of the design (spec §4.1), each one
//! round trip on one connection.
//!
//! Postgres' `now()` is the only clock that decides expiry and liveness: nodes only send durations. A lease is a row
//! `(shard, owner, epoch, expires_at)`; `owner` is `<node id>/<boot id>`, so a restarted process can never renew what
//! its predecessor held, and every acquisition bumps the epoch, the fencing token later slices check in the same
//! transaction as a durable write.

use std::str::FromStr;
use std::time::{Duration, SystemTime};

use tokio::sync::OnceCell;
use tokio::task::JoinHandle;
use tokio_postgres::{Client, NoTls, Statement};

use super::Epoch;
use crate::runtime::{ShardId, SHARD_COUNT};

/// What a statement against the cluster's Postgres can fail with.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("PostgreSQL: {0}")]
    Query(#[from] tokio_postgres::Error),
    #[error("no answer from PostgreSQL within {0:?}")]
    Timeout(Duration),
    /// The database was migrated by a newer foundry: this build does not know its schema.
    #[error("the cluster schema is at version {found}; this build knows up to {known}")]
    SchemaTooNew { found: i32, known: i32 },
    /// `fdy_shard` must hold exactly one row per shard; anything else is not a foundry cluster database.
    #[error("fdy_shard holds {found} rows, expected {SHARD_COUNT}")]
    ShardTable { found: i64 },
    #[error("PostgreSQL returned {0}")]
    Invalid(String),
    /// The connection string asks for TLS and its settings cannot be used (an unreadable `sslrootcert`, no roots).
    #[error("TLS to PostgreSQL: {0}")]
    Tls(String),
}

/// The schema, one entry per version. A version, once released, never changes: add a new one instead.
const MIGRATIONS: &[(i32, &str)] = &[
    (
        1,
        // 1,024 = SHARD_COUNT (asserted below). `epoch` counts acquisitions of the shard; `owner` and `expires_at` are
        // set and cleared together. The history's primary key makes "one owner per (shard, epoch)" a constraint; each
        // row also says whom the shard was taken from (`prev_owner` NULL: it was free or released) and when that lease
        // was due to expire, and when it was released, so an audit can check every handover from the table alone.
        "CREATE TABLE fdy_node (
         node_id text PRIMARY KEY,
         boot_id text NOT NULL,
         addr text,
         started_at timestamptz NOT NULL,
         heartbeat timestamptz NOT NULL
     );
     CREATE TABLE fdy_shard (
         shard int PRIMARY KEY CHECK (shard >= 0 AND shard < 1024),
         owner text,
         epoch bigint NOT NULL DEFAULT 0 CHECK (epoch >= 0),
         expires_at timestamptz,
         CHECK ((owner IS NULL) = (expires_at IS NULL))
     );
     INSERT INTO fdy_shard (shard) SELECT generate_series(0, 1023);
     CREATE INDEX fdy_shard_owner ON fdy_shard (owner);
     CREATE TABLE fdy_shard_history (
         shard int NOT NULL REFERENCES fdy_shard (shard),
         epoch bigint NOT NULL,
         owner text NOT NULL,
         acquired_at timestamptz NOT NULL,
         prev_owner text,
         prev_expires_at timestamptz,
         released_at timestamptz,
         PRIMARY KEY (shard, epoch)
     );",
    ),
    (
        2,
        // The commit log (spec §4.2-4.3): per actor, its head, the entries after its newest snapshot and that snapshot.
        // Every row says which epoch and owner wrote it, so an audit can map each commit to the lease it was fenced by.
        "CREATE TABLE fdy_actor_head (
         kind text NOT NULL,
         key text NOT NULL,
         shard int NOT NULL REFERENCES fdy_shard (shard),
         txid bigint NOT NULL CHECK (txid > 0),
         epoch bigint NOT NULL,
         snapshot_txid bigint NOT NULL CHECK (snapshot_txid > 0 AND snapshot_txid <= txid),
         log_bytes bigint NOT NULL DEFAULT 0,
         PRIMARY KEY (kind, key)
     );
     CREATE TABLE fdy_actor_log (
         kind text NOT NULL,
         key text NOT NULL,
         txid bigint NOT NULL,
         epoch bigint NOT NULL,
         owner text NOT NULL,
         frames bytea NOT NULL,
         appended_at timestamptz NOT NULL DEFAULT clock_timestamp(),
         PRIMARY KEY (kind, key, txid)
     );
     CREATE TABLE fdy_actor_snapshot (
         kind text NOT NULL,
         key text NOT NULL,
         txid bigint NOT NULL,
         epoch bigint NOT NULL,
         owner text NOT NULL,
         bytes bytea NOT NULL,
         taken_at timestamptz NOT NULL DEFAULT clock_timestamp(),
         PRIMARY KEY (kind, key, txid)
     );",
    ),
    (
        3,
        // The wake index (spec §4.3, the node-local recovery and due indexes in the store of record): the actors that
        // must run without a caller, and when (ms since the Unix epoch; 0: at once, undelivered outbox rows or owed
        // work). Written by the same fenced statement as the entry that changed it, so it never disagrees with the
        // log; a node gaining a shard reads that shard's rows.
        "CREATE TABLE fdy_actor_wake (
         kind text NOT NULL,
         key text NOT NULL,
         shard int NOT NULL REFERENCES fdy_shard (shard),
         wake_at_ms bigint NOT NULL,
         PRIMARY KEY (kind, key)
     );
     CREATE INDEX fdy_actor_wake_shard ON fdy_actor_wake (shard, wake_at_ms);",
    ),
];

const _: () = assert!(SHARD_COUNT == 1024, "migration 1 creates 1,024 shard rows");

/// Serialises concurrent migrations of nodes starting together (`CREATE TABLE IF NOT EXISTS` alone races on the
/// catalog): an arbitrary constant, "fdy" + schema.
const MIGRATION_LOCK: i64 = 0x6664_795f_7363_6865;

/// Acquire the wanted shards that are free or expired: epoch + 1, a new expiry from Postgres' clock, and a history
/// row, in one statement. The history's times are `clock_timestamp()`, taken once the rows are locked: `now()` is the
/// statement's start, which for an acquisition that waited for a release's lock is earlier than the release (CI saw
/// an acquisition dated before the release it waited for). The rows are locked in shard order (so two acquiring nodes cannot deadlock); a node that
/// waited for another's lock re-checks the condition against the row the other left (Read Committed), so of two
/// nodes racing for a shard only one gets it.
const ACQUIRE: &str = "WITH prev AS (
        SELECT shard, owner, expires_at FROM fdy_shard
         WHERE shard = ANY($2) AND (owner IS NULL OR expires_at < now())
         ORDER BY shard FOR UPDATE),
     got AS (
        UPDATE fdy_shard s SET owner = $1, epoch = s.epoch + 1, expires_at = now() + make_interval(secs => $3)
          FROM prev WHERE s.shard = prev.shard
        RETURNING s.shard, s.epoch, prev.owner AS prev_owner, prev.expires_at AS prev_expires_at),
     hist AS (
        INSERT INTO fdy_shard_history (shard, epoch, owner, acquired_at, prev_owner, prev_expires_at)
        SELECT shard, epoch, $1, clock_timestamp(), prev_owner, prev_expires_at FROM got)
     SELECT shard, epoch, now() FROM got ORDER BY shard";

/// Renew every lease the node holds, in one statement: only rows still held by this owner at this epoch and not yet
/// expired (an expired lease is lost, even if nobody took it yet; getting it back means a new epoch).
///
/// Rows are locked in shard order first, as every other statement that locks several lease rows does (acquire, and
/// the commit log's appends, which lock theirs `FOR SHARE` in shard order): two statements locking the same rows in
/// different orders deadlock.
const RENEW: &str = "WITH mine AS (
        SELECT s.shard FROM fdy_shard s
          JOIN unnest($2::int[], $3::bigint[]) AS m (shard, epoch) ON s.shard = m.shard AND s.epoch = m.epoch
         WHERE s.owner = $1 AND s.expires_at > now()
         ORDER BY s.shard FOR UPDATE OF s)
     UPDATE fdy_shard s SET expires_at = now() + make_interval(secs => $4) FROM mine WHERE s.shard = mine.shard
    RETURNING s.shard, s.epoch";

/// Give leases back (after draining), epoch-checked: a release from a node that lost the lease changes nothing. The
/// history row of the released epoch records when.
const RELEASE: &str = "WITH mine AS (
        SELECT s.shard FROM fdy_shard s
          JOIN unnest($2::int[], $3::bigint[]) AS m (shard, epoch) ON s.shard = m.shard AND s.epoch = m.epoch
         WHERE s.owner = $1
         ORDER BY s.shard FOR UPDATE OF s),
     rel AS (
        UPDATE fdy_shard s SET owner = NULL, expires_at = NULL FROM mine WHERE s.shard = mine.shard
        RETURNING s.shard, s.epoch),
     hist AS (
        UPDATE fdy_shard_history h SET released_at = clock_timestamp() FROM rel
         WHERE h.shard = rel.shard AND h.epoch = rel.epoch)
     SELECT shard, epoch FROM rel ORDER BY shard";

/// Record this node's heartbeat (only if the row still names this boot) and list the live nodes, in one round trip.
/// The list reads the snapshot before the update, so the caller adds itself when the heartbeat counted.
const HEARTBEAT: &str = "WITH beat AS (
        UPDATE fdy_node SET heartbeat = now(), addr = $3 WHERE node_id = $1 AND boot_id = $2 RETURNING 1)
     SELECT (SELECT count(*) FROM beat),
            ARRAY(SELECT node_id FROM fdy_node WHERE heartbeat > now() - make_interval(secs => $4) ORDER BY node_id)";

/// A connection to the cluster's Postgres. The lease statements are prepared on first use (after the migration
/// that creates their tables), then reused: each call is one round trip.
pub struct Store {
    client: Client,
    driver: JoinHandle<()>,
    prepared: OnceCell<Prepared>,
}

struct Prepared {
    acquire: Statement,
    renew: Statement,
    release: Statement,
    heartbeat: Statement,
}

impl Drop for Store {
    fn drop(&mut self) {
        // The driver owns the socket: stop it now rather than when a stuck peer finally answers.
        self.driver.abort();
    }
}

/// One row of `fdy_shard`, as read by [`Store::shards`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardRow {
    pub shard: ShardId,
    pub owner: Option<String>,
    pub epoch: Epoch,
    pub expires_at: Option<SystemTime>,
    /// `expires_at > now()` on Postgres' clock when read.
    pub live: bool,
}

/// One acquisition, as recorded in `fdy_shard_history`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub shard: ShardId,
    pub epoch: Epoch,
    pub owner: String,
    pub acquired_at: SystemTime,
    /// Whom the shard was taken from after their lease expired; `None` when it was free (never owned, or released).
    pub prev_owner: Option<String>,
    /// When the lease taken over was due to expire (`None` with `prev_owner`).
    pub prev_expires_at: Option<SystemTime>,
    /// When this epoch's owner released the shard (`None`: still held, or it expired or was taken over).
    pub released_at: Option<SystemTime>,
}

/// One row of `fdy_node`, as read by [`Store::nodes`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    pub node_id: String,
    pub boot_id: String,
    pub addr: Option<String>,
    pub started_at: SystemTime,
    pub heartbeat: SystemTime,
}

/// A lease won by [`Store::acquire`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acquired {
    pub shard: ShardId,
    pub epoch: Epoch,
    /// Postgres' `now()` of the acquisition (also in the history row).
    pub at: SystemTime,
}

/// Runs a connection until it ends.
fn drive<F>(connection: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "cluster store connection ended");
        }
    })
}

impl Store {
    /// Connects within `timeout`, over TLS when the connection string says `sslmode=require` (or `verify-*`; see
    /// `tls.rs`). Every statement on this connection is cancelled by the server after `timeout` too, so a lock wait
    /// cannot outlive the caller's patience.
    pub async fn connect(url: &str, application: &str, timeout: Duration) -> Result<Store, StoreError> {
        let tls = super::tls::PgTls::parse(url);
        let mut config = tokio_postgres::Config::from_str(&tls.url).map_err(StoreError::Connect)?;
        // `idle_in_transaction_session_timeout`: a commit-log batch whose answers never reach this node (a network
        // holding every byte) never gets its `COMMIT` nor its `ROLLBACK`, and PostgreSQL does not notice a peer
        // that went silent. Left open, its transaction would keep the `FOR SHARE` lock its fence took on the
        // shard's lease row, and the next owner's acquisition would wait behind it until the network healed —
        // past the lease. PostgreSQL ends it instead once it has idled as long as this node would have waited.
        let ms = timeout.as_millis().max(1);
        let options = format!(
            "{} -c statement_timeout={ms} -c idle_in_transaction_session_timeout={ms}",
            config.get_options().unwrap_or_default()
        );
        config.application_name(application).connect_timeout(timeout).options(options.trim());
        let connector = if tls.tls { Some(super::tls::PgTls::connector(&tls).map_err(StoreError::Tls)?) } else { None };
        let connect = async {
            let (client, driver) = match connector {
                None => {
                    let (client, connection) = config.connect(NoTls).await.map_err(StoreError::Connect)?;
                    (client, drive(connection))
                }
                Some(connector) => {
                    let (client, connection) = config.connect(connector).await.map_err(StoreError::Connect)?;
                    (client, drive(connection))
                }
            };
            Ok(Store { client, driver, prepared: OnceCell::new() })
        };
        tokio::time::timeout(timeout, connect).await.map_err(|_| StoreError::Timeout(timeout))?
    }

    /// The connection itself, for the commit log's statements (`log.rs`).
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn client_mut(&mut self) -> &mut Client {
        &mut self.client
    }

    async fn prepared(&self) -> Result<&Prepared, StoreError> {
        let c = &self.client;
        let prepared = self
            .prepared
            .get_or_try_init(|| async {
                // Sent together, so the four preparations cost one round trip, not four.
                let (acquire, renew, release, heartbeat) =
                    tokio::try_join!(c.prepare(ACQUIRE), c.prepare(RENEW), c.prepare(RELEASE), c.prepare(HEARTBEAT))?;
                Ok::<_, tokio_postgres::Error>(Prepared { acquire, renew, release, heartbeat })
            })
            .await?;
        Ok(prepared)
    }

    /// Brings the schema to this build's version (idempotent; concurrent callers wait for each other) and checks
    /// the shard table. Run once at startup, before anything else.
    pub async fn migrate(&mut self) -> Result<(), StoreError> {
        let known = MIGRATIONS.last().map_or(0, |(v, _)| *v);
        let tx = self.client.transaction().await?;
        tx.batch_execute(&format!(
            "SELECT pg_advisory_xact_lock({MIGRATION_LOCK});
             CREATE TABLE IF NOT EXISTS fdy_schema_version (
                 version int PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        ))
        .await?;
        let found: i32 =
            tx.query_one("SELECT coalesce(max(version), 0) FROM fdy_schema_version", &[]).await?.try_get(0)?;
        if found > known {
            return Err(StoreError::SchemaTooNew { found, known });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > found) {
            tx.batch_execute(sql).await?;
            tx.execute("INSERT INTO fdy_schema_version (version) VALUES ($1)", &[version]).await?;
        }
        let rows: i64 = tx.query_one("SELECT count(*) FROM fdy_shard", &[]).await?.try_get(0)?;
        if rows != i64::from(SHARD_COUNT) {
            return Err(StoreError::ShardTable { found: rows });
        }
        tx.commit().await?;
        Ok(())
    }

    /// Registers this boot of the node (a new boot takes the node's row over: a predecessor still running finds
    /// itself superseded at its next heartbeat).
    pub async fn register(&self, node_id: &str, boot_id: &str, addr: Option<&str>) -> Result<(), StoreError> {
        self.client
            .execute(
                "INSERT INTO fdy_node (node_id, boot_id, addr, started_at, heartbeat) VALUES ($1, $2, $3, now(), now())
                 ON CONFLICT (node_id) DO UPDATE
                 SET boot_id = EXCLUDED.boot_id, addr = EXCLUDED.addr, started_at = now(), heartbeat = now()",
                &[&node_id, &boot_id, &addr],
            )
            .await?;
        Ok(())
    }

    /// Heartbeat, then the live nodes (heartbeat within `live_for`, this one included), sorted. `None` when the
    /// node's row names another boot: a newer process with this node id has started, and this one must stop.
    pub async fn heartbeat(
        &self,
        node_id: &str,
        boot_id: &str,
        addr: Option<&str>,
        live_for: Duration,
    ) -> Result<Option<Vec<String>>, StoreError> {
        let row = self
            .client
            .query_one(&self.prepared().await?.heartbeat, &[&node_id, &boot_id, &addr, &live_for.as_secs_f64()])
            .await?;
        let beat: i64 = row.try_get(0)?;
        if beat == 0 {
            return Ok(None);
        }
        let mut live: Vec<String> = row.try_get(1)?;
        if let Err(at) = live.binary_search_by(|n| n.as_str().cmp(node_id)) {
            live.insert(at, node_id.to_owned());
        }
        Ok(Some(live))
    }

    /// Deletes the rows of nodes whose last heartbeat is older than `dead_for` (they died without leaving), so the
    /// node list does not grow with every crashed boot. Such a node, should it ever come back, finds its row gone at
    /// its next heartbeat and stops as superseded; its leases lapsed long before. Answers how many rows went.
    pub async fn prune_nodes(&self, dead_for: Duration) -> Result<u64, StoreError> {
        let sql = "DELETE FROM fdy_node WHERE heartbeat < now() - make_interval(secs => $1)";
        Ok(self.client.execute(sql, &[&dead_for.as_secs_f64()]).await?)
    }

    /// Removes this boot's node row (graceful stop): other nodes stop counting it at their next tick.
    pub async fn deregister(&self, node_id: &str, boot_id: &str) -> Result<(), StoreError> {
        self.client.execute("DELETE FROM fdy_node WHERE node_id = $1 AND boot_id = $2", &[&node_id, &boot_id]).await?;
        Ok(())
    }

    /// Acquires those of `wanted` that are free or expired, for `ttl` from Postgres' `now()`.
    pub async fn acquire(&self, owner: &str, wanted: &[ShardId], ttl: Duration) -> Result<Vec<Acquired>, StoreError> {
        let shards: Vec<i32> = wanted.iter().map(|s| i32::from(s.0)).collect();
        let rows = self.client.query(&self.prepared().await?.acquire, &[&owner, &shards, &ttl.as_secs_f64()]).await?;
        rows.iter()
            .map(|r| Ok(Acquired { shard: shard(r.try_get(0)?)?, epoch: epoch(r.try_get(1)?)?, at: r.try_get(2)? }))
            .collect()
    }

    /// Extends `held` leases by `ttl` from Postgres' `now()`; answers those still held (the others are lost).
    pub async fn renew(
        &self,
        owner: &str,
        held: &[(ShardId, Epoch)],
        ttl: Duration,
    ) -> Result<Vec<(ShardId, Epoch)>, StoreError> {
        let (shards, epochs) = columns(held)?;
        let rows =
            self.client.query(&self.prepared().await?.renew, &[&owner, &shards, &epochs, &ttl.as_secs_f64()]).await?;
        pairs(&rows)
    }

    /// Releases `held` leases; answers those released (a lease this owner no longer holds at that epoch is not).
    pub async fn release(&self, owner: &str, held: &[(ShardId, Epoch)]) -> Result<Vec<(ShardId, Epoch)>, StoreError> {
        let (shards, epochs) = columns(held)?;
        let rows = self.client.query(&self.prepared().await?.release, &[&owner, &shards, &epochs]).await?;
        pairs(&rows)
    }

    /// The whole shard table, by shard.
    pub async fn shards(&self) -> Result<Vec<ShardRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT shard, owner, epoch, expires_at, coalesce(expires_at > now(), false) FROM fdy_shard
                 ORDER BY shard",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(ShardRow {
                    shard: shard(r.try_get(0)?)?,
                    owner: r.try_get(1)?,
                    epoch: epoch(r.try_get(2)?)?,
                    expires_at: r.try_get(3)?,
                    live: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Every registered node (live or not), by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRow>, StoreError> {
        let rows = self
            .client
            .query("SELECT node_id, boot_id, addr, started_at, heartbeat FROM fdy_node ORDER BY node_id", &[])
            .await?;
        rows.iter()
            .map(|r| {
                Ok(NodeRow {
                    node_id: r.try_get(0)?,
                    boot_id: r.try_get(1)?,
                    addr: r.try_get(2)?,
                    started_at: r.try_get(3)?,
                    heartbeat: r.try_get(4)?,
                })
            })
            .collect()
    }

    /// Every acquisition recorded, by shard then epoch.
    pub async fn history(&self) -> Result<Vec<HistoryRow>, StoreError> {
        let rows = self
            .client
            .query(
                "SELECT shard, epoch, owner, acquired_at, prev_owner, prev_expires_at, released_at
                   FROM fdy_shard_history ORDER BY shard, epoch",
                &[],
            )
            .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    shard: shard(r.try_get(0)?)?,
                    epoch: epoch(r.try_get(1)?)?,
                    owner: r.try_get(2)?,
                    acquired_at: r.try_get(3)?,
                    prev_owner: r.try_get(4)?,
                    prev_expires_at: r.try_get(5)?,
                    released_at: r.try_get(6)?,
                })
            })
            .collect()
    }
}

fn shard(v: i32) -> Result<ShardId, StoreError> {
    u16::try_from(v)
        .ok()
        .filter(|s| *s < SHARD_COUNT)
        .map(ShardId)
        .ok_or_else(|| StoreError::Invalid(format!("shard {v} out of range")))
}

fn epoch(v: i64) -> Result<Epoch, StoreError> {
    u64::try_from(v).map(Epoch).map_err(|_| StoreError::Invalid(format!("negative epoch {v}")))
}

fn columns(held: &[(ShardId, Epoch)]) -> Result<(Vec<i32>, Vec<i64>), StoreError> {
    let shards = held.iter().map(|(s, _)| i32::from(s.0)).collect();
    let epochs = held
        .iter()
        .map(|(_, e)| i64::try_from(e.0).map_err(|_| StoreError::Invalid(format!("epoch {} out of range", e.0))))
        .collect::<Result<_, _>>()?;
    Ok((shards, epochs))
}

fn pairs(rows: &[tokio_postgres::Row]) -> Result<Vec<(ShardId, Epoch)>, StoreError> {
    rows.iter().map(|r| Ok((shard(r.try_get(0)?)?, epoch(r.try_get(1)?)?))).collect()
}
