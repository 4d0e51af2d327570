//! The real sandbox-agent server for tests: the binary comes from `SANDBOX_AGENT_BIN` (`.ci/run` installs it from
//! npm); without it, `start` prints why and returns `None` so the test can return early.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use foundry::integrations::agent::SandboxAgent;

pub struct Server {
    child: Child,
    pub url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `sandbox-agent server --no-token` on a free loopback port, or explains why it cannot.
pub async fn start(install_mock: bool) -> Option<Server> {
    let Ok(bin) = std::env::var("SANDBOX_AGENT_BIN") else {
        println!("skipped: SANDBOX_AGENT_BIN is not set (.ci/run installs @sandbox-agent/cli-linux-x64 from npm)");
        return None;
    };
    if install_mock && !install_mock_agent(&bin).await {
        return None;
    }
    let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
    let child = Command::new(&bin)
        .args(["server", "--no-token", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let server = Server { child, url: format!("http://127.0.0.1:{port}") };
    let agent = SandboxAgent::new(&server.url, "mock");
    for _ in 0..200 {
        if agent.health().await.is_ok() {
            return Some(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("sandbox-agent did not become healthy on {}", server.url);
}

/// Installs the built-in `mock` agent (local, but never let a hung install hang the suite).
async fn install_mock_agent(bin: &str) -> bool {
    let Ok(mut install) =
        Command::new(bin).args(["install-agent", "mock"]).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
    else {
        return false;
    };
    for _ in 0..600 {
        match install.try_wait() {
            Ok(Some(status)) if status.success() => return true,
            Ok(Some(_)) => {
                println!("skipped: `{bin} install-agent mock` failed");
                return false;
            }
            Ok(None) => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(_) => break,
        }
    }
    let _ = install.kill();
    println!("skipped: `{bin} install-agent mock` hung");
    false
}
