//! A command runner process: starts the commands of [`LocalShell`](super::LocalShell) on the service's behalf.
//!
//! Why a separate process: starting a program costs the starting process time in proportion to its open files —
//! the child inherits the descriptor table and the kernel closes every close-on-exec descriptor at `exec`, each one
//! a SQLite file with POSIX locks — and the thread that spawns waits for all of it. A service with thousands of live
//! actors holds two descriptors each: measured here, one spawn took ~2 ms with 6 descriptors open and ~20 ms with
//! 12,000, and git runs several times per turn. The runner is started once, early, with a handful of descriptors;
//! every command starts there, at the cost of a few descriptors, whatever the service holds.
//!
//! Protocol: one JSON object per line. Requests on the runner's stdin (`{"run": {id, program, args, cwd, env,
//! timeoutMs}}` or `{"cancel": id}`); answers on its stdout (`{"id", "code", "stdout", "stderr"}` or `{"id",
//! "error", "timedOut"}`), in completion order. The runner exits when its stdin closes (the service went away),
//! killing what it runs. If the runner dies, calls in flight fail as unreachable and the next call starts a new one.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::shell::{Cmd, CmdOutput};
use super::WorkspaceError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RunRequest {
    id: u64,
    program: String,
    args: Vec<String>,
    cwd: Option<String>,
    env: Vec<(String, String)>,
    timeout_ms: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
enum Request {
    Run(RunRequest),
    Cancel(u64),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Answer {
    id: u64,
    #[serde(default)]
    code: i32,
    #[serde(default)]
    stdout: String,
    #[serde(default)]
    stderr: String,
    /// The command could not be started or waited for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    #[serde(default)]
    timed_out: bool,
}

/// Runs `cmd` as a child of this process, to completion or its timeout (the child is killed then, and when the
/// returned future is dropped). Used by the runner and by a [`LocalShell`](super::LocalShell) without one.
pub(super) async fn run_here(cmd: Cmd) -> Result<CmdOutput, WorkspaceError> {
    if let Some(cwd) = &cmd.cwd {
        // git clone creates its target, but a first clone needs the parent to exist.
        let _ = std::fs::create_dir_all(cwd);
    }
    let mut command = tokio::process::Command::new(&cmd.program);
    command
        .args(&cmd.args)
        .envs(cmd.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    if let Some(cwd) = &cmd.cwd {
        command.current_dir(cwd);
    }
    let child = command.spawn().map_err(|e| WorkspaceError::Unreachable(format!("cannot run {}: {e}", cmd.program)))?;
    let timeout = effective_timeout(cmd.timeout);
    match tokio::time::timeout(timeout, child.wait_with_output()).await {
        Ok(Ok(out)) => Ok(CmdOutput {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }),
        Ok(Err(e)) => Err(WorkspaceError::Unreachable(format!("{} failed to run: {e}", cmd.program))),
        Err(_) => Err(timed_out(&cmd.program, timeout)),
    }
}

fn effective_timeout(t: Duration) -> Duration {
    if t.is_zero() {
        Duration::from_secs(600)
    } else {
        t
    }
}

fn timed_out(program: &str, timeout: Duration) -> WorkspaceError {
    WorkspaceError::Git { op: "run", message: format!("{program} timed out after {} s", timeout.as_secs()) }
}

/// The runner's side: reads requests from stdin and answers on stdout until stdin closes. `foundry run-commands`.
pub async fn serve_stdio() -> std::io::Result<()> {
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let (answers, mut rx) = mpsc::unbounded_channel::<Answer>();
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(answer) = rx.recv().await {
            let Ok(mut line) = serde_json::to_vec(&answer) else { continue };
            line.push(b'\n');
            if out.write_all(&line).await.is_err() || out.flush().await.is_err() {
                return;
            }
        }
    });
    let running: Arc<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = Arc::default();
    while let Some(line) = lines.next_line().await? {
        match serde_json::from_str::<Request>(&line) {
            Ok(Request::Run(req)) => {
                let (answers, done) = (answers.clone(), running.clone());
                let id = req.id;
                let cmd = Cmd {
                    program: req.program,
                    args: req.args,
                    cwd: req.cwd,
                    env: req.env,
                    timeout: Duration::from_millis(req.timeout_ms),
                };
                let task = tokio::spawn(async move {
                    let answer = match run_here(cmd).await {
                        Ok(out) => {
                            Answer { id, code: out.code, stdout: out.stdout, stderr: out.stderr, ..Answer::default() }
                        }
                        Err(e @ WorkspaceError::Git { .. }) => {
                            Answer { id, error: Some(e.to_string()), timed_out: true, ..Answer::default() }
                        }
                        Err(e) => Answer { id, error: Some(e.to_string()), ..Answer::default() },
                    };
                    done.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    let _ = answers.send(answer);
                });
                running.lock().unwrap_or_else(|p| p.into_inner()).insert(id, task.abort_handle());
            }
            // Aborting the task drops the child, which kills it (`kill_on_drop`).
            Ok(Request::Cancel(id)) => {
                if let Some(task) = running.lock().unwrap_or_else(|p| p.into_inner()).remove(&id) {
                    task.abort();
                }
            }
            Err(e) => eprintln!("foundry run-commands: bad request: {e}"),
        }
    }
    // The service went away: stop what runs (dropping the tasks kills their children).
    for (_, task) in running.lock().unwrap_or_else(|p| p.into_inner()).drain() {
        task.abort();
    }
    writer.abort();
    Ok(())
}

/// The service's side: a connection to a runner process, started on first use and again after it died.
pub struct Runner {
    program: PathBuf,
    args: Vec<String>,
    next_id: AtomicU64,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

/// One runner process: its stdin (requests) and the calls waiting for answers.
struct Conn {
    pid: Option<u32>,
    requests: mpsc::UnboundedSender<Request>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>>,
    /// Cleared (before `waiting` is emptied) once the runner is gone.
    alive: Arc<AtomicBool>,
}

impl Runner {
    /// A runner started as `program args…` (e.g. this executable with `run-commands`). Start it early, while the
    /// process has few descriptors open: [`Runner::warm_up`].
    pub fn new(program: impl Into<PathBuf>, args: Vec<String>) -> Self {
        Runner { program: program.into(), args, next_id: AtomicU64::new(1), conn: tokio::sync::Mutex::new(None) }
    }

    /// Starts the runner process now (otherwise the first command starts it).
    pub async fn warm_up(&self) -> Result<(), WorkspaceError> {
        self.conn().await.map(|_| ())
    }

    /// The runner process's id, starting it if needed.
    pub async fn process_id(&self) -> Result<Option<u32>, WorkspaceError> {
        Ok(self.conn().await?.pid)
    }

    async fn conn(&self) -> Result<Arc<Conn>, WorkspaceError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref().filter(|c| c.alive.load(Ordering::SeqCst)) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(self.start()?);
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn start(&self) -> Result<Conn, WorkspaceError> {
        let unreachable =
            |e: std::io::Error| WorkspaceError::Unreachable(format!("cannot start the command runner: {e}"));
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(unreachable)?;
        let missing = || unreachable(std::io::Error::other("no pipe to the runner"));
        let pid = child.id();
        let mut stdin = child.stdin.take().ok_or_else(missing)?;
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Answer>>>> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        let (requests, mut rx) = mpsc::unbounded_channel::<Request>();
        // Writes requests until the runner is gone; reading answers ends with it too.
        let (writing, written) = (alive.clone(), waiting.clone());
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let Ok(mut line) = serde_json::to_vec(&req) else { continue };
                line.push(b'\n');
                if stdin.write_all(&line).await.is_err() {
                    break;
                }
            }
            writing.store(false, Ordering::SeqCst);
            written.lock().unwrap_or_else(|p| p.into_inner()).clear();
        });
        let (answered, reading) = (waiting.clone(), alive.clone());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Answer>(&line) {
                    Ok(answer) => {
                        if let Some(tx) = answered.lock().unwrap_or_else(|p| p.into_inner()).remove(&answer.id) {
                            let _ = tx.send(answer);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "the command runner answered garbage"),
                }
            }
            // The runner is gone: calls waiting get an error (their senders drop), and the child is reaped.
            reading.store(false, Ordering::SeqCst);
            answered.lock().unwrap_or_else(|p| p.into_inner()).clear();
            let status = child.wait().await;
            tracing::warn!(?status, "the command runner stopped; the next command starts a new one");
        });
        Ok(Conn { pid, requests, waiting, alive })
    }

    /// Runs `cmd` in the runner, to completion or its timeout; dropping the future kills the command.
    pub async fn run(&self, cmd: Cmd) -> Result<CmdOutput, WorkspaceError> {
        let conn = self.conn().await?;
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        conn.waiting.lock().unwrap_or_else(|p| p.into_inner()).insert(id, tx);
        let program = cmd.program.clone();
        let timeout = effective_timeout(cmd.timeout);
        let req = RunRequest {
            id,
            program: cmd.program,
            args: cmd.args,
            cwd: cmd.cwd,
            env: cmd.env,
            timeout_ms: timeout.as_millis() as u64,
        };
        let gone = || WorkspaceError::Unreachable(format!("{program}: the command runner stopped"));
        // Checked after registering: a runner found dead here may have emptied `waiting` before the insert.
        if !conn.alive.load(Ordering::SeqCst) || conn.requests.send(Request::Run(req)).is_err() {
            conn.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            return Err(gone());
        }
        // If this future is dropped before the answer, the runner is told to kill the command.
        let mut guard = CancelOnDrop { conn: &conn, id: Some(id) };
        let answer = rx.await.map_err(|_| gone());
        guard.id = None;
        let answer = answer?;
        match answer.error {
            Some(_) if answer.timed_out => Err(timed_out(&program, timeout)),
            Some(message) => Err(WorkspaceError::Unreachable(message)),
            None => Ok(CmdOutput { code: answer.code, stdout: answer.stdout, stderr: answer.stderr }),
        }
    }
}

struct CancelOnDrop<'a> {
    conn: &'a Conn,
    id: Option<u64>,
}

impl Drop for CancelOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.conn.waiting.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
            let _ = self.conn.requests.send(Request::Cancel(id));
        }
    }
}
