//! The runtime inspector: a read-only view of a running runtime for operators, through the type-erased
//! `KindHandle` (so it knows no domain). Per kind: live actors and counters. Per live actor: calls in flight (its
//! mailbox depth), idle time, topic versions with subscriber counts, outbox rows pending and dead letters, durable
//! schedules. One actor: its tables with row counts, a paged table dump, read-only SQL (`sql.rs`) and its trace of
//! recent messages (`trace.rs`, a bounded ring in the actor's `Core`).
//!
//! Live actor files are locked by their connection, so an actor's data is read through a message the actor handles
//! itself (`actor/inspect.rs`): counts on its own connection, and for tables and SQL a serialised copy of its
//! database that is then opened, read-only and in memory, on the blocking pool. Looking at an actor is not activity.
//! Listing never activates anything; inspecting one actor activates it if it exists on disk (like any call: its
//! `on_wake` hook runs, its schedules are armed, its outbox resumes) and never creates one (an unknown key is
//! `CallError::NotFound`); its trace never activates it (a passivated actor has none).

mod sql;
mod trace;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::actor::{Probe, Probed};
use super::error::CallError;
use super::registry::KindHandle;
use super::system::Shared;

pub use sql::MAX_SQL_BYTES;
pub(crate) use trace::Trace;
pub use trace::{TraceEntry, TraceKind, TraceOutcome, TraceView};

/// Live actors listed per page by default, and at most.
pub const DEFAULT_ACTORS: usize = 100;
pub const MAX_ACTORS: usize = 500;
/// Rows of a table dump by default, and at most.
pub const DEFAULT_DUMP_ROWS: usize = 50;
pub const MAX_DUMP_ROWS: usize = 500;
/// Rows a query answers by default, and at most.
pub const DEFAULT_QUERY_ROWS: usize = 100;
pub const MAX_QUERY_ROWS: usize = 1_000;
/// How long a query may run by default, and at most.
pub const DEFAULT_QUERY_TIME: Duration = Duration::from_secs(2);
pub const MAX_QUERY_TIME: Duration = Duration::from_secs(10);
/// Largest database copied for tables, dumps and queries (the copy is held in memory twice while it is opened).
pub const MAX_DATABASE_BYTES: u64 = 256 * 1024 * 1024;
/// How long a listed actor has to answer before it is listed without its state.
const LIST_ANSWER_WAIT: Duration = Duration::from_secs(1);
/// How long one actor has to answer a question about itself (activation included) before `CallError::Timeout`.
const ASK_WAIT: Duration = Duration::from_secs(10);

/// Why an inspection was refused (inside `CallError::Handler`; the other `CallError`s mean what they do for any call).
#[derive(Debug, Clone, thiserror::Error)]
pub enum InspectError {
    #[error("no actor kind {0:?} is registered")]
    UnknownKind(String),
    #[error("key {0}")]
    InvalidKey(String),
    #[error("{0}")]
    InvalidLimit(String),
    #[error("no table {0:?} in this actor's database")]
    UnknownTable(String),
    #[error("the SQL does not compile: {0}")]
    InvalidSql(String),
    #[error("{0}")]
    NotReadOnly(String),
    #[error("the query ran longer than {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the query failed: {0}")]
    QueryFailed(String),
    #[error("the database is {bytes} bytes, more than the {max} the inspector copies")]
    TooLarge { bytes: u64, max: u64 },
    /// Reading the actor's own database or opening its copy failed (a storage problem, logged by the caller).
    #[error("reading the database failed: {0}")]
    Snapshot(String),
}

/// Result of an inspection: the `CallError`s of any call plus [`InspectError`] as the handler's error.
pub type InspectResult<T> = Result<T, CallError<InspectError>>;

fn refused<T>(e: InspectError) -> InspectResult<T> {
    Err(CallError::Handler(e))
}

