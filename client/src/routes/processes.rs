//! A task's sandbox processes (`T/processes`).

use reqwest::Method;

use super::orgs::name_of;
use super::{seg, task_path};
use crate::client::json;
use crate::types::{ProcessLogs, ProcessRow, ProcessSignal, ProcessSpec, ProcessesSnapshot, TaskKey};
use crate::{Client, Creating, Result};

fn process_path(task: &TaskKey, id: &str) -> String {
    format!("{}/processes/{}", task_path(task), seg(id))
}

impl Client {
    /// `GET T/processes`: the task's processes, oldest first.
    pub async fn processes(&self, task: &TaskKey) -> Result<ProcessesSnapshot> {
        self.call(Method::GET, &format!("{}/processes", task_path(task)), None).await
    }

    /// `POST T/processes`: starts a process in the task's sandbox (201).
    pub fn start_process(&self, task: &TaskKey, spec: &ProcessSpec) -> Creating<'_, ProcessRow> {
        self.creating(format!("{}/processes", task_path(task)), json(spec))
    }

    /// `GET T/processes/{id}`.
    pub async fn process(&self, task: &TaskKey, id: &str) -> Result<ProcessRow> {
        self.call(Method::GET, &process_path(task, id), None).await
    }

    /// `GET T/processes/{id}/logs`: its output so far.
    pub async fn process_logs(&self, task: &TaskKey, id: &str) -> Result<ProcessLogs> {
        self.call(Method::GET, &format!("{}/logs", process_path(task, id)), None).await
    }

    /// `POST T/processes/{id}/stop` or `.../kill`: SIGTERM or SIGKILL.
    pub async fn signal_process(&self, task: &TaskKey, id: &str, signal: ProcessSignal) -> Result<ProcessRow> {
        let path = format!("{}/{}", process_path(task, id), seg(&name_of(&signal)));
        self.call(Method::POST, &path, None).await
    }

    /// `DELETE T/processes/{id}`: forgets an exited process.
    pub async fn delete_process(&self, task: &TaskKey, id: &str) -> Result<()> {
        self.call_empty(Method::DELETE, &process_path(task, id), None).await
    }
}
