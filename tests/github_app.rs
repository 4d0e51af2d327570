//! GitHub App authentication against the local GitHub-compatible server: installation lookup and token exchange with
//! a JWT the fake verifies, tokens cached across calls, a full sync through `AppClient`, a wrong key and an expired
//! JWT refused, and the serve flags' startup errors.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use foundry::actors::github_data::{ConnectGitHub, GetSyncStatus, GitHubData, GitHubService, StartSync};
use foundry::actors::organization::{CreateOrganization, OrgKind};
use foundry::actors::Domain;
use foundry::integrations::github::app::{AppClient, GitHubApp};
use foundry::integrations::github::client::{AccountKind, AccountRef, GitHubApi, GitHubError, PullState, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, Fixture};

const ORG: &str = "acme";
const APP_ID: &str = "424242";
const INSTALLATION: i64 = 77;
/// The fake's fixed token, which the App client never uses.
const FIXED_TOKEN: &str = "not-the-app";
const KEY: &str = include_str!("fixtures/github-app-test-key.pem");
const OTHER_KEY: &str = include_str!("fixtures/github-app-test-key-pkcs8.pem");

fn policy() -> RetryPolicy {
    RetryPolicy { backoff: Duration::from_millis(1), ..Default::default() }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A fake with the App (public half of `KEY`) installed on `acme`.
async fn fake(fixture: Fixture) -> FakeGitHub {
    let gh = FakeGitHub::start(fixture, FIXED_TOKEN).await;
    let app = GitHubApp::new(APP_ID, KEY, &gh.base_url()).unwrap();
    gh.configure_app(APP_ID, app.public_key_der());
    gh.set_installation(ORG, INSTALLATION);
    gh
}

fn new_app(gh: &FakeGitHub, key: &str) -> Arc<GitHubApp> {
    Arc::new(GitHubApp::with_policy(APP_ID, key, &gh.base_url(), policy()).unwrap())
}

#[actix_rt::test]
async fn installation_lookup_and_token_exchange_are_cached() {
    let gh = fake(Fixture::generate(ORG, 3, 2, 4)).await;
    let app = new_app(&gh, KEY);
    assert_eq!(app.installation_for(ORG, AccountKind::Organization).await.unwrap(), INSTALLATION);
    assert_eq!(app.installation_for("ACME", AccountKind::User).await.unwrap(), INSTALLATION);
    let unknown = app.installation_for("other", AccountKind::Organization).await.unwrap_err();
    assert!(matches!(unknown, GitHubError::NotFound(_)), "{unknown:?}");
    let token = app.installation_token(INSTALLATION).await.unwrap();
    assert!(token.starts_with("ghs_") && token.len() == 40, "{token}");
    let before = gh.request_count();
    assert_eq!(app.installation_token(INSTALLATION).await.unwrap(), token, "served from the cache");
    assert_eq!(app.installation_for(ORG, AccountKind::Organization).await.unwrap(), INSTALLATION);
    assert_eq!(gh.request_count(), before, "neither lookup reached GitHub again");
    let missing = app.installation_token(999).await.unwrap_err();
    assert!(matches!(missing, GitHubError::NotFound(_)), "{missing:?}");

    // Through AppClient: the first call costs an installation lookup and a token exchange, later ones nothing extra.
    let client = AppClient::new(new_app(&gh, KEY));
    let before = gh.request_count();
    let repo = client.get_repo("acme/repo-001").await.unwrap();
    assert_eq!(repo.full_name, "acme/repo-001");
    assert_eq!(gh.request_count() - before, 3, "installation + access token + the call");
    let before = gh.request_count();
    assert_eq!(client.list_branches("acme/repo-001").await.unwrap().len(), 3);
    assert_eq!(client.list_pulls("acme/repo-001", PullState::All, 100).await.unwrap().len(), 4);
    assert_eq!(client.get_pull("acme/repo-001", 2).await.unwrap().number, 2);
    assert_eq!(client.list_org_members(ORG).await.unwrap().len(), 5);
    assert_eq!(client.list_org_repos(ORG).await.unwrap().len(), 3);
    let (page, next) = client
        .repos_page(&AccountRef { kind: AccountKind::Organization, login: ORG.into(), id: None }, None)
        .await
        .unwrap();
    assert_eq!((page.len(), next), (3, None));
    assert_eq!(gh.request_count() - before, 6, "one request per call: no further token requests");
    // Calls that name no owner cannot pick an installation.
    let err = client.list_user_repos().await.unwrap_err();
    assert!(matches!(err, GitHubError::Unexpected { status: 0, .. }), "{err:?}");
    assert!(client.list_installation_repos().await.is_err());
    gh.stop().await;
}

fn user_account() -> AccountRef {
    AccountRef { kind: AccountKind::User, login: ORG.into(), id: None }
}

#[actix_rt::test]
async fn user_accounts_list_their_installation_repositories() {
    let gh = fake(Fixture::generate(ORG, 120, 1, 0)).await;
    let client = AppClient::new(new_app(&gh, KEY));
    let (first, next) = client.repos_page(&user_account(), None).await.unwrap();
    assert_eq!(first.len(), 100);
    let next = next.expect("a second page");
    assert!(next.contains("/installation/repositories"), "{next}");
    let (second, last) = client.repos_page(&user_account(), Some(next)).await.unwrap();
    assert_eq!((second.len(), last), (20, None));
    gh.stop().await;
}

#[actix_rt::test]
async fn a_full_sync_runs_through_the_app() {
    let gh = fake(Fixture::generate(ORG, 12, 3, 4)).await;
    let (rt, _dir) = support::runtime(2);
    rt.provide(Arc::new(GitHubService(Arc::new(AppClient::new(new_app(&gh, KEY))))));
    let domain = Domain::without_agent(rt.clone());
    let org =
        CreateOrganization { login: ORG.into(), display_name: "Acme".into(), kind: OrgKind::Organization, owner: None };
    domain.orgs.mutate(&ORG.to_owned(), org).await.unwrap();
    let github = rt.registry::<GitHubData>();
    github
        .mutate(
            &ORG.to_owned(),
            ConnectGitHub {
                login: ORG.into(),
                kind: AccountKind::Organization,
                account_id: gh.fixture().owner_id as i64,
                by: None,
            },
        )
        .await
        .unwrap();
    let generation = github.exec(&ORG.to_owned(), StartSync).await.unwrap();
    let mut status = None;
    for _ in 0..3000 {
        let s = github.read(&ORG.to_owned(), GetSyncStatus).await.unwrap();
        if s.meta.generation == generation && s.meta.status != "syncing" {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let status = status.expect("the sync finished");
    assert_eq!(status.meta.status, "synced", "{:?}", status.meta.last_error);
    assert_eq!((status.repositories, status.branches, status.pull_requests, status.members), (12, 12 * 4, 12 * 4, 5));
    gh.stop().await;
}

#[actix_rt::test]
async fn a_wrong_key_is_unauthorized() {
    let gh = fake(Fixture::generate(ORG, 1, 1, 1)).await;
    let impostor = new_app(&gh, OTHER_KEY);
    let err = impostor.installation_for(ORG, AccountKind::Organization).await.unwrap_err();
    assert_eq!(err, GitHubError::Unauthorized);
    assert_eq!(impostor.installation_token(INSTALLATION).await.unwrap_err(), GitHubError::Unauthorized);
    let err = AppClient::new(impostor).get_repo("acme/repo-000").await.unwrap_err();
    assert_eq!(err, GitHubError::Unauthorized);
    // The wrong app id with the right key is refused too.
    let stranger = GitHubApp::with_policy("1", KEY, &gh.base_url(), policy()).unwrap();
    assert_eq!(stranger.installation_token(INSTALLATION).await.unwrap_err(), GitHubError::Unauthorized);
    gh.stop().await;
}

#[actix_rt::test]
async fn the_fake_refuses_expired_and_forged_jwts() {
    let gh = fake(Fixture::generate(ORG, 1, 1, 1)).await;
    let app = new_app(&gh, KEY);
    let http = foundry::integrations::http_client_builder().build().unwrap();
    let post = |jwt: String| {
        http.post(format!("{}/app/installations/{INSTALLATION}/access_tokens", gh.base_url()))
            .bearer_auth(jwt)
            .header("accept", "application/vnd.github+json")
            .send()
    };
    let message = |resp: reqwest::Response| async move {
        let status = resp.status().as_u16();
        (status, resp.json::<serde_json::Value>().await.unwrap()["message"].as_str().unwrap_or_default().to_owned())
    };
    // A valid JWT works over plain HTTP too.
    let resp = post(app.jwt(now()).unwrap()).await.unwrap();
    assert_eq!(resp.status(), 201);
    let token = resp.json::<serde_json::Value>().await.unwrap()["token"].as_str().unwrap().to_owned();
    // Issued an hour ago: expired 51 minutes ago.
    let (status, text) = message(post(app.jwt(now() - 3600).unwrap()).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(text.contains("'exp'"), "{text}");
    // Issued in the future.
    let (status, text) = message(post(app.jwt(now() + 600).unwrap()).await.unwrap()).await;
    assert_eq!(status, 401);
    assert!(text.contains("'iat'"), "{text}");
    // A tampered signature, a missing one, and a token instead of a JWT.
    let jwt = app.jwt(now()).unwrap();
    let (head, sig) = jwt.rsplit_once('.').unwrap();
    let flipped = if sig.starts_with('A') { "B" } else { "A" };
    for forged in [format!("{head}.{flipped}{}", &sig[1..]), format!("{head}."), token.clone(), FIXED_TOKEN.into()] {
        let (status, text) = message(post(forged).await.unwrap()).await;
        assert_eq!((status, text.as_str()), (401, "A JSON web token could not be decoded"));
    }
    // The issued installation token works on the API, and a JWT does not.
    let api = |auth: String| http.get(format!("{}/repos/acme/repo-000", gh.base_url())).bearer_auth(auth).send();
    assert_eq!(api(token).await.unwrap().status(), 200);
    assert_eq!(api(jwt).await.unwrap().status(), 401);
    gh.stop().await;
}

/// Runs `foundry serve` with `args`, expecting it to refuse to start; returns its stderr.
fn serve_refuses(args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let mut out = Command::new(env!("CARGO_BIN_EXE_foundry"))
        .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn", "--data-dir"])
        .arg(dir.path())
        .args(args)
        .env_remove("FOUNDRY_GITHUB_TOKEN")
        .env_remove("FOUNDRY_GITHUB_APP_ID")
        .env_remove("FOUNDRY_GITHUB_APP_PRIVATE_KEY_FILE")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A server that wrongly starts would run forever: give it a bounded time to exit.
    for _ in 0..600 {
        if out.try_wait().unwrap().is_some() {
            let out = out.wait_with_output().unwrap();
            assert!(!out.status.success(), "serve exited successfully with {args:?}");
            return String::from_utf8_lossy(&out.stderr).into_owned();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = out.kill();
    panic!("serve started with {args:?}");
}

#[test]
fn serve_flags_refuse_bad_app_configurations() {
    let key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/github-app-test-key.pem");
    let err = serve_refuses(&["--github-app-id", "1"]);
    assert!(err.contains("--github-app-id and --github-app-private-key-file go together"), "{err}");
    let err = serve_refuses(&["--github-app-id", "1", "--github-app-private-key-file", key, "--github-token", "t"]);
    assert!(err.contains("exclusive"), "{err}");
    let err = serve_refuses(&["--github-app-id", "1", "--github-app-private-key-file", "/nonexistent/key.pem"]);
    assert!(err.contains("cannot read the GitHub App private key /nonexistent/key.pem"), "{err}");
    let not_a_key = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/README.md");
    let err = serve_refuses(&["--github-app-id", "1", "--github-app-private-key-file", not_a_key]);
    assert!(err.contains("invalid GitHub App private key"), "{err}");
}
