//! Tenancy of GitHub accounts, against the local GitHub-compatible server: connecting an account needs proof, through
//! GitHub and with the caller's own OAuth token, that the caller controls it (an admin of the organization, the user
//! themself, or with the App configured an installation of it they may access); one organization per account; and
//! webhooks and installation events reach the organization connected to the account's numeric id, whatever the
//! organizations are called here and whatever the account's login is now. The OAuth tokens this relies on are sealed
//! at rest, and a server with another key says so instead of using them.

mod support;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use foundry::actors::github_data::webhook::sign;
use foundry::actors::github_data::GitHubService;
use foundry::integrations::github::app::{AppClient, GitHubApp};
use foundry::integrations::github::client::{GitHubApi, GitHubClient, RetryPolicy};
use foundry::integrations::github::fake::{FakeGitHub, FakeOAuthUser, Fixture};
use foundry::integrations::github::oauth::{GitHubOAuth, OAuthConfig, SIGN_IN_SCOPES};
use foundry::secrets::TokenCipher;
use serde_json::{json, Value};
use support::web::{start, TestServer};

const TOKEN: &str = "server-token";
const SECRET: &str = "hook-secret";
const APP_ID: &str = "424242";
const APP_KEY: &str = include_str!("fixtures/github-app-test-key.pem");

fn policy() -> RetryPolicy {
    RetryPolicy { backoff: Duration::from_millis(1), ..Default::default() }
}

/// The fake's `acme` (members dev-1, an admin, id 5001; dev-2..dev-5, members, ids 5002..5005) with its OAuth app,
/// and foundry signing in with GitHub there, syncing with the server token (or, with `app`, as the App), webhooks on.
async fn setup(app: bool) -> (TestServer, FakeGitHub) {
    let gh = FakeGitHub::start(Fixture::generate("acme", 2, 2, 1), TOKEN).await;
    gh.configure_oauth_app("client-1", "secret-1");
    let gh_base = gh.base_url();
    let github_app = app.then(|| {
        let app = Arc::new(GitHubApp::with_policy(APP_ID, APP_KEY, &gh_base, policy()).unwrap());
        gh.configure_app(APP_ID, app.public_key_der());
        app
    });
    let s = start(move |api, base| {
        api.webhook_secret = Some(SECRET.as_bytes().to_vec());
        api.auth.github = Some(Arc::new(GitHubOAuth::new(OAuthConfig {
            client_id: "client-1".into(),
            client_secret: "secret-1".into(),
            web_base: gh_base.clone(),
            api_base: gh_base.clone(),
            redirect_uri: Some(format!("{base}/v1/auth/github/callback")),
            scopes: SIGN_IN_SCOPES.into(),
        })));
        let sync: Arc<dyn GitHubApi> = match github_app {
            Some(app) => {
                api.github_app_id = Some(APP_ID.into());
                Arc::new(AppClient::new(app))
            }
            None => Arc::new(GitHubClient::with_policy(&gh_base, TOKEN, policy())),
        };
        api.domain.runtime.provide(Arc::new(GitHubService(sync)));
    })
    .await;
    gh.set_webhook(&format!("{}/v1/webhooks/github", s.base), SECRET);
    (s, gh)
}

fn header(res: &reqwest::Response, name: &str) -> String {
    res.headers().get(name).unwrap().to_str().unwrap().to_owned()
}

/// "Sign in with GitHub" as `user`, through the fake's authorize page and foundry's callback; the session token.
async fn github_sign_in(s: &TestServer, gh: &FakeGitHub, user: FakeOAuthUser) -> String {
    gh.set_browser_user(user);
    let res = s.client.get(format!("{}/v1/auth/github/start", s.base)).send().await.unwrap();
    let res = s.client.get(header(&res, "location")).send().await.unwrap();
    let res = s.client.get(header(&res, "location")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_owned()
}

fn member(id: i64, login: &str) -> FakeOAuthUser {
    FakeOAuthUser { id, ..FakeOAuthUser::named(login) }
}

async fn create_org(s: &TestServer, token: &str, id: &str) {
    let (st, body) = s.call("POST", "/v1/orgs", Some(token), Some(json!({ "id": id, "displayName": id }))).await;
    assert_eq!(st, 201, "{body}");
}

async fn connect(s: &TestServer, token: &str, org: &str, login: &str, kind: &str) -> (u16, Value) {
    let body = json!({ "login": login, "kind": kind });
    s.call("POST", &format!("/v1/orgs/{org}/github/connect"), Some(token), Some(body)).await
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// The github-data databases that exist (one per organization whose mirror was ever created).
fn mirrors(s: &TestServer) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(s.dir.path().join("github_data")) else { return Vec::new() };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.unwrap().file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".sqlite3").map(str::to_owned))
        .collect();
    names.sort();
    names
}

