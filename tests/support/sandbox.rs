//! The real sandbox-agent server for tests: the binary comes from `SANDBOX_AGENT_BIN` (`.ci/run` installs it from
//! npm); without it, `start` prints why and returns `None` so the test can return early. Under `CI=true` a missing
//! binary or a failed mock install fails the test instead: CI must never pass by skipping.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use foundry::integrations::agent::SandboxAgent;

pub struct Server {
    child: Child,
    bin: String,
    port: u16,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Kills the server and starts a new one on the same port (it remembers nothing of the old one's ACP servers).
    pub async fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for _ in 0..50 {
            self.child = spawn(&self.bin, self.port);
            if wait_healthy(&self.url, &mut self.child).await {
                return;
            }
            // The port may not be free yet: try again.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("sandbox-agent did not come back on {}", self.url);
    }

    /// Every envelope the ACP server `server` has streamed so far (read until the stream is quiet).
    pub async fn envelopes(&self, server: &str) -> Vec<serde_json::Value> {
        let client = foundry::integrations::http_client_builder().build().expect("http client");
        let mut res = client
            .get(format!("{}/v1/acp/{server}", self.url))
            .header("accept", "text/event-stream")
            .send()
            .await
            .expect("stream request");
        assert!(res.status().is_success(), "stream of {server}: {}", res.status());
        let mut raw = Vec::new();
        while let Ok(Ok(Some(chunk))) = tokio::time::timeout(Duration::from_millis(300), res.chunk()).await {
            raw.extend_from_slice(&chunk);
        }
        String::from_utf8_lossy(&raw)
            .split("\n\n")
            .filter_map(|event| {
                let data: Vec<&str> = event.lines().filter_map(|l| l.strip_prefix("data:")).map(str::trim).collect();
                serde_json::from_str(&data.join("\n")).ok()
            })
            .collect()
    }

    /// The requests the mock agent echoed on `server` (it echoes each as a `mock/echo` notification), in order.
    pub async fn echoed(&self, server: &str) -> Vec<serde_json::Value> {
        self.envelopes(server)
            .await
            .into_iter()
            .filter(|e| e["method"] == "mock/echo")
            .map(|e| e["params"]["message"].clone())
            .collect()
    }
}

/// Skips (returns `None`) outside CI; fails under `CI=true`.
fn unavailable(why: &str) -> Option<Server> {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true but the sandbox-agent tests cannot run: {why}");
    }
    println!("skipped: {why}");
    None
}

fn spawn(bin: &str, port: u16) -> Child {
    Command::new(bin)
        .args(["server", "--no-token", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sandbox-agent starts")
}

/// Whether the server became healthy (false if it exited first, e.g. because the port was taken).
async fn wait_healthy(url: &str, child: &mut Child) -> bool {
    let agent = SandboxAgent::new(url, "mock");
    for _ in 0..200 {
        if agent.health().await.is_ok() {
            return true;
        }
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sandbox-agent did not become healthy on {url}");
}

/// Starts `sandbox-agent server --no-token` on a free loopback port, or explains why it cannot.
pub async fn start(install_mock: bool) -> Option<Server> {
    let Ok(bin) = std::env::var("SANDBOX_AGENT_BIN") else {
        return unavailable("SANDBOX_AGENT_BIN is not set (.ci/run installs @sandbox-agent/cli-linux-x64 from npm)");
    };
    if install_mock {
        if let Err(why) = install_mock_agent(&bin).await {
            return unavailable(&why);
        }
    }
    for _ in 0..10 {
        let port = TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port();
        let mut child = spawn(&bin, port);
        let url = format!("http://127.0.0.1:{port}");
        if wait_healthy(&url, &mut child).await {
            return Some(Server { child, bin, port, url });
        }
    }
    panic!("sandbox-agent did not start");
}

/// Installs the built-in `mock` agent (local, but never let a hung install hang the suite).
async fn install_mock_agent(bin: &str) -> Result<(), String> {
    let mut install = Command::new(bin)
        .args(["install-agent", "mock"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("`{bin} install-agent mock` did not start: {e}"))?;
    for _ in 0..600 {
        match install.try_wait() {
            Ok(Some(status)) if status.success() => return Ok(()),
            Ok(Some(status)) => return Err(format!("`{bin} install-agent mock` failed ({status})")),
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => return Err(format!("`{bin} install-agent mock`: {e}")),
        }
    }
    let _ = install.kill();
    Err(format!("`{bin} install-agent mock` hung"))
}