/// The runtime as a whole.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RuntimeView {
    pub live_actors: usize,
    /// Most actors open at once (beyond it, the least recently used idle ones passivate).
    pub max_live: usize,
    /// Topic channels with subscribers.
    pub topic_channels: usize,
    /// Actors listed in the due index (actors with durable schedules).
    pub scheduled_actors: i64,
    /// Messages each actor's trace keeps (0: off).
    pub trace_size: usize,
    /// Every registered kind, by name.
    pub kinds: Vec<KindView>,
}

/// One actor kind: its live actors, configuration and counters since the process started.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KindView {
    pub kind: String,
    pub live: usize,
    /// Calls in flight to this kind's live actors (the sum of their mailbox depths).
    pub mailbox_depth: u64,
    pub mailbox_capacity: usize,
    pub idle_timeout_ms: u64,
    pub max_batch: usize,
    pub group_commit: bool,
    pub activations: u64,
    pub activation_failures: u64,
    pub passivations: u64,
    pub restarts: u64,
    /// Actors destroyed (their database deleted).
    pub destroyed: u64,
    pub messages: u64,
    pub transactions: u64,
    pub committed_mutations: u64,
    pub schedules_fired: u64,
    pub schedule_failures: u64,
}

/// A page of a kind's live actors, by encoded key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorPage {
    pub kind: String,
    /// Live actors of the kind, all pages together.
    pub live: usize,
    pub actors: Vec<ActorSummary>,
    /// Pass as `after` for the next page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_after: Option<String>,
}

/// One live actor.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorSummary {
    /// The encoded key (what the actor's file and the routes name it by).
    pub key: String,
    /// Calls in flight: queued in its mailbox or running.
    pub mailbox_depth: u64,
    /// Its state; `null` when it did not answer within a second (busy, or passivating meanwhile).
    pub state: Option<ActorState>,
}

/// What a live actor reports of itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorState {
    /// Milliseconds since it last handled a message (to the runtime clock's 2 ms).
    pub idle_ms: u64,
    /// Every topic it has published, with its committed version and current subscribers.
    pub topics: Vec<TopicView>,
    /// Outbox rows not delivered yet.
    pub outbox_pending: i64,
    /// Outbox rows the receiver refused, kept in `_foundry_dead_letters`.
    pub dead_letters: i64,
    /// A delivery is on its way (or waiting to be retried).
    pub delivering: bool,
    /// Durable schedules set.
    pub schedules: i64,
    /// When the earliest is due (ms since the Unix epoch).
    pub next_due_ms: Option<i64>,
    /// Mutations waiting for their group commit.
    pub pending_mutations: usize,
    /// Background tasks started through its context and not finished.
    pub background_tasks: usize,
    /// Panics in a row (restarts back off after the first).
    pub consecutive_failures: u32,
    /// Entries in its trace.
    pub traced: usize,
}

/// One topic of an actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TopicView {
    pub topic: String,
    /// The committed version (0: subscribed to but never changed).
    pub version: u64,
    pub subscribers: usize,
}

/// One actor in full: its state and its database's tables.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActorDetail {
    pub kind: String,
    pub key: String,
    pub mailbox_depth: u64,
    pub state: ActorState,
    /// Size of its database (pages times page size).
    pub database_bytes: u64,
    pub tables: Vec<TableInfo>,
}

/// A table of an actor's database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableInfo {
    pub name: String,
    pub rows: i64,
    /// One of the runtime's own tables, present in every actor (`_foundry_*`: outbox, inbox, topics, schedules ...;
    /// and diesel's list of applied migrations).
    pub runtime: bool,
}

/// A page of one table's rows, in stored order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TableDump {
    pub table: String,
    /// The table's rows, all pages together.
    pub total: i64,
    pub offset: u64,
    pub columns: Vec<String>,
    /// Values as JSON: numbers, strings, `null`, a blob as `{"blob": "<hex>"}`.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Long values were cut (text after 4,096 characters, blobs after 1 KiB).
    pub truncated: bool,
}

