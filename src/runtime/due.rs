//! The due index: per actor with schedules, a time at or before its earliest due schedule, in the runtime's index
//! file (`<data>/_foundry_index.sqlite3`, next to the recovery index), and the one runtime task that scans it and
//! wakes passivated actors whose time came.
//!
//! Correctness rests on one invariant: once an actor's transaction commits, the index holds for it a time no later
//! than its earliest schedule. The actor lowers its entry inside the transaction that set an earlier schedule,
//! before the commit (so a kill -9 right after the commit finds it), and writes its exact earliest after commits
//! that moved it later. A stale entry (earlier than the truth: a cancelled schedule, a rolled-back transaction, a
//! crash between a commit and the exact write) costs one needless wake, which corrects it.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use tokio::sync::Semaphore;

use super::schedule::now_ms;
use super::system::{RecoveryIndex, Shared};
use super::topic::lock;

pub(crate) const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS schedules_due (kind TEXT NOT NULL, key TEXT NOT NULL, \
     due_at_ms INTEGER NOT NULL, PRIMARY KEY (kind, key)) WITHOUT ROWID; \
     CREATE INDEX IF NOT EXISTS schedules_due_at ON schedules_due (due_at_ms);";

/// Wake-ups (activations) under way at once.
const WAKE_CONCURRENCY: usize = 32;
/// Entries read per scan.
const SCAN_LIMIT: i64 = 1024;
/// Bounds of the scanner's sleep: at least this (entries of live actors or unregistered kinds stay due without
/// being the scanner's to fire), at most that (a safety net; passivations notify it).
const SCAN_FLOOR: Duration = Duration::from_millis(20);
const SCAN_CEILING: Duration = Duration::from_secs(1);
/// After a failed wake (activation failed), the entry is left alone this long.
const WAKE_RETRY: Duration = Duration::from_secs(1);

#[derive(QueryableByName)]
struct DueRow {
    #[diesel(sql_type = Text)]
    kind: String,
    #[diesel(sql_type = Text)]
    key: String,
    #[diesel(sql_type = BigInt)]
    due_at_ms: i64,
}

fn err(e: diesel::result::Error) -> String {
    e.to_string()
}

impl RecoveryIndex {
    /// Lowers (or creates) an actor's entry to `due`; never raises it.
    pub(crate) fn lower_due(&self, kind: &str, key: &str, due: i64) -> Result<(), String> {
        diesel::sql_query(
            "INSERT INTO schedules_due (kind, key, due_at_ms) VALUES (?, ?, ?) ON CONFLICT (kind, key) \
             DO UPDATE SET due_at_ms = MIN(due_at_ms, excluded.due_at_ms)",
        )
        .bind::<Text, _>(kind)
        .bind::<Text, _>(key)
        .bind::<BigInt, _>(due)
        .execute(&mut self.conn()?)
        .map(|_| ())
        .map_err(err)
    }

    /// Sets an actor's entry to exactly `due` (its committed earliest schedule).
    pub(crate) fn set_due(&self, kind: &str, key: &str, due: i64) -> Result<(), String> {
        diesel::sql_query("INSERT OR REPLACE INTO schedules_due (kind, key, due_at_ms) VALUES (?, ?, ?)")
            .bind::<Text, _>(kind)
            .bind::<Text, _>(key)
            .bind::<BigInt, _>(due)
            .execute(&mut self.conn()?)
            .map(|_| ())
            .map_err(err)
    }

    pub(crate) fn remove_due(&self, kind: &str, key: &str) -> Result<(), String> {
        diesel::sql_query("DELETE FROM schedules_due WHERE kind = ? AND key = ?")
            .bind::<Text, _>(kind)
            .bind::<Text, _>(key)
            .execute(&mut self.conn()?)
            .map(|_| ())
            .map_err(err)
    }

    /// Removes an entry of an actor that does not exist, unless it changed since it was read (an actor of that key
    /// created meanwhile wrote its own).
    fn remove_due_if(&self, kind: &str, key: &str, due: i64) -> Result<(), String> {
        diesel::sql_query("DELETE FROM schedules_due WHERE kind = ? AND key = ? AND due_at_ms = ?")
            .bind::<Text, _>(kind)
            .bind::<Text, _>(key)
            .bind::<BigInt, _>(due)
            .execute(&mut self.conn()?)
            .map(|_| ())
            .map_err(err)
    }

