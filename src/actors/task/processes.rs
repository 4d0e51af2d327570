//! The task's sandbox processes: which processes of the sandbox's [`ProcessHost`] this task started, with their last
//! known state, published on the `sandboxProcesses` topic. While one runs, the task polls the host (background work
//! of the actor) and publishes each change of status; the poll stops when none runs and restarts on activation.

use std::sync::Arc;
use std::time::Duration;

use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;
use serde::Serialize;

use super::Task;
use crate::actors::{now_ms, Audit, DomainError, DomainResult};
use crate::integrations::sandbox::{ProcessHost, ProcessInfo, ProcessService};
use crate::runtime::idempotency::{self, IdempotencyKey};
use crate::runtime::{Command, EntityCtx, Myself, Read, Tx};

/// The topic of the task's processes.
pub const PROCESSES_TOPIC: &str = "sandboxProcesses";
/// How often a task with a running process asks the host for statuses.
const POLL_EVERY: Duration = Duration::from_millis(500);

diesel::table! {
    task_processes (process_id) {
        process_id -> Text,
        command -> Text,
        args -> Text,
        status -> Text,
        pid -> Nullable<BigInt>,
        exit_code -> Nullable<Integer>,
        created_at -> BigInt,
        exited_at -> Nullable<BigInt>,
        updated_at -> BigInt,
    }
}

/// A process of the task, as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, Queryable, Selectable, utoipa::ToSchema)]
#[diesel(table_name = task_processes)]
#[serde(rename_all = "camelCase")]
pub struct ProcessRow {
    #[serde(rename = "id")]
    pub process_id: String,
    pub command: String,
    /// Stored as JSON text, sent as the array it holds.
    #[serde(serialize_with = "raw_json", deserialize_with = "json_text")]
    #[schema(value_type = Vec<String>)]
    pub args: String,
    /// `running`, `exited`, or `missing` (the host no longer knows it).
    pub status: String,
    pub pid: Option<i64>,
    pub exit_code: Option<i32>,
    pub created_at: i64,
    pub exited_at: Option<i64>,
    pub updated_at: i64,
}

fn raw_json<S: serde::Serializer>(text: &str, s: S) -> Result<S::Ok, S::Error> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(serde::ser::Error::custom)?;
    value.serialize(s)
}

/// The inverse of [`raw_json`], for clients reading the row back: the array as the JSON text the row stores.
fn json_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let value = <serde_json::Value as serde::Deserialize>::deserialize(d)?;
    Ok(value.to_string())
}

impl ProcessRow {
    /// The arguments (stored as JSON text); empty if the stored text is not an array of strings.
    pub fn arg_list(&self) -> Vec<String> {
        serde_json::from_str(&self.args).unwrap_or_default()
    }
}

/// What `sandboxProcessesUpdated` carries (and `GET T/processes` answers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct ProcessesSnapshot {
    pub processes: Vec<ProcessRow>,
}

pub fn list(conn: &mut SqliteConnection) -> QueryResult<Vec<ProcessRow>> {
    task_processes::table.select(ProcessRow::as_select()).order(task_processes::created_at).load(conn)
}

fn find(conn: &mut SqliteConnection, id: &str) -> QueryResult<Option<ProcessRow>> {
    task_processes::table.select(ProcessRow::as_select()).find(id).first(conn).optional()
}

fn any_running(conn: &mut SqliteConnection) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(task_processes::table.filter(task_processes::status.eq("running"))))
        .get_result(conn)
}

/// Writes `info`; whether anything changed.
fn upsert(conn: &mut SqliteConnection, info: &ProcessInfo, status: &str) -> DomainResult<bool> {
    let before = find(conn, &info.id)?;
    if before.as_ref().is_some_and(|b| b.status == status && b.exit_code == info.exit_code && b.pid == info.pid) {
        return Ok(false);
    }
    let args = serde_json::to_string(&info.args).map_err(|e| DomainError::Unprocessable(e.to_string()))?;
    let now = now_ms();
    diesel::replace_into(task_processes::table)
        .values((
            task_processes::process_id.eq(&info.id),
            task_processes::command.eq(&info.command),
            task_processes::args.eq(&args),
            task_processes::status.eq(status),
            task_processes::pid.eq(info.pid),
            task_processes::exit_code.eq(info.exit_code),
            task_processes::created_at.eq(info.created_at_ms),
            task_processes::exited_at.eq(info.exited_at_ms),
            task_processes::updated_at.eq(now),
        ))
        .execute(conn)?;
    Ok(true)
}

fn host(ctx: &EntityCtx<'_, Task>) -> Option<Arc<dyn ProcessHost>> {
    ctx.service::<ProcessService>().map(|s| s.0.clone())
}

/// Starts the status poll unless it runs already.
pub(super) fn ensure_poller(task: &mut Task, ctx: &mut EntityCtx<'_, Task>) {
    if task.poller.is_some() {
        return;
    }
    if let Some(host) = host(ctx) {
        task.poller = Some(ctx.spawn(poll(ctx.myself(), host)));
    }
}

async fn poll(me: Myself<Task>, host: Arc<dyn ProcessHost>) {
    loop {
        tokio::time::sleep(POLL_EVERY).await;
        // An unreachable host is retried on the next round; statuses stay as last known.
        let Ok(listed) = host.list().await else { continue };
        match me.exec(ApplyProcessStatuses { listed }).await {
            Ok(true) => continue,
            _ => break,
        }
    }
}

/// What the caller did to a process: recorded in the audit log with who did it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ProcessAction {
    Started,
    Stopped,
    Killed,
}

impl ProcessAction {
    fn audit_kind(self) -> &'static str {
        match self {
            ProcessAction::Started => "sandbox.process.started",
            ProcessAction::Stopped => "sandbox.process.stopped",
            ProcessAction::Killed => "sandbox.process.killed",
        }
    }
}

