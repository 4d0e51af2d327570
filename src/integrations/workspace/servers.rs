//! sandbox-agent servers foundry starts itself: one per task (`serve --sandbox-agent-bin`), each on a free loopback
//! port with its own `HOME` (the agent's credentials and configuration stay per task) and the installed agents shared
//! (`XDG_DATA_HOME`), started on first use and stopped when the task's workspace is released.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::shell::SandboxShell;
use super::WorkspaceError;

struct Running {
    child: tokio::process::Child,
    url: String,
    shell: Arc<SandboxShell>,
}

/// The servers, by workspace id.
pub struct SandboxServers {
    bin: PathBuf,
    /// Holds `homes/<id>` and the workspaces (`root` of their shells).
    root: PathBuf,
    /// Where agents are installed (shared by every server).
    data_home: Option<PathBuf>,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
}

impl SandboxServers {
    /// `bin`: the `sandbox-agent` binary; `root`: a directory on this host for the servers' homes and workspaces.
    pub fn new(bin: impl Into<PathBuf>, root: impl Into<PathBuf>) -> Self {
        let data_home = std::env::var_os("XDG_DATA_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")));
        SandboxServers {
            bin: bin.into(),
            root: root.into(),
            data_home,
            running: tokio::sync::Mutex::new(HashMap::new()),
        }
    }

    pub fn root(&self) -> String {
        self.root.to_string_lossy().trim_end_matches('/').to_owned()
    }

    /// The URL of `id`'s server, started (and waited for) if it is not running.
    pub async fn url_for(&self, id: &str) -> Result<String, WorkspaceError> {
        Ok(self.ensure(id).await?.0)
    }

    /// The shell running commands on `id`'s server.
    pub async fn shell_for(&self, id: &str) -> Result<Arc<SandboxShell>, WorkspaceError> {
        Ok(self.ensure(id).await?.1)
    }

    async fn ensure(&self, id: &str) -> Result<(String, Arc<SandboxShell>), WorkspaceError> {
        // Held while a server starts: a second caller for the same task waits for it instead of starting another.
        let mut running = self.running.lock().await;
        if let Some(r) = running.get_mut(id) {
            if matches!(r.child.try_wait(), Ok(None)) {
                return Ok((r.url.clone(), r.shell.clone()));
            }
            running.remove(id);
        }
        let r = self.start(id).await?;
        let out = (r.url.clone(), r.shell.clone());
        running.insert(id.to_owned(), r);
        Ok(out)
    }

    async fn start(&self, id: &str) -> Result<Running, WorkspaceError> {
        let unreachable = |what: String| WorkspaceError::Unreachable(what);
        let home = self.root.join("homes").join(id);
        std::fs::create_dir_all(&home).map_err(|e| unreachable(format!("cannot create {}: {e}", home.display())))?;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| unreachable(format!("no free port: {e}")))?
            .port();
        let mut command = tokio::process::Command::new(&self.bin);
        command
            .args(["server", "--no-token", "--no-telemetry", "-H", "127.0.0.1", "-p", &port.to_string()])
            .env("HOME", &home)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        if let Some(data) = &self.data_home {
            command.env("XDG_DATA_HOME", data);
        }
        let mut child =
            command.spawn().map_err(|e| unreachable(format!("cannot start {}: {e}", self.bin.display())))?;
        let url = format!("http://127.0.0.1:{port}");
        let http = crate::integrations::http_client_builder()
            .timeout(Duration::from_secs(2))
            .build()
            .map_err(|e| unreachable(e.to_string()))?;
        for _ in 0..200 {
            if let Ok(Some(status)) = child.try_wait() {
                return Err(unreachable(format!("the sandbox-agent server for {id} exited at start ({status})")));
            }
            if http.get(format!("{url}/v1/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                let shell = Arc::new(SandboxShell::new(&url, &self.root()));
                tracing::info!(workspace = id, %url, "started a sandbox-agent server");
                return Ok(Running { child, url, shell });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill().await;
        Err(unreachable(format!("the sandbox-agent server for {id} did not become healthy")))
    }

    /// Stops `id`'s server (if running).
    pub async fn stop(&self, id: &str) {
        let removed = self.running.lock().await.remove(id);
        if let Some(mut r) = removed {
            let _ = r.child.kill().await;
        }
    }

    /// Stops every server (at shutdown: they are this process's children and would outlive it).
    pub async fn stop_all(&self) {
        let all: Vec<Running> = self.running.lock().await.drain().map(|(_, r)| r).collect();
        for mut r in all {
            let _ = r.child.kill().await;
        }
    }

    /// How many servers run now.
    pub async fn running(&self) -> usize {
        self.running.lock().await.len()
    }
}