/// The answer of a read-only query.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct QueryAnswer {
    pub columns: Vec<String>,
    /// Values as JSON: numbers, strings, `null`, a blob as `{"blob": "<hex>"}`.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// Rows were left out (beyond the limit, or past ~4 MiB of values) or long values were cut.
    pub truncated: bool,
}

/// A live actor as its registry sees it, without asking it.
pub(crate) struct LiveActor {
    pub key: String,
    pub in_flight: u64,
}

/// The inspector of one runtime (`Runtime::inspector`). Cheap to clone.
#[derive(Clone)]
pub struct Inspector {
    pub(crate) shared: Arc<Shared>,
}

impl Inspector {
    fn handle(&self, kind: &str) -> InspectResult<Arc<dyn KindHandle>> {
        match self.shared.handles().into_iter().find(|h| h.kind() == kind) {
            Some(h) => Ok(h),
            None => refused(InspectError::UnknownKind(kind.to_owned())),
        }
    }

    /// The runtime and every registered kind.
    pub fn runtime(&self) -> RuntimeView {
        let mut kinds: Vec<KindView> = self.shared.handles().iter().map(|h| kind_view(h.as_ref())).collect();
        kinds.sort_by(|a, b| a.kind.cmp(&b.kind));
        let config = &self.shared.config;
        RuntimeView {
            live_actors: kinds.iter().map(|k| k.live).sum(),
            max_live: config.max_live,
            topic_channels: self.shared.hub.channel_count(),
            scheduled_actors: self.shared.index.due_count().unwrap_or(-1),
            trace_size: config.trace_size,
            kinds,
        }
    }

    /// Live actors of `kind` whose encoded key sorts after `after`, at most `limit` ([`MAX_ACTORS`]), each asked
    /// for its state (never activating anything).
    pub async fn actors(&self, kind: &str, after: Option<&str>, limit: usize) -> InspectResult<ActorPage> {
        if !(1..=MAX_ACTORS).contains(&limit) {
            return refused(InspectError::InvalidLimit(format!("limit must be 1 to {MAX_ACTORS}")));
        }
        let handle = self.handle(kind)?;
        let mut live = handle.live_actors();
        let total = live.len();
        live.sort_by(|a, b| a.key.cmp(&b.key));
        let mut page: Vec<LiveActor> =
            live.into_iter().filter(|a| after.is_none_or(|after| a.key.as_str() > after)).collect();
        let next_after = (page.len() > limit).then(|| page[limit - 1].key.clone());
        page.truncate(limit);
        let subscribed = self.subscribers(kind, None);
        let states = futures_util::future::join_all(page.iter().map(|a| {
            let ask = handle.inspect(a.key.clone(), Probe::State, true);
            async move {
                match tokio::time::timeout(LIST_ANSWER_WAIT, ask).await {
                    Ok(Some(Ok(Probed::State(s)))) => Some(s),
                    _ => None,
                }
            }
        }))
        .await;
        let actors = page
            .into_iter()
            .zip(states)
            .map(|(a, state)| {
                let state = state.map(|s| with_subscribers(s, subscribed.get(&a.key)));
                ActorSummary { key: a.key, mailbox_depth: a.in_flight, state }
            })
            .collect();
        Ok(ActorPage { kind: kind.to_owned(), live: total, actors, next_after })
    }

    /// One actor: its state and tables. A passivated actor is activated (see the module's documentation); a key
    /// with neither a live actor nor a database is `NotFound`, and nothing is created for it.
    pub async fn actor(&self, kind: &str, key: &str) -> InspectResult<ActorDetail> {
        let handle = self.handle(kind)?;
        let state = match self.ask(&handle, key, Probe::State).await? {
            Probed::State(s) => s,
            _ => return Err(mismatch()),
        };
        let bytes = self.copy(&handle, key).await?;
        let database_bytes = bytes.len() as u64;
        let tables = on_copy(bytes, |s| s.tables()).await?;
        let tables =
            tables.into_iter().map(|(name, rows)| TableInfo { runtime: is_runtime_table(&name), name, rows }).collect();
        let mailbox_depth = handle.live_actor(key).map_or(0, |a| a.in_flight);
        let subscribed = self.subscribers(kind, Some(key));
        Ok(ActorDetail {
            kind: kind.to_owned(),
            key: key.to_owned(),
            mailbox_depth,
            state: with_subscribers(state, subscribed.get(key)),
            database_bytes,
            tables,
        })
    }

