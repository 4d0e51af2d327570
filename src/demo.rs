//! `foundry serve --demo`: the whole product loop offline. The local GitHub-compatible server runs in-process on a
//! fixed loopback port with a few sample repositories (real git history, kept under `<data>/demo-github` across
//! restarts; its pull requests live in memory), foundry's GitHub sync, pull requests and webhooks point at it, and
//! tasks get local workspaces with the built-in agent. A newcomer goes from nothing to a merged pull request on their
//! own machine (README: "Try the whole loop offline").
//!
//! Dev sign-in signs in at the demo GitHub ([`DemoGitHub::dev_sign_in`]): each login becomes a GitHub user there, an
//! admin of the `demo` organization, with an OAuth token foundry stores like any GitHub sign-in's. Connecting `demo`
//! then passes the same check as on github.com (the caller's admin membership, asked of the demo GitHub with their
//! token); nothing in foundry is relaxed for the demo.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::http::{DevGitHub, DevIdentity};
use crate::integrations::github::fake::{FakeGitHub, FakeMember, FakeOAuthUser, FakeRepo, Fixture};
use crate::integrations::github::oauth::{GitHubOAuth, OAuthConfig, SIGN_IN_SCOPES};

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
    /// The OAuth app registered on it: (client id, client secret).
    pub oauth_app: (String, String),
}

/// Dev sign-in through `server`'s OAuth app `(client id, secret)`: a login signs in as the GitHub user of that name
/// there (its stable [`account_id`](crate::integrations::github::fake::account_id)); with `admin_of_owner`, that user
/// is first made an admin of the fixture organization.
pub fn dev_sign_in_via(server: &FakeGitHub, oauth_app: (&str, &str), admin_of_owner: bool) -> DevGitHub {
    let base = server.base_url();
    let oauth = GitHubOAuth::new(OAuthConfig {
        client_id: oauth_app.0.to_owned(),
        client_secret: oauth_app.1.to_owned(),
        web_base: base.clone(),
        api_base: base,
        redirect_uri: None,
        scopes: SIGN_IN_SCOPES.into(),
    });
    let server = server.clone();
    let issue_code = move |who: &DevIdentity<'_>| {
        let mut user = FakeOAuthUser::named(who.login);
        user.name = who.name.map(str::to_owned);
        user.public_email = who.email.map(str::to_owned);
        if admin_of_owner {
            server.add_member(FakeMember { id: user.id as u64, login: user.login.clone(), admin: true });
        }
        server.issue_code_with_scope(user, SIGN_IN_SCOPES)
    };
    DevGitHub { oauth: Arc::new(oauth), issue_code: Arc::new(issue_code) }
}

impl DemoGitHub {
    /// Dev sign-in at the demo GitHub, every login an admin of `demo` there.
    pub fn dev_sign_in(&self) -> DevGitHub {
        dev_sign_in_via(&self.server, (&self.oauth_app.0, &self.oauth_app.1), true)
    }
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
    let fixture = Fixture { repos, ..Fixture::new(DEMO_OWNER) };
    // Random per run: nothing outside this process can use the demo server's API, OAuth app or webhook.
    let token = format!("ghs_demo_{}", random_hex());
    let webhook_secret = random_hex();
    let oauth_app = (format!("demo-{}", &random_hex()[..12]), random_hex());
    let server = FakeGitHub::start_on(fixture, &token, addr).await?;
    server.enable_git(data_dir.join("demo-github"))?;
    server.set_webhook(webhook_url, &webhook_secret);
    server.configure_oauth_app(&oauth_app.0, &oauth_app.1);
    Ok(DemoGitHub { server, token, webhook_secret, oauth_app })
}

fn random_hex() -> String {
    let mut bytes = [0u8; 16];
    // The OS generator; if it fails the demo still works, only with a guessable secret on a loopback port.
    let _ = getrandom::getrandom(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
