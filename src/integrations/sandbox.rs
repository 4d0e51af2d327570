//! Processes in the sandbox (dev servers, test runs, terminals): the [`ProcessHost`] trait and its implementation on
//! the sandbox-agent server's process API (`/v1/processes`). Tasks track which processes are theirs; the host only
//! runs them.

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// Longest command of a [`ProcessSpec`] the web layer accepts, in characters.
pub const MAX_COMMAND_CHARS: usize = 1000;
/// Most arguments, and the largest argument in bytes.
pub const MAX_ARGS: usize = 100;
pub const MAX_ARG_BYTES: usize = 16 * 1024;
/// Most environment variables.
pub const MAX_ENV: usize = 100;

/// A process to start (also the body of `POST .../processes`, hence strict; its limits are checked by the web layer
/// and stated in the schema).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProcessSpec {
    /// The program: not blank, at most [`MAX_COMMAND_CHARS`] characters.
    #[schema(schema_with = command_schema)]
    pub command: String,
    #[serde(default)]
    #[schema(schema_with = args_schema)]
    pub args: Vec<String>,
    /// The working directory (default: the sandbox's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schema(schema_with = env_schema)]
    pub env: BTreeMap<String, String>,
}

fn command_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .description(Some("The program to run: not blank."))
        .min_length(Some(1))
        .max_length(Some(MAX_COMMAND_CHARS))
        // Some character that `str::trim` keeps.
        .pattern(Some(r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"))
        .build()
}

fn args_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
    // A character is at most 4 bytes of UTF-8: this many characters always fit the byte limit.
    let arg = ObjectBuilder::new().schema_type(Type::String).max_length(Some(MAX_ARG_BYTES / 4));
    ArrayBuilder::new().items(arg).max_items(Some(MAX_ARGS)).description(Some("The arguments.")).build()
}

fn env_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    let name = ObjectBuilder::new().schema_type(Type::String).min_length(Some(1)).pattern(Some("^[^=]+$"));
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .description(Some("Environment variables: names not empty and without '='."))
        .property_names(Some(name))
        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
        .max_properties(Some(MAX_ENV))
        .build()
}

/// A process as the host reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProcessInfo {
    pub id: String,
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// `running` or `exited`.
    pub status: String,
    #[serde(default)]
    pub pid: Option<i64>,
    #[serde(default)]
    pub exit_code: Option<i32>,
    pub created_at_ms: i64,
    #[serde(default)]
    pub exited_at_ms: Option<i64>,
}

impl ProcessInfo {
    pub fn is_running(&self) -> bool {
        self.status == "running"
    }
}

/// One chunk of a process's output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct LogEntry {
    pub sequence: u64,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub timestamp_ms: i64,
    /// The bytes, as the host encodes them (`encoding`: `base64` or `utf8`).
    pub data: String,
    #[serde(default)]
    pub encoding: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProcessError {
    #[error("process {0:?} not found")]
    NotFound(String),
    #[error("the sandbox refused: {0}")]
    Refused(String),
    #[error("sandbox unreachable: {0}")]
    Transport(String),
    #[error("unexpected answer from the sandbox: {0}")]
    Protocol(String),
}

type Res<T> = Result<T, ProcessError>;

/// Runs processes for tasks.
pub trait ProcessHost: Send + Sync {
    fn list(&self) -> BoxFuture<'_, Res<Vec<ProcessInfo>>>;
    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> BoxFuture<'a, Res<ProcessInfo>>;
    /// SIGTERM.
    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<ProcessInfo>>;
    /// SIGKILL.
    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<ProcessInfo>>;
    /// Forgets an exited process (its logs go with it).
    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<()>>;
    fn logs<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<Vec<LogEntry>>>;
}

/// The process host sessions' sandboxes run on, as a runtime service.
pub struct ProcessService(pub std::sync::Arc<dyn ProcessHost>);

/// The sandbox-agent server's process API.
#[derive(Clone)]
pub struct SandboxProcesses {
    base: String,
    http: reqwest::Client,
}

impl SandboxProcesses {
    /// `base_url` like `http://127.0.0.1:2468`.
    pub fn new(base_url: &str) -> Self {
        let http = crate::integrations::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        SandboxProcesses { base: base_url.trim_end_matches('/').to_owned(), http }
    }

    async fn call<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder, id: &str) -> Res<Option<T>> {
        let res = req.send().await.map_err(|e| ProcessError::Transport(e.to_string()))?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(ProcessError::NotFound(id.to_owned()));
        }
        if status == reqwest::StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let text = res.text().await.map_err(|e| ProcessError::Transport(e.to_string()))?;
        if !status.is_success() {
            // sandbox-agent answers problem+json: `detail` is the human part.
            let detail = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["detail"].as_str().map(str::to_owned))
                .unwrap_or(text);
            return Err(ProcessError::Refused(format!("{status}: {detail}")));
        }
        serde_json::from_str(&text).map(Some).map_err(|e| ProcessError::Protocol(format!("{e}: {text}")))
    }

    async fn required<T: serde::de::DeserializeOwned>(&self, req: reqwest::RequestBuilder, id: &str) -> Res<T> {
        self.call(req, id).await?.ok_or_else(|| ProcessError::Protocol("empty answer".into()))
    }

    fn url(&self, path: &str) -> String {
        format!("{}/v1/processes{path}", self.base)
    }
}

#[derive(Deserialize)]
struct List {
    processes: Vec<ProcessInfo>,
}

#[derive(Deserialize)]
struct Logs {
    entries: Vec<LogEntry>,
}

/// A process id as part of a URL path: the host's ids are `proc_<n>`; anything else is refused before a request.
fn path_id(id: &str) -> Res<&str> {
    if !id.is_empty() && id.len() <= 100 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        Ok(id)
    } else {
        Err(ProcessError::NotFound(id.to_owned()))
    }
}

impl ProcessHost for SandboxProcesses {
    fn list(&self) -> BoxFuture<'_, Res<Vec<ProcessInfo>>> {
        Box::pin(async move { Ok(self.required::<List>(self.http.get(self.url("")), "").await?.processes) })
    }

    fn start<'a>(&'a self, spec: &'a ProcessSpec) -> BoxFuture<'a, Res<ProcessInfo>> {
        Box::pin(async move { self.required(self.http.post(self.url("")).json(spec), "").await })
    }

    fn stop<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<ProcessInfo>> {
        Box::pin(async move {
            let id = path_id(id)?;
            self.required(self.http.post(self.url(&format!("/{id}/stop"))), id).await
        })
    }

    fn kill<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<ProcessInfo>> {
        Box::pin(async move {
            let id = path_id(id)?;
            self.required(self.http.post(self.url(&format!("/{id}/kill"))), id).await
        })
    }

    fn delete<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<()>> {
        Box::pin(async move {
            let id = path_id(id)?;
            self.call::<serde_json::Value>(self.http.delete(self.url(&format!("/{id}"))), id).await.map(|_| ())
        })
    }

    fn logs<'a>(&'a self, id: &'a str) -> BoxFuture<'a, Res<Vec<LogEntry>>> {
        Box::pin(async move {
            let id = path_id(id)?;
            Ok(self.required::<Logs>(self.http.get(self.url(&format!("/{id}/logs"))), id).await?.entries)
        })
    }
}