    /// Rows `offset..offset + limit` of one of the actor's tables (`limit` up to [`MAX_DUMP_ROWS`]).
    pub async fn table(
        &self,
        kind: &str,
        key: &str,
        table: &str,
        offset: u64,
        limit: usize,
    ) -> InspectResult<TableDump> {
        if !(1..=MAX_DUMP_ROWS).contains(&limit) {
            return refused(InspectError::InvalidLimit(format!("limit must be 1 to {MAX_DUMP_ROWS}")));
        }
        if offset > i64::MAX as u64 {
            return refused(InspectError::InvalidLimit("offset is too large".into()));
        }
        let handle = self.handle(kind)?;
        let bytes = self.copy(&handle, key).await?;
        let table = table.to_owned();
        on_copy(bytes, move |s| {
            let total = s.tables()?.into_iter().find(|(name, _)| *name == table).map(|(_, rows)| rows);
            let Some(total) = total else { return Err(InspectError::UnknownTable(table)) };
            let rows = s.dump(&table, offset, limit)?;
            Ok(TableDump { table, total, offset, columns: rows.columns, rows: rows.rows, truncated: rows.truncated })
        })
        .await
    }

    /// Runs one read-only statement on a copy of the actor's database: at most `max_rows` rows
    /// ([`MAX_QUERY_ROWS`]), stopped after `time` ([`MAX_QUERY_TIME`]).
    pub async fn query(
        &self,
        kind: &str,
        key: &str,
        sql: &str,
        max_rows: usize,
        time: Duration,
    ) -> InspectResult<QueryAnswer> {
        if !(1..=MAX_QUERY_ROWS).contains(&max_rows) {
            return refused(InspectError::InvalidLimit(format!("limit must be 1 to {MAX_QUERY_ROWS}")));
        }
        if time.is_zero() || time > MAX_QUERY_TIME {
            return refused(InspectError::InvalidLimit(format!(
                "timeoutMs must be 1 to {}",
                MAX_QUERY_TIME.as_millis()
            )));
        }
        if sql.len() > MAX_SQL_BYTES {
            return refused(InspectError::InvalidSql(format!("the SQL is longer than {MAX_SQL_BYTES} bytes")));
        }
        let handle = self.handle(kind)?;
        let bytes = self.copy(&handle, key).await?;
        let sql = sql.to_owned();
        let rows = on_copy(bytes, move |s| s.query(&sql, sql::Bounds { max_rows, time })).await?;
        Ok(QueryAnswer { columns: rows.columns, rows: rows.rows, truncated: rows.truncated })
    }

    /// The actor's recent messages, newest first. Never activates it: a passivated actor answers `live: false`;
    /// a key that names nothing is `NotFound`.
    pub async fn trace(&self, kind: &str, key: &str) -> InspectResult<TraceView> {
        let handle = self.handle(kind)?;
        match handle.inspect(key.to_owned(), Probe::Trace, true).await {
            Some(Ok(Probed::Trace(view))) => Ok(view),
            Some(Ok(_)) => Err(mismatch()),
            Some(Err(e)) => Err(e),
            None if handle.exists_encoded(key)? => Ok(TraceView::not_live(self.shared.config.trace_size)),
            None => Err(CallError::NotFound { kind: handle.kind(), key: key.to_owned() }),
        }
    }

