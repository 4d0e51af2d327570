//! `foundry serve --demo`: the whole product loop offline. The local GitHub-compatible server runs in-process on a
//! fixed loopback port with a few sample repositories (real git history, kept under `<data>/demo-github` across
//! restarts; its pull requests live in memory), foundry's GitHub sync, pull requests and webhooks point at it, and
//! tasks get local workspaces with the built-in agent. A newcomer goes from nothing to a merged pull request on their
//! own machine (README: "Try the whole loop offline").

use std::net::SocketAddr;
use std::path::Path;

use crate::integrations::github::fake::{FakeGitHub, FakeRepo, Fixture};

/// The GitHub account (an organization) holding the sample repositories.
pub const DEMO_OWNER: &str = "demo";

/// The sample repositories.
pub const SAMPLE_REPOS: [&str; 3] = ["hello-rust", "website", "handbook"];

/// A running demo GitHub and the credentials foundry uses with it.
pub struct DemoGitHub {
    pub server: FakeGitHub,
    /// The token foundry's sync, pull requests and git use (the demo server accepts only it).
    pub token: String,
    /// The secret its webhooks are signed with.
    pub webhook_secret: String,
}

/// Starts the demo GitHub on `addr` with its repositories under `data_dir/demo-github`, delivering webhooks to
/// `webhook_url`.
pub async fn start(addr: SocketAddr, data_dir: &Path, webhook_url: &str) -> std::io::Result<DemoGitHub> {
    let repos = SAMPLE_REPOS
        .iter()
        .enumerate()
        .map(|(i, name)| FakeRepo {
            id: 7000 + i as u64,
            name: (*name).to_owned(),
            private: false,
            default_branch: "main".into(),
            branches: vec!["main".into()],
            pulls: Vec::new(),
        })
        .collect();
    let fixture = Fixture { owner: DEMO_OWNER.into(), repos, members: Vec::new() };
    // Random per run: nothing outside this process can use the demo server's API or webhook.
    let token = format!("ghs_demo_{}", random_hex());
    let webhook_secret = random_hex();
    let server = FakeGitHub::start_on(fixture, &token, addr).await?;
    server.enable_git(data_dir.join("demo-github"))?;
    server.set_webhook(webhook_url, &webhook_secret);
    Ok(DemoGitHub { server, token, webhook_secret })
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator; if it fails the demo still works, only with a guessable secret on a loopback port.
    let _ = getrandom::getrandom(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