async fn audit_kinds(s: &TestServer, token: &str, org: &str) -> Vec<String> {
    let (_, page) = s.call("GET", &format!("/v1/orgs/{org}/audit?limit=500"), Some(token), None).await;
    page["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect()
}

async fn eventually<T, F: std::future::Future<Output = Option<T>>>(what: &str, mut probe: impl FnMut() -> F) -> T {
    for _ in 0..1000 {
        if let Some(v) = probe().await {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

async fn sync_done(s: &TestServer, token: &str, org: &str) -> Value {
    eventually("the sync to end", || async {
        let (_, st) = s.call("GET", &format!("/v1/orgs/{org}/github"), Some(token), None).await;
        let status = st["status"]["meta"]["status"].as_str().unwrap_or_default().to_owned();
        (status == "synced" || status == "error").then_some(st)
    })
    .await
}

/// The final status of the fake's `n`-th webhook delivery (0-based), once it was delivered.
async fn delivered(gh: &FakeGitHub, n: usize) -> (String, u16) {
    eventually("the webhook delivery", || async {
        gh.deliveries().get(n).map(|(event, label, status)| (format!("{event} {label}"), *status))
    })
    .await
}

/// A signed delivery posted as GitHub would; (status, body).
async fn post_webhook(s: &TestServer, event: &str, delivery: &str, payload: &Value) -> (u16, Value) {
    let body = payload.to_string();
    let res = s
        .client
        .post(format!("{}/v1/webhooks/github", s.base))
        .header("content-type", "application/json")
        .header("x-github-event", event)
        .header("x-github-delivery", delivery)
        .header("x-hub-signature-256", sign(SECRET.as_bytes(), body.as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    (status, res.json().await.unwrap_or(Value::Null))
}

#[actix_rt::test]
async fn connecting_an_account_needs_proof_of_control_and_one_organization_holds_it() {
    let (s, gh) = setup(false).await;
    let acme_id = gh.fixture().owner_id;

    // Mallory names her organization `acme`: organization ids are foundry's own, so that is allowed, and links nothing.
    let mallory = s.sign_in("mallory").await;
    create_org(&s, &mallory, "acme").await;
    let (st, body) = connect(&s, &mallory, "acme", "acme", "organization").await;
    assert_eq!((st, code(&body)), (403, "github_identity_required"), "no GitHub sign-in: {body}");
    // Signed in with GitHub, but not a member of the GitHub organization `acme`.
    let mallory = github_sign_in(&s, &gh, FakeOAuthUser::named("mallory")).await;
    create_org(&s, &mallory, "mallorys").await;
    let (st, body) = connect(&s, &mallory, "mallorys", "acme", "organization").await;
    assert_eq!((st, code(&body)), (403, "github_not_admin"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("not a member"), "{body}");
    // Nor someone else's user account.
    let (st, body) = connect(&s, &mallory, "mallorys", "dev-1", "user").await;
    assert_eq!((st, code(&body)), (403, "github_not_admin"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("signed in to GitHub as mallory"), "{body}");
    // A member who is not an admin cannot either.
    let dev2 = github_sign_in(&s, &gh, member(5002, "dev-2")).await;
    create_org(&s, &dev2, "team2").await;
    let (st, body) = connect(&s, &dev2, "team2", "acme", "organization").await;
    assert_eq!((st, code(&body)), (403, "github_not_admin"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("member of the GitHub organization acme"), "{body}");
    // Every refusal created nothing: no mirror, no event, nothing connected.
    assert!(mirrors(&s).is_empty(), "{:?}", mirrors(&s));
    let (_, st) = s.call("GET", "/v1/orgs/mallorys/github", Some(&mallory), None).await;
    assert_eq!(st, json!({ "connected": false }));
    assert!(!audit_kinds(&s, &dev2, "team2").await.contains(&"github.connected".to_owned()));

    // Her own user account she may connect.
    let (st, body) = connect(&s, &mallory, "mallorys", "MALLORY", "user").await;
    assert_eq!(st, 202, "{body}");
    let status = sync_done(&s, &mallory, "mallorys").await;
    assert_eq!(status["status"]["meta"]["accountLogin"], "mallory", "GitHub's spelling: {status}");
    assert_eq!(status["status"]["meta"]["accountId"], FakeOAuthUser::named("mallory").id);
    // Synced with the server's token, a user account lists that user's public repositories, never the token owner's.
    assert_eq!(
        (status["status"]["meta"]["status"].as_str(), status["status"]["repositories"].as_i64()),
        (Some("synced"), Some(0))
    );

    // dev-1 administers `acme` on GitHub: connecting it to an organization of any name works, recorded by id.
    let dev1 = github_sign_in(&s, &gh, member(5001, "dev-1")).await;
    create_org(&s, &dev1, "acme-team").await;
    let (st, body) = connect(&s, &dev1, "acme-team", "Acme", "organization").await;
    assert_eq!(st, 202, "{body}");
    let status = sync_done(&s, &dev1, "acme-team").await;
    assert_eq!(status["status"]["meta"]["status"], "synced", "{status}");
    assert_eq!(
        (status["status"]["meta"]["accountLogin"].as_str(), status["status"]["meta"]["accountId"].as_u64()),
        (Some("acme"), Some(acme_id))
    );
    let (_, org) = s.call("GET", "/v1/orgs/acme-team", Some(&dev1), None).await;
    assert_eq!((org["organizationId"].as_str(), org["profile"]["login"].as_str()), (Some("acme-team"), Some("acme")));
    let (_, page) = s.call("GET", "/v1/orgs/acme-team/audit?limit=500", Some(&dev1), None).await;
    let connected =
        page["events"].as_array().unwrap().iter().find(|e| e["kind"] == "github.connected").unwrap().clone();
    assert_eq!(connected["payload"]["accountId"], acme_id, "{connected}");

    // A second organization claiming the same account is refused, and nothing is created for it.
    create_org(&s, &dev1, "acme-two").await;
    let (st, body) = connect(&s, &dev1, "acme-two", "acme", "organization").await;
    assert_eq!((st, code(&body)), (409, "conflict"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("\"acme-team\""), "names the holder: {body}");
    assert_eq!(mirrors(&s), ["acme-team", "mallorys"]);
    // Re-connecting the holder is fine (idempotent).
    let (st, body) = connect(&s, &dev1, "acme-team", "acme", "organization").await;
    assert_eq!(st, 202, "{body}");
    sync_done(&s, &dev1, "acme-team").await;
    s.stop().await;
    gh.stop().await;
}

#[actix_rt::test]
async fn webhooks_route_by_account_id_through_renames_and_installation_events() {
    let (s, gh) = setup(false).await;
    let acme_id = gh.fixture().owner_id;
    // Mallory's organization is called `acme` (connected to her own account); dev-1's, connected to GitHub's `acme`,
    // is called `acme-team`.
    let mallory = github_sign_in(&s, &gh, FakeOAuthUser::named("mallory")).await;
    create_org(&s, &mallory, "acme").await;
    assert_eq!(connect(&s, &mallory, "acme", "mallory", "user").await.0, 202);
    sync_done(&s, &mallory, "acme").await;
    let dev1 = github_sign_in(&s, &gh, member(5001, "dev-1")).await;
    create_org(&s, &dev1, "acme-team").await;
    assert_eq!(connect(&s, &dev1, "acme-team", "acme", "organization").await.0, 202);
    sync_done(&s, &dev1, "acme-team").await;
    let (_, before) = s.call("GET", "/v1/orgs/acme", Some(&mallory), None).await;
    let mallory_events = audit_kinds(&s, &mallory, "acme").await.len();

    // A pull request opened on GitHub's acme: its webhook (organization id = acme's) reaches acme-team.
    let api = GitHubClient::with_policy(&gh.base_url(), TOKEN, policy());
    let pr = api.create_pull("acme/repo-000", "feature-002", "main", "Routed by id", None, false).await.unwrap();
    assert_eq!(delivered(&gh, 0).await, ("pull_request opened".to_owned(), 202));
    let tasks = eventually("the pull request's task in acme-team", || async {
        let (_, tasks) = s.call("GET", "/v1/orgs/acme-team/repos/repo-000/tasks", Some(&dev1), None).await;
        let found = tasks.as_array()?.iter().any(|t| t["pullRequest"]["number"] == pr.number);
        found.then_some(tasks)
    })
    .await;
    assert!(tasks.to_string().contains("Routed by id"), "{tasks}");

    // GitHub renames the organization: same id, new login. Deliveries still arrive, and the rename is recorded.
    gh.with_fixture(|f| f.owner = "acme-corp".into());
    let pr =
        api.create_pull("acme-corp/repo-001", "feature-002", "main", "After the rename", None, false).await.unwrap();
    assert_eq!(delivered(&gh, 1).await, ("pull_request opened".to_owned(), 202));
    eventually("the renamed account's pull request in acme-team", || async {
        let (_, tasks) = s.call("GET", "/v1/orgs/acme-team/repos/repo-001/tasks", Some(&dev1), None).await;
        tasks.as_array()?.iter().any(|t| t["pullRequest"]["number"] == pr.number).then_some(())
    })
    .await;
    let (_, st) = s.call("GET", "/v1/orgs/acme-team/github", Some(&dev1), None).await;
    assert_eq!(
        (st["status"]["meta"]["accountLogin"].as_str(), st["status"]["meta"]["accountId"].as_u64()),
        (Some("acme-corp"), Some(acme_id))
    );
    eventually("the profile's login", || async {
        let (_, org) = s.call("GET", "/v1/orgs/acme-team", Some(&dev1), None).await;
        (org["profile"]["login"] == "acme-corp").then_some(())
    })
    .await;
    assert!(audit_kinds(&s, &dev1, "acme-team").await.contains(&"github.account_renamed".to_owned()));
    // The next sync uses the new login.
    let (st, _) = s.call("POST", "/v1/orgs/acme-team/github/sync", Some(&dev1), None).await;
    assert_eq!(st, 202);
    let status = sync_done(&s, &dev1, "acme-team").await;
    assert_eq!(status["status"]["meta"]["status"], "synced", "{status}");

    // Installation events route by the installation's account id: acme-team's uninstall clears acme-team only.
    let uninstall = json!({
        "action": "deleted",
        "installation": { "id": 77, "account": { "login": "acme-corp", "id": acme_id, "type": "Organization" } },
    });
    let (st, body) = post_webhook(&s, "installation", "i-1", &uninstall).await;
    assert_eq!((st, body["outcome"].as_str()), (202, Some("cleared")), "{body}");
    let (_, st) = s.call("GET", "/v1/orgs/acme-team/github", Some(&dev1), None).await;
    assert_eq!(st["status"]["repositories"], 0, "{st}");
    // An account nobody connected, even one whose login is an organization id here, is answered 404 and creates
    // nothing.
    let stranger = json!({
        "action": "created",
        "installation": { "id": 78, "account": { "login": "acme", "id": 424_242, "type": "Organization" } },
    });
    let (st, body) = post_webhook(&s, "installation", "i-2", &stranger).await;
    assert_eq!((st, code(&body)), (404, "not_found"), "{body}");
    let no_id = json!({ "action": "created", "organization": { "login": "acme" } });
    let (st, body) = post_webhook(&s, "repository", "i-3", &no_id).await;
    assert_eq!((st, code(&body)), (422, "unprocessable"), "{body}");
    // Mallory's `acme` received none of it.
    let (_, after) = s.call("GET", "/v1/orgs/acme", Some(&mallory), None).await;
    assert_eq!(after["repos"], before["repos"]);
    assert_eq!(after["taskSummaries"], before["taskSummaries"]);
    assert_eq!(audit_kinds(&s, &mallory, "acme").await.len(), mallory_events, "no event in mallory's acme");
    assert_eq!(mirrors(&s), ["acme", "acme-team"], "no mirror for the stranger");
    s.stop().await;
    gh.stop().await;
}

#[actix_rt::test]
async fn an_app_installation_proves_control_and_the_sync_finds_it_by_account_id() {
    let (s, gh) = setup(true).await;
    // dev-2 is a plain member of acme but installed the App there; dev-3 is a plain member who did not.
    gh.set_installation_by("acme", 77, "dev-2");
    let dev3 = github_sign_in(&s, &gh, member(5003, "dev-3")).await;
    create_org(&s, &dev3, "three").await;
    let (st, body) = connect(&s, &dev3, "three", "acme", "organization").await;
    assert_eq!((st, code(&body)), (403, "github_not_admin"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("no installation"), "{body}");
    let dev2 = github_sign_in(&s, &gh, member(5002, "dev-2")).await;
    create_org(&s, &dev2, "two").await;
    let (st, body) = connect(&s, &dev2, "two", "acme", "organization").await;
    assert_eq!(st, 202, "{body}");
    // The sync authenticates as the installation found by acme's id.
    let status = sync_done(&s, &dev2, "two").await;
    assert_eq!(status["status"]["meta"]["status"], "synced", "{status}");
    assert_eq!((status["status"]["repositories"].as_i64(), status["status"]["members"].as_i64()), (Some(2), Some(5)));
    // Renamed on GitHub and told by a delivery: the installation is still acme's (by id), and the sync still works.
    gh.with_fixture(|f| f.owner = "acme-corp".into());
    let rename = json!({
        "action": "renamed",
        "changes": { "login": { "from": "acme" } },
        "organization": { "login": "acme-corp", "id": gh.fixture().owner_id },
    });
    let (st, body) = post_webhook(&s, "organization", "r-1", &rename).await;
    assert_eq!((st, body["outcome"].as_str()), (202, Some("applied")), "{body}");
    let (st, _) = s.call("POST", "/v1/orgs/two/github/sync", Some(&dev2), None).await;
    assert_eq!(st, 202);
    let status = sync_done(&s, &dev2, "two").await;
    assert_eq!(
        (status["status"]["meta"]["status"].as_str(), status["status"]["meta"]["accountLogin"].as_str()),
        (Some("synced"), Some("acme-corp")),
        "{status}"
    );
    s.stop().await;
    gh.stop().await;
}

#[actix_rt::test]
async fn oauth_tokens_are_sealed_and_another_key_is_a_clear_refusal() {
    let (s, gh) = setup(false).await;
    let dev1 = github_sign_in(&s, &gh, member(5001, "dev-1")).await;
    let issued = gh.oauth_tokens_of("dev-1");
    assert_eq!(issued.len(), 1);
    // The user's database files never hold the token.
    let mut bytes = Vec::new();
    for entry in std::fs::read_dir(s.dir.path().join("user")).unwrap() {
        bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(!bytes.is_empty());
    assert!(!bytes.windows(issued[0].len()).any(|w| w == issued[0].as_bytes()), "the token is stored sealed");
    // The server now runs with another key (as after replacing --token-key-file): the token cannot be read, and the
    // connect says so and creates nothing.
    s.rt.provide(Arc::new(TokenCipher::generate().unwrap()));
    create_org(&s, &dev1, "acme-team").await;
    let (st, body) = connect(&s, &dev1, "acme-team", "acme", "organization").await;
    assert_eq!((st, code(&body)), (403, "github_identity_required"), "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("token key") && message.contains("sign in with GitHub again"), "{message}");
    assert!(mirrors(&s).is_empty());
    // Signing in again seals a fresh token under the current key, and the connect goes through.
    let dev1 = github_sign_in(&s, &gh, member(5001, "dev-1")).await;
    let (st, body) = connect(&s, &dev1, "acme-team", "acme", "organization").await;
    assert_eq!(st, 202, "{body}");
    sync_done(&s, &dev1, "acme-team").await;
    s.stop().await;
    gh.stop().await;
}

/// `serve` with a token key file that is missing, exposed to others or not a key does not start.
#[test]
fn serve_refuses_a_missing_or_exposed_token_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let refuses = |key: &std::path::Path| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_foundry"))
            .args(["serve", "--bind", "127.0.0.1:0", "--log", "warn", "--data-dir"])
            .arg(dir.path().join("data"))
            .arg("--token-key-file")
            .arg(key)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        for _ in 0..600 {
            if child.try_wait().unwrap().is_some() {
                let out = child.wait_with_output().unwrap();
                assert!(!out.status.success());
                return String::from_utf8_lossy(&out.stderr).into_owned();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        panic!("serve started with the token key file {}", key.display());
    };
    let missing = dir.path().join("missing-key");
    let err = refuses(&missing);
    assert!(err.contains("missing-key") && err.contains("No such file"), "{err}");
    let exposed = dir.path().join("exposed-key");
    std::fs::write(&exposed, format!("{}\n", "ab".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = refuses(&exposed);
        assert!(err.contains("chmod 600"), "{err}");
        std::fs::set_permissions(&exposed, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&exposed, "short\n").unwrap();
        let err = refuses(&exposed);
        assert!(err.contains("64 hex digits"), "{err}");
    }
    assert!(!dir.path().join("data").join(foundry::secrets::KEY_FILE_NAME).exists(), "no key generated instead");
}