    /// Asks the actor of `key`, activating it if it exists on disk.
    async fn ask(&self, handle: &Arc<dyn KindHandle>, key: &str, probe: Probe) -> InspectResult<Probed> {
        // Bounded: an actor whose mailbox is held (a command waiting on something) must not hold the operator too.
        match tokio::time::timeout(ASK_WAIT, handle.inspect(key.to_owned(), probe, false)).await {
            Ok(Some(answer)) => answer,
            // Only a live-only probe answers `None`.
            Ok(None) => Err(CallError::NotFound { kind: handle.kind(), key: key.to_owned() }),
            Err(_) => Err(CallError::Timeout(ASK_WAIT)),
        }
    }

    async fn copy(&self, handle: &Arc<dyn KindHandle>, key: &str) -> InspectResult<Vec<u8>> {
        match self.ask(handle, key, Probe::Database { max_bytes: MAX_DATABASE_BYTES }).await? {
            Probed::Database(bytes) => Ok(bytes),
            _ => Err(mismatch()),
        }
    }

    /// Subscriber counts of `kind`'s topics by key, then topic.
    fn subscribers(&self, kind: &str, key: Option<&str>) -> HashMap<String, HashMap<String, usize>> {
        let mut by_key: HashMap<String, HashMap<String, usize>> = HashMap::new();
        for (key, topic, n) in self.shared.hub.subscribed(kind, key) {
            by_key.entry(key).or_default().insert(topic, n);
        }
        by_key
    }
}

/// The actor's topics with their subscriber counts; a topic subscribed to but never changed has version 0.
fn with_subscribers(mut state: ActorState, subscribed: Option<&HashMap<String, usize>>) -> ActorState {
    if let Some(subscribed) = subscribed {
        for t in &mut state.topics {
            t.subscribers = subscribed.get(&t.topic).copied().unwrap_or(0);
        }
        for (topic, n) in subscribed {
            if !state.topics.iter().any(|t| &t.topic == topic) {
                state.topics.push(TopicView { topic: topic.clone(), version: 0, subscribers: *n });
            }
        }
        state.topics.sort_by(|a, b| a.topic.cmp(&b.topic));
    }
    state
}

/// An actor answered a probe with another probe's answer: a bug, reported as a storage-like failure.
fn mismatch() -> CallError<InspectError> {
    CallError::Handler(InspectError::Snapshot("the actor answered another question".into()))
}

/// Opens `bytes` as a read-only copy and runs `f` on it, on the blocking pool (a long query never holds an arbiter).
async fn on_copy<T: Send + 'static>(
    bytes: Vec<u8>,
    f: impl FnOnce(&mut sql::Snapshot) -> Result<T, InspectError> + Send + 'static,
) -> InspectResult<T> {
    let run = move || {
        let mut snapshot = sql::Snapshot::open(bytes)?;
        f(&mut snapshot)
    };
    match actix_rt::task::spawn_blocking(run).await {
        Ok(res) => res.map_err(CallError::Handler),
        Err(e) => refused(InspectError::Snapshot(format!("the reading task failed: {e}"))),
    }
}

fn is_runtime_table(name: &str) -> bool {
    name.starts_with("_foundry_") || name == "__diesel_schema_migrations"
}

fn kind_view(h: &dyn KindHandle) -> KindView {
    let s = h.stats();
    let c = h.config();
    let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    KindView {
        kind: h.kind().to_owned(),
        live: h.live(),
        mailbox_depth: h.in_flight_total(),
        mailbox_capacity: c.mailbox_capacity,
        idle_timeout_ms: c.idle_timeout.as_millis() as u64,
        max_batch: c.max_batch,
        group_commit: c.group_commit,
        activations: n(&s.activations),
        activation_failures: n(&s.activation_failures),
        passivations: n(&s.passivations),
        restarts: n(&s.restarts),
        destroyed: n(&s.destroyed),
        messages: n(&s.messages),
        transactions: n(&s.transactions),
        committed_mutations: n(&s.committed_mutations),
        schedules_fired: n(&s.schedules_fired),
        schedule_failures: n(&s.schedule_failures),
    }
}