    fn due_entries(&self, now: i64) -> Result<Vec<DueRow>, String> {
        diesel::sql_query(
            "SELECT kind, key, due_at_ms FROM schedules_due WHERE due_at_ms <= ? ORDER BY due_at_ms LIMIT ?",
        )
        .bind::<BigInt, _>(now)
        .bind::<BigInt, _>(SCAN_LIMIT)
        .load(&mut self.conn()?)
        .map_err(err)
    }

    fn next_due_after(&self, now: i64) -> Result<Option<i64>, String> {
        #[derive(QueryableByName)]
        struct Min {
            #[diesel(sql_type = diesel::sql_types::Nullable<BigInt>)]
            due: Option<i64>,
        }
        let rows: Vec<Min> = diesel::sql_query("SELECT MIN(due_at_ms) AS due FROM schedules_due WHERE due_at_ms > ?")
            .bind::<BigInt, _>(now)
            .load(&mut self.conn()?)
            .map_err(err)?;
        Ok(rows.first().and_then(|r| r.due))
    }

    /// Entries in the due index (for tests and admin reads).
    pub(crate) fn due_count(&self) -> Result<i64, String> {
        #[derive(QueryableByName)]
        struct Count {
            #[diesel(sql_type = BigInt)]
            n: i64,
        }
        let rows: Vec<Count> =
            diesel::sql_query("SELECT COUNT(*) AS n FROM schedules_due").load(&mut self.conn()?).map_err(err)?;
        Ok(rows.first().map_or(0, |r| r.n))
    }
}

/// The scanner: reads the entries due now and wakes each actor that is not live (a live actor fires from its own
/// timer), at most [`WAKE_CONCURRENCY`] at a time; sleeps until the next entry is due (bounded), or until a
/// passivation says an actor with schedules left. At start-up this is also the recovery of schedules after a crash:
/// everything overdue is woken at once.
pub(crate) async fn scan(weak: Weak<Shared>) {
    let waking: Arc<Mutex<HashSet<(String, String)>>> = Arc::default();
    let permits = Arc::new(Semaphore::new(WAKE_CONCURRENCY));
    loop {
        let pause = {
            let Some(shared) = weak.upgrade() else { return };
            if shared.is_shutting_down() {
                return;
            }
            let now = now_ms();
            let entries = match shared.index.due_entries(now) {
                Ok(entries) => entries,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the due index");
                    Vec::new()
                }
            };
            let handles = shared.handles();
            for entry in entries {
                let Some(handle) = handles.iter().find(|h| h.kind() == entry.kind).cloned() else { continue };
                // Cluster mode: a shard served elsewhere is not woken here (the wake would be refused, again and
                // again, holding a permit each time); gaining the shard makes the scanner look again.
                if handle.is_live_encoded(&entry.key) || !shared.serves_encoded(handle.as_ref(), &entry.key) {
                    continue;
                }
                let id = (entry.kind.clone(), entry.key.clone());
                if !lock(&waking).insert(id.clone()) {
                    continue;
                }
                let Ok(permit) = permits.clone().acquire_owned().await else { return };
                let (waking, weak) = (waking.clone(), weak.clone());
                actix_rt::spawn(async move {
                    let res = handle.wake_schedules(entry.key.clone()).await;
                    match res {
                        Ok(true) => {}
                        Ok(false) => {
                            if let Some(shared) = weak.upgrade() {
                                let _ = shared.index.remove_due_if(&entry.kind, &entry.key, entry.due_at_ms);
                            }
                        }
                        Err(e) => {
                            tracing::debug!(kind = %entry.kind, key = %entry.key, error = %e, "schedule wake failed; will retry");
                            tokio::time::sleep(WAKE_RETRY).await;
                        }
                    }
                    drop(permit);
                    lock(&waking).remove(&id);
                });
            }
            let next = shared.index.next_due_after(now).ok().flatten();
            let until_next = next.map_or(SCAN_CEILING, |due| Duration::from_millis(due.saturating_sub(now) as u64));
            until_next.clamp(SCAN_FLOOR, SCAN_CEILING)
        };
        let Some(shared) = weak.upgrade() else { return };
        let _ = tokio::time::timeout(pause, shared.due_changed.notified()).await;
    }
}