/// Records a process the task started (or its new state after stop/kill), audits the action, and polls while it
/// runs. Replies with the process as published (the shape every process route answers with).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct TrackProcess {
    pub info: ProcessInfo,
    pub action: ProcessAction,
    pub user_id: Option<String>,
    /// The idempotency key reserved for this start: recorded, with the process as its output, in the transaction
    /// that records the process.
    pub once: Option<IdempotencyKey>,
}

impl Command for TrackProcess {
    type Entity = Task;
    type Output = ProcessRow;
    type Error = DomainError;
    fn run(self, task: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<ProcessRow> {
        let running = self.info.is_running();
        let status = if running { "running" } else { "exited" };
        let key = task.key.clone();
        let row = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<ProcessRow> {
            super::schema::require_row(tx.conn(), &key.task)?;
            if upsert(tx.conn(), &self.info, status)? {
                tx.touch(PROCESSES_TOPIC);
            }
            let payload = serde_json::json!({ "processId": self.info.id, "command": self.info.command });
            Audit::task(&key).by(self.user_id.as_deref()).append(tx, self.action.audit_kind(), payload)?;
            let row =
                find(tx.conn(), &self.info.id)?.ok_or_else(|| DomainError::not_found("process", &self.info.id))?;
            if let Some(once) = &self.once {
                let output = serde_json::to_string(&row)
                    .map_err(|e| DomainError::Db(diesel::result::Error::SerializationError(Box::new(e))))?;
                idempotency::record(tx.conn(), once, &output, idempotency::now_ms())?;
            }
            Ok(row)
        })?;
        if running {
            ensure_poller(task, ctx);
        }
        Ok(row)
    }
}

/// The poll's result: updates every tracked process from the host's list. Replies whether one still runs (the poll
/// stops otherwise).
#[derive(serde::Serialize, serde::Deserialize)]
struct ApplyProcessStatuses {
    listed: Vec<ProcessInfo>,
}

impl Command for ApplyProcessStatuses {
    type Entity = Task;
    type Output = bool;
    type Error = DomainError;
    fn run(self, task: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<bool> {
        let still_running = ctx.write(|tx: &mut Tx<'_>| -> DomainResult<bool> {
            let mut changed = false;
            for row in list(tx.conn())?.into_iter().filter(|r| r.status == "running") {
                let (info, status) = match self.listed.iter().find(|p| p.id == row.process_id) {
                    Some(p) => (p.clone(), if p.is_running() { "running" } else { "exited" }),
                    None => (gone(&row), "missing"),
                };
                changed |= upsert(tx.conn(), &info, status)?;
            }
            if changed {
                tx.touch(PROCESSES_TOPIC);
            }
            Ok(any_running(tx.conn())?)
        })?;
        if !still_running {
            task.poller = None;
        }
        Ok(still_running)
    }
}

fn gone(row: &ProcessRow) -> ProcessInfo {
    ProcessInfo {
        id: row.process_id.clone(),
        command: row.command.clone(),
        args: serde_json::from_str(&row.args).unwrap_or_default(),
        status: "missing".into(),
        pid: row.pid,
        exit_code: row.exit_code,
        created_at_ms: row.created_at,
        exited_at_ms: row.exited_at,
    }
}

/// Forgets a process (after the host deleted it), audited. Replies whether it was the task's.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ForgetProcess {
    pub process_id: String,
    pub user_id: Option<String>,
}

impl Command for ForgetProcess {
    type Entity = Task;
    type Output = bool;
    type Error = DomainError;
    fn run(self, task: &mut Task, ctx: &mut EntityCtx<'_, Task>) -> DomainResult<bool> {
        let key = task.key.clone();
        ctx.write(|tx: &mut Tx<'_>| -> DomainResult<bool> {
            let n = diesel::delete(task_processes::table.find(&self.process_id)).execute(tx.conn())?;
            if n > 0 {
                tx.touch(PROCESSES_TOPIC);
                let payload = serde_json::json!({ "processId": self.process_id });
                Audit::task(&key).by(self.user_id.as_deref()).append(tx, "sandbox.process.deleted", payload)?;
            }
            Ok(n > 0)
        })
    }
}

/// The task's processes, oldest first.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct ListTaskProcesses;

impl Read for ListTaskProcesses {
    type Entity = Task;
    type Output = Vec<ProcessRow>;
    type Error = DomainError;
    fn read(self, task: &Task, db: &mut SqliteConnection) -> DomainResult<Vec<ProcessRow>> {
        super::schema::require_row(db, &task.key.task)?;
        Ok(list(db)?)
    }
}

/// One process of the task (`NotFound` if it is not this task's).
#[derive(serde::Serialize, serde::Deserialize)]
pub struct GetTaskProcess {
    pub process_id: String,
}

impl Read for GetTaskProcess {
    type Entity = Task;
    type Output = ProcessRow;
    type Error = DomainError;
    fn read(self, _: &Task, db: &mut SqliteConnection) -> DomainResult<ProcessRow> {
        find(db, &self.process_id)?.ok_or_else(|| DomainError::not_found("process", &self.process_id))
    }
}

/// Restarts the poll after activation if a process was running when the actor stopped.
pub(super) fn resume(task: &mut Task, ctx: &mut EntityCtx<'_, Task>) {
    match any_running(ctx.db()) {
        Ok(true) => ensure_poller(task, ctx),
        Ok(false) => {}
        Err(e) => tracing::warn!(error = %e, "cannot read the task's processes"),
    }
}

crate::actors::remote::remote_messages! {
    super::Task;
    reads: ListTaskProcesses, GetTaskProcess;
    commands: TrackProcess, ApplyProcessStatuses, ForgetProcess;
}
