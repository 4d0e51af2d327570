//! Where workspace commands run: [`LocalShell`] (child processes on this host) and [`SandboxShell`] (a sandbox-agent
//! server's `POST /v1/processes/run`).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use serde_json::json;

use super::runner::{run_here, Runner};
use super::WorkspaceError;

/// One command to run.
#[derive(Debug, Clone, Default)]
pub struct Cmd {
    pub program: String,
    pub args: Vec<String>,
    pub cwd: Option<String>,
    /// Added to the environment; values may hold secrets and are never logged.
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
}

/// What a command printed and how it exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CmdOutput {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Runs commands where the workspaces live.
pub trait Shell: Send + Sync + 'static {
    /// `local` or `sandbox-agent`: shown on the task.
    fn provider(&self) -> &'static str;
    /// The directory holding the mirrors and workspaces, as the shell's machine sees it.
    fn root(&self) -> &str;
    fn run(&self, cmd: Cmd) -> BoxFuture<'_, Result<CmdOutput, WorkspaceError>>;

    /// Removes a directory tree (nothing if it does not exist).
    fn remove_dir<'a>(&'a self, dir: &'a str) -> BoxFuture<'a, Result<(), WorkspaceError>> {
        Box::pin(async move {
            let out = self
                .run(Cmd {
                    program: "rm".into(),
                    args: vec!["-rf".into(), "--".into(), dir.into()],
                    timeout: Duration::from_secs(120),
                    ..Cmd::default()
                })
                .await?;
            if out.success() {
                Ok(())
            } else {
                Err(WorkspaceError::Git { op: "remove", message: out.stderr.trim().to_owned() })
            }
        })
    }
}

/// Runs commands as child processes on this host; workspaces live under `root` (in the data directory). With a
/// [`Runner`], they start in the runner process (see `runner.rs` for why a busy service wants one); without, here.
pub struct LocalShell {
    root: String,
    runner: Option<Arc<Runner>>,
}

impl LocalShell {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalShell { root: root.into().to_string_lossy().trim_end_matches('/').to_owned(), runner: None }
    }

    /// Commands start in `runner`'s process.
    pub fn with_runner(root: impl Into<PathBuf>, runner: Arc<Runner>) -> Self {
        LocalShell { runner: Some(runner), ..LocalShell::new(root) }
    }
}

impl Shell for LocalShell {
    fn provider(&self) -> &'static str {
        "local"
    }

    fn root(&self) -> &str {
        &self.root
    }

    fn run(&self, cmd: Cmd) -> BoxFuture<'_, Result<CmdOutput, WorkspaceError>> {
        match &self.runner {
            Some(runner) => Box::pin(runner.run(cmd)),
            None => Box::pin(run_here(cmd)),
        }
    }
}

/// Runs commands on a sandbox-agent server (`POST /v1/processes/run`); workspaces live under `root` on that server's
/// machine.
pub struct SandboxShell {
    base: String,
    root: String,
    http: reqwest::Client,
}

impl SandboxShell {
    /// `base_url` like `http://127.0.0.1:2468`; `root` a directory on the server's machine.
    pub fn new(base_url: &str, root: &str) -> Self {
        let http = crate::integrations::http_client_builder()
            .connect_timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        SandboxShell {
            base: base_url.trim_end_matches('/').to_owned(),
            root: root.trim_end_matches('/').to_owned(),
            http,
        }
    }
}

impl Shell for SandboxShell {
    fn provider(&self) -> &'static str {
        "sandbox-agent"
    }

    fn root(&self) -> &str {
        &self.root
    }

    fn run(&self, cmd: Cmd) -> BoxFuture<'_, Result<CmdOutput, WorkspaceError>> {
        Box::pin(async move {
            let timeout = if cmd.timeout.is_zero() { Duration::from_secs(600) } else { cmd.timeout };
            // The server starts processes in an existing directory only: create the parent chain first.
            let (program, args) = match &cmd.cwd {
                Some(cwd) => {
                    let mut args =
                        vec!["-c".to_owned(), "mkdir -p -- \"$0\" && cd -- \"$0\" && exec \"$@\"".to_owned()];
                    args.push(cwd.clone());
                    args.push(cmd.program.clone());
                    args.extend(cmd.args.iter().cloned());
                    ("sh".to_owned(), args)
                }
                None => (cmd.program.clone(), cmd.args.clone()),
            };
            let env: serde_json::Map<String, serde_json::Value> =
                cmd.env.iter().map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone()))).collect();
            let body = json!({
                "command": program,
                "args": args,
                "cwd": "/",
                "env": env,
                "timeoutMs": timeout.as_millis() as u64,
            });
            let res = self
                .http
                .post(format!("{}/v1/processes/run", self.base))
                .json(&body)
                .timeout(timeout + Duration::from_secs(10))
                .send()
                .await
                .map_err(|e| WorkspaceError::Unreachable(e.without_url().to_string()))?;
            let status = res.status();
            let text = res.text().await.map_err(|e| WorkspaceError::Unreachable(e.to_string()))?;
            if !status.is_success() {
                return Err(WorkspaceError::Unreachable(format!("processes/run answered {status}: {text}")));
            }
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| WorkspaceError::Unreachable(format!("processes/run: {e}: {text}")))?;
            if v["timedOut"].as_bool() == Some(true) {
                return Err(WorkspaceError::Git {
                    op: "run",
                    message: format!("{} timed out after {} s", cmd.program, timeout.as_secs()),
                });
            }
            Ok(CmdOutput {
                code: v["exitCode"].as_i64().unwrap_or(-1) as i32,
                stdout: v["stdout"].as_str().unwrap_or_default().to_owned(),
                stderr: v["stderr"].as_str().unwrap_or_default().to_owned(),
            })
        })
    }
}
